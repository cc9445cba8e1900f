#!/usr/bin/env bash
# e2e.daemon_api: slullama-daemon on the real Slurm bed, as the unprivileged user, with the
# stand-in as ollama. Auth first (401 + WWW-Authenticate, no job woken by a stranger), then one
# cold streamed /api/chat that submits exactly one job and streams chunk by chunk, then the rest
# of the API through the warm job (/api/tags, /api/generate, /v1/chat/completions streamed and
# not, HEAD/GET /), the daemon's own routes (status fields, wake, health), and what reaches the
# model server (no Authorization, X-Forwarded-For) and the logs (no token).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama-daemon standin-ollama
cd "$E2E_SCRATCH"

DAEMON_TOKEN=api-secret-$RANDOM$RANDOM$RANDOM
# The job inherits the daemon's environment through sbatch (--export=ALL): the stand-in logs
# every request head it receives here.
export STANDIN_REQUEST_LOG=$E2E_SCRATCH/standin-requests.log
write_daemon_config "$E2E_SCRATCH/cfg" 'slurm.idle_timeout=5'
start_daemon "$DAEMON_CONFIG"

# --- before any job ----------------------------------------------------------------------------
assert_eq 200 "$(curl -sS -o health.body -w '%{http_code}' --max-time 5 "$DAEMON_URL/slullama/health")" \
    'GET /slullama/health without a token'
assert_eq ok "$(jq -r .status health.body)" 'health body'

# No token, a wrong token, a token in the wrong scheme: 401 with a challenge and a JSON error,
# for proxied and own routes alike, and nothing is woken.
for who in none wrong basic; do
    case $who in
    none) creds=() ;;
    wrong) creds=(-H "Authorization: Bearer wrong-$DAEMON_TOKEN") ;;
    basic) creds=(-H "Authorization: Basic $(printf 'u:%s' "$DAEMON_TOKEN" | base64)") ;;
    esac
    for route in 'GET /api/tags' 'POST /api/chat' 'GET /slullama/status' 'POST /slullama/wake' 'GET /v1/models'; do
        body=()
        [[ ${route% *} != POST ]] || body=(-H 'Content-Type: application/json' --data-binary "$(chat_body hi false)")
        status=$(DAEMON_TOKEN='' req unauth "${route% *}" "${route#* }" "${creds[@]}" "${body[@]}")
        assert_eq 401 "$status" "$route with $who token"
        assert_match "$(header_value unauth.head WWW-Authenticate)" '^Bearer' "WWW-Authenticate of $route ($who)"
        jq -e '.error | type == "string" and length > 0' unauth.body >/dev/null ||
            fail "401 body of $route is not a JSON error: $(cat unauth.body)"
    done
done
status0=$(daemon_status)
assert_eq sleeping "$(jq -r .phase <<<"$status0")" 'phase after refused requests'
assert_eq 0 "$(jq -r .request_count <<<"$status0")" 'request_count after refused requests'
assert_eq -1 "$(jq -r .idle_seconds <<<"$status0")" 'idle_seconds before first use'
assert_eq null "$(jq -r .job.id <<<"$status0")" 'job.id while sleeping'
assert_eq '' "$(named_jobs)" 'jobs submitted by refused requests'

# --- cold streamed chat: one job, chunks as they are produced ----------------------------------
# 6 tokens, 300 ms apart (per-request stand-in option): buffering would bring them in one lump.
log "cold streamed /api/chat"
mapfile -t auth < <(auth_args)
started=$(date +%s%N)
curl -sS -N --max-time 90 "${auth[@]}" -H 'Content-Type: application/json' \
    --data-binary "$(chat_body 'hello daemon' true '{"options":{"num_predict":6,"standin_token_delay_ms":300}}')" \
    "$DAEMON_URL/api/chat" | while IFS= read -r line; do printf '%s %s\n' "$(date +%s%N)" "$line"; done >chat.stamped
ended=$(date +%s%N)
cut -d' ' -f2- chat.stamped >chat.ndjson
assert_eq 7 "$(grep -c . chat.ndjson || true)" "streamed chat lines (6 tokens + final): $(cat chat.ndjson)"
jq -e -s '(.[:-1] | all(.done == false and .message.role == "assistant")) and .[-1].done == true
          and .[-1].done_reason == "length" and .[-1].eval_count == 6' chat.ndjson >/dev/null ||
    fail "chat stream shape: $(cat chat.ndjson)"
