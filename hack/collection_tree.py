"""Mirror this checkout into BASE/ansible_collections/novaha/recovery for ansible-test.

ansible-test only works on a collection that sits at ansible_collections/<namespace>/<name>/.
The mirror holds exactly the files git knows about (tracked, plus untracked files that
.gitignore does not exclude), so virtualenvs, local cloud state and build output never get
in. The mirror's tests/output/ is kept between runs: ansible-test keeps its delegation
virtualenv there. The mirror is made a git work tree of its own (nothing is committed):
ansible-test lists content with git from the nearest .git upwards, which would otherwise be
this checkout's, where build/ is ignored, and every target would be skipped.
Prints the collection directory.

Usage: collection_tree.py BASE
"""

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE, NAME = "novaha", "recovery"
# Used only when git is unavailable; mirrors .gitignore.
NOT_SOURCE = {".git", ".venv", ".localcloud", ".localcloud-cache", "build", "reports", "__pycache__", ".pytest_cache"}
KEEP = Path("tests/output")
OWN = {KEEP, Path(".git")}


def source_files():
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], check=True, capture_output=True).stdout
        names = [Path(name) for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        names = []
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = [d for d in dirnames if d not in NOT_SOURCE]
            rel = Path(dirpath).relative_to(ROOT)
            if rel.parts[:2] == KEEP.parts:
                dirnames[:] = []
                continue
            names.extend(rel / f for f in filenames if not f.endswith((".pyc", ".tar.gz")))
    # Deleted-but-tracked files are listed by git yet absent; symlinks are copied as links.
    return sorted(n for n in names if (ROOT / n).is_file() or (ROOT / n).is_symlink())


def sync(dest):
    wanted = set(source_files())
    dest.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(dest, topdown=True):
        rel = Path(dirpath).relative_to(dest)
        if rel in OWN:
            dirnames[:] = []
            continue
        for f in filenames:
            if rel / f not in wanted:
                (Path(dirpath) / f).unlink()
    for rel in wanted:
        src, dst = ROOT / rel, dest / rel
        if src.is_symlink():
            if dst.is_symlink() and os.readlink(dst) == os.readlink(src):
                continue
            if dst.exists() or dst.is_symlink():
                dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dst)
            continue
        if dst.is_file() and not dst.is_symlink() and filecmp.cmp(src, dst, shallow=False):
            if src.stat().st_mode != dst.stat().st_mode:  # sanity checks execute bits
                shutil.copymode(src, dst)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink():
            dst.unlink()
        shutil.copy2(src, dst)
    # Directories left empty by removed files.
    for dirpath, _dirnames, _filenames in os.walk(dest, topdown=False):
        path = Path(dirpath)
        rel = path.relative_to(dest)
        if path != dest and not any(path.iterdir()) and not OWN.intersection([rel, *rel.parents]):
            path.rmdir()
    if not (dest / ".git").exists() and shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(dest)], check=True)


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    dest = Path(argv[1]).resolve() / "ansible_collections" / NAMESPACE / NAME
    sync(dest)
    print(dest)


if __name__ == "__main__":
    main(sys.argv)
