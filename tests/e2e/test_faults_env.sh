#!/usr/bin/env bash
# e2e.faults_env (through tests/e2e/faultctl, as root): the head node's environment is broken.
# Each case: a clear error in the HTTP response and in the daemon's log, no job left behind, and
# the daemon recovers once the cause is gone.
# - munged stopped (Slurm cannot authenticate)
# - sbatch missing from PATH
# - log_dir not writable (the job script cannot be written)
# - the file system holding log_dir is full (a 16 KiB tmpfs, filled)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/faults_lib.sh"
fault_suite faultctl
on_exit fault munge-start

DAEMON_TOKEN=env-secret-$RANDOM$RANDOM

# expect_refusal NAME STATUS NEEDLE: one request gets STATUS, its error and the log contain NEEDLE.
expect_refusal() {
    local name=$1 want=$2 needle=$3 code took t0
    t0=$(now_ms)
    code=$(chat "$name")
    took=$(($(now_ms) - t0))
    log "$name: HTTP $code after $took ms: $(error_of "$name")"
    assert_eq "$want" "$code" "$name: status"
    assert_contains "$(error_of "$name")" "$needle" "$name: error body"
    assert_contains "$(cat daemon.log)" "$needle" "$name: daemon log"
    ((took < 15000)) || fail "$name: the error took $took ms"
}

# --- munged stopped -------------------------------------------------------------------------------
write_daemon_config "$E2E_SCRATCH/munge" 'slurm.command_timeout=5'
start_daemon "$DAEMON_CONFIG"
fault munge-stop
# Slurm unavailable for now, not refusing the job: 503 with Retry-After, in Slurm's words.
expect_refusal munge 503 'Munge encode failed'
assert_contains "$(error_of munge)" 'Slurm authentication failed' 'munge: error body'
assert_match "$(header_value munge.head Retry-After)" '^[0-9]+$' 'munge: Retry-After'
assert_contains "$(status_field .last_error)" 'Munge encode failed' 'munge: status error'
assert_eq sleeping "$(status_field .phase)" 'phase after the failed boot'
fault munge-start
code=$(chat munge-back)
expect_ok munge-back "$code"
stop_daemon
assert_no_live_jobs

# --- sbatch missing from PATH ---------------------------------------------------------------------
mkdir -p nosbatch
for tool in scontrol scancel squeue ssh; do ln -s "$(command -v "$tool")" "nosbatch/$tool"; done
write_daemon_config "$E2E_SCRATCH/path"
start_daemon_env "$DAEMON_CONFIG" PATH="$E2E_SCRATCH/nosbatch"
expect_refusal nosbatch 502 'sbatch could not be started'
assert_contains "$(error_of nosbatch)" 'on PATH'
stop_daemon

# --- log_dir not writable -------------------------------------------------------------------------
write_daemon_config "$E2E_SCRATCH/ro" "server.state_file=\"$E2E_SCRATCH/ro/state.json\""
chmod 0555 "$DAEMON_LOG_DIR"
on_exit chmod 0755 "$DAEMON_LOG_DIR"
start_daemon "$DAEMON_CONFIG"
expect_refusal readonly 500 'cannot write the job script'
assert_contains "$(error_of readonly)" "$DAEMON_LOG_DIR"
assert_eq '' "$(live_named_jobs)" 'no job submitted'
chmod 0755 "$DAEMON_LOG_DIR"
code=$(chat writable-again)
expect_ok writable-again "$code"
stop_daemon
assert_no_live_jobs

# --- disk full ------------------------------------------------------------------------------------
write_daemon_config "$E2E_SCRATCH/full" "server.state_file=\"$E2E_SCRATCH/full/state.json\""
fault fill-dir "$DAEMON_LOG_DIR"
on_exit fault unfill-dir "$DAEMON_LOG_DIR"
start_daemon "$DAEMON_CONFIG"
expect_refusal full 500 'cannot write the job script'
assert_contains "$(error_of full)" 'No space left on device'
fault unfill-dir "$DAEMON_LOG_DIR"
code=$(chat space-again)
expect_ok space-again "$code"
stop_daemon
assert_no_live_jobs
