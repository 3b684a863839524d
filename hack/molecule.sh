#!/usr/bin/env bash
# Run every Molecule scenario under extensions/molecule/ against the local cloud.
# Starts the local cloud unless it is already up, and stops it again only if it started it.
# Without scenarios there is nothing to run, and that is not an error (yet).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEV="$ROOT/.venv/dev/bin"

shopt -s nullglob
scenarios=(extensions/molecule/*/molecule.yml)
if [ "${#scenarios[@]}" -eq 0 ]; then
    echo "molecule: no scenarios under extensions/molecule/; nothing to run"
    exit 0
fi

[ -x "$DEV/molecule" ] || bash "$ROOT/hack/install.sh"

export NOVAHA_LOCALCLOUD_DIR="${NOVAHA_LOCALCLOUD_DIR:-$ROOT/.localcloud}"
cloud() { PYTHONPATH="$ROOT/tests/localcloud" "$ROOT/.venv/cloud/bin/python" -m localcloud "$@"; }

started=
if ! cloud status --quiet >/dev/null 2>&1; then
    cloud up
    started=1
fi
stop_cloud() { if [ -n "$started" ] && [ -z "${NOVAHA_KEEP_CLOUD:-}" ]; then cloud down || true; fi; }
trap stop_cloud EXIT

# The collection as Ansible finds it: build/collections/ansible_collections/novaha/recovery -> checkout.
link="$ROOT/build/collections/ansible_collections/novaha/recovery"
if [ ! -e "$link" ]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn "$ROOT" "$link"
fi

export PATH="$DEV:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/build/collections"
export OS_CLIENT_CONFIG_FILE="$NOVAHA_LOCALCLOUD_DIR/clouds.yaml"
cd "$ROOT/extensions"
molecule test --all "$@"
