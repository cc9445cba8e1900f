#!/usr/bin/env bash
# e2e.bed: the test bed runs slullama's own job script. As the unprivileged user: render the
# built-in template (`slullama serve --dry-run`) with the stand-in as ollama, submit it, wait for
# RUNNING, reach the stand-in through `ssh -N -L` to the node, list models and stream a chat,
# then scancel and see the job and the server process gone.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

for b in slullama standin-ollama; do
    [[ -x $BED_BIN/$b ]] || fail "$BED_BIN/$b missing: build it first"
done

# --- render -----------------------------------------------------------------------------------
DAEMON_TOKEN=bed-secret-$RANDOM$RANDOM
write_daemon_config "$E2E_SCRATCH/cfg"
cd "$E2E_SCRATCH"
rc=0
slullama serve --dry-run --config "$DAEMON_CONFIG" >job.sh 2>effective.txt || rc=$?
assert_eq 0 "$rc" "exit code of slullama serve --dry-run ($(cat effective.txt))"
script=$(<job.sh)
effective=$(<effective.txt)
assert_match "$script" '^#!/' 'job script first line'
assert_match "$script" $'#SBATCH[ \t]+(--partition[= ]|-p[ \t]*)gpu' 'job script partition'
assert_match "$script" $'#SBATCH[ \t]+--gres[= ]gpu:1' 'job script gres'
assert_contains "$script" "$BED_BIN/standin-ollama" 'job script'
# Ollama must listen on loopback only on the node (0.1.3 bound 0.0.0.0, bypassing the token).
# (Checked for real below: the server's listening socket.)
assert_match "$script" 'OLLAMA_HOST="?127\.0\.0\.1:' 'job script'
assert_contains "$script" "$OLLAMA_PORT" 'job script'
assert_not_contains "$script" '0.0.0.0' 'job script'
assert_contains "$effective" "$OLLAMA_PORT" 'effective configuration (stderr)'
assert_contains "$effective" "$BED_BIN/standin-ollama" 'effective configuration (stderr)'
assert_not_contains "$effective$script" "$DAEMON_TOKEN" 'dry-run output (token must be masked)'

# --- submit -----------------------------------------------------------------------------------
job=$(submit_job job.sh)
log "submitted job $job"
wait_job_state "$job" '^RUNNING$' 120
node=$(job_field "$job" NodeList)
assert_eq "$BED_NODE" "$node" 'job node'
assert_contains "$(my_jobs)" "$job|" 'squeue --me'

# --- reach the stand-in through the tunnel, as the daemon will --------------------------------
local_port=$(free_port)
open_tunnel tunnel "$local_port" "$node" "$OLLAMA_PORT"
base=http://127.0.0.1:$local_port
wait_until 60 http_ok "$base/api/tags" ||
    fail "stand-in did not answer through the tunnel: $(job_line "$job"); $(cat "$DAEMON_LOG_DIR"/* 2>/dev/null | tail -n 30)"

# The server answering is the job's own process, listening on loopback only.
server_pid=$(port_pids "$OLLAMA_PORT")
assert_match "$server_pid" '^[0-9]+$' "owner of port $OLLAMA_PORT"
assert_eq "$BED_USER" "$(ps -o user= -p "$server_pid" | tr -d ' ')" 'stand-in process owner'
addrs=$(ss -Htln "sport = :$OLLAMA_PORT" | awk '{print $4}' | sort -u)
assert_eq "127.0.0.1:$OLLAMA_PORT" "$addrs" 'stand-in listen address'

tags=$(curl -fsS --max-time 10 "$base/api/tags")
jq -e '.models | type == "array" and length > 0' <<<"$tags" >/dev/null || fail "/api/tags: $tags"
model=$(jq -r '.models[0].name' <<<"$tags")
assert_ne '' "$model" 'first model name'

curl -fsS -N --max-time 30 -H 'Content-Type: application/json' \
    -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hello bed\"}],\"stream\":true}" \
    "$base/api/chat" >chat.ndjson || fail "streamed /api/chat failed"
lines=$(grep -c . chat.ndjson || true)
((lines >= 2)) || fail "streamed chat has $lines lines: $(cat chat.ndjson)"
jq -e -s 'all(.[]; type == "object" and (.model | type == "string"))' chat.ndjson >/dev/null ||
    fail "chat stream is not NDJSON objects: $(head -c 2000 chat.ndjson)"
jq -e -s '(.[:-1] | all(.done == false and (.message.role == "assistant") and (.message.content | type == "string")))
          and (.[-1].done == true)' chat.ndjson >/dev/null ||
    fail "chat stream shape (done=false chunks, then done=true): $(head -c 2000 chat.ndjson)"
reply=$(jq -j -s 'map(.message.content // "") | join("")' chat.ndjson)
assert_ne '' "$reply" 'streamed chat content'
log "chat through the tunnel: $lines chunks, reply '${reply:0:60}'"

# --- cancel: the job ends and takes its server with it -----------------------------------------
sl scancel "$job"
wait_job_state "$job" '^CANCELLED$' 30
wait_until 30 pid_gone "$server_pid" || fail "stand-in (pid $server_pid) still running after scancel"
wait_until 30 port_free "$OLLAMA_PORT" || fail "port $OLLAMA_PORT still listening after scancel"
compgen -G "$DAEMON_LOG_DIR/*$job*" >/dev/null || fail "no job output for $job in $DAEMON_LOG_DIR: $(ls -la "$DAEMON_LOG_DIR")"
log "job $job cancelled, stand-in gone"
