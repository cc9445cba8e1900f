#!/usr/bin/env bash
# packaging.install: installs the packages packaging.debs built into THIS machine (as root: they
# are real packages), runs the installed programs from /usr/bin, verifies the installed systemd
# units with systemd-analyze where it can, then removes and purges them and checks that nothing
# is left: after `dpkg --remove` only conffiles (there are none), after `--purge` nothing.
# Usage: install_debs.sh DEBDIR WITH_TRAY(ON/OFF)
# Exits 77 (skipped) when not root.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

debs=$1 with_tray=$2
if [[ $(id -u) != 0 ]]; then
    say "SKIP: installing packages needs root"
    exit 77
fi
need dpkg dpkg
need apt-get apt

names=(slullama-cli slullama-daemon)
[[ $with_tray == ON ]] && names+=(slullama-tray)
files=()
for name in "${names[@]}"; do
    deb=$(deb_of "$debs" "$name")
    [[ -n $deb ]] || { fail "no $name package in $debs (did packaging.debs run?)"; finish; }
    files+=("$deb")
done

installed() { dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null; }
purge_all() {
    local present=()
    for name in "${names[@]}"; do
        [[ -n $(installed "$name") && $(installed "$name") != not-installed ]] && present+=("$name")
    done
    ((${#present[@]} == 0)) || dpkg --purge "${present[@]}" >/dev/null
}
# Leftovers of an interrupted earlier run would make every check below meaningless.
purge_all
trap purge_all EXIT

say "== install ${files[*]##*/}"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${files[@]}" >"$debs/apt-install.log" 2>&1; then
    cat "$debs/apt-install.log"
    fail "apt-get install failed"
    finish
fi
for name in "${names[@]}"; do
    [[ $(installed "$name") == installed ]] || fail "$name is not installed: $(installed "$name")"
done

say "== run the installed programs"
version=$(dpkg-query -W -f '${Version}' slullama-cli)
out=$(/usr/bin/slullama --version 2>&1) || fail "slullama --version failed: $out"
say "slullama --version: $out"
[[ $out == *"$version"* ]] || fail "slullama --version does not print $version"
out=$(/usr/bin/slullama-daemon --help 2>&1) || fail "slullama-daemon --help failed: $out"
[[ $out == *--config* ]] || fail "slullama-daemon --help does not mention --config: $out"
out=$(/usr/bin/slullama-daemon --version 2>&1) || fail "slullama-daemon --version failed: $out"
[[ $out == *"$version"* ]] || fail "slullama-daemon --version does not print $version: $out"
if [[ $with_tray == ON ]]; then
    out=$(QT_QPA_PLATFORM=offscreen /usr/bin/slullama-tray --version 2>&1) \
        || fail "slullama-tray --version failed: $out"
    [[ $out == *"$version"* ]] || fail "slullama-tray --version does not print $version: $out"
fi
for program in /usr/bin/slullama /usr/bin/slullama-daemon \
    $([[ $with_tray == ON ]] && echo /usr/bin/slullama-tray); do
    missing=$(ldd "$program" | grep 'not found')
    [[ -z $missing ]] || fail "$program: libraries not found: $missing"
done
# The head node gets no GUI libraries.
ldd /usr/bin/slullama-daemon | grep -qE 'libQt6(Widgets|Gui)' && fail "slullama-daemon links Qt GUI libraries"
for page in slullama slullama-daemon $([[ $with_tray == ON ]] && echo slullama-tray); do
    [[ -f /usr/share/man/man1/$page.1.gz ]] || fail "man page $page(1) not installed"
done

say "== systemd-analyze verify"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    say "SKIP: systemd-analyze not found (Debian package systemd)"
else
    runtime=$(mktemp -d)
    system_unit=/usr/lib/systemd/system/slullama-daemon@.service
    user_unit=/usr/lib/systemd/user/slullama-daemon.service
    # Works without systemd as PID 1: it loads the unit files offline. It exits 0 after
    # "Unknown key" and similar complaints, so any output fails too.
    if ! out=$(systemd-analyze verify "$system_unit" 2>&1) || [[ -n $out ]]; then
        fail "systemd-analyze verify $system_unit: $out"
    else
        say "verified $system_unit"
    fi
    if ! out=$(XDG_RUNTIME_DIR=$runtime systemd-analyze --user verify "$user_unit" 2>&1) \
        || [[ -n $out ]]; then
        if [[ $out == *"Failed to initialize manager"* ]]; then
            say "SKIP: systemd-analyze --user cannot run here: $out"
        else
            fail "systemd-analyze --user verify $user_unit: $out"
        fi
    else
        say "verified $user_unit"
    fi
    rm -rf "$runtime"
fi

say "== remove, then purge"
declare -A listed
for name in "${names[@]}"; do
    listed[$name]=$(dpkg-query -L "$name")
done
conffiles=$(for name in "${names[@]}"; do dpkg-query -W -f '${Conffiles}\n' "$name"; done \
    | awk 'NF {print $1}')
dpkg --remove "${names[@]}" >/dev/null || fail "dpkg --remove failed"
for name in "${names[@]}"; do
    while IFS= read -r path; do
        [[ -f $path || -L $path ]] || continue
        grep -qxF "$path" <<<"$conffiles" || fail "$path of $name is left after removal"
    done <<<"${listed[$name]}"
done
# Packages with neither conffiles nor a postrm are gone already; the others wait for --purge.
left=()
for name in "${names[@]}"; do
    [[ $(installed "$name") == config-files ]] && left+=("$name")
done
((${#left[@]} == 0)) || dpkg --purge "${left[@]}" >/dev/null || fail "dpkg --purge failed"
for name in "${names[@]}"; do
    state=$(installed "$name")
    [[ -z $state || $state == not-installed ]] || fail "$name still known to dpkg after purge: $state"
    while IFS= read -r path; do
        if [[ -f $path || -L $path ]]; then
            fail "$path of $name is left after purge"
        elif [[ -d $path && $path == */slullama* ]]; then
            fail "directory $path of $name is left after purge"
        fi
    done <<<"${listed[$name]}"
done
for dir in /var/lib/slullama /var/log/slullama; do
    [[ ! -e $dir ]] || fail "$dir exists after purge"
done
trap - EXIT
finish
