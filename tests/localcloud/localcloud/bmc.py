"""Control of the local cloud's BMC emulators: one Redfish and one IPMI BMC per compute host.

Standard library only, so any virtualenv (the cloud's, the tests') can import it. The
emulators themselves run in the cloud venv: ``localcloud.redfish_bmc`` (sushy-tools' fake
driver) and ``localcloud.ipmi_bmc`` (pyghmi's BMC server), one process per BMC, so that
stopping a process (SIGSTOP) makes exactly one BMC unreachable.

What a BMC keeps in its state directory, and who writes it:

- ``mode.json`` ``{"mode": "normal"|"stuck"}``: written by :func:`set_mode`, read by the
  emulator on every power request. A stuck BMC accepts power requests and changes nothing.
- Redfish: ``fakedriver.sqlite``, sushy-tools' own store of the fake system (a pickled dict
  per system UUID with ``power_state`` and ``pending_power``). The fake driver reads it on
  every request and caches nothing, so :func:`set_power` writes there directly.
- IPMI: ``power.json`` ``{"power_state": "On"|"Off", "pending_power": null|{...}}``.

Both emulators change power asynchronously: a request records ``pending_power``
(``power_state`` and ``apply_time``, seconds since the epoch) and the new state shows once
that time has passed, so clients have to poll as they do with real hardware.
"""

import json
import os
import pickle
import random
import socket
import sqlite3
import ssl
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

REDFISH = "redfish"
IPMI = "ipmi"
KINDS = (REDFISH, IPMI)

POWER_ON = "On"
POWER_OFF = "Off"
POWER_STATES = (POWER_ON, POWER_OFF)

NORMAL = "normal"
STUCK = "stuck"
MODES = (NORMAL, STUCK)

# Seconds "MIN:MAX" a power change takes; real BMCs take seconds, the tests want them short.
DEFAULT_POWER_DELAY = "1:3"
DEFAULT_LISTEN = "127.0.0.1"

MODE_FILE = "mode.json"
IPMI_POWER_FILE = "power.json"
REDFISH_STORE = "fakedriver.sqlite"
HTPASSWD_FILE = "htpasswd"

# IPMI 2.0 (RMCP+) passwords are at most 20 bytes; ipmitool refuses longer ones.
IPMI_MAX_PASSWORD = 20

# Fixed, so that a compute host's Redfish system id is the same on every run.
_SYSTEM_NAMESPACE = uuid.UUID("5b0c1f4e-2d7a-4b8e-9c61-6e6f7661686a")


def system_uuid(host):
    """The Redfish system id (a UUID string) of the compute host named ``host``."""
    return str(uuid.uuid5(_SYSTEM_NAMESPACE, host))


def parse_power_delay(text):
    """``"MIN:MAX"`` (seconds, floats allowed) -> (min, max); raises ValueError."""
    low, sep, high = str(text).partition(":")
    low = float(low)
    high = float(high) if sep else low
    if low < 0 or high < low:
        raise ValueError(f"power delay {text!r} is not MIN:MAX with 0 <= MIN <= MAX")
    return low, high


@dataclass(frozen=True)
class CertPaths:
    """The CA that signs the BMCs' server certificate, and that certificate with its key."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class BmcPair:
    """The two BMCs of one compute host: Redfish over HTTPS and IPMI over lanplus (UDP)."""

    host: str
    username: str
    password_file: Path
    redfish_port: int
    ipmi_port: int
    redfish_dir: Path
    ipmi_dir: Path
    certs: CertPaths
    listen: str = DEFAULT_LISTEN
    power_delay: str = DEFAULT_POWER_DELAY
    ipmi_power_delay: str = "0:0"

    @classmethod
    def under(cls, root, host, *, username, password_file, redfish_port, ipmi_port, certs, **kwargs):
        """The pair of ``host`` with its state in ``root/<host>/redfish`` and ``.../ipmi``."""
        base = Path(root) / host
        return cls(
            host=host,
            username=username,
            password_file=Path(password_file),
            redfish_port=redfish_port,
            ipmi_port=ipmi_port,
            redfish_dir=base / REDFISH,
            ipmi_dir=base / IPMI,
            certs=certs,
            **kwargs,
        )

    @property
    def system_id(self):
        return system_uuid(self.host)

    @property
    def redfish_url(self):
        return f"https://{self.listen}:{self.redfish_port}"

    @property
    def system_path(self):
        return f"/redfish/v1/Systems/{self.system_id}"

    def state_dir(self, kind):
        return {REDFISH: self.redfish_dir, IPMI: self.ipmi_dir}[kind]

    def describe(self, password):
        """The entry for ``cloud.json``'s ``bmcs[host]`` (what tests and inventories read)."""
        return {
            "redfish": {
                "url": self.redfish_url,
                "system_id": self.system_id,
                "system_path": self.system_path,
                "port": self.redfish_port,
                "state_dir": str(self.redfish_dir),
            },
            "ipmi": {"address": self.listen, "port": self.ipmi_port, "cipher_suite": 3, "state_dir": str(self.ipmi_dir)},
            "username": self.username,
            "password": password,
            "ca_path": str(self.certs.ca),
        }


