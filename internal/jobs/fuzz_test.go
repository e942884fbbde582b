package jobs

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeRequest: no input panics; every failure is an INVALID_REQUEST
// *Error; every success is valid and survives a round trip unchanged.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"job_id":"a","prompt":"Once upon a time"}`,
		`{"job_id":"a-b_c","prompt":"x","max_tokens":5,"temperature":0,"top_k":1,"top_p":1,"min_p":0,"repetition_penalty":1.1,"seed":4294967295,"stop":["\n"],"timeout_ms":100,"correlation_id":"c"}`,
		`{"job_id":"a","prompt":"\u00e9\ud83d\ude00"}`,
		`{"job_id":"a.b","prompt":"x"}`,
		`{"job_id":"a","prompt":"x","unknown":true}`,
		`{"job_id":"a","prompt":"x","seed":-1}`,
		`{"job_id":"a","prompt":"x","temperature":1e400}`,
		`{"job_id":"a","prompt":"x"} trailing`,
		`{"job_id":"a","prompt":"x","stop":[]}`,
		`[]`, `null`, ``, `{`, `{"job_id":null,"prompt":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != InvalidRequest || e.Message == "" {
				t.Fatalf("error %v is not an INVALID_REQUEST *Error", err)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("decoded request does not validate: %v", err)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeRequest(again)
		if err != nil {
			t.Fatalf("re-encoded request %s fails: %v", again, err)
		}
		if len(req.Stop) == 0 {
			req.Stop = nil // [] and absent mean the same
		}
		if !reflect.DeepEqual(back, req) {
			t.Fatalf("round trip changed the request: %+v != %+v", back, req)
		}
		if ProbeJobID(data) != req.JobID {
			t.Fatalf("ProbeJobID = %q, request says %q", ProbeJobID(data), req.JobID)
		}
	})
}
