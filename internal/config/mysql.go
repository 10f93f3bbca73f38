package config

import (
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// interpolationSafeCharsets are the connection character sets in which the
// driver's client-side escaping (interpolateParams, which mysqldb turns on)
// holds: no multibyte character of theirs ends in 0x5c. In big5, cp932,
// gbk, gb2312, gb18030 and sjis one does, so the server reads the
// backslash the driver puts before a quote as the end of a character, and
// the quote as the end of the string. The driver only refuses a `collation`
// on its own list of unsafe ones, never a `charset`; a list of the safe
// ones also refuses those the driver does not know.
var interpolationSafeCharsets = []string{"utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "binary"}

// safeCharsetsText names them in errors.
const safeCharsetsText = "utf8mb4, utf8mb3, utf8, latin1, ascii or binary"

// charsetReason says why a charset is refused.
const charsetReason = "arguments are escaped in the client (interpolateParams), and in other charsets, such as gbk, sjis or big5, a quote so escaped can end a string"

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
			problems = append(problems, "charset must be "+safeCharsetsText+": "+charsetReason)
			break
		}
	}
	if dc.Collation != "" && !safeCollation(dc.Collation) {
		problems = append(problems, "collation must belong to "+safeCharsetsText+" (as utf8mb4_unicode_ci does): "+charsetReason)
	}
	for _, param := range slices.Sorted(maps.Keys(dc.Params)) {
		name := sessionVariable(param)
		value := strings.ToLower(strings.Trim(strings.TrimSpace(dc.Params[param]), "'\"`"))
		switch {
		case strings.HasPrefix(name, "character_set"), name == "names", name == "charset", name == "character set":
			if !safeCharset(value) {
				problems = append(problems, name+" must be "+safeCharsetsText+": "+charsetReason)
			}
		case strings.HasPrefix(name, "collation"):
			if !safeCollation(value) {
				problems = append(problems, name+" must belong to "+safeCharsetsText+" (as utf8mb4_unicode_ci does): "+charsetReason)
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
	return slices.Contains(interpolationSafeCharsets, strings.ToLower(strings.TrimSpace(cs)))
}

// safeCollation: a collation's name starts with its charset's.
func safeCollation(c string) bool {
	c = strings.ToLower(c)
	if c == "binary" {
		return true
	}
	if !collationName.MatchString(c) {
		return false
	}
	for _, cs := range interpolationSafeCharsets {
		if strings.HasPrefix(c, cs+"_") {
			return true
		}
	}
	return false
}