assert_eq 'tok0 tok1 tok2 tok3 tok4 tok5' "$(jq -j -s 'map(.message.content) | join("")' chat.ndjson)" 'streamed content'
first=$(head -n 1 chat.stamped | cut -d' ' -f1)
last=$(tail -n 1 chat.stamped | cut -d' ' -f1)
# Five 300 ms gaps between the first and the last token: at least a second apart when relayed
# as produced (a lower bound; slowness cannot break it).
(((last - first) >= 1000000000)) ||
    fail "chunks arrived within $(((last - first) / 1000000)) ms of each other: the proxy buffers the stream"
log "cold chat took $(((ended - started) / 1000000)) ms; chunks spread over $(((last - first) / 1000000)) ms"

jobs=$(named_jobs)
assert_eq 1 "$(count_words "$jobs")" "jobs named $E2E_JOB_NAME after the first request ($jobs)"
job=$jobs
assert_eq RUNNING "$(job_state "$job")" "state of job $job"
assert_eq 1 "$(submissions_in_log)" 'sbatch calls in the daemon log'
for transition in 'sleeping -> submitting' 'submitting -> queued' 'queued -> starting' 'starting -> ready'; do
    grep -q -- "$transition" "$E2E_SCRATCH/daemon.log" || fail "daemon log lacks '$transition': $(cat "$E2E_SCRATCH/daemon.log")"
done

# --- status -------------------------------------------------------------------------------------
status=$(daemon_status)
log "status: $status"
jq -e --arg job "$job" --arg node "$BED_NODE" --argjson oport "$OLLAMA_PORT" '
    .phase == "ready" and .job.id == $job and .job.node == $node and .job.state == "RUNNING"
    and (.job.time_left | type == "string") and .tunnel_alive == true
    and .request_count == 1 and .active_requests == 0 and .idle_seconds >= 0
    and .idle_timeout_minutes == 5 and (.version | type == "string" and length > 0)
    and .uptime_seconds >= 0 and .config.partition == "gpu" and .config.gres == "gpu:1"
    and .config.ollama_port == $oport and (.config.keep_alive | type == "string")
    and (.last_boot.seconds | type == "number" and . > 0) and (.last_boot.at | type == "string")
    and .last_error == null and (.seconds_until_sleep | type == "number")' <<<"$status" >/dev/null ||
    fail "status fields: $status"

# --- the rest of the API through the warm job ---------------------------------------------------
assert_eq 200 "$(req tags GET /api/tags)" 'GET /api/tags'
jq -e '[.models[].name] | index("llama3.2:1b") != null' tags.body >/dev/null || fail "/api/tags: $(cat tags.body)"

assert_eq 200 "$(req gen POST /api/generate -H 'Content-Type: application/json' \
    --data-binary '{"model":"llama3.2:1b","prompt":"why?","stream":false}')" 'POST /api/generate stream:false'
assert_match "$(header_value gen.head Content-Type)" '^application/json' 'generate content type'
jq -e '.response == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7" and .done == true and .model == "llama3.2:1b"' gen.body >/dev/null ||
    fail "/api/generate: $(cat gen.body)"

assert_eq 200 "$(req sse POST /v1/chat/completions -N -H 'Content-Type: application/json' \
    --data-binary "$(chat_body 'openai style' true '{"max_tokens":4}')")" 'POST /v1/chat/completions stream:true'
assert_match "$(header_value sse.head Content-Type)" '^text/event-stream' 'SSE content type'
grep -v '^\s*$' sse.body | tr -d '\r' >sse.lines
grep -qv '^data: ' sse.lines && fail "SSE body has lines other than data: $(cat sse.body)"
assert_eq 'data: [DONE]' "$(tail -n 1 sse.lines)" 'last SSE event'
sed -e '$d' -e 's/^data: //' sse.lines >sse.json
jq -e -s 'all(.object == "chat.completion.chunk") and (.[-1].choices[0].finish_reason == "length")' sse.json >/dev/null ||
    fail "SSE chunks: $(cat sse.body)"
assert_eq 'tok0 tok1 tok2 tok3' "$(jq -j -s 'map(.choices[0].delta.content // "") | join("")' sse.json)" 'SSE content'

assert_eq 200 "$(req oai POST /v1/chat/completions -H 'Content-Type: application/json' \
    --data-binary "$(chat_body 'openai style' false '{"max_tokens":3}')")" 'POST /v1/chat/completions'
