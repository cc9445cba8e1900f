#!/usr/bin/env bash
# e2e.soak: load and soak through one slullama-daemon on the real Slurm bed.
# 1. Cold-start storm: 500 clients arrive while the job boots (the stand-in takes 2 s to
#    listen) - all answered, one sbatch.
# 2. Soak: SOAK_SECONDS (default 120, the CI mode; release checks use SOAK_SECONDS=1800) of mixed
#    traffic - NDJSON streams, non-streamed chats, /api/tags, streamed /v1/chat/completions - in
#    bursts separated by idle gaps longer than idle_timeout (0.1 min), so the job sleeps and wakes
#    many times. Every request is answered, or refused with a reason (a JSON error); never lost.
#    The daemon's open descriptors and RSS stay flat (measured while sleeping, after each cycle);
#    Slurm never has two live jobs of the daemon; after SIGTERM none is left.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/faults_lib.sh"
require_bins slullama-daemon standin-ollama slullama-loadgen
cd "$E2E_SCRATCH"
SOAK_SECONDS=${SOAK_SECONDS:-120}
DAEMON_TOKEN=soak-secret-$RANDOM$RANDOM
mapfile -t auth < <(auth_args)

# --- 1. cold-start storm ------------------------------------------------------------------------
write_daemon_config "$E2E_SCRATCH/storm" 'slurm.idle_timeout=0.1' 'server.max_connections=4096'
start_daemon_env "$DAEMON_CONFIG" STANDIN_STARTUP_DELAY_MS=2000
before=$(named_jobs)
rc=0
slullama-loadgen --token "$DAEMON_TOKEN" --json --url "$DAEMON_URL/api/chat" --method POST \
    --header 'Content-Type: application/json' \
    --body "$(chat_body storm false '{"options":{"num_predict":2}}')" \
    --concurrency 500 --requests 500 --timeout 120 --expect-status 200 >storm.json 2>storm.err || rc=$?
log "storm: $(jq -c '{requests, ok, failed, statuses, latency_ms, errors}' storm.json 2>/dev/null || cat storm.err)"
((rc == 0)) || fail "storm: slullama-loadgen exited $rc: $(cat storm.json storm.err)"
assert_eq 500 "$(jq .ok storm.json)" 'storm: answered'
assert_eq 1 "$(count_words "$(comm -13 <(sort <<<"$before") <(named_jobs | sort))")" 'storm: jobs submitted'
assert_eq 1 "$(submissions_in_log)" 'storm: sbatch calls in the log'
stop_daemon
assert_no_live_jobs
mv daemon.log daemon-storm.log

# --- 2. soak ------------------------------------------------------------------------------------
write_daemon_config "$E2E_SCRATCH/soak" 'slurm.idle_timeout=0.1'
start_daemon "$DAEMON_CONFIG"
pid=$(daemon_pid)
fds() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

# Every second: descriptors, RSS, phase, live jobs (a second live job fails the suite at the end).
monitor() {
    local live
    while pid_alive "$pid"; do
        live=$(live_named_jobs 2>/dev/null | tr '\n' ' ') || live='?'
        printf '%s %s %s %s %s\n' "$(date +%s)" "$(fds)" "$(rss_kb)" \
            "$(status_field .phase 2>/dev/null || echo '?')" "${live:--}" >>samples.txt
        sleep 1 # the sampling period
    done
}
monitor &
monitor_pid=$!
stop_monitor() { kill "$monitor_pid" 2>/dev/null || true; }
on_exit stop_monitor

