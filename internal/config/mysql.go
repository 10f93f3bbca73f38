package config

import (
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// interpolationUnsafeCharsets are the connection character sets in which
// the driver's client-side escaping (interpolateParams, which mysqldb
// turns on) fails: a multibyte character of theirs may end in 0x5c, so the
// server reads the backslash the driver puts before a quote as the end of
// a character, and the quote as the end of the string. They are the
// charsets of the driver's own list of unsafe collations, which it checks
// only for a `collation`, never a `charset`. Every other MySQL charset is
// single-byte or has no 0x5c trail byte (a first version allowed only a
// few safe ones, refusing latin2 or cp1251 DSNs that had worked).
var interpolationUnsafeCharsets = []string{"big5", "cp932", "gb2312", "gbk", "gb18030", "sjis"}

// unsafeCharsetsText names them in errors.
const unsafeCharsetsText = "big5, cp932, gb2312, gbk, gb18030 or sjis"

// charsetReason says why a charset is refused.
const charsetReason = "arguments are escaped in the client (interpolateParams), and in those charsets a quote so escaped can end a string"

// collationName is the form of MySQL's collation names; anything else in
// a collation is not one (the driver sends it unquoted in SET NAMES).
var collationName = regexp.MustCompile(`^[a-z0-9_]+$`)

// CheckMySQLCharsets refuses the charsets and collations of a parsed DSN
// (its charset and collation parameters, and session variables such as
// character_set_client) in which client-side escaping is unsafe. The
// error names the parameter, not its value: the DSN holds a password.
func CheckMySQLCharsets(dc *mysql.Config) error {
	var problems []string
	for _, cs := range dsnCharsets(dc) {
		if !safeCharset(cs) {
			problems = append(problems, "charset must not be "+unsafeCharsetsText+": "+charsetReason)
			break
		}
	}
	if dc.Collation != "" && !safeCollation(dc.Collation) {
		problems = append(problems, "collation must not belong to "+unsafeCharsetsText+": "+charsetReason)
	}
	for _, param := range slices.Sorted(maps.Keys(dc.Params)) {
		name := sessionVariable(param)
		value := strings.ToLower(strings.Trim(strings.TrimSpace(dc.Params[param]), "'\"`"))
		// Only what the server parses the client's statements in: the
		// results' or the server's charset does not change escaping.
		switch name {
		case "character_set_client", "character_set_connection", "names", "charset", "character set":
			if !safeCharset(value) {
				problems = append(problems, name+" must not be "+unsafeCharsetsText+": "+charsetReason)
			}
		case "collation_connection":
			if !safeCollation(value) {
				problems = append(problems, name+" must not belong to "+unsafeCharsetsText+": "+charsetReason)
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// dsnCharsets is the DSN's charset parameter (a list the driver tries in
// turn), which the driver keeps unexported: it is read back from the
// driver's own formatting of the DSN, without user, password or address.
func dsnCharsets(dc *mysql.Config) []string {
	bare := dc.Clone()
	bare.User, bare.Passwd, bare.Net, bare.Addr, bare.DBName, bare.Params = "", "", "", "", "", nil
	_, query, _ := strings.Cut(bare.FormatDSN(), "?")
	for param := range strings.SplitSeq(query, "&") {
		if value, ok := strings.CutPrefix(param, "charset="); ok {
			return strings.Split(value, ",")
		}
	}
	return nil
}

// sessionVariable is the variable a DSN parameter the driver does not know
// sets (it sends "SET <param> = <value>"), as MySQL reads its name:
// @@session.character_set_client and "session character_set_client" are
// character_set_client.
// SessionVariable is the name of the session variable a DSN parameter
// sets, however it is spelled: TIME_ZONE, @@session.time_zone and
// `time_zone` all set time_zone.
func SessionVariable(param string) string { return sessionVariable(param) }

func sessionVariable(param string) string {
	name := strings.ToLower(strings.TrimSpace(param))
	name = strings.TrimPrefix(name, "@@")
	for _, scope := range []string{"session", "local", "global"} {
		if rest, ok := strings.CutPrefix(name, scope); ok && rest != "" && (rest[0] == '.' || rest[0] == ' ') {
			name = strings.TrimLeft(rest, ". ")
			break
		}
	}
	return strings.Trim(name, "`")
}

func safeCharset(cs string) bool {
	return !slices.Contains(interpolationUnsafeCharsets, strings.ToLower(strings.TrimSpace(cs)))
}

// safeCollation: a collation's name starts with its charset's.
func safeCollation(c string) bool {
	c = strings.ToLower(c)
	if !collationName.MatchString(c) {
		return false
	}
	for _, cs := range interpolationUnsafeCharsets {
		if strings.HasPrefix(c, cs+"_") {
			return false
		}
	}
	return true
}
