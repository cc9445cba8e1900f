#!/usr/bin/env bash
# e2e.daemon_load: concurrency through one slullama-daemon on the real Slurm bed.
# 200 requests arriving at once while sleeping share one boot: exactly one sbatch, 200 answers.
# Then 1000 concurrent streams (slullama-loadgen, one connection each) all complete through the
# one ssh tunnel, with every chunk, and the daemon is still answering afterwards.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama-daemon standin-ollama slullama-loadgen
cd "$E2E_SCRATCH"

DAEMON_TOKEN=load-secret-$RANDOM$RANDOM
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.idle_timeout=5' 'server.max_connections=4096'
start_daemon "$DAEMON_CONFIG"

# loadgen NAME ARGS...: runs slullama-loadgen against the daemon with the token; the JSON summary
# lands in NAME.json; fails the suite (with the summary) if any request failed.
loadgen() {
    local name=$1 rc=0
    shift
    slullama-loadgen --token "$DAEMON_TOKEN" --json "$@" >"$name.json" 2>"$name.err" || rc=$?
    log "$name: $(jq -c '{ok, failed, errors, statuses, latency_ms: .latency_ms | {p50, p99, max}, chunks, elapsed_s}' "$name.json" 2>/dev/null || cat "$name.json")"
    ((rc == 0)) || fail "$name: slullama-loadgen exited $rc: $(cat "$name.json" "$name.err"); daemon log: $(tail -n 30 "$E2E_SCRATCH/daemon.log")"
}

# --- 200 cold requests, one boot -----------------------------------------------------------------
assert_eq sleeping "$(status_field .phase)" 'phase before the burst'
assert_eq '' "$(named_jobs)" 'jobs before the burst'
loadgen cold --url "$DAEMON_URL/api/chat" --method POST \
    --body "$(chat_body 'cold burst' false '{"options":{"num_predict":3}}')" \
    --concurrency 200 --requests 200 --expect-status 200 --timeout 120
assert_eq 200 "$(jq -r .ok cold.json)" 'answers to the cold burst'
assert_eq 200 "$(jq -r '.statuses["200"]' cold.json)" '200 statuses'
assert_eq 200 "$(jq -r .connections cold.json)" 'connections of the cold burst'
jobs=$(named_jobs)
assert_eq 1 "$(count_words "$jobs")" "jobs named $E2E_JOB_NAME after 200 cold requests ($jobs)"
assert_eq 1 "$(submissions_in_log)" 'sbatch calls in the daemon log'
job=$jobs
status=$(daemon_status)
jq -e --arg job "$job" '.phase == "ready" and .job.id == $job and .request_count == 200 and .active_requests == 0' \
    <<<"$status" >/dev/null || fail "status after the burst: $status"

# --- 1000 concurrent streams -------------------------------------------------------------------
# 20 tokens 50 ms apart: each stream lasts about a second, so they overlap; 21 lines each.
log "1000 concurrent streams"
loadgen streams --url "$DAEMON_URL/api/chat" --method POST \
    --body "$(chat_body 'many streams' true '{"options":{"num_predict":20,"standin_token_delay_ms":50}}')" \
    --stream --min-chunks 21 --concurrency 1000 --requests 1000 --expect-status 200 --timeout 120
assert_eq 1000 "$(jq -r .ok streams.json)" 'completed streams'
assert_eq 21000 "$(jq -r .chunks streams.json)" 'chunks of 1000 streams'

# Still one job, still ready, nothing left active; a plain request still works.
assert_eq "$job" "$(named_jobs)" 'jobs after the streams'
nothing_active() { [[ $(status_field .active_requests) == 0 ]]; }
wait_until 10 nothing_active ||
    fail "active_requests stays above 0 after every stream ended: $(daemon_status)"
status=$(daemon_status)
jq -e '.phase == "ready" and .request_count == 1200 and .tunnel_alive == true' <<<"$status" >/dev/null ||
    fail "status after the streams: $status"
assert_eq 200 "$(req tags GET /api/tags)" 'GET /api/tags after the load'
daemon_healthy || fail "daemon not healthy after the load"
