#!/usr/bin/env bash
# Verifies the systemd units in deploy/systemd against a built taskwatchd.
#
#   deploy/test-units.sh BIN
#
# BIN is the taskwatchd binary (any existing executable stands in before the daemon is built).
# systemd-analyze verify needs ExecStart's binary to exist, so the units are copied to a temporary
# directory with ExecStart pointing at BIN. systemd-analyze verify does not resolve User=, Group= or
# SocketGroup= (a missing user is not reported), so the sysusers.d file is applied to an empty root
# with systemd-sysusers --root and every user and group the units name must exist there. Then
# systemd-analyze security --offline rates the service's hardening (must stay at or below
# EXPOSURE_MAX), and a few settings the design depends on are checked literally.
set -euo pipefail

EXPOSURE_MAX=${EXPOSURE_MAX:-2.5}

if [ $# -ne 1 ]; then
    echo "usage: $0 TASKWATCHD_BINARY" >&2
    exit 2
fi
bin=$(realpath "$1")
[ -x "$bin" ] || { echo "$0: $1 is not an executable file" >&2; exit 2; }
for tool in systemd-analyze systemd-sysusers; do
    command -v "$tool" >/dev/null || { echo "$0: $tool not found (Debian: apt-get install systemd)" >&2; exit 1; }
done

src=$(cd "$(dirname "$0")/systemd" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
expect() { # expect FILE LINE: the unit has exactly this line
    if grep -qxF -- "$2" "$src/$1"; then ok "$1: $2"; else fail "$1: missing '$2'"; fi
}

units=(taskwatchd.service taskwatchd.socket taskwatchd-http.socket)
cp "${units[@]/#/$src/}" "$work/"
sed -i "s|^ExecStart=/usr/local/bin/taskwatchd\\b|ExecStart=$bin|" "$work/taskwatchd.service"
if grep -q "^ExecStart=$bin " "$work/taskwatchd.service"; then ok "ExecStart points at $bin"; else fail "ExecStart=/usr/local/bin/taskwatchd not found"; fi

# 1. systemd-analyze verify (its output must be empty too: it warns without failing).
if out=$(cd "$work" && systemd-analyze verify --man=no "${units[@]/#/./}" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify ${units[*]}"
else
    fail "systemd-analyze verify ${units[*]}:"
    echo "$out"
fi

# 2. The sysusers.d file creates every user and group the units name.
root="$work/root"
mkdir -p "$root/etc"
if out=$(systemd-sysusers --root="$root" "$src/taskwatch.sysusers.conf" 2>&1); then
    ok "systemd-sysusers applies taskwatch.sysusers.conf"
else
    fail "systemd-sysusers taskwatch.sysusers.conf:"
    echo "$out"
fi
for user in $(sed -n 's/^\(User\|SocketUser\)=//p' "$src"/*.service "$src"/*.socket | sort -u); do
    if [ "$user" = root ] || grep -q "^$user:" "$root/etc/passwd" 2>/dev/null; then ok "user $user exists"; else fail "user $user is not created by taskwatch.sysusers.conf"; fi
done
for group in $(sed -n 's/^\(Group\|SocketGroup\|SupplementaryGroups\)=//p' "$src"/*.service "$src"/*.socket | tr ' ' '\n' | sort -u); do
    if [ "$group" = root ] || grep -q "^$group:" "$root/etc/group" 2>/dev/null; then ok "group $group exists"; else fail "group $group is not created by taskwatch.sysusers.conf"; fi
done

# 3. Hardening exposure.
if report=$(cd "$work" && systemd-analyze security --offline=yes --no-pager ./taskwatchd.service 2>&1); then
    level=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for taskwatchd.service: \([0-9.]*\).*/\1/p')
    if [ -n "$level" ] && awk -v l="$level" -v m="$EXPOSURE_MAX" 'BEGIN { exit !(l <= m) }'; then
        ok "systemd-analyze security: exposure $level <= $EXPOSURE_MAX"
    else
        fail "systemd-analyze security: exposure '${level}' above $EXPOSURE_MAX"
        printf '%s\n' "$report" | grep '✗' || true
    fi
else
    fail "systemd-analyze security --offline:"
    echo "$report"
fi

# 4. What the design depends on, literally.
expect taskwatchd.service "Type=notify"
expect taskwatchd.service "NotifyAccess=main"
expect taskwatchd.service "WatchdogSec=30s"
expect taskwatchd.service "Restart=on-failure"
expect taskwatchd.service 'ExecReload=/bin/kill -HUP $MAINPID'
expect taskwatchd.service "Sockets=taskwatchd.socket taskwatchd-http.socket"
expect taskwatchd.service "User=taskwatch"
expect taskwatchd.service "Group=taskwatch"
expect taskwatchd.service "RuntimeDirectory=taskwatch"
expect taskwatchd.service "RuntimeDirectoryPreserve=yes"
expect taskwatchd.service "CapabilityBoundingSet="
expect taskwatchd.service "ProtectProc=default"
expect taskwatchd.service "ProcSubset=all"
if grep -q '^ExecStart=/usr/local/bin/taskwatchd --web.systemd-socket' "$src/taskwatchd.service"; then ok "ExecStart takes its sockets from systemd"; else fail "ExecStart lacks --web.systemd-socket"; fi
expect taskwatchd.socket "ListenSequentialPacket=/run/taskwatch/ingest.sock"
expect taskwatchd.socket "FileDescriptorName=ingest"
expect taskwatchd.socket "SocketMode=0660"
expect taskwatchd.socket "SocketGroup=taskwatch"
expect taskwatchd.socket "Service=taskwatchd.service"
expect taskwatchd-http.socket "ListenStream=10101"
expect taskwatchd-http.socket "FileDescriptorName=http"
expect taskwatchd-http.socket "Service=taskwatchd.service"
for unit in taskwatchd.socket taskwatchd-http.socket; do
    if [ "$(grep -c '^FileDescriptorName=' "$src/$unit")" -eq 1 ]; then ok "$unit names its sockets once"; else fail "$unit: one FileDescriptorName= per unit (it names every socket of the unit)"; fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
