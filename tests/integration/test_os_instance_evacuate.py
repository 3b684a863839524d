"""os_instance_evacuate on the local cloud: real Nova, real Placement, the fake hypervisor.

Every test fails a host the way the runbook does (nova-compute killed, BMC off), forces its service down
through the compute API (what os_fence_check does after proving the host off) unless the test is about
an unfenced host, runs the module through ansible-playbook, and asserts where the server ended and in
which state, read back from Nova.
"""

import json
import sys

import pytest

from conftest import collections_path, run_module

sys.path.insert(0, str(collections_path()))
from ansible_collections.novaha.recovery.plugins.module_utils import (  # noqa: E402
    _decisions,
    _evacuation as engine,  # noqa: E402
    _nova,
)

MODULE = "novaha.recovery.os_instance_evacuate"
TIMEOUT = 240


def server(cloud, server_id):
    conn = cloud.connect()
    response = conn.compute.get(f"/servers/{server_id}", microversion="2.73")
    assert response.status_code == 200, response.text
    return response.json()["server"]


def evacuations(cloud, server_id):
    conn = cloud.connect()
    response = conn.compute.get(f"/os-migrations?migration_type=evacuation&instance_uuid={server_id}", microversion="2.59")
    assert response.status_code == 200, response.text
    return response.json()["migrations"]


def force_down(cloud, host, forced_down=True):
    """What os_fence_check does once the BMC reads Off: mark the nova-compute service forced down."""
    conn = cloud.connect()
    services = conn.compute.get(f"/os-services?binary=nova-compute&host={host}", microversion="2.53").json()
    (service,) = [s for s in services["services"] if s["host"] == host]
    response = conn.compute.put(f"/os-services/{service['id']}", json={"forced_down": forced_down}, microversion="2.53")
    assert response.status_code == 200, response.text


def fail_and_fence(cloud, host):
    cloud.fail_host(host, power="off")
    force_down(cloud, host)


def evacuate(cloud, args, check=False, cloud_name=None, verbosity=0, extra_env=None):
    params = dict(cloud=cloud_name or cloud.admin_cloud, timeout=TIMEOUT, poll_interval=2)
    params.update(args)
    return run_module(cloud, MODULE, params, check=check, verbosity=verbosity, extra_env=extra_env)


def assert_password_hidden(password, result, output):
    """Not in what the operator sees, and not even masked in the result: never put there at all."""
    assert password not in output
    assert password not in json.dumps(result)
    assert "********" not in json.dumps({k: v for k, v in result.items() if k != "invocation"})


def assert_recovered(cloud, result, output, server_id, source, status):
    assert not result.get("failed"), f"{result.get('msg')}\n{output}"
    assert result["changed"] is True
    record = result["evacuation"]
    assert record["outcome"] == "recovered", record
    now = server(cloud, server_id)
    host = now["OS-EXT-SRV-ATTR:host"]
    assert host != source and host in cloud.computes
    assert now["status"] == status
    assert not now["OS-EXT-STS:task_state"]
    assert record["after"]["host"] == host and record["after"]["status"] == status
    assert record["before"]["host"] == source
    (migration,) = evacuations(cloud, server_id)
    assert migration["status"] in ("done", "completed")
    assert migration["dest_compute"] == host and migration["source_compute"] == source
    assert record["migration"]["id"] == migration["id"]
    assert record["attempts"][0]["request_id"].startswith("req-")
    return now


@pytest.mark.parametrize(
    "status,microversion",
    [
        ("ACTIVE", None),  # the default, 2.94: Nova boots it again itself, one request
        ("ACTIVE", "2.95"),  # Nova stops it at the destination, the module starts it
        ("SHUTOFF", None),
        ("SHUTOFF", "2.95"),
        ("ERROR", None),  # Nova rebuilds an ERROR server and boots it: it ends ACTIVE
    ],
)
def test_server_ends_where_and_as_it_should(clean_cloud, status, microversion):
    cloud = clean_cloud
    source = cloud.computes[0]
    (vm,) = cloud.boot(source, 1, status=status)
    fail_and_fence(cloud, source)

    args = dict(server=vm["id"], expected_source_host=source)
    if microversion:
        args["microversion"] = microversion
    result, output = evacuate(cloud, args)

    final = "SHUTOFF" if status == "SHUTOFF" else "ACTIVE"
    now = assert_recovered(cloud, result, output, vm["id"], source, final)
    assert now["locked"] is False
    used = result["evacuation"]["microversion"]
    assert used == (microversion or "2.94")
    started = "start" in result["evacuation"]["power_actions"]
    assert started is (status == "ACTIVE" and used == "2.95")
    assert result["microversions"]["evacuate_stops_server"] is (used == "2.95")


