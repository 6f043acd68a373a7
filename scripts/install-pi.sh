#!/usr/bin/env bash
# Install (or remove) fabnode as a service on a Raspberry Pi (Raspberry Pi OS bookworm).
# `sudo make install` runs this; README.md "Installing on a Raspberry Pi" is the guide. Running it twice changes nothing.
#
# Installs: the fabnode system user (groups dialout, gpio), /etc/fabnode (the config, copied from an
# example only when absent), /var/lib/fabnode (usage log, lab secret), /srv/fabnode/inbox, a venv in
# /opt/fabnode with '.[pi]' ('.[pi5]' on a Pi 5), /usr/local/bin/fabnode, the systemd unit (enabled,
# not started), udev rules, a modprobe blacklist for USB NFC readers and /etc/profile.d/fabnode.sh.
# The config and the serial port's udev name follow the machine kind (--machine, else the kind in the
# config already there, else printer): a laser node gets /dev/fabnode-laser, as its config expects.
# --uninstall keeps /etc/fabnode, /var/lib/fabnode and /srv/fabnode; --purge removes them too.
#
# --root DIR (or $FABNODE_ROOT, $DESTDIR) installs into DIR and only prints the system commands
# (useradd, chown, systemctl, udevadm, ...) as "skipped:"; --dry-run changes nothing at all.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install-pi.sh [options]            install or update fabnode (as root)
       install-pi.sh --uninstall [--purge]

  --root DIR        install into DIR (default $FABNODE_ROOT, $DESTDIR, else /); system commands
                    (useradd, chown, systemctl, udevadm, apt-get) are skipped and printed
  --dry-run         print what would be done, change nothing
  --no-systemd      do not call systemctl (containers, images)
  --no-pip          create the venv without pip and install no packages (tests, offline)
  --no-apt          do not apt-get the build dependencies
  --extra NAME      pip extra: pi, pi5 or none (default: from /proc/device-tree/model)
  --machine KIND    printer or laser: the example copied to /etc/fabnode/fabnode.toml (first install)
                    and the serial port's name in the udev rule (/dev/fabnode-KIND); default: the
                    kind in an existing /etc/fabnode/fabnode.toml, else printer
  --technician USER add USER to the fabnode group (may be repeated)
  --python PY       the Python (>= 3.11) for the venv (default python3)
  --fab-manager-url URL
                    import the trainings of the lab's Fab-manager at URL every hour: installs and
                    enables fabnode-lab-sync.timer (README.md, "Fab-manager"); an update without
                    it keeps a timer installed before
  --uninstall       remove the service, venv, symlink, udev rules and profile snippet
  --purge           with --uninstall: also remove /etc/fabnode, /var/lib/fabnode (the usage log!),
                    /srv/fabnode and the fabnode user
EOF
}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${FABNODE_ROOT:-${DESTDIR:-}}
DRY=0 NO_SYSTEMD=0 NO_PIP=0 NO_APT=0 UNINSTALL=0 PURGE=0
EXTRA="" MACHINE="" PYTHON=python3 FAB_MANAGER_URL=""
TECHNICIANS=()
MODEL_FILE=${FABNODE_MODEL_FILE:-/proc/device-tree/model}

# Where things go (under $ROOT).
ETC=/etc/fabnode STATE=/var/lib/fabnode SRV=/srv/fabnode VENV=/opt/fabnode
SHARE=/opt/fabnode/share/fabnode BIN=/usr/local/bin/fabnode
UNIT=/etc/systemd/system/fabnode.service PROFILE=/etc/profile.d/fabnode.sh
SYNC_UNITS=(fabnode-lab-sync.service fabnode-lab-sync.timer) SYNC_ENV=/etc/fabnode/fab-manager.env
UDEV_DIR=/etc/udev/rules.d MODPROBE=/etc/modprobe.d/fabnode-nfc-blacklist.conf
UDEV_RULES=(99-fabnode-serial.rules 99-fabnode-nfc.rules)
USER_NAME=fabnode

