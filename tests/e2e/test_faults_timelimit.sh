#!/usr/bin/env bash
# e2e.faults_timelimit: the job reaches its time limit while in use, with keep_alive = "extend"
# refused (ordinary users may not raise a limit). slurm.time = 1 minute.
# - at the first use the extension is refused: one warning in the log, status shows the effective
#   keep-alive "cancel";
# - a stream running when Slurm ends the job ends (closed or error line), never hangs;
# - status says "time limit reached" and the next request boots a fresh job.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/faults_lib.sh"
fault_suite

DAEMON_TOKEN=limit-secret-$RANDOM$RANDOM
# The walltime hand-over (e2e.team_handover) is off here: this suite is about what a user sees
# when the job does reach its limit.
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.time="1"' 'slurm.idle_timeout=5' 'slurm.keep_alive="extend"' 'slurm.handover_lead=0'
start_daemon "$DAEMON_CONFIG"

code=$(chat first)
expect_ok first "$code"
job1=$(status_field .job.id)
_refused() { [[ $(status_field .keep_alive_effective) == cancel ]]; }
wait_until 20 _refused || fail "extend was not refused: $(daemon_status)"
assert_eq extend "$(status_field .config.keep_alive)" 'configured keep-alive'
assert_eq 1 "$(grep -c 'keep_alive = "extend" refused by Slurm' daemon.log)" 'one refusal warning'
log "job $job1: limit $(job_field "$job1" TimeLimit), extension refused"

# A stream longer than what is left of the job (3 minutes of tokens).
mapfile -t auth < <(auth_args)
t0=$(now_ms)
curl -sS -N --max-time 200 "${auth[@]}" -H 'Content-Type: application/json' \
    --data-binary "$(chat_body long true '{"options":{"num_predict":360,"standin_token_delay_ms":500}}')" \
    "$DAEMON_URL/api/chat" >long.ndjson 2>long.err || true
took=$(($(now_ms) - t0))
lines=$(grep -c . long.ndjson || true)
log "the stream ended after $took ms with $lines lines: $(tail -n 1 long.ndjson | head -c 300)"
((took < 190000)) || fail "the stream outlived the job by far ($took ms)"
# Cut short: no done:true line, or a final error line.
if grep -q '"done":true' long.ndjson; then
    tail -n 1 long.ndjson | grep -q '"error"' || fail "a cut stream looks complete: $(tail -n 2 long.ndjson)"
fi
wait_job_gone "$job1" 60
assert_eq TIMEOUT "$(job_state "$job1")" "job $job1"
_limit_seen() { [[ $(status_field .last_end_reason) == *'time limit reached'* ]]; }
wait_until 20 _limit_seen || fail "status does not say why: $(daemon_status)"
assert_contains "$(cat daemon.log)" 'time limit reached' 'daemon log'

expect_fresh_job after "$job1"
at_most_one_live_job
stop_daemon
assert_no_live_jobs
