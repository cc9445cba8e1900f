#!/usr/bin/env bash
# packaging.install_tree: `cmake --install --prefix` into a scratch folder puts every file in its
# GNUInstallDirs place with paths configured for that prefix; the man pages render without groff
# warnings and document every option the programs' --help lists (so a new option cannot ship
# undocumented).
# Usage: check_install_tree.sh BUILD_DIR STAGE_DIR WITH_TRAY(ON/OFF)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

build=$1 stage=$2 with_tray=$3
bin=$build/bin
need groff groff-base
programs=(slullama slullama-daemon)
[[ $with_tray == ON ]] && programs+=(slullama-tray)

say "== cmake --install --prefix $stage"
rm -rf "$stage"
if ! out=$(cmake --install "$build" --prefix "$stage" 2>&1); then
    echo "$out"
    fail "cmake --install failed"
    finish
fi
expect=(
    bin/slullama bin/slullama-daemon
    share/slullama/job-template.sh
    lib/systemd/user/slullama-daemon.service
    lib/systemd/system/slullama-daemon@.service
    share/doc/slullama-daemon/examples/system-config.toml
)
[[ $with_tray == ON ]] && expect+=(
    bin/slullama-tray
    share/applications/slullama-tray.desktop
    share/slullama/autostart/slullama-tray.desktop
    share/icons/hicolor/scalable/apps/slullama.svg
)
for program in "${programs[@]}"; do expect+=("share/man/man1/$program.1.gz"); done
for file in "${expect[@]}"; do
    [[ -f $stage/$file ]] || fail "cmake --install did not install $file"
done
grep -qx "ExecStart=$stage/bin/slullama-daemon" "$stage/lib/systemd/user/slullama-daemon.service" \
    || fail "the user unit does not start $stage/bin/slullama-daemon (configured for the install prefix)"
zcat "$stage/share/man/man1/slullama-daemon.1.gz" | grep -qF "$stage/share/slullama/job" \
    || fail "slullama-daemon.1 does not name the job template under the install prefix"

say "== man pages"

for program in "${programs[@]}"; do
    page=$stage/share/man/man1/$program.1.gz
    [[ -f $page ]] || continue
    # "cannot adjust line": a long unbreakable word (the scratch prefix in a path), typography.
    warnings=$(zcat "$page" | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>&1 \
        | grep -v 'cannot adjust line')
    [[ -z $warnings ]] || fail "$program.1: groff warnings: $warnings"
    zcat "$page" | grep -q '^\.SH NAME' || fail "$program.1 has no NAME section"

    # Options of the program and, for slullama, of each command.
    help=$(QT_QPA_PLATFORM=offscreen "$bin/$program" --help 2>&1)
    if [[ $program == slullama ]]; then
        for command in serve connect status wake; do
            help+=$'\n'$("$bin/$program" "$command" --help 2>&1)
        done
    fi
    # The roff source spells options with \- ; compare on the rendered text.
    text=$(zcat "$page" | LC_ALL=C.UTF-8 groff -man -Tutf8 2>/dev/null | sed 's/.\x08//g')
    mapfile -t options < <(grep -oE '(^|[ ,[])--[a-z][a-z-]+' <<<"$help" | grep -oE -- '--[a-z-]+' | sort -u)
    ((${#options[@]} > 0)) || say "note: $program --help lists no options yet"
    for option in "${options[@]}"; do
        grep -qF -- "$option" <<<"$text" || fail "$program.1 does not document $option (listed by --help)"
    done
    say "$program.1: checked ${#options[@]} options from --help"
done
finish
