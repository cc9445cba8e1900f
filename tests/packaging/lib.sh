# Shared by the packaging test scripts: messages, failure and the package names.
# shellcheck shell=bash

failures=0

say() { printf '%s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*"
    failures=$((failures + 1))
}
# Missing test tools fail the test, naming the Debian package that scripts/deps must install.
need() {
    local tool=$1 package=$2
    command -v "$tool" >/dev/null 2>&1 || {
        printf 'FAIL: %s not found: install the Debian package %s (scripts/deps)\n' "$tool" "$package"
        exit 1
    }
}
finish() {
    if ((failures > 0)); then
        say "$failures check(s) failed"
        exit 1
    fi
    say "all checks passed"
    exit 0
}
# The .deb of a package in a folder.
deb_of() { local dir=$1 name=$2; compgen -G "$dir/${name}_*.deb" | head -n1; }
