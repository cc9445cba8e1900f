#!/usr/bin/env bash
# e2e.daemon_faults: slullama-daemon on the real Slurm bed when things break under it.
# - `scancel` from outside mid-stream: the client's stream ends cleanly (closed, no hang), status
#   says why, and the next request boots a new job.
# - the daemon's ssh tunnel is killed: it is rebuilt on the same job and requests keep working.
# - sbatch is refused (a partition that does not exist): every waiting request gets a prompt 502
#   carrying Slurm's own message, and nothing is left queued.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama-daemon standin-ollama slullama-loadgen
cd "$E2E_SCRATCH"

DAEMON_TOKEN=faults-secret-$RANDOM$RANDOM
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.idle_timeout=5'
start_daemon "$DAEMON_CONFIG"
mapfile -t auth < <(auth_args)
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- scancel from outside mid-stream --------------------------------------------------------------
log "scancel mid-stream"
curl -sS -N --max-time 60 "${auth[@]}" -H 'Content-Type: application/json' \
    --data-binary "$(chat_body victim true '{"options":{"num_predict":60,"standin_token_delay_ms":500}}')" \
    "$DAEMON_URL/api/chat" >victim.ndjson 2>victim.err &
curl_pid=$!
wait_until 60 lines_at_least victim.ndjson 3 || fail "stream did not start: $(cat victim.ndjson victim.err)"
job_a=$(status_field .job.id)
assert_eq "$job_a" "$(named_jobs)" 'the one job'
cancelled_at=$(now_ms)
sl scancel "$job_a"
# The client's stream ends on its own, long before curl's --max-time.
wait_until 30 pid_gone "$curl_pid" || fail "the client still hangs $(($(now_ms) - cancelled_at)) ms after scancel: $(tail -n 2 victim.ndjson)"
rc=0
wait "$curl_pid" || rc=$?
log "stream ended $(($(now_ms) - cancelled_at)) ms after scancel (curl exit $rc, $(line_count victim.ndjson) lines)"
((rc != 28)) || fail "curl timed out: the stream hung after scancel"
# Whatever arrived is whole NDJSON lines and the answer is visibly incomplete (no done:true), or
# ends with an error line: never a silent, complete-looking answer.
jq -e -s 'all(type == "object") and ((.[-1].done != true) or (.[-1].error != null))' victim.ndjson >/dev/null ||
    fail "the cut stream looks complete or is not NDJSON: $(tail -n 3 victim.ndjson)"
(($(line_count victim.ndjson) < 61)) || fail "the stream was not cut"
wait_phase sleeping 30
# Slurm says "cancelled" once the job has left COMPLETING: the status follows within seconds.
end_reason_says_cancelled() { status_field .last_end_reason | grep -qi cancel; }
wait_until 20 end_reason_says_cancelled || fail "status after the outside scancel: $(daemon_status)"
status=$(daemon_status)
jq -e '.job.id == null and .tunnel_alive == false' <<<"$status" >/dev/null || fail "status after the outside scancel: $status"
log "status after scancel: last_end_reason=$(jq -r .last_end_reason <<<"$status")"
# The next request boots a new job.
assert_eq 200 "$(req after POST /api/chat --data-binary "$(chat_body again false '{"options":{"num_predict":2}}')")" 'request after the scancel'
assert_eq 'tok0 tok1' "$(jq -r .message.content after.body)" 'answer after the scancel'
job_b=$(status_field .job.id)
assert_ne "$job_a" "$job_b" 'job after the scancel'
assert_eq 2 "$(count_words "$(named_jobs)")" 'jobs after re-boot'

# --- the ssh tunnel dies --------------------------------------------------------------------------
log "killing the daemon's ssh tunnel"
old_tunnel=$(tunnel_pid) || fail "no ssh -L child under the daemon (pid $(daemon_pid)): $(children "$(daemon_pid)" | xargs)"
assert_eq "$BED_USER" "$(ps -o user= -p "$old_tunnel" | tr -d ' ')" 'owner of the tunnel process'
kill -KILL "$old_tunnel"
# Requests right after the kill are served: the daemon notices the dead tunnel and rebuilds it.
for i in 1 2 3; do
    assert_eq 200 "$(req tags$i GET /api/tags)" "GET /api/tags #$i after killing the tunnel ($(cat tags$i.body))"
