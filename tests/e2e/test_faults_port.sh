#!/usr/bin/env bash
# e2e.faults_port (through tests/e2e/faultctl, as root, for the "another user" part): the model
# server's port on the node.
# - Another program (here a stranger's model server) already listens on the configured port:
#   with a fixed [ollama] port the job fails clearly and no request reaches the stranger; with
#   port = 0 the job picks a free port, reports it in its comment (slullama_port=N), the daemon
#   tunnels there and requests work, again without reaching the stranger.
# - The job's model server is reachable only through the daemon: it listens on 127.0.0.1 of the
#   node, so another user connecting to the node's network address fails. (Users logged in on the
#   node itself can reach its loopback port: a documented limit, see docs/GUARANTEES.md.)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/faults_lib.sh"
fault_suite faultctl

DAEMON_TOKEN=port-secret-$RANDOM$RANDOM
# The stranger: a model server of someone else on the port our configuration names.
stranger_port=$(free_port)
start_bg stranger env OLLAMA_HOST="127.0.0.1:$stranger_port" STANDIN_REQUEST_LOG="$E2E_SCRATCH/stranger.requests" \
    "$BED_BIN/standin-ollama" serve
wait_until 20 port_listening "$stranger_port" || fail "the stranger did not listen: $(cat stranger.log)"
stranger_chats() { grep -c '^POST /api/' stranger.requests 2>/dev/null || true; }

# --- a fixed port someone else holds --------------------------------------------------------------
write_daemon_config "$E2E_SCRATCH/fixed" "ollama.port=$stranger_port"
start_daemon "$DAEMON_CONFIG"
code=$(chat fixed)
log "fixed port $stranger_port taken: HTTP $code: $(error_of fixed)"
assert_eq 502 "$code" 'a job whose model server cannot listen'
assert_contains "$(error_of fixed)" 'ended before the model server was ready' 'error body'
failed_job=$(named_jobs | tail -n 1)
assert_eq FAILED "$(job_state "$failed_job")" "job $failed_job"
assert_contains "$(cat "$DAEMON_LOG_DIR/slullama-$failed_job.log")" "$stranger_port" 'the job log names the port'
assert_eq 0 "$(stranger_chats)" 'API requests that reached the stranger'
log "the stranger saw $(grep -c "^GET /api/version" stranger.requests 2>/dev/null || true) health probes (documented risk), no API request"
stop_daemon
assert_no_live_jobs

# --- port = 0: the job picks a port and reports it ------------------------------------------------
write_daemon_config "$E2E_SCRATCH/auto" 'ollama.port=0'
start_daemon "$DAEMON_CONFIG"
for i in 1 2 3; do
    code=$(chat "auto-$i")
    expect_ok "auto-$i" "$code"
done
job=$(status_field .job.id)
reported=$(job_field "$job" Comment)
port=$(tunnel_remote_port)
log "job $job comment '$reported', tunnel to port $port"
assert_eq "slullama_port=$port" "$reported" 'the tunnel goes to the reported port'
assert_ne "$stranger_port" "$port" 'not the stranger'
assert_contains "$(cat daemon.log)" "job $job reported port $port" 'daemon log'
server=$(job_listener "$job" "$port") || fail "no process of job $job listens on $port"
assert_eq 0 "$(stranger_chats)" 'API requests that reached the stranger'

# --- reachable only through the daemon ------------------------------------------------------------
listen=$(ss -Htln "sport = :$port" | awk '{print $4}' | sort -u | tr '\n' ' ')
assert_eq "127.0.0.1:$port " "$listen" "the model server's listening address"
node_addr=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n 1)
if [[ -n $node_addr ]]; then
    if out=$(fault connect-as-other "$node_addr" "$port" 2>/dev/null); then
        fail "user nobody reached the model server at $node_addr:$port: $out"
    fi
    log "user nobody -> $node_addr:$port: refused ($(tail -n 1 <<<"$out"))"
    if curl -sS --max-time 5 "http://$node_addr:$port/api/version" >/dev/null 2>&1; then
        fail "the model server answers on the network address $node_addr:$port"
    fi
else
    log "no global IPv4 address on this machine: the network-address check is skipped"
fi
code=$(chat through-daemon)
expect_ok through-daemon "$code"
log "model server pid $server serves only through the daemon's tunnel"
stop_daemon
assert_no_live_jobs
