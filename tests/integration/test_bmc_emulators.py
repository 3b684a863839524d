"""The local cloud's BMC emulators answer real clients as real BMCs do.

Each test starts its own emulator (cloud venv, fresh state dir, free port) and talks to it
with the clients the collection meets in the field: ``requests`` over verified TLS for
Redfish, ``ipmitool -I lanplus`` for IPMI. They do not use the ``cloud`` fixture.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import certifi
import pytest
import requests

from conftest import stop_process

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "localcloud"))
from localcloud import bmc  # noqa: E402  (the package lives outside the test tree)

CLOUD_PYTHON = Path(os.environ.get("NOVAHA_CLOUD_PYTHON", ROOT / ".venv" / "cloud" / "bin" / "python"))
HOST = "node-28"
USERNAME = "admin"
PASSWORD = "bmc-Secret-42"
# Short, but never instant: a client that does not poll sees the old state.
POWER_DELAY = "1:1.5"
FAIL_FAST = 5.0  # seconds within which a refused IPMI login must end


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return bmc.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def password_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secrets") / "bmc-password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def pair(tmp_path, certs, password_file):
    return bmc.BmcPair.under(
        tmp_path,
        HOST,
        username=USERNAME,
        password_file=password_file,
        redfish_port=bmc.free_port(bmc.REDFISH),
        ipmi_port=bmc.free_port(bmc.IPMI),
        certs=certs,
        power_delay=POWER_DELAY,
    )


@pytest.fixture
def start(pair):
    """start(kind) -> the running emulator's Popen; every one is stopped at teardown."""
    procs = []

    def _start(kind):
        argv = {bmc.REDFISH: bmc.redfish_argv, bmc.IPMI: bmc.ipmi_argv}[kind](pair, python=str(CLOUD_PYTHON))
        state_dir = pair.state_dir(kind)
        state_dir.mkdir(parents=True, exist_ok=True)
        log = open(state_dir.parent / f"{kind}.log", "wb")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "localcloud"))
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        procs.append(proc)
        port = pair.redfish_port if kind == bmc.REDFISH else pair.ipmi_port
        try:
            bmc.wait_ready(kind, port, ca_path=pair.certs.ca, timeout=20, process=proc)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}\n{(state_dir.parent / f'{kind}.log').read_text()}")
        return proc

    yield _start
    for proc in procs:
        stop_process(proc)


# -- Redfish ------------------------------------------------------------------------------


class Redfish:
    """A Redfish client as the collection's fencing code uses one: basic auth, CA-verified."""

    def __init__(self, pair, password=PASSWORD, username=USERNAME, timeout=5):
        self.base = pair.redfish_url
        self.system = pair.redfish_url + pair.system_path
        self.session = requests.Session()
        self.session.auth = (username, password)
        # Per request: a session-wide verify loses to REQUESTS_CA_BUNDLE in the environment.
        self.verify = str(pair.certs.ca)
        self.timeout = timeout

    def get(self, url):
        return self.session.get(url, verify=self.verify, timeout=self.timeout)

    def power_state(self):
        resp = self.get(self.system)
        resp.raise_for_status()
        return resp.json()["PowerState"]

    def reset(self, reset_type):
        return self.session.post(self.system + "/Actions/ComputerSystem.Reset", json={"ResetType": reset_type}, verify=self.verify, timeout=self.timeout)

    def wait_power(self, wanted, timeout=10):
        """Poll like a client must; return (state, seconds) when it is ``wanted`` or at the end."""
        started = time.monotonic()
        state = self.power_state()
        while state != wanted and time.monotonic() - started < timeout:
            time.sleep(0.2)
            state = self.power_state()
        return state, time.monotonic() - started


