#!/usr/bin/env bash
# e2e.daemon_restart: restart safety of slullama-daemon on the real Slurm bed.
# - SIGKILL while a job runs: the ssh tunnel goes with the daemon; a new daemon adopts the job
#   from its state file (exactly one job in squeue) and serves requests without a new sbatch.
# - SIGTERM with a stream in flight: the stream finishes, the daemon exits 0, the job is
#   cancelled (gone from squeue) and the state file is cleared. No orphan jobs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama-daemon standin-ollama
cd "$E2E_SCRATCH"

# shellcheck disable=SC2034 # read by write_daemon_config, req, daemon_status
DAEMON_TOKEN=restart-secret-$RANDOM$RANDOM
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.idle_timeout=5' 'server.drain_timeout=30'
start_daemon "$DAEMON_CONFIG"
mapfile -t auth < <(auth_args)
ask() { # NAME: a short chat; asserts the answer
    assert_eq 200 "$(req "$1" POST /api/chat --data-binary "$(chat_body "$1" false '{"options":{"num_predict":2}}')")" "chat $1"
    assert_eq 'tok0 tok1' "$(jq -r .message.content "$1.body")" "answer to $1"
}

# --- SIGKILL while the job runs; the next daemon adopts it ------------------------------------------
ask first
job=$(named_jobs)
assert_eq 1 "$(count_words "$job")" 'jobs after the first request'
assert_eq "$job" "$(status_field .job.id)" 'status job id'
state_files=$(grep -rl "\"$job\"" "$DAEMON_LOG_DIR" --include='*.json' || true)
[[ -n $state_files ]] || fail "no state file naming job $job in $DAEMON_LOG_DIR: $(ls -la "$DAEMON_LOG_DIR")"
old_pid=$(daemon_pid)
old_tunnel=$(tunnel_pid "$old_pid") || fail "no ssh tunnel under the daemon"
log "SIGKILL daemon $old_pid (tunnel $old_tunnel, job $job)"
kill -KILL "$old_pid"
wait_until 10 pid_gone "$old_pid" || fail "daemon $old_pid survived SIGKILL"
# Its ssh dies with it (PR_SET_PDEATHSIG): no orphan holding a port.
wait_until 10 pid_gone "$old_tunnel" || fail "the ssh tunnel $old_tunnel outlived its SIGKILLed daemon"
assert_eq RUNNING "$(job_state "$job")" "job $job after the daemon died"
cp "$E2E_SCRATCH/daemon.log" "$E2E_SCRATCH/daemon-killed.log"

start_daemon "$DAEMON_CONFIG"
grep -q "adopt" "$E2E_SCRATCH/daemon.log" || fail "the restarted daemon does not mention adopting: $(cat "$E2E_SCRATCH/daemon.log")"
wait_phase ready 60
assert_eq "$job" "$(status_field .job.id)" 'job adopted by the restarted daemon'
ask second
ask third
assert_eq "$job" "$(live_named_jobs)" 'live jobs after the restart (exactly the adopted one)'
assert_eq "$job" "$(named_jobs)" 'jobs ever submitted (no second sbatch)'
assert_eq 0 "$(submissions_in_log)" 'sbatch calls of the restarted daemon'
status=$(daemon_status)
jq -e '.tunnel_alive == true and .request_count == 2' <<<"$status" >/dev/null || fail "status after adoption: $status"

# --- SIGTERM with a stream in flight ------------------------------------------------------------------
# 8 tokens 500 ms apart: the stream outlasts the signal and must still complete.
curl -sS -N --max-time 60 "${auth[@]}" -H 'Content-Type: application/json' \
    --data-binary "$(chat_body drain true '{"options":{"num_predict":8,"standin_token_delay_ms":500}}')" \
    "$DAEMON_URL/api/chat" >drain.ndjson 2>drain.err &
curl_pid=$!
wait_until 30 lines_at_least drain.ndjson 2 || fail "stream did not start: $(cat drain.err)"
pid=$(daemon_pid)
log "SIGTERM daemon $pid during a stream"
kill -TERM "$pid"
# New connections are refused while it drains.
refusing() { ! curl -s -o /dev/null --max-time 2 "$DAEMON_URL/slullama/health"; }
wait_until 10 refusing ||
    fail "the daemon still accepts connections after SIGTERM"
rc=0
wait "$curl_pid" || rc=$?
assert_eq 0 "$rc" "curl exit code of the stream across SIGTERM ($(cat drain.err))"
assert_eq 9 "$(line_count drain.ndjson)" "lines of the stream across SIGTERM: $(cat drain.ndjson)"
jq -e -s '.[-1].done == true' drain.ndjson >/dev/null || fail "the drained stream did not end with done"
wait_until 30 pid_gone "$pid" || fail "daemon $pid still running 30 s after SIGTERM: $(tail -n 20 "$E2E_SCRATCH/daemon.log")"
rc=0
wait "$pid" || rc=$?
assert_eq 0 "$rc" "exit code of the daemon after SIGTERM ($(tail -n 5 "$E2E_SCRATCH/daemon.log"))"
wait_job_gone "$job" 30
assert_match "$(job_state "$job" || echo gone)" '^(CANCELLED|gone)$' "Slurm's state of job $job after SIGTERM"
assert_eq '' "$(live_named_jobs)" 'live jobs after SIGTERM'
state_left=$(grep -rl "\"$job\"" "$DAEMON_LOG_DIR" --include='*.json' || true)
assert_eq '' "$state_left" 'state files still naming the cancelled job'

# A daemon started now finds nothing to adopt and stays asleep.
start_daemon "$DAEMON_CONFIG"
status=$(daemon_status)
jq -e '.phase == "sleeping" and .job.id == null' <<<"$status" >/dev/null || fail "status of a fresh daemon: $status"
assert_eq '' "$(live_named_jobs)" 'live jobs after a clean restart'
