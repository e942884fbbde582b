// Package jobs owns the wire contract between whoever submits a job, the
// workers that run it and the bridge that shows it: the execute request, the
// events of a job, the error codes, the NATS subjects and the JetStream
// streams that hold them. The worker, the bridge and the tests all speak
// through these types; nothing else defines JSON for them.
//
// It knows nothing about llama.cpp or HTTP.
package jobs

import (
	"fmt"
	"strings"
)

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

// SubjectTokenRule is the rule of ValidSubjectToken, as errors state it.
var SubjectTokenRule = fmt.Sprintf("must be 1 to %d of A-Z a-z 0-9 _ - (it becomes a subject token)", MaxJobIDLen)

// ValidSubjectToken reports whether s may be a token of a subject: a job
// id or a pool name. It follows SubjectTokenRule.
func ValidSubjectToken(s string) bool {
	if s == "" || len(s) > MaxJobIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckSubjectToken refuses a value of field that cannot be a subject
// token with an INVALID_REQUEST *Error that states the rule.
func CheckSubjectToken(field, value string) error {
	if !ValidSubjectToken(value) {
		return invalid(field, "%s", SubjectTokenRule)
	}
	return nil
}
