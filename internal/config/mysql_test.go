package config

import (
	"slices"
	"strings"
	"testing"
)

const (
	wantCharset   = "charset must not be big5, cp932, gb2312, gbk, gb18030 or sjis: arguments are escaped in the client (interpolateParams), and in those charsets a quote so escaped can end a string"
	wantCollation = "collation must not belong to big5, cp932, gb2312, gbk, gb18030 or sjis: arguments are escaped in the client (interpolateParams), and in those charsets a quote so escaped can end a string"
)

// mysqldb escapes arguments in the client, which a multibyte charset
// whose characters may end in 0x5c undoes ("中'" is E4 B8 AD 5C 27 once
// escaped, and gbk reads E4B8 AD5C, then the quote). The driver refused
// only a collation on its list, and only at start-up; a charset=gbk got
// through both.
func TestMySQLCharsetsUnsafeForClientSideEscapingAreRefused(t *testing.T) {
	reason := "arguments are escaped in the client (interpolateParams), and in those charsets a quote so escaped can end a string"
	dsn := "pushlane:" + dsnPassword + "@tcp(db:3306)/pushlane?"
	cases := []struct {
		params string
		want   []string
	}{
		{"charset=gbk", []string{"mysql.dsn: " + wantCharset}},
		{"charset=SJIS", []string{"mysql.dsn: " + wantCharset}},
		{"charset=utf8mb4,big5", []string{"mysql.dsn: " + wantCharset}},
		{"charset=cp932&collation=cp932_japanese_ci", []string{"mysql.dsn: " + wantCharset + "; " + wantCollation}},
		{"charset=gb2312", []string{"mysql.dsn: " + wantCharset}},
		{"charset=gb18030", []string{"mysql.dsn: " + wantCharset}},
		{"collation=sjis_japanese_ci", []string{"mysql.dsn: " + wantCollation}},
		{"collation=gbk_chinese_ci&interpolateParams=false", []string{"mysql.dsn: " + wantCollation}},
		{"collation=utf8mb4_unicode_ci;x", []string{"mysql.dsn: " + wantCollation}},
		{"character_set_client=gbk", []string{"mysql.dsn: character_set_client must not be big5, cp932, gb2312, gbk, gb18030 or sjis: " + reason}},
		{"@@session.Character_Set_Connection=%27big5%27", []string{"mysql.dsn: character_set_connection must not be big5, cp932, gb2312, gbk, gb18030 or sjis: " + reason}},
		{"collation_connection=gb18030_bin&time_zone=%27%2B00%3A00%27", []string{"mysql.dsn: collation_connection must not belong to big5, cp932, gb2312, gbk, gb18030 or sjis: " + reason}},
		{"charset=utf8mb4", nil},
		{"charset=utf8mb4,utf8&collation=utf8mb4_unicode_ci", nil},
		{"charset=latin1&collation=latin1_swedish_ci", nil},
		{"charset=ascii", nil},
		{"charset=binary&collation=binary", nil},
		{"collation=utf8mb4_0900_ai_ci", nil},
		{"character_set_client=%27utf8mb4%27&time_zone=%27%2B00%3A00%27", nil},
		// Single-byte, or multibyte without a 0x5c trail byte: safe, and
		// refused by a first version that allowed only a few charsets.
		{"charset=latin2&collation=latin2_general_ci", nil},
		{"charset=cp1251", nil},
		{"charset=euckr", nil},
		// Not what the server parses statements in.
		{"character_set_results=NULL&character_set_server=gbk&collation_server=gbk_bin", nil},
	}
	for _, c := range cases {
		t.Run(c.params, func(t *testing.T) {
			_, err := Load("", []string{"PUSHLANE_MYSQL__DSN=" + dsn + c.params})
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := problems(t, err); !slices.Equal(got, c.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, c.want)
			}
			if strings.Contains(err.Error(), dsnPassword) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// The driver's own list of collations unsafe with interpolateParams
// (go-sql-driver/mysql collations.go), every one refused by config
// validation rather than by the driver at start-up.
func TestMySQLDriverUnsafeCollationsAreRefused(t *testing.T) {
	for _, coll := range []string{
		"big5_chinese_ci", "sjis_japanese_ci", "gbk_chinese_ci", "big5_bin", "gb2312_bin", "gbk_bin",
		"sjis_bin", "cp932_japanese_ci", "cp932_bin", "gb18030_chinese_ci", "gb18030_bin", "gb18030_unicode_520_ci",
	} {
		_, err := Load("", []string{"PUSHLANE_MYSQL__DSN=u:" + dsnPassword + "@tcp(db:3306)/db?collation=" + coll})
		if got, want := problems(t, err), []string{"mysql.dsn: " + wantCollation}; !slices.Equal(got, want) {
			t.Errorf("%s: problems:\n got %q\nwant %q", coll, got, want)
		}
	}
}
