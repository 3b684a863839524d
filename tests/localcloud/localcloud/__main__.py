"""localcloud: a real OpenStack (Keystone, Nova, Placement, Glance, Cinder) with BMC emulators on 127.0.0.1.

Commands: up, down, status, reset, fail-host, revive-host, boot, env, fault, masakari.
State lives in $NOVAHA_LOCALCLOUD_DIR (default: .localcloud/ at the repository root).
"""

import argparse
import json
import os
import sys
import time

from . import cloud, config, instancestore, proc


def _metadata(pairs):
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise proc.CloudError(f"--metadata takes KEY=VALUE, not {pair!r}")
        result[key] = value
    return result


def _fault_parser(sub):
    fault = sub.add_parser(
        "fault",
        help="faults of the fault proxy in front of the public endpoints and BMCs",
        description="Rules of the fault proxy (test tooling, see localcloud/faultrules.py): what it does to which requests, and when.",
    )
    verbs = fault.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="add a rule; prints it with its id")
    add.add_argument("service", help="keystone, nova, placement, glance, cinder, bmc-<host>, or a pattern (bmc-*, *)")
    add.add_argument("action", choices=("error", "reset", "hang", "delay"))
    add.add_argument("--status", type=int, help="HTTP status of an error (default 503)")
    add.add_argument("--body", help="body of an error (default: the service's own JSON error shape)")
    add.add_argument("--delay", type=float, metavar="S", help="seconds a delay adds")
    add.add_argument("--hang-max", type=float, metavar="S", help="a hang ends after S seconds at most")
    add.add_argument("--phase", choices=("request", "response"), help="request (default): the service never sees it; response: its answer is lost/late")
    add.add_argument("--method", action="append", help="HTTP method (repeat for several; default any)")
    add.add_argument("--path", metavar="REGEX", help="searched in the request's path and query")
    add.add_argument("--rate", type=float, help="probability of the fault per matching request (default 1)")
    add.add_argument("--seed", type=int, help="seed of the rate's random draws (default 0)")
    add.add_argument("--count", type=int, help="at most N faults, then the rule is spent")
    add.add_argument("--skip", type=int, help="the first N matching requests pass")
    add.add_argument("--window", type=float, metavar="S", help="active for S seconds from now")
    clear = verbs.add_parser("clear", help="remove every rule, or one")
    clear.add_argument("id", type=int, nargs="?")
    verbs.add_parser("list", help="the rules with their counters (JSON)")
    log = verbs.add_parser("log", help="the requests the proxy saw")
    log.add_argument("--service", help="a service or a pattern")
    log.add_argument("--since", type=int, default=0, help="only requests after this sequence number")
    log.add_argument("--json", action="store_true")
    verbs.add_parser("services", help="the proxied services: listen and upstream addresses (JSON)")


