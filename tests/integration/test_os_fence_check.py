"""os_fence_check on the local cloud: real Nova, the Redfish (sushy-tools) and IPMI (pyghmi) BMC emulators.

Every verdict is checked against an independent reading: the BMC is asked again over its own protocol
(urllib for Redfish, ipmitool for IPMI) and Nova's service is read through openstacksdk.
"""

import base64
import json
import os
import ssl
import subprocess
import time
import urllib.request

import pytest
import yaml

from conftest import DEV_BIN, ROOT, collections_path, run_module

MODULE = "novaha.recovery.os_fence_check"
HOST = "node-28"
KINDS = ("redfish", "ipmi")


# --- independent observers ------------------------------------------------------------------------


def bmc_args(cloud, host, kind, **override):
    """The module's bmc option for one of the host's emulators, as an inventory would give it."""
    bmc = cloud.bmc(host)
    if kind == "redfish":
        args = dict(
            type="redfish",
            address=bmc["redfish"]["url"],
            system_id=bmc["redfish"]["system_id"],
            username=bmc["username"],
            password=bmc["password"],
            ca_path=bmc["ca_path"],
            timeout=5,
        )
    else:
        args = dict(
            type="ipmi",
            address=bmc["ipmi"]["address"],
            port=bmc["ipmi"]["port"],
            cipher_suite=bmc["ipmi"].get("cipher_suite", 3),
            username=bmc["username"],
            password=bmc["password"],
            timeout=5,
        )
    args.update(override)
    return args


