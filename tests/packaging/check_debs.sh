#!/usr/bin/env bash
# packaging.debs: builds the Debian packages with cpack into OUTDIR (the fixture the install
# test uses), then checks them: lintian reports no error or warning, each package holds exactly
# the expected files with sane modes and owners, install-time configured files name /usr paths,
# and the dependencies are right (no Widgets on the head node, libssh for the tray).
# Usage: check_debs.sh BUILD_DIR OUTDIR WITH_TRAY(ON/OFF) WITH_PNG_ICONS(ON/OFF)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

build=$1 out=$2 with_tray=$3 with_png=$4
need cpack cmake
need dpkg-deb dpkg
need dpkg-shlibdeps dpkg-dev
need lintian lintian

version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
[[ -n $version ]] || { fail "no CPACK_PACKAGE_VERSION in $build/CPackConfig.cmake"; finish; }
expected_packages=(slullama-cli slullama-daemon)
[[ $with_tray == ON ]] && expected_packages+=(slullama-tray)

say "== cpack -G DEB into $out"
rm -rf "$out"
mkdir -p "$out"
if ! cpack -G DEB --config "$build/CPackConfig.cmake" -B "$out" >"$out/cpack.log" 2>&1; then
    cat "$out/cpack.log"
    fail "cpack failed"
    finish
fi
for name in "${expected_packages[@]}"; do
    deb="$out/${name}_${version}_$(dpkg --print-architecture).deb"
    [[ -f $deb ]] || fail "cpack made no $deb"
