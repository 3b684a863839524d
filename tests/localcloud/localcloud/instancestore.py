"""The fake hypervisor's instance store: the directory where a compute keeps its servers' disks.

This is the local cloud's model of shared instance storage (an NFS-mounted ``instances_path``, Ceph RBD
for ephemeral disks), not a real one. Each compute's ``[DEFAULT] instances_path`` is its store. The hosts
of the shared store point at one common directory; every other host has its own. A server's disk is the
file ``<store>/<server uuid>/disk`` (libvirt's layout) holding a random data token, written when the
server is first spawned. The fake hypervisor (fakevirt.py) answers Nova's ``instance_on_disk`` from it and
reuses the disk on an evacuation rebuild that finds it (the data token is kept) or writes a new one
(the server's data is lost), so a test tells by the token whether a server's data survived.

Standard library only: the tests read the tokens with it too.
"""

import json
import os
import secrets
import shutil
from pathlib import Path

SHARED = "shared"
# Server metadata: "local" keeps the server's disk in a private store of its host even on a host of the shared
# store (its data is lost on an evacuation, as on a host with local disks).
LOCAL_KEY = "novaha_fake:instance_store"


def root(state):
    return Path(state) / "instance-stores"


def default_shared_hosts(computes):
    """Every compute but the last shares the store; the last keeps a local one, so that a cloud of
    several computes has both kinds (with the default computes: node-27 and node-28 share, node-31
    is local)."""
    return list(computes[:-1])


def parse_hosts(text):
    """`node-a,node-b` (or spaces) as a list; empty or `none` for no shared store."""
    names = [h for h in text.replace(",", " ").split() if h]
    return [] if names in ([], ["none"]) else names


def layout(state, computes, shared_hosts):
    """{host: store directory}: one common directory for the shared hosts, one each for the others."""
    base = root(state)
    return {host: str(base / (SHARED if host in shared_hosts else host)) for host in computes}


def create(state, stores):
    """The store directories made, and the layout saved for nova-compute's configuration (store_of)."""
    for path in set(stores.values()):
        Path(path).mkdir(parents=True, exist_ok=True)
    (root(state) / "layout.json").write_text(json.dumps(stores, indent=2))


def load(state):
    """{host: store directory} as `up` made it ({} for a cloud started without stores)."""
    try:
        return json.loads((root(state) / "layout.json").read_text())
    except FileNotFoundError:
        return {}


def store_of(state, host):
    """The host's store; a host the layout does not name (a cloud started before it had one) keeps a
    local store."""
    return load(state).get(host) or str(root(state) / host)


def private_store(store, host):
    """The store a server kept off the shared store uses on ``host`` (metadata ``LOCAL_KEY``): a directory of
    that host alone, beside the stores, so one failed host can have both kinds of servers."""
    return str(Path(store).parent / f"private-{host}")


def clear(stores):
    """Every disk removed from every store, the private ones included (the cloud's reset, once no server is
    left)."""
    paths = set(stores.values())
    for path in list(paths):
        paths.update(str(p) for p in Path(path).parent.glob("private-*"))
    for path in paths:
        for entry in Path(path).glob("*/disk"):
            shutil.rmtree(entry.parent, ignore_errors=True)


def disk_path(store, server_id):
    return Path(store) / server_id / "disk"


def write_disk(store, server_id, host):
    """A new disk for the server in this store: a fresh data token, which is returned."""
    path = disk_path(store, server_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    partial = path.with_name(f"disk.{host}.partial")
    partial.write_text(json.dumps({"server": server_id, "token": token, "written_by": host}))
    os.replace(partial, path)
    return token


def read_disk(store, server_id):
    """The disk's record (server, token, written_by), or None when the store has no disk for it."""
    try:
        return json.loads(disk_path(store, server_id).read_text())
    except FileNotFoundError:
        return None


def disk_token(store, server_id):
    """The server's data token in this store, or None."""
    record = read_disk(store, server_id)
    return record["token"] if record else None


def remove_disk(store, server_id):
    shutil.rmtree(Path(store) / server_id, ignore_errors=True)