say() { printf 'fabnode-install: %s\n' "$*"; }
die() { printf 'fabnode-install: error: %s\n' "$*" >&2; exit 1; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --root) ROOT=${2:?--root needs a folder}; shift ;;
            --root=*) ROOT=${1#*=} ;;
            --dry-run) DRY=1 ;;
            --no-systemd) NO_SYSTEMD=1 ;;
            --no-pip) NO_PIP=1 ;;
            --no-apt) NO_APT=1 ;;
            --extra) EXTRA=${2:?--extra needs pi, pi5 or none}; shift ;;
            --machine) MACHINE=${2:?--machine needs printer or laser}; shift ;;
            --technician) TECHNICIANS+=("${2:?--technician needs a user name}"); shift ;;
            --python) PYTHON=${2:?--python needs a path}; shift ;;
            --fab-manager-url) FAB_MANAGER_URL=${2:?--fab-manager-url needs a URL}; shift ;;
            --uninstall) UNINSTALL=1 ;;
            --purge) PURGE=1 ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown option $1" ;;
        esac
        shift
    done
    case $MACHINE in ""|printer|laser) ;; *) die "--machine $MACHINE: use printer or laser" ;; esac
    case $EXTRA in ""|pi|pi5|none) ;; *) die "--extra $EXTRA: use pi, pi5 or none" ;; esac
    [ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge goes with --uninstall"
    case $FAB_MANAGER_URL in ""|http://?*|https://?*) ;; *) die "--fab-manager-url $FAB_MANAGER_URL: use https://HOST" ;; esac
    case $FAB_MANAGER_URL in *[[:space:]\"\'\\\$]*) die "--fab-manager-url: no spaces, quotes, \\ or \$" ;; esac
    ROOT=${ROOT%/}
    if [ -n "$ROOT" ]; then
        [ "${ROOT:0:1}" = / ] || ROOT="$PWD/$ROOT"
        STAGED=1
    else
        STAGED=0
    fi
}

# --- running things ---------------------------------------------------------------------------
# run: changes files under $ROOT (skipped only by --dry-run).
run() {
    if [ "$DRY" = 1 ]; then say "would run: $*"; else "$@"; fi
}

# system: changes the system itself (users, owners, services, devices): skipped under --root.
system() {
    if [ "$DRY" = 1 ]; then
        say "would run: $*"
    elif [ "$STAGED" = 1 ]; then
        say "skipped: $*"
    else
        "$@"
    fi
}

systemctl_() {
    if [ "$NO_SYSTEMD" = 1 ]; then say "skipped (--no-systemd): systemctl $*"; else system systemctl "$@"; fi
}

# Steps that only refresh the running system (udev, systemd, modules): a failure (a container, an image
# being built) is reported, not fatal; the files are in place and a reboot applies them.
try() {
    "$@" && return 0
    local words=("$@")
    [ "${words[0]}" != system ] || words=("${words[@]:1}")
    [ "${words[0]}" != systemctl_ ] || words[0]=systemctl
    say "warning: '${words[*]}' failed; the files are in place, a reboot applies them"
}

own() { system chown "$@"; }

# --- pieces of the install --------------------------------------------------------------------

# The kind a config file declares ([machine] kind = "..."), or nothing.
config_kind() {
    [ -r "$1" ] || return 0
    awk '/^[[:space:]]*\[/ { in_machine = ($0 ~ /^[[:space:]]*\[machine\][[:space:]]*(#.*)?$/) }
         in_machine && /^[[:space:]]*kind[[:space:]]*=/ {
             if (match($0, /["'"'"'][a-z]+["'"'"']/)) { print substr($0, RSTART + 1, RLENGTH - 2); exit } }' "$1"
}

# The machine kind this install is for: the example config and the udev name both follow it, so the
# port the config names is the one udev creates. An update without --machine keeps the node's kind.
machine_kind() {
    local config="$ROOT$ETC/fabnode.toml" kind
    kind=$(config_kind "$config")
    case $kind in printer|laser) ;; *) kind="" ;; esac
    if [ -z "$MACHINE" ]; then
        MACHINE=${kind:-printer}
    elif [ -n "$kind" ] && [ "$kind" != "$MACHINE" ]; then
        say "warning: --machine $MACHINE, but the kept $ETC/fabnode.toml is a $kind config: the udev rule" \
            "names /dev/fabnode-$MACHINE; set [serial] port and [machine] there to match"
    fi
    say "machine kind: $MACHINE (serial port /dev/fabnode-$MACHINE)"
}