def _fault(args):
    from .faultclient import FaultClient, FaultProxyError

    info = cloud.load_info()
    if "faultproxy" not in info:
        raise proc.CloudError("this local cloud has no fault proxy (started before it existed): run 'localcloud down' and 'localcloud up'")
    client = FaultClient(info["faultproxy"]["control"])
    try:
        if args.verb == "add":
            fields = ("status", "body", "delay", "hang_max", "phase", "path", "rate", "seed", "count", "skip", "window")
            rule = {name: getattr(args, name) for name in fields}
            rule["method"] = args.method
            print(json.dumps(client.add(args.service, args.action, **rule)))
        elif args.verb == "clear":
            print(f"removed {client.clear(args.id)} rule(s)")
        elif args.verb == "list":
            print(json.dumps(client.rules(), indent=2))
        elif args.verb == "services":
            print(json.dumps(client.services(), indent=2))
        elif args.verb == "log":
            entries = client.log(args.service, args.since)
            if args.json:
                print(json.dumps(entries, indent=2))
            for entry in [] if args.json else entries:
                fault = entry["fault"]
                print(
                    f"{entry['seq']:6} {entry['service']:14} {entry['method']:7} {entry['status'] or '-'!s:4} "
                    f"{'fwd' if entry['forwarded'] else '---'} "
                    f"{fault['action'] + '@' + fault['phase'] + '#' + str(fault['rule']) if fault else '':22} "
                    f"{entry['duration']:7.3f}s {entry['path']}"
                )
    except FaultProxyError as exc:
        raise proc.CloudError(str(exc)) from None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="localcloud", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cloud (fresh state)")
    up.add_argument("--computes", nargs="+", default=list(config.DEFAULT_COMPUTES), metavar="HOST")
    up.add_argument("--spawn-delay", type=float, default=0.0, metavar="S", help="seconds each boot or evacuation rebuild takes on the fake hypervisor")
    up.add_argument(
        "--shared-store",
        metavar="HOST,HOST",
        default=os.environ.get("NOVAHA_LOCALCLOUD_SHARED_STORE"),
        help="computes whose instance store is one common directory, as on NFS or RBD: an "
        "evacuation between them keeps the disk ('none': every store local; default "
        "$NOVAHA_LOCALCLOUD_SHARED_STORE, else every compute but the last)",
    )
    sub.add_parser("down", help="stop every process of the cloud")
    status = sub.add_parser("status", help="what runs; exit 1 unless every service is up")
    status.add_argument("--quiet", action="store_true")
    sub.add_parser("reset", help="delete servers and volumes, revive hosts, restore service flags")
    fail = sub.add_parser("fail-host", help="kill a host's nova-compute and set its BMCs")
    fail.add_argument("host")
    fail.add_argument("--power", choices=("on", "off", "stuck", "unreachable"), default="on")
    revive = sub.add_parser("revive-host", help="BMCs answer and report On, nova-compute restarts (flags unchanged)")
    revive.add_argument("host")
    boot = sub.add_parser("boot", help="boot servers onto a host; prints them as JSON")
    boot.add_argument("--host", required=True)
    boot.add_argument("--count", type=int, default=1)
    boot.add_argument("--status", default="ACTIVE", choices=("ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "ERROR"))
    boot.add_argument("--locked", action="store_true")
    boot.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    boot.add_argument("--server-group", choices=("anti-affinity", "affinity", "soft-anti-affinity", "soft-affinity"))
    boot.add_argument("--project", choices=("admin", "member"), default="admin")
    boot.add_argument("--flavor", default="m1.tiny")
    boot.add_argument("--name", help="name prefix (default HOST-vm)")
    boot.add_argument("--port", action="store_true", help="boot on a pre-created stub port")
    boot.add_argument("--boot-from-volume", action="store_true", help="the root disk is a Cinder volume created from the image")
    boot.add_argument("--data-volume", action="store_true", help="attach a new 1 GB Cinder volume")
    boot.add_argument(
        "--together",
        action="store_true",
        help="one request for all (Nova's multiple create, names PREFIX-1 to PREFIX-N), one listing per look while they build",
    )
    sub.add_parser("env", help="print shell exports for clients (OS_CLIENT_CONFIG_FILE, OS_CLOUD)")
    masakari = sub.add_parser("masakari", help="OpenStack Masakari on this cloud, on demand (the benchmark's peer; see localcloud/masakari.py)")
    masakari_verbs = masakari.add_subparsers(dest="verb", required=True)
    masakari_start = masakari_verbs.add_parser("start", help="start masakari-api and masakari-engine (a running Masakari is restarted)")
    masakari_start.add_argument("--config", choices=("defaults", "tuned"), default="defaults", help="masakari.conf: shipped defaults, or tuned for speed")
    masakari_verbs.add_parser("stop", help="stop masakari-api and masakari-engine")
    _fault_parser(sub)
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            shared = None if args.shared_store is None else instancestore.parse_hosts(args.shared_store)
            cloud.up(args.computes, spawn_delay=args.spawn_delay, shared_store=shared)
        elif args.command == "down":
            cloud.down()
        elif args.command == "status":
            healthy, lines = cloud.status()
            if not args.quiet:
                print("\n".join(lines))
                if proc.known_services():
                    from . import footprint

                    usage = footprint.memory_by_service().values()
                    print(f"memory, all processes: PSS {sum(m[1] for m in usage) / 2**20:.0f} MiB (RSS {sum(m[0] for m in usage) / 2**20:.0f} MiB)")
            return 0 if healthy else 1
        elif args.command == "reset":
            started = time.monotonic()
            cloud.reset(log=lambda msg: print(f"{msg} in {time.monotonic() - started:.1f}s"))
        elif args.command == "fail-host":
            cloud.fail_host(args.host, args.power)
            print(f"{args.host}: nova-compute killed, BMC power {args.power}")
        elif args.command == "revive-host":
            cloud.revive_host(args.host)
            print(f"{args.host}: revived, nova-compute up")
        elif args.command == "boot":
            if args.count < 1:
                raise proc.CloudError("--count must be at least 1")
            info = cloud.load_info()
            cloud._check_hosts(info, [args.host])  # pylint: disable=protected-access
            from . import nova

            records = nova.boot(
                cloud.connect,
                args.host,
                args.count,
                status=args.status,
                locked=args.locked,
                metadata=_metadata(args.metadata),
                server_group=args.server_group,
                project=args.project,
                flavor=args.flavor,
                name=args.name,
                port=args.port,
                boot_from_volume=args.boot_from_volume,
                data_volume=args.data_volume,
                together=args.together,
            )
            print(json.dumps(records, indent=2))
        elif args.command == "fault":
            _fault(args)
        elif args.command == "masakari":
            from . import masakari as masakari_service

            if args.verb == "start":
                masakari_service.start(args.config)
            else:
                masakari_service.stop()
        elif args.command == "env":
            print(f"export OS_CLIENT_CONFIG_FILE={config.STATE / 'clouds.yaml'}")
            print("export OS_CLOUD=novaha-admin")
    except proc.CloudError as exc:
        print(f"localcloud {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
