"""Contender (b): the loop an operator writes today, as a plain openstacksdk script.

The ``nova host-evacuate`` pattern with a wait per server: list the failed host's servers, evacuate one,
wait until it is ACTIVE elsewhere (openstacksdk's wait_for_server rhythm: one GET every 2 s), then the next.

    OS_CLIENT_CONFIG_FILE=clouds.yaml python naive_loop.py --cloud novaha-admin --host node-28
"""

import sys
import time

import contender


def main():
    args = contender.parser(__doc__.splitlines()[0], interval=2.0, timeout=600.0).parse_args()

    conn = contender.connect(args)
    hosts = contender.failed_hosts(args)
    servers = contender.servers_on(conn, hosts)
    polls, failed = 0, []
    for server in servers:
        refused = contender.evacuate(conn, server["id"])
        if refused:
            failed.append(f"{server['name']}: {refused}")
            continue
        deadline = time.monotonic() + args.timeout
        while True:
            time.sleep(args.interval)
            polls += 1
            now = contender.get(conn, f"/servers/{server['id']}")["server"]
            if now["status"] == "ERROR":
                failed.append(f"{server['name']}: ERROR {now.get('fault', {}).get('message', '')}")
                break
            if contender.recovered(now, hosts):
                break
            if time.monotonic() > deadline:
                failed.append(f"{server['name']}: not ACTIVE after {args.timeout:.0f}s")
                break
    return contender.report(len(servers), polls, failed)


if __name__ == "__main__":
    sys.exit(main())
