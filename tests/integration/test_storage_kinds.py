"""Issue 15's story on the local cloud's real Cinder and Glance: one failed host carries a server booted from a
volume with a data volume, a server on the shared instance store, a local-ephemeral server and a local-ephemeral
one with a data volume. os_host_evacuate tells each kind in check mode and warns for the local disks only; after
the recovery each server is where expected, its volumes attached with their Cinder attachments on the new host
and none left on the failed one, its port bound to the new host, and the shared server's disk data kept while the
local ones are rebuilt from the image. The same at microversion 2.13, where onSharedStorage is sent per server;
local_ephemeral=skip leaves the local ones alone; a volume in error before the run refuses its server only."""

import pytest

from conftest import run_module
from localcloud import volumes  # tests/localcloud is on sys.path (conftest)
from recovery_helpers import set_service

FAILED = "node-28"  # a host of the shared store (node-27 and node-28 share, node-31 is local)
TARGET = "node-27"  # shares the store with FAILED: the shared server finds its disk there
LOCAL = {"novaha_fake:instance_store": "local"}  # the fake hypervisor keeps this server's disk off the share
DECLARED = {"names": ["shared-*"]}  # what the operator declares on shared storage
LOSS = "2 of 4 servers to evacuate lose data on local disks"


def boot_four(cloud):
    """The four servers on FAILED, each with a port; returns {name: record} with the disk token of each."""
    servers = {}
    for name, opts in (
        ("bfv", dict(boot_from_volume=True, data_volume=True, metadata=LOCAL)),
        ("shared", dict()),
        ("local", dict(metadata=LOCAL)),
        ("local-data", dict(data_volume=True, metadata=LOCAL)),
    ):
        (record,) = cloud.boot(FAILED, name=name, port=True, **opts)
        record["token"] = cloud.disk_token(FAILED, record["id"], private=name != "shared")
        assert record["token"], name
        servers[name] = record
    cloud.fail_host(FAILED, power="off")
    set_service(cloud, {"forced_down": True}, FAILED)
    return servers


def evacuate(cloud, check=False, **args):
    base = dict(cloud=cloud.admin_cloud, host=FAILED, target_hosts=[TARGET], shared_storage=DECLARED, poll_interval=1, timeout=300)
    base.update(args)
    return run_module(cloud, "novaha.recovery.os_host_evacuate", base, check=check)


def by_name(result, key="servers"):
    return dict((entry["name"].rsplit("-", 1)[0], entry) for entry in result[key])  # "local-data-1": local-data


def port_host(conn, server_id):
    (port,) = conn.network.get(f"/ports?device_id={server_id}").json()["ports"]
    return port["binding:host_id"]


def assert_recovered_with_storage(cloud, name, server, result_entry):
    """Where Nova, Cinder and Neutron say the server is, and that the module's record saw the same."""
    conn = cloud.connect(internal=True)
    body = conn.compute.get(f"/servers/{server['id']}", microversion="2.96").json()["server"]
    assert (body["OS-EXT-SRV-ATTR:host"], body["status"]) == (TARGET, "ACTIVE"), name
    assert sorted(v["id"] for v in body["os-extended-volumes:volumes_attached"]) == sorted(server["volumes"])
    for volume_id in server["volumes"]:
        assert [(a["status"], a["host"]) for a in volumes.attachments(conn, volume_id)] == [("attached", TARGET)]
    assert port_host(conn, server["id"]) == TARGET
    after = result_entry["storage"]["after"]
    assert {a["host"] for v in after["volumes"] for a in v["attachments"]} <= {TARGET}
    assert [p["host"] for p in after["ports"]] == [TARGET]
    assert result_entry["outcome"] == "recovered", result_entry["reason"]


def token_after(cloud, name, server):
    return cloud.disk_token(TARGET, server["id"], private=name != "shared")


@pytest.fixture
def four(clean_cloud):
    return boot_four(clean_cloud)


