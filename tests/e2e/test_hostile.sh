#!/usr/bin/env bash
# e2e.hostile: a real daemon on the bed with a distinctive token (given both in config.toml and
# as SLULLAMA_TOKEN, the two ways users pass it). Good and bad requests, a full boot and a
# streamed chat; then the token must appear nowhere: not in any file the run wrote (daemon log
# at debug level, job logs, rendered job script, state file, stand-in request log, the bed's
# Slurm logs), not in `ps -eo args`, not in the job's environment, not in any answer; and no
# Authorization header reaches the model server. Also the [server] limits from config.toml:
# a slow head is cut off at header_timeout (408), 1 MB of headers gets 431, a silent
# connection is closed at keepalive_timeout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama-daemon standin-ollama

TOKEN=hostile-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')-TOKEN
DAEMON_TOKEN=$TOKEN
export STANDIN_REQUEST_LOG=$E2E_SCRATCH/standin-requests.log
write_daemon_config "$E2E_SCRATCH/d" server.header_timeout=2 server.keepalive_timeout=3 \
    server.stall_timeout=5 slurm.idle_timeout=5
cd "$E2E_SCRATCH"
# The environment passes it too (it wins over the file); it must not travel on to Slurm.
SLULLAMA_TOKEN=$TOKEN start_daemon "$DAEMON_CONFIG" -v

# raw PORT: sends stdin as it comes (never closing the sending side) and prints everything the
# daemon answers until it closes the connection.
raw() { timeout "${RAW_MAX:-20}" python3 -c '
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def pump():
    try:
        while True:
            b = sys.stdin.buffer.read1(65536)
            if not b:
                return
            s.sendall(b)
    except OSError:
        pass
threading.Thread(target=pump, daemon=True).start()
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except ConnectionResetError:
    pass
sys.stdout.buffer.write(out)
sys.stdout.flush()
os._exit(0)' "$1"; }

# --- refused without the right token ----------------------------------------------------------
answers=$E2E_SCRATCH/answers
mkdir -p "$answers"
bad_auth=('' "Bearer ${TOKEN%?}" "Bearer ${TOKEN}x" "Bearer ${TOKEN^^}" "Basic $TOKEN" "$TOKEN")
i=0
for path in /api/tags /slullama/status /slullama/wake /v1/models; do
    method=GET
    [[ $path != /slullama/wake ]] || method=POST
    for auth in "${bad_auth[@]}"; do
        i=$((i + 1))
        args=(-s -o "$answers/bad$i.body" -D "$answers/bad$i.head" -w '%{http_code}' -X "$method")
        [[ -z $auth ]] || args+=(-H "Authorization: $auth")
        code=$(curl "${args[@]}" --max-time 10 "$DAEMON_URL$path" || true)
        assert_eq 401 "$code" "$method $path with Authorization '${auth:0:12}...'"
        assert_contains "$(cat "$answers/bad$i.head")" 'WWW-Authenticate: Bearer' "401 head"
    done
done
code=$(curl -s -o "$answers/health.body" -w '%{http_code}' --max-time 10 "$DAEMON_URL/slullama/health")
assert_eq 200 "$code" 'health without a token'
assert_eq sleeping "$(status_field .phase)" 'phase after refused requests (nothing woke it)'
assert_eq '' "$(named_jobs)" 'jobs after refused requests'

# --- served with it: a cold start and a streamed chat ------------------------------------------
code=$(REQ_MAX_TIME=150 req "$answers/tags" GET /api/tags)
assert_eq 200 "$code" "GET /api/tags with the token: $(cat "$answers/tags.body")"
job=$(live_named_jobs | head -n 1)
assert_match "$job" '^[0-9]+$' 'the daemon job'
code=$(req "$answers/chat" POST /api/chat -H 'Content-Type: application/json' --data-binary "$(chat_body 'hello hostile')")
assert_eq 200 "$code" "streamed chat: $(head -c 400 "$answers/chat.body")"
(($(grep -c . "$answers/chat.body") >= 2)) || fail "chat stream: $(cat "$answers/chat.body")"
code=$(req "$answers/status" GET /slullama/status)
assert_eq 200 "$code" 'status with the token'
code=$(req "$answers/wake" POST /slullama/wake)
assert_eq 202 "$code" 'wake with the token'

# While the job runs: process listings (everyone's) and the job's own environment.
ps_args=$(ps -eo args)
assert_not_contains "$ps_args" "$TOKEN" 'ps -eo args'
assert_contains "$ps_args" "slullama-daemon --config $DAEMON_CONFIG" 'ps -eo args (sanity)'
job_env=''
for pid in $(sl scontrol listpids "$job" 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}'); do
    job_env+=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null || true)
