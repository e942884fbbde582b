package jobs

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeChatRequest(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"job_id":"c","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"json_schema":{"type":"object"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Messages) != 2 || r.Messages[1] != (Message{Role: RoleUser, Content: "Hi"}) || string(r.JSONSchema) != `{"type":"object"}` {
		t.Fatalf("decoded %+v", r)
	}
	tests := []struct{ body, field, says string }{
		{`{"job_id":"a"}`, "prompt", "required"},
		{`{"job_id":"a","prompt":"x","messages":[{"role":"user","content":"y"}]}`, "messages", "not both"},
		{`{"job_id":"a","messages":[{"role":"tool","content":"y"}]}`, "messages", "role must be"},
		{`{"job_id":"a","messages":[{"role":"user","content":"` + strings.Repeat("é", MaxPromptChars+1) + `"}]}`, "messages", "limit is 32768"},
		{`{"job_id":"a","messages":[` + strings.Repeat(`{"role":"user","content":""},`, MaxMessages) + `{"role":"user","content":""}]}`, "messages", "limit is 1024"},
		{`{"job_id":"a","messages":[{"role":"user","content":"y","name":"x"}]}`, "messages[0].name", "unknown field"},
		{`{"job_id":"a","prompt":"x","json_schema":"object"}`, "json_schema", "JSON Schema object"},
		{`{"job_id":"a","prompt":"x","json_schema":null}`, "", ""},
		{`{"job_id":"a","prompt":"x","json_schema":{"description":"` + strings.Repeat("d", MaxSchemaBytes) + `"}}`, "json_schema", "limit is 16384"},
	}
	for _, tt := range tests {
		_, err := DecodeRequest([]byte(tt.body))
		if tt.says == "" {
			if err != nil {
				t.Errorf("%.60s: %v", tt.body, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != InvalidRequest || e.Field != tt.field || !strings.Contains(e.Message, tt.says) {
			t.Errorf("%.60s: got %v; want field %q saying %q", tt.body, err, tt.field, tt.says)
		}
	}
}