done
mapfile -t made < <(cd "$out" && ls -- *.deb)
((${#made[@]} == ${#expected_packages[@]})) || fail "expected ${#expected_packages[@]} packages, got: ${made[*]}"
((failures == 0)) || finish

say "== contents"
# Every regular file each package must hold, and nothing else.
expect_cli=(
    ./usr/bin/slullama
    ./usr/share/doc/slullama-cli/changelog.gz
    ./usr/share/doc/slullama-cli/copyright
    ./usr/share/man/man1/slullama.1.gz
)
expect_daemon=(
    ./usr/bin/slullama-daemon
    ./usr/lib/systemd/system/slullama-daemon@.service
    ./usr/lib/systemd/user/slullama-daemon.service
    ./usr/share/doc/slullama-daemon/changelog.gz
    ./usr/share/doc/slullama-daemon/copyright
    ./usr/share/doc/slullama-daemon/examples/system-config.toml
    ./usr/share/lintian/overrides/slullama-daemon
    ./usr/share/man/man1/slullama-daemon.1.gz
    ./usr/share/slullama/job-template.sh
)
expect_tray=(
    ./usr/bin/slullama-tray
    ./usr/share/applications/slullama-tray.desktop
    ./usr/share/doc/slullama-tray/changelog.gz
    ./usr/share/doc/slullama-tray/copyright
    ./usr/share/icons/hicolor/scalable/apps/slullama.svg
    ./usr/share/man/man1/slullama-tray.1.gz
    ./usr/share/slullama/autostart/slullama-tray.desktop
)
if [[ $with_png == ON ]]; then
    for size in 16 22 32 48 64 128 256; do
        expect_tray+=("./usr/share/icons/hicolor/${size}x${size}/apps/slullama.png")
    done
fi

check_contents() {
    local name=$1 deb=$2
    shift 2
    local listing expected actual
    listing=$(dpkg-deb -c "$deb") || {
        fail "$name: dpkg-deb -c failed"
        return
    }
    expected=$(printf '%s\n' "$@" | sort)
    actual=$(awk '$1 ~ /^-/ {print $6}' <<<"$listing" | sort)
    if [[ $expected != "$actual" ]]; then
        fail "$name: files differ from the expected list (< expected, > packaged):"
        diff <(echo "$expected") <(echo "$actual") | grep '^[<>]'
    fi
    # Owners root/root; executables 0755 in usr/bin only; data 0644; directories 0755.
    awk -v n="$name" '
        $2 != "root/root" { print "FAIL: " n ": " $6 " owned by " $2; bad = 1 }
        $1 ~ /^d/ && $1 != "drwxr-xr-x" { print "FAIL: " n ": directory " $6 " is " $1; bad = 1 }
        $1 ~ /^-/ && $6 ~ /^\.\/usr\/bin\// && $1 != "-rwxr-xr-x" { print "FAIL: " n ": " $6 " is " $1; bad = 1 }
        $1 ~ /^-/ && $6 !~ /^\.\/usr\/bin\// && $1 != "-rw-r--r--" { print "FAIL: " n ": " $6 " is " $1; bad = 1 }
        $1 ~ /^l/ { print "FAIL: " n ": unexpected link " $6; bad = 1 }
        END { exit bad }' <<<"$listing" || failures=$((failures + 1))
}
check_contents slullama-cli "$(deb_of "$out" slullama-cli)" "${expect_cli[@]}"
check_contents slullama-daemon "$(deb_of "$out" slullama-daemon)" "${expect_daemon[@]}"
[[ $with_tray == ON ]] && check_contents slullama-tray "$(deb_of "$out" slullama-tray)" "${expect_tray[@]}"

say "== control fields"
field() { dpkg-deb -f "$(deb_of "$out" "$1")" "$2"; }
for name in "${expected_packages[@]}"; do
    [[ $(field "$name" Version) == "$version" ]] || fail "$name: Version is not $version"
    for f in Maintainer Section Priority Homepage Description Installed-Size; do
        [[ -n $(field "$name" "$f") ]] || fail "$name: no $f field"
    done
done
depends_daemon=$(field slullama-daemon Depends)
depends_cli=$(field slullama-cli Depends)
say "slullama-cli Depends: $depends_cli"
say "slullama-daemon Depends: $depends_daemon"
for lib in libqt6core6 libqt6network6 libtomlplusplus3; do
    [[ $depends_daemon == *"$lib"* ]] || fail "slullama-daemon does not depend on $lib"
done
[[ $depends_daemon == *"slullama-cli (= $version)"* ]] || fail "slullama-daemon does not depend on slullama-cli (= $version)"
for name in slullama-cli slullama-daemon; do
    deps=$(field "$name" Depends)
    for gui in libqt6widgets6 libqt6gui6 qt6-qpa-plugins; do
        [[ $deps != *"$gui"* ]] || fail "$name (head node) depends on $gui"
    done
done
if [[ $with_tray == ON ]]; then
    depends_tray=$(field slullama-tray Depends)
    say "slullama-tray Depends: $depends_tray"
    for dep in libssh-4 libqt6widgets6 qt6-qpa-plugins libqt6svg6 "slullama-cli (= $version)"; do
        [[ $depends_tray == *"$dep"* ]] || fail "slullama-tray does not depend on $dep"
    done
fi
# No package ships files under /etc, so none has conffiles.
for name in "${expected_packages[@]}"; do
    if dpkg-deb -c "$(deb_of "$out" "$name")" | awk '{print $6}' | grep -q '^\./etc/'; then
        fail "$name ships files under /etc: list them as conffiles and update this test"
    fi
done

say "== installed paths inside the files"
extract="$out/extracted"
for name in "${expected_packages[@]}"; do
    mkdir -p "$extract/$name"
    dpkg-deb -x "$(deb_of "$out" "$name")" "$extract/$name"
done
while IFS= read -r -d '' file; do
    text=$(if [[ $file == *.gz ]]; then zcat "$file"; else cat "$file"; fi)
    rel=${file#"$extract"/}
    if grep -qE '@[A-Z_]+@' <<<"$text"; then
        fail "$rel has an unreplaced @VARIABLE@: $(grep -oE '@[A-Z_]+@' <<<"$text" | head -n3 | tr '\n' ' ')"
    fi
    if grep -qF -e "$build" -e "$out" -e /usr/local <<<"$text"; then
        fail "$rel names the build tree, the staging folder or /usr/local"
    fi
done < <(find "$extract" -type f ! -path '*/usr/bin/*' ! -name '*.png' -print0)
units="$extract/slullama-daemon/usr/lib/systemd"
grep -qx 'ExecStart=/usr/bin/slullama-daemon' "$units/user/slullama-daemon.service" \
    || fail "user unit: ExecStart is not /usr/bin/slullama-daemon"
grep -qx 'ExecStart=/usr/bin/slullama-daemon --config /etc/slullama/%i.toml' \
    "$units/system/slullama-daemon@.service" || fail "system unit: unexpected ExecStart"
for key in 'User=%i' 'ProtectSystem=strict' 'NoNewPrivileges=yes' 'StateDirectory=slullama/%i' \
    'LogsDirectory=slullama/%i' 'ProtectHome=read-only' 'KillSignal=SIGTERM'; do
    grep -qx "$key" "$units/system/slullama-daemon@.service" || fail "system unit lacks $key"
done
for unit in "$units/user/slullama-daemon.service" "$units/system/slullama-daemon@.service"; do
    grep -qx 'Restart=on-failure' "$unit" || fail "$(basename "$unit") lacks Restart=on-failure"
done
head -n1 "$extract/slullama-daemon/usr/share/slullama/job-template.sh" | grep -qx '#!/bin/bash' \
    || fail "job-template.sh does not start with #!/bin/bash"
# shellcheck disable=SC2016 # the literal template variable
grep -qF '${ollama_binary}' "$extract/slullama-daemon/usr/share/slullama/job-template.sh" \
    || fail "job-template.sh is not the raw template (no \${ollama_binary})"
if [[ $with_tray == ON ]]; then
    cmp -s "$extract/slullama-tray/usr/share/applications/slullama-tray.desktop" \
        "$extract/slullama-tray/usr/share/slullama/autostart/slullama-tray.desktop" \
        || fail "the launcher and the autostart entry differ"
fi

say "== lintian"
# No errors and no warnings; info/pedantic tags are listed for the log. The only overrides are
# in installers/debian/*/lintian-overrides, each with its reason.
lintian_out=$(lintian --info --display-info --pedantic --fail-on error,warning \
    "${made[@]/#/$out/}" 2>&1)
lintian_rc=$?
grep -E '^[EWIPX]:' <<<"$lintian_out" || true
if ((lintian_rc != 0)); then
    grep -vE '^[IPXN]:|^running with root' <<<"$lintian_out" | head -n 40
    fail "lintian reported errors or warnings (exit $lintian_rc)"
fi

finish
