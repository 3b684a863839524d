"""One command per supported ansible-core (meta/runtime.yml claims 2.16 and later; 2.19 is the newest for Python 3.11).

    .venv/dev/bin/nox -s unit-2.16      # tests/unit/plugins with ansible-core 2.16
    .venv/dev/bin/nox -s sanity-2.17    # ansible-test sanity of ansible-core 2.17 (hack/sanity.sh)
    .venv/dev/bin/nox -s e2e-2.18       # a recovery on the local cloud from the installed tarball
    .venv/dev/bin/nox -t core-2.16      # all three for one version
    make cores                          # unit and sanity for every version (about 25 minutes)

Each session has its own virtualenv under .nox/ with that ansible-core and the modules' dependencies
(requirements.txt). `make test` runs sanity and unit with the newest and the end-to-end recovery with the oldest
and the newest (test_recover_end_to_end in tests/integration/test_recover_playbook.py); these sessions
cover the versions between.
"""

import os
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
CORES = ("2.16", "2.17", "2.18", "2.19")
DEV_BIN = ROOT / ".venv" / "dev" / "bin"

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = [f"{kind}-{core}" for core in CORES for kind in ("unit", "sanity")]


def core_requirement(core):
    major, minor = core.split(".")
    return f"ansible-core>={core},<{major}.{int(minor) + 1}"


def install(session, core, *more):
    session.install(core_requirement(core), "-r", str(ROOT / "requirements.txt"), *more)
    session.run("ansible", "--version", silent=False)


def unit_session(core):
    @nox.session(name=f"unit-{core}", tags=[f"core-{core}", "unit"])
    def unit(session):
        """The collection's unit tests (tests/unit/plugins) with this ansible-core."""
        install(session, core, "pytest", "pyyaml")
        session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/plugins", *session.posargs)

    return unit


def sanity_session(core):
    @nox.session(name=f"sanity-{core}", tags=[f"core-{core}", "sanity"])
    def sanity(session):
        """ansible-test sanity of this ansible-core (its own pinned tools, in virtualenvs of its own)."""
        install(session, core)
        session.run("bash", str(ROOT / "hack" / "sanity.sh"), *session.posargs, external=True, env={"NOVAHA_ANSIBLE_BIN": str(Path(session.bin))})

    return sanity


def e2e_session(core):
    @nox.session(name=f"e2e-{core}", tags=[f"core-{core}", "e2e"])
    def e2e(session):
        """A recovery on the local cloud with this ansible-core, from the collection installed out of its tarball."""
        install(session, core)
        venv = Path(session.virtualenv.location)
        node = f"tests/integration/test_recover_playbook.py::test_recover_end_to_end[{venv.name}]"
        session.run(str(DEV_BIN / "python"), "-m", "pytest", "-q", node, *session.posargs, external=True, env={"NOVAHA_E2E_VENVS": str(venv)})

    return e2e


for _core in CORES:
    globals()[f"unit_{_core.replace('.', '_')}"] = unit_session(_core)
    globals()[f"sanity_{_core.replace('.', '_')}"] = sanity_session(_core)
    globals()[f"e2e_{_core.replace('.', '_')}"] = e2e_session(_core)

os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
