"""The collection under a failing control plane, on the local cloud: the fault proxy (localcloud/faultproxy.py)
fails the collection's requests to Nova and Keystone while Nova's own services go on.

- a 30-second outage of nova-api while servers are evacuated is ridden out: every server recovered, exactly one
  evacuation migration each, new evacuations paused while the API failed;
- an outage longer than outage_timeout ends the run INTERRUPTED, every server reported, none failed; the same
  task run again once the API answers finishes them;
- Keystone failing when a module starts is waited out.
"""

import threading
import time

import pytest

from conftest import run_module

HOST = "node-28"
OTHERS = {"node-27", "node-31"}
MODULE = "novaha.recovery.os_host_evacuate"
# Rebuilds that take a few seconds, so that the outage meets evacuations in flight and servers still queued.
SLOW = {"novaha_fake:rebuild_delay": "4"}
NOVA_ACTION = r"^/v2\.1/servers/[^/]+/action$"

pytestmark = pytest.mark.slow


def direct(cloud):
    """A connection that bypasses the fault proxy: what the test reads is never faulted."""
    return cloud.connect(internal=True)


def evacuations(conn):
    response = conn.compute.get(f"/os-migrations?migration_type=evacuation&source_compute={HOST}", microversion="2.59")
    return response.json()["migrations"]


def servers(conn):
    response = conn.compute.get("/servers/detail?all_tenants=True", microversion="2.96")
    return dict((s["id"], s) for s in response.json()["servers"])


def fail_and_force_down(cloud):
    cloud.fail_host(HOST, power="off")
    conn = direct(cloud)
    (svc,) = [s for s in conn.compute.get("/os-services?binary=nova-compute", microversion="2.53").json()["services"] if s["host"] == HOST]
    response = conn.compute.put(f"/os-services/{svc['id']}", json={"forced_down": True}, microversion="2.53")
    assert response.status_code == 200, response.text


def in_background(cloud, args):
    box = {}

    def target():
        box["result"], box["output"] = run_module(cloud, MODULE, args)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_for_first_evacuation(conn, thread, box, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if evacuations(conn):
            return
        assert thread.is_alive(), "the run ended before any evacuation: %s" % box.get("result", {}).get("msg")
        time.sleep(0.3)
    raise AssertionError("no evacuation after %ss" % timeout)


def assert_each_recovered_once(conn, booted):
    now = servers(conn)
    per_server = {}
    for mig in evacuations(conn):
        per_server[mig["instance_uuid"]] = per_server.get(mig["instance_uuid"], 0) + 1
    assert per_server == dict((sid, 1) for sid in booted), per_server
    for sid, status in booted.items():
        server = now[sid]
        assert server["OS-EXT-SRV-ATTR:host"] in OTHERS and server["status"] == status, (sid, server["status"])
        assert not server["locked"], server.get("locked_reason")


def boot(cloud, count):
    booted = cloud.boot(HOST, count=count, metadata=SLOW)
    return dict((s["id"], s["status"]) for s in booted)


# With `make chaos` only (55 s): `make test` keeps the longer outage below, which interrupts and then finishes, to stay
# under 50 minutes.
@pytest.mark.chaos
@pytest.mark.chaos_only
def test_a_30_second_nova_outage_during_the_evacuation_is_ridden_out(clean_cloud, faults):
    cloud = clean_cloud
    booted = boot(cloud, 6)
    fail_and_force_down(cloud)
    conn = direct(cloud)
    thread, box = in_background(cloud, dict(cloud=cloud.admin_cloud, host=HOST, max_parallel=2, poll_interval=2, timeout=600, outage_timeout=120))
    wait_for_first_evacuation(conn, thread, box)
    mark = faults.mark()
    started = time.monotonic()
    faults.error("nova", status=503, window=30)
    thread.join(600)
    assert not thread.is_alive()
    result = box["result"]
    assert not result.get("failed"), result["msg"]
    summary = result["summary"]
    assert summary["recovered"] == 6 and summary["failed"] == 0, result["msg"]
    outages = summary["api_outages"]
    assert outages["reads_sent_again"] >= 3 and not outages["ongoing"], outages
    assert summary["interrupted"] is None
    assert time.monotonic() - started >= 30
    assert_each_recovered_once(conn, booted)
    # While Nova failed, actions were tried at a backoff: a handful of POSTs, not one per queued server per poll.
    faulted_posts = [e for e in faults.requests("nova", method="POST", path=NOVA_ACTION, since=mark) if e.get("fault")]
    assert len(faulted_posts) <= 8, len(faulted_posts)


def test_an_outage_longer_than_outage_timeout_interrupts_and_the_same_task_finishes_after(clean_cloud, faults):
    cloud = clean_cloud
    booted = boot(cloud, 3)
    fail_and_force_down(cloud)
    conn = direct(cloud)
    args = dict(cloud=cloud.admin_cloud, host=HOST, max_parallel=1, poll_interval=2, timeout=600, outage_timeout=10)
    thread, box = in_background(cloud, args)
    wait_for_first_evacuation(conn, thread, box)
    # The servers and migrations APIs fail (the services API still answers, so the run can say it was interrupted).
    faults.error("nova", status=503, window=600, path=r"^/v2\.1/(servers|os-migrations)")
    thread.join(600)
    result = box["result"]
    assert result.get("failed"), result["msg"]
    assert "INTERRUPTED" in result["msg"] and "compute API failed for" in result["msg"], result["msg"]
    assert result["summary"]["end_error"] is None
    (svc,) = [s for s in conn.compute.get("/os-services?binary=nova-compute", microversion="2.53").json()["services"] if s["host"] == HOST]
    assert svc["disabled_reason"].startswith("novaha.recovery run %s interrupted " % result["run_id"]), svc
    outcomes = [s["outcome"] for s in result["servers"]]
    assert "failed" not in outcomes and len(outcomes) == 3, outcomes
    unfinished = [s for s in result["servers"] if s["outcome"] in ("in_progress", "pending")]
    assert unfinished and all(s["kind"] == "api_outage" and s["next_command"] for s in unfinished)
    # The API answers again: the same task finishes what the interrupted run left.
    faults.clear()
    again, _output = run_module(cloud, MODULE, dict(args, outage_timeout=120))
    assert not again.get("failed"), again["msg"]
    assert_each_recovered_once(conn, booted)


def test_keystone_failing_when_a_module_starts_is_waited_out(cloud, faults):
    faults.error("keystone", status=503, window=6)
    started = time.monotonic()
    result, _output = run_module(cloud, "novaha.recovery.os_host_info", dict(cloud=cloud.admin_cloud, host=HOST, list_host_servers=False))
    assert not result.get("failed"), result.get("msg")
    assert time.monotonic() - started >= 5
    assert faults.requests("keystone", method="POST") and any(e.get("fault") for e in faults.requests("keystone"))
