package jobs

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType names the kind of an event: the "type" field, and the SSE
// event name at the bridge.
type EventType string

// The event types of jobs.events.<job_id>, in the order they come:
// started, then tokens and narration interleaved, then one end or error.
const (
	TypeStarted   EventType = "started"
	TypeToken     EventType = "token"
	TypeNarration EventType = "narration"
	TypeEnd       EventType = "end"
	TypeError     EventType = "error"
)

// Terminal reports whether no event of the job comes after this type.
func (t EventType) Terminal() bool { return t == TypeEnd || t == TypeError }

// StopReason says why a generation ended.
type StopReason string

// The stop reasons of an end event.
const (
	StopMaxTokens StopReason = "MAX_TOKENS"
	StopEOS       StopReason = "EOS"
	StopSequence  StopReason = "STOP_SEQUENCE"
	StopCancelled StopReason = "CANCELLED"
	StopTimeout   StopReason = "TIMEOUT"
)

// Header is what every event carries. Seq counts a job's events from 1
// without gaps; lifecycle narration has neither job id nor seq.
type Header struct {
	Type  EventType `json:"type"`
	JobID string    `json:"job_id,omitempty"`
	Seq   uint64    `json:"seq,omitempty"`
	TS    time.Time `json:"ts"`
}

// Head gives access to the header of any event.
func (h *Header) Head() *Header { return h }

// Event is any of Started, Token, Narration, End and Error.
type Event interface{ Head() *Header }

// Started opens a job's events. Attempt is 1 unless the job was handed to
// another worker after its first one died or shut down: a client then shows
// only the tokens after the last started event.
type Started struct {
	Header
	Model         string `json:"model"`
	WorkerID      string `json:"worker_id"`
	CorrelationID string `json:"correlation_id"`
	Seed          uint32 `json:"seed"`
	Attempt       int    `json:"attempt"`
}

// Token is a piece of generated text: always whole UTF-8, never part of a
// stop sequence. I counts token events from 0.
type Token struct {
	Header
	T string `json:"t"`
	I int    `json:"i"`
}

// End closes a job that generated: TokensOut equals the number of token
// events since the last started event.
type End struct {
	Header
	TokensIn            int        `json:"tokens_in"`
	TokensOut           int        `json:"tokens_out"`
	DecodeTimeMS        int64      `json:"decode_time_ms"`
	StopReason          StopReason `json:"stop_reason"`
	StopSequenceMatched *string    `json:"stop_sequence_matched"`
}

// ErrorEvent closes a job that failed.
type ErrorEvent struct {
	Header
	Error
}

// Narration is an event told to people: on a job's subject for per-request
// events, on worker.lifecycle for lifecycle ones, and always on stdout. The
// figures and details are present only where they belong to the action.
type Narration struct {
	Header
	Actor         string `json:"actor"`
	Action        string `json:"action"`
	Target        string `json:"target"`
	Human         string `json:"human"`
	Cute          string `json:"cute"`
	WorkerID      string `json:"worker_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	TokensIn      *int   `json:"tokens_in,omitempty"`
	TokensOut     *int   `json:"tokens_out,omitempty"`
	DurationMS    *int64 `json:"duration_ms,omitempty"`
	ErrorKind     string `json:"error_kind,omitempty"`
	// Lifecycle details.
	Model  string `json:"model,omitempty"`
	Pool   string `json:"pool,omitempty"`
	Slots  int    `json:"slots,omitempty"`
	Device string `json:"device,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
}

// DecodeEvent decodes any event by its type.
func DecodeEvent(data []byte) (Event, error) {
	var h Header
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	var ev Event
	switch h.Type {
	case TypeStarted:
		ev = &Started{}
	case TypeToken:
		ev = &Token{}
	case TypeNarration:
		ev = &Narration{}
	case TypeEnd:
		ev = &End{}
	case TypeError:
		ev = &ErrorEvent{}
	default:
		return nil, fmt.Errorf("decode event: unknown type %q", h.Type)
	}
	if err := json.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("decode %s event: %w", h.Type, err)
	}
	return ev, nil
}
