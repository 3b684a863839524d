"""The local cloud is a real OpenStack: what the collection's tests rely on, proven."""

import base64
import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import CLOUD_PYTHON, ROOT


def compute_service(conn, host):
    services = conn.compute.get("/os-services?binary=nova-compute", microversion="2.53").json()["services"]
    return next(s for s in services if s["host"] == host)


def server(conn, server_id):
    return conn.compute.get(f"/servers/{server_id}", microversion="2.95").json()["server"]


def force_down(conn, host, value=True):
    service = compute_service(conn, host)
    response = conn.compute.put(f"/os-services/{service['id']}", json={"forced_down": value}, microversion="2.53")
    assert response.status_code == 200, response.text


def wait_settled(conn, server_id, source, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = server(conn, server_id)
        if body["OS-EXT-SRV-ATTR:host"] != source and not body["OS-EXT-STS:task_state"] and body["status"] in ("ACTIVE", "SHUTOFF", "ERROR"):
            return body
        time.sleep(0.5)
    raise AssertionError(f"server {server_id} did not leave {source} within {timeout}s")


def redfish(bmc, method="GET", path=None, body=None, password=None, timeout=10):
    url = bmc["redfish"]["url"] + (path or f"/redfish/v1/Systems/{bmc['redfish']['system_id']}")
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    token = base64.b64encode(f"{bmc['username']}:{password or bmc['password']}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    context = ssl.create_default_context(cafile=bmc["ca_path"])
    with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
        text = response.read()
        return response.status, json.loads(text) if text else None


def ipmitool(bmc, *command, timeout=20):
    argv = [
        "ipmitool",
        "-I",
        "lanplus",
        "-H",
        bmc["ipmi"]["address"],
        "-p",
        str(bmc["ipmi"]["port"]),
        "-U",
        bmc["username"],
        "-E",
        "-C",
        str(bmc["ipmi"]["cipher_suite"]),
        "-N",
        "1",
        "-R",
        "2",
        *command,
    ]
    return subprocess.run(argv, env=dict(os.environ, IPMI_PASSWORD=bmc["password"]), capture_output=True, text=True, timeout=timeout, check=False)


def test_keystone_issues_a_password_token_with_a_catalog_of_the_clouds_services(cloud):
    conn = cloud.connect()
    assert conn.session.get_token()
    catalog = {entry["type"] for entry in conn.session.auth.get_access(conn.session).service_catalog.catalog}
    assert {"compute", "placement", "image", "block-storage", "network", "identity"} <= catalog


def test_member_cloud_cannot_list_compute_services(cloud):
    member = cloud.connect(cloud.member_cloud)
    response = member.compute.get("/os-services", microversion="2.53")
    assert response.status_code == 403


def test_every_compute_is_a_hypervisor_reporting_up(clean_cloud):
    conn = clean_cloud.connect()
    hypervisors = {h.name for h in conn.compute.hypervisors()}
    assert set(clean_cloud.computes) <= hypervisors
    for host in clean_cloud.computes:
        assert compute_service(conn, host)["state"] == "up"


def test_boot_puts_servers_on_the_named_host_in_the_asked_state(clean_cloud):
    conn = clean_cloud.connect()
    active = clean_cloud.boot("node-28", count=3)
    assert [s["host"] for s in active] == ["node-28"] * 3
    assert {s["status"] for s in active} == {"ACTIVE"}
    (shutoff,) = clean_cloud.boot("node-28", status="SHUTOFF", locked=True, metadata={"HA_Enabled": "True"}, project="member")
    body = server(conn, shutoff["id"])
    assert (body["status"], body["locked"], body["metadata"]) == ("SHUTOFF", True, {"HA_Enabled": "True"})
    assert body["tenant_id"] == clean_cloud.connect(clean_cloud.member_cloud).current_project_id
    paused, errored = clean_cloud.boot("node-31", status="PAUSED")[0], clean_cloud.boot("node-31", status="ERROR")[0]
    assert server(conn, paused["id"])["status"] == "PAUSED"
    assert server(conn, errored["id"])["status"] == "ERROR"


@pytest.mark.tooling_only  # the benchmark's boot, not the collection: `make localcloud-check`
def test_boot_together_makes_every_server_with_one_request(clean_cloud):
    """The benchmark's boot: Nova's multiple create, named as one by one would name them; a taken name falls back."""
    conn = clean_cloud.connect()
    access_log = clean_cloud.state_dir / "logs" / "nova-api-access.log"
    before = access_log.stat().st_size
    together = clean_cloud.boot("node-31", count=4, together=True, metadata={"novaha_fake:rebuild_delay": "3"})
    with open(access_log, "rb") as handle:
        handle.seek(before)
        posts = [line for line in handle.read().decode().splitlines() if '"POST /v2.1/servers ' in line]
    assert len(posts) == 1
    assert [s["name"] for s in together] == [f"node-31-vm-{index}" for index in range(1, 5)]
    assert {(s["host"], s["status"]) for s in together} == {("node-31", "ACTIVE")}
    assert server(conn, together[0]["id"])["metadata"] == {"novaha_fake:rebuild_delay": "3"}
    (stopped,) = clean_cloud.boot("node-31", status="SHUTOFF", together=True)
    assert (stopped["name"], server(conn, stopped["id"])["status"]) == ("node-31-vm-5", "SHUTOFF")


def test_a_failed_host_must_be_forced_down_before_nova_evacuates(clean_cloud):
    conn = clean_cloud.connect()
    first, second, third = clean_cloud.boot("node-28", count=3)
    clean_cloud.fail_host("node-28")

    refused = conn.compute.post(f"/servers/{first['id']}/action", json={"evacuate": {}}, microversion="2.29")
    assert refused.status_code == 400
    assert "still in use" in refused.json()["badRequest"]["message"]

    force_down(conn, "node-28")
    assert compute_service(conn, "node-28")["state"] == "down"

    for item, microversion in ((first, "2.29"), (second, "2.95")):
        response = conn.compute.post(f"/servers/{item['id']}/action", json={"evacuate": {}}, microversion=microversion)
        assert response.status_code == 200, response.text
    moved_229 = wait_settled(conn, first["id"], "node-28")
    moved_295 = wait_settled(conn, second["id"], "node-28")
    assert moved_229["status"] == "ACTIVE"
    assert moved_295["status"] == "SHUTOFF"  # Nova >= 2.95 leaves evacuated servers stopped
    assert server(conn, third["id"])["OS-EXT-SRV-ATTR:host"] == "node-28"

    migrations = conn.compute.get("/os-migrations?migration_type=evacuation", microversion="2.59").json()
    records = {m["instance_uuid"]: m for m in migrations["migrations"]}
    assert set(records) == {first["id"], second["id"]}
    assert {m["source_compute"] for m in records.values()} == {"node-28"}
    assert {m["status"] for m in records.values()} <= {"done", "completed"}


def test_revive_and_reset_return_the_failed_host_to_service(clean_cloud):
    conn = clean_cloud.connect()
    (victim,) = clean_cloud.boot("node-28")
    clean_cloud.fail_host("node-28", power="off")
    force_down(conn, "node-28")
    assert conn.compute.post(f"/servers/{victim['id']}/action", json={"evacuate": {}}, microversion="2.29").status_code == 200
    wait_settled(conn, victim["id"], "node-28")

    clean_cloud.revive_host("node-28")
    clean_cloud.cli("reset")
    service = compute_service(conn, "node-28")
    assert (service["state"], service["status"], service["forced_down"]) == ("up", "enabled", False)
    assert not list(conn.compute.servers(all_projects=True))
    (again,) = clean_cloud.boot("node-28")
    assert again["host"] == "node-28"


def test_redfish_bmc_powers_off_after_a_delay(clean_cloud):
    bmc = clean_cloud.bmc("node-28")
    status, system = redfish(bmc)
    assert status == 200 and system["PowerState"] == "On"
    assert "ForceOff" in system["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
    status = redfish(bmc, "POST", system["Actions"]["#ComputerSystem.Reset"]["target"], {"ResetType": "ForceOff"})[0]
    assert status in (200, 202, 204)
    readings = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        readings.append(redfish(bmc)[1]["PowerState"])
        if readings[-1] == "Off":
            break
        time.sleep(0.3)
    assert readings[-1] == "Off"
    assert readings[0] == "On", "the emulator changes power asynchronously, as BMCs do"


def test_redfish_bmc_rejects_a_wrong_password(cloud):
    with pytest.raises(urllib.error.HTTPError) as error:
        redfish(cloud.bmc("node-27"), password="not-the-password")
    assert error.value.code == 401


def test_ipmi_bmc_answers_ipmitool(clean_cloud):
    bmc = clean_cloud.bmc("node-31")
    assert "Chassis Power is on" in ipmitool(bmc, "chassis", "power", "status").stdout
    assert ipmitool(bmc, "chassis", "power", "off").returncode == 0
    assert "Chassis Power is off" in ipmitool(bmc, "chassis", "power", "status").stdout


def test_fail_host_sets_the_bmcs_as_asked(clean_cloud):
    clean_cloud.fail_host("node-31", power="off")
    assert redfish(clean_cloud.bmc("node-31"))[1]["PowerState"] == "Off"
    assert "Chassis Power is off" in ipmitool(clean_cloud.bmc("node-31"), "chassis", "power", "status").stdout
    clean_cloud.fail_host("node-27", power="unreachable")
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        redfish(clean_cloud.bmc("node-27"), timeout=2)
    clean_cloud.fail_host("node-28", power="stuck")
    bmc = clean_cloud.bmc("node-28")
    target = redfish(bmc)[1]["Actions"]["#ComputerSystem.Reset"]["target"]
    redfish(bmc, "POST", target, {"ResetType": "ForceOff"})
    time.sleep(4)  # longer than the emulator's power delay
    assert redfish(bmc)[1]["PowerState"] == "On"


@pytest.mark.parametrize(
    "args, message",
    [
        (["fail-host", "node-99"], "unknown compute host node-99"),
        (["revive-host", "node-99"], "unknown compute host node-99"),
        (["boot", "--host", "node-99"], "unknown compute host node-99"),
        (["boot", "--host", "node-28", "--metadata", "novalue"], "KEY=VALUE"),
        (["up"], "already up"),
        (["up", "--shared-store", "node-27,node-99"], "unknown compute host node-99"),
    ],
)
def test_bad_input_is_refused_clearly_and_changes_nothing(cloud, args, message):
    result = cloud.cli(*args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    healthy = cloud.cli("status", check=False)
    assert healthy.returncode == 0, healthy.stdout


def cloud_cli(state_dir, offset, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "localcloud"), NOVAHA_LOCALCLOUD_DIR=str(state_dir), NOVAHA_LOCALCLOUD_PORT_OFFSET=str(offset))
    return subprocess.run([str(CLOUD_PYTHON), "-m", "localcloud", *args], env=env, capture_output=True, text=True, check=False, timeout=300)


def processes_using(path):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if str(path).encode() in handle.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def listening(port):
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_refuses_ports_already_taken_and_starts_nothing(cloud, tmp_path):
    offset = int(os.environ.get("NOVAHA_LOCALCLOUD_PORT_OFFSET", "0"))
    result = cloud_cli(tmp_path / "second", offset, "up")
    assert result.returncode == 2
    assert "already in use" in result.stderr
    assert not processes_using(tmp_path / "second")


def test_up_refuses_ports_in_the_ephemeral_range_and_starts_nothing(tmp_path):
    # 21306 + 20000: MariaDB would sit where outgoing connections take their local ports.
    result = cloud_cli(tmp_path / "ephemeral", 20000, "up")
    assert result.returncode == 2
    assert "41306" in result.stderr and "ephemeral range" in result.stderr
    assert not processes_using(tmp_path / "ephemeral")


@pytest.mark.slow
@pytest.mark.tooling_only  # a whole second cloud: about 70 s of `make test` for the test bed's own hygiene
def test_a_second_cloud_comes_up_and_down_leaves_no_process_or_port(cloud):
    offset = int(os.environ.get("NOVAHA_LOCALCLOUD_PORT_OFFSET", "0")) + 1000
    state = Path(tempfile.mkdtemp(prefix="lc-", dir="/tmp"))  # short: MariaDB's socket path
    up = cloud_cli(state, offset, "up", "--computes", "solo-1")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        info = json.loads((state / "cloud.json").read_text())
        assert info["computes"] == ["solo-1"]
        assert processes_using(state)
    finally:
        down = cloud_cli(state, offset, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not processes_using(state)
    ports = [21306, 21672, 21673, 21369, 21500, 21778, 21774, 21292, 21776, 21696, 21800, 21620]
    assert not [p + offset for p in ports if listening(p + offset)]