def power_of(cloud, host, kind):
    """'On' / 'Off' as the BMC answers right now over its own protocol."""
    bmc = cloud.bmc(host)
    if kind == "redfish":
        url = "%s/redfish/v1/Systems/%s" % (bmc["redfish"]["url"], bmc["redfish"]["system_id"])
        request = urllib.request.Request(url)
        token = ("%s:%s" % (bmc["username"], bmc["password"])).encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
        context = ssl.create_default_context(cafile=bmc["ca_path"])
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return json.load(response)["PowerState"]
    env = dict(os.environ, IPMI_PASSWORD=bmc["password"])
    out = subprocess.run(
        [
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
            str(bmc["ipmi"].get("cipher_suite", 3)),
            "chassis",
            "power",
            "status",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    return "On" if "is on" in out else "Off"


def nova_service(cloud, host):
    """The nova-compute service of ``host`` as Nova reports it (microversion 2.53)."""
    conn = cloud.connect()
    response = conn.compute.get("/os-services?binary=nova-compute", microversion="2.53")
    response.raise_for_status()
    services = [s for s in response.json()["services"] if s["host"] == host]
    assert len(services) == 1, services
    return services[0]


def admin_credentials(cloud):
    clouds = yaml.safe_load(cloud.clouds_yaml.read_text())["clouds"]
    return clouds[cloud.admin_cloud]["auth"]


def fence(cloud, kind, check=False, verbosity=0, host=HOST, **args):
    module_args = dict(cloud=cloud.admin_cloud, host=host)
    module_args.update(args)
    if "bmc" not in module_args:
        module_args["bmc"] = bmc_args(cloud, host, kind)
    return run_module(cloud, MODULE, module_args, check=check, verbosity=verbosity)


# --- power ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_on_host_is_powered_off_and_proven_off(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    assert power_of(cloud, HOST, kind) == "On"

    result, output = fence(cloud, kind, fence=True, power_timeout=30)

    assert not result.get("failed"), output
    assert result["changed"] is True
    assert result["fenced"] is True
    evidence = result["evidence"]
    assert evidence["method"] == kind
    assert (evidence["power_state_before"], evidence["power_state"]) == ("on", "off")
    assert evidence["action"] in ("ComputerSystem.Reset ForceOff", "chassis power off")
    assert 0 <= evidence["fence_seconds"] <= 30
    assert power_of(cloud, HOST, kind) == "Off"

    again, output = fence(cloud, kind, fence=True, power_timeout=30)
    assert not again.get("failed"), output
    assert again["changed"] is False
    assert again["fenced"] is True
    assert again["evidence"]["action"] is None
    assert "nothing to do" in again["msg"]


@pytest.mark.parametrize("kind", KINDS)
def test_already_off_is_fenced_without_change(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="off")
    result, output = fence(cloud, kind, fence=True)
    assert not result.get("failed"), output
    assert (result["changed"], result["fenced"]) == (False, True)
    assert result["evidence"]["power_state_before"] == "off"
    assert result["evidence"]["action"] is None


@pytest.mark.parametrize("kind", KINDS)
def test_on_host_without_fence_fails_and_is_left_on(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    result, _output = fence(cloud, kind, force_down=True)
    assert result["failed"] is True
    assert result["fenced"] is False and result["changed"] is False
    assert HOST in result["msg"] and "On" in result["msg"]
    assert power_of(cloud, HOST, kind) == "On"
    assert nova_service(cloud, HOST)["forced_down"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_fail_on_unfenced_false_returns_the_verdict(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    result, output = fence(cloud, kind, force_down=True, fail_on_unfenced=False)
    assert not result.get("failed"), output
    assert result["fenced"] is False and result["changed"] is False
    assert nova_service(cloud, HOST)["forced_down"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_stuck_bmc_fails_within_the_timeout(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="stuck")
    started = time.monotonic()
    result, _output = fence(cloud, kind, fence=True, power_timeout=6, force_down=True)
    elapsed = time.monotonic() - started

    assert result["failed"] is True
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == "stayed on"
    msg = result["msg"]
    assert HOST in msg and "6 s" in msg
    assert ("Redfish BMC " + cloud.bmc(HOST)["redfish"]["url"] if kind == "redfish" else "IPMI BMC 127.0.0.1:%s" % cloud.bmc(HOST)["ipmi"]["port"]) in msg
    assert 6 <= elapsed <= 6 + 5 + 20, elapsed  # power_timeout + one BMC timeout + ansible's own start
    assert power_of(cloud, HOST, kind) == "On"
    assert nova_service(cloud, HOST)["forced_down"] is False, "never force down an unfenced host"


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_password_is_a_clear_authentication_error(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    wrong = "Wr0ngPassw0rd"
    args = bmc_args(cloud, HOST, kind, password=wrong)
    result, output = run_module(cloud, MODULE, dict(cloud=cloud.admin_cloud, host=HOST, bmc=args, fence=True))
    assert result["failed"] is True
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == "credentials rejected"
    assert "credentials rejected" in result["msg"] and HOST in result["msg"]
    assert wrong not in output
    assert power_of(cloud, HOST, kind) == "On"


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_bmc_fails_clearly_within_the_timeout(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="unreachable")
    started = time.monotonic()
    result, _output = fence(cloud, kind, fence=True, bmc=bmc_args(cloud, HOST, kind, timeout=3))
    elapsed = time.monotonic() - started
    assert result["failed"] is True
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] in ("unreachable", "timeout")
    assert HOST in result["msg"] and "3 s" in result["msg"]
    assert elapsed <= 3 + 20, elapsed


def test_unreachable_bmc_with_attestation_is_fenced_by_the_attestation(clean_cloud):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="unreachable")
    result, output = fence(cloud, "redfish", bmc=bmc_args(cloud, HOST, "redfish", timeout=3), attest_powered_off=True)
    assert not result.get("failed"), output
    assert result["fenced"] is True
    assert result["evidence"]["method"] == "attestation"
    assert any("attestation" in w for w in result.get("warnings", []))


def test_attestation_does_not_overrule_a_bmc_that_reads_on(clean_cloud):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    result, _output = fence(cloud, "ipmi", attest_powered_off=True, force_down=True)
    assert result["failed"] is True and result["fenced"] is False
    assert "attested" in result["msg"]
    assert nova_service(cloud, HOST)["forced_down"] is False


def test_no_bmc_needs_an_attestation(clean_cloud):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="off")
    result, _output = run_module(cloud, MODULE, dict(cloud=cloud.admin_cloud, host=HOST, bmc=dict(type="none")))
    assert result["failed"] is True and result["fenced"] is False
    assert "no power reading and no attestation" in result["msg"]

    result, output = run_module(cloud, MODULE, dict(cloud=cloud.admin_cloud, host=HOST, attest_powered_off=True, force_down=True))
    assert not result.get("failed"), output
    assert result["fenced"] is True and result["changed"] is True
    assert result["evidence"]["method"] == "attestation"
    assert nova_service(cloud, HOST)["forced_down"] is True


# --- check mode ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_check_mode_reads_everything_and_changes_nothing(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    before = nova_service(cloud, HOST)

    result, output = fence(cloud, kind, check=True, fence=True, force_down=True, disable=True, disabled_reason="check mode test")

    assert not result.get("failed"), output
    assert result["changed"] is True
    assert result["fenced"] is False
    assert len(result["plan"]) == 3, result["plan"]
    assert result["plan"][0].startswith("power off " + HOST)
    assert result["service"]["after"]["forced_down"] is True
    assert result["service"]["after"]["status"] == "disabled"
    assert result["evidence"]["power_state"] == "on"
    # nothing happened
    time.sleep(4)  # longer than the emulators' power delay: a sent power-off would show by now
    assert power_of(cloud, HOST, kind) == "On"
    after = nova_service(cloud, HOST)
    assert (after["forced_down"], after["status"], after["disabled_reason"]) == (before["forced_down"], before["status"], before["disabled_reason"])


def test_check_mode_on_a_fenced_host_with_nothing_to_do(clean_cloud):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="off")
    result, output = fence(cloud, "redfish", check=True, fence=True)
    assert not result.get("failed"), output
    assert (result["changed"], result["fenced"], result["plan"]) == (False, True, [])


# --- Nova service -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_force_down_and_disable_after_fencing(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    result, output = fence(cloud, kind, fence=True, power_timeout=30, force_down=True, disable=True, disabled_reason="node-28 lost power, OPS-1234")
    assert not result.get("failed"), output
    assert result["changed"] is True and result["fenced"] is True

    service = nova_service(cloud, HOST)
    assert service["forced_down"] is True
    assert service["state"] == "down"
    assert service["status"] == "disabled"
    assert service["disabled_reason"] == "node-28 lost power, OPS-1234"
    assert result["service"]["before"]["forced_down"] is False
    assert result["service"]["after"]["forced_down"] is True
    assert result["service"]["after"]["id"] == service["id"]

    again, output = fence(cloud, kind, fence=True, force_down=True, disable=True, disabled_reason="node-28 lost power, OPS-1234")
    assert not again.get("failed"), output
    assert again["changed"] is False
    assert again["plan"] == []


def test_stale_heartbeat_is_a_warning_not_an_error(clean_cloud):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="off")  # nova-compute killed a moment ago: Nova may still say "up"
    result, output = fence(cloud, "redfish")
    assert not result.get("failed"), output
    assert result["fenced"] is True
    stale = [w for w in result.get("warnings", []) if "stale heartbeat" in w]
    if result["service"]["before"]["state"] == "up":
        assert stale and HOST in stale[0]
    else:
        assert not stale


def test_unknown_host_lists_close_matches(clean_cloud):
    cloud = clean_cloud
    result, _output = fence(cloud, "redfish", host="node-2", bmc=bmc_args(cloud, HOST, "redfish"))
    assert result["failed"] is True
    assert "no nova-compute service on host node-2" in result["msg"]
    assert "node-27" in result["msg"] and "node-28" in result["msg"]


def test_member_cloud_is_told_it_needs_admin(clean_cloud):
    cloud = clean_cloud
    args = dict(cloud=cloud.member_cloud, host=HOST, bmc=dict(type="none"), attest_powered_off=True)
    result, _output = run_module(cloud, MODULE, args)
    assert result["failed"] is True
    assert result["http_status"] == 403
    assert "admin role" in result["msg"]
    assert result["request_id"] and result["request_id"] in result["msg"]


def test_wrong_cloud_password_is_named_as_such(clean_cloud):
    cloud = clean_cloud
    auth = dict(admin_credentials(cloud), password="not-the-password")
    result, _output = run_module(cloud, MODULE, dict(auth=auth, host=HOST, bmc=dict(type="none")))
    assert result["failed"] is True
    assert "rejected the credentials" in result["msg"]
    assert result["http_status"] == 401


# --- secrets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_vvvv_output_shows_neither_bmc_nor_cloud_password(clean_cloud, kind):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    auth = admin_credentials(cloud)
    bmc_password = cloud.bmc(HOST)["password"]
    # The cloud password travels in the task's arguments here, not in clouds.yaml.
    args = dict(auth=auth, host=HOST, bmc=bmc_args(cloud, HOST, kind), fence=True, force_down=True)
    result, output = run_module(cloud, MODULE, args, verbosity=4)
    assert not result.get("failed"), output
    assert result["fenced"] is True
    assert "<localhost> EXEC" in output or "ESTABLISH LOCAL CONNECTION" in output  # really -vvvv
    assert auth["password"] not in output
    assert bmc_password not in output
    assert auth["password"] not in json.dumps(result)
    assert bmc_password not in json.dumps(result)

    # and a failing run, whose error paths print more
    args["bmc"] = bmc_args(cloud, HOST, kind, address="127.0.0.2" if kind == "ipmi" else "https://127.0.0.1:1", timeout=2)
    result, output = run_module(cloud, MODULE, args, verbosity=4)
    assert result["failed"] is True
    assert auth["password"] not in output
    assert bmc_password not in output


# --- documentation ------------------------------------------------------------------------------------


def test_ansible_doc_renders_and_examples_parse(tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path()), ANSIBLE_NOCOLOR="1")
    doc = subprocess.run([str(DEV_BIN / "ansible-doc"), MODULE], env=env, capture_output=True, text=True, check=False)
    assert doc.returncode == 0, doc.stderr
    for word in (
        "fence",
        "power_timeout",
        "force_down",
        "attest_powered_off",
        "cipher_suite",
        "EXAMPLES",
        "RETURN VALUES",
        "validate_certs",
        "novaha.recovery.os_fence_check",
    ):
        assert word in doc.stdout, word
    assert "ERROR" not in doc.stderr

    listing = subprocess.run([str(DEV_BIN / "ansible-doc"), "--json", MODULE], env=env, capture_output=True, text=True, check=True)
    examples = json.loads(listing.stdout)[MODULE]["examples"]
    playbook = tmp_path / "examples.yml"
    playbook.write_text(yaml.safe_dump([{"name": "EXAMPLES", "hosts": "localhost", "gather_facts": False, "tasks": yaml.safe_load(examples)}]))
    check = subprocess.run(
        [str(DEV_BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(playbook)], env=env, capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert check.returncode == 0, check.stdout + check.stderr