# The rules as this install ships them, in $WORK: the serial rule names the port for the machine kind.
prepare_rules() {
    local rule
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    for rule in "${UDEV_RULES[@]}"; do
        cp "$SRC/systemd/$rule" "$WORK/$rule"
    done
    sed "s/SYMLINK+=\"fabnode-printer\"/SYMLINK+=\"fabnode-$MACHINE\"/" \
        "$SRC/systemd/99-fabnode-serial.rules" >"$WORK/99-fabnode-serial.rules"
}

check_root() {
    if [ "$STAGED" = 0 ] && [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
        die "run as root: sudo make install (or --root DIR to install into a folder)"
    fi
}

# The pip extra: RPi.GPIO on a Pi 1-4, rpi-lgpio on a Pi 5 (RPi.GPIO cannot drive its RP1 chip).
detect_extra() {
    [ -z "$EXTRA" ] || return 0
    local model=""
    [ -r "$MODEL_FILE" ] && model=$(tr -d '\0' <"$MODEL_FILE")
    case $model in
        *"Raspberry Pi 5"*|*"Raspberry Pi Compute Module 5"*) EXTRA=pi5 ;;
        *"Raspberry Pi"*) EXTRA=pi ;;
        *) EXTRA=none ;;
    esac
    say "machine: ${model:-not a Raspberry Pi}; pip extra: $EXTRA"
}

apt_dependencies() {
    [ "$NO_APT" = 0 ] && [ "$NO_PIP" = 0 ] || return 0
    command -v dpkg-query >/dev/null || return 0
    # gcc and python3-dev build RPi.GPIO where no wheel exists; libusb for nfcpy's USB readers.
    local wanted=(python3-venv python3-dev gcc libusb-1.0-0) missing=() pkg
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} = 0 ] && return 0
    # A fresh image may have no package lists yet.
    system apt-get install -y --no-install-recommends "${missing[@]}" \
        || { system apt-get update && system apt-get install -y --no-install-recommends "${missing[@]}"; }
}

user_and_groups() {
    if ! getent group gpio >/dev/null; then
        say "no gpio group (not a Raspberry Pi OS image?): creating it"
        system groupadd --system gpio
    fi
    if ! getent passwd "$USER_NAME" >/dev/null; then
        system useradd --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --groups dialout,gpio --comment "fabnode machine node" "$USER_NAME"
    else
        system usermod --append --groups dialout,gpio "$USER_NAME"
    fi
    local tech
    for tech in "${TECHNICIANS[@]+"${TECHNICIANS[@]}"}"; do
        system usermod --append --groups "$USER_NAME" "$tech"
    done
}

# System folders are only created when missing (an empty --root): their modes are not ours to set.
system_dirs() {
    local dir
    for dir in /etc/profile.d "$UDEV_DIR" /etc/modprobe.d /etc/systemd/system /opt /usr/local/bin /var/lib /srv; do
        [ -d "$ROOT$dir" ] || run install -d -m 0755 "$ROOT$dir"
    done
}

directories() {
    system_dirs
    run install -d -m 0750 "$ROOT$ETC"
    own root:"$USER_NAME" "$ROOT$ETC"
    # setgid, group-writable: technicians (group fabnode) write the database and its -wal/-shm files.
    run install -d -m 2770 "$ROOT$STATE" "$ROOT$SRV" "$ROOT$SRV/inbox"
    own "$USER_NAME:$USER_NAME" "$ROOT$STATE" "$ROOT$SRV" "$ROOT$SRV/inbox"
}

