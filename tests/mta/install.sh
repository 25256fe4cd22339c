#!/usr/bin/env bash
# Install Debian's Postfix and Dovecot for the MTA test tier: idempotent, non-interactive,
# safe on a machine without systemd. Must run as root. Configures nothing system-wide: the
# tier runs from its own state directory (see tests/support/mta_tier.py); the packages' own
# daemons are never started.
set -euo pipefail

# What the tier runs: postfix (smtpd, virtual, postlog...), dovecot (auth only), doveadm (pw).
need=(postfix dovecot-core)
have_all() {
    local p
    for p in "${need[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || return 1
    done
    command -v /usr/sbin/postfix >/dev/null && command -v /usr/sbin/dovecot >/dev/null
}

if have_all; then
    echo "mta install: postfix and dovecot-core already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "mta install: must run as root to apt-get install ${need[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Postfix asks what kind of mail system this is: we want none (no /etc/postfix/main.cf setup
# beyond the package default), the tier brings its own config.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections

# postinst scripts call invoke-rc.d to start the daemons; 101 = "action not allowed", so
# nothing is started and nothing listens on port 25/143. Only ours: removed on exit, and an
# existing policy-rc.d (e.g. in a container image) is left alone.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

# Refresh the package lists only when they are missing or do not know the packages.
# Other installers (another test tier, unattended jobs) may hold the dpkg lock: wait, bounded.
lock=(-o DPkg::Lock::Timeout=600)
if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then
    apt-get "${lock[@]}" update -qq
fi
apt-get "${lock[@]}" install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}"

have_all || { echo "mta install: postfix/dovecot still missing after install" >&2; exit 1; }
echo "mta install: done ($(/usr/sbin/postconf -d -h mail_version 2>/dev/null || echo '?'), $(/usr/sbin/dovecot --version))"
