package simcore

import (
	"encoding/json"
	"net/http"
	"time"
)

// AdminTarget is what the admin HTTP endpoint drives.
type AdminTarget interface {
	Counts() Counts
	Duplicates() map[string]int
	SetFault(Fault)
	Fault() Fault
	GoAwayAll() int
	DropAll() int
	Reset()
}

// AdminHandler serves, under prefix (e.g. "/apns"):
//
//	GET  {prefix}/counts       totals as JSON
//	GET  {prefix}/duplicates   tokens accepted more than once, as JSON
//	GET  {prefix}/fault        the fault in force
//	POST {prefix}/fault?rate503=1&for=10s   replace the fault (see ParseFault; no parameters = healthy;
//	                           an unknown parameter is refused with 400)
//	POST {prefix}/goaway       graceful GOAWAY on every live connection
//	POST {prefix}/drop         drop every live connection
//	POST {prefix}/reset        forget the request counts: requests, accepted, rejected,
//	                           devices, duplicates, recorded requests (see Counter.Reset);
//	                           connection and GOAWAY counts, the fault, token rules and
//	                           auth state stay
func AdminHandler(mux *http.ServeMux, prefix string, t AdminTarget) {
	mux.HandleFunc("GET "+prefix+"/counts", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, t.Counts()) })
	mux.HandleFunc("GET "+prefix+"/duplicates", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, t.Duplicates()) })
	mux.HandleFunc("GET "+prefix+"/fault", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, faultJSON(t.Fault())) })
	mux.HandleFunc("POST "+prefix+"/fault", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f, err := ParseFault(r.Form)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		t.SetFault(f)
		writeJSON(w, faultJSON(f))
	})
	mux.HandleFunc("POST "+prefix+"/goaway", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]int{"connections": t.GoAwayAll()})
	})
	mux.HandleFunc("POST "+prefix+"/drop", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]int{"connections": t.DropAll()})
	})
	mux.HandleFunc("POST "+prefix+"/reset", func(w http.ResponseWriter, _ *http.Request) {
		t.Reset()
		writeJSON(w, t.Counts())
	})
}

func faultJSON(f Fault) map[string]any {
	d := func(x time.Duration) string { return x.String() }
	return map[string]any{
		"rate429": f.Rate429, "rate503": f.Rate503, "count": f.Count, "for": d(f.For),
		"latency": d(f.Latency), "retry_after": d(f.RetryAfter), "goaway_after": f.GoAwayAfter,
	}
}

// WriteJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
