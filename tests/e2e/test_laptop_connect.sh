#!/usr/bin/env bash
# e2e.laptop_connect: the laptop side against the real bed. `slullama connect` opens the libssh
# tunnel to the bed's sshd (host key from the user's known_hosts, key from ~/.ssh) and checks the
# token; through localhost:<local> curl cold-starts a real Slurm job (/api/tags) and streams a
# chat, the `ollama` npm client runs its checks, `slullama status|wake HOST` go through their own
# short-lived tunnel (sleep, wake, boot), a busy local port, a wrong token, an absent daemon and
# an unknown host key without a terminal are refused with clear messages, and SIGINT closes the
# tunnel (port free again).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama slullama-daemon standin-ollama
cd "$E2E_SCRATCH"

HOST=$BED_USER@$BED_NODE
DAEMON_TOKEN=laptop-secret-$RANDOM$RANDOM$RANDOM
# 0.2 min: the job goes to sleep 12 s after its last request, so the suite can wake it again.
write_daemon_config "$E2E_SCRATCH/daemon" 'slurm.idle_timeout=0.2'
start_daemon "$DAEMON_CONFIG"

# The laptop's config: how to reach the head node and the token; the ports come as flags.
client_config() { # FILE [EXTRA_TOML_LINE...]
    local file=$1 line
    shift
    {
        echo '[client]'
        echo "ssh_port = $BED_SSH_PORT"
        echo "token = \"$DAEMON_TOKEN\""
        for line in "$@"; do echo "$line"; done
    } >"$file"
    chmod 0600 "$file"
}
CLIENT_CFG=$E2E_SCRATCH/client.toml
client_config "$CLIENT_CFG"
LOCAL_PORT=$(free_port "$DAEMON_PORT" "$OLLAMA_PORT")
BASE=http://127.0.0.1:$LOCAL_PORT
AUTH=(-H "Authorization: Bearer $DAEMON_TOKEN")

# --- slullama connect ----------------------------------------------------------------------------
start_bg connect slullama connect "$HOST" --port "$DAEMON_PORT" --local-port "$LOCAL_PORT" \
    --config "$CLIENT_CFG"
connect_log() { cat "$E2E_SCRATCH/connect.log"; }
_connect_open() {
    bg_alive connect || fail "slullama connect exited: $(connect_log)"
    grep -q 'Token accepted' "$E2E_SCRATCH/connect.log"
}
wait_until 30 _connect_open || fail "slullama connect did not open and check the token: $(connect_log)"
assert_contains "$(connect_log)" "Tunnel open: localhost:$LOCAL_PORT → $BED_NODE:$DAEMON_PORT" 'connect output'
assert_contains "$(connect_log)" 'Token accepted by the daemon (phase: sleeping)' 'connect output'
assert_not_contains "$(connect_log)" "$DAEMON_TOKEN" 'connect output (token must not be printed)'
# The tunnel's listener is slullama connect itself, on loopback only.
assert_eq "$(bg_pid connect)" "$(port_pids "$LOCAL_PORT")" "owner of local port $LOCAL_PORT"
assert_eq "127.0.0.1:$LOCAL_PORT" "$(ss -Htln "sport = :$LOCAL_PORT" | awk '{print $4}' | sort -u)" \
    'tunnel listen address'
assert_eq '' "$(named_jobs)" 'jobs before any request (the token check must not wake)'

# --- slullama status HOST through its own tunnel --------------------------------------------------
rc=0
slullama status "$HOST" --port "$DAEMON_PORT" --config "$CLIENT_CFG" -v >status0.json 2>status0.err || rc=$?
assert_eq 0 "$rc" "exit code of slullama status HOST ($(cat status0.err))"
assert_eq sleeping "$(jq -r .phase status0.json)" 'phase via slullama status HOST'
# It went through a tunnel of its own (an ephemeral loopback port), not straight to HOST.
assert_match "$(cat status0.err)" "tunnel open: 127\.0\.0\.1:[0-9]+ -> $BED_NODE:$DAEMON_PORT" \
    'slullama status -v (tunnel line)'