def test_each_kind_planned_then_recovered_with_its_volumes_and_ports_on_the_new_host(clean_cloud, four):
    cloud = clean_cloud
    plan, output = evacuate(cloud, check=True)
    kinds = dict((name, entry["storage"]["kind"]) for name, entry in by_name(plan, "plan").items())
    assert kinds == {"bfv": "boot_from_volume", "shared": "shared_instance_store", "local": "local_ephemeral", "local-data": "local_ephemeral"}, kinds
    planned = by_name(plan, "plan")
    assert planned["bfv"]["storage"]["data_volumes"] and planned["bfv"]["storage"]["root_volume"]
    assert len(planned["local-data"]["storage"]["data_volumes"]) == 1
    # The one data-loss warning, before anything changed, names the local ones only.
    loss = [w for w in plan["warnings"] if LOSS in w]
    assert len(loss) == 1 and "local-1 (" in loss[0] and "local-data-1 (" in loss[0]
    assert "bfv-1 (" not in loss[0] and "shared-1 (" not in loss[0]
    assert plan["storage"]["data_loss"] == 2 and LOSS in output
    conn = cloud.connect(internal=True)
    for name, server in four.items():  # check mode: nothing moved
        body = conn.compute.get(f"/servers/{server['id']}", microversion="2.96").json()["server"]
        assert body["OS-EXT-SRV-ATTR:host"] == FAILED and not body["locked"], name

    # local_ephemeral=skip: the two local ones are left alone, the others recovered.
    first, output = evacuate(cloud, local_ephemeral="skip")
    assert first["summary"]["recovered"] == 2 and first["summary"]["skipped"] == 2, first["msg"]
    skipped = dict((s["name"].rsplit("-", 1)[0], s) for s in first["skipped"])
    assert set(skipped) == {"local", "local-data"}
    assert skipped["local"]["kind"] == "local_ephemeral_skipped"
    assert skipped["local"]["next_command"].startswith("openstack server evacuate %s" % four["local"]["id"])
    assert LOSS not in output

    # Then the same task with the local ones evacuated.
    second, _output = evacuate(cloud)
    assert second["summary"]["recovered"] == 2, second["msg"]
    entries = dict(by_name(first))
    entries.update(by_name(second))
    for name, server in four.items():
        assert_recovered_with_storage(cloud, name, server, entries[name])
    # The shared server's disk was found and kept; the local ones were rebuilt from the image.
    assert token_after(cloud, "shared", four["shared"]) == four["shared"]["token"]
    for name in ("local", "local-data"):
        assert token_after(cloud, name, four[name]) not in (None, four[name]["token"]), name


def test_at_microversion_2_13_on_shared_storage_is_sent_per_server_and_an_unusable_volume_refuses_its_server(clean_cloud, four):
    cloud = clean_cloud
    conn = cloud.connect(internal=True)
    (data_volume,) = four["local-data"]["volumes"]
    response = conn.block_storage.post(f"/volumes/{data_volume}/action", json={"os-reset_status": {"status": "error"}})
    assert response.status_code == 202, response.text
    try:
        result, _output = evacuate(cloud, microversion="2.13", fail_on_partial=False)
    finally:  # attached and in error, the volume would outlive the cloud's reset
        conn.block_storage.post(f"/volumes/{data_volume}/action", json={"os-reset_status": {"status": "in-use"}})
    entries = by_name(result)
    sent = dict((name, entry["request"]["evacuate"].get("onSharedStorage")) for name, entry in entries.items() if entry["request"])
    assert sent == {"bfv": False, "shared": True, "local": False}, sent
    refused = entries["local-data"]
    assert refused["outcome"] == "refused" and refused["kind"] == "volume_unusable"
    assert "volume %s" % data_volume in refused["reason"] and " is error" in refused["reason"]
    assert refused["next_command"].startswith("openstack volume show %s" % data_volume)
    assert result["summary"]["recovered"] == 3, result["msg"]
    for name in ("bfv", "shared", "local"):
        assert_recovered_with_storage(cloud, name, four[name], entries[name])
    assert token_after(cloud, "shared", four["shared"]) == four["shared"]["token"]
    assert token_after(cloud, "local", four["local"]) != four["local"]["token"]
    body = conn.compute.get(f"/servers/{four['local-data']['id']}", microversion="2.96").json()["server"]
    assert body["OS-EXT-SRV-ATTR:host"] == FAILED  # not touched


def test_cinder_failing_novas_attachment_updates_is_ridden_out_by_nova_or_reported_with_cinders_words(clean_cloud, faults):
    """Nova sends an attachment update again on a 500 or 504 (nova/volume/cinder.py, up to 5 tries): a few
    failures are ridden out; Cinder failing every time fails the server, and the record says what Cinder said."""
    cloud = clean_cloud
    (flaky,) = cloud.boot(FAILED, name="flaky", boot_from_volume=True, data_volume=True, port=True, metadata=LOCAL)
    (broken,) = cloud.boot(FAILED, name="broken", boot_from_volume=True, metadata=LOCAL)
    cloud.fail_host(FAILED, power="off")
    set_service(cloud, {"forced_down": True}, FAILED)
    updates = r"/attachments/[0-9a-f-]+$"

    faults.error("cinder-for-nova", status=500, method="PUT", path=updates, count=3)
    result, _output = evacuate(cloud, include={"names": ["flaky-*"]})
    assert result["summary"]["recovered"] == 1, result["msg"]
    assert_recovered_with_storage(cloud, "flaky", flaky, by_name(result)["flaky"])
    failed_puts = [e for e in faults.log(service="cinder-for-nova") if e["method"] == "PUT" and e.get("fault")]
    assert len(failed_puts) == 3, failed_puts

    faults.clear()
    faults.error("cinder-for-nova", status=500, method="PUT", path=updates)
    result, _output = evacuate(cloud, include={"names": ["broken-*"]}, fail_on_partial=False, retries=0)
    entry = by_name(result)["broken"]
    assert entry["outcome"] == "failed" and entry["kind"] == "evacuation_failed", entry
    # Cinder's own words and status, as Nova recorded them in the server's fault (Nova keeps no request id of
    # Cinder's: InvalidBDM(str(ex)) in _prep_block_device); the command shows Nova's event with its traceback.
    assert "Internal Server Error (injected by the local cloud's fault proxy) (HTTP 500)" in entry["reason"]
    assert entry["next_command"].startswith("openstack server event show %s req-" % broken["id"])
