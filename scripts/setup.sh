#!/usr/bin/env bash
# Shared set-up for scripts/demo and scripts/test: system packages, then the virtualenv.
# Usage: source scripts/setup.sh PKG...   (Debian package names this command needs)
set -euo pipefail

LOA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LOA_VENV:-$LOA_ROOT/.venv}"

loa_need_apt() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "loa: these packages are needed and this is not a Debian/Ubuntu system: ${missing[*]}" >&2
        exit 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "loa: system packages are missing. Run this once, then run this command again:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "loa: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

loa_venv() {
    local extras="$1"
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "loa: Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))" >&2
        exit 1
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        echo "loa: creating virtualenv $VENV"
        "$python" -m venv "$VENV" || {
            echo "loa: python3 -m venv failed; on Debian/Ubuntu: apt-get install -y python3-venv" >&2
            exit 1
        }
    fi
    # Reinstall only when pyproject.toml changed since the last install.
    local stamp="$VENV/.loa-$extras.stamp"
    if [ ! -f "$stamp" ] || [ "$LOA_ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "loa: installing Python packages into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e "$LOA_ROOT[$extras]"
        touch "$stamp"
    fi
}