# --- cold start through the tunnel: curl ------------------------------------------------------------
log "cold /api/tags through the tunnel"
tags=$(curl -fsS --max-time 120 "${AUTH[@]}" "$BASE/api/tags") || fail "/api/tags through the tunnel failed"
jq -e '.models | type == "array" and length > 0' <<<"$tags" >/dev/null || fail "/api/tags: $tags"
model=$(jq -r '.models[0].name' <<<"$tags")
job_a=$(named_jobs)
assert_eq 1 "$(count_words "$job_a")" "jobs after the cold start ($job_a)"
assert_eq RUNNING "$(job_state "$job_a")" "state of job $job_a"
log "cold start booted job $job_a"

curl -fsS -N --max-time 60 "${AUTH[@]}" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hello laptop\"}],\"stream\":true,\"options\":{\"num_predict\":5}}" \
    "$BASE/api/chat" >chat.ndjson || fail "streamed /api/chat through the tunnel failed"
assert_eq 6 "$(grep -c . chat.ndjson || true)" "streamed chat lines (5 tokens + final): $(cat chat.ndjson)"
jq -e -s '(.[:-1] | all(.done == false and .message.role == "assistant")) and (.[-1].done == true)' \
    chat.ndjson >/dev/null || fail "chat stream shape: $(head -c 2000 chat.ndjson)"
assert_eq 'tok0 tok1 tok2 tok3 tok4' "$(jq -j -s 'map(.message.content // "") | join("")' chat.ndjson)" \
    'streamed chat content'

# Tools that know nothing of tokens: the tunnel adds [client] token to every request head that
# has no Authorization header (inject_token, default on) — on each request of a keep-alive
# connection, and before a body sent after `Expect: 100-continue`.
assert_eq 200 "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$BASE/api/tags")" \
    '/api/tags without Authorization through the tunnel (token added)'
codes=$(curl -sS -o /dev/null -o /dev/null -o /dev/null -w '%{http_code}:%{num_connects} ' --max-time 20 \
    "$BASE/api/version" "$BASE/api/tags" "$BASE/slullama/status")
assert_eq '200:1 200:0 200:0 ' "$codes" 'three requests on one keep-alive connection without Authorization'
curl -fsS --max-time 60 -H 'Expect: 100-continue' -H 'Content-Type: application/json' \
    -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"no token\"}],\"stream\":false,\"options\":{\"num_predict\":3}}" \
    "$BASE/api/chat" >chat_plain.json || fail "POST /api/chat without Authorization through the tunnel failed"
assert_eq 'tok0 tok1 tok2' "$(jq -r .message.content chat_plain.json)" 'chat without Authorization (Expect: 100-continue)'
# A request that brings its own Authorization is left alone: a wrong one still gets 401.
assert_eq 401 "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 \
    -H "Authorization: Bearer wrong-$RANDOM" "$BASE/api/tags")" '/api/tags with a wrong token through the tunnel'
assert_eq 401 "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 \
    -H 'authorization: Basic Zm9vOmJhcg==' "$BASE/api/tags")" '/api/tags with a lowercase foreign authorization'
# inject_token = false: a plain TCP forward again; without the token the daemon answers 401.
client_config noinject.toml 'inject_token = false'
NOINJECT_PORT=$(free_port "$DAEMON_PORT" "$OLLAMA_PORT" "$LOCAL_PORT")
start_bg connect_noinject slullama connect "$HOST" --port "$DAEMON_PORT" --local-port "$NOINJECT_PORT" \
    --config noinject.toml
_noinject_open() {
    bg_alive connect_noinject || fail "slullama connect (inject_token = false) exited: $(cat "$E2E_SCRATCH/connect_noinject.log")"
    grep -q 'Token accepted' "$E2E_SCRATCH/connect_noinject.log"
}
wait_until 30 _noinject_open || fail "slullama connect (inject_token = false) did not open: $(cat "$E2E_SCRATCH/connect_noinject.log")"
assert_eq 401 "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$NOINJECT_PORT/api/tags")" \
    '/api/tags without a token through a tunnel with inject_token = false'
