"""Fence levels, bad BMC input and the power read again during an evacuation, on the local cloud: real Nova,
the Redfish (sushy-tools) and IPMI (pyghmi) emulators, the fault proxy in front of the Redfish BMCs.

Each bad input is checked against what an operator cares about: the task fails naming the option and the
cause, the BMC saw no power action (the fault proxy's record of requests), the host's power and its Nova
service are as before.
"""

import threading
import time
from pathlib import Path

import pytest

from conftest import run_module
from test_os_fence_check import bmc_args, nova_service, power_of

FENCE = "novaha.recovery.os_fence_check"
EVACUATE = "novaha.recovery.os_host_evacuate"
HOST = "node-28"
AGENT = Path(__file__).resolve().parent / "files" / "fence_localcloud_redfish"


def fence(cloud, **args):
    params = dict(cloud=cloud.admin_cloud, host=HOST, fence=True, power_timeout=20, force_down=True)
    params.update(args)
    return run_module(cloud, FENCE, params)


def pdu_level(cloud, host=HOST, **override):
    """A fence_agent level that reaches the host's Redfish emulator directly (as a PDU would: another way in)."""
    bmc = cloud.bmc(host)
    direct = bmc["redfish"]["direct_url"].split("://", 1)[1]
    address, port = direct.rsplit(":", 1)
    level = dict(
        type="fence_agent",
        agent=str(AGENT),
        address=address,
        port=int(port),
        username=bmc["username"],
        password=bmc["password"],
        options=dict(plug=bmc["redfish"]["system_path"], ca=bmc["ca_path"]),
        timeout=10,
    )
    level.update(override)
    return level


def evacuations(cloud):
    response = cloud.connect().compute.get("/os-migrations?migration_type=evacuation&source_compute=%s" % HOST, microversion="2.59")
    assert response.status_code == 200, response.text
    return response.json()["migrations"]


def bmc_posts(faults, host=HOST):
    return [r for r in faults.requests("bmc-%s" % host, method="POST") if r["forwarded"]]


# ---------------------------------------------------------------------------------------------------------
# Bad BMC input: a clear error naming the option, nothing asked of the BMC, nothing changed


def redfish_url(cloud):
    return cloud.bmc(HOST)["redfish"]["url"]


BAD_INPUTS = [
    # (id, bmc override or callable(cloud) -> override, option named, words of the cause)
    ("empty-address", dict(address=""), "bmc.address", "is empty"),
    ("ipv6-unbracketed-in-url", dict(address="https://fd00::28:8443"), "bmc.address", "IPv6 address without brackets"),
    ("ipv6-bad-brackets", dict(address="[fd00::zz]"), "bmc.address", "not an IPv6 address"),
    ("port-out-of-range", dict(port=70000), "bmc.port", "between 1 and 65535, not 70000"),
    ("port-in-url-not-a-number", lambda c: dict(address=redfish_url(c) + "x"), "bmc.address", "port that is not a number"),
    ("url-with-path", lambda c: dict(address=redfish_url(c) + "/redfish/v1/Systems"), "bmc.address", "without a path"),
    ("url-with-credentials", lambda c: dict(address=redfish_url(c).replace("https://", "https://root:Leak3d@")), "bmc.address", "must not carry credentials"),
    ("unknown-type", dict(type="pdu"), "found in bmc", "value of type must be one of"),
    ("ca-path-missing", dict(ca_path="/nonexistent/bmc-ca.pem"), "bmc.ca_path", "not a readable file"),
]


