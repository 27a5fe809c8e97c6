// Package e2e holds end-to-end tests across the fleet: producer input,
// the producer library, the embedded nats-server, worker pools of more
// than one destination type and the sandbox emulators on loopback. It has
// no code of its own; its tests live beside this file.
//
//	go test ./workers/e2e/
package e2e