def test_target_host_with_admin_password_at_vvvv(clean_cloud):
    cloud = clean_cloud
    source, _other, target = cloud.computes[:3]
    (vm,) = cloud.boot(source, 1)
    fail_and_fence(cloud, source)
    password = "Evac-pw-7f3c1a"

    result, output = evacuate(cloud, dict(server=vm["name"], target_host=target, admin_password=password), verbosity=4)

    now = assert_recovered(cloud, result, output, vm["id"], source, "ACTIVE")
    assert now["OS-EXT-SRV-ATTR:host"] == target
    assert result["evacuation"]["request"] == {"evacuate": {"host": target, "adminPass": "<hidden>"}}
    assert "ESTABLISH LOCAL CONNECTION FOR USER" in output  # -vvvv really was on: the whole result is printed
    assert '"admin_password": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"' in output
    assert_password_hidden(password, result, output)


def test_user_locked_server_stays_locked(clean_cloud):
    cloud = clean_cloud
    source = cloud.computes[0]
    (vm,) = cloud.boot(source, 1, locked=True)
    fail_and_fence(cloud, source)

    result, output = evacuate(cloud, dict(server=vm["id"]))

    now = assert_recovered(cloud, result, output, vm["id"], source, "ACTIVE")
    assert now["locked"] is True
    assert now["locked_reason"] == "locked by its owner"
    assert result["evacuation"]["lock"]["user_locked"] is True
    assert not any(r["action"] in ("lock", "unlock") for r in result["evacuation"]["request_ids"])


def test_our_lock_is_taken_during_the_move_and_removed(clean_cloud):
    cloud = clean_cloud
    source = cloud.computes[0]
    (vm,) = cloud.boot(source, 1)
    fail_and_fence(cloud, source)

    result, output = evacuate(cloud, dict(server=vm["id"]))

    now = assert_recovered(cloud, result, output, vm["id"], source, "ACTIVE")
    assert now["locked"] is False and not now.get("locked_reason")
    actions = [r["action"] for r in result["evacuation"]["request_ids"]]
    assert actions[0] == "lock" and actions[-1] == "unlock"


def test_paused_server_is_refused_and_nothing_changes(clean_cloud):
    cloud = clean_cloud
    source = cloud.computes[0]
    (vm,) = cloud.boot(source, 1, status="PAUSED")
    fail_and_fence(cloud, source)

    result, output = evacuate(cloud, dict(server=vm["id"]))

    assert result.get("failed"), output
    assert result["changed"] is False
    assert "PAUSED" in result["msg"] and vm["id"] in result["msg"]
    assert "reset_state" in result["msg"]
    assert result["evacuation"]["outcome"] == "refused"
    now = server(cloud, vm["id"])
    assert now["OS-EXT-SRV-ATTR:host"] == source and now["status"] == "PAUSED" and now["locked"] is False
    assert evacuations(cloud, vm["id"]) == []


def test_source_not_fenced_is_a_clear_error(clean_cloud):
    cloud = clean_cloud
    source = cloud.computes[0]
    (vm,) = cloud.boot(source, 1)  # the host is healthy: its nova-compute service is up

    result, output = evacuate(cloud, dict(server=vm["id"]))

    assert result.get("failed"), output
    assert result["changed"] is False
    assert f"host {source} is not fenced/forced down" in result["msg"]
    assert "compute service set --down" in result["next_command"]
    now = server(cloud, vm["id"])
    assert now["OS-EXT-SRV-ATTR:host"] == source and now["status"] == "ACTIVE" and now["locked"] is False
    assert evacuations(cloud, vm["id"]) == []


