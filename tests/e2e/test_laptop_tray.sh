#!/usr/bin/env bash
# e2e.laptop_tray: the real slullama-tray on a virtual desktop (Xvfb + trayer as the system-tray
# host), connected to a daemon on the bed through its libssh tunnel. Waits for the icon in the
# tray, clicks it (xdotool) to open the status popup, clicks Wake and checks that the daemon booted
# a Slurm job, that the popup then says Ready and the "GPU node ready" notification came once,
# opens the context menu, toggles Start at login and quits through the menu (tunnel port free).
# Screenshots of the icon, the popup and the menu are kept as artefacts: the suite prints where.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_bins slullama-tray slullama-daemon standin-ollama
for tool in Xvfb trayer xdotool import xwininfo; do
    command -v "$tool" >/dev/null || fail "$tool missing (scripts/deps installs xvfb, trayer, xdotool, imagemagick, x11-utils)"
done
cd "$E2E_SCRATCH"

# Artefacts outlive the scratch dir (removed when the suite passes).
ARTEFACTS=$E2E_SCRATCH/artefacts
KEEP=/tmp/slullama-e2e-artefacts-$(id -un)/$E2E_NAME
mkdir -p "$ARTEFACTS"
publish_artefacts() {
    rm -rf "$KEEP" && mkdir -p "$KEEP" && cp -f "$ARTEFACTS"/* "$E2E_SCRATCH"/tray.log "$KEEP"/ 2>/dev/null
    chmod -R a+rX "${KEEP%/*}" 2>/dev/null
    log "artefacts (screenshots, tray log): $KEEP"
}
on_exit publish_artefacts

DAEMON_TOKEN=tray-secret-$RANDOM$RANDOM$RANDOM
# 0.5 min: the job stays up while the suite looks at the popup.
write_daemon_config "$E2E_SCRATCH/daemon" 'slurm.idle_timeout=0.5'
start_daemon "$DAEMON_CONFIG"
LOCAL_PORT=$(free_port "$DAEMON_PORT" "$OLLAMA_PORT")

# --- a desktop: Xvfb on a free display (it picks one: -displayfd; -noreset: no server reset when
# the last client leaves, which would refuse the next one for a moment), trayer as the tray -----
start_bg xvfb bash -c 'exec Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp -noreset 3>"$0"' \
    "$E2E_SCRATCH/display"
wait_until 20 grep -q '[0-9]' "$E2E_SCRATCH/display" ||
    fail "Xvfb did not start: $(cat "$E2E_SCRATCH/xvfb.log")"
export DISPLAY=:$(tr -dc 0-9 <"$E2E_SCRATCH/display")
wait_until 20 xdotool getdisplaygeometry >/dev/null 2>&1 || fail "display $DISPLAY does not answer"
log "Xvfb on $DISPLAY"
start_bg trayer trayer --edge bottom --align right --widthtype request --height 32 \
    --SetDockType true --transparent false --tint 0x3c3f41 --alpha 0 --padding 4
# trayer's panel window is named "panel" (class trayer); tray icons are reparented into it.
trayer_window() { xdotool search --onlyvisible --classname '^panel$' 2>/dev/null | head -n 1; }
_trayer_up() { [[ -n $(trayer_window) ]]; }
wait_until 20 _trayer_up || fail "trayer did not map its panel: $(cat "$E2E_SCRATCH/trayer.log")"

# --- the tray, configured like a laptop: [client] only --------------------------------------------
mkdir -p home-config autostart
cat >tray.toml <<EOF
[client]
host = "$BED_USER@$BED_NODE"
server_port = $DAEMON_PORT
ssh_port = $BED_SSH_PORT
local_port = $LOCAL_PORT
token = "$DAEMON_TOKEN"
EOF
chmod 0600 tray.toml
# No session bus: Qt uses the XEmbed tray protocol, which trayer speaks.
start_bg tray env QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$E2E_SCRATCH/home-config" \
    SLULLAMA_AUTOSTART_DIR="$E2E_SCRATCH/autostart" DBUS_SESSION_BUS_ADDRESS=disabled: \
    slullama-tray --config "$E2E_SCRATCH/tray.toml" -v
tray_log() { cat "$E2E_SCRATCH/tray.log"; }
tray_alive() { bg_alive tray || fail "slullama-tray exited: $(tail -n 40 "$E2E_SCRATCH/tray.log")"; }

# The icon is the tray's XEmbed window, reparented into trayer's panel.
icon_window() {
    local panel tree w
    panel=$(trayer_window)
    [[ -n $panel ]] || return 1
    tree=$(xwininfo -id "$panel" -tree 2>/dev/null) || return 1
    for w in $(xdotool search --onlyvisible --classname slullama-tray 2>/dev/null); do
        if grep -qi "$(printf '0x%x' "$w") " <<<"$tree"; then
            printf '%s\n' "$w"
            return 0
        fi
    done
    return 1
}
_icon_shown() { tray_alive && icon_window >/dev/null; }
wait_until 30 _icon_shown || fail "no slullama icon in the tray: $(tail -n 30 "$E2E_SCRATCH/tray.log")"
ICON=$(icon_window)
eval "$(xdotool getwindowgeometry --shell "$ICON")"
ICON_X=$X ICON_Y=$Y ICON_W=$WIDTH ICON_H=$HEIGHT
log "icon window $ICON at $ICON_X,$ICON_Y (${ICON_W}x$ICON_H)"

# Connected through the tunnel: the local port belongs to the tray; the daemon still sleeps.
_tray_connected() { tray_alive && [[ $(port_pids "$LOCAL_PORT") == "$(bg_pid tray)" ]]; }
wait_until 30 _tray_connected || fail "slullama-tray does not hold 127.0.0.1:$LOCAL_PORT: $(tail -n 30 "$E2E_SCRATCH/tray.log")"
wait_until 20 grep -q 'connected to' "$E2E_SCRATCH/tray.log" || fail "tunnel did not connect: $(tray_log)"
assert_eq sleeping "$(status_field .phase)" 'daemon phase before Wake'
assert_eq '' "$(named_jobs)" 'jobs before Wake (the tray must not wake the node by itself)'

# shot NAME [GEOMETRY]: a screenshot of the whole screen, or a region (WxH+X+Y), as NAME.png.
shot() {
    local args=()
    [[ -z ${2:-} ]] || args=(-crop "$2" +repage)
    import -window root "${args[@]}" "$ARTEFACTS/$1.png" || fail "screenshot $1 failed"
    log "screenshot $ARTEFACTS/$1.png"
}
# The panel's corner of the screen, around the icon (scaled up so the icon is easy to look at).
icon_region() {
    local x=$((ICON_X - 40)) y=$((ICON_Y - 8))
    ((x >= 0)) || x=0
    ((y >= 0)) || y=0
    printf '%dx%d+%d+%d' $((ICON_W + 80)) $((ICON_H + 16)) "$x" "$y"
}
tray_state_is() { grep -q "tray state: $1\$" "$E2E_SCRATCH/tray.log"; }
wait_until 20 tray_state_is sleeping || fail "the tray never showed 'sleeping': $(tail -n 30 "$E2E_SCRATCH/tray.log")"
shot icon-sleeping "$(icon_region)"
# ImageMagick's own convert (/usr/bin/convert may be shadowed by a wrapper on PATH).
magnify() { # NAME: NAME.png -> NAME-x8.png, pixels kept sharp
    local cv
    for cv in convert-im6.q16 convert-im6 convert; do
        command -v "$cv" >/dev/null || continue
        "$cv" "$ARTEFACTS/$1.png" -filter point -resize 800% "$ARTEFACTS/$1-x8.png" && return 0
    done
    log "cannot magnify $1.png (no ImageMagick convert)"
}
magnify icon-sleeping

# --- left click: the status popup; then its Wake button -----------------------------------------
popup_shows() { [[ $(grep -c 'status popup shown' "$E2E_SCRATCH/tray.log" || true) -gt $1 ]]; }
# The pointer comes from elsewhere, so the icon sees it enter before the click (no mousemove
# --sync: it waits for a motion event, which never comes when the pointer is already there).
click_icon() { # BUTTON
    xdotool mousemove 300 300 mousemove $((ICON_X + ICON_W / 2)) $((ICON_Y + ICON_H / 2)) click "$1"
}
shown_before=$(grep -c 'status popup shown' "$E2E_SCRATCH/tray.log" || true)
click_icon 1
wait_until 10 popup_shows "$shown_before" || fail "left click did not open the status popup: $(tail -n 20 "$E2E_SCRATCH/tray.log")"
line=$(grep 'status popup shown' "$E2E_SCRATCH/tray.log" | tail -n 1)
[[ $line =~ popup\ ([0-9-]+),([0-9-]+)\ ([0-9]+)x([0-9]+)\;\ wake\ button\ ([0-9-]+),([0-9-]+)\ ([0-9]+)x([0-9]+) ]] ||
    fail "cannot read the popup geometry from: $line"
read -r PX PY PW PH BX BY BW BH <<<"${BASH_REMATCH[*]:1}"
log "popup at $PX,$PY ${PW}x$PH, Wake button at $BX,$BY ${BW}x$BH"
((PX >= 0 && PY >= 0 && PX + PW <= 1024 && PY + PH <= 768)) || fail "popup off screen: $line"
((PW >= 150 && PH >= 120)) || fail "popup too small to read: $line"
shot popup-sleeping
shot popup-sleeping-crop "${PW}x${PH}+${PX}+${PY}"

log "clicking Wake"
xdotool mousemove $((BX + BW / 2)) $((BY + BH / 2)) click 1
wait_until 10 grep -q 'asking the daemon to wake' "$E2E_SCRATCH/tray.log" ||
    fail "Wake click did not reach the controller: $(tail -n 20 "$E2E_SCRATCH/tray.log")"

# The daemon booted a job for it.
_booted() { [[ -n $(named_jobs) ]]; }
wait_until 20 _booted || fail "no Slurm job after Wake: $(daemon_status)"
job=$(named_jobs)
assert_eq 1 "$(count_words "$job")" "jobs after Wake ($job)"
log "Wake booted job $job"
shot popup-waking
wait_phase ready 90
wait_job_state "$job" '^RUNNING$' 30

# The tray notices: "GPU node ready: model server on NODE", once.
notified() { grep -c "notification: GPU node ready: model server on $BED_NODE" "$E2E_SCRATCH/tray.log" || true; }
_notified() { (($(notified) >= 1)); }
wait_until 30 _notified || fail "no 'GPU node ready' notification: $(tail -n 30 "$E2E_SCRATCH/tray.log")"
shot notification
# The popup stayed open and follows the controller.
wait_until 20 tray_state_is ready || fail "the tray never showed 'ready': $(tail -n 30 "$E2E_SCRATCH/tray.log")"
shot popup-ready
shot popup-ready-crop "${PW}x${PH}+${PX}+${PY}"
shot icon-ready "$(icon_region)"
magnify icon-ready

# The tray's endpoint is Ollama for local tools: one request through it.
tags=$(curl -fsS --max-time 30 -H "Authorization: Bearer $DAEMON_TOKEN" "http://127.0.0.1:$LOCAL_PORT/api/tags") ||
    fail "/api/tags through the tray's tunnel failed"
jq -e '.models | length > 0' <<<"$tags" >/dev/null || fail "/api/tags through the tray: $tags"

# Polls go on (fast while waking, slow once ready) without a second notification: wait for two
# more status answers after it.
polls() { grep -c 'slullama.tray: status:' "$E2E_SCRATCH/tray.log" || true; }
polls_at_notification=$(awk '/notification: GPU node ready/ {exit} /slullama.tray: status:/ {n++} END {print n+0}' "$E2E_SCRATCH/tray.log")
_two_more_polls() { (($(polls) >= polls_at_notification + 2)); }
wait_until 30 _two_more_polls || fail "the tray stopped polling: $(tail -n 20 "$E2E_SCRATCH/tray.log")"
assert_eq 1 "$(notified)" "'GPU node ready' notifications after $(polls) polls"

# By now the balloon is gone (10 s) and the popup shows the request and the countdown.
shot popup-ready-later "${PW}x${PH}+${PX}+${PY}"

# --- the context menu: screenshot, Start at login, Quit -------------------------------------------
xdotool key --clearmodifiers Escape
menu_shows() { [[ $(grep -c 'menu shown' "$E2E_SCRATCH/tray.log" || true) -gt $1 ]]; }
# Right after a menu closed, Qt may still hold the pointer grab and drop the next click: retry.
open_menu() {
    local before try
    before=$(grep -c 'menu shown' "$E2E_SCRATCH/tray.log" || true)
    for try in 1 2 3 4 5; do
        click_icon 3
        wait_until 3 menu_shows "$before" && return 0
        log "right click $try did not open the menu; again"
    done
    fail "right click did not open the menu: $(tail -n 20 "$E2E_SCRATCH/tray.log")"
}
open_menu
shot menu
shot menu-crop 512x384+512+384
# The keyboard drives the open menu (it grabs it): top to bottom it holds the state (disabled),
# Wake now, Disconnect, Copy endpoint, Settings…, Start at login, Quit; Up starts at the bottom.
xdotool key --clearmodifiers Up Up Return # Start at login
wait_until 10 test -f "autostart/slullama-tray.desktop" || fail "Start at login wrote no autostart entry: $(ls -la autostart)"
assert_contains "$(cat autostart/slullama-tray.desktop)" 'Exec=' 'autostart entry'
log "Start at login: $(grep '^Exec=' autostart/slullama-tray.desktop)"

open_menu
shot menu-autostart-checked 512x384+512+384
xdotool key --clearmodifiers Up Return # Quit
tray_pid=$(bg_pid tray)
wait_until 20 pid_gone "$tray_pid" || fail "slullama-tray still running after Quit"
wait_until 10 port_free "$LOCAL_PORT" || fail "port $LOCAL_PORT still listening after Quit"
log "Quit closed the tray and its tunnel"
