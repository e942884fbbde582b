package jobs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/narration"
	"github.com/narrated/llmworker/internal/testutil"
)

// subjects.md must stay true to the code: every subject, stream, field,
// action, code, stop reason and default it documents comes from here.
func TestSubjectsDocIsTrue(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "subjects.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	want := []string{
		"`" + jobs.ExecuteSubject + "`", "`" + jobs.ExecuteSubjectFor("<pool>") + "`",
		"`" + jobs.EventsSubject("<job_id>") + "`", "`" + jobs.CancelSubject("<job_id>") + "`",
		"`" + jobs.LifecycleSubject + "`", jobs.CorrelationHeader,
		jobs.QueueStream, jobs.EventsStream, jobs.CancelStream,
		jobs.ConsumerName(""), jobs.ConsumerName("<pool>"),
		fmt.Sprintf("ack wait is %ds", int(jobs.AckWait.Seconds())),
		fmt.Sprintf("up to %d times", jobs.MaxDeliver),
		fmt.Sprintf("| %d |", jobs.DefaultMaxTokens), fmt.Sprintf("| %g |", jobs.DefaultTemperature),
		fmt.Sprintf("| %d |", jobs.DefaultTopK), fmt.Sprintf("| %g |", jobs.DefaultTopP),
		fmt.Sprintf("| %g |", jobs.DefaultMinP), fmt.Sprintf("| %.1f |", jobs.DefaultRepetitionPenalty),
		fmt.Sprintf("| %d |", jobs.DefaultTimeout.Milliseconds()),
		fmt.Sprintf("1–%d characters", jobs.MaxPromptChars), fmt.Sprintf("1–%d of", jobs.MaxJobIDLen),
		fmt.Sprintf("at most %d strings of 1–%d bytes", jobs.MaxStopSequences, jobs.MaxStopBytes),
		fmt.Sprintf("1–%d;", jobs.MaxTimeout.Milliseconds()),
		fmt.Sprintf("at most %d GiB", jobs.EventsMaxBytes>>30),
		fmt.Sprintf("at most %d messages", jobs.MaxMessages), fmt.Sprintf("at most %d bytes", jobs.MaxSchemaBytes),
		"`" + jobs.RoleSystem + "`", "`" + jobs.RoleUser + "`", "`" + jobs.RoleAssistant + "`",
	}
	for _, c := range []jobs.Code{jobs.InvalidRequest, jobs.ContextOverflow, jobs.InferenceFailed, jobs.RetriesExhausted} {
		want = append(want, "`"+string(c)+"`")
	}
	for _, r := range []jobs.StopReason{jobs.StopMaxTokens, jobs.StopEOS, jobs.StopSequence, jobs.StopCancelled, jobs.StopTimeout} {
		want = append(want, "`"+string(r)+"`")
	}
	for _, ty := range []jobs.EventType{jobs.TypeStarted, jobs.TypeToken, jobs.TypeNarration, jobs.TypeEnd, jobs.TypeError} {
		want = append(want, "`"+string(ty)+"`")
	}
	for _, a := range append(narration.PerRequest, narration.Lifecycle...) {
		want = append(want, "| `"+a+"` |")
	}
	for _, v := range []any{jobs.Request{}, jobs.Message{}, jobs.Started{}, jobs.Token{}, jobs.End{}, jobs.Error{}, jobs.Narration{}} {
		want = append(want, jsonFields(reflect.TypeOf(v))...)
	}
	for _, w := range want {
		if !strings.Contains(doc, w) {
			t.Errorf("subjects.md does not mention %s", w)
		}
	}
}

// jsonFields lists a struct's JSON field names, as `"name"` for the
// examples or `name` in prose.
func jsonFields(ty reflect.Type) []string {
	var out []string
	for i := range ty.NumField() {
		f := ty.Field(i)
		if f.Anonymous {
			continue // the header: type, job_id, seq, ts
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, "`"+name+"`")
	}
	return out
}
