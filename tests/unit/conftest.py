"""Unit tests import the collection the way Ansible does: as ansible_collections.novaha.recovery.

The checkout is exposed through build/collections/ansible_collections/novaha/recovery (a symlink
to the repository root, the same one tests/integration uses as ANSIBLE_COLLECTIONS_PATH), and
that collections directory is put on sys.path, so that for example

    from ansible_collections.novaha.recovery.plugins.module_utils import _evacuation

imports this checkout's code. Unit tests need no network and no local cloud.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "build" / "collections"


def _expose_collection():
    link = COLLECTIONS / "ansible_collections" / "novaha" / "recovery"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(ROOT, target_is_directory=True)
        except FileExistsError:  # made meanwhile by a parallel worker
            pass
    if link.resolve() != ROOT:
        raise RuntimeError(f"{link} points to {link.resolve()}, not to this checkout {ROOT}")
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))


_expose_collection()
