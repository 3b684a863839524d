"""os_host_evacuate on the local cloud: real Nova, real Placement, the fake hypervisor.

One boot of node-28 with 13 servers in mixed states (ACTIVE, SHUTOFF, ERROR, PAUSED, user-locked, a
soft-anti-affinity pair, two projects, some with HA_Enabled metadata) is shared by the tests of this file,
which run in order as an operator would: refused while the host is up, host fenced, bad query, check mode,
percentage guard, HA servers first (with a concurrent second run refused and the live progress read from
the job output), a JMESPath selection, then everything else with the controller SIGKILLed mid-run and run
again, then a re-run that changes nothing. Each asserts where the servers are and in which state, read back
from Nova.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import DEV_BIN, run_module

MODULE = "novaha.recovery.os_host_evacuate"
HOST = "node-28"
LOCK_PREFIX = "novaha.recovery:"
PROGRESS = re.compile(
    r"os_host_evacuate node-28 \(run (?P<run>\w+)\): (?P<recovered>\d+) recovered, "
    r"(?P<in_flight>\d+) in flight, (?P<failed>\d+) failed, (?P<pending>\d+) pending of "
    r"(?P<selected>\d+) selected(?: \((?P<disks>[^)]*)\))?; (?:window (?P<width>\d+); )?(?P<elapsed>\d+)s elapsed"
)


# ---------------------------------------------------------------------------------------------------------
# Reading Nova


def get(cloud, path, microversion="2.96"):
    response = cloud.connect().compute.get(path, microversion=microversion)
    assert response.status_code == 200, response.text
    return response.json()


def servers(cloud):
    return dict((s["id"], s) for s in get(cloud, "/servers/detail?all_tenants=True")["servers"])


def evacuations(cloud):
    return get(cloud, f"/os-migrations?migration_type=evacuation&source_compute={HOST}", "2.59")["migrations"]


def compute_service(cloud, host=HOST):
    (service,) = [s for s in get(cloud, "/os-services?binary=nova-compute", "2.53")["services"] if s["host"] == host]
    return service


def set_forced_down(cloud, host, down):
    service = compute_service(cloud, host)
    response = cloud.connect().compute.put(f"/os-services/{service['id']}", json={"forced_down": down}, microversion="2.53")
    assert response.status_code == 200, response.text


def utc(text):
    return time.mktime(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))


def max_concurrent(migrations):
    """Most evacuation migrations in flight at once: [created_at, updated_at of done) at second precision.

    The engine issues the next evacuation only after it saw the previous one done, so a shared second is
    an end followed by a start, never an overlap.
    """
    events = []
    for mig in migrations:
        assert mig["status"] in ("done", "completed"), mig
        events += [(utc(mig["created_at"]), 1), (utc(mig["updated_at"]), -1)]
    peak = current = 0
    for _t, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    return peak


def unchanged(cloud, scenario):
    """Nothing was done: every server where and as it was booted, no evacuation, no lock, no marker."""
    now = servers(cloud)
    for sid, expected in scenario["before"].items():
        assert now[sid]["OS-EXT-SRV-ATTR:host"] == HOST
        assert now[sid]["status"] == expected
        assert not (now[sid].get("locked_reason") or "").startswith(LOCK_PREFIX)
    assert evacuations(cloud) == []
    service = compute_service(cloud)
    assert not (service["disabled_reason"] or "").startswith("novaha.recovery run")


# ---------------------------------------------------------------------------------------------------------
# Running the module in the background, reading its job output as it comes


class Background:
    """ansible-playbook running the module, its stdout read line by line with the time each line came."""

    def __init__(self, cloud, args, name):
        tmp = cloud.state_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        self.out = tmp / f"result-{name}-{os.getpid()}.json"
        if self.out.exists():
            self.out.unlink()
        playbook = tmp / f"run-{name}-{os.getpid()}.yml"
        playbook.write_text(
            json.dumps(
                [
                    {
                        "hosts": "localhost",
                        "gather_facts": False,
                        "connection": "local",
                        "vars": {"ansible_python_interpreter": sys.executable},
                        "tasks": [
                            {"name": "Evacuate the host", MODULE: args, "register": "result", "ignore_errors": True},
                            {
                                "name": "Save the result",
                                "ansible.builtin.copy": {"content": "{{ result | to_nice_json }}", "dest": str(self.out)},
                                "no_log": True,
                            },
                        ],
                    }
                ]
            )
        )
        self.started = time.monotonic()
        self.lines = []
        # A session of its own, so that the whole controller (playbook, worker, module) can be killed at once.
        self.proc = subprocess.Popen(
            [str(DEV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook)],
            env=cloud.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def progress(self):
        return [(t, PROGRESS.search(line).groupdict()) for t, line in self.lines if PROGRESS.search(line)]

    def wait_for(self, what, predicate, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [p for _t, p in self.progress() if predicate(p)]
            if found:
                return found[-1]
            assert self.proc.poll() is None, f"the run ended before {what}:\n{self.output()}"
            time.sleep(0.5)
        raise AssertionError(f"no progress line with {what} in {timeout}s:\n{self.output()}")

    def kill(self):
        """SIGKILL the whole controller at once, as when its machine or pod dies: ansible-playbook, its
        workers (which Ansible moves to sessions of their own) and the module process."""
        children = {}
        for line in subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout.splitlines():
            pid, ppid = (int(x) for x in line.split())
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        assert len(tree) >= 3, tree  # the playbook, a worker, the module (and the shells between)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)

    def result(self, timeout=300):
        self.proc.wait(timeout)
        self.reader.join(10)
        assert self.out.exists(), self.output()
        return json.loads(self.out.read_text())

    def output(self):
        return "\n".join(line for _t, line in self.lines)


def evacuate(cloud, check=False, **args):
    params = dict(cloud=cloud.admin_cloud, host=HOST, poll_interval=2, timeout=300)
    params.update(args)
    return run_module(cloud, MODULE, params, check=check)


# ---------------------------------------------------------------------------------------------------------
# The shared scenario


@pytest.fixture(scope="module")
def scenario(cloud):
    cloud.cli("reset")
    kinds = {}

    def boot(kind, **opts):
        for record in cloud.boot(HOST, name=kind, **opts):
            kinds[record["id"]] = kind
        return [sid for sid, k in kinds.items() if k == kind]

    # The admin project's instance quota is 10: three servers go to the member project.
    # The HA servers take 4 s to rebuild, so test 05 sees its run with evacuations in flight.
    slow = {"novaha_fake:rebuild_delay": "4"}
    boot("ha", count=2, metadata={"HA_Enabled": "True", **slow})
    boot("hapri", metadata={"HA_Enabled": "True", "HA_Priority": "100", **slow})
    boot("paused", status="PAUSED", metadata={"HA_Enabled": "True"})
    boot("off", count=2, status="SHUTOFF")
    boot("err", status="ERROR")
    boot("locked", locked=True)
    boot("pair", count=2, server_group="soft-anti-affinity")
    boot("member", count=2, project="member")
    boot("memberha", project="member", metadata={"HA_Enabled": "True", **slow})
    now = servers(cloud)
    assert len(kinds) == 13 and all(now[sid]["OS-EXT-SRV-ATTR:host"] == HOST for sid in kinds)
    final = {
        "ha": "ACTIVE",
        "hapri": "ACTIVE",
        "paused": "PAUSED",
        "off": "SHUTOFF",
        "err": "ACTIVE",
        "locked": "ACTIVE",
        "pair": "ACTIVE",
        "member": "ACTIVE",
        "memberha": "ACTIVE",
    }
    return dict(
        kinds=kinds,
        before=dict((sid, now[sid]["status"]) for sid in kinds),
        final=dict((sid, final[kind]) for sid, kind in kinds.items()),
        member_project=now[[s for s, k in kinds.items() if k == "member"][0]]["tenant_id"],
    )


def ids(scenario, *kinds):
    return sorted(sid for sid, kind in scenario["kinds"].items() if kind in kinds)


def test_01_host_still_up_is_refused(cloud, scenario):
    result, output = evacuate(cloud)
    assert result.get("failed"), output
    assert "host node-28 cannot be evacuated now" in result["msg"]
    assert "host node-28 is not fenced/forced down" in result["msg"] and "Nothing was changed" in result["msg"]
    assert [c["name"] for c in result["preconditions"] if not c["ok"]] == ["source_down"]
    # The role waits on this: a refused plan still returns the host as it is, service up, every server on it.
    result, output = evacuate(cloud, check=True, snapshot=True)
    assert result.get("failed") and "host node-28 is not fenced/forced down" in result["msg"], output
    snap = result["snapshot"]
    assert snap["service"]["host"] == HOST and snap["service"]["state"] == "up" and not snap["service"]["forced_down"]
    assert {s["id"] for s in snap["servers"]} == set(scenario["kinds"])
    assert snap["summary"]["servers"] == len(scenario["kinds"]) and snap["summary"]["computes_down"] == 0
    unchanged(cloud, scenario)


def test_02_bad_jmespath_is_a_clear_error(cloud, scenario):
    cloud.fail_host(HOST, power="off")
    set_forced_down(cloud, HOST, True)
    result, output = evacuate(cloud, query="[?status=='ACTIVE'")
    assert result.get("failed"), output
    assert result["msg"].startswith("query \"[?status=='ACTIVE'\" is not a valid JMESPath expression")
    assert result["msg"].endswith("Nothing was changed")
    unchanged(cloud, scenario)


def test_03_check_mode_is_the_full_plan_and_changes_nothing(cloud, scenario):
    result, output = evacuate(cloud, check=True, max_parallel=2)
    assert not result.get("failed"), output
    assert result["changed"] is True and result["msg"].startswith("check mode: host node-28: 13 servers selected")
    plan = dict((p["id"], p) for p in result["plan"])
    assert set(plan) == set(scenario["kinds"])
    assert result["plan"][0]["id"] == ids(scenario, "hapri")[0]  # HA_Priority 100 goes first
    for sid, entry in plan.items():
        kind = scenario["kinds"][sid]
        if kind == "paused":
            assert entry["action"] == "refuse" and "is PAUSED" in entry["reason"]
        else:
            assert entry["action"] == "evacuate", entry
            assert entry["expected_status"] == scenario["final"][sid]
            assert entry["expected_target"] == "the scheduler"
            assert any("root disk" in w for w in entry["warnings"])
            assert "root_disk_lost" in entry["warning_kinds"] and len(entry["warning_kinds"]) == len(entry["warnings"])
    pair = ids(scenario, "pair")
    assert plan[pair[0]]["exclusive_groups"] == plan[pair[1]]["exclusive_groups"] != []
    assert any("share server group" in w for w in result["warnings"])
    assert result["capacity"]["fits"] and result["capacity"]["source"] == "Placement inventories and usages"
    assert result["summary"]["planned"] == 12 and result["summary"]["refused"] == 1
    unchanged(cloud, scenario)


def test_04_percentage_guard_trips_with_two_of_three_hosts_down(cloud, scenario):
    set_forced_down(cloud, "node-31", True)
    try:
        result, output = evacuate(cloud)
    finally:
        set_forced_down(cloud, "node-31", False)
    assert result.get("failed"), output
    (guard,) = [c for c in result["preconditions"] if not c["ok"]]
    assert guard["name"] == "down_percent"
    assert guard["detail"].startswith("2 of 3 nova-compute services are down (67%: node-28, node-31)")
    assert "partition" in result["msg"]
    unchanged(cloud, scenario)


def test_05_ha_servers_first_max_parallel_concurrent_run_refused_live_progress(cloud, scenario):
    run = Background(
        cloud,
        dict(cloud=cloud.admin_cloud, host=HOST, poll_interval=2, max_parallel=2, progress_interval=5, include={"metadata": {"HA_Enabled": "True"}}),
        "ha",
    )
    first = run.wait_for("an evacuation in flight", lambda p: int(p["in_flight"]) > 0)
    # A second run for the same host while the first one runs: refused, naming the first.
    second, output = evacuate(cloud)
    assert second.get("failed"), output
    assert f"another novaha.recovery run holds this host: run {first['run']} (controller " in second["msg"]
    assert "phase evacuating" in second["msg"] and "the same command takes over" in second["msg"]
    result = run.result()
    assert not result.get("failed"), run.output()
    assert result["changed"] is True and result["run_id"] == first["run"]

    ha = ids(scenario, "ha", "hapri", "memberha")
    now = servers(cloud)
    records = dict((r["id"], r) for r in result["servers"])
    for sid in ha:
        assert records[sid]["outcome"] == "recovered", records[sid]
        assert now[sid]["OS-EXT-SRV-ATTR:host"] in ("node-27", "node-31") and now[sid]["status"] == "ACTIVE"
    (paused,) = ids(scenario, "paused")
    assert records[paused]["outcome"] == "refused" and "is PAUSED" in records[paused]["reason"]
    assert now[paused]["OS-EXT-SRV-ATTR:host"] == HOST and now[paused]["status"] == "PAUSED"
    assert any("not evacuated: " in w and "PAUSED" in w for w in result["warnings"])
    skipped = dict((s["id"], s["reason"]) for s in result["skipped"])
    assert set(skipped) == set(scenario["kinds"]) - set(ha) - {paused}
    assert all(r.startswith("not selected: include.metadata needs metadata HA_Enabled=True") for r in skipped.values())
    assert result["servers"][0]["id"] == ids(scenario, "hapri")[0]
    summary = result["summary"]
    assert (summary["selected"], summary["recovered"], summary["refused"], summary["failed"]) == (5, 4, 1, 0)
    assert summary["watch_requests_per_poll"] == 2.0

    # max_parallel 2: never more than two evacuations in flight, from Nova's own migration records.
    migrations = evacuations(cloud)
    assert sorted(m["instance_uuid"] for m in migrations) == sorted(ha)
    assert max_concurrent(migrations) <= 2 and summary["max_in_flight"] == 2
    assert max_concurrent(migrations) == 2  # with rebuilds that take 4 s, the window is used

    # Live progress: printed while the task ran (before its result), at least every 15 s.
    progress = run.progress()
    result_at = [t for t, line in run.lines if line.startswith("changed: [localhost]")][0]
    assert len(progress) >= 2 and progress[-1][0] < result_at
    times = [0.0] + [t for t, _p in progress] + [result_at]
    assert max(b - a for a, b in zip(times[1:], times[2:])) <= 15, run.output()
    assert all(p["selected"] == "5" for _t, p in progress)
    assert [int(p["elapsed"]) for _t, p in progress] == sorted(int(p["elapsed"]) for _t, p in progress)
    assert compute_service(cloud)["disabled_reason"] is None and compute_service(cloud)["status"] == "enabled"


def test_06_jmespath_selection(cloud, scenario):
    result, output = evacuate(cloud, query="[?status=='SHUTOFF']")
    assert not result.get("failed"), output
    off = ids(scenario, "off")
    assert sorted(r["id"] for r in result["servers"]) == off
    now = servers(cloud)
    for sid in off:
        assert now[sid]["OS-EXT-SRV-ATTR:host"] != HOST and now[sid]["status"] == "SHUTOFF"
    reasons = set(s["reason"] for s in result["skipped"])
    assert reasons == {"not selected: the query [?status=='SHUTOFF'] does not return it"}
    assert result["summary"]["recovered"] == 2


def test_07_killed_mid_run_then_run_again(cloud, scenario):
    # At 2.95 Nova leaves each server stopped and the run starts it: the kill can fall between the two, the
    # hardest case to resume (the default, 2.94, has no step after Nova's).
    # A short lease, so that the run's heartbeat goes stale soon after the kill.
    args = dict(cloud=cloud.admin_cloud, host=HOST, poll_interval=2, max_parallel=1, progress_interval=5, microversion="2.95", lease=20)
    run = Background(cloud, args, "killed")
    killed_run = run.wait_for("one recovered and one in flight", lambda p: int(p["recovered"]) >= 1 and int(p["in_flight"]) >= 1)
    run.kill()
    marker = compute_service(cloud)["disabled_reason"]
    assert marker.startswith(f"novaha.recovery run {killed_run['run']} evacuating ctl ")
    assert marker.endswith(" lease 20; was: enabled,forced_down")  # the test forced it down before

    # The same command, from a controller that knows nothing of the killed one: it waits for the heartbeat
    # to go stale and takes over.
    started = time.monotonic()
    result, output = evacuate(cloud, max_parallel=3, microversion="2.95", wait_for_run=90)
    assert not result.get("failed"), output
    assert time.monotonic() - started >= 10, "taken over before the killed run's heartbeat went stale"
    assert any(f"taking over run {killed_run['run']}" in w and ("stale" in w or "controller is gone" in w) for w in result["warnings"]), result["warnings"]
    now = servers(cloud)
    (paused,) = ids(scenario, "paused")
    for sid, kind in scenario["kinds"].items():
        where = now[sid]["OS-EXT-SRV-ATTR:host"]
        assert now[sid]["status"] == scenario["final"][sid], (kind, now[sid]["status"])
        assert not now[sid]["OS-EXT-STS:task_state"]
        assert (where == HOST) is (sid == paused), (kind, where)
        assert not (now[sid].get("locked_reason") or "").startswith(LOCK_PREFIX), kind
        assert "novaha.recovery:expected_status" not in now[sid]["metadata"], kind
    (locked,) = ids(scenario, "locked")
    assert now[locked]["locked"] is True and now[locked]["locked_reason"] == "locked by its owner"
    # Exactly one evacuation migration per server, whatever the kill interrupted.
    per_server = {}
    for mig in evacuations(cloud):
        per_server[mig["instance_uuid"]] = per_server.get(mig["instance_uuid"], 0) + 1
    assert per_server == dict((sid, 1) for sid in scenario["kinds"] if sid != paused)
    service = compute_service(cloud)
    assert service["disabled_reason"] is None and service["status"] == "enabled"
    outcomes = dict((r["id"], r["outcome"]) for r in result["servers"])
    assert outcomes[paused] == "refused"
    assert result["summary"]["failed"] == 0 and result["summary"]["in_progress"] == 0


def test_08_rerun_after_success_changes_nothing(cloud, scenario):
    result, output = evacuate(cloud)
    assert not result.get("failed"), output
    assert result["changed"] is False
    assert [r["outcome"] for r in result["servers"]] == ["refused"]  # the PAUSED server, still explained
    assert result["summary"]["recovered"] == 0
