#!/usr/bin/env bash
# e2e.daemon_node: a real Ollama client library through slullama-daemon on the Slurm bed. The
# `ollama` npm package (installed here with npm; cached under the bed user's ~/.cache) lists
# models, chats (streamed and not) and generates (streamed and not) with a bearer token, sees
# Ollama's own 404 for an unknown model and slullama's 401 for a wrong token. Needs node and npm
# (scripts/deps installs them) and the npm registry.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama-daemon standin-ollama
cd "$E2E_SCRATCH"

command -v node >/dev/null || fail "node is not installed (scripts/deps installs nodejs): this suite drives the ollama npm client"
command -v npm >/dev/null || fail "npm is not installed (scripts/deps installs npm): this suite installs the ollama npm client"
src=$E2E_DIR/node
[[ -r $src/package.json && -r $src/client.mjs ]] || fail "missing $src/package.json or client.mjs (tests/e2e/node)"

# Installed once per package.json: the registry is slow to ask on every run.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/slullama-e2e/node-$(sha256sum "$src/package.json" | cut -c1-16)
if [[ ! -f $cache/node_modules/ollama/package.json ]]; then
    log "npm install ollama into $cache"
    rm -rf "$cache.tmp.$$"
    mkdir -p "$cache.tmp.$$"
    cp "$src/package.json" "$cache.tmp.$$/"
    if ! (cd "$cache.tmp.$$" && timeout 300 npm install --no-audit --no-fund --loglevel=error \
        --cache "$E2E_SCRATCH/npm-cache" >"$E2E_SCRATCH/npm.log" 2>&1); then
        rm -rf "$cache.tmp.$$"
        fail "npm install of the ollama client failed (is the npm registry reachable?): $(tail -n 20 "$E2E_SCRATCH/npm.log")"
    fi
    rm -rf "$cache"
    mv "$cache.tmp.$$" "$cache"
fi
cp "$src/client.mjs" "$cache/client.mjs"
log "ollama npm client $(jq -r .version "$cache/node_modules/ollama/package.json"), node $(node --version)"

DAEMON_TOKEN=node-secret-$RANDOM$RANDOM
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.idle_timeout=5'
start_daemon "$DAEMON_CONFIG"

rc=0
SLULLAMA_URL=$DAEMON_URL SLULLAMA_TOKEN=$DAEMON_TOKEN timeout 120 node "$cache/client.mjs" >node.out 2>node.err || rc=$?
((rc == 0)) || fail "the ollama npm client failed (exit $rc): $(cat node.err node.out); daemon log: $(tail -n 20 "$E2E_SCRATCH/daemon.log")"
log "client saw: $(cat node.out)"
jq -e '.models | index("llama3.2:1b") != null' node.out >/dev/null || fail "client output: $(cat node.out)"
jq -e '.chat_stream_parts == 7 and .unknown_model_status == 404 and .wrong_token_status == 401' node.out >/dev/null ||
    fail "client output: $(cat node.out)"

# The client's requests went through one job, woken by the first of them.
assert_eq 1 "$(count_words "$(named_jobs)")" 'jobs after the client run'
status=$(daemon_status)
# list, chat, streamed chat, generate, streamed generate, unknown model (the 401 is not counted).
jq -e '.phase == "ready" and .request_count == 6 and .active_requests == 0' <<<"$status" >/dev/null ||
    fail "status after the client run: $status"
