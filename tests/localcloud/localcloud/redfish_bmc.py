"""Redfish BMC of one compute host: sushy-tools' sushy-emulator with its fake driver.

Run as::

    python -m localcloud.redfish_bmc --name node-28 --state-dir D --port P \\
        --username U --password-file F --cert C --key K [--listen 127.0.0.1] \\
        [--power-delay 1:3] [--initial-power On]

One process, one fake system named after the host, with the stable UUID
``localcloud.bmc.system_uuid(name)``; HTTPS with HTTP basic auth (an htpasswd file made in
D). sushy-tools runs unmodified through its own ``main()``; this launcher only swaps the
fake driver's power handling for one that

- applies a reset after ``--power-delay`` seconds instead of a random 1-11 s, still
  asynchronously (the new PowerState shows once due, so clients must poll);
- in stuck mode (``localcloud.bmc.set_mode(D, "stuck")``) accepts every reset with 204 and
  changes nothing, as a BMC whose power controller hangs;
- accepts exactly the reset types the system advertises in
  ``ResetType@Redfish.AllowableValues`` (Nmi changes no power state) and answers 400 for
  any other, where the fake driver answered 501 or 500.
"""

import argparse
import logging
import os
import random
import sys
import time
from pathlib import Path

from localcloud import bmc

# What sushy-tools' system.json template advertises in ResetType@Redfish.AllowableValues.
RESET_TYPES = ("On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn")
_TARGET_STATE = {"On": bmc.POWER_ON, "ForceOn": bmc.POWER_ON, "ForceOff": bmc.POWER_OFF, "GracefulShutdown": bmc.POWER_OFF}

LOG = logging.getLogger("localcloud.redfish_bmc")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m localcloud.redfish_bmc", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="compute host name (the fake system)")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--listen", default=bmc.DEFAULT_LISTEN)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password-file", required=True, type=Path)
    parser.add_argument("--cert", required=True, type=Path, help="server certificate (PEM)")
    parser.add_argument("--key", required=True, type=Path, help="its private key (PEM)")
    parser.add_argument(
        "--power-delay",
        default=bmc.DEFAULT_POWER_DELAY,
        metavar="MIN:MAX",
        type=bmc.parse_power_delay,
        help="seconds a reset takes to show (default %(default)s)",
    )
    parser.add_argument("--initial-power", default=bmc.POWER_ON, choices=bmc.POWER_STATES, help="power state of a fresh state dir (default %(default)s)")
    return parser.parse_args(argv)


def read_password(path):
    password = Path(path).read_text().rstrip("\r\n")
    if not password:
        raise SystemExit(f"password file {path} is empty")
    return password


def write_htpasswd(path, username, password):
    import bcrypt

    # bcrypt is the only digest sushy-tools accepts; it checks it on every request, and the
    # default cost (12) would add a quarter second to each one.
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{username}:{digest}\n")
    os.replace(tmp, path)


def write_config(args, auth_file):
    """sushy-emulator's config file (Python), in the state dir."""
    config = {
        "SUSHY_EMULATOR_LISTEN_IP": args.listen,
        "SUSHY_EMULATOR_LISTEN_PORT": args.port,
        "SUSHY_EMULATOR_SSL_CERT": str(args.cert),
        "SUSHY_EMULATOR_SSL_KEY": str(args.key),
        "SUSHY_EMULATOR_AUTH_FILE": str(auth_file),
        "SUSHY_EMULATOR_STATE_DIR": str(args.state_dir),
        "SUSHY_EMULATOR_FAKE_DRIVER": True,
        "SUSHY_EMULATOR_FAKE_SYSTEMS": [
            {
                "uuid": bmc.system_uuid(args.name),
                "name": args.name,
                "power_state": args.initial_power,
                "external_notifier": False,
                "nics": [{"mac": "52:54:00:00:00:01", "ip": args.listen}],
            }
        ],
        "NOVAHA_POWER_DELAY": args.power_delay,
    }
    path = args.state_dir / "emulator.conf"
    path.write_text("".join(f"{key} = {value!r}\n" for key, value in config.items()))
    return path


def install_driver():
    """Replace sushy's FakeDriver (looked up by main at first use) with one whose resets
    honour --power-delay, stuck mode and the advertised reset types."""
    from sushy_tools import error
    from sushy_tools.emulator.resources.systems import fakedriver

    class LocalCloudFakeDriver(fakedriver.FakeDriver):
        def set_power_state(self, identity, state):
            if state not in RESET_TYPES:
                raise error.BadRequest(f"ResetType {state!r} is not supported; allowed: {', '.join(RESET_TYPES)}")
            system = self._get(identity)
            state_dir = self._config["SUSHY_EMULATOR_STATE_DIR"]
            if bmc.get_mode(state_dir) == bmc.STUCK:
                self._logger.warning("stuck: accepted %s for %s, power stays %s", state, system["name"], system["power_state"])
                return
            if state == "Nmi":
                return
            low, high = self._config["NOVAHA_POWER_DELAY"]
            apply_time = time.time() + random.uniform(low, high)
            if "Restart" in state:
                # As sushy's fake driver: off now, on again once due.
                system["power_state"] = bmc.POWER_OFF
                pending = state
            else:
                pending = _TARGET_STATE[state]
            if system["power_state"] != pending:
                self._update(system, pending_power={"power_state": pending, "apply_time": apply_time})

    fakedriver.FakeDriver = LocalCloudFakeDriver


def main(argv=None):
    args = parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    auth_file = args.state_dir / bmc.HTPASSWD_FILE
    write_htpasswd(auth_file, args.username, read_password(args.password_file))
    if not (args.state_dir / bmc.MODE_FILE).exists():
        bmc.set_mode(args.state_dir, bmc.NORMAL)
    config = write_config(args, auth_file)

    # sushy's Application reads this at import; ours is passed as --config instead.
    os.environ.pop("SUSHY_EMULATOR_CONFIG", None)
    install_driver()
    from sushy_tools.emulator import main as sushy_main

    sys.argv = ["sushy-emulator", "--config", str(config), "--fake"]
    return sushy_main.main()


if __name__ == "__main__":
    sys.exit(main())
