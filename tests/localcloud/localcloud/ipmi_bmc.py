"""IPMI BMC of one compute host: pyghmi's BMC server, answering ipmitool over lanplus.

Run as::

    python -m localcloud.ipmi_bmc --name node-28 --state-dir D --port P \\
        --username U --password-file F [--listen 127.0.0.1] [--power-delay 0:0] \\
        [--initial-power On]

Clients use cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128), the only one
pyghmi implements::

    IPMI_PASSWORD=... ipmitool -I lanplus -H 127.0.0.1 -p P -U U -E -C 3 chassis power status

Power state lives in D/power.json (see ``localcloud.bmc``), so it survives a restart and
``bmc.set_power`` can change it under a running emulator. Stuck mode (``bmc.set_mode``)
accepts chassis control and changes nothing.

pyghmi's server side session is fixed here where it would leave a client hanging until its
retries run out, instead of failing fast with the error a real BMC gives:

- an Open Session Request proposing algorithms other than cipher suite 3 was answered
  "no errors" with suite 3 forced on the client; now it gets status 0x11 (no cipher suite
  match with proposed security algorithms);
- RAKP 1 with a user name it does not know (or none) was dropped; now RAKP 2 carries
  status 0x0D (unauthorized name);
- RAKP 3 whose key exchange code does not match the password was dropped; now RAKP 4
  carries status 0x0F (invalid integrity check value).
"""

import argparse
import hashlib
import hmac
import json
import logging
import random
import struct
import sys
import time
import uuid
from pathlib import Path

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import constants as ipmi_constants, serversession

from localcloud import bmc

LOG = logging.getLogger("localcloud.ipmi_bmc")

# RMCP+ and RAKP message status codes (IPMI 2.0, table 13-15).
RAKP_NO_CIPHER_SUITE_MATCH = 0x11
RAKP_UNAUTHORIZED_NAME = 0x0D
RAKP_INVALID_INTEGRITY_CHECK = 0x0F
# Algorithms of cipher suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
SUPPORTED_ALGORITHMS = {(1, 1, 1)}
# IPMI completion code: command not supported in present state.
CC_NOT_IN_PRESENT_STATE = 0xD5


def proposed_algorithms(request):
    """(authentication, integrity, confidentiality) algorithms of an Open Session Request
    (IPMI 2.0 table 13-16), or None if the request is malformed."""
    if len(request) < 32:
        return None
    payloads = {}
    for offset in (8, 16, 24):
        payload_type, algorithm = request[offset], request[offset + 4] & 0x3F
        payloads[payload_type] = algorithm
    if set(payloads) != {0, 1, 2}:
        return None
    return payloads[0], payloads[1], payloads[2]


class ServerSession(serversession.ServerSession):
    """pyghmi's server session, answering bad requests with a status instead of silence."""

    def create_open_session_response(self, request):
        algorithms = proposed_algorithms(request)
        if algorithms not in SUPPORTED_ALGORITHMS:
            LOG.warning("refused open session: algorithms %s are not cipher suite 3", algorithms)
            self.clientsessionid = request[4:8]
            # On error only tag, status, privilege, reserved and the console's session id.
            return bytearray([request[0], RAKP_NO_CIPHER_SUITE_MATCH, 0, 0]) + request[4:8]
        return super().create_open_session_response(request)

    def _send_rakp_error(self, payload_type, tag, status):
        self.send_payload(bytearray([tag, status, 0, 0]) + self.clientsessionid, ipmi_constants.payload_types[payload_type], retry=False)

    def _got_rakp1(self, data):
        name_length = data[27] if len(data) > 27 else 0
        username = bytes(data[28 : 28 + name_length]).decode("utf-8", "replace")
        if self.authdata.get(username) is None:
            LOG.warning("refused RAKP 1: unknown user %r", username)
            self._send_rakp_error("rakp2", data[0], RAKP_UNAUTHORIZED_NAME)
            return
        super()._got_rakp1(data)

    def _got_rakp3(self, data):
        if getattr(self, "Rc", None) is None:
            return  # no RAKP 2 was sent in this session: nothing to check against
        if data[1] != 0:
            # The client rejected our RAKP 2 (e.g. its password differs); nothing to answer.
            LOG.warning("client ended the session in RAKP 3 with status 0x%02x", data[1])
            return
        hmacdata = self.Rc + self.clientsessionid + struct.pack("2B", self.rolem, len(self.username)) + self.username
        expected = hmac.new(self.kuid, bytes(hmacdata), hashlib.sha1).digest()
        if bytes(data[8:]) != expected:
            LOG.warning("refused RAKP 3: key exchange code does not match the password")
            self._send_rakp_error("rakp4", data[0], RAKP_INVALID_INTEGRITY_CHECK)
            return
        super()._got_rakp3(data)


