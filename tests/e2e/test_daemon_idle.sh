#!/usr/bin/env bash
# e2e.daemon_idle: the idle watchdog of slullama-daemon on the real Slurm bed, with a short
# idle_timeout (0.1 min = 6 s). A used job is cancelled once idle (gone from squeue, status
# sleeping, tunnel closed) and not before; the next request wakes a new job; a stream longer than
# idle_timeout is never cut and the job goes only after it ends; POST /slullama/wake boots
# without a request, and that job too goes when nobody uses it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama-daemon standin-ollama
cd "$E2E_SCRATCH"

IDLE_S=6
# shellcheck disable=SC2034 # read by write_daemon_config, req, daemon_status
DAEMON_TOKEN=idle-secret-$RANDOM$RANDOM
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.idle_timeout=0.1'
start_daemon "$DAEMON_CONFIG"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# expect_teardown JOB SINCE_MS: the job goes idle_timeout after SINCE_MS, within a few seconds
# of that deadline and not before it.
expect_teardown() {
    local job=$1 since=$2 took
    wait_phase sleeping $((IDLE_S + 15))
    took=$(($(now_ms) - since))
    wait_job_gone "$job" 20
    ((took >= IDLE_S * 1000 - 500)) || fail "job $job torn down after $took ms, before idle_timeout ($IDLE_S s)"
    log "job $job torn down $took ms after its last use (idle_timeout ${IDLE_S} s)"
    local status
    status=$(daemon_status)
    jq -e '.phase == "sleeping" and .job.id == null and .tunnel_alive == false
           and (.last_end_reason | test("idle"))' <<<"$status" >/dev/null ||
        fail "status after the idle teardown: $status"
    [[ -z $(tunnel_pid || true) ]] || fail "the daemon's ssh tunnel (pid $(tunnel_pid)) outlived the job"
    assert_match "$(job_state "$job" || echo gone)" '^(CANCELLED|gone)$' "Slurm's state of job $job"
}

# --- use, then idle ------------------------------------------------------------------------------
assert_eq 200 "$(req first POST /api/chat --data-binary "$(chat_body one false '{"options":{"num_predict":2}}')")" 'cold request'
last_use=$(now_ms)
assert_eq 'tok0 tok1' "$(jq -r .message.content first.body)" 'first answer'
job_a=$(named_jobs)
assert_eq 1 "$(count_words "$job_a")" 'jobs after the first request'
status=$(daemon_status)
jq -e --argjson idle "$IDLE_S" '.phase == "ready" and .seconds_until_sleep <= $idle and .seconds_until_sleep >= 0' <<<"$status" >/dev/null ||
    fail "status right after the request: $status"
expect_teardown "$job_a" "$last_use"

# --- the next request wakes a new job -------------------------------------------------------------
assert_eq 200 "$(req second POST /api/chat --data-binary "$(chat_body two false '{"options":{"num_predict":2}}')")" 'request after the teardown'
assert_eq 'tok0 tok1' "$(jq -r .message.content second.body)" 'answer after the teardown'
job_b=$(named_jobs | grep -vx "$job_a" || true)
assert_eq 1 "$(count_words "$job_b")" "new jobs after waking again (all: $(named_jobs | xargs))"
assert_eq "$job_b" "$(status_field .job.id)" 'status job id after waking again'

# --- a stream longer than idle_timeout -----------------------------------------------------------
# 10 tokens 1 s apart: the job must stay for the whole stream and go idle_timeout after it.
log "long stream (10 s, idle_timeout ${IDLE_S} s)"
mapfile -t auth < <(auth_args)
curl -sS -N --max-time 60 "${auth[@]}" -H 'Content-Type: application/json' \
    --data-binary "$(chat_body long true '{"options":{"num_predict":10,"standin_token_delay_ms":1000}}')" \
    "$DAEMON_URL/api/chat" >long.ndjson 2>long.err &
curl_pid=$!
# Past idle_timeout since the stream began (8 tokens in): still ready, still the same job.
wait_until 30 lines_at_least long.ndjson 8 || fail "long stream stalled: $(cat long.ndjson long.err)"
status=$(daemon_status)
jq -e --arg job "$job_b" '.phase == "ready" and .job.id == $job and .active_requests == 1 and .idle_seconds == 0' \
    <<<"$status" >/dev/null || fail "status during the long stream: $status"
job_gone "$job_b" && fail "job $job_b left squeue during a stream"
rc=0
wait "$curl_pid" || rc=$?
stream_end=$(now_ms)
assert_eq 0 "$rc" "curl exit code of the long stream ($(cat long.err))"
assert_eq 11 "$(line_count long.ndjson)" "lines of the long stream: $(cat long.ndjson)"
jq -e -s '.[-1].done == true' long.ndjson >/dev/null || fail "long stream did not end with done: $(tail -n 2 long.ndjson)"
job_gone "$job_b" && fail "job $job_b was torn down as the stream ended, not idle_timeout after"
expect_teardown "$job_b" "$stream_end"

# --- wake without a request ---------------------------------------------------------------------
count_before=$(status_field .request_count)
woke_at=$(now_ms)
assert_eq 202 "$(req wake POST /slullama/wake)" 'POST /slullama/wake while sleeping'
jq -e '.phase | IN("submitting", "queued", "starting", "ready")' wake.body >/dev/null ||
    fail "wake answered with phase $(jq -r .phase wake.body), expected a boot in progress: $(cat wake.body)"
wait_phase ready 60
job_c=$(status_field .job.id)
assert_ne "$job_a" "$job_c" 'job woken by wake'
assert_ne "$job_b" "$job_c" 'job woken by wake'
assert_eq 3 "$(count_words "$(named_jobs)")" 'jobs after wake (three boots in all)'
assert_eq "$count_before" "$(status_field .request_count)" 'request_count after wake (wake holds no request)'
# Nobody uses it: idle counts from when it became ready.
expect_teardown "$job_c" "$woke_at"
assert_eq '' "$(live_named_jobs)" 'live jobs at the end'
