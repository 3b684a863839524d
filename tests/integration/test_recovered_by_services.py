"""Issue 17 item 5 on the local cloud: servers that a service recovers by itself. An Octavia amphora on the failed
host (booted, then named as Octavia names it: amphora- and a UUID) is left alone by os_host_evacuate's default and
reported skipped with the service, the reason and the command that evacuates it anyway, while the server beside it
is evacuated; the same task with recovered_by_services=[] evacuates the amphora. The report's per-project summary
is asserted on the role's run in test_recover_playbook.py (partial failure)."""

import uuid

from conftest import run_module
from recovery_helpers import servers, set_service

MODULE = "novaha.recovery.os_host_evacuate"
FAILED = "node-28"


def name_as_octavia_does(cloud, server_id):
    name = f"amphora-{uuid.uuid4()}"
    response = cloud.connect().compute.put(f"/servers/{server_id}", json={"server": {"name": name}})
    assert response.status_code == 200, response.text
    return name


def test_an_amphora_is_left_to_octavia_and_evacuated_with_the_option_empty(clean_cloud):
    cloud = clean_cloud
    (web,) = cloud.boot(FAILED, name="web")
    (amphora,) = cloud.boot(FAILED, name="lb")
    amphora["name"] = name_as_octavia_does(cloud, amphora["id"])
    cloud.fail_host(FAILED, power="off")
    set_service(cloud, {"forced_down": True}, FAILED)
    args = dict(cloud=cloud.admin_cloud, host=FAILED, poll_interval=1, timeout=120)

    first, _output = run_module(cloud, MODULE, args)
    assert not first.get("failed") and first["summary"]["recovered"] == 1, first["msg"]
    assert [s["id"] for s in first["servers"]] == [web["id"]]
    (skipped,) = first["skipped"]
    assert (skipped["id"], skipped["name"], skipped["kind"], skipped["service"]) == (amphora["id"], amphora["name"], "recovered_by_service", "octavia")
    assert skipped["reason"].startswith("left alone: octavia recovers it by itself (recovered_by_services[0]: ")
    assert skipped["next_command"].startswith(f"openstack server evacuate {amphora['id']} ")
    now = servers(cloud)
    assert now[amphora["id"]]["OS-EXT-SRV-ATTR:host"] == FAILED and not now[amphora["id"]]["locked"]
    assert now[web["id"]]["OS-EXT-SRV-ATTR:host"] != FAILED and now[web["id"]]["status"] == "ACTIVE"

    second, _output = run_module(cloud, MODULE, dict(args, recovered_by_services=[]))
    assert not second.get("failed") and second["summary"]["recovered"] == 1, second["msg"]
    assert [s["id"] for s in second["servers"] if s["outcome"] == "recovered"] == [amphora["id"]]
    assert second["skipped"] == []
    now = servers(cloud)
    assert now[amphora["id"]]["OS-EXT-SRV-ATTR:host"] not in (FAILED, None)
    assert now[amphora["id"]]["status"] == "ACTIVE"