class PowerBmc(pyghmi_bmc.Bmc):
    """The BMC of one host: power on/off/cycle/reset, state in D/power.json."""

    def __init__(self, authdata, *, name, state_dir, power_delay, port, address):
        super().__init__(authdata, port=port, address=address, bmcuuid=uuid.UUID(bmc.system_uuid(name)))
        self.name = name
        self.state_dir = Path(state_dir)
        self.power_delay = power_delay

    # -- state -----------------------------------------------------------------------
    @property
    def power_file(self):
        return self.state_dir / bmc.IPMI_POWER_FILE

    def _read(self):
        record = json.loads(self.power_file.read_text())
        pending = record.get("pending_power")
        if pending and time.time() >= pending["apply_time"]:
            record = {"power_state": bmc.effective_power(record), "pending_power": None}
            bmc.write_json(self.power_file, record)
        return record

    def _stuck(self, action):
        if bmc.get_mode(self.state_dir) == bmc.STUCK:
            LOG.warning("stuck: accepted power %s for %s, nothing changes", action, self.name)
            return True
        return False

    def _schedule(self, target, now_state=None):
        """Power to ``target`` once the delay has passed (the latest request wins);
        ``now_state`` is what the host shows meanwhile (Off while cycling)."""
        record = self._read()
        if now_state is not None:
            record["power_state"] = now_state
        record["pending_power"] = None
        if record["power_state"] != target:
            low, high = self.power_delay
            record["pending_power"] = {"power_state": target, "apply_time": time.time() + random.uniform(low, high)}
        bmc.write_json(self.power_file, record)
        LOG.info("%s: power %s -> %s", self.name, record["power_state"], target)
        return 0

    # -- pyghmi Bmc interface ----------------------------------------------------------
    def get_power_state(self):
        return "on" if self._read()["power_state"] == bmc.POWER_ON else "off"

    def get_system_guid(self):
        return self.uuid

    def power_on(self):
        return 0 if self._stuck("on") else self._schedule(bmc.POWER_ON)

    def power_off(self):
        return 0 if self._stuck("off") else self._schedule(bmc.POWER_OFF)

    def power_shutdown(self):
        return 0 if self._stuck("soft") else self._schedule(bmc.POWER_OFF)

    def power_cycle(self):
        # Like most BMCs: cycling needs the power on (the spec says no action when off).
        if self._read()["power_state"] != bmc.POWER_ON:
            return CC_NOT_IN_PRESENT_STATE
        return 0 if self._stuck("cycle") else self._schedule(bmc.POWER_ON, bmc.POWER_OFF)

    def power_reset(self):
        if self._read()["power_state"] != bmc.POWER_ON:
            return CC_NOT_IN_PRESENT_STATE
        return 0 if self._stuck("reset") else self._schedule(bmc.POWER_ON, bmc.POWER_OFF)

    def pulse_diag(self):
        return 0

    def cold_reset(self):
        return 0

    # -- sessions ------------------------------------------------------------------------
    def sessionless_data(self, data, sockaddr):
        raw = bytearray(data)
        if len(raw) >= 22 and raw[0] == 6 and raw[2:4] == b"\xff\x07" and raw[4] == 6 and raw[5] == ipmi_constants.payload_types["rmcpplusopenreq"]:
            ServerSession(self.authdata, self.kg, sockaddr, self.serversocket, raw[16:], self.uuid, bmc=self)
            return
        super().sessionless_data(data, sockaddr)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m localcloud.ipmi_bmc", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="compute host name")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int, help="UDP port")
    parser.add_argument("--listen", default=bmc.DEFAULT_LISTEN)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password-file", required=True, type=Path)
    parser.add_argument(
        "--power-delay", default="0:0", metavar="MIN:MAX", type=bmc.parse_power_delay, help="seconds a power change takes to show (default %(default)s)"
    )
    parser.add_argument("--initial-power", default=bmc.POWER_ON, choices=bmc.POWER_STATES, help="power state of a fresh state dir (default %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    password = Path(args.password_file).read_text().rstrip("\r\n")
    if not password or len(password.encode()) > bmc.IPMI_MAX_PASSWORD:
        raise SystemExit(f"IPMI password in {args.password_file} must be 1 to {bmc.IPMI_MAX_PASSWORD} bytes")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    if not (args.state_dir / bmc.IPMI_POWER_FILE).exists():
        bmc.write_json(args.state_dir / bmc.IPMI_POWER_FILE, {"power_state": args.initial_power, "pending_power": None})
    if not (args.state_dir / bmc.MODE_FILE).exists():
        bmc.set_mode(args.state_dir, bmc.NORMAL)
    server = PowerBmc({args.username: password}, name=args.name, state_dir=args.state_dir, power_delay=args.power_delay, port=args.port, address=args.listen)
    LOG.info("IPMI BMC of %s listening on %s:%d (udp)", args.name, args.listen, args.port)
    server.listen()
    return 0


if __name__ == "__main__":
    sys.exit(main())
