package ops

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/usagefleet/usagefleet/internal/telemetry"
)

// Build is what a binary knows of its own build (telemetry.Build: the
// OpenTelemetry resource's service.version is the same version).
type Build = telemetry.Build

// ReadBuild reads the binary's build information (telemetry.ReadBuild).
func ReadBuild() Build { return telemetry.ReadBuild() }

// BuildInfoCollector is the usagefleet_build_info gauge. telemetry.Setup
// registers it on every binary's registry.
func BuildInfoCollector() prometheus.Collector { return telemetry.BuildInfoCollector() }