def test_novas_still_in_use_answer_becomes_not_fenced(clean_cloud):
    """The module refuses an unfenced host before asking Nova; when the host comes back between the plan
    and the request (a fence undone, a race), Nova's own 400 "still in use" is what the operator reads."""
    cloud = clean_cloud
    source = cloud.computes[0]
    (vm,) = cloud.boot(source, 1)
    force_down(cloud, source)  # nova-compute keeps running: the host is healthy
    conn = cloud.connect()
    evacuator = engine.Engine(_nova.SdkNova(conn))
    (planned,) = [evacuator.plan(vm["id"], expected_source_host=source)]
    assert planned.action == _decisions.ACTION_EVACUATE, planned.reason
    force_down(cloud, source, forced_down=False)

    evacuator.run([planned], timeout=60, poll_interval=2)

    record = planned.record()
    assert record["outcome"] == "failed" and record["kind"] == "not_fenced"
    assert record["reason"].startswith(f"host {source} is not fenced/forced down: Nova says")
    assert "still in use" in record["reason"] and record["attempts"][0]["request_id"] in record["reason"]
    assert len(record["attempts"]) == 1  # a refusal is not retried
    assert record["changed"] is False  # our lock was taken and removed again
    assert "compute service set --down" in record["next_command"]
    now = server(cloud, vm["id"])
    assert now["OS-EXT-SRV-ATTR:host"] == source and now["status"] == "ACTIVE" and now["locked"] is False
    assert evacuations(cloud, vm["id"]) == []


def test_rerun_after_success_changes_nothing(clean_cloud):
    cloud = clean_cloud
    source = cloud.computes[0]
    (vm,) = cloud.boot(source, 1)
    fail_and_fence(cloud, source)
    args = dict(server=vm["id"], expected_source_host=source)
    first, output = evacuate(cloud, args)
    assert_recovered(cloud, first, output, vm["id"], source, "ACTIVE")

    again, output = evacuate(cloud, args)
    assert not again.get("failed"), output
    assert again["changed"] is False
    assert "nothing to do" in again["msg"]
    assert len(evacuations(cloud, vm["id"])) == 1

    # Without expected_source_host: the server is on a healthy host that an earlier evacuation chose.
    again, output = evacuate(cloud, dict(server=vm["id"]))
    assert not again.get("failed"), output
    assert again["changed"] is False and "already evacuated" in again["msg"]
    assert len(evacuations(cloud, vm["id"])) == 1


def test_check_mode_plans_and_changes_nothing(clean_cloud):
    cloud = clean_cloud
    source = cloud.computes[0]
    (vm,) = cloud.boot(source, 1)
    fail_and_fence(cloud, source)

    result, output = evacuate(cloud, dict(server=vm["id"], admin_password="n0t-in-output"), check=True, verbosity=4)

    assert not result.get("failed"), output
    assert result["changed"] is True
    assert result["plan"]["action"] == "evacuate" and result["plan"]["microversion"] == "2.94"
    assert result["plan"]["request"] == {"evacuate": {"adminPass": "<hidden>"}}
    assert result["plan"]["expected_status"] == "ACTIVE"
    assert result["plan"]["lock"] is True
    assert any("root disk is lost" in w for w in result["plan"]["warnings"])
    assert_password_hidden("n0t-in-output", result, output)
    now = server(cloud, vm["id"])
    assert now["OS-EXT-SRV-ATTR:host"] == source and now["locked"] is False
    assert evacuations(cloud, vm["id"]) == []


def test_non_admin_gets_a_permission_error(clean_cloud):
    cloud = clean_cloud
    source = cloud.computes[0]
    (vm,) = cloud.boot(source, 1, project="member")
    fail_and_fence(cloud, source)

    result, output = evacuate(cloud, dict(server=vm["id"]), cloud_name=cloud.member_cloud)

    assert result.get("failed"), output
    assert result["changed"] is False
    assert "forbidden" in result["msg"] and "admin role" in result["msg"]
    assert server(cloud, vm["id"])["OS-EXT-SRV-ATTR:host"] == source
    assert evacuations(cloud, vm["id"]) == []


def test_unknown_server_is_a_clear_error(clean_cloud):
    cloud = clean_cloud

    for ref in ("no-such-server", "00000000-0000-4000-8000-000000000000"):
        result, output = evacuate(cloud, dict(server=ref))
        assert result.get("failed"), output
        assert result["changed"] is False
        assert f"server {ref} not found" in result["msg"]


