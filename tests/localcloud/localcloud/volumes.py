"""What the local cloud's tooling does through Cinder's API (openstacksdk, admin).

Volumes live on cinder-volume's test driver (cinder_test_driver.py): records without data, but real
Cinder volumes, attachments and attachment hosts.
"""

import time

from . import proc

# Attachments API (3.27); volumes' `attachments[].host_name` is shown to admins in every 3.x version.
MICROVERSION = "3.27"


def _call(conn, method, path, what, microversion=MICROVERSION, **kwargs):
    response = conn.block_storage.request(path, method, microversion=microversion, **kwargs)
    if response.status_code >= 400:
        raise proc.CloudError(f"{what}: {method} {path}: {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


def volume(conn, volume_id):
    return _call(conn, "GET", f"/volumes/{volume_id}", f"reading volume {volume_id}")["volume"]


def all_volumes(conn):
    return _call(conn, "GET", "/volumes/detail?all_tenants=1", "listing volumes")["volumes"]


def wait_backend(conn, timeout, restart_scheduler=None, restart_after=5.0, clock=time.monotonic):
    """cinder-volume is up and cinder-scheduler knows its pool: a volume can be created.

    cinder-scheduler learns the pool from fanout casts: cinder-volume's at its start (before it listens), and the
    scheduler's request at the scheduler's start. Started together, each can cast before the other listens; the
    pool then waits for cinder-volume's periodic publish (about a minute). So once cinder-volume is up (it listens)
    and the pool is still unknown ``restart_after`` seconds later, ``restart_scheduler()`` is called, once: a
    scheduler that starts now asks a cinder-volume that answers."""

    seen = {"cinder-volume": "not listed yet", "pools": "not read yet", "up_since": None, "restarted": False}

    def ready():
        services = _call(conn, "GET", "/os-services?binary=cinder-volume", "listing Cinder services")["services"]
        seen["cinder-volume"] = ", ".join(f"{s['host']} {s['state']} {s['status']}" for s in services) or "not listed yet"
        if not any(s["state"] == "up" and s["status"] == "enabled" for s in services):
            return False
        pools = _call(conn, "GET", "/scheduler-stats/get_pools", "listing Cinder pools")["pools"]
        seen["pools"] = ", ".join(p["name"] for p in pools) or "none known to cinder-scheduler"
        if pools:
            return True
        seen["up_since"] = seen["up_since"] or clock()
        if restart_scheduler is not None and not seen["restarted"] and clock() - seen["up_since"] >= restart_after:
            seen["restarted"] = True
            restart_scheduler()
        return False

    try:
        proc.wait_for("cinder-volume to report up with its pool", ready, timeout, 0.5)
    except proc.CloudError as exc:
        logs = "".join(f"\n--- the end of {name}.log ---\n{proc.tail_log(name)}" for name in ("cinder-volume", "cinder-scheduler"))
        restarted = "; cinder-scheduler was restarted once" if seen["restarted"] else ""
        raise proc.CloudError(f"{exc} (cinder-volume: {seen['cinder-volume']}; pools: {seen['pools']}{restarted}){logs}") from None
    return seen["restarted"]


def wait_status(conn, volume_id, status, timeout):
    def reached():
        current = volume(conn, volume_id)["status"]
        if current.startswith("error") and not status.startswith("error"):
            raise proc.CloudError(f"volume {volume_id} went {current} (see cinder-volume.log)")
        return current == status

    proc.wait_for(f"volume {volume_id} to be {status}", reached, timeout, 0.3)


def create_volume(conn, name, size=1, image_id=None, timeout=60):
    """A new volume (from an image if given), once available; returns its id."""
    body = {"name": name, "size": size}
    if image_id:
        body["imageRef"] = image_id
    volume_id = _call(conn, "POST", "/volumes", f"creating volume {name}", json={"volume": body})["volume"]["id"]
    wait_status(conn, volume_id, "available", timeout)
    return volume_id


def attach_data_volume(conn, server_id, name, size=1, timeout=60):
    """Create a volume and attach it to the server through Nova; returns the volume's id once in-use."""
    volume_id = create_volume(conn, name, size, timeout=timeout)
    response = conn.compute.post(f"/servers/{server_id}/os-volume_attachments", microversion="2.79", json={"volumeAttachment": {"volumeId": volume_id}})
    if response.status_code >= 400:
        raise proc.CloudError(f"attaching volume {volume_id} to {server_id}: {response.status_code} {response.text[:300]}")
    wait_status(conn, volume_id, "in-use", timeout)
    return volume_id


def attachments(conn, volume_id):
    """Every Cinder attachment of the volume: {id, status, server_id, host} (host: the compute whose
    connector attached it, None while only reserved)."""
    listed = _call(conn, "GET", f"/attachments?all_tenants=1&volume_id={volume_id}", f"listing attachments of volume {volume_id}")["attachments"]
    hosts = {a["attachment_id"]: a.get("host_name") for a in volume(conn, volume_id)["attachments"]}
    return [{"id": a["id"], "status": a["status"], "server_id": a["instance"], "host": hosts.get(a["id"])} for a in listed]


def delete_all_volumes(conn, timeout):
    """No volume left. Run after the servers are deleted: their attachments go with them, and a
    volume still attached after `timeout`/2 (a leftover) is reset to detached and deleted too."""

    def settled():
        return all(v["status"] in ("available", "error") for v in all_volumes(conn))

    try:
        proc.wait_for("volumes to be detached", settled, timeout / 2, 0.5)
    except proc.CloudError:
        pass
    for item in all_volumes(conn):
        if item["status"] not in ("available", "error"):
            _call(
                conn,
                "POST",
                f"/volumes/{item['id']}/action",
                f"resetting volume {item['id']}",
                json={"os-reset_status": {"status": "available", "attach_status": "detached"}},
            )
        _call(conn, "DELETE", f"/volumes/{item['id']}", f"deleting volume {item['id']}")
    proc.wait_for("every volume to be deleted", lambda: not all_volumes(conn), timeout / 2, 0.5)
