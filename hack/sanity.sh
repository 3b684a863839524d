#!/usr/bin/env bash
# ansible-test sanity on the collection, with this machine's Python 3.11 only.
# The ansible-test of .venv/dev (the newest ansible-core), or of NOVAHA_ANSIBLE_BIN (a virtualenv's bin/ with
# another ansible-core: noxfile.py's sanity-<version> sessions).
# ansible-test needs the collection at ansible_collections/novaha/recovery/: it runs on a
# mirror under build/sanity/ (hack/collection_tree.py; only files git knows about).
# Extra arguments go to ansible-test, e.g.: hack/sanity.sh --test pep8
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEV="$ROOT/.venv/dev/bin"
PYTHON_VERSION=3.11

[ -x "$DEV/ansible-test" ] || bash "$ROOT/hack/install.sh"
BIN="${NOVAHA_ANSIBLE_BIN:-$DEV}"
[ -x "$BIN/ansible-test" ] || { echo "sanity.sh: no ansible-test in $BIN" >&2; exit 2; }

# ansible-test bootstraps pip in each virtualenv it creates with a get-pip script it
# downloads once into ~/.ansible/test/cache/get_pip_<pip version with _>.py
# (ansible_test/_util/target/setup/requirements.py, bootstrap()). The download host is
# unreachable here; put our stand-in (ensurepip, then pip from the index) in the cache.
pip_version="$("$BIN/python" - "$PYTHON_VERSION" <<'EOF'
import sys, types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))["pip"])
EOF
)"
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if ! cmp -s "$ROOT/hack/get_pip.py" "$get_pip"; then
    mkdir -p "$(dirname "$get_pip")"
    cp "$ROOT/hack/get_pip.py" "$get_pip"
fi

tree="$("$DEV/python" "$ROOT/hack/collection_tree.py" "$ROOT/build/sanity")"
cd "$tree"
# --venv: ansible-test keeps each sanity test's pinned requirements in its own virtualenv
# (under ~/.ansible/test/venv), leaving .venv/dev as installed.
export PATH="$BIN:$PATH"
exec "$BIN/ansible-test" sanity --venv --python "$PYTHON_VERSION" --color no "$@"
