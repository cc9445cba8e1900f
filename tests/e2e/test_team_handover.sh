#!/usr/bin/env bash
# e2e.team_handover: the walltime hand-over on the real Slurm bed. The job's limit is 2 min and
# keep_alive = "cancel", so it cannot be extended; with a request every few seconds, the daemon
# submits a successor about handover_lead (60 s) before the limit, switches new requests to it
# once it answers, and cancels the first job (CANCELLED, before its TIMEOUT). No request fails.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama-daemon standin-ollama
cd "$E2E_SCRATCH"

# shellcheck disable=SC2034 # read by write_daemon_config, req, daemon_status
DAEMON_TOKEN=handover-secret-$RANDOM$RANDOM
# ollama.port = 0: both jobs share the bed's one node, so each picks its own port.
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.time="2"' 'slurm.keep_alive="cancel"' \
    'slurm.handover_lead=60' 'slurm.idle_timeout=3' 'ollama.port=0'
start_daemon "$DAEMON_CONFIG"

ask() { # NAME: one short chat, must answer 200
    local code
    code=$(req "$1" POST /api/chat --data-binary "$(chat_body "$1" false '{"options":{"num_predict":2}}')")
    [[ $code == 200 ]] || fail "request $1 got HTTP $code: $(cat "$1.body" 2>/dev/null); log: $(tail -n 30 "$E2E_SCRATCH/daemon.log")"
}

ask first
job_a=$(status_field .job.id)
[[ -n $job_a && $job_a != null ]] || fail "no job after the first request: $(daemon_status)"
log "first job $job_a"

# The hand-over's status may last well under a second on the bed: sample it often.
(while :; do daemon_status 2>/dev/null | jq -c '{job: .job.id, handover}' >>statuses.jsonl || true; sleep 0.2; done) &
sampler=$!
on_exit bash -c 'kill "$1" 2>/dev/null || true' _ "$sampler"

# Up to the first job's 2 min limit (and a little more): a request every 3 s.
job_b=''
deadline=$(($(date +%s) + 150))
i=0
while (($(date +%s) < deadline)); do
    i=$((i + 1))
    ask "r$i"
    status=$(daemon_status)
    current=$(jq -r .job.id <<<"$status")
    if [[ $current != "$job_a" && -z $job_b ]]; then
        job_b=$current
        state_a=$(job_state "$job_a" || echo gone)
        log "requests now go to job $job_b (job $job_a is $state_a)"
    fi
    if [[ -n $job_b ]] && job_gone "$job_a"; then
        break
    fi
    sleep 3
done

kill "$sampler" 2>/dev/null || true
# Status showed both jobs: the successor while it booted beside the first one.
jq -e --arg a "$job_a" --arg b "$job_b" -s \
    'any(.[]; .job == $a and .handover.successor_job_id == $b and .handover.old_job_id == $a)' \
    statuses.jsonl >/dev/null ||
    fail "no status named both jobs during the hand-over: $(grep -v '"handover":null' statuses.jsonl | head -n 5); log: $(grep -i 'hand-over\|successor' "$E2E_SCRATCH/daemon.log" | tail -n 20)"
log "status during the hand-over: $(grep -v '"handover":null' statuses.jsonl | head -n 1)"
[[ -n $job_b && $job_b != null ]] || fail "requests never moved to a successor job: $(daemon_status)"
wait_job_gone "$job_a" 30
assert_match "$(job_state "$job_a" || echo CANCELLED)" '^(CANCELLED|COMPLETED)$' "the first job's end (not its time limit)"
grep -q 'walltime hand-over' "$E2E_SCRATCH/daemon.log" || fail 'the log does not mention the hand-over'
ask after
assert_eq "$job_b" "$(status_field .job.id)" 'job in use after the hand-over'
assert_eq 1 "$(count_words "$(live_named_jobs)")" 'live jobs after the hand-over'
log "hand-over $job_a -> $job_b with $((i + 2)) requests, none failed"
