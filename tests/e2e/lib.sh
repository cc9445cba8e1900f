# shellcheck shell=bash disable=SC2119,SC2120
# Helpers for end-to-end suites (bash, sourced). Suites run as the bed user through
# tests/e2e/run, which provides the bed environment (bed.env) and:
#   E2E_NAME      suite name            E2E_SCRATCH  per-test scratch dir (owned by the user)
#   E2E_DIR       copy of tests/e2e     E2E_SOURCE_DIR / E2E_BUILD_DIR  the checkout and build
#   E2E_JOB_NAME  a job name unique to this run (daemon configs use it; cleanup cancels it)
# Sourcing this installs an EXIT trap that stops background processes and the daemon started
# through these helpers and cancels the suite's Slurm jobs. Add more with `on_exit CMD...`.
# Nothing here sleeps to synchronise: waits are polls with a timeout.

set -euo pipefail

: "${BED_DIR:?bed environment missing: run suites through tests/e2e/run}"
: "${E2E_SCRATCH:=$(mktemp -d "${TMPDIR:-/tmp}/e2e.XXXXXX")}"
: "${E2E_NAME:=$(basename "$0" .sh)}"
: "${E2E_JOB_NAME:=e2e-$E2E_NAME-$$}"
E2E_STATE=$E2E_SCRATCH/.e2e
mkdir -p "$E2E_STATE"

# --- reporting -------------------------------------------------------------------------------
log() { printf '[%s %s] %s\n' "$E2E_NAME" "$(date +%T.%3N)" "$*" >&2; }
fail() {
    printf '[%s] FAIL: %s\n' "$E2E_NAME" "$*" >&2
    exit 1
}
assert_eq() { # EXPECTED ACTUAL [WHAT]
    [[ $1 == "$2" ]] || fail "${3:-value}: expected '$1', got '$2'"
}
assert_ne() { # UNEXPECTED ACTUAL [WHAT]
    [[ $1 != "$2" ]] || fail "${3:-value}: did not expect '$1'"
}
assert_contains() { # HAYSTACK NEEDLE [WHAT]
    [[ $1 == *"$2"* ]] || fail "${3:-output} does not contain '$2': $(printf '%s' "$1" | head -c 2000)"
}
assert_not_contains() { # HAYSTACK NEEDLE [WHAT]
    [[ $1 != *"$2"* ]] || fail "${3:-output} unexpectedly contains '$2': $(printf '%s' "$1" | head -c 2000)"
}
assert_match() { # STRING REGEX [WHAT]
    [[ $1 =~ $2 ]] || fail "${3:-value} '$(printf '%s' "$1" | head -c 2000)' does not match /$2/"
}

# --- waiting and processes -------------------------------------------------------------------
# wait_until TIMEOUT_SECONDS CMD...: polls CMD (every 0.1 s) until it succeeds; 1 on timeout.
wait_until() {
    local timeout=$1 deadline
    shift
    deadline=$(($(date +%s%N) / 1000000 + ${timeout%.*} * 1000))
    until "$@"; do
        (($(date +%s%N) / 1000000 < deadline)) || return 1
        sleep 0.1
    done
}

