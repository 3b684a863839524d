"""Contenders (d) and (e): OpenStack Masakari (localcloud masakari start), fed the notification its host monitor sends.

`segment`, before the run (untimed, an operator's one-time set-up): one failover segment, recovery method
`auto` (Nova's scheduler picks each destination), service type COMPUTE, with every compute host of the cloud
as a member (none reserved: `auto` uses none), replacing the segments of an earlier run. A host that Masakari
recovered stays `on_maintenance` and takes no new notification, so each run starts from a new segment.

`notify`, the contender itself: POST one notification as masakari-hostmonitor sends it for a host that
pacemaker saw go offline and fenced (type COMPUTE_HOST, payload event STOPPED, cluster_status OFFLINE,
host_status NORMAL; any other host_status is ignored by masakari-engine), then read the notification every
`--interval` seconds until its status is final. Prints one JSON line and exits 0 when it is `finished`.

    OS_CLIENT_CONFIG_FILE=clouds.yaml python masakari_peer.py segment --cloud novaha-admin --host node-28
    OS_CLIENT_CONFIG_FILE=clouds.yaml python masakari_peer.py notify --cloud novaha-admin --host node-28
"""

import argparse
import datetime
import json
import sys
import time

import openstack

FINAL = ("finished", "error", "failed", "ignored")
SEGMENT = "bench-compute"
MICROVERSION = "1.3"  # the newest of masakari 22.0.0: the notification's vmoves (one per server) since 1.3


def call(conn, method, path, **kwargs):
    resp = getattr(conn.instance_ha, method)(path, microversion=MICROVERSION, **kwargs)
    if resp.status_code >= 400:
        raise RuntimeError(f"masakari {method.upper()} {path}: {resp.status_code} {resp.text[:300]}")
    return resp.json() if resp.content else {}


def segment(conn, failed_host):
    for old in call(conn, "get", "/segments")["segments"]:
        for host in call(conn, "get", f"/segments/{old['uuid']}/hosts")["hosts"]:
            call(conn, "delete", f"/segments/{old['uuid']}/hosts/{host['uuid']}")
        call(conn, "delete", f"/segments/{old['uuid']}")
    created = call(conn, "post", "/segments", json={"segment": {"name": SEGMENT, "recovery_method": "auto", "service_type": "COMPUTE"}})["segment"]
    hosts = sorted({s.host for s in conn.compute.services() if s.binary == "nova-compute"})
    if failed_host not in hosts:
        raise RuntimeError(f"{failed_host} is no nova-compute host of this cloud ({', '.join(hosts)})")
    for host in hosts:
        call(
            conn, "post", f"/segments/{created['uuid']}/hosts", json={"host": {"name": host, "type": "COMPUTE", "control_attributes": "SSH", "reserved": False}}
        )
    print(json.dumps({"segment": created["uuid"], "hosts": hosts}))
    return 0


def notify(conn, failed_host, interval, timeout):
    body = {
        "notification": {
            "type": "COMPUTE_HOST",
            "hostname": failed_host,
            "generated_time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f"),
            "payload": {"event": "STOPPED", "cluster_status": "OFFLINE", "host_status": "NORMAL"},
        }
    }
    started = time.monotonic()
    notification = call(conn, "post", "/notifications", json=body)["notification"]
    accepted = round(time.monotonic() - started, 2)
    polls, deadline = 0, started + timeout
    while notification["status"] not in FINAL and time.monotonic() < deadline:
        time.sleep(interval)
        polls += 1
        notification = call(conn, "get", f"/notifications/{notification['notification_uuid']}")["notification"]
    moves = call(conn, "get", f"/notifications/{notification['notification_uuid']}/vmoves")["vmoves"] if notification["status"] in FINAL else []
    failed = [f"{m.get('instance_name')}: {m.get('status')} {m.get('message') or ''}".strip() for m in moves if m.get("status") != "succeeded"]
    print(
        json.dumps(
            {
                "notification": notification["notification_uuid"],
                "status": notification["status"],
                "accepted_s": accepted,
                "servers": len(moves),
                "polls": polls,
                "failed": failed,
            }
        )
    )
    return 0 if notification["status"] == "finished" and not failed else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("segment", "notify"))
    parser.add_argument("--cloud", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two reads of the notification")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    conn = openstack.connect(cloud=args.cloud)
    if args.action == "segment":
        return segment(conn, args.host)
    return notify(conn, args.host, args.interval, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