jq -e '.object == "chat.completion" and .choices[0].message.content == "tok0 tok1 tok2"
       and .choices[0].finish_reason == "length" and .usage.completion_tokens == 3' oai.body >/dev/null ||
    fail "/v1/chat/completions: $(cat oai.body)"

assert_eq 200 "$(req models GET /v1/models)" 'GET /v1/models'
jq -e '.object == "list" and (.data | length > 0)' models.body >/dev/null || fail "/v1/models: $(cat models.body)"

assert_eq 200 "$(req root GET /)" 'GET /'
assert_eq 'Ollama is running' "$(cat root.body)" 'GET / body'
# HEAD: the head only (Content-Length of the GET), nothing after it before the close.
raw_http "HEAD / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $DAEMON_TOKEN\r\nConnection: close\r\n\r\n" >head.raw
assert_match "$(head -n 1 head.raw)" '^HTTP/1.1 200 ' 'HEAD / status line'
assert_eq "$(stat -c %s root.body)" "$(header_value head.raw Content-Length)" 'HEAD / Content-Length'
assert_eq '' "$(sed '1,/^\r\?$/d' head.raw)" 'bytes after the HEAD response head'

# Ollama's own errors pass through unchanged.
assert_eq 404 "$(req unknown POST /api/chat -H 'Content-Type: application/json' \
    --data-binary '{"model":"no-such-model","messages":[{"role":"user","content":"x"}],"stream":false}')" 'unknown model'
assert_contains "$(jq -r .error unknown.body)" 'not found' 'unknown model error'

# Several requests on one keep-alive connection.
curl -sS --max-time 30 "${auth[@]}" -o /dev/null -o /dev/null -o /dev/null -w '%{http_code}\n' \
    "$DAEMON_URL/api/tags" "$DAEMON_URL/api/version" "$DAEMON_URL/api/tags" -v 2>keepalive.err >keepalive.codes
assert_eq '200 200 200' "$(xargs <keepalive.codes)" 'three requests on one connection'
assert_contains "$(cat keepalive.err)" 'Re-using existing connection' 'curl -v (keep-alive)'

# The counts add up: 12 proxied requests so far (the chat, tags, generate, 2 v1 chats, v1 models,
# GET /, HEAD /, the unknown model, and the 3 keep-alive ones).
status=$(daemon_status)
assert_eq 12 "$(jq -r .request_count <<<"$status")" 'request_count'
assert_eq 1 "$(count_words "$(named_jobs)")" 'jobs after the warm requests'

# --- wake while ready: 202 with the status, no second job --------------------------------------
assert_eq 202 "$(req wake POST /slullama/wake)" 'POST /slullama/wake while ready'
jq -e --arg job "$job" '.phase == "ready" and .job.id == $job' wake.body >/dev/null || fail "wake body: $(cat wake.body)"
assert_eq 405 "$(req wakeget GET /slullama/wake)" 'GET /slullama/wake'
assert_eq 404 "$(req nosuch GET /slullama/nosuch)" 'unknown own route'
assert_eq "$job" "$(named_jobs)" 'jobs after wake'

# --- what reached the model server --------------------------------------------------------------
[[ -s $STANDIN_REQUEST_LOG ]] || fail "the stand-in logged no requests to $STANDIN_REQUEST_LOG (did the job inherit STANDIN_REQUEST_LOG?)"
heads=$(tr -d '\r' <"$STANDIN_REQUEST_LOG")
assert_contains "$heads" 'POST /api/chat HTTP/1.1' 'request log'
assert_contains "$heads" 'POST /v1/chat/completions HTTP/1.1' 'request log'
grep -qi '^authorization:' <<<"$heads" && fail "an Authorization header reached the model server: $(grep -i '^authorization:' <<<"$heads" | head -n 3)"
assert_not_contains "$heads" "$DAEMON_TOKEN" 'request heads at the model server'
grep -qi '^x-forwarded-for: 127\.0\.0\.1' <<<"$heads" || fail "no X-Forwarded-For at the model server: $(head -n 20 <<<"$heads")"

# --- the token never appears in a log -------------------------------------------------------------
if grep -rqF -- "$DAEMON_TOKEN" "$E2E_SCRATCH/daemon.log" "$DAEMON_LOG_DIR"; then
    fail "the token appears in a log: $(grep -rlF -- "$DAEMON_TOKEN" "$E2E_SCRATCH/daemon.log" "$DAEMON_LOG_DIR")"
fi
log "API checks passed on job $job"
