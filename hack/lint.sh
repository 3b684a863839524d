#!/usr/bin/env bash
# ansible-lint (production profile, .ansible-lint) on the whole collection.
# Extra arguments go to ansible-lint, e.g.: hack/lint.sh roles/host_recovery
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEV="$ROOT/.venv/dev/bin"

[ -x "$DEV/ansible-lint" ] || bash "$ROOT/hack/install.sh"

# ansible-test's output (results, delegation virtualenvs) is not ours to lint.
rm -rf "$ROOT/tests/output"
# ansible-lint's syntax check runs ansible-playbook, which must find this collection (playbooks use
# novaha.recovery.host_recovery and the module_defaults group): the same link the tests use.
link="$ROOT/build/collections/ansible_collections/novaha/recovery"
if [ ! -e "$link" ]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn "$ROOT" "$link"
fi
export ANSIBLE_COLLECTIONS_PATH="$ROOT/build/collections"
export PATH="$DEV:$PATH"
exec "$DEV/ansible-lint" --profile production --nocolor "$@"