@pytest.mark.parametrize("override,option,words", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_redfish_input_is_named_and_changes_nothing(clean_cloud, faults, override, option, words):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    override = override(cloud) if callable(override) else override
    result, output = fence(cloud, bmc=bmc_args(cloud, HOST, "redfish", **override))
    assert result["failed"] is True, output
    assert option in result["msg"] and words in result["msg"], result["msg"]
    assert "MODULE FAILURE" not in output and "censored" not in result["msg"]
    assert "Leak3d" not in output
    assert faults.requests("bmc-%s" % HOST) == [], "the BMC was not even asked"
    assert power_of(cloud, HOST, "redfish") == "On"
    assert nova_service(cloud, HOST)["forced_down"] is False


@pytest.mark.parametrize(
    "override,option,words",
    [
        (dict(address="https://127.0.0.1"), "bmc.address", "not a URL"),
        (dict(cipher_suite=99), "bmc.cipher_suite", "0 to 17"),
    ],
    ids=["ipmi-url", "ipmi-cipher-suite"],
)
def test_bad_ipmi_input_is_named_and_changes_nothing(clean_cloud, override, option, words):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    result, output = fence(cloud, bmc=bmc_args(cloud, HOST, "ipmi", **override))
    assert result["failed"] is True, output
    assert option in result["msg"] and words in result["msg"], result["msg"]
    assert power_of(cloud, HOST, "ipmi") == "On"


def test_ipv6_literal_addresses_are_accepted_and_reach_no_one_here(clean_cloud):
    """A bracketed or bare IPv6 address is a valid address: the module tries it (nothing listens on the
    local cloud's IPv6 test prefix) and says the BMC is unreachable, naming it; no traceback."""
    cloud = clean_cloud
    for address in ("fd00::28", "[fd00::28]"):
        result, output = fence(cloud, bmc=bmc_args(cloud, HOST, "redfish", address=address, timeout=2))
        assert result["failed"] is True, output
        assert result["evidence"]["error_cause"] in ("unreachable", "timeout"), result["msg"]
        assert "https://[fd00::28]" in result["msg"]


@pytest.mark.parametrize(
    "body,words",
    [
        (["internal", "error"], 'HTTP 500: ["internal", "error"]'),
        ("BMC firmware update in progress", "HTTP 500: BMC firmware update in progress"),
        ({"error": "busy"}, "HTTP 500: busy"),
    ],
    ids=["json-list", "text", "error-as-string"],
)
def test_redfish_error_bodies_that_are_not_objects(clean_cloud, faults, body, words):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    faults.error("bmc-%s" % HOST, status=500, body=body)
    result, output = fence(cloud, bmc=bmc_args(cloud, HOST, "redfish"))
    assert result["failed"] is True, output
    assert result["evidence"]["error_cause"] == "unexpected answer"
    assert words in result["msg"] and HOST in result["msg"]
    assert bmc_posts(faults) == []
    faults.clear()
    assert power_of(cloud, HOST, "redfish") == "On"
    assert nova_service(cloud, HOST)["forced_down"] is False


def test_the_bmc_of_another_host_is_refused(clean_cloud):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="off")
    cloud.fail_host("node-27", power="on")  # not failed really: only its BMC is asked, and must stay On
    result, output = fence(cloud, bmc=bmc_args(cloud, "node-27", "redfish"))
    assert result["failed"] is True, output
    assert "named node-27, another compute host" in result["msg"] and "BMC of another host" in result["msg"]
    assert result["evidence"]["error_cause"] == "configuration"
    assert power_of(cloud, "node-27", "redfish") == "On"
    assert nova_service(cloud, HOST)["forced_down"] is False


# ---------------------------------------------------------------------------------------------------------
# Fence levels


def test_redfish_failing_the_pdu_level_fences_and_the_report_says_so(clean_cloud, faults):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    faults.error("bmc-%s" % HOST, status=503)
    levels = [bmc_args(cloud, HOST, "redfish"), pdu_level(cloud)]
    result, output = fence(cloud, fence_levels=levels)
    assert not result.get("failed"), output
    assert result["fenced"] is True and result["changed"] is True
    evidence = result["evidence"]
    assert (evidence["level"], evidence["method"]) == (2, "fence_agent")
    assert [lv["result"] for lv in evidence["levels"]] == ["failed", "proved off"]
    assert "HTTP 503" in evidence["levels"][0]["error"]
    assert any("level 1" in w and "level 2 proved it off" in w for w in result.get("warnings", []))
    faults.clear()
    assert power_of(cloud, HOST, "redfish") == "Off"
    assert nova_service(cloud, HOST)["forced_down"] is True
    assert cloud.bmc(HOST)["password"] not in output


def test_a_level_that_reads_on_without_fence_is_not_contradicted_by_the_next(clean_cloud):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    levels = [bmc_args(cloud, HOST, "ipmi"), pdu_level(cloud, agent="/bin/false")]
    result, output = fence(cloud, fence=False, fence_levels=levels)
    assert result["failed"] is True, output
    assert [lv["result"] for lv in result["evidence"]["levels"]] == ["reads on"]
    assert "On" in result["msg"]


