#!/usr/bin/env bash
# e2e.faults_slurmctld (through tests/e2e/faultctl, as root): the Slurm controller goes away.
# - stopped while sleeping: a request and a wake get 503 "Slurm controller unreachable" within
#   seconds (slurm.command_timeout = 3), status and log say so; when it is back, the next request
#   boots normally.
# - stopped while a job runs: requests keep flowing (the tunnel does not need the controller); the
#   idle teardown's scancel fails and is retried until slurmctld is back; no job is left behind.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/faults_lib.sh"
fault_suite faultctl
on_exit fault ctld-start

DAEMON_TOKEN=ctld-secret-$RANDOM$RANDOM
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.command_timeout=3' 'slurm.idle_timeout=0.1'
start_daemon "$DAEMON_CONFIG"

# --- stopped while sleeping ---------------------------------------------------------------------
fault ctld-stop
t0=$(now_ms)
code=$(chat cold)
took=$(($(now_ms) - t0))
log "request while slurmctld is down: HTTP $code after $took ms: $(error_of cold)"
assert_eq 503 "$code" 'status of a request while slurmctld is down'
assert_contains "$(error_of cold)" 'Slurm controller unreachable' 'error body'
((took < 15000)) || fail "the 503 took $took ms"
code=$(req wake POST /slullama/wake)
assert_eq 202 "$code" 'wake answers at once'
_wake_failed() { [[ $(status_field .last_error) == *'Slurm controller unreachable'* && $(status_field .phase) == sleeping ]]; }
wait_until 15 _wake_failed || fail "status after a failed wake: $(daemon_status)"
assert_contains "$(cat daemon.log)" 'Slurm controller unreachable' 'daemon log'

fault ctld-start
code=$(chat back)
expect_ok back "$code"
job1=$(status_field .job.id)
log "after slurmctld came back: job $job1 serves"
assert_eq "$job1" "$(live_named_jobs)" 'exactly the one job'

# --- stopped while a job runs -------------------------------------------------------------------
fault ctld-stop
# Traffic keeps flowing for longer than idle_timeout (6 s) without Slurm.
for i in $(seq 1 12); do
    code=$(chat "during-$i")
    expect_ok "during-$i" "$code"
    sleep 0.7 # spacing between requests: this is the traffic pattern, not synchronisation
done
assert_eq ready "$(status_field .phase)" 'phase with requests flowing'
# Then idle: the teardown cannot reach Slurm and keeps trying.
wait_phase stopping 20
_cancel_retried() { (($(grep -c "scancel $job1 failed" daemon.log || true) >= 2)); }
wait_until 30 _cancel_retried || fail "scancel was not retried: $(tail -n 20 daemon.log)"
assert_contains "$(status_field .last_error)" 'Slurm controller unreachable' 'status while scancel fails'
# A request meanwhile gets a prompt, clear refusal rather than a second job.
code=$(chat while-stopping)
assert_eq 503 "$code" 'request while the teardown cannot reach Slurm'
assert_contains "$(error_of while-stopping)" 'Slurm controller unreachable'
fault ctld-start
wait_phase sleeping 45
wait_job_gone "$job1" 30
log "after slurmctld came back: job $job1 cancelled, $(grep -c "scancel $job1 failed" daemon.log) failed attempts before"
assert_eq '' "$(live_named_jobs)" 'no job left behind'

expect_fresh_job again "$job1"
stop_daemon
assert_no_live_jobs