# Alive and not a zombie (PID 1 reaps late here, so `kill -0` alone lies).
pid_alive() {
    local stat
    [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}
pid_gone() { ! pid_alive "$1"; }

port_listening() { [[ -n $(ss -Htln "sport = :$1" 2>/dev/null) ]]; }
port_free() { ! port_listening "$1"; }
# PIDs (one a line) of the listeners on PORT that this user may see.
port_pids() { ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }

# A port no socket of any state uses (a client's ephemeral port blocks a later bind as well).
port_unused() { [[ -z $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]; }
# free_port [AVOID...]: a TCP port nobody uses (and not handed out before in this run), below
# the kernel's ephemeral range, where the thousands of client connections of a load test (and
# every tunnel) take their local ports: a port picked there can be taken before it is bound.
free_port() {
    local port try avoid low=20000 high
    read -r high _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || high=32768
    ((high > low + 1000)) || { low=10000 && high=60000; }
    for ((try = 0; try < 200; try++)); do
        port=$((low + (RANDOM * 32768 + RANDOM) % (high - low)))
        for avoid in "$@" $(cat "$E2E_STATE/ports" 2>/dev/null); do
            [[ $port == "$avoid" ]] && continue 2
        done
        if port_unused "$port"; then
            echo "$port" >>"$E2E_STATE/ports"
            printf '%s\n' "$port"
            return 0
        fi
    done
    fail "no free TCP port"
}

# start_bg NAME CMD...: runs CMD in its own session, output in $E2E_SCRATCH/NAME.log.
start_bg() {
    local name=$1 pid
    shift
    setsid "$@" >"$E2E_SCRATCH/$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$E2E_STATE/$name.pid"
    echo "$name" >>"$E2E_STATE/bg"
    log "started $name (pid $pid): $*"
}
bg_pid() { cat "$E2E_STATE/$1.pid" 2>/dev/null; }
bg_alive() { pid_alive "$(bg_pid "$1")"; }
# stop_bg NAME [SIGNAL]: signals the process group, waits (SIGKILL after 15 s).
stop_bg() {
    local name=$1 sig=${2:-TERM} pid
    pid=$(bg_pid "$name") || return 0
    if pid_alive "$pid"; then
        kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
        if ! wait_until 15 pid_gone "$pid"; then
            log "$name (pid $pid) ignored SIG$sig: SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            wait_until 5 pid_gone "$pid" || log "$name (pid $pid) still alive"
        fi
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$E2E_STATE/$name.pid"
}

# --- HTTP and tunnels ------------------------------------------------------------------------
http_ok() { curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null; }

# open_tunnel NAME LOCAL_PORT NODE REMOTE_PORT: `ssh -N -L` through the bed sshd, as the daemon
# does; returns once the local port is held by that ssh.
open_tunnel() {
    local name=$1 lport=$2 node=$3 rport=$4
    start_bg "$name" ssh -N -p "$BED_SSH_PORT" -o BatchMode=yes -o ExitOnForwardFailure=yes \
        -o ConnectTimeout=10 -L "127.0.0.1:$lport:127.0.0.1:$rport" "$node"
    _tunnel_ready() { bg_alive "$1" && [[ $(port_pids "$2") == "$(bg_pid "$1")" ]]; }
    wait_until 20 _tunnel_ready "$name" "$lport" ||
        fail "tunnel $name (127.0.0.1:$lport -> $node:$rport) did not come up: $(cat "$E2E_SCRATCH/$name.log")"
}

# --- Slurm -----------------------------------------------------------------------------------
# Slurm commands hang while slurmctld is unreachable: always bounded.
sl() { timeout 20 "$@"; }
my_jobs() { sl squeue --me -h -o '%i|%j|%T|%N'; }
track_job() { echo "$1" >>"$E2E_STATE/jobs"; }
# submit_job SCRIPT [SBATCH_ARGS...]: prints the job id and tracks it for cleanup.
submit_job() {
    local script=$1 out
    shift
    out=$(sl sbatch --parsable "$@" "$script") || fail "sbatch $script failed: $out"
    out=${out%%;*}
    [[ $out =~ ^[0-9]+$ ]] || fail "sbatch printed '$out', not a job id"
    track_job "$out"
    printf '%s\n' "$out"
}
job_line() { sl scontrol show job -o "$1" 2>/dev/null; }
# job_field JOBID KEY: one Key=Value field of `scontrol show job -o`.
job_field() {
    local line
    line=$(job_line "$1") || return 1
    line=" $line"
    [[ $line =~ [[:space:]]$2=([^[:space:]]*) ]] || return 1
    printf '%s\n' "${BASH_REMATCH[1]}"
}
job_state() { job_field "$1" JobState; }
# wait_job_state JOBID REGEX TIMEOUT: e.g. wait_job_state 7 '^RUNNING$' 60
wait_job_state() {
    _job_state_is() { [[ $(job_state "$1" || true) =~ $2 ]]; }
    wait_until "$3" _job_state_is "$1" "$2" ||
        fail "job $1 is '$(job_state "$1" || true)', expected /$2/ within $3 s: $(job_line "$1")"
}
# Jobs of this suite: the ones it submitted and the ones named E2E_JOB_NAME (daemon jobs).
suite_jobs() {
    {
        cat "$E2E_STATE/jobs" 2>/dev/null || true
        sl squeue --me -h -n "$E2E_JOB_NAME" -o %i 2>/dev/null || true
    } | sort -u
}
cancel_suite_jobs() {
    local jobs live
    jobs=$(suite_jobs)
    [[ -n $jobs ]] || return 0
    # shellcheck disable=SC2086
    sl scancel $jobs 2>/dev/null || true
    _suite_jobs_ended() {
        live=$(sl squeue --me -h -t PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING -o %i 2>/dev/null) || return 1
        local j
        for j in $jobs; do grep -qx "$j" <<<"$live" && return 1; done
        return 0
    }
    wait_until 60 _suite_jobs_ended || log "jobs still live after scancel: $jobs"
}

# --- the daemon ------------------------------------------------------------------------------
# write_daemon_config DIR [section.key=TOML_VALUE ...]: writes DIR/config.toml for the bed and
# sets DAEMON_CONFIG, DAEMON_PORT, DAEMON_URL, OLLAMA_PORT, DAEMON_LOG_DIR. Arguments override or
# add keys, e.g. 'server.token="s3cret"' 'slurm.idle_timeout=0.1'. DAEMON_TOKEN, if set,
# becomes server.token.
write_daemon_config() {
    local dir=$1 kv section key sect
    shift
    mkdir -p "$dir/logs"
    DAEMON_PORT=$(free_port)
    OLLAMA_PORT=$(free_port)
    DAEMON_LOG_DIR=$dir/logs
    DAEMON_CONFIG=$dir/config.toml
    DAEMON_URL=http://127.0.0.1:$DAEMON_PORT
    # A private copy of the bed user's key: suites share the bed, and ssh ignores a key whose
    # mode something else loosened.
    local key=$E2E_STATE/ssh_key
    [[ -s $key ]] || { cp "$BED_SSH_KEY" "$key.tmp" && chmod 0600 "$key.tmp" && mv -f "$key.tmp" "$key"; } ||
        fail "cannot copy the bed user's ssh key $BED_SSH_KEY"
    local -A values=(
        [server.bind]='"127.0.0.1"'
        [server.port]=$DAEMON_PORT
        [server.token]="\"${DAEMON_TOKEN:-}\""
        [server.log_dir]="\"$DAEMON_LOG_DIR\""
        [server.boot_timeout]=120
        [slurm.partition]='"gpu"'
        [slurm.gres]='"gpu:1"'
        [slurm.time]='"0:30:00"'
        [slurm.idle_timeout]=0.5
        [slurm.job_name]="\"$E2E_JOB_NAME\""
        [slurm.command_timeout]=20
        [slurm.poll_interval]=0.2
        [ollama.port]=$OLLAMA_PORT
        [ollama.binary]="\"$BED_BIN/standin-ollama\""
        [ssh.port]=$BED_SSH_PORT
        [ssh.identity_file]="\"$key\""
    )
    local order=(server.bind server.port server.token server.log_dir server.boot_timeout
        slurm.partition slurm.gres slurm.time slurm.idle_timeout slurm.job_name
        slurm.command_timeout slurm.poll_interval ollama.port ollama.binary
        ssh.port ssh.identity_file)
    for kv in "$@"; do
        key=${kv%%=*}
        [[ $kv == *=* && $key == *.* ]] || fail "write_daemon_config: '$kv' is not section.key=value"
        [[ -v values[$key] ]] || order+=("$key")
        values[$key]=${kv#*=}
    done
    {
        echo "# Written by write_daemon_config for $E2E_NAME"
        for section in server slurm ollama ssh client; do
            sect=''
            for key in "${order[@]}"; do
                [[ ${key%%.*} == "$section" ]] || continue
                [[ -n $sect ]] || { printf '\n[%s]\n' "$section"; sect=1; }
                printf '%s = %s\n' "${key#*.}" "${values[$key]}"
            done
        done
    } >"$DAEMON_CONFIG"
    # an override that named a section we did not list is a test bug
    for key in "${order[@]}"; do
        [[ ${key%%.*} =~ ^(server|slurm|ollama|ssh|client)$ ]] || fail "write_daemon_config: unknown section in $key"
    done
    export DAEMON_CONFIG DAEMON_PORT DAEMON_URL OLLAMA_PORT DAEMON_LOG_DIR
}

daemon_pid() { bg_pid daemon; }
daemon_healthy() { curl -fsS -o /dev/null --max-time 5 "$DAEMON_URL/slullama/health" 2>/dev/null; }
# start_daemon CONFIG [ARGS...]: runs $BED_BIN/slullama-daemon --config CONFIG (log in
# $E2E_SCRATCH/daemon.log) and waits until GET /slullama/health answers. DAEMON_URL comes from
# write_daemon_config (set it yourself for a hand-written config).
start_daemon() {
    local config=$1
    shift
    : "${DAEMON_URL:?start_daemon: DAEMON_URL unset (use write_daemon_config)}"
    start_bg daemon "$BED_BIN/slullama-daemon" --config "$config" "$@"
    _daemon_up() {
        bg_alive daemon || fail "slullama-daemon exited during start-up: $(tail -n 40 "$E2E_SCRATCH/daemon.log")"
        daemon_healthy
    }
    wait_until 30 _daemon_up || fail "slullama-daemon did not answer $DAEMON_URL/slullama/health: $(tail -n 40 "$E2E_SCRATCH/daemon.log")"
    log "daemon up at $DAEMON_URL (pid $(daemon_pid))"
}
# stop_daemon [SIGNAL]: SIGTERM by default (the daemon drains and cancels its job).
stop_daemon() { stop_bg daemon "${1:-TERM}"; }

# --- talking to the daemon (the test_daemon_* suites) ------------------------------------------
require_bins() { # NAME...: each must be in $BED_BIN
    local b
    for b in "$@"; do [[ -x $BED_BIN/$b ]] || fail "$BED_BIN/$b missing: build it first"; done
}
# Authorization header arguments for curl when DAEMON_TOKEN is set (the token stays off argv
# of long-lived processes; curl's is fine for a test).
auth_args() { [[ -z ${DAEMON_TOKEN:-} ]] || printf '%s\n' -H "Authorization: Bearer $DAEMON_TOKEN"; }
# req NAME METHOD PATH [CURL_ARGS...]: one request to the daemon (token added when set); the
# head goes to NAME.head, the body to NAME.body (in the current directory); prints the status.
req() {
    local name=$1 method=$2 path=$3 auth=()
    shift 3
    mapfile -t auth < <(auth_args)
    local how=(-X "$method")
    [[ $method != HEAD ]] || how=(--head)
    curl -sS --max-time "${REQ_MAX_TIME:-60}" "${how[@]}" "${auth[@]}" -D "$name.head" \
        -o "$name.body" -w '%{http_code}' "$@" "$DAEMON_URL$path" || true
}
# raw_http REQUEST_BYTES: sends printf-escaped bytes to the daemon on one connection and prints
# everything it answers until it closes (the request should say Connection: close).
raw_http() {
    local fd
    exec {fd}<>"/dev/tcp/127.0.0.1/$DAEMON_PORT" || fail "cannot connect to 127.0.0.1:$DAEMON_PORT"
    # shellcheck disable=SC2059
    printf "$1" >&"$fd"
    timeout 20 cat <&"$fd" || true
    exec {fd}>&-
}
# header_value FILE NAME: a header from a saved head (case-insensitive, CR stripped).
header_value() { grep -i "^$2:" "$1" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
# chat_body CONTENT [STREAM] [EXTRA_JSON]: an /api/chat request for the stand-in's first model;
# EXTRA_JSON is merged in, e.g. '{"options":{"num_predict":4}}'.
chat_body() {
    jq -cn --arg c "$1" --argjson s "${2:-true}" --argjson x "${3:-{\}}" \
        '{model: "llama3.2:1b", messages: [{role: "user", content: $c}], stream: $s} + $x'
}
daemon_status() {
    local auth=()
    mapfile -t auth < <(auth_args)
    curl -fsS --max-time 10 "${auth[@]}" "$DAEMON_URL/slullama/status"
}
status_field() { daemon_status | jq -r "$1"; } # JQ_FILTER
phase_is() { [[ $(status_field .phase 2>/dev/null) == "$1" ]]; }
# wait_phase PHASE TIMEOUT: polls /slullama/status until phase is PHASE.
wait_phase() {
    wait_until "$2" phase_is "$1" ||
        fail "daemon phase is not $1 after $2 s: $(daemon_status 2>&1); log: $(tail -n 30 "$E2E_SCRATCH/daemon.log")"
}
# Jobs named E2E_JOB_NAME that Slurm still knows in any state (MinJobAge keeps ended ones), and
# the ones still queued or running: how the suites count sbatch calls and teardowns.
named_jobs() { sl squeue --me -h -t all -n "$E2E_JOB_NAME" -o %i | sort -un; }
live_named_jobs() {
    sl squeue --me -h -t PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED -n "$E2E_JOB_NAME" -o %i | sort -un
}
count_words() { wc -w <<<"$1" | tr -d ' '; }
line_count() { grep -c . "$1" 2>/dev/null || true; } # FILE: its non-empty lines
lines_at_least() { (($(line_count "$1") >= $2)); }   # FILE N
job_gone() { [[ -z $(live_named_jobs | grep -x "$1" || true) ]]; }
# wait_job_gone JOBID TIMEOUT: the job left squeue's live states (cancelled, completed, ...).
wait_job_gone() { wait_until "$2" job_gone "$1" || fail "job $1 still live after $2 s: $(job_line "$1")"; }
# children PID: the direct children of a process (all its threads').
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true; }
# tunnel_pid [DAEMON_PID]: the daemon's `ssh ... -L` child, found by parentage (never by name).
tunnel_pid() {
    local child
    for child in $(children "${1:-$(daemon_pid)}"); do
        if tr '\0' ' ' <"/proc/$child/cmdline" 2>/dev/null | grep -q -- ' -L '; then
            echo "$child"
            return 0
        fi
    done
    return 1
}
# The number of sbatch calls a daemon log reports.
submissions_in_log() { grep -c 'submitted job' "${1:-$E2E_SCRATCH/daemon.log}" || true; }

# --- cleanup ---------------------------------------------------------------------------------
on_exit() { printf '%q ' "$@" >>"$E2E_STATE/on_exit" && echo >>"$E2E_STATE/on_exit"; }
e2e_cleanup() {
    local rc=$? name
    set +e
    if [[ -f $E2E_STATE/on_exit ]]; then
        while IFS= read -r line; do eval "$line"; done < <(tac "$E2E_STATE/on_exit")
    fi
    stop_daemon
    if [[ -f $E2E_STATE/bg ]]; then
        for name in $(tac "$E2E_STATE/bg"); do stop_bg "$name"; done
    fi
    cancel_suite_jobs
    if ((rc == 0)); then
        log "PASS"
    else
        log "failed with exit code $rc; scratch: $E2E_SCRATCH"
    fi
    exit "$rc"
}
trap e2e_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
