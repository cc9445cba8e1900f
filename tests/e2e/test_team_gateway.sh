#!/usr/bin/env bash
# e2e.team_gateway: the team features on the real bed (docs/TEAM.md). Per-user keys made with
# `slullama keys`, picked up and revoked while the daemon runs (file watch and SIGHUP); usage
# per user in the status (own for a user, all for an admin) and persisted across a restart;
# /metrics; X-Slullama-Cold-Start on a request that waited; /api/tags answered from the cache
# while the node sleeps (no job submitted); Prefer: respond-async answered 503 + Retry-After
# while the wake goes on.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

for b in slullama slullama-daemon standin-ollama; do
    [[ -x $BED_BIN/$b ]] || fail "$BED_BIN/$b missing: build it first"
done
cd "$E2E_SCRATCH"

DAEMON_TOKEN=team-shared-$RANDOM$RANDOM
# 6 s idle timeout: the suite waits for one idle teardown.
write_daemon_config "$E2E_SCRATCH/cfg" slurm.idle_timeout=0.1
cfg=$DAEMON_CONFIG
keys=$E2E_SCRATCH/cfg/keys.toml

# team_req NAME KEY METHOD PATH [CURL_ARGS...]: head in NAME.head, body in NAME.body; prints
# the status code.
team_req() {
    local name=$1 key=$2 method=$3 path=$4 auth=()
    shift 4
    [[ -z $key ]] || auth=(-H "Authorization: Bearer $key")
    curl -sS --max-time 150 -X "$method" "${auth[@]}" -D "$name.head" -o "$name.body" \
        -w '%{http_code}' "$@" "$DAEMON_URL$path" || true
}
team_header() { grep -i "^$2:" "$1" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
team_status() { curl -fsS --max-time 10 -H "Authorization: Bearer $1" "$DAEMON_URL/slullama/status"; }
team_phase_is() { [[ $(team_status "$DAEMON_TOKEN" | jq -r .phase) == "$1" ]]; }
team_code_is() { [[ $(team_req probe "$2" GET /slullama/status) == "$1" ]]; }
team_metric() { # NAME_WITH_LABELS: the value of one sample of /metrics (admin key)
    curl -fsS --max-time 10 -H "Authorization: Bearer $admin" "$DAEMON_URL/metrics" |
        awk -v s="$1" '$1 == s { print $2 }'
}
live_jobs() { sl squeue --me -h -t PENDING,RUNNING,CONFIGURING,COMPLETING -n "$E2E_JOB_NAME" -o %i | wc -l; }
no_live_jobs() { [[ $(live_jobs) -eq 0 ]]; }

# --- keys CLI ---------------------------------------------------------------------------------
alice=$(slullama keys add alice --config "$cfg")
assert_match "$alice" '^sk-slullama-[A-Za-z0-9_-]{43}$' 'new key'
admin=$(slullama keys add boss --admin --config "$cfg")
assert_eq 600 "$(stat -c %a "$keys")" 'keys file mode'
grep -qF -- "$alice" "$keys" && fail "the keys file holds a key in clear"
list=$(slullama keys list --config "$cfg")
assert_contains "$list" alice 'keys list'
assert_contains "$list" boss 'keys list'
assert_not_contains "$list" "$alice" 'keys list'
rc=0
slullama keys add alice --config "$cfg" >/dev/null 2>&1 || rc=$?
assert_eq 1 "$rc" 'adding a name that has an active key'

start_daemon "$cfg"

# --- auth ---------------------------------------------------------------------------------------
assert_eq 401 "$(team_req noauth '' GET /api/tags)" 'no key'
assert_eq 401 "$(team_req bad sk-slullama-not-a-key GET /api/tags)" 'unknown key'
assert_eq 200 "$(team_req st "$alice" GET /slullama/status)" 'alice status'
assert_eq sleeping "$(jq -r .phase st.body)" 'phase before any request'

# --- a cold request: held, answered, with the wait in a header ----------------------------------
code=$(team_req gen "$alice" POST /api/generate \
    -d '{"model":"llama3.2:1b","prompt":"three words here"}')
assert_eq 200 "$code" "cold generate ($(cat gen.body | head -c 300))"
cold=$(team_header gen.head X-Slullama-Cold-Start)
assert_match "$cold" '^[0-9]+\.[0-9]{2}$' 'X-Slullama-Cold-Start'
last=$(tail -n 1 gen.body)
assert_eq 8 "$(jq -r .eval_count <<<"$last")" 'stand-in eval_count'
assert_eq 3 "$(jq -r .prompt_eval_count <<<"$last")" 'stand-in prompt_eval_count'

# Awake: /api/tags goes to the model server and is remembered.
assert_eq 200 "$(team_req tags "$alice" GET /api/tags)" 'tags while ready'
assert_eq '' "$(team_header tags.head X-Slullama-Cache)" 'tags while ready come from the server'

# --- usage in the status --------------------------------------------------------------------------
own=$(team_status "$alice")
assert_eq alice "$(jq -r .usage.user <<<"$own")" 'usage.user'
assert_eq '["alice"]' "$(jq -c '.usage.users | keys' <<<"$own")" 'alice sees only herself'
assert_eq 2 "$(jq -r .usage.users.alice.total.requests <<<"$own")" 'alice requests'
assert_eq 3 "$(jq -r .usage.users.alice.total.prompt_tokens <<<"$own")" 'alice prompt tokens'
assert_eq 8 "$(jq -r .usage.users.alice.total.completion_tokens <<<"$own")" 'alice completion tokens'
assert_eq 2 "$(jq -r .usage.users.alice.today.requests <<<"$own")" 'alice requests today'
jq -e '.usage.users.alice.total.gpu_seconds > 0' <<<"$own" >/dev/null ||
    fail "no GPU time for alice: $own"
all=$(team_status "$admin")
assert_eq true "$(jq -r .usage.admin <<<"$all")" 'admin flag'
jq -e '.usage.users | has("alice")' <<<"$all" >/dev/null || fail "admin does not see alice: $all"
assert_eq 2 "$(jq -r .keys.active <<<"$all")" 'active keys'

# --- metrics ---------------------------------------------------------------------------------------
assert_eq 401 "$(team_req m '' GET /metrics)" '/metrics without a key'
assert_eq 200 "$(team_req m "$admin" GET /metrics)" '/metrics'
assert_contains "$(team_header m.head Content-Type)" 'version=0.0.4' 'metrics content type'
assert_eq 1 "$(team_metric 'slullama_requests_total{route="/api/generate",status="200",user="alice"}')" 'generate requests'
assert_eq 1 "$(team_metric slullama_cold_starts_total)" 'cold starts'
assert_eq 1 "$(team_metric slullama_jobs_submitted_total)" 'jobs submitted'
assert_eq 1 "$(team_metric 'slullama_cold_start_seconds_count{stage="total"}')" 'cold-start histogram'
assert_eq 8 "$(team_metric 'slullama_tokens_total{kind="completion",user="alice"}')" 'completion tokens'
assert_eq 1 "$(team_metric 'slullama_phase{phase="ready"}')" 'phase gauge'

# --- keys change while running: file watch, and SIGHUP ---------------------------------------------
bob=$(slullama keys add bob --config "$cfg")
wait_until 10 team_code_is 200 "$bob" || fail "the new key was not picked up"
slullama keys revoke alice --config "$cfg"
wait_until 10 team_code_is 401 "$alice" || fail "the revoked key still works"
assert_eq 401 "$(team_req gen2 "$alice" POST /api/generate -d '{"model":"llama3.2:1b","prompt":"x"}')" 'revoked key on a model route'
assert_eq 200 "$(team_req shared "$DAEMON_TOKEN" GET /slullama/status)" 'shared token still works'
# A hand edit (sed -i replaces the file too) followed by SIGHUP.
sed -i '/^\[keys."bob"\]/a revoked = "2024-01-01T00:00:00Z"' "$keys"
kill -HUP "$(daemon_pid)"
wait_until 10 team_code_is 401 "$bob" || fail "bob's key still works after the edit and SIGHUP"
bg_alive daemon || fail "SIGHUP stopped the daemon"

# --- idle: the job ends; metadata from the cache does not wake it -----------------------------------
wait_until 90 team_phase_is sleeping || fail "no idle teardown: $(team_status "$DAEMON_TOKEN")"
wait_until 30 no_live_jobs || fail "job still alive after the idle teardown"
assert_eq 200 "$(team_req cached "$admin" GET /api/tags)" 'tags while sleeping'
assert_eq hit "$(team_header cached.head X-Slullama-Cache)" 'tags from the cache'
jq -e '.models | length > 0' cached.body >/dev/null || fail "cached tags: $(cat cached.body)"
assert_eq sleeping "$(team_status "$DAEMON_TOKEN" | jq -r .phase)" 'phase after a cached answer'
assert_eq 0 "$(live_jobs)" 'jobs after a cached answer'
assert_eq 1 "$(team_metric 'slullama_teardowns_total{reason="idle"}')" 'idle teardowns'

# --- respond-async: no waiting, but the wake goes on ---------------------------------------------
code=$(team_req async "$admin" POST /api/generate -H 'Prefer: respond-async' \
    -d '{"model":"llama3.2:1b","prompt":"x"}')
assert_eq 503 "$code" 'respond-async while sleeping'
assert_match "$(team_header async.head Retry-After)" '^[0-9]+$' 'Retry-After'
assert_eq respond-async "$(team_header async.head Preference-Applied)" 'Preference-Applied'
jq -e '.phase != "sleeping" and .phase != "ready"' async.body >/dev/null ||
    fail "503 body is not a waking status: $(cat async.body)"
wait_until 120 team_phase_is ready || fail "the async wake did not boot: $(team_status "$DAEMON_TOKEN")"
assert_eq 2 "$(team_metric slullama_cold_starts_total)" 'cold starts after the async wake'
assert_eq 1 "$(team_metric slullama_async_refusals_total)" 'async refusals'

# --- usage survives a restart ------------------------------------------------------------------
stop_daemon
cp "$E2E_SCRATCH/daemon.log" "$E2E_SCRATCH/daemon-first.log"
[[ -s $DAEMON_LOG_DIR/usage.json ]] || fail "no usage file in $DAEMON_LOG_DIR"
start_daemon "$cfg"
all=$(team_status "$admin")
assert_eq 2 "$(jq -r .usage.users.alice.total.requests <<<"$all")" 'alice requests after restart'
assert_eq 8 "$(jq -r .usage.users.alice.total.completion_tokens <<<"$all")" 'alice tokens after restart'
stop_daemon
log "ok"