done
assert_ne '' "$job_env" "environment of job $job's processes (scontrol listpids)"
assert_contains "$job_env" "SLURM_JOB_ID=$job" 'job environment (sanity)'
assert_not_contains "$job_env" "$TOKEN" "environment of job $job"
# The state file exists while a job runs (a clean shutdown removes it): check it now.
state_file=$DAEMON_LOG_DIR/daemon-state.json
[[ -s $state_file ]] || fail "no state file at $state_file while job $job runs"
assert_contains "$(<"$state_file")" "$job" 'state file (sanity)'
assert_not_contains "$(<"$state_file")" "$TOKEN" 'state file'

# --- the [server] limits from config.toml ------------------------------------------------------
# A head dripping in one byte a second: cut off at header_timeout (2 s) with 408.
started=$(date +%s)
slow=$( { for c in G E T ' ' / a p i / t a g s; do printf %s "$c"; sleep 1; done; } | RAW_MAX=30 raw "$DAEMON_PORT" || true)
assert_match "$slow" '^HTTP/1.1 408 ' 'slowloris answer'
(($(date +%s) - started < 12)) || fail "slowloris was not cut off by header_timeout = 2"
# 1 MB of headers: 431 and closed.
big=$( { printf 'GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-Big: ' "$TOKEN"
    head -c 1048576 /dev/zero | tr '\0' b; printf '\r\n\r\n'; } | raw "$DAEMON_PORT" || true)
assert_match "$big" '^HTTP/1.1 431 ' '1 MB of headers'
assert_not_contains "$big" "$TOKEN" '431 answer'
# A connection that sends nothing is closed at keepalive_timeout (3 s): raw returns (EOF).
started=$(date +%s)
silent=$(RAW_MAX=25 raw "$DAEMON_PORT" </dev/null; echo "rc=$?")
assert_eq 'rc=0' "$silent" 'silent connection closed by the daemon (not by the timeout)'
(($(date +%s) - started < 20)) || fail "silent connection was not closed by keepalive_timeout = 3"

# --- the model server never saw a token -------------------------------------------------------
[[ -s $STANDIN_REQUEST_LOG ]] || fail "stand-in request log $STANDIN_REQUEST_LOG is empty"
seen=$(<"$STANDIN_REQUEST_LOG")
assert_contains "$seen" 'POST /api/chat' 'stand-in request log'
assert_not_contains "${seen,,}" 'authorization' 'requests reaching the model server'
assert_not_contains "$seen" "$TOKEN" 'requests reaching the model server'

# --- nothing the run wrote holds the token -----------------------------------------------------
stop_daemon # drains, cancels the job, writes its last log lines and state
wait_job_gone "$job" 60
written=()
while IFS= read -r -d '' f; do
    # config.toml is where the operator put the token; everything else must be clean.
    [[ $f == "$DAEMON_CONFIG" ]] || written+=("$f")
done < <(find "$E2E_SCRATCH" "$DAEMON_LOG_DIR" -type f -print0)
for f in "$BED_DIR"/log/* "$BED_LOG_DIR"/*; do
    [[ -f $f && -r $f ]] && written+=("$f")
done
log "searching ${#written[@]} files for the token"
kinds=$(printf '%s\n' "${written[@]}")
assert_contains "$kinds" "$E2E_SCRATCH/daemon.log" 'files searched'
assert_match "$kinds" "slullama-$job\\.log" 'files searched (job log)'
assert_match "$kinds" "$E2E_JOB_NAME-job\\.sh" 'files searched (rendered job script)'
leaks=$(grep -l -F -- "$TOKEN" "${written[@]}" 2>/dev/null || true)
assert_eq '' "$leaks" 'files containing the token'
assert_contains "$(cat "$E2E_SCRATCH/daemon.log")" 'token set: yes' 'daemon log (sanity)'
