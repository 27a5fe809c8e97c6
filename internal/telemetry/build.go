package telemetry

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version, when set at link time (-ldflags "-X
// github.com/usagefleet/usagefleet/internal/telemetry.Version=v1.2.3"), wins
// over the module version the build recorded.
var Version string

// Build is what a binary knows of its own build.
type Build struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	CommitAt  string `json:"commit_time,omitempty"`
	Modified  bool   `json:"modified"` // built from a work tree with changes
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// ReadBuild reads the build information Go embeds in every binary
// (runtime/debug.ReadBuildInfo: the main module's version and the vcs.*
// settings of a build from a git checkout).
func ReadBuild() Build {
	b := Build{Version: "(devel)", Commit: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			b.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.CommitAt = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if Version != "" {
		b.Version = Version
	}
	return b
}

// BuildInfoCollector is the usagefleet_build_info gauge: always 1, the
// build in its labels (the Prometheus convention for build information).
func BuildInfoCollector() prometheus.Collector {
	b := ReadBuild()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "usagefleet_build_info",
		Help:        "The usagefleet build: version, commit and Go version in the labels; always 1.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
