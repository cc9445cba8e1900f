# shellcheck shell=bash disable=SC2034
# Shared helpers for tests/cluster/up and tests/cluster/down (sourced, bash).
# Processes are identified by PID files plus the executable they run, never by name.

BED=${SLULLAMA_BED_DIR:-/tmp/slullama-bed}
BED_USER=${SLULLAMA_BED_USER:-slutest}
BED_NODE=$(hostname -s)

bed_log() { printf '[bed] %s\n' "$*" >&2; }
bed_die() {
    printf '[bed] ERROR: %s\n' "$*" >&2
    exit 1
}

# True while PID exists and is not a zombie: PID 1 on these machines reaps late, so
# `kill -0` alone would report a dead daemon as alive.
pid_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# True if PID is alive and runs EXE: guards against a recycled PID in a stale PID file.
# (Debian installs some daemons behind alternatives symlinks: slurmctld -> slurmctld-wlm.)
pid_runs() {
    local pid=$1 exe=$2
    pid_alive "$pid" || return 1
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$(readlink -f "$exe")" ]]
}

# Prints the PID recorded in FILE if it is alive and runs EXE; fails otherwise.
pidfile_pid() {
    local file=$1 exe=$2 pid
    [[ -r $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    pid_runs "$pid" "$exe" || return 1
    printf '%s\n' "$pid"
}

# wait_for TIMEOUT_SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
    local timeout=$1 deadline
    shift
    deadline=$((SECONDS + timeout))
    while ! "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

pid_gone() { ! pid_alive "$1"; }

# Sends SIGTERM, waits, then SIGKILL. Only for PIDs we verified as ours.
stop_pid() {
    local pid=$1 what=$2
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 15 pid_gone "$pid"; then
        bed_log "$what (pid $pid) ignored SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 pid_gone "$pid" || bed_log "$what (pid $pid) still present"
    fi
}

# PIDs of the processes listening on 127.0.0.1/0.0.0.0 TCP PORT (one a line).
port_listener_pids() {
    ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

port_in_use() { [[ -n $(ss -Htln "sport = :$1" 2>/dev/null) ]]; }

# True if the only listener on PORT is PID.
port_owned_by() {
    local pids
    pids=$(port_listener_pids "$1")
    [[ -n $pids && $pids == "$2" ]]
}

# A TCP port nobody listens on, avoiding the ones given as arguments.
free_port() {
    local port try avoid
    for ((try = 0; try < 200; try++)); do
        port=$((20000 + RANDOM % 40000))
        for avoid in "$@"; do
            [[ $port == "$avoid" ]] && continue 2
        done
        port_in_use "$port" || {
            printf '%s\n' "$port"
            return 0
        }
    done
    return 1
}

# Slurm client commands hang for MessageTimeout while slurmctld is down: always bounded.
bed_slurm() { timeout 10 env SLURM_CONF="$BED/slurm/slurm.conf" "$@"; }

# ensure_packages PKG...: installs the Debian packages that are missing (apt-get update once).
# Package installs must not start system-wide daemons (munge, slurmd, ssh): a policy-rc.d
# denies that while we install, and is removed again if we created it.
ensure_packages() {
    local pkg missing=() installed
    # dpkg-query fails when any package is unknown to dpkg (never installed): not an error here.
    installed=$(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null | awk '/ install ok installed$/ { print $1 }' || true)
    for pkg in "$@"; do
        grep -qxF "$pkg" <<<"$installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || bed_die "missing packages (${missing[*]}): run as root"
    bed_log "installing ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d created=''
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && created=1
    fi
    local rc=0
    if [[ -z ${SLULLAMA_APT_UPDATED:-} ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
        export SLULLAMA_APT_UPDATED=1
    fi
    ((rc == 0)) && { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?; }
    [[ -n $created ]] && rm -f "$policy"
    ((rc == 0)) || bed_die "apt-get failed ($rc) installing ${missing[*]}"
}