# ---------------------------------------------------------------------------------------------------------
# A compute_api_version pinned in the operator's clouds.yaml (the local Nova offers the newest).
#
# The pin is for the operator's own clients: the module reports it (microversions.client_pin) and sends its own
# requests at the microversions the engine chose from what the cloud offers - the lock with our reason at 2.73,
# the evacuate at 2.94 without onSharedStorage and with the target host checked by the scheduler, the reads at
# 2.96. Proven twice per pin: by the module's result, and by the microversion header each request carried through
# the fault proxy. One server per pin, all booted and failed with their host once (seconds per pin).
# A cloud below 2.73 (no lock reason, so no lock is taken) cannot be made here - the local Nova is the newest:
# tests/unit/plugins/module_utils/test_microversions.py proves it on the fake Nova.

PINS = ["2.1", "2.13", "2.28", "2.72", "newest", None]


@pytest.fixture(scope="module")
def failed_host(cloud):
    """One server per pin on a failed, fenced host, the cloud reset first. Shared by the runs of the one test
    below (pytest runs them one after the other); each run evacuates its own server, in any order."""
    cloud.cli("reset")
    source, target = cloud.computes[0], cloud.computes[1]
    vms = cloud.boot(source, len(PINS))
    fail_and_fence(cloud, source)
    newest = cloud.connect().compute.get_endpoint_data().max_microversion
    return dict(cloud=cloud, source=source, target=target, newest="%d.%d" % tuple(newest)[:2], vms=dict(zip(PINS, vms)))


def pinned_clouds_yaml(cloud, pin):
    """The local clouds.yaml with compute_api_version pinned in the admin entry (None: as it is)."""
    if pin is None:
        return str(cloud.clouds_yaml)
    data = json.loads(cloud.clouds_yaml.read_text())
    data["clouds"][cloud.admin_cloud]["compute_api_version"] = pin
    path = cloud.state_dir / "tmp" / f"clouds-pin-{pin}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("pin", PINS, ids=lambda p: f"pin-{p or 'none'}")
def test_a_pinned_clouds_yaml_does_not_change_what_is_sent(failed_host, faults, pin):
    cloud, source, target = failed_host["cloud"], failed_host["source"], failed_host["target"]
    vm = failed_host["vms"][pin]
    pin = failed_host["newest"] if pin == "newest" else pin

    result, output = evacuate(
        cloud,
        dict(server=vm["id"], expected_source_host=source, target_host=target, poll_interval=1),
        extra_env=dict(OS_CLIENT_CONFIG_FILE=pinned_clouds_yaml(cloud, pin)),
    )

    assert not result.get("failed"), f"{result.get('msg')}\n{output}"
    mvs = result["microversions"]
    assert mvs["client_pin"] == pin and mvs["client_pin_ignored"] is (pin is not None)
    assert (mvs["evacuate"], mvs["lock"], mvs["read"]) == ("2.94", "2.73", "2.96")
    assert not mvs["sends_on_shared_storage"] and mvs["target_host_checked_by_scheduler"]
    record = result["evacuation"]
    assert record["outcome"] == "recovered", record
    assert record["request"] == {"evacuate": {"host": target}}
    assert [(r["action"], r["microversion"]) for r in record["request_ids"]] == [("lock", "2.73"), ("evacuate", "2.94"), ("unlock", "2.1")]
    # What went over the wire, as the fault proxy saw each request's microversion header: the actions at the
    # microversions chosen, every read at the one its kind needs; nothing at the pin unless the engine chose it.
    actions = faults.requests("nova", method="POST", path=f"/servers/{vm['id']}/action$")
    assert [(e["microversion"], e["status"]) for e in actions] == [("2.73", 202), ("2.94", 200), ("2.1", 202)]
    reads = set((e["path"].split("?")[0].replace(vm["id"], "ID"), e["microversion"]) for e in faults.requests("nova", method="GET") if e["microversion"])
    assert ("/v2.1/servers/ID", "2.96") in reads and ("/v2.1/servers/detail", "2.96") in reads
    assert reads <= {("/v2.1/servers/ID", "2.96"), ("/v2.1/servers/detail", "2.96"), ("/v2.1/os-migrations", "2.59"), ("/v2.1/os-services", "2.53")}, reads
    now = server(cloud, vm["id"])
    assert now["OS-EXT-SRV-ATTR:host"] == target and now["status"] == "ACTIVE" and now["locked"] is False
    assert len(evacuations(cloud, vm["id"])) == 1