def test_redfish_serves_the_host_system_over_verified_tls(pair, start):
    start(bmc.REDFISH)
    client = Redfish(pair)

    members = client.get(pair.redfish_url + "/redfish/v1/Systems").json()["Members"]
    assert [m["@odata.id"] for m in members] == [pair.system_path]
    system = client.get(client.system).json()
    assert system["Id"] == bmc.system_uuid(HOST) == pair.system_id
    assert system["Name"] == HOST
    assert system["PowerState"] == "On"
    allowed = system["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
    assert {"On", "ForceOff", "ForceRestart", "GracefulShutdown"} <= set(allowed)
    # The same name always gives the same system id (inventories are written once).
    assert bmc.system_uuid(HOST) == pair.system_id != bmc.system_uuid("node-27")

    # The certificate is only trusted through the local CA; a refused handshake leaves the
    # BMC serving the next client.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(client.system, auth=(USERNAME, PASSWORD), timeout=5, verify=certifi.where())
    assert client.power_state() == "On"


def test_redfish_force_off_shows_only_after_polling_then_on_again(pair, start):
    start(bmc.REDFISH)
    client = Redfish(pair)

    resp = client.reset("ForceOff")
    assert resp.status_code == 204, resp.text
    assert client.power_state() == "On", "power changed at once; clients would not need to poll"
    state, waited = client.wait_power("Off")
    assert state == "Off"
    assert waited >= 0.5
    assert bmc.get_power(pair.redfish_dir, bmc.REDFISH) == "Off"

    assert client.reset("On").status_code == 204
    assert client.power_state() == "Off"
    state = client.wait_power("On")[0]
    assert state == "On"
    assert bmc.get_power(pair.redfish_dir, bmc.REDFISH) == "On"


def test_redfish_stuck_bmc_accepts_force_off_but_stays_on(pair, start):
    start(bmc.REDFISH)
    client = Redfish(pair)
    bmc.set_mode(pair.redfish_dir, bmc.STUCK)

    assert client.reset("ForceOff").status_code == 204
    state = client.wait_power("Off", timeout=3)[0]  # twice the longest power delay
    assert state == "On"

    # Unstuck while running: the next request works again.
    bmc.set_mode(pair.redfish_dir, bmc.NORMAL)
    assert client.reset("ForceOff").status_code == 204
    assert client.wait_power("Off")[0] == "Off"


def test_redfish_refuses_wrong_credentials_with_401(pair, start):
    start(bmc.REDFISH)
    assert Redfish(pair, password="not-the-password").get(Redfish(pair).system).status_code == 401
    assert Redfish(pair, username="nobody").get(Redfish(pair).system).status_code == 401
    anonymous = requests.get(Redfish(pair).system, verify=str(pair.certs.ca), timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers.get("WWW-Authenticate", "").startswith("Basic")
    # As on real BMCs, the service root is open (clients discover the API there).
    assert requests.get(pair.redfish_url + "/redfish/v1/", verify=str(pair.certs.ca), timeout=5).status_code == 200


def test_redfish_refuses_a_reset_type_it_does_not_advertise(pair, start):
    start(bmc.REDFISH)
    client = Redfish(pair)
    resp = client.reset("PowerCycle")
    assert resp.status_code == 400
    assert "PowerCycle" in resp.json()["error"]["message"]
    assert client.power_state() == "On"


def test_redfish_power_set_from_outside_is_seen_at_once(pair, start):
    start(bmc.REDFISH)
    client = Redfish(pair)
    assert client.reset("ForceOff").status_code == 204  # pending, overridden below

    bmc.set_power(pair.redfish_dir, bmc.REDFISH, "On")
    time.sleep(2)  # past the pending ForceOff's due time: it must have been dropped
    assert client.power_state() == "On"

    bmc.set_power(pair.redfish_dir, bmc.REDFISH, "Off")
    assert client.power_state() == "Off"
    assert bmc.get_power(pair.redfish_dir, bmc.REDFISH) == "Off"


def test_redfish_stopped_emulator_makes_clients_time_out(pair, start):
    proc = start(bmc.REDFISH)
    client = Redfish(pair, timeout=1.5)
    proc.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        client.power_state()
    assert time.monotonic() - started < 5

    proc.send_signal(signal.SIGCONT)
    assert Redfish(pair).power_state() == "On"


# -- IPMI -----------------------------------------------------------------------------------

# hack/install.sh installs it; missing, the tests fail rather than skip.
IPMITOOL = shutil.which("ipmitool") or "ipmitool"


def ipmitool(pair, *args, password=PASSWORD, username=USERNAME, cipher_suite="3", verbose=False, retries=2):
    """Run ipmitool as an operator does; return (returncode, output, seconds)."""
    cmd = [IPMITOOL, "-I", "lanplus", "-H", "127.0.0.1", "-p", str(pair.ipmi_port), "-U", username, "-E", "-C", cipher_suite, "-N", "1", "-R", str(retries)]
    if verbose:
        cmd.append("-v")
    env = dict(os.environ, IPMI_PASSWORD=password)
    started = time.monotonic()
    proc = subprocess.run(cmd + list(args), env=env, capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def test_ipmi_power_status_off_on_and_cycle(pair, start):
    start(bmc.IPMI)

    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is on\n")
    rc, out = ipmitool(pair, "chassis", "power", "off")[:2]
    assert (rc, out) == (0, "Chassis Power Control: Down/Off\n")
    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is off\n")
    assert bmc.get_power(pair.ipmi_dir, bmc.IPMI) == "Off"

    # Cycling a host that is off does nothing on real BMCs; this one says so.
    rc, out = ipmitool(pair, "chassis", "power", "cycle")[:2]
    assert rc != 0 and "Command not supported in present state" in out

    assert ipmitool(pair, "chassis", "power", "on")[:2] == (0, "Chassis Power Control: Up/On\n")
    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is on\n")
    assert ipmitool(pair, "chassis", "power", "cycle")[:2] == (0, "Chassis Power Control: Cycle\n")
    assert ipmitool(pair, "chassis", "power", "reset")[:2] == (0, "Chassis Power Control: Reset\n")
    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is on\n")
    assert bmc.get_power(pair.ipmi_dir, bmc.IPMI) == "On"


def test_ipmi_stuck_bmc_accepts_power_off_but_stays_on(pair, start):
    start(bmc.IPMI)
    bmc.set_mode(pair.ipmi_dir, bmc.STUCK)

    assert ipmitool(pair, "chassis", "power", "off")[:2] == (0, "Chassis Power Control: Down/Off\n")
    time.sleep(0.5)
    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is on\n")

    bmc.set_mode(pair.ipmi_dir, bmc.NORMAL)
    assert ipmitool(pair, "chassis", "power", "off")[0] == 0
    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is off\n")


def test_ipmi_power_set_from_outside_is_seen_at_once(pair, start):
    start(bmc.IPMI)
    bmc.set_power(pair.ipmi_dir, bmc.IPMI, "Off")
    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is off\n")
    bmc.set_power(pair.ipmi_dir, bmc.IPMI, "On")
    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is on\n")


def test_ipmi_wrong_password_fails_fast(pair, start):
    start(bmc.IPMI)
    rc, out, seconds = ipmitool(pair, "chassis", "power", "status", password="wrong-password", verbose=True)
    assert rc != 0
    assert seconds < FAIL_FAST, out
    # ipmitool finds the BMC's RAKP 2 key exchange code does not match its password.
    assert "RAKP 2 HMAC is invalid" in out
    assert "Unable to establish IPMI v2 / RMCP+ session" in out


def test_ipmi_unknown_user_fails_fast(pair, start):
    start(bmc.IPMI)
    rc, out, seconds = ipmitool(pair, "chassis", "power", "status", username="nobody", verbose=True)
    assert rc != 0
    assert seconds < FAIL_FAST, out
    assert "RAKP 2 message indicates an error : unauthorized name" in out
    assert "Unable to establish IPMI v2 / RMCP+ session" in out


@pytest.mark.parametrize("cipher_suite", ["17", "0"])
def test_ipmi_unsupported_cipher_suite_fails_fast(pair, start, cipher_suite):
    start(bmc.IPMI)
    rc, out, seconds = ipmitool(pair, "chassis", "power", "status", cipher_suite=cipher_suite)
    assert rc != 0
    assert seconds < FAIL_FAST, out
    assert "Error in open session response message : no matching cipher suite" in out
    # The BMC still serves the suite it has.
    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is on\n")


def test_ipmi_stopped_emulator_makes_clients_time_out(pair, start):
    proc = start(bmc.IPMI)
    proc.send_signal(signal.SIGSTOP)
    rc, out, seconds = ipmitool(pair, "chassis", "power", "status", retries=1)
    assert rc != 0
    assert "Unable to establish IPMI v2 / RMCP+ session" in out
    proc.send_signal(signal.SIGCONT)
    assert ipmitool(pair, "chassis", "power", "status")[:2] == (0, "Chassis Power is on\n")
    assert seconds < 10


def _rmcpplus(payload_type, payload):
    """An unauthenticated IPMI 2.0 (RMCP+) packet, as sent before a session exists."""
    return bytes([0x06, 0x00, 0xFF, 0x07, 0x06, payload_type]) + bytes(8) + len(payload).to_bytes(2, "little") + bytes(payload)


def _exchange(sock, payload_type, payload):
    sock.send(_rmcpplus(payload_type, payload))
    return sock.recv(512)[16:]


def test_ipmi_rmcpplus_status_codes_of_refused_logins(pair, start):
    """What the BMC answers at each step of a refused RMCP+ login (IPMI 2.0 table 13-15),
    including RAKP 3 with a wrong key exchange code, which ipmitool never sends."""
    start(bmc.IPMI)
    console_sid = bytes([1, 2, 3, 4])
    suite_3 = [0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 8, 1, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0]
    suite_17 = [0, 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0]

    def rakp1(sock, managed_sid, name):
        return _exchange(sock, 0x12, bytes([0, 0, 0, 0]) + managed_sid + bytes(16) + bytes([4, 0, 0, len(name)]) + name)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", pair.ipmi_port))

        refused = _exchange(sock, 0x10, bytes([0, 4, 0, 0]) + console_sid + bytes(suite_17))
        assert refused[1] == 0x11  # no cipher suite match with proposed security algorithms
        assert refused[4:8] == console_sid

        opened = _exchange(sock, 0x10, bytes([0, 4, 0, 0]) + console_sid + bytes(suite_3))
        assert opened[1] == 0x00
        managed_sid = opened[8:12]
        assert rakp1(sock, managed_sid, b"nobody")[1] == 0x0D  # unauthorized name

        opened = _exchange(sock, 0x10, bytes([1, 4, 0, 0]) + console_sid + bytes(suite_3))
        managed_sid = opened[8:12]
        rakp2 = rakp1(sock, managed_sid, USERNAME.encode())
        assert rakp2[1] == 0x00 and rakp2[4:8] == console_sid
        rakp4 = _exchange(sock, 0x14, bytes([1, 0, 0, 0]) + managed_sid + bytes(20))
        assert rakp4[1] == 0x0F  # invalid integrity check value
