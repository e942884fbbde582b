package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	"github.com/narrated/llmworker/internal/jobs"
)

// Whoever can publish on jobs.events.<job_id> must not be able to write
// into a client's SSE stream: an event reaches a client only when it is a
// JSON object of the job with a seq and a type of the contract, and its
// data is compact JSON, which holds no line break to end an SSE field or
// start another. The id: and event: lines are written from those checked
// values only.

// decodeDelivery checks one message of jobs.events.<id>.
func decodeDelivery(id string, data []byte) (delivery, error) {
	d := delivery{data: data}
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return d, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(data, &d.head); err != nil {
		return d, errors.New("not a JSON event")
	}
	switch d.head.Type {
	case jobs.TypeStarted, jobs.TypeToken, jobs.TypeNarration, jobs.TypeEnd, jobs.TypeError:
	default:
		return d, fmt.Errorf("type %q is not one of the contract's", truncate(string(d.head.Type), 32))
	}
	switch {
	case d.head.Seq == 0:
		return d, errors.New("no seq")
	case d.head.JobID != id:
		return d, fmt.Errorf("job_id %q is not the subject's", truncate(d.head.JobID, 140))
	}
	if bytes.ContainsAny(data, "\r\n") {
		var b bytes.Buffer
		if err := json.Compact(&b, data); err != nil {
			return d, errors.New("not a JSON event")
		}
		d.data = b.Bytes()
	}
	return d, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// refusals tells stdout once per job that events of it were not forwarded.
type refusals struct {
	mu   sync.Mutex
	told map[string]struct{}
}

// maxRefusals bounds the jobs remembered; past it the memory starts over.
const maxRefusals = 4096

func (r *refusals) tell(log zerolog.Logger, id string, err error) {
	r.mu.Lock()
	_, told := r.told[id]
	if !told {
		if r.told == nil || len(r.told) >= maxRefusals {
			r.told = make(map[string]struct{})
		}
		r.told[id] = struct{}{}
	}
	r.mu.Unlock()
	if !told {
		log.Warn().Str("job_id", id).Str("reason", err.Error()).
			Msg("an event of this job is not forwarded to its clients: it does not follow the contract (told once per job)")
	}
}
