// Package soak holds the fleet's soak test (issue 12): everything that went
// wrong once, at the same time, for minutes. It is behind the soak build
// tag, so the regular suite never runs it:
//
//	go test -tags soak -run TestSoak -v -timeout 30m ./internal/soak/ -soak.duration 10m
//
// A 3-node nats-server cluster (processes, R3 streams and buckets), two
// usage-worker processes serving CloudZero, Cloud Cruiser and a webhook
// (the sandbox emulators in this process, with faults injected), two
// producers publishing all along, kill -9 of workers and of a node (each
// restarted), poison and oversized messages and a hostile producer. It
// ends by quiescing and checking every unit exact at every destination.
package soak
