"""The fake hypervisor's instance store (localcloud/instancestore.py): Nova evacuates a server whose disk
is on shared storage with its data, rebuilds one on a local disk from its image (the data is lost), and
below microversion 2.14 refuses an ``onSharedStorage`` that contradicts what the destination sees.

Through Nova's API directly (not the collection): what the local cloud itself must get right.
"""

import re
import time

import pytest

from test_localcloud import force_down, server, wait_settled

INVALID_SHARED_STORAGE = "Invalid state of instance files on shared storage"


@pytest.fixture
def stores(clean_cloud):
    """(shared host, another shared host, local host) of the cloud's layout."""
    shared = clean_cloud.shared_store_hosts()
    local = [h for h in clean_cloud.computes if h not in shared]
    if len(shared) < 2 or not local:
        pytest.skip(f"needs two hosts sharing the instance store and a local one (shared: {shared})")
    return shared[0], shared[1], local[0]


def evacuate(conn, server_id, microversion, **body):
    response = conn.compute.post(f"/servers/{server_id}/action", json={"evacuate": body}, microversion=microversion)
    assert response.status_code == 200, response.text


def fail_and_force_down(cloud, conn, host):
    cloud.fail_host(host, power="off")
    force_down(conn, host)


def wait_error(conn, server_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = server(conn, server_id)
        if body["status"] == "ERROR" and not body["OS-EXT-STS:task_state"]:
            return body
        time.sleep(0.5)
    raise AssertionError(f"server {server_id} did not go ERROR within {timeout}s")


def evacuation_status(conn, server_id):
    migrations = conn.compute.get("/os-migrations?migration_type=evacuation", microversion="2.59").json()
    return next(m["status"] for m in migrations["migrations"] if m["instance_uuid"] == server_id)


def nova_said(cloud, host, server_id):
    """What nova-compute on `host` logged while handling the server: the lines of every request that
    names it (Nova logs its shared storage decision without the instance, under the same request id).
    A revived host's nova-compute started as a standby and logs under that name."""
    lines = []
    for name in (f"compute-{host}", f"standby-compute-{host}"):
        path = cloud.state_dir / "logs" / f"{name}.log"
        if path.exists():
            lines += path.read_text(errors="replace").splitlines()
    requests = set(re.findall(r"\[None (req-[0-9a-f-]+) ", "\n".join(line for line in lines if server_id in line)))
    return "\n".join(line for line in lines if any(request in line for request in requests))


def test_evacuation_within_the_shared_store_keeps_the_disk(stores, clean_cloud):
    cloud = clean_cloud
    source, peer, local = stores
    conn = cloud.connect()
    kept, kept_213, refused_213, moved_out = cloud.boot(source, count=4)
    tokens = {s["id"]: cloud.disk_token(source, s["id"]) for s in (kept, kept_213, refused_213, moved_out)}
    assert all(tokens.values()) and len(set(tokens.values())) == 4
    assert cloud.disk_token(peer, kept["id"]) == tokens[kept["id"]], "the peer sees the same store"
    assert cloud.disk_token(local, kept["id"]) is None

    fail_and_force_down(cloud, conn, source)
    evacuate(conn, kept["id"], "2.95", host=peer)  # Nova asks the destination
    evacuate(conn, kept_213["id"], "2.13", host=peer, onSharedStorage=True)
    evacuate(conn, refused_213["id"], "2.13", host=peer, onSharedStorage=False)
    evacuate(conn, moved_out["id"], "2.95", host=local)  # out of the shared store

    for item in (kept, kept_213):
        body = wait_settled(conn, item["id"], source)
        assert (body["OS-EXT-SRV-ATTR:host"], body["status"]) == (peer, "SHUTOFF" if item is kept else "ACTIVE")
        assert cloud.disk_token(peer, item["id"]) == tokens[item["id"]], "the data survived"
        assert "disk on shared storage, evacuating using existing disk" in nova_said(cloud, peer, item["id"])

    body = wait_settled(conn, moved_out["id"], source)
    assert body["OS-EXT-SRV-ATTR:host"] == local
    assert cloud.disk_token(local, moved_out["id"]) not in (None, tokens[moved_out["id"]]), "rebuilt: data lost"
    assert "disk not on shared storage, evacuating from image" in nova_said(cloud, local, moved_out["id"])

    # The caller said the disk is not shared; the destination finds it: Nova refuses to rebuild it.
    body = wait_error(conn, refused_213["id"])
    assert body["OS-EXT-SRV-ATTR:host"] == source
    assert body["fault"]["message"] == INVALID_SHARED_STORAGE
    assert evacuation_status(conn, refused_213["id"]) == "failed"
    assert cloud.disk_token(source, refused_213["id"]) == tokens[refused_213["id"]], "its disk untouched"

    conn.compute.delete_server(kept["id"])
    conn.compute.wait_for_delete(conn.compute.get_server(kept["id"]), wait=60)
    assert cloud.disk_token(peer, kept["id"]) is None, "deleting the server removes its disk"


def test_evacuation_from_a_local_store_rebuilds_from_the_image(stores, clean_cloud):
    cloud = clean_cloud
    shared, _peer, source = stores
    conn = cloud.connect()
    lost, lost_213, refused_213 = cloud.boot(source, count=3)
    tokens = {s["id"]: cloud.disk_token(source, s["id"]) for s in (lost, lost_213, refused_213)}
    assert all(tokens.values())
    assert cloud.disk_token(shared, lost["id"]) is None

    fail_and_force_down(cloud, conn, source)
    evacuate(conn, lost["id"], "2.95", host=shared)
    evacuate(conn, lost_213["id"], "2.13", host=shared, onSharedStorage=False)
    evacuate(conn, refused_213["id"], "2.13", host=shared, onSharedStorage=True)

    for item in (lost, lost_213):
        body = wait_settled(conn, item["id"], source)
        assert body["OS-EXT-SRV-ATTR:host"] == shared
        assert cloud.disk_token(shared, item["id"]) not in (None, tokens[item["id"]]), "rebuilt: data lost"
        assert cloud.disk_token(source, item["id"]) == tokens[item["id"]], "the old disk stays on the dead host"
        assert "disk not on shared storage, evacuating from image" in nova_said(cloud, shared, item["id"])

    # The caller said the disk is shared; the destination does not see it: Nova refuses.
    body = wait_error(conn, refused_213["id"])
    assert body["OS-EXT-SRV-ATTR:host"] == source
    assert body["fault"]["message"] == INVALID_SHARED_STORAGE
    assert evacuation_status(conn, refused_213["id"]) == "failed"
    assert cloud.disk_token(shared, refused_213["id"]) is None
