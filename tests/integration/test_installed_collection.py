"""The collection as a user gets it: built into a tarball, installed into an empty path, run by its FQCN.

`ansible-galaxy collection build` from this checkout, `ansible-galaxy collection install` of that tarball
into a directory of the test's own, then `ansible-playbook novaha.recovery.recover_host` with that
directory as the only collection path, once with the oldest ansible-core meta/runtime.yml claims
(.venv/core-oldest, tests/requirements-oldest.txt) and once with the newest (.venv/dev). Each run
recovers one ACTIVE and one SHUTOFF server of node-28, fencing through the Redfish BMC emulator with the
inventory's bmc_* variables (the BMC dict the role builds is where 2.16 to 2.18 once failed: a port
templated to the string 'None').

`noxfile.py` runs the same test with every other supported ansible-core: NOVAHA_E2E_VENVS names more
virtualenvs (os.pathsep separated), each tested as well.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import DEV_BIN, ROOT

HOST = "node-28"
OTHERS = {"node-27", "node-31"}
META = (ROOT / "meta" / "runtime.yml").read_text()
CLAIMED = re.search(r'requires_ansible:\s*"?>=\s*(\d+\.\d+)', META).group(1)

pytestmark = pytest.mark.slow


def venvs():
    found = {"oldest": ROOT / ".venv" / "core-oldest", "newest": DEV_BIN.parent}
    for extra in filter(None, os.environ.get("NOVAHA_E2E_VENVS", "").split(os.pathsep)):
        found[Path(extra).name] = Path(extra)
    return found


def core_version(venv):
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import ansible.release as r; print(r.__version__)"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip()


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The collection built once from this checkout, as `ansible-galaxy collection build` makes it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(DEV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    (built,) = out.glob("novaha-recovery-*.tar.gz")
    return built


@pytest.mark.parametrize("which", sorted(venvs()))
def test_recovery_from_the_installed_tarball(which, tarball, clean_cloud, tmp_path):
    venv = venvs()[which]
    if not (venv / "bin" / "ansible-playbook").exists():
        pytest.fail(f"{venv} has no ansible-playbook: `make install` creates .venv/core-oldest")
    version = core_version(venv)
    if which == "oldest":
        assert version.startswith(CLAIMED + "."), (version, CLAIMED)  # the oldest we claim, not another
    cloud = clean_cloud
    before = {s["id"]: s["status"] for s in cloud.boot(HOST, count=1) + cloud.boot(HOST, count=1, status="SHUTOFF")}
    cloud.fail_host(HOST, power="on")

    collections = tmp_path / "collections"
    subprocess.run([str(venv / "bin" / "ansible-galaxy"), "collection", "install", "-p", str(collections),
                    str(tarball)], check=True, capture_output=True, text=True, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    installed = collections / "ansible_collections" / "novaha" / "recovery"
    assert (installed / "MANIFEST.json").exists() and not installed.is_symlink()

    reports = tmp_path / "reports"
    env = dict(cloud.env(), ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_PYTHON_INTERPRETER=str(venv / "bin" / "python"),
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(venv / "bin" / "ansible-playbook"), "-i", str(cloud.inventory), "novaha.recovery.recover_host",
                           "-e", f"recover_host={HOST}", "-e", json.dumps({"host_recovery_report_root": str(reports)})],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"ansible-core {version}:\n{output[-6000:]}"

    (found,) = reports.glob(f"{HOST}-*/report.json")
    report = json.loads(found.read_text())
    assert report["outcome"] == "recovered", (version, report["reason"])
    assert report["fencing"]["fenced"] is True and report["fencing"]["method"] == "redfish"
    conn = cloud.connect()
    now = {s["id"]: s for s in conn.compute.get("/servers/detail?all_tenants=True", microversion="2.73").json()["servers"]}
    for server_id, status in before.items():
        assert now[server_id]["OS-EXT-SRV-ATTR:host"] in OTHERS, (version, now[server_id])
        assert now[server_id]["status"] == status, (version, now[server_id])
    assert f"{HOST}: RECOVERED" in output
