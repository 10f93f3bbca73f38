package promset

import (
	"errors"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestRegisterDeclaresEveryCollector(t *testing.T) {
	var s Set
	c := s.Counter("c_total", "help c")
	cv := s.CounterVec("cv_total", "help cv", "a", "b")
	g := s.Gauge("g", "help g")
	gv := s.GaugeVec("gv", "help gv", "x")
	h := s.Histogram("h_seconds", "help h", []float64{.5, 1})
	hv := s.HistogramVec("hv_seconds", "help hv", []float64{2}, "y")
	added := Add(&s, prometheus.NewCounter(prometheus.CounterOpts{Name: "added_total", Help: "help added"}))
	reg := prometheus.NewPedanticRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	c.Add(1)
	cv.WithLabelValues("1", "2").Add(2)
	g.Set(3)
	gv.WithLabelValues("4").Set(4)
	h.Observe(.7)
	hv.WithLabelValues("5").Observe(1)
	added.Add(6)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	type family struct {
		name, help string
		typ        dto.MetricType
		labels     []string
		value      float64 // counter or gauge value, or histogram sample sum
		buckets    []float64
	}
	var got []family
	for _, mf := range mfs {
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%s has %d series, want 1", mf.GetName(), len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		f := family{name: mf.GetName(), help: mf.GetHelp(), typ: mf.GetType()}
		for _, l := range m.GetLabel() {
			f.labels = append(f.labels, l.GetName()+"="+l.GetValue())
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			f.value = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			f.value = m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			f.value = m.GetHistogram().GetSampleSum()
			for _, b := range m.GetHistogram().GetBucket() {
				f.buckets = append(f.buckets, b.GetUpperBound())
			}
		}
		got = append(got, f)
	}
	want := []family{ // Gather sorts by name
		{"added_total", "help added", dto.MetricType_COUNTER, nil, 6, nil},
		{"c_total", "help c", dto.MetricType_COUNTER, nil, 1, nil},
		{"cv_total", "help cv", dto.MetricType_COUNTER, []string{"a=1", "b=2"}, 2, nil},
		{"g", "help g", dto.MetricType_GAUGE, nil, 3, nil},
		{"gv", "help gv", dto.MetricType_GAUGE, []string{"x=4"}, 4, nil},
		{"h_seconds", "help h", dto.MetricType_HISTOGRAM, nil, .7, []float64{.5, 1}},
		{"hv_seconds", "help hv", dto.MetricType_HISTOGRAM, []string{"y=5"}, 1, []float64{2}},
	}
	if len(got) != len(want) {
		t.Fatalf("gathered %d families, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.name != w.name || g.help != w.help || g.typ != w.typ || !slices.Equal(g.labels, w.labels) || g.value != w.value || !slices.Equal(g.buckets, w.buckets) {
			t.Errorf("family %d: %+v, want %+v", i, g, w)
		}
	}
}

func TestRegisterNilRegistererRegistersNothing(t *testing.T) {
	var s Set
	c := s.Counter("c_total", "help")
	if err := s.Register(nil); err != nil {
		t.Fatal(err)
	}
	// Still a working collector, and still free to register elsewhere.
	c.Inc()
	if err := prometheus.NewRegistry().Register(c); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterStopsAtTheFirstError(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "taken_total", Help: "first"})); err != nil {
		t.Fatal(err)
	}
	var s Set
	before := s.Counter("before_total", "help")
	s.Counter("taken_total", "first")
	after := s.Counter("after_total", "help")
	err := s.Register(reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("err = %v, want prometheus.AlreadyRegisteredError", err)
	}
	if !reg.Unregister(before) {
		t.Error("the collector declared before the failing one is not registered")
	}
	if reg.Unregister(after) {
		t.Error("the collector declared after the failing one is registered")
	}
}