def redfish_argv(pair, python=None):
    """Command line of ``pair``'s Redfish emulator (needs PYTHONPATH=tests/localcloud)."""
    return [
        python or sys.executable,
        "-m",
        "localcloud.redfish_bmc",
        "--name",
        pair.host,
        "--state-dir",
        str(pair.redfish_dir),
        "--port",
        str(pair.redfish_port),
        "--listen",
        pair.listen,
        "--username",
        pair.username,
        "--password-file",
        str(pair.password_file),
        "--cert",
        str(pair.certs.cert),
        "--key",
        str(pair.certs.key),
        "--power-delay",
        pair.power_delay,
    ]


def ipmi_argv(pair, python=None):
    """Command line of ``pair``'s IPMI emulator (needs PYTHONPATH=tests/localcloud)."""
    return [
        python or sys.executable,
        "-m",
        "localcloud.ipmi_bmc",
        "--name",
        pair.host,
        "--state-dir",
        str(pair.ipmi_dir),
        "--port",
        str(pair.ipmi_port),
        "--listen",
        pair.listen,
        "--username",
        pair.username,
        "--password-file",
        str(pair.password_file),
        "--power-delay",
        pair.ipmi_power_delay,
    ]


# Where free_port looks: below Linux's ephemeral range (32768 and up), where no outgoing connection
# takes a port between the moment it is found free and the moment an emulator binds it, and above the
# local clouds' port blocks (21xxx to 27xxx).
FREE_PORTS = range(29000, 32000)