assert_eq 200 "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "${AUTH[@]}" "http://127.0.0.1:$NOINJECT_PORT/api/tags")" \
    '/api/tags with the token through a tunnel with inject_token = false'
stop_bg connect_noinject INT
assert_not_contains "$(cat "$E2E_SCRATCH/connect_noinject.log")" "$DAEMON_TOKEN" 'connect output (inject_token = false)'

# --- the ollama npm client through the tunnel -------------------------------------------------------
# Installed once into the bed user's cache (npm's ordinary client); reused while package.json
# is unchanged. Concurrent suites take turns through the lock.
node_client_dir() {
    local src=$E2E_DIR/node dir=$BED_HOME/.cache/slullama-e2e/node
    [[ -f $src/package.json && -f $src/client.mjs ]] || fail "tests/e2e/node (client.mjs, package.json) missing in $E2E_DIR"
    mkdir -p "$dir"
    (
        flock -w 300 9 || fail "npm cache lock busy"
        if ! cmp -s "$src/package.json" "$dir/package.json" || [[ ! -d $dir/node_modules/ollama ]]; then
            cp -f "$src/package.json" "$dir/package.json"
            (cd "$dir" && timeout 300 npm install --no-audit --no-fund --no-update-notifier \
                --loglevel=error >"$E2E_SCRATCH/npm.log" 2>&1) ||
                fail "npm install in $dir failed: $(tail -n 20 "$E2E_SCRATCH/npm.log")"
        fi
        cp -f "$src"/*.mjs "$dir/"
    ) 9>"$dir.lock" || return 1
    printf '%s\n' "$dir"
}
ndir=$(node_client_dir) || fail 'cannot set up the ollama npm client'
log "ollama npm client ($(jq -r .version "$ndir/node_modules/ollama/package.json")) through the tunnel"
seen=$(cd "$ndir" && SLULLAMA_URL=$BASE SLULLAMA_TOKEN=$DAEMON_TOKEN timeout 120 node client.mjs 2>node.err) ||
    fail "ollama npm client through the tunnel failed: $(cat "$ndir/node.err" 2>/dev/null)"
jq -e '.chat == "tok0 tok1 tok2 tok3 tok4" and .chat_stream_parts == 7 and .wrong_token_status == 401' \
    <<<"$seen" >/dev/null || fail "ollama npm client saw: $seen"
log "npm client: $seen"

rc=0
slullama status "$HOST" --port "$DAEMON_PORT" --config "$CLIENT_CFG" >status1.json 2>status1.err || rc=$?
assert_eq 0 "$rc" "exit code of slullama status HOST while ready ($(cat status1.err))"
jq -e --arg job "$job_a" --arg node "$BED_NODE" \
    '.phase == "ready" and .job.id == $job and .job.node == $node and .request_count >= 2' \
    status1.json >/dev/null || fail "status HOST while ready: $(cat status1.json)"
assert_eq 1 "$(count_words "$(named_jobs)")" 'jobs after the warm requests'

# --- sleep, then slullama wake HOST boots a new job ------------------------------------------------
tunnel_status() { curl -fsS --max-time 10 "${AUTH[@]}" "$BASE/slullama/status"; }
tunnel_phase_is() { [[ $(tunnel_status 2>/dev/null | jq -r .phase) == "$1" ]]; }
log "waiting for the idle timeout (12 s)"
wait_until 90 tunnel_phase_is sleeping || fail "daemon did not go to sleep: $(tunnel_status)"
wait_job_gone "$job_a" 60

rc=0
slullama wake "$HOST" --port "$DAEMON_PORT" --config "$CLIENT_CFG" >wake.json 2>wake.err || rc=$?
assert_eq 0 "$rc" "exit code of slullama wake HOST ($(cat wake.err))"
assert_match "$(jq -r .phase wake.json)" '^(submitting|queued|starting|ready)$' 'phase in the wake answer'
status_ready() {
    slullama status "$HOST" --port "$DAEMON_PORT" --config "$CLIENT_CFG" 2>/dev/null | jq -e '.phase == "ready"' >/dev/null
}
wait_until 90 status_ready || fail "not ready after slullama wake HOST: $(tunnel_status)"
job_b=$(named_jobs | grep -vx "$job_a" || true)
assert_eq 1 "$(count_words "$job_b")" "jobs booted by slullama wake HOST (all: $(named_jobs | xargs))"
assert_eq RUNNING "$(job_state "$job_b")" "state of job $job_b"
log "slullama wake HOST booted job $job_b"

# --- what goes wrong, said clearly ------------------------------------------------------------------
# A wrong token: refused by the daemon, exit 1.
rc=0
slullama status "$HOST" --port "$DAEMON_PORT" --config "$CLIENT_CFG" --token "wrong-$RANDOM" \
    >/dev/null 2>badtoken.err || rc=$?
assert_eq 1 "$rc" 'exit code of slullama status HOST with a wrong token'
assert_contains "$(cat badtoken.err)" 'token rejected' 'slullama status HOST with a wrong token'

# No daemon on that port of the head node: the head node's refusal, exit 1. (Port 1: only root
# may listen there, so no other program on the machine takes it meanwhile.)
rc=0
nobody=1
port_free "$nobody" || fail "something listens on port $nobody"
slullama status "$HOST" --port "$nobody" --config "$CLIENT_CFG" >/dev/null 2>nodaemon.err || rc=$?
assert_eq 1 "$rc" 'exit code of slullama status HOST with no daemon there'
assert_contains "$(cat nodaemon.err)" "could not connect to 127.0.0.1:$nobody" 'slullama status HOST with no daemon'

# A busy local port: one line with the fix, exit 1, the running tunnel unharmed.
rc=0
timeout 30 slullama connect "$HOST" --port "$DAEMON_PORT" --local-port "$LOCAL_PORT" \
    --config "$CLIENT_CFG" </dev/null >busy.out 2>busy.err || rc=$?
assert_eq 1 "$rc" "exit code of a second slullama connect on port $LOCAL_PORT ($(cat busy.err))"
assert_contains "$(cat busy.err)" "local port $LOCAL_PORT is in use" 'busy local port message'
assert_contains "$(cat busy.err)" 'local_port' 'busy local port message (the fix)'
assert_eq 1 "$(grep -c . busy.err)" "busy local port: one line, not a stack of errors: $(cat busy.err)"
http_ok "$BASE/slullama/health" || fail 'the first tunnel broke after the refused second one'

# An unknown host key with no terminal: refused, nothing written to known_hosts, exit non-zero.
: >empty_known_hosts
client_config unknown.toml "known_hosts = \"$E2E_SCRATCH/empty_known_hosts\""
rc=0
setsid timeout 30 slullama connect "$HOST" --port "$DAEMON_PORT" --local-port "$(free_port)" \
    --config unknown.toml </dev/null >unknown.out 2>unknown.err || rc=$?
assert_ne 0 "$rc" "exit code of slullama connect with an unknown host key ($(cat unknown.err))"
assert_ne 124 "$rc" 'slullama connect with an unknown host key must not hang'
assert_match "$(cat unknown.err)" 'SHA256:[A-Za-z0-9+/]{20,}' 'unknown host key message (fingerprint)'
assert_contains "$(cat unknown.err)" 'no terminal' 'unknown host key message'
assert_not_contains "$(cat unknown.out)" 'Tunnel open' 'slullama connect with an unknown host key'
assert_eq 0 "$(stat -c %s empty_known_hosts)" 'known_hosts size after refusing the key'

# --- Ctrl+C closes the tunnel --------------------------------------------------------------------------
pid=$(bg_pid connect)
kill -INT "$pid"
wait_until 15 pid_gone "$pid" || fail "slullama connect still running 15 s after SIGINT"
rc=0
wait "$pid" || rc=$?
assert_eq 0 "$rc" 'exit code of slullama connect after SIGINT'
assert_contains "$(connect_log)" 'Tunnel closed.' 'connect output after SIGINT'
wait_until 10 port_free "$LOCAL_PORT" || fail "port $LOCAL_PORT still listening after SIGINT"
rm -f "$E2E_STATE/connect.pid"
log "SIGINT closed the tunnel; port $LOCAL_PORT free"