def test_all_levels_failing_names_each(clean_cloud):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="unreachable")
    levels = [bmc_args(cloud, HOST, "redfish", timeout=2), bmc_args(cloud, HOST, "ipmi", timeout=2), pdu_level(cloud, timeout=3)]
    result, output = fence(cloud, fence_levels=levels)
    assert result["failed"] is True, output
    assert "any of its 3 fence levels" in result["msg"]
    for number in (1, 2, 3):
        assert "level %d (" % number in result["msg"]
    assert [lv["result"] for lv in result["evidence"]["levels"]] == ["failed"] * 3
    assert nova_service(cloud, HOST)["forced_down"] is False


def test_bmc_and_fence_levels_are_exclusive(clean_cloud):
    cloud = clean_cloud
    result, _output = fence(cloud, bmc=bmc_args(cloud, HOST, "redfish"), fence_levels=[pdu_level(cloud)])
    assert result["failed"] is True
    assert "mutually exclusive: bmc|fence_levels" in result["msg"]


# ---------------------------------------------------------------------------------------------------------
# The failed host's power read again before each batch of evacuations


def test_host_powered_on_mid_run_stops_new_evacuations(clean_cloud, faults):
    cloud = clean_cloud
    slow = {"novaha_fake:rebuild_delay": "8"}
    booted = cloud.boot(HOST, count=4, name="pw", metadata=slow)
    cloud.fail_host(HOST, power="off")
    fenced, output = fence(cloud, bmc=bmc_args(cloud, HOST, "redfish"))
    assert fenced["fenced"] is True, output

    box = {}
    args = dict(cloud=cloud.admin_cloud, host=HOST, max_parallel=1, poll_interval=1, timeout=300, fail_on_partial=False, bmc=bmc_args(cloud, HOST, "redfish"))
    runner = threading.Thread(target=lambda: box.update(zip(("result", "output"), run_module(cloud, EVACUATE, args))))
    started = time.monotonic()
    runner.start()
    # The first evacuation is accepted (its migration record exists; its rebuild takes 8 s): the host comes back on.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        moving = evacuations(cloud)
        if moving:
            break
        time.sleep(0.3)
    assert moving, "no evacuation started"
    cloud.fail_host(HOST, power="on")
    powered_on_at = time.monotonic() - started
    runner.join(300)
    result, output = box["result"], box["output"]
    elapsed = time.monotonic() - started

    summary = result["summary"]
    assert summary["host_powered_on"] and "On" in summary["host_powered_on"], output
    assert "STOPPED" in result["msg"] and "reads" in result["msg"]
    pending = [s for s in result["servers"] if s["outcome"] == "pending"]
    assert len(pending) == 3 and all("reads power On again" in s["reason"] for s in pending)
    assert summary["recovered"] == 1
    left = [s for s in cloud.connect().compute.servers(all_projects=True) if s.id in {b["id"] for b in booted} and s.compute_host == HOST]
    assert len(left) == 3, "no new evacuation after the host read On"
    assert len(evacuations(cloud)) == 1
    readings = faults.requests("bmc-%s" % HOST, method="GET")
    print("powered on at %.1fs, run ended at %.1fs, %d BMC GETs (fence + power checks)" % (powered_on_at, elapsed, len(readings)))
    assert elapsed - powered_on_at < 8 + 10, "stopped within one rebuild and one poll"


def test_bad_bmc_setting_fails_the_evacuation_before_anything_changes(clean_cloud):
    cloud = clean_cloud
    booted = cloud.boot(HOST, count=1, name="bad")
    cloud.fail_host(HOST, power="off")
    result, output = run_module(cloud, EVACUATE, dict(cloud=cloud.admin_cloud, host=HOST, bmc=bmc_args(cloud, HOST, "redfish", port=0)))
    assert result["failed"] is True, output
    assert "bmc.port must be between 1 and 65535, not 0" in result["msg"]
    server = cloud.connect().compute.get_server(booted[0]["id"])
    assert server.compute_host == HOST
