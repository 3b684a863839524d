"""meta/execution-environment.yml: `ansible-builder create` writes a build context (no image is built).

The context must hold what the collection needs at run time in AWX: its Python requirements, ipmitool
(bindep), ansible-core and the collection itself (its tarball, installed in the final image).
"""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EE_FILE = ROOT / "meta" / "execution-environment.yml"


def test_ansible_builder_create_writes_a_complete_context(tmp_path):
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    tarballs = ROOT / "build" / "ee"  # where the EE definition takes the collection from
    build = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(tarballs), str(ROOT)], capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = f"novaha-recovery-{version}.tar.gz"

    context = tmp_path / "context"
    create = subprocess.run(
        [str(BIN / "ansible-builder"), "create", "--file", str(EE_FILE), "--context", str(context), "--output-filename", "Containerfile"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert create.returncode == 0, create.stdout + create.stderr
    assert "No matches" not in create.stdout + create.stderr

    build_dir = context / "_build"
    assert "openstacksdk" in (build_dir / "requirements.txt").read_text()
    assert "jmespath" in (build_dir / "requirements.txt").read_text()
    assert "ipmitool" in (build_dir / "bindep.txt").read_text()
    assert (build_dir / "collections" / tarball).is_file()
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-core>=2.16" in containerfile
    assert "ansible-galaxy collection install --offline -p /usr/share/ansible/collections" in containerfile
    # The final stage installs the collection after everything else it needs is in place.
    final = containerfile.split("AS final", 1)[1]
    assert "novaha-recovery-*.tar.gz" in final
