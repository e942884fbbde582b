package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeRequestDefaults(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"job_id":"j-1","prompt":"Once upon a time"}`))
	if err != nil {
		t.Fatal(err)
	}
	p := r.Params()
	want := Params{MaxTokens: 128, Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepetitionPenalty: 1, Timeout: 5 * time.Minute}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("params %+v, want %+v", p, want)
	}
	// An explicit zero is kept, not replaced by the default.
	r, err = DecodeRequest([]byte(`{"job_id":"j-1","prompt":"x","temperature":0,"top_k":0,"seed":0,"timeout_ms":1500}`))
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Params(); p.Temperature != 0 || p.TopK != 0 || p.Seed == nil || *p.Seed != 0 || p.Timeout != 1500*time.Millisecond {
		t.Errorf("params %+v", p)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	tests := []struct{ body, field, says string }{
		{``, "", "empty"},
		{`{`, "", "cut short"},
		{`{"job_id":"a","prompt":`, "", "cut short"},
		{`{"job_id":"a","stop":["x",`, "", "cut short"},
		{`"just a string"`, "", "JSON object"},
		{`{"job_id":"a","prompt":"b"} {}`, "", "single JSON object"},
		{`{"job_id":"a","prompt":"b","evil":1}`, "evil", `unknown field "evil"`},
		{`{"JOB_ID":"a","prompt":"b"}`, "JOB_ID", `unknown field "JOB_ID"`},
		{`{"job_id":"a","Prompt":"b"}`, "Prompt", `unknown field "Prompt"`},
		{`{"job_id":"a","prompt":"b","stop":["x"],"Stop":["y"]}`, "Stop", `unknown field "Stop"`},
		{`{"job_id":"a","messages":[{"role":"user","content":"hi","Name":"x"}]}`, "messages[0].Name", `unknown field "messages[0].Name"`},
		{`{"prompt":"b"}`, "job_id", "required"},
		{`{"job_id":"a.b","prompt":"b"}`, "job_id", "subject token"},
		{`{"job_id":"` + strings.Repeat("a", 129) + `","prompt":"b"}`, "job_id", "1 to 128"},
		{`{"job_id":"a","prompt":""}`, "prompt", "empty"},
		{`{"job_id":"a","prompt":"` + strings.Repeat("é", MaxPromptChars+1) + `"}`, "prompt", "limit is 32768"},
		{`{"job_id":"a","prompt":"b","max_tokens":0}`, "max_tokens", "at least 1"},
		{`{"job_id":"a","prompt":"b","max_tokens":1.5}`, "max_tokens", "integer"},
		{`{"job_id":"a","prompt":"b","temperature":"hot"}`, "temperature", "number"},
		{`{"job_id":"a","prompt":"b","temperature":2.01}`, "temperature", "0 to 2"},
		{`{"job_id":"a","prompt":"b","top_p":1.01}`, "top_p", "0 to 1"},
		{`{"job_id":"a","prompt":"b","min_p":-1}`, "min_p", "0 to 1"},
		{`{"job_id":"a","prompt":"b","repetition_penalty":2.5}`, "repetition_penalty", "0 to 2"},
		{`{"job_id":"a","prompt":"b","top_k":-3}`, "top_k", "0 (off)"},
		{`{"job_id":"a","prompt":"b","seed":4294967296}`, "seed", "4294967295"},
		{`{"job_id":"a","prompt":"b","timeout_ms":3600001}`, "timeout_ms", "1 to 3600000"},
		{`{"job_id":"a","prompt":"b","stop":["1","2","3","4","5"]}`, "stop", "limit is 4"},
		{`{"job_id":"a","prompt":"b","stop":["` + strings.Repeat("s", 101) + `"]}`, "stop", "1 to 100 bytes"},
		{`{"job_id":"a","prompt":"b","stop":"x"}`, "stop", "array of strings"},
		{`{"job_id":"a","prompt":"b","correlation_id":"` + strings.Repeat("c", 129) + `"}`, "correlation_id", "at most 128"},
	}
	for _, tt := range tests {
		_, err := DecodeRequest([]byte(tt.body))
		var e *Error
		if !errors.As(err, &e) || e.Code != InvalidRequest || e.Field != tt.field || !strings.Contains(e.Message, tt.says) {
			t.Errorf("%.60s: got %v; want field %q saying %q", tt.body, err, tt.field, tt.says)
		}
		if !errors.Is(err, &Error{Code: InvalidRequest}) {
			t.Errorf("%.60s: errors.Is does not match the code", tt.body)
		}
	}
}

func TestCheckContext(t *testing.T) {
	r := Request{JobID: "a", Prompt: "x", MaxTokens: new(int)}
	tests := []struct {
		prompt, max, ctx int
		code             Code
		field            string
	}{
		{10, 20, 64, "", ""},
		{10, 54, 64, "", ""},
		{10, 55, 64, ContextOverflow, "max_tokens"},
		{64, 1, 64, InvalidRequest, "prompt"},
		{5, 65, 64, InvalidRequest, "max_tokens"},
	}
	for _, tt := range tests {
		*r.MaxTokens = tt.max
		err := r.CheckContext(tt.prompt, tt.ctx)
		var e *Error
		if tt.code == "" && err != nil || tt.code != "" && (!errors.As(err, &e) || e.Code != tt.code || e.Field != tt.field) {
			t.Errorf("prompt %d max %d ctx %d: %v; want %s %s", tt.prompt, tt.max, tt.ctx, err, tt.code, tt.field)
		}
	}
}

func TestProbeJobID(t *testing.T) {
	tests := map[string]string{
		`{"job_id":"abc","prompt":`:                 "abc",
		`{"prompt":42,"job_id":"late"}`:             "late",
		`{"job_id":"a.b"}`:                          "",
		`{"job_id":7}`:                              "",
		`[{"job_id":"x"}]`:                          "",
		`not json`:                                  "",
		`{"nested":{"job_id":"no"},"x":1}`:          "",
		`{"nested":{"job_id":"no"},"job_id":"yes"}`: "yes",
		`{"JOB_ID":"no"}`:                           "",
		`{"job_id":"yes","Job_Id":"no"}`:            "yes",
	}
	for body, want := range tests {
		if got := ProbeJobID([]byte(body)); got != want {
			t.Errorf("ProbeJobID(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestEventRoundTrip(t *testing.T) {
	stop := "THE END"
	in := []Event{
		&Started{Header: Header{Type: TypeStarted, JobID: "j", Seq: 1}, Model: "m", WorkerID: "w", Seed: 7, Attempt: 1},
		&Token{Header: Header{Type: TypeToken, JobID: "j", Seq: 2}, T: "Once", I: 0},
		&Narration{Header: Header{Type: TypeNarration, JobID: "j", Seq: 3}, Action: "tokenize", TokensIn: new(int)},
		&End{Header: Header{Type: TypeEnd, JobID: "j", Seq: 4}, StopReason: StopSequence, StopSequenceMatched: &stop},
		&ErrorEvent{Header: Header{Type: TypeError, JobID: "j", Seq: 5}, Error: Error{Code: InferenceFailed, Message: "boom"}},
	}
	for _, ev := range in {
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out, err := DecodeEvent(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, ev) {
			t.Errorf("round trip of %s: got %+v, want %+v", data, out, ev)
		}
	}
	// Zero figures that matter are on the wire, not omitted.
	data, _ := json.Marshal(&End{Header: Header{Type: TypeEnd}, StopReason: StopCancelled})
	for _, field := range []string{`"tokens_out":0`, `"decode_time_ms":0`, `"stop_sequence_matched":null`} {
		if !strings.Contains(string(data), field) {
			t.Errorf("end event %s lacks %s", data, field)
		}
	}
	if _, err := DecodeEvent([]byte(`{"type":"bogus"}`)); err == nil {
		t.Error("an unknown event type decoded")
	}
}

// A wrapper that embeds Request (as the bridge's does) hears of its fields
// by their JSON names.
func TestDecodeStrictNamesPromotedFields(t *testing.T) {
	var wrapper struct {
		Request
		Pool string `json:"pool"`
	}
	err := DecodeStrict([]byte(`{"job_id":"a","prompt":7}`), &wrapper)
	var e *Error
	if !errors.As(err, &e) || e.Field != "prompt" {
		t.Errorf("err %v, want field prompt", err)
	}
}

// Keys are checked at every depth the Go type describes, so a field added
// later (a list of objects, say) needs nothing but its struct tag; inside a
// map or a raw message every key goes.
func TestDecodeStrictChecksNestedKeys(t *testing.T) {
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type request struct {
		Request
		Messages []message       `json:"messages"`
		Schema   json.RawMessage `json:"schema"`
		Labels   map[string]int  `json:"labels"`
		First    *message        `json:"first"`
		Skipped  string          `json:"-"`
		Untagged int
	}
	tests := map[string]string{
		`{"job_id":"a","messages":[{"role":"user","content":"hi"}],"schema":{"any":{"thing":1}},"labels":{"x":1},"Untagged":1}`: "",
		`{"messages":[{"role":"user"},{"Role":"user"}]}`:                                                                        "messages[1].Role",
		`{"first":{"role":"user","evil":1}}`:                                                                                    "first.evil",
		`{"Skipped":"x"}`:                                                                                                       "Skipped",
		`{"-":"x"}`:                                                                                                             "-",
		`{"untagged":1}`:                                                                                                        "untagged",
		`{"messages":"wrong type","evil":1}`:                                                                                    "evil",
	}
	for body, field := range tests {
		var r request
		err := DecodeStrict([]byte(body), &r)
		var e *Error
		switch {
		case field == "" && err != nil:
			t.Errorf("%s: %v", body, err)
		case field != "" && (!errors.As(err, &e) || e.Field != field || e.Message != fmt.Sprintf("unknown field %q", field)):
			t.Errorf("%s: got %v; want unknown field %q", body, err, field)
		}
	}
}
