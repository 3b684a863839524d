"""What the local cloud CLI does through Nova's API (openstacksdk, admin)."""

import concurrent.futures
import datetime
import time

import keystoneauth1.exceptions
import openstack.exceptions

from . import config, infra, proc

MICROVERSION = "2.95"


def _get(conn, path, microversion=MICROVERSION):
    response = conn.compute.get(path, microversion=microversion)
    if response.status_code >= 400:
        raise proc.CloudError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return response.json()


def compute_services(conn):
    return {s["host"]: s for s in _get(conn, "/os-services?binary=nova-compute")["services"]}


def create_flavors(conn):
    existing = {f.name for f in conn.compute.flavors()}
    for name, vcpus, ram, disk in config.FLAVORS:
        if name not in existing:
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk)


def _mapped_hosts():
    out = infra.mariadb_client("SELECT host FROM host_mappings", database="nova_api")
    return set(out.split()[1:])


def _providers(conn):
    response = conn.placement.get("/resource_providers", microversion="1.14")
    return {rp["name"]: rp["uuid"] for rp in response.json().get("resource_providers", [])}


def _placement_disabled(conn, provider):
    """Nova's scheduler skips providers with this trait; the compute syncs it from the service's
    status, so right after enabling a restarting compute it may linger."""
    traits = conn.placement.get(f"/resource_providers/{provider}/traits", microversion="1.6").json()
    return "COMPUTE_STATUS_DISABLED" in traits.get("traits", [])


def wait_schedulable(conn, hosts, timeout, restarted=None):
    """Every host's compute service up, enabled, not forced down, mapped to the cell and
    known to Placement: a boot aimed at it can be scheduled.

    `restarted` maps hosts whose nova-compute was just started to when (UTC, naive): their
    service counts only once that process has reported, since the killed one's last
    heartbeat keeps a service "up" for service_down_time after its death.
    """
    restarted = restarted or {}

    def ready():
        svc = compute_services(conn)
        for host in hosts:
            s = svc.get(host)
            if not s or s["state"] != "up" or s["status"] != "enabled" or s["forced_down"]:
                return False
            if host in restarted and _heartbeat(s) < restarted[host]:
                return False
        providers = _providers(conn)
        if not set(hosts) <= _mapped_hosts() or not set(hosts) <= set(providers):
            return False
        return not any(_placement_disabled(conn, providers[host]) for host in hosts)

    proc.wait_for(f"computes {', '.join(hosts)} to be schedulable", ready, timeout)


def _heartbeat(service):
    """The compute's last heartbeat. Nova's API hides it (`updated_at` also moves on any
    service update), and a killed compute's last one keeps it "up" for service_down_time."""
    out = infra.mariadb_client(
        f"SELECT last_seen_up FROM services WHERE host='{service['host']}' AND `binary`='nova-compute' AND deleted=0", database="nova"
    ).split("\n")
    value = out[1].strip() if len(out) > 1 else ""
    if not value or value == "NULL":
        return datetime.datetime(1970, 1, 1)
    return datetime.datetime.fromisoformat(value)


def utcnow():
    # Nova stores naive UTC at second precision; a second of margin covers the truncation.
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(seconds=1)


def wait_heartbeat(conn, host, timeout, since):
    """nova-compute on `host` has reported since `since`. Its service may still show "down"
    if it is forced down: lifting that is the operator's (restore-host's) decision."""

    def reported():
        service = compute_services(conn).get(host)
        return bool(service) and _heartbeat(service) >= since

    proc.wait_for(f"nova-compute on {host} to report in", reported, timeout)


def delete_all_servers(conn, timeout):
    """Delete every server and wait until none is left. A delete can lose a race with a nova-compute that is
    starting again (Nova answers 500 "Object action destroy failed because: host changed" to the local delete of
    a server on a down host), or a busy API drops the connection: every server still there and not being deleted
    is deleted again on the next look.
    The deletes go 4 at a time, and the timeout grows by a second per server (the benchmark deletes 200).
    Returns how many servers there were."""

    def delete(server):
        try:
            conn.compute.delete_server(server, ignore_missing=True)
        except (openstack.exceptions.SDKException, keystoneauth1.exceptions.ClientException):
            pass  # an error answer, or none (a connection the busy API dropped): sent again on the next look

    def none_left():
        left = list(conn.compute.servers(all_projects=True))
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(delete, [server for server in left if server.task_state != "deleting"]))
        return not left

    count = len(list(conn.compute.servers(all_projects=True)))
    proc.wait_for("every server to be deleted", none_left, timeout + count, 0.5)
    return count


