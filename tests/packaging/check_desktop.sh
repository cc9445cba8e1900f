#!/usr/bin/env bash
# packaging.desktop_entry: the generated desktop entry passes desktop-file-validate (hints are
# shown, not failures) and is byte for byte what the tray writes to ~/.config/autostart.
# Usage: check_desktop.sh DESKTOP_FILE PRINT_DESKTOP_ENTRY_PROGRAM
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

desktop=$1 printer=$2
need desktop-file-validate desktop-file-utils

out=$(desktop-file-validate "$desktop" 2>&1) || fail "desktop-file-validate $desktop: $out"
[[ -n $out ]] && say "$out"
grep -E ': (error|warning):' <<<"$out" && fail "desktop-file-validate reported errors or warnings"

written=$("$printer") || fail "$printer failed"
if [[ $written != "$(cat "$desktop")" ]]; then
    fail "the tray's autostart entry differs from installers/linux/slullama-tray.desktop.in (< tray, > packaged):"
    diff <(echo "$written") "$desktop"
fi
grep -qx 'Exec=slullama-tray' "$desktop" || fail "Exec is not slullama-tray"
grep -qx 'Icon=slullama' "$desktop" || fail "Icon is not slullama"
finish
