// Package faults holds the tests that break what the service stands on,
// on purpose and on real servers: a NATS cluster losing a node (its stream
// leaders included) while workers run jobs and clients stream them. Each
// asserts that every job's stored events tell one complete story and that
// every client received all of it. It has no code of its own.
package faults
