"""What the local cloud looks like now, read with openstacksdk alone (independent of the collection).

Usage: python cloud_state.py HOST [REPORT_ROOT]
Prints JSON: every server (id, name, host, status, task_state), HOST's nova-compute service, the
evacuation migrations from HOST, and the newest report.json for HOST under REPORT_ROOT (or null).
Needs OS_CLIENT_CONFIG_FILE (clouds.yaml with the cloud novaha-admin).
"""

import json
import pathlib
import sys

import openstack


def main(host, report_root=None):
    conn = openstack.connect(cloud="novaha-admin")
    servers = conn.compute.get("/servers/detail?all_tenants=True", microversion="2.73").json()["servers"]
    services = conn.compute.get("/os-services?binary=nova-compute", microversion="2.53").json()["services"]
    migrations = conn.compute.get(f"/os-migrations?migration_type=evacuation&source_compute={host}", microversion="2.59").json()["migrations"]
    report = None
    if report_root:
        found = sorted(pathlib.Path(report_root).glob(f"{host}-*/report.json"), key=lambda p: p.stat().st_mtime)
        report = json.loads(found[-1].read_text()) if found else None
    state = {
        "servers": sorted(
            (
                {"id": s["id"], "name": s["name"], "host": s["OS-EXT-SRV-ATTR:host"], "status": s["status"], "task_state": s["OS-EXT-STS:task_state"]}
                for s in servers
            ),
            key=lambda s: s["name"],
        ),
        "service": [{k: s[k] for k in ("host", "state", "status", "forced_down", "disabled_reason")} for s in services if s["host"] == host][0],
        "migrations": [{k: m[k] for k in ("id", "instance_uuid", "status", "dest_compute")} for m in migrations],
        "report": report,
    }
    print(json.dumps(state))


if __name__ == "__main__":
    main(*sys.argv[1:])
