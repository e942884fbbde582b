// Command submit is a small orchestrator for people: it publishes one
// execute job to NATS and prints the job's events as they stream — the
// narration lines and the story as it grows — until the job ends. With
// -json it prints the raw events instead. Ctrl-C cancels the job.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/narrated/llmworker/internal/flagenv"
	"github.com/narrated/llmworker/internal/jobs"
	"github.com/narrated/llmworker/internal/natsconn"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "submit:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	var conn natsconn.Config
	conn.Define(fs, natsconn.DefaultURL, "NATS server URL, or several separated by commas")
	pool := fs.String("pool", "", "the workers' pool (empty: jobs.execute)")
	raw := fs.Bool("json", false, "print the raw events, one JSON object a line")
	timeout := fs.Duration("wait", 5*time.Minute, "give up waiting for the job's end after this")
	var req jobs.Request
	fs.StringVar(&req.JobID, "job-id", "", "the job's id (default: a new UUID)")
	fs.StringVar(&req.Prompt, "prompt", "Once upon a time", "the prompt")
	maxTokens := fs.Int("max-tokens", jobs.DefaultMaxTokens, "tokens to generate at most")
	temperature := fs.Float64("temperature", jobs.DefaultTemperature, "sampling temperature (0: greedy)")
	flagenv.Document(fs, natsconn.Env)
	if err := flagenv.Parse(fs, args, natsconn.Env, getenv); err != nil {
		return err
	}
	if req.JobID == "" {
		req.JobID = uuid.NewString()
	}
	req.MaxTokens, req.Temperature = maxTokens, temperature
	if err := req.Validate(); err != nil {
		return err
	}
	data, _ := json.Marshal(req)

	nc, err := conn.Connect("submit")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	// Follow the job's events from its first, then submit it.
	cons, err := js.OrderedConsumer(ctx, jobs.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{jobs.EventsSubject(req.JobID)},
	})
	if err != nil {
		return fmt.Errorf("follow the job's events (is a worker up to create the streams?): %w", err)
	}
	if _, err := js.Publish(ctx, jobs.ExecuteSubjectFor(*pool), data); jobs.IsQueueFull(err) {
		return fmt.Errorf("%s: the queue of %s is full (the workers' -max-queued); try again later", jobs.QueueFull, jobs.ExecuteSubjectFor(*pool))
	} else if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	fmt.Fprintf(out, "📨 Submitted job %s to %s\n", req.JobID, jobs.ExecuteSubjectFor(*pool))
	view := &view{out: out, prompt: req.Prompt}
	cancelSent := false
	for {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) && !cancelSent {
				// Ctrl-C: cancel the job and wait for its end.
				cancelSent = true
				stop()
				ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
				if _, err := js.Publish(ctx, jobs.CancelSubject(req.JobID), nil); err != nil {
					cancel()
					return fmt.Errorf("cancel job %s: %w (it may still run)", req.JobID, err)
				}
				fmt.Fprintf(out, "🛑 Cancel sent for job %s; waiting for its end\n", req.JobID)
				defer cancel()
				continue
			}
			return fmt.Errorf("waiting for job %s: %w", req.JobID, err)
		}
		ev, err := jobs.DecodeEvent(msg.Data())
		if err != nil {
			return err
		}
		if *raw {
			fmt.Fprintf(out, "%s\n", msg.Data())
		} else {
			view.show(ev)
		}
		if ev.Head().Type.Terminal() {
			if e, ok := ev.(*jobs.ErrorEvent); ok {
				return fmt.Errorf("job %s failed: %v", req.JobID, &e.Error)
			}
			return nil
		}
	}
}

// view prints events for a person: the prompt and the story as running
// text, narration on lines of its own. Narration that comes mid-word waits
// for the word's end, so that it never splits one.
type view struct {
	out     io.Writer
	prompt  string
	inText  bool
	waiting []string
}

func (v *view) show(ev jobs.Event) {
	switch ev := ev.(type) {
	case *jobs.Started:
		v.line(fmt.Sprintf("▶️  Started on %s (model %s, seed %d, attempt %d)", ev.WorkerID, ev.Model, ev.Seed, ev.Attempt))
	case *jobs.Narration:
		v.waiting = append(v.waiting, ev.Cute)
		if !v.inText {
			v.flush()
		}
	case *jobs.Token:
		if len(v.waiting) > 0 && startsWord(ev.T) {
			v.flush()
		}
		if !v.inText {
			fmt.Fprint(v.out, v.prompt)
			v.prompt, v.inText = "", true
		}
		fmt.Fprint(v.out, ev.T)
	case *jobs.End:
		v.flush()
		v.line(fmt.Sprintf("🏁 %s: %d tokens in %d ms", strings.ToLower(string(ev.StopReason)), ev.TokensOut, ev.DecodeTimeMS))
	case *jobs.ErrorEvent:
		v.flush()
		v.line(fmt.Sprintf("❌ %s: %s", ev.Code, ev.Message))
	}
}

func startsWord(t string) bool {
	return strings.IndexAny(t[:1], " \n\t.,;:!?\"'") == 0
}

// flush prints the waiting narration below the text.
func (v *view) flush() {
	for _, n := range v.waiting {
		v.line("   " + n)
	}
	v.waiting = nil
}

func (v *view) line(s string) {
	if v.inText {
		fmt.Fprintln(v.out)
		v.inText = false
	}
	fmt.Fprintln(v.out, s)
}