def _evacuations_left(conn, host):
    data = _get(conn, f"/os-migrations?migration_type=evacuation&source_compute={host}", "2.59")
    return [m for m in data["migrations"] if m["status"] in ("done", "accepted", "pre-migrating")]


def wait_evacuations_completed(conn, hosts, timeout):
    """Nova refuses to force a host up while evacuations from it are 'done' and not yet
    cleaned up by its restarted nova-compute; deleted servers take theirs with them."""
    proc.wait_for("evacuations to be cleaned up", lambda: not any(_evacuations_left(conn, h) for h in hosts), timeout)


def restore_services(conn, hosts):
    svc = compute_services(conn)
    for host in hosts:
        s = svc[host]
        if s["forced_down"] or s["status"] != "enabled":
            response = conn.compute.put(f"/os-services/{s['id']}", json={"forced_down": False, "status": "enabled"}, microversion="2.53")
            if response.status_code >= 400:
                raise proc.CloudError(f"restoring service of {host}: {response.status_code} {response.text[:300]}")


def delete_server_groups(conn):
    for group in conn.compute.server_groups(all_projects=True):
        conn.compute.delete_server_group(group, ignore_missing=True)


def boot(
    conn_for,
    host,
    count,
    status="ACTIVE",
    locked=False,
    metadata=None,
    server_group=None,
    project="admin",
    flavor="m1.tiny",
    name=None,
    port=False,
    boot_from_volume=False,
    data_volume=False,
    timeout=180,
    together=False,
):
    """Boot `count` servers onto `host` and bring each to `status`; return their records.

    boot_from_volume: the root disk is a 1 GB Cinder volume that Nova creates from the image (boot
    index 0, deleted with the server); data_volume: a 1 GB volume is created and attached once the
    server is ACTIVE. A record's `volumes` lists the ids of the volumes attached to it.
    together: one request for all of them (Nova's multiple create, named PREFIX-1 to PREFIX-N) and one
    listing per look while they build, instead of a request and a wait per server: the benchmark boots
    200 servers this way. Not with `port` (a port belongs to one server) nor when a PREFIX-n name is taken.
    """
    admin = conn_for("novaha-admin")
    conn = conn_for("novaha-admin-demo") if project == "member" else admin
    group_id = None
    if server_group:
        group = conn.compute.post(
            "/os-server-groups", microversion="2.64", json={"server_group": {"name": f"{name or host}-{server_group}", "policy": server_group}}
        ).json()
        group_id = group["server_group"]["id"]
    flavor_id = conn.compute.find_flavor(flavor, ignore_missing=False).id
    prefix = name or f"{host}-vm"
    existing = {s.name for s in admin.compute.servers(all_projects=True)}
    if together and not port and not any(n.startswith(f"{prefix}-") for n in existing):
        ids = _boot_together(admin, conn, host, count, prefix, flavor_id, metadata, boot_from_volume, group_id, timeout)
        return _finish(admin, conn, ids, status, locked, data_volume, timeout, group_id, waited=True)
    names, index = [], 1
    while len(names) < count:
        candidate = f"{prefix}-{index}"
        if candidate not in existing:
            names.append(candidate)
        index += 1
    ids = []
    for server_name in names:
        body = _server_body(server_name, host, flavor_id, metadata, boot_from_volume)
        if port:
            # Owned by the server's project: Nova refuses another project's port (PortNotUsable).
            owner = conn.current_project_id
            created = admin.network.post(
                "/ports", json={"port": {"network_id": _network_id(admin), "name": server_name, "tenant_id": owner, "project_id": owner}}
            ).json()
            body["networks"] = [{"port": created["port"]["id"]}]
        else:
            body["networks"] = "none"
        ids.append(_post_server(conn, body, group_id, server_name)["server"]["id"])
    return _finish(admin, conn, ids, status, locked, data_volume, timeout, group_id)


def _server_body(name, host, flavor_id, metadata, boot_from_volume):
    body = {"name": name, "imageRef": config.IMAGE_ID, "flavorRef": flavor_id, "host": host, "metadata": dict(metadata or {})}
    if boot_from_volume:
        body["imageRef"] = ""
        body["block_device_mapping_v2"] = [
            {
                "boot_index": 0,
                "uuid": config.IMAGE_ID,
                "source_type": "image",
                "destination_type": "volume",
                "volume_size": 1,
                "delete_on_termination": True,
            }
        ]
    return body


def _post_server(conn, body, group_id, what):
    """POST /servers with `body` (in the server group `group_id`, if any); its answer's body."""
    request = {"server": body}
    if group_id:
        request["os:scheduler_hints"] = {"group": group_id}
    response = conn.compute.post("/servers", json=request, microversion="2.74")
    if response.status_code >= 400:
        raise proc.CloudError(f"boot {what}: {response.status_code} {response.text[:300]}")
    return response.json()


