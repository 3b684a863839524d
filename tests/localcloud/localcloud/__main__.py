"""localcloud: a real OpenStack (Keystone, Nova, Placement) with BMC emulators on 127.0.0.1.

Commands: up, down, status, reset, fail-host, revive-host, boot, env.
State lives in $NOVAHA_LOCALCLOUD_DIR (default: .localcloud/ at the repository root).
"""

import argparse
import json
import sys
import time

from . import cloud, config, proc


def _metadata(pairs):
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise proc.CloudError(f"--metadata takes KEY=VALUE, not {pair!r}")
        result[key] = value
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="localcloud", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cloud (fresh state)")
    up.add_argument("--computes", nargs="+", default=list(config.DEFAULT_COMPUTES), metavar="HOST")
    up.add_argument("--spawn-delay", type=float, default=0.0, metavar="S",
                    help="seconds each boot or evacuation rebuild takes on the fake hypervisor")
    sub.add_parser("down", help="stop every process of the cloud")
    status = sub.add_parser("status", help="what runs; exit 1 unless every service is up")
    status.add_argument("--quiet", action="store_true")
    sub.add_parser("reset", help="delete servers, revive hosts, restore service flags")
    fail = sub.add_parser("fail-host", help="kill a host's nova-compute and set its BMCs")
    fail.add_argument("host")
    fail.add_argument("--power", choices=("on", "off", "stuck", "unreachable"), default="on")
    revive = sub.add_parser("revive-host", help="BMCs answer and report On, nova-compute restarts (flags unchanged)")
    revive.add_argument("host")
    boot = sub.add_parser("boot", help="boot servers onto a host; prints them as JSON")
    boot.add_argument("--host", required=True)
    boot.add_argument("--count", type=int, default=1)
    boot.add_argument("--status", default="ACTIVE",
                      choices=("ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "ERROR"))
    boot.add_argument("--locked", action="store_true")
    boot.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    boot.add_argument("--server-group", choices=("anti-affinity", "affinity", "soft-anti-affinity",
                                                 "soft-affinity"))
    boot.add_argument("--project", choices=("admin", "member"), default="admin")
    boot.add_argument("--flavor", default="m1.tiny")
    boot.add_argument("--name", help="name prefix (default HOST-vm)")
    boot.add_argument("--port", action="store_true", help="boot on a pre-created stub port")
    sub.add_parser("env", help="print shell exports for clients (OS_CLIENT_CONFIG_FILE, OS_CLOUD)")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            cloud.up(args.computes, spawn_delay=args.spawn_delay)
        elif args.command == "down":
            cloud.down()
        elif args.command == "status":
            healthy, lines = cloud.status()
            if not args.quiet:
                print("\n".join(lines))
                if proc.known_services():
                    from . import footprint
                    usage = footprint.memory_by_service().values()
                    print(f"memory, all processes: PSS {sum(m[1] for m in usage) / 2**20:.0f} MiB "
                          f"(RSS {sum(m[0] for m in usage) / 2**20:.0f} MiB)")
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
            records = nova.boot(cloud.connect, args.host, args.count, status=args.status,
                                locked=args.locked, metadata=_metadata(args.metadata),
                                server_group=args.server_group, project=args.project,
                                flavor=args.flavor, name=args.name, port=args.port)
            print(json.dumps(records, indent=2))
        elif args.command == "env":
            print(f"export OS_CLIENT_CONFIG_FILE={config.STATE / 'clouds.yaml'}")
            print("export OS_CLOUD=novaha-admin")
    except proc.CloudError as exc:
        print(f"localcloud {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
