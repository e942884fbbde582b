package jobs

// Error codes that only the bridge answers with, in its JSON errors; they
// never appear in an error event.
const (
	// NotFound: no job with this id has been seen, queued or running.
	NotFound Code = "NOT_FOUND"
	// Unauthorized: the bearer token is missing or wrong.
	Unauthorized Code = "UNAUTHORIZED"
	// Conflict: the request does not fit the job's state, such as a job_id
	// that was already submitted or a cancel of a finished job.
	Conflict Code = "CONFLICT"
	// Unavailable: NATS could not be reached or did not answer.
	Unavailable Code = "UNAVAILABLE"
	// QueueFull: the pool already holds as many jobs as its -max-queued
	// allows; try again later (HTTP 429 with Retry-After).
	QueueFull Code = "QUEUE_FULL"
)