def _boot_together(admin, conn, host, count, prefix, flavor_id, metadata, boot_from_volume, group_id, timeout):
    """The ids of `count` servers booted with one request, once all of them are ACTIVE (one listing per look)."""
    body = dict(_server_body(prefix, host, flavor_id, metadata, boot_from_volume), networks="none")
    body.update(min_count=count, max_count=count, return_reservation_id=True)
    reservation = _post_server(conn, body, group_id, f"{count} x {prefix}")["reservation_id"]
    found, progress = {}, {"active": -1, "at": time.monotonic()}

    def all_active():
        servers = _get(admin, f"/servers/detail?all_tenants=True&reservation_id={reservation}")["servers"]
        found.update((s["id"], s) for s in servers)
        failed = [s for s in servers if s["status"] == "ERROR"]
        if failed:
            raise proc.CloudError(f"{len(failed)} of {count} servers went ERROR, e.g. {failed[0]['id']}: {failed[0].get('fault')}")
        active = sum(1 for s in servers if s["status"] == "ACTIVE" and not s.get("OS-EXT-STS:task_state"))
        if active > progress["active"]:
            progress.update(active=active, at=time.monotonic())
        elif time.monotonic() - progress["at"] > timeout:
            raise proc.CloudError(f"{active} of {count} servers of reservation {reservation} ACTIVE, none more for {timeout:.0f}s")
        return len(servers) == count and active == count

    # nova-compute builds 10 at a time (max_concurrent_builds): 200 take minutes on a busy machine. The
    # boot fails when no server became ACTIVE for `timeout` seconds, not after a fixed time.
    proc.wait_for(f"{count} servers of reservation {reservation} to be ACTIVE", all_active, float("inf"), 1.0)
    return [s["id"] for s in sorted(found.values(), key=lambda s: int(s["name"].rsplit("-", 1)[1]) if s["name"].rsplit("-", 1)[-1].isdigit() else 0)]


def _finish(admin, conn, ids, status, locked, data_volume, timeout, group_id, waited=False):
    """Each server brought to `status` (and locked, with its data volume); their records."""
    for server_id in ids:
        if not waited:
            _wait_status(admin, server_id, "ACTIVE", timeout)
        if data_volume:
            from . import volumes

            volumes.attach_data_volume(conn, server_id, f"{server_id}-data")
        _bring_to(admin, server_id, status, timeout)
        if locked:
            admin.compute.post(f"/servers/{server_id}/action", microversion="2.73", json={"lock": {"locked_reason": "locked by its owner"}})
    records = []
    # One listing, not a GET per server (200 of them for the benchmark).
    listed = {s["id"]: s for s in _get(admin, "/servers/detail?all_tenants=True")["servers"]}
    for server_id in ids:
        server = listed.get(server_id) or _get(admin, f"/servers/{server_id}")["server"]
        records.append(
            {
                "id": server["id"],
                "name": server["name"],
                "host": server.get("OS-EXT-SRV-ATTR:host"),
                "status": server["status"],
                "locked": server.get("locked"),
                "project_id": server["tenant_id"],
                "server_group": group_id,
                "volumes": [v["id"] for v in server.get("os-extended-volumes:volumes_attached", [])],
            }
        )
    return records


def _network_id(conn):
    return conn.network.get("/networks").json()["networks"][0]["id"]


def _wait_status(conn, server_id, status, timeout):
    def reached():
        server = _get(conn, f"/servers/{server_id}")["server"]
        if server["status"] == "ERROR" and status != "ERROR":
            raise proc.CloudError(f"server {server_id} went ERROR: {server.get('fault')}")
        return server["status"] == status and not server.get("OS-EXT-STS:task_state")

    proc.wait_for(f"server {server_id} to be {status}", reached, timeout, 0.3)


def _bring_to(conn, server_id, status, timeout):
    actions = {
        "ACTIVE": None,
        "SHUTOFF": {"os-stop": None},
        "PAUSED": {"pause": None},
        "SUSPENDED": {"suspend": None},
        "ERROR": {"os-resetState": {"state": "error"}},
    }
    if status not in actions:
        raise proc.CloudError(f"--status must be one of {', '.join(actions)}")
    if actions[status] is None:
        return
    response = conn.compute.post(f"/servers/{server_id}/action", json=actions[status], microversion="2.1")
    if response.status_code >= 400:
        raise proc.CloudError(f"{status} for {server_id}: {response.status_code} {response.text[:300]}")
    _wait_status(conn, server_id, status, timeout)
    time.sleep(0)  # let the state settle in the listing too
