// Package jobs owns the wire contract between whoever submits a job, the
// workers that run it and the bridge that shows it: the execute request, the
// events of a job, the error codes, the NATS subjects and the JetStream
// streams that hold them. The worker, the bridge and the tests all speak
// through these types; nothing else defines JSON for them.
//
// It knows nothing about llama.cpp or HTTP.
package jobs

import "strings"

// Subjects. subjects.md documents each with payload examples.
const (
	// ExecuteSubject takes execute requests for the default pool.
	ExecuteSubject = "jobs.execute"
	// EventsPrefix prefixes a job's event subject: jobs.events.<job_id>.
	EventsPrefix = "jobs.events."
	// CancelPrefix prefixes a job's cancel subject: jobs.cancel.<job_id>.
	CancelPrefix = "jobs.cancel."
	// LifecycleSubject carries the workers' lifecycle narration.
	LifecycleSubject = "worker.lifecycle"
	// CorrelationHeader is the NATS header that may carry a request's
	// correlation id instead of the JSON field.
	CorrelationHeader = "X-Correlation-Id"
)

// ExecuteSubjectFor is the subject that feeds the workers of pool; the empty
// pool is the default one.
func ExecuteSubjectFor(pool string) string {
	if pool == "" {
		return ExecuteSubject
	}
	return ExecuteSubject + "." + pool
}

// EventsSubject is the subject that carries everything the user may see of
// one job.
func EventsSubject(jobID string) string { return EventsPrefix + jobID }

// CancelSubject is the subject that cancels one job, running or queued.
func CancelSubject(jobID string) string { return CancelPrefix + jobID }

// JobIDFromSubject returns the last token of an events or cancel subject.
func JobIDFromSubject(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}