done
tunnel_replaced() { local now; now=$(tunnel_pid) && [[ $now != "$old_tunnel" ]]; }
wait_until 30 tunnel_replaced ||
    fail "no new ssh tunnel after killing pid $old_tunnel"
wait_phase ready 30
status=$(daemon_status)
jq -e --arg job "$job_b" '.job.id == $job and .tunnel_alive == true' <<<"$status" >/dev/null ||
    fail "status after the tunnel rebuild: $status"
assert_eq 2 "$(count_words "$(named_jobs)")" 'jobs after the tunnel rebuild (no new sbatch)'
grep -q 'rebuilding' "$E2E_SCRATCH/daemon.log" || fail "the daemon log does not mention the rebuild: $(tail -n 20 "$E2E_SCRATCH/daemon.log")"
# And again while a stream runs: the stream may break, the daemon must recover.
curl -sS -N --max-time 60 "${auth[@]}" -H 'Content-Type: application/json' \
    --data-binary "$(chat_body during true '{"options":{"num_predict":20,"standin_token_delay_ms":200}}')" \
    "$DAEMON_URL/api/chat" >during.ndjson 2>during.err &
curl_pid=$!
wait_until 30 lines_at_least during.ndjson 2 || fail "stream did not start: $(cat during.err)"
kill -KILL "$(tunnel_pid)"
wait_until 30 pid_gone "$curl_pid" || fail "a stream hangs after its tunnel died"
wait "$curl_pid" || true
assert_eq 200 "$(req tags4 GET /api/tags)" 'GET /api/tags after killing the tunnel mid-stream'
assert_eq "$job_b" "$(status_field .job.id)" 'job after the second tunnel kill'
stop_daemon
wait_job_gone "$job_b" 30
cp "$E2E_SCRATCH/daemon.log" "$E2E_SCRATCH/daemon-1.log"

# --- sbatch refused ---------------------------------------------------------------------------------
log "sbatch with a partition that does not exist"
jobs_before=$(named_jobs | xargs)
write_daemon_config "$E2E_SCRATCH/badcfg" 'slurm.partition="nosuchpartition"' 'slurm.idle_timeout=5'
start_daemon "$DAEMON_CONFIG"
started=$(now_ms)
status=$(REQ_MAX_TIME=30 req bad POST /api/chat --data-binary "$(chat_body refused false)")
took=$(($(now_ms) - started))
assert_eq 502 "$status" "request with a refused sbatch ($(cat bad.body))"
message=$(jq -r .error bad.body)
assert_match "$message" '[Ii]nvalid partition' "error message"
log "502 after $took ms: $message"
((took < 20000)) || fail "the refusal took $took ms"
# Concurrent waiters all get it at once.
slullama-loadgen --token "$DAEMON_TOKEN" --json --url "$DAEMON_URL/api/tags" --concurrency 20 \
    --requests 20 --expect-status 502 --timeout 30 >bad-burst.json || fail "burst with a refused sbatch: $(cat bad-burst.json)"
assert_eq 20 "$(jq -r '.statuses["502"]' bad-burst.json)" '502s for 20 concurrent requests'
status=$(daemon_status)
jq -e '.phase == "sleeping" and .job.id == null and (.last_error | test("[Ii]nvalid partition"))' <<<"$status" >/dev/null ||
    fail "status after the refused sbatch: $status"
assert_eq "$jobs_before" "$(named_jobs | xargs)" "jobs known to Slurm after the refused sbatch calls"
assert_eq '' "$(live_named_jobs)" "live jobs with the bad partition"
daemon_healthy || fail "daemon not healthy after the refusals"
