# shellcheck shell=bash
# Helpers for the fault and soak suites (test_faults_*.sh, test_soak.sh), sourced after lib.sh.
# Faults that need root (stopping slurmctld or munged, a full file system, another user) are asked
# of tests/e2e/faultctl, which runs these suites (as root) and restores the bed afterwards.

FAULTCTL_DIR=$BED_DIR/faultctl

have_faultctl() { [[ -d $FAULTCTL_DIR && -w $FAULTCTL_DIR ]]; }
# skip REASON: ends the suite as skipped (ctest SKIP_RETURN_CODE 77), saying why.
skip() {
    log "SKIP: $*"
    exit 77
}
need_faultctl() { have_faultctl || skip "needs root-side help: run it through tests/e2e/faultctl (as root)"; }

# fault_suite [faultctl]: how every fault suite starts: the daemon and the stand-in staged,
# faultctl at hand when the suite names it, and the suite's scratch directory as the working
# directory (where req/chat leave NAME.head and NAME.body and the daemon its daemon.log).
fault_suite() {
    require_bins slullama-daemon standin-ollama
    case ${1-} in
    '') ;;
    faultctl) need_faultctl ;;
    *) fail "fault_suite: unknown option '$1'" ;;
    esac
    cd "$E2E_SCRATCH" || fail "no scratch directory $E2E_SCRATCH"
}

# fault VERB [ARGS...]: asks faultctl to do VERB (see its handle()); prints what it printed;
# returns its status.
fault() {
    have_faultctl || fail "fault $*: no tests/e2e/faultctl running"
    local id=$$-$RANDOM$RANDOM rc
    printf '%s\n' "$*" >"$FAULTCTL_DIR/.req.$id"
    mv "$FAULTCTL_DIR/.req.$id" "$FAULTCTL_DIR/req.$id"
    wait_until 120 test -e "$FAULTCTL_DIR/rep.$id" || fail "faultctl did not answer '$*'"
    rc=$(cat "$FAULTCTL_DIR/rep.$id")
    cat "$FAULTCTL_DIR/out.$id"
    rm -f "$FAULTCTL_DIR/rep.$id" "$FAULTCTL_DIR/out.$id"
    log "fault $*: exit $rc"
    return "$rc"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start_daemon_env CONFIG VAR=VALUE...: start_daemon with extra environment for the daemon (and,
# through sbatch's default --export=ALL, for the jobs it submits).
start_daemon_env() {
    local config=$1
    shift
    start_bg daemon env "$@" "$BED_BIN/slullama-daemon" --config "$config"
    _daemon_env_up() {
        bg_alive daemon || fail "slullama-daemon exited during start-up: $(tail -n 40 "$E2E_SCRATCH/daemon.log")"
        daemon_healthy
    }
    wait_until 30 _daemon_env_up || fail "slullama-daemon did not answer: $(tail -n 40 "$E2E_SCRATCH/daemon.log")"
    log "daemon up at $DAEMON_URL (pid $(daemon_pid))"
}

# chat NAME [CURL_ARGS...]: a short non-streamed chat through the daemon; prints the HTTP status
# (body in NAME.body).
chat() {
    local name=$1
    shift
    req "$name" POST /api/chat -H 'Content-Type: application/json' \
        --data-binary "$(chat_body "$name" false '{"options":{"num_predict":3}}')" "$@"
}
# error_of NAME: the "error" text of a JSON error body (empty if none).
error_of() { jq -r '.error // empty' "$1.body" 2>/dev/null || true; }
# expect_ok NAME STATUS: a 200 with a complete answer.
expect_ok() {
    [[ $2 == 200 ]] || fail "$1: HTTP $2: $(head -c 500 "$1.body" 2>/dev/null); log: $(tail -n 20 "$E2E_SCRATCH/daemon.log")"
    [[ $(jq -r .done "$1.body" 2>/dev/null) == true ]] || fail "$1: incomplete answer: $(head -c 500 "$1.body")"
}

# expect_fresh_job NAME OLD_JOB [WHAT]: request NAME gets a complete answer from a job other than
# OLD_JOB; sets FRESH_JOB to that job's id.
expect_fresh_job() {
    local code
    code=$(chat "$1")
    expect_ok "$1" "$code"
    FRESH_JOB=$(status_field .job.id)
    assert_ne "$2" "$FRESH_JOB" "${3:-a fresh job}"
}

# job_pids JOBID: the processes Slurm counts as the job's on this node.
job_pids() { sl scontrol listpids "$1" 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1 }' | sort -un; }
# job_listener JOBID PORT: the job's process that listens on PORT (the model server), found by
# the job's process list and the socket owner, never by name.
job_listener() {
    local pid
    for pid in $(port_pids "$2"); do
        job_pids "$1" | grep -qx "$pid" && {
            echo "$pid"
            return 0
        }
    done
    return 1
}
# reported_port: the remote port of the daemon's current tunnel, from its log.
tunnel_remote_port() { grep -o 'tunnel [^ ]* -> [^ ]*' "$E2E_SCRATCH/daemon.log" | tail -n 1 | sed 's/.*://'; }

# assert_no_live_jobs: nothing of this suite queued or running (after the daemon stopped).
assert_no_live_jobs() {
    _no_live() { [[ -z $(live_named_jobs) ]]; }
    wait_until 60 _no_live || fail "jobs left behind: $(live_named_jobs | tr '\n' ' ')"
}
# at_most_one_live_job: fails if Slurm has two live jobs of this suite at once.
at_most_one_live_job() {
    local live
    live=$(live_named_jobs)
    (($(count_words "$live") <= 1)) || fail "two live jobs at once: $(tr '\n' ' ' <<<"$live")"
}
