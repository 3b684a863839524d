"""What the two bare contenders of the benchmark share: options, connection, listing, the finish line.

Both are plain openstacksdk scripts run as their own processes (so they pay start-up and authentication as
the playbook does), both pin microversion 2.29 (an ACTIVE server stays ACTIVE; from 2.95 Nova leaves it
SHUTOFF at the destination), and both print one JSON line: servers, evacuate requests, polls, failures.
"""

import argparse
import json

import openstack

MICROVERSION = "2.29"
# The API server closes idle keep-alive connections after a few seconds; a request racing that close
# fails before Nova saw it, so it is sent again.
RETRIES = 2


def parser(description, interval, timeout):
    parsed = argparse.ArgumentParser(description=description)
    parsed.add_argument("--cloud", required=True)
    parsed.add_argument("--host", required=True, help="the failed host, or several separated by commas (a rack)")
    parsed.add_argument("--interval", type=float, default=interval, help="seconds between two looks")
    parsed.add_argument("--timeout", type=float, default=timeout)
    return parsed


def connect(args):
    return openstack.connect(cloud=args.cloud)


def get(conn, path):
    return conn.compute.get(path, microversion=MICROVERSION, connect_retries=RETRIES).json()


def failed_hosts(args):
    return [host for host in args.host.split(",") if host]


def servers_on(conn, hosts):
    """The servers of the failed hosts, host after host (one listing each)."""
    return [server for host in hosts for server in get(conn, f"/servers/detail?all_tenants=True&host={host}")["servers"]]


def evacuate(conn, server_id):
    """None, or why Nova refused."""
    resp = conn.compute.post(f"/servers/{server_id}/action", json={"evacuate": {}}, microversion=MICROVERSION, connect_retries=RETRIES)
    return None if resp.status_code < 400 else f"{resp.status_code} {resp.text[:200]}"


def recovered(server, failed_hosts):
    return server["status"] == "ACTIVE" and not server.get("OS-EXT-STS:task_state") and server.get("OS-EXT-SRV-ATTR:host") not in (None, *failed_hosts)


def report(servers, polls, failed):
    print(json.dumps({"servers": servers, "evacuate_requests": servers, "polls": polls, "failed": failed}))
    return 1 if failed else 0
