#!/usr/bin/env bash
# make demo: a worker with its embedded NATS server, the SSE bridge, and one
# job streamed two ways: as NATS events (bin/submit, as an orchestrator
# sees them) and as Server-Sent Events (curl -N, as a user's browser sees
# them). On a terminal the services stay up for the page until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${MODEL_PATH:-../shared/models/stories260K.gguf}
logs=data/demo
mkdir -p "$logs"
pids=()
cleanup() {
	[ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

waitfor() { # what, command...
	local what=$1
	shift
	for _ in $(seq 200); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "demo: $what did not come up; see $logs/" >&2
	exit 1
}
messages() { sed -n 's/.*"message":"\([^"]*\)".*/   \1/p' "$1"; }

bin/worker -model "$model" -log json -data-dir data/nats >"$logs/worker.log" 2>"$logs/worker.stderr" &
pids+=($!)
waitfor "the worker" grep -q '"action":"ready"' "$logs/worker.log"
bin/ssebridge >"$logs/bridge.log" 2>&1 &
pids+=($!)
waitfor "the bridge" curl -sf http://127.0.0.1:8080/readyz

echo "== The worker's lifecycle, on its stdout and on worker.lifecycle:"
messages "$logs/worker.log"
echo
echo "== A job over NATS: bin/submit publishes to jobs.execute and follows jobs.events.<id>:"
bin/submit -prompt "Once upon a time" -max-tokens 60
echo
echo "== The same service through the bridge, as Server-Sent Events:"
echo "   curl -N -X POST http://127.0.0.1:8080/v1/jobs -H 'Accept: text/event-stream' \\"
echo "        -d '{\"prompt\":\"Once upon a time\",\"max_tokens\":8}'"
curl -sN -X POST http://127.0.0.1:8080/v1/jobs -H 'Accept: text/event-stream' \
	-H 'Content-Type: application/json' -d '{"prompt":"Once upon a time","max_tokens":8}'
echo
echo "== The page: http://127.0.0.1:8080/ (type a prompt, watch it live)."
echo "   Watch everything: nats sub 'jobs.events.>'  and  nats sub worker.lifecycle"
echo "   Logs: $logs/"
if [ -t 0 ]; then
	echo "   Ctrl-C stops the worker and the bridge."
	wait
fi