# The lab's secret and the usage log exist before the daemon first runs, so they are the group's too:
# the daemon would create the secret 0600 and SQLite the database 0640.
state_files() {
    local secret="$ROOT$STATE/secret.key" db="$ROOT$STATE/usage.db" f
    if [ ! -e "$secret" ]; then
        if [ "$DRY" = 1 ]; then
            say "would create $secret (32 random bytes)"
        else
            (umask 077 && head -c 32 /dev/urandom >"$secret")
        fi
    fi
    run chmod 0640 "$secret"
    # An empty file is an empty SQLite database; the daemon migrates it, and SQLite gives the
    # -wal/-shm files the database's own mode.
    [ -e "$db" ] || run install -m 0660 /dev/null "$db"
    for f in "$db" "$db-wal" "$db-shm"; do
        [ ! -e "$f" ] || run chmod 0660 "$f"
    done
    own "$USER_NAME:$USER_NAME" "$secret" "$db"
}

config_files() {
    local config="$ROOT$ETC/fabnode.toml" f
    if [ -e "$config" ]; then
        say "kept $ETC/fabnode.toml"
    else
        run install -m 0640 "$SRC/config/fabnode-$MACHINE.toml" "$config"
        own root:"$USER_NAME" "$config"
        say "created $ETC/fabnode.toml from the $MACHINE example"
    fi
    # Secrets the config points at (broker password, client key): readable by the daemon, not by all.
    for f in "$ROOT$ETC"/*password* "$ROOT$ETC"/*.key; do
        [ -f "$f" ] || continue
        run chmod 0640 "$f"
        own root:"$USER_NAME" "$f"
    done
}

venv_and_package() {
    PYTHON=$(command -v "$PYTHON") || die "no $PYTHON: apt-get install python3 (or --python PY)"
    [ "${PYTHON:0:1}" = / ] || PYTHON="$PWD/$PYTHON"  # the config check runs from /
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || die "$PYTHON is not Python 3.11 or newer (--python PY)"
    local venv_args=()
    [ "$NO_PIP" = 0 ] || venv_args+=(--without-pip)
    if [ ! -e "$ROOT$VENV/bin/python" ]; then
        run "$PYTHON" -m venv "${venv_args[@]+"${venv_args[@]}"}" "$ROOT$VENV"
    elif ! "$ROOT$VENV/bin/python" -c '' 2>/dev/null; then
        # Its Python went away (an OS upgrade): build the venv anew.
        run "$PYTHON" -m venv --clear "${venv_args[@]+"${venv_args[@]}"}" "$ROOT$VENV"
    fi
    if [ "$NO_PIP" = 1 ]; then
        say "skipped: pip install (--no-pip)"
    else
        pip_install
    fi
    run ln -sfn "$VENV/bin/fabnode" "$ROOT$BIN"
}

# Build from a copy: pip would leave root-owned build/ and *.egg-info in the checkout.
pip_install() {
    local spec tmp
    if [ "$DRY" = 1 ]; then say "would run: $VENV/bin/pip install '${SRC}[${EXTRA}]'"; return; fi
    tmp=$(mktemp -d)
    cp -R "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/fabnode" "$SRC/drivers" "$SRC/simulators" "$tmp/"
    find "$tmp" -name __pycache__ -prune -exec rm -rf {} +
    spec=$tmp
    [ "$EXTRA" = none ] || spec="${tmp}[${EXTRA}]"
    "$ROOT$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$spec" || {
        rm -rf "$tmp"; die "pip install failed (network? see above)"; }
    rm -rf "$tmp"
}

# Install SRC to DEST unless the lab edited DEST: then keep theirs and say where ours is.
# "Edited" means DEST differs both from SRC and from the copy the previous install shipped.
conffile() {
    local src=$1 dest=$2 mode=$3 shipped
    shipped="$ROOT$SHARE/$(basename "$1")"
    if [ -e "$dest" ] && ! cmp -s "$src" "$dest" && ! { [ -e "$shipped" ] && cmp -s "$shipped" "$dest"; }; then
        say "kept your edited ${dest#"$ROOT"}; the new version is $SHARE/$(basename "$src")"
        return
    fi
    cmp -s "$src" "$dest" 2>/dev/null || run install -m "$mode" "$src" "$dest"
    run chmod "$mode" "$dest"
}

system_files() {
    local rule
    for rule in "${UDEV_RULES[@]}"; do
        conffile "$WORK/$rule" "$ROOT$UDEV_DIR/$rule" 0644
    done
    run install -m 0644 "$SRC/systemd/fabnode-nfc-blacklist.conf" "$ROOT$MODPROBE"
    run install -m 0644 "$SRC/systemd/fabnode.service" "$ROOT$UNIT"
    profile_snippet
    lab_sync_files
    # What this install shipped, for the next one to tell edited files from old ones.
    run install -d -m 0755 "$ROOT$SHARE" "$ROOT$SHARE/examples"
    # The unit's ExecStopPost= runs it: the relay off whenever the daemon ends.
    run install -m 0755 "$SRC/scripts/relay-off.py" "$ROOT$SHARE/relay-off.py"
    run install -m 0644 "$SRC/systemd/fabnode.service" "$SRC/systemd/fabnode-nfc-blacklist.conf" \
        "${UDEV_RULES[@]/#/$WORK/}" "$ROOT$SHARE/"
    run install -m 0644 "$SRC/config/fabnode-printer.toml" "$SRC/config/fabnode-laser.toml" \
        "$SRC/config/members-example.csv" "$ROOT$SHARE/examples/"
    [ ! -e "$SRC/README.md" ] || run install -m 0644 "$SRC/README.md" "$ROOT$SHARE/"
}

# The Fab-manager sync (--fab-manager-url, or kept from an earlier install): its units and its URL.
lab_sync_files() {
    [ -n "$FAB_MANAGER_URL" ] || [ -e "$ROOT/etc/systemd/system/${SYNC_UNITS[1]}" ] || return 0
    local unit tmp
    for unit in "${SYNC_UNITS[@]}"; do
        run install -m 0644 "$SRC/systemd/$unit" "$ROOT/etc/systemd/system/$unit"
    done
    [ -n "$FAB_MANAGER_URL" ] || return 0
    tmp=$(mktemp)
    printf '# written by make install --fab-manager-url; read by fabnode-lab-sync.service\nFAB_MANAGER_URL=%s\n' \
        "$FAB_MANAGER_URL" >"$tmp"
    cmp -s "$tmp" "$ROOT$SYNC_ENV" 2>/dev/null || run install -m 0640 "$tmp" "$ROOT$SYNC_ENV"
    rm -f "$tmp"
    own root:"$USER_NAME" "$ROOT$SYNC_ENV"
}

profile_snippet() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# fabnode (installed by make install): technicians' shells use the service's state dir and config,
# so the CLI talks to the running daemon and to the same usage log. Members of the fabnode group only.
export FABNODE_STATE_DIR=$STATE
export FABNODE_CONFIG=$ETC/fabnode.toml
EOF
    cmp -s "$tmp" "$ROOT$PROFILE" 2>/dev/null || run install -m 0644 "$tmp" "$ROOT$PROFILE"
    rm -f "$tmp"
}

activate_system_files() {
    try system udevadm control --reload
    try system udevadm trigger --subsystem-match=tty --subsystem-match=usb --action=change
    # The kernel's pn533_usb holds a reader plugged in before the blacklist: let go of it now.
    if [ "$STAGED" = 1 ] || grep -q '^pn533_usb ' /proc/modules 2>/dev/null; then
        try system modprobe -r pn533_usb
    fi
    try systemctl_ daemon-reload
}

# The service is enabled only once the config reads cleanly, and never started here: a config just
# copied from the example names another lab's machine and pins.
check_and_enable() {
    local config="$ROOT$ETC/fabnode.toml" cmd
    if [ "$DRY" = 1 ]; then
        say "would run: fabnode config check $ETC/fabnode.toml, then systemctl enable fabnode"
        return 0
    fi
    if [ -x "$ROOT$VENV/bin/fabnode" ]; then
        cmd=("$ROOT$VENV/bin/fabnode")
    else
        cmd=(env "PYTHONPATH=$SRC" "$PYTHON" -m fabnode)
    fi
    # As the service user when there is one: a config it cannot read fails here, not at boot.
    if [ "$STAGED" = 0 ] && [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
        cmd=(runuser -u "$USER_NAME" -- "${cmd[@]}")
    fi
    if ! (cd / && "${cmd[@]}" config check "$config"); then
        say "the config has a problem (above): fix $ETC/fabnode.toml, then run"
        say "  fabnode config check $ETC/fabnode.toml && sudo systemctl enable --now fabnode"
        return 1
    fi
    systemctl_ enable fabnode.service
    if [ -n "$FAB_MANAGER_URL" ]; then
        systemctl_ enable fabnode-lab-sync.timer
        say "Fab-manager sync every hour: put the OpenAPI client's token in $ETC/fab-manager.token and the map"
        say "  in $ETC/fab-manager-machines.toml (both 0640 root:$USER_NAME), then: sudo systemctl start fabnode-lab-sync.timer"
    fi
    if cmp -s "$config" "$SRC/config/fabnode-$MACHINE.toml"; then
        say "$ETC/fabnode.toml is still the example: set [node], [serial] port and [gpio] first"
    fi
}

next_steps() {
    local who=${SUDO_USER:-}
    say "installed. Next (README.md, 'Installing on a Raspberry Pi'):"
    say "  sudoedit $ETC/fabnode.toml && fabnode config check $ETC/fabnode.toml"
    say "  sudo systemctl start fabnode && fabnode doctor --config $ETC/fabnode.toml"
    say "  an update does not restart a running daemon: check 'fabnode status', then 'sudo systemctl restart fabnode'"
    if [ -n "$who" ] && [ "$who" != root ] && ! id -nG "$who" 2>/dev/null | grep -qw "$USER_NAME"; then
        say "technicians use the CLI as members of the fabnode group: sudo usermod -aG fabnode $who (then log in again)"
    else
        say "technicians use the CLI as members of the fabnode group: sudo usermod -aG fabnode USER (then log in again)"
    fi
}

install_all() {
    check_root
    machine_kind
    prepare_rules
    detect_extra
    apt_dependencies
    user_and_groups
    directories
    state_files
    config_files
    venv_and_package
    system_files
    activate_system_files
    local status=0
    check_and_enable || status=$?
    [ "$status" = 0 ] && next_steps
    return "$status"
}

# --- uninstall --------------------------------------------------------------------------------

remove() {
    local path
    for path in "$@"; do
        if [ -e "$path" ] || [ -L "$path" ]; then run rm -rf -- "$path"; fi
    done
}

uninstall_all() {
    check_root
    if [ -e "$ROOT$UNIT" ]; then
        # Stopping cancels a running job the safe way (heaters off) and records it.
        try systemctl_ disable --now fabnode.service
    fi
    if [ -e "$ROOT/etc/systemd/system/${SYNC_UNITS[1]}" ]; then try systemctl_ disable --now "${SYNC_UNITS[1]}"; fi
    remove "${SYNC_UNITS[@]/#/$ROOT/etc/systemd/system/}"
    remove "$ROOT$UNIT" "$ROOT$PROFILE" "$ROOT$MODPROBE" "${UDEV_RULES[@]/#/$ROOT$UDEV_DIR/}"
    # Only our own symlink: a fabnode installed some other way stays.
    if [ -L "$ROOT$BIN" ] && [ "$(readlink "$ROOT$BIN")" = "$VENV/bin/fabnode" ]; then remove "$ROOT$BIN"; fi
    remove "$ROOT$VENV"
    try systemctl_ daemon-reload
    try system udevadm control --reload
    if [ "$PURGE" = 1 ]; then
        say "purging the config, the usage log, the lab secret and the inbox"
        remove "$ROOT$ETC" "$ROOT$STATE" "$ROOT$SRV"
        if getent passwd "$USER_NAME" >/dev/null; then system userdel "$USER_NAME"; fi
        if getent group "$USER_NAME" >/dev/null; then system groupdel "$USER_NAME"; fi
    else
        say "removed; kept $ETC, $STATE (the usage log) and $SRV: --uninstall --purge removes them"
    fi
}

main() {
    parse_args "$@"
    [ "$STAGED" = 0 ] || say "root $ROOT: system commands are skipped"
    if [ "$UNINSTALL" = 1 ]; then uninstall_all; else install_all; fi
}

main "$@"
