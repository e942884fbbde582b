package narration

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/narrated/llmworker/internal/jobs"
)

func lifecycle(actor, action, target, human, cute string) jobs.Narration {
	return jobs.Narration{Actor: actor, Action: action, Target: target, Human: human, Cute: cute}
}

// Startup: the worker process begins.
func Startup(workerID, version string) jobs.Narration {
	return lifecycle("worker", ActionStartup, workerID,
		fmt.Sprintf("Worker %s is starting (version %s).", workerID, version),
		fmt.Sprintf("👋 Worker %s starting", workerID))
}

// DeviceInit: what llama.cpp found on this machine.
func DeviceInit(device string) jobs.Narration {
	n := lifecycle("engine", ActionDeviceInit, "llama.cpp",
		"llama.cpp found: "+device+".",
		"🖥️ Devices: "+device)
	n.Device = device
	return n
}

// ModelLoadStart: loading a model file of size bytes begins.
func ModelLoadStart(path string, size int64) jobs.Narration {
	n := lifecycle("engine", ActionModelLoadStart, path,
		fmt.Sprintf("Loading the model %s (%s).", path, Bytes(size)),
		fmt.Sprintf("📦 Loading model %s (%s)", path, Bytes(size)))
	n.Bytes = size
	return n
}

// ModelLoadProgress: percent of the model is loaded.
func ModelLoadProgress(path string, percent int) jobs.Narration {
	return lifecycle("engine", ActionModelLoadProgress, path,
		fmt.Sprintf("Loaded %d%% of the model.", percent),
		fmt.Sprintf("⏳ Loading model: %d%%", percent))
}

// ModelLoadComplete: the model is loaded.
func ModelLoadComplete(path, model string, size int64, d time.Duration) jobs.Narration {
	ms := d.Milliseconds()
	n := lifecycle("engine", ActionModelLoadComplete, path,
		fmt.Sprintf("Loaded the model %s (%s) in %s.", model, Bytes(size), round(d)),
		fmt.Sprintf("✅ Model loaded: %s (%s in %s)", model, Bytes(size), round(d)))
	n.Model, n.Bytes, n.DurationMS = model, size, &ms
	return n
}

// NATSConnect: connected to the NATS server at url.
func NATSConnect(url string) jobs.Narration {
	return lifecycle("worker", ActionNATSConnect, url,
		"Connected to NATS at "+url+".",
		"🔌 Connected to NATS at "+url)
}

// NATSConnectFailed: the worker could not connect to the NATS server at
// url (already redacted): none answered, or it refused the worker's
// credentials or certificate (refused).
func NATSConnectFailed(url string, err error, refused bool) jobs.Narration {
	n := lifecycle("worker", ActionNATSConnectFailed, url,
		fmt.Sprintf("Could not connect to NATS at %s: %v.", url, err),
		fmt.Sprintf("🚫 Cannot connect to NATS at %s: %v", url, err))
	n.ErrorKind = "NATS_UNREACHABLE"
	if refused {
		n.ErrorKind = "NATS_REFUSED"
	}
	return n
}

// Subscribe: the worker takes jobs from subject through consumer.
func Subscribe(subject, consumer string) jobs.Narration {
	return lifecycle("worker", ActionSubscribe, subject,
		fmt.Sprintf("Taking jobs from %s through the consumer %s, and cancels from %s*.", subject, consumer, jobs.CancelPrefix),
		fmt.Sprintf("📬 Taking jobs from %s", subject))
}

// Ready: the worker serves jobs; this replaces an HTTP ready callback.
func Ready(workerID, model, pool string, slots int) jobs.Narration {
	shown := pool
	if shown == "" {
		shown = "default"
	}
	n := lifecycle("worker", ActionReady, workerID,
		fmt.Sprintf("Worker %s is ready: model %s, pool %s, %d slots.", workerID, model, shown, slots),
		fmt.Sprintf("🟢 Ready: %s, pool %s, %d slots", model, shown, slots))
	n.Model, n.Pool, n.Slots = model, pool, slots
	return n
}

// Shutdown: the worker is stopping; what says how far it got.
func Shutdown(workerID, what string) jobs.Narration {
	return lifecycle("worker", ActionShutdown, workerID,
		"Shutting down: "+what+".",
		"👋 Shutting down: "+what)
}

// JobLost: the worker fell silent past the ack wait (a pause, a stall), the
// job went to another worker, and this worker's next event was refused; it
// stopped the job. Told on stdout only: the job's subject is the new
// owner's.
func JobLost(workerID, jobID string, attempt int) jobs.Narration {
	n := lifecycle("worker", ActionJobLost, jobID,
		fmt.Sprintf("Worker %s lost job %s (attempt %d) to another worker after falling silent past the ack wait; stopped it.", workerID, jobID, attempt),
		fmt.Sprintf("🫥 Lost job %s to another worker; stopped it", jobID))
	n.WorkerID = workerID
	return n
}

// Bytes formats a size for people.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// LifecycleSink publishes lifecycle narration on worker.lifecycle. Events
// told before the worker has a NATS connection wait and go out, in order,
// once Attach gives it one.
type LifecycleSink struct {
	mu      sync.Mutex
	nc      *nats.Conn
	waiting [][]byte
}

// Narrate publishes n, or keeps it until Attach.
func (s *LifecycleSink) Narrate(n *jobs.Narration) {
	data, err := json.Marshal(n)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nc == nil {
		s.waiting = append(s.waiting, data)
		return
	}
	s.nc.Publish(jobs.LifecycleSubject, data) // best effort: lifecycle is also on stdout
}

// Attach sends what waited and publishes from now on.
func (s *LifecycleSink) Attach(nc *nats.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nc = nc
	for _, data := range s.waiting {
		nc.Publish(jobs.LifecycleSubject, data)
	}
	s.waiting = nil
}