def free_port(kind):
    """A port on 127.0.0.1 free right now: TCP for Redfish, UDP for IPMI."""
    sock_type = socket.SOCK_STREAM if kind == REDFISH else socket.SOCK_DGRAM
    for port in random.sample(FREE_PORTS, 200):
        with socket.socket(socket.AF_INET, sock_type) as sock:
            try:
                sock.bind((DEFAULT_LISTEN, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in %d-%d" % (FREE_PORTS[0], FREE_PORTS[-1]))


def make_certs(cert_dir):
    """Create (once) a CA and a server certificate for 127.0.0.1/localhost signed by it.

    Clients verify the BMCs with ``ca`` as their CA path. Needs the ``cryptography``
    package (present in the cloud venv); existing files are kept.
    """
    cert_dir = Path(cert_dir)
    paths = CertPaths(ca=cert_dir / "bmc-ca.pem", cert=cert_dir / "bmc-cert.pem", key=cert_dir / "bmc-key.pem")
    if paths.ca.exists() and paths.cert.exists() and paths.key.exists():
        return paths

    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(days=1)
    not_after = now + datetime.timedelta(days=3650)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "novaha local cloud BMC CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    cert_dir.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    _write_private(paths.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    paths.cert.write_bytes(cert.public_bytes(pem))
    paths.ca.write_bytes(ca_cert.public_bytes(pem))
    return paths


def _write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_json(path, data):
    """Replace ``path`` atomically, so a running emulator never reads half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def set_mode(state_dir, mode):
    """Make a BMC behave normally, or get stuck (accept power requests, change nothing)."""
    if mode not in MODES:
        raise ValueError(f"BMC mode must be one of {', '.join(MODES)}, not {mode!r}")
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(state_dir) / MODE_FILE, {"mode": mode})


def get_mode(state_dir):
    try:
        return json.loads((Path(state_dir) / MODE_FILE).read_text())["mode"]
    except FileNotFoundError:
        return NORMAL


def effective_power(record, now=None):
    """The power state a record shows at ``now``: a pending change counts once it is due."""
    pending = record.get("pending_power")
    if pending and (now if now is not None else time.time()) >= pending["apply_time"]:
        # A restart's pending target is the reset type ("ForceRestart"); it ends powered on.
        return POWER_ON if "Restart" in pending["power_state"] else pending["power_state"]
    return record["power_state"]


def set_power(state_dir, kind, state):
    """Set a BMC's power state at once (the host lost or regained power), dropping any
    pending change. The emulator may be running: it reads this state on every request."""
    if state not in POWER_STATES:
        raise ValueError(f"power state must be On or Off, not {state!r}")
    if kind == REDFISH:
        _redfish_update(state_dir, lambda system: system.update(power_state=state, pending_power=None))
    elif kind == IPMI:
        path = Path(state_dir) / IPMI_POWER_FILE
        if not path.parent.is_dir():
            raise FileNotFoundError(f"no IPMI BMC state in {state_dir}")
        write_json(path, {"power_state": state, "pending_power": None})
    else:
        raise ValueError(f"BMC kind must be one of {', '.join(KINDS)}, not {kind!r}")


def get_power(state_dir, kind):
    """A BMC's power state as a client would see it now: 'On' or 'Off'."""
    if kind == REDFISH:
        systems = list(_redfish_systems(state_dir))
        if len(systems) != 1:
            raise RuntimeError(f"expected one fake system in {state_dir}, found {len(systems)}")
        return effective_power(systems[0][1])
    if kind == IPMI:
        return effective_power(json.loads((Path(state_dir) / IPMI_POWER_FILE).read_text()))
    raise ValueError(f"BMC kind must be one of {', '.join(KINDS)}, not {kind!r}")


def _redfish_store(state_dir):
    path = Path(state_dir) / REDFISH_STORE
    if not path.exists():
        raise FileNotFoundError(f"no Redfish BMC state in {state_dir} (emulator never started)")
    return path


def _redfish_systems(state_dir):
    """(key, system) rows of sushy's fake driver store; keys stay as stored (pickled)."""
    conn = sqlite3.connect(_redfish_store(state_dir), timeout=10)
    try:
        rows = conn.execute("select key, value from cache").fetchall()
    finally:
        conn.close()
    for key, value in rows:
        yield key, pickle.loads(value)


def _redfish_update(state_dir, change):
    conn = sqlite3.connect(_redfish_store(state_dir), timeout=10)
    try:
        with conn:
            rows = conn.execute("select key, value from cache").fetchall()
            for key, value in rows:
                system = pickle.loads(value)
                change(system)
                conn.execute("update cache set value=? where key=?", (pickle.dumps(system, protocol=4), key))
    finally:
        conn.close()


def wait_ready(kind, port, *, address=DEFAULT_LISTEN, ca_path=None, timeout=30.0, process=None):
    """Poll until the BMC on ``address:port`` answers (Redfish: the service root over TLS;
    IPMI: Get Channel Authentication Capabilities). Raises RuntimeError if ``process`` (a
    Popen) exits first, TimeoutError when ``timeout`` seconds pass."""
    probe = {REDFISH: _redfish_answers, IPMI: _ipmi_answers}[kind]
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{kind} BMC on port {port} exited with {process.returncode}")
        if probe(address, port, ca_path):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{kind} BMC on {address}:{port} did not answer in {timeout}s")
        time.sleep(0.1)


def _redfish_answers(address, port, ca_path):
    if ca_path:
        context = ssl.create_default_context(cafile=str(ca_path))
    else:
        context = ssl.create_default_context()  # without a CA it only asks "is it up?"
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://{address}:{port}/redfish/v1/", context=context, timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _ipmi_answers(address, port, _ca_path):
    # RMCP + IPMI 1.5 session-less Get Channel Authentication Capabilities (channel E,
    # administrator), as ipmitool sends it first.
    body = bytes([0x20, 0x18, 0xC8, 0x81, 0x00, 0x38, 0x8E, 0x04])
    body += bytes([(-sum(body[3:]) & 0xFF)])
    packet = bytes([0x06, 0x00, 0xFF, 0x07, 0x00]) + struct.pack("<II", 0, 0)
    packet += bytes([len(body)]) + body
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(packet, (address, port))
            data = sock.recvfrom(512)[0]
        except OSError:
            return False
    return len(data) > 20 and data[0] == 0x06
