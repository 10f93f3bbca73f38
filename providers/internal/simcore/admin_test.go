package simcore

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

type fakeTarget struct {
	fault Fault
	sets  int
}

func (f *fakeTarget) Counts() Counts             { return Counts{} }
func (f *fakeTarget) Duplicates() map[string]int { return nil }
func (f *fakeTarget) SetFault(x Fault)           { f.fault = x; f.sets++ }
func (f *fakeTarget) Fault() Fault               { return f.fault }
func (f *fakeTarget) GoAwayAll() int             { return 0 }
func (f *fakeTarget) DropAll() int               { return 0 }
func (f *fakeTarget) Reset()                     {}

// The fault endpoint refuses what it does not understand, naming it, and
// leaves the fault in force alone.
func TestAdminFaultRefusesUnknownParameters(t *testing.T) {
	mux := http.NewServeMux()
	tgt := &fakeTarget{}
	AdminHandler(mux, "/apns", tgt)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(query string, form url.Values) (int, string) {
		t.Helper()
		resp, err := http.PostForm(srv.URL+"/apns/fault?"+query, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := post("rate503=1&for=10s", nil); st != 200 || tgt.fault != (Fault{Rate503: 1, For: 10 * time.Second}) {
		t.Fatalf("good fault: %d %s, fault %+v", st, body, tgt.fault)
	}
	for _, c := range []struct {
		query string
		form  url.Values
		want  string
	}{
		{"rate_503=1", nil, `"rate_503"`},
		{"", url.Values{"goaway-after": {"5"}}, `"goaway-after"`},
		{"rate503=2", nil, "rate503"},
	} {
		st, body := post(c.query, c.form)
		if st != 400 || !strings.Contains(body, c.want) {
			t.Errorf("%q %v: %d %s, want 400 naming %s", c.query, c.form, st, body, c.want)
		}
	}
	if tgt.sets != 1 {
		t.Errorf("a refused request changed the fault: %d sets", tgt.sets)
	}
}
