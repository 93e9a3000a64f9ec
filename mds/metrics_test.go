package mds_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"basalt/mds/mdspb"
)

// gather returns every sample of the server's collectors as
// "name{label=value,...}" -> value.
func (e *env) gather() map[string]float64 {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range e.mds.Server.Collectors() {
		noErr(e.t, reg.Register(c))
	}
	out := map[string]float64{}
	for _, mf := range must(reg.Gather())(e.t) {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			out[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	ids := e.pool()
	e.heartbeat(ids[0], states(e.copysetIDs(), "Leader", 1, ids[0]))
	e.createVolume("v", 2*segmentSize)
	s := e.openWriter("v", "w")
	must(e.segment("v", 0, true, s))(t)
	_, _ = e.c.StatVolume(ctx(t), &mdspb.StatVolumeRequest{Name: "nope"})
	got := e.gather()
	for name, want := range map[string]float64{
		"basalt_mds_chunkservers{state=alive}":                         3,
		"basalt_mds_chunkservers{state=dead}":                          0,
		"basalt_mds_copysets{state=healthy}":                           10,
		"basalt_mds_copysets{state=unavailable}":                       0,
		"basalt_mds_volumes":                                           1,
		"basalt_mds_segments_allocated":                                1,
		"basalt_mds_pending_chunk_deletions":                           0,
		"basalt_mds_rpcs_total{method=CreateVolume}":                   1,
		"basalt_mds_rpcs_total{method=StatVolume}":                     1,
		"basalt_mds_rpc_errors_total{code=NotFound,method=StatVolume}": 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
