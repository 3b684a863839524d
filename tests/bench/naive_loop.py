"""Contender (b): the loop an operator writes today, as a plain openstacksdk script.

The ``nova host-evacuate`` pattern with a wait per server: list the failed host's servers, evacuate one,
wait until it is ACTIVE elsewhere (openstacksdk's wait_for_server rhythm: one GET every 2 s), then the next.
Microversion 2.29 keeps an ACTIVE server ACTIVE (from 2.95 Nova leaves it SHUTOFF at the destination).

    OS_CLIENT_CONFIG_FILE=clouds.yaml python naive_loop.py --cloud novaha-admin --host node-28

Prints one JSON line: servers, evacuate requests, polls, failures.
"""

import argparse
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
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two looks at a server")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one server")
    args = parser.parse_args()

    conn = openstack.connect(cloud=args.cloud)
    listing = conn.compute.get(f"/servers/detail?all_tenants=True&host={args.host}", microversion=MICROVERSION, connect_retries=RETRIES)
    servers = listing.json()["servers"]
    polls, failed = 0, []
    for server in servers:
        resp = conn.compute.post(f"/servers/{server['id']}/action", json={"evacuate": {}}, microversion=MICROVERSION, connect_retries=RETRIES)
        if resp.status_code >= 400:
            failed.append(f"{server['name']}: {resp.status_code} {resp.text[:200]}")
            continue
        deadline = time.monotonic() + args.timeout
        while True:
            time.sleep(args.interval)
            polls += 1
            now = conn.compute.get(f"/servers/{server['id']}", microversion=MICROVERSION, connect_retries=RETRIES).json()["server"]
            if now["status"] == "ERROR":
                failed.append(f"{server['name']}: ERROR {now.get('fault', {}).get('message', '')}")
                break
            if (now["status"] == "ACTIVE" and not now.get("OS-EXT-STS:task_state")
                    and now.get("OS-EXT-SRV-ATTR:host") not in (None, args.host)):
                break
            if time.monotonic() > deadline:
                failed.append(f"{server['name']}: not ACTIVE after {args.timeout:.0f}s")
                break
    print(json.dumps({"servers": len(servers), "evacuate_requests": len(servers), "polls": polls,
                      "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
