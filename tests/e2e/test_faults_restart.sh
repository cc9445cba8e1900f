#!/usr/bin/env bash
# e2e.faults_restart: the daemon is killed (SIGKILL to its process) in each state and started
# again with the same configuration. Every time: never two jobs, never an orphan, and a client
# of the new process gets its answer.
# - submitting, the job made but its id not yet read (an sbatch wrapper that stalls after
#   submitting): the new daemon finds the job by name and submit token and adopts it;
# - submitting, before the job was made (the wrapper stalls before sbatch): no job, a fresh one;
# - queued (the job is held: extra_args = ["--hold"]): adopted while pending, released by hand;
# - starting (the stand-in takes 6 s to listen): adopted, the old ssh tunnel is gone;
# - ready: adopted at once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/faults_lib.sh"
fault_suite

DAEMON_TOKEN=restart-secret-$RANDOM$RANDOM
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.idle_timeout=5'
plain_config=$DAEMON_CONFIG
# The same daemon (port, log_dir, state file) but its jobs are submitted held.
held_config=$E2E_SCRATCH/cfg/held.toml
sed '/^\[slurm\]$/a extra_args = ["--hold"]' "$plain_config" >"$held_config"

kill_daemon() { # SIGKILL to the daemon's process only (its children die with it: PDEATHSIG)
    local pid
    pid=$(daemon_pid)
    kill -KILL "$pid"
    wait_until 10 pid_gone "$pid" || fail "daemon $pid survived SIGKILL"
    log "daemon $pid killed in phase $1"
}
# new_jobs BEFORE: jobs of this suite's name that were not in BEFORE (Slurm keeps ended ones).
new_jobs() { comm -13 <(tr ' ' '\n' <<<"$1" | sort) <(named_jobs | sort) | sort -un | tr '\n' ' ' | sed 's/ $//'; }
# ends a phase: SIGTERM cancels the one job; nothing is left.
end_phase() {
    stop_daemon
    assert_no_live_jobs
    mv daemon.log "daemon-$1.log"
}
# chat_bg NAME: a request from a client of the current process, in the background.
chat_bg() { REQ_MAX_TIME=120 chat "$1" >"$1.code" & }
wait_code() { # NAME: waits for chat_bg NAME; prints its status
    wait_until 120 test -s "$1.code" || fail "$1: no answer"
    cat "$1.code"
}

# --- submitting: the job was made, the daemon died before reading its id -------------------------
real_sbatch=$(command -v sbatch)
mkdir -p stall-after stall-before
cat >stall-after/sbatch <<EOF
#!/bin/bash
out=\$("$real_sbatch" "\$@") || exit
echo "\$out" >"$E2E_SCRATCH/submitted"
exec sleep 120
EOF
cat >stall-before/sbatch <<EOF
#!/bin/bash
echo stalled >"$E2E_SCRATCH/stalled"
sleep 120
exec "$real_sbatch" "\$@"
EOF
chmod +x stall-after/sbatch stall-before/sbatch

before=$(named_jobs)
start_daemon_env "$plain_config" PATH="$E2E_SCRATCH/stall-after:$PATH"
chat_bg lost-client
wait_until 30 test -s submitted || fail "the wrapper did not submit: $(tail -n 20 daemon.log)"
made=$(cut -d';' -f1 submitted)
assert_eq submitting "$(status_field .phase)" 'phase while sbatch runs'
kill_daemon submitting
start_daemon "$plain_config"
chat_bg after-submitting
code=$(wait_code after-submitting)
expect_ok after-submitting "$code"
assert_contains "$(cat daemon.log)" 'interrupted submission' 'log of the new daemon'
assert_eq "$made" "$(status_field .job.id)" 'the adopted job is the one sbatch made'
assert_eq "$made" "$(new_jobs "$before")" 'exactly one job'
end_phase submitting-after

# --- submitting: the daemon died before sbatch reached Slurm ---------------------------------------
before=$(named_jobs)
start_daemon_env "$plain_config" PATH="$E2E_SCRATCH/stall-before:$PATH"
chat_bg lost-client2
wait_until 30 test -s stalled || fail "the wrapper did not run"
kill_daemon submitting
start_daemon "$plain_config"
chat_bg after-submitting2
code=$(wait_code after-submitting2)
expect_ok after-submitting2 "$code"
assert_contains "$(cat daemon.log)" 'left no job' 'log of the new daemon'
assert_eq 1 "$(count_words "$(new_jobs "$before")")" 'exactly one job'
end_phase submitting-before

# --- queued ---------------------------------------------------------------------------------------
before=$(named_jobs)
start_daemon "$held_config"
chat_bg lost-client3
wait_phase queued 30
held=$(status_field .job.id)
_held() { [[ $(status_field .job.pending_reason) == *Held* ]]; }
wait_until 20 _held || fail "job $held is not held: $(daemon_status)"
kill_daemon queued
start_daemon "$plain_config"
wait_phase queued 30
assert_eq "$held" "$(status_field .job.id)" 'the pending job is adopted'
chat_bg after-queued
sl scontrol release "$held"
code=$(wait_code after-queued)
expect_ok after-queued "$code"
assert_eq "$held" "$(new_jobs "$before")" 'exactly one job'
end_phase queued

# --- starting -------------------------------------------------------------------------------------
before=$(named_jobs)
start_daemon_env "$plain_config" STANDIN_STARTUP_DELAY_MS=6000
chat_bg lost-client4
wait_phase starting 30
_tunnel_up() { tunnel_pid >/dev/null; }
wait_until 10 _tunnel_up || fail "no ssh tunnel while starting"
old_tunnel=$(tunnel_pid)
starting_job=$(status_field .job.id)
kill_daemon starting
wait_until 10 pid_gone "$old_tunnel" || fail "the killed daemon's ssh tunnel $old_tunnel lives on"
start_daemon "$plain_config"
chat_bg after-starting
code=$(wait_code after-starting)
expect_ok after-starting "$code"
assert_eq "$starting_job" "$(status_field .job.id)" 'the starting job is adopted'
assert_eq "$starting_job" "$(new_jobs "$before")" 'exactly one job'
end_phase starting

# --- ready ----------------------------------------------------------------------------------------
before=$(named_jobs)
start_daemon "$plain_config"
code=$(chat ready-first)
expect_ok ready-first "$code"
ready_job=$(status_field .job.id)
kill_daemon ready
start_daemon "$plain_config"
code=$(chat after-ready)
expect_ok after-ready "$code"
assert_eq "$ready_job" "$(status_field .job.id)" 'the running job is adopted'
assert_eq "$ready_job" "$(new_jobs "$before")" 'exactly one job'
end_phase ready
