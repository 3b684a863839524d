#!/usr/bin/env bash
# `make lint`: every linter of the repository, one after the other, each timed. All of them run; the
# script fails when any failed and names which.
#   reuse lint                 licence and copyright of every file (LICENSES/, REUSE.toml)
#   ruff check, ruff format    Python lint and format (pyproject.toml); `ruff format .` formats
#   mypy                       types of plugins/ (pyproject.toml)
#   antsibull-changelog lint   changelogs/fragments/
#   antsibull-docs             module, filter and role docs and docs/docsite/ as the docsite builds them
#   ansible-lint               production profile (.ansible-lint)
# Extra arguments go to ansible-lint, e.g.: hack/lint.sh roles/host_recovery
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEV="$ROOT/.venv/dev/bin"

for tool in ansible-lint reuse ruff mypy antsibull-changelog antsibull-docs; do
    [ -x "$DEV/$tool" ] || { bash "$ROOT/hack/install.sh"; break; }
done

# ansible-test's output (results, delegation virtualenvs) is not ours to lint.
rm -rf "$ROOT/tests/output"
# ansible-lint's syntax check runs ansible-playbook, which must find this collection (playbooks use
# novaha.recovery.host_recovery and the module_defaults group), and mypy resolves the plugins' imports
# (ansible_collections.novaha.recovery....) through it: the same link the tests use.
link="$ROOT/build/collections/ansible_collections/novaha/recovery"
if [ ! -e "$link" ]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn "$ROOT" "$link"
fi
export ANSIBLE_COLLECTIONS_PATH="$ROOT/build/collections"
export PATH="$DEV:$PATH"

failed=()
check() {
    local name="$1" start rc=0
    shift
    start=$SECONDS
    "$@" || rc=$?
    printf 'lint: %-20s %s (%d s)\n' "$name" "$([ "$rc" -eq 0 ] && echo ok || echo "FAILED rc=$rc")" $((SECONDS - start)) >&2
    [ "$rc" -eq 0 ] || failed+=("$name")
}

check reuse reuse lint --quiet
check ruff-check ruff check --quiet .
check ruff-format ruff format --check --quiet .
check mypy mypy -p ansible_collections.novaha.recovery.plugins
check changelog antsibull-changelog lint
check antsibull-docs antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs .
check ansible-lint ansible-lint --profile production --nocolor "$@"

if [ "${#failed[@]}" -ne 0 ]; then
    printf 'lint: failed: %s\n' "${failed[*]}" >&2
    exit 1
fi
