#!/usr/bin/env bash
# Install the Debian packages LakeHub runs with (hub) or its tests need too (test):
#   victoria-metrics    -> the hub's metrics store (lakehub.server.ops); without it the hub runs
#                          with no dashboards or alerts, and says so
#   slapd + ldap-utils  -> tests/servers/slapd.py
#   postgresql          -> tests/servers/postgres.py
#   chromium            -> browser tests
#   awscli + s3cmd      -> tests/test_s3_clients.py (third-party S3 clients)
# Idempotent: does nothing (no apt at all) when everything is already installed.
# Never starts system services; the hub and the tests run their own private servers.
# For the hub, a machine without apt, root or sudo only gets a warning.
set -euo pipefail

PACKAGES=(victoria-metrics)
if [ "${1:-test}" = test ]; then
    PACKAGES+=(slapd ldap-utils postgresql chromium awscli s3cmd)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed$'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-packages: all present (${PACKAGES[*]})"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    elif [ "${1:-test}" = hub ]; then
        echo "install-system-packages: not installed (needs root or sudo): ${missing[*]}" >&2
        exit 0
    else
        echo "install-system-packages: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install-system-packages: installing ${missing[*]}"

# Keep maintainer scripts from starting daemons (invoke-rc.d honours exit 101).
# Only add a policy-rc.d if none exists, and remove only the one we added.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
fi

# slapd: skip its own database setup entirely (no prompts, no system DIT);
# tests write their own slapd.conf.
printf '%s\n' \
    'slapd slapd/no_configuration boolean true' \
    | "${SUDO[@]}" debconf-set-selections

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends "${missing[@]}"

# The package enables a system-wide victoria-metrics service of its own (port 8428): the hub
# runs a private store instead, so the system one is switched off and never started at boot.
if [[ " ${missing[*]} " == *" victoria-metrics "* ]] && command -v systemctl >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl disable --now victoria-metrics >/dev/null 2>&1 || true
fi
