"""Contender (c): the floor, what a bare script gets from Nova on this machine.

Lists the failed host's servers, posts every evacuation at once (a few requests in flight together), then
polls one server listing until every server is ACTIVE on another host. No guards, no report, no retries.
Given several hosts (a rack), the rack floor: every evacuation of all of them posted at once, one listing per poll.

    OS_CLIENT_CONFIG_FILE=clouds.yaml python floor.py --cloud novaha-admin --host node-28
    OS_CLIENT_CONFIG_FILE=clouds.yaml python floor.py --cloud novaha-admin --host node-28,node-29,node-30
"""

import concurrent.futures
import sys
import time

import contender


def main():
    parser = contender.parser(__doc__.splitlines()[0], interval=1.0, timeout=900.0)
    parser.add_argument("--senders", type=int, default=8, help="evacuate requests in flight together")
    args = parser.parse_args()

    conn = contender.connect(args)
    hosts = contender.failed_hosts(args)
    ids = {s["id"]: s["name"] for s in contender.servers_on(conn, hosts)}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.senders)) as pool:
        refused = dict(zip(ids, pool.map(lambda server_id: contender.evacuate(conn, server_id), ids)))
    failed = [f"{ids[server_id]}: {err}" for server_id, err in refused.items() if err]
    waiting = {server_id for server_id, err in refused.items() if not err}
    polls, deadline = 0, time.monotonic() + args.timeout
    while waiting and time.monotonic() < deadline:
        time.sleep(args.interval)
        polls += 1
        for server in contender.get(conn, "/servers/detail?all_tenants=True")["servers"]:
            if server["id"] not in waiting:
                continue
            if server["status"] == "ERROR":
                failed.append(f"{server['name']}: ERROR")
                waiting.discard(server["id"])
            elif contender.recovered(server, hosts):
                waiting.discard(server["id"])
    failed += [f"{ids[i]}: not ACTIVE after {args.timeout:.0f}s" for i in waiting]
    return contender.report(len(ids), polls, failed)


if __name__ == "__main__":
    sys.exit(main())
