"""Contender (c): the floor, what Nova itself can do on this machine.

Lists the failed host's servers, posts every evacuation at once (a few requests in flight together), then
polls one server listing until every server is ACTIVE on another host. No guards, no report, no retries.
Microversion 2.29 keeps an ACTIVE server ACTIVE, as in the naive loop.

    OS_CLIENT_CONFIG_FILE=clouds.yaml python floor.py --cloud novaha-admin --host node-28

Prints one JSON line: servers, evacuate requests, polls, failures.
"""

import argparse
import concurrent.futures
import json
import sys
import time

import openstack

MICROVERSION = "2.29"
# The API server closes idle keep-alive connections after a few seconds; a request racing that close
# fails before Nova saw it, so it is sent again.
RETRIES = 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cloud", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two listings")
    parser.add_argument("--senders", type=int, default=8, help="evacuate requests in flight together")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    conn = openstack.connect(cloud=args.cloud)
    listing = conn.compute.get(f"/servers/detail?all_tenants=True&host={args.host}", microversion=MICROVERSION, connect_retries=RETRIES)
    ids = {s["id"]: s["name"] for s in listing.json()["servers"]}

    def evacuate(server_id):
        resp = conn.compute.post(f"/servers/{server_id}/action", json={"evacuate": {}}, microversion=MICROVERSION, connect_retries=RETRIES)
        return server_id, None if resp.status_code < 400 else f"{ids[server_id]}: {resp.status_code} {resp.text[:200]}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.senders)) as pool:
        refused = dict(pool.map(evacuate, ids))
    failed = [err for err in refused.values() if err]
    waiting = {server_id for server_id, err in refused.items() if not err}
    polls, deadline = 0, time.monotonic() + args.timeout
    while waiting and time.monotonic() < deadline:
        time.sleep(args.interval)
        polls += 1
        servers = conn.compute.get("/servers/detail?all_tenants=True", microversion=MICROVERSION, connect_retries=RETRIES).json()["servers"]
        for server in servers:
            if server["id"] not in waiting:
                continue
            if server["status"] == "ERROR":
                failed.append(f"{server['name']}: ERROR")
                waiting.discard(server["id"])
            elif (server["status"] == "ACTIVE" and not server.get("OS-EXT-STS:task_state")
                  and server.get("OS-EXT-SRV-ATTR:host") not in (None, args.host)):
                waiting.discard(server["id"])
    failed += [f"{ids[i]}: not ACTIVE after {args.timeout:.0f}s" for i in waiting]
    print(json.dumps({"servers": len(ids), "evacuate_requests": len(ids), "polls": polls, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