# One client request; appends "KIND CODE VERDICT [reason]" to results.txt. VERDICT: ok, refused
# (non-2xx with a JSON error saying why) or lost (anything else).
record() { printf '%s %s %s %s\n' "$1" "$2" "$3" "${4:-}" >>results.txt; }
verdict() { # KIND CODE BODYFILE COMPLETE(0/1)
    local kind=$1 code=$2 body=$3 complete=$4 why
    if [[ $code == 200 && $complete == 1 ]]; then
        record "$kind" "$code" ok
    elif [[ $code =~ ^[45] ]] && why=$(jq -er '.error' "$body" 2>/dev/null) && [[ -n $why ]]; then
        record "$kind" "$code" refused "$why"
    else
        record "$kind" "$code" lost "$(head -c 200 "$body" 2>/dev/null | tr '\n' ' ')"
    fi
}
n=0
client_stream() { # NDJSON stream, 20 tokens, 50 ms apart
    local f=c$BASHPID-$((++n)) code complete=0
    code=$(curl -sS -N --max-time 120 "${auth[@]}" -H 'Content-Type: application/json' -o "$f.out" -w '%{http_code}' \
        --data-binary "$(chat_body "$f" true '{"options":{"num_predict":20,"standin_token_delay_ms":50}}')" \
        "$DAEMON_URL/api/chat" 2>/dev/null) || true
    [[ $(tail -n 1 "$f.out" 2>/dev/null | jq -r .done 2>/dev/null) == true ]] && complete=1
    verdict stream "${code:-000}" "$f.out" "$complete"
}
client_chat() {
    local f=c$BASHPID-$((++n)) code complete=0
    code=$(curl -sS --max-time 120 "${auth[@]}" -H 'Content-Type: application/json' -o "$f.out" -w '%{http_code}' \
        --data-binary "$(chat_body "$f" false '{"options":{"num_predict":4}}')" "$DAEMON_URL/api/chat" 2>/dev/null) || true
    [[ $(jq -r .done "$f.out" 2>/dev/null) == true ]] && complete=1
    verdict chat "${code:-000}" "$f.out" "$complete"
}
client_tags() {
    local f=c$BASHPID-$((++n)) code complete=0
    code=$(curl -sS --max-time 120 "${auth[@]}" -o "$f.out" -w '%{http_code}' "$DAEMON_URL/api/tags" 2>/dev/null) || true
    [[ $(jq -r '.models | length' "$f.out" 2>/dev/null) -ge 1 ]] 2>/dev/null && complete=1
    verdict tags "${code:-000}" "$f.out" "$complete"
}
client_v1() { # OpenAI-style SSE stream
    local f=c$BASHPID-$((++n)) code complete=0
    code=$(curl -sS -N --max-time 120 "${auth[@]}" -H 'Content-Type: application/json' -o "$f.out" -w '%{http_code}' \
        --data-binary '{"model":"llama3.2:1b","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}' \
        "$DAEMON_URL/v1/chat/completions" 2>/dev/null) || true
    grep -q '^data: \[DONE\]' "$f.out" 2>/dev/null && complete=1
    verdict v1 "${code:-000}" "$f.out" "$complete"
}
# A burst: four clients of each kind, each a few requests in a row, all at once.
burst() {
    local kind i pids=()
    for kind in stream chat tags v1; do
        for i in 1 2 3 4; do
            (for _ in 1 2 3; do "client_$kind"; done) &
            pids+=($!)
        done
    done
    wait "${pids[@]}"
}

t_end=$(($(date +%s) + SOAK_SECONDS))
cycle=0
: >sleeping.txt
while (($(date +%s) < t_end)); do
    cycle=$((cycle + 1))
    burst
    # The idle gap: the job is torn down after idle_timeout (6 s).
    wait_phase sleeping 30
    printf '%s %s %s\n' "$cycle" "$(fds)" "$(rss_kb)" >>sleeping.txt
    log "cycle $cycle: $(grep -c . results.txt) requests so far; sleeping with $(fds) fds, RSS $(rss_kb) kB"
done
stop_monitor
wait "$monitor_pid" 2>/dev/null || true

# --- verdicts -----------------------------------------------------------------------------------
total=$(grep -c . results.txt)
ok=$(awk '$3 == "ok"' results.txt | wc -l)
refused=$(awk '$3 == "refused"' results.txt | wc -l)
lost=$(awk '$3 == "lost"' results.txt | wc -l)
log "requests: $total, ok $ok, refused with a reason $refused, lost $lost"
if ((refused > 0)); then awk '$3 == "refused"' results.txt | sort | uniq -c | head -n 10 >&2; fi
((lost == 0)) || fail "requests lost: $(awk '$3 == "lost"' results.txt | head -n 10)"
((total >= cycle * 48)) || fail "only $total requests in $cycle cycles"
((cycle >= 3)) || fail "only $cycle sleep/wake cycles in $SOAK_SECONDS s"
wakes=$(submissions_in_log)
log "$cycle cycles, $wakes jobs submitted"
((wakes >= cycle && wakes <= cycle + 1)) || fail "$wakes jobs for $cycle cycles"

# One live job at most, at every sample.
if awk '{ if (NF > 5) { print; bad = 1 } } END { exit !bad }' samples.txt >&2; then
    fail "two live jobs at once (samples above)"
fi
# Flat resources: compare what the daemon holds while sleeping after the first cycle with the
# rest (the first cycle warms up pools and caches).
read -r _ fd1 rss1 < <(sed -n 1p sleeping.txt)
fd_max=$(awk 'NR > 1 { if ($2 > m) m = $2 } END { print m + 0 }' sleeping.txt)
rss_last=$(tail -n 1 sleeping.txt | awk '{ print $3 }')
log "sleeping: fds $fd1 after cycle 1, at most $fd_max later; RSS $rss1 kB after cycle 1, $rss_last kB at the end"
((fd_max <= fd1 + 4)) || fail "descriptors grow: $(cat sleeping.txt)"
rss_allowed=$((rss1 + rss1 / 5 + 8192))
((rss_last <= rss_allowed)) || fail "RSS grows: $(cat sleeping.txt)"

stop_daemon
assert_no_live_jobs
