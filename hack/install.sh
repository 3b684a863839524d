#!/usr/bin/env bash
# Install what this repository needs on a Debian machine, idempotently:
#   - Debian packages for the local cloud and the BMC checks (only those missing;
#     the package index is refreshed only when something has to be installed);
#   - .venv/cloud from tests/localcloud/requirements.txt (the local cloud's services);
#   - .venv/dev from tests/requirements-dev.txt (ansible-core, pytest, molecule, the linters of
#     hack/lint.sh (ansible-lint, reuse, ruff, mypy, antsibull-changelog, antsibull-docs),
#     ansible-rulebook, ansible-builder);
#   - .venv/core-oldest from tests/requirements-oldest.txt (the oldest ansible-core the collection claims);
#   - on request only (`hack/install.sh masakari`, as `make bench` does): .venv/masakari from
#     tests/localcloud/requirements-masakari.txt (OpenStack Masakari, the benchmark's peer; never `make test`).
# A virtualenv is (re)installed only when its requirement files or the Python changed:
# the sha256 of those inputs is kept in .venv/<name>/.novaha-stamp.
# Works without a TTY (CI=true). Override the interpreter with PYTHON=/path/to/python3.11.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1

# ansible-test sanity checks shell scripts with the shellcheck package (and skips that without it).
# ansible-rulebook (the Event-Driven Ansible rulebook's test) runs its rule engine on Java 17.
# prometheus brings promtool: the tests check the run's metrics (promtool check metrics) and the shipped alert
# rules (promtool test rules). prometheus-alertmanager: the alert test routes its alerts through a real
# Alertmanager, which the test starts itself. The install starts neither server (the policy below).
APT_PACKAGES=(mariadb-server rabbitmq-server ipmitool openssl shellcheck openjdk-17-jre-headless prometheus prometheus-alertmanager)
# name:requirements file
VENVS=("cloud:tests/localcloud/requirements.txt" "dev:tests/requirements-dev.txt"
       "core-oldest:tests/requirements-oldest.txt")
# Installed only when named on the command line.
OPTIONAL_VENVS=("masakari:tests/localcloud/requirements-masakari.txt")

log() { printf 'install: %s\n' "$*" >&2; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

# Two make targets may start this at once; one installer at a time.
mkdir -p "$ROOT/.venv"
exec 9>"$ROOT/.venv/.install.lock"
flock 9

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@" || die "need root for: $* (sudo without a password is not available)"
    else
        die "need root for: $*"
    fi
}

pick_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_debian_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "Debian packages present: $*"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get to install them"
    log "installing Debian packages: ${missing[*]}"
    # The local cloud runs MariaDB and RabbitMQ as its own processes; keep the
    # distribution's services from starting during installation (unless the machine
    # already has a policy of its own).
    local policy=/usr/sbin/policy-rc.d placed_policy=
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        placed_policy=1
    fi
    local rc=0
    {
        as_root apt-get update -q &&
            as_root apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
    } || rc=$?
    [ -z "$placed_policy" ] || as_root rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get failed ($rc) installing: ${missing[*]}"
}

# Requirement files a file pulls in with -r/-c, recursively, relative to it.
requirement_closure() {
    local file="$1" dir line ref
    [ -f "$file" ] || die "requirements file not found: $file"
    printf '%s\n' "$file"
    dir="$(dirname "$file")"
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            -r\ * | -c\ * | --requirement\ * | --constraint\ *)
                ref="${line#* }"
                ref="${ref#"${ref%%[![:space:]]*}"}"
                requirement_closure "$dir/$ref"
                ;;
        esac
    done <"$file"
}

venv_fingerprint() {
    local python="$1" reqfile="$2" f
    {
        "$python" -c 'import sys; print(sys.version)'
        for f in $(requirement_closure "$reqfile"); do
            printf '== %s\n' "$f"
            cat "$f"
        done
    } | sha256sum | cut -d' ' -f1
}

ensure_venv() {
    local python="$1" name="$2" reqfile="$3"
    local venv="$ROOT/.venv/$name" stamp="$ROOT/.venv/$name/.novaha-stamp" want
    want="$(venv_fingerprint "$python" "$reqfile")"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pip' 2>/dev/null &&
        [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log ".venv/$name is up to date with $reqfile"
        return 0
    fi
    local py_version='import sys; print(sys.version)'
    if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pip' 2>/dev/null &&
        [ "$("$venv/bin/python" -c "$py_version")" = "$("$python" -c "$py_version")" ]; }; then
        log "creating .venv/$name"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    log "installing $reqfile into .venv/$name"
    rm -f "$stamp"
    "$venv/bin/python" -m pip install -q -r "$reqfile"
    printf '%s\n' "$want" >"$stamp"
    log ".venv/$name ready"
}

main() {
    local python packages=("${APT_PACKAGES[@]}")
    if ! python="$(pick_python)"; then
        # Debian 12's python3 is 3.11.
        packages+=(python3 python3-venv)
    elif ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        packages+=(python3-venv)
    fi
    install_debian_packages "${packages[@]}"
    python="$(pick_python)" || die "no Python 3.11 found (set PYTHON=/path/to/python3.11)"
    "$python" -c 'import venv, ensurepip' 2>/dev/null || die "$python cannot create virtualenvs (venv/ensurepip missing)"

    local entry name found
    for entry in "${VENVS[@]}"; do
        ensure_venv "$python" "${entry%%:*}" "${entry#*:}"
    done
    for name in "$@"; do
        found=
        for entry in "${OPTIONAL_VENVS[@]}"; do
            if [ "${entry%%:*}" = "$name" ]; then
                ensure_venv "$python" "$name" "${entry#*:}"
                found=1
            fi
        done
        [ -n "$found" ] || die "no optional virtualenv named '$name' (known: ${OPTIONAL_VENVS[*]%%:*})"
    done
}

main "$@"
