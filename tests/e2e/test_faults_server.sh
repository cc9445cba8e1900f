#!/usr/bin/env bash
# e2e.faults_server: the model server inside a still-running job fails.
# - it crashes (SIGKILL to the job's process that listens on the model server's port): the job
#   script ends with it, the daemon notices within seconds, status says why, the next request
#   gets a fresh job.
# - it hangs (SIGSTOP: the process and the job live on, nothing answers): the daemon's periodic
#   health check notices, status and log say "model server on NODE stopped answering", the job is
#   cancelled rather than left burning GPU time, and a request caught in it still gets an answer.
# The processes are found by the job's process list (scontrol listpids) and the socket owner.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/faults_lib.sh"
fault_suite

DAEMON_TOKEN=server-secret-$RANDOM$RANDOM
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.idle_timeout=5'
start_daemon "$DAEMON_CONFIG"

# --- crash ----------------------------------------------------------------------------------------
code=$(chat first)
expect_ok first "$code"
job1=$(status_field .job.id)
server=$(job_listener "$job1" "$OLLAMA_PORT") || fail "no process of job $job1 listens on $OLLAMA_PORT"
log "job $job1: model server pid $server on port $OLLAMA_PORT; SIGKILL"
kill -KILL "$server"
t0=$(now_ms)
# A request right after the crash is answered or refused with a reason, never left hanging.
code=$(REQ_MAX_TIME=90 chat right-after)
log "request right after the crash: HTTP $code $(error_of right-after)"
if [[ $code != 200 ]]; then
    [[ $code =~ ^5 && -n $(error_of right-after) ]] || fail "right-after: HTTP $code without a reason: $(cat right-after.body)"
fi
_job1_noticed() { [[ $(status_field .job.id) != "$job1" ]]; }
wait_until 20 _job1_noticed || fail "the daemon still serves job $job1: $(daemon_status)"
log "crash noticed after $(($(now_ms) - t0)) ms: last_end_reason=$(status_field .last_end_reason)"
assert_match "$(status_field .last_end_reason)" '(job failed|job script ended|stopped answering)' 'last_end_reason'
wait_job_gone "$job1" 30
expect_fresh_job after-crash "$job1" 'a fresh job after the crash'
job2=$FRESH_JOB
at_most_one_live_job

# --- hang -----------------------------------------------------------------------------------------
server=$(job_listener "$job2" "$OLLAMA_PORT") || fail "no process of job $job2 listens on $OLLAMA_PORT"
log "job $job2: model server pid $server; SIGSTOP"
kill -STOP "$server"
on_exit kill -CONT "$server"
t0=$(now_ms)
# A request sent into the hang: it must end with an answer or a reason, not hang forever.
REQ_MAX_TIME=120 chat into-hang >into-hang.code &
hung_req=$!
_hang_noticed() { grep -q "model server on .* stopped answering" daemon.log; }
wait_until 60 _hang_noticed || fail "the hang was not noticed: $(daemon_status); $(tail -n 20 daemon.log)"
log "hang noticed after $(($(now_ms) - t0)) ms: $(grep -m1 'stopped answering' daemon.log)"
wait_job_gone "$job2" 30
assert_eq CANCELLED "$(job_state "$job2")" "job $job2 after the hang"
wait "$hung_req" || true
code=$(cat into-hang.code)
log "request sent into the hang: HTTP $code $(error_of into-hang)"
if [[ $code != 200 ]]; then
    [[ $code =~ ^5 && -n $(error_of into-hang) ]] || fail "into-hang: HTTP $code without a reason: $(cat into-hang.body 2>/dev/null)"
fi
status=$(daemon_status)
assert_contains "$(jq -r .last_end_reason <<<"$status")" 'stopped answering' 'status.last_end_reason'
expect_fresh_job after-hang "$job2" 'a fresh job after the hang'
at_most_one_live_job
stop_daemon
assert_no_live_jobs
