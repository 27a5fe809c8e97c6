// Package deploy holds no code the binaries use: it is the packaging of the
// fleet (the Dockerfile, the NATS cluster configuration, Kubernetes
// manifests, the compose worker configs, telemetry configuration), and the
// tests that keep those files true to each other and to the code. There is
// no container engine where the tests run, so they check what can be
// checked without one: every file parses, every name one file gives
// another (images and build targets, ConfigMap keys, Secret keys and the
// {env: ...} references of the worker config, the KEDA consumer and the
// destinations, the metrics port, the metric names on the dashboard)
// agrees, the worker configs pass fleet.Parse, the commands and flags the
// containers run exist in the binaries, and the NATS configuration is
// started as a real 3-node cluster whose users move usage through a real
// pool. See README.md in this directory.
package deploy
