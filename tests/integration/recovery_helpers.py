"""Shared by the integration tests that run recover-host.yml as an operator does and read the outcome back from
Nova (test_recovery_run.py, test_chaos.py): the command, killing the controller, reading servers, evacuation
migrations and the service, and the assertion that every server was recovered exactly once.
"""

import datetime
import json
import os
import signal
import subprocess

from conftest import DEV_BIN, ROOT

HOST = "node-28"
OTHERS = {"node-27", "node-31"}
LOCK_PREFIX = "novaha.recovery:"
NOTE_KEY = "novaha.recovery:expected_status"
# Rebuilds that take a few seconds, so that a run is caught with evacuations in flight.
SLOW = {"novaha_fake:rebuild_delay": "5"}


# ---------------------------------------------------------------------------------------------------------
# Running the playbooks


def command(cloud, name, host, reports, **extra):
    var = "recover_host" if name.startswith("recover") else "restore_host"
    extra_vars = {"host_recovery_report_root": str(reports), **extra}
    return [str(DEV_BIN / "ansible-playbook"), "-i", str(cloud.inventory), str(ROOT / "playbooks" / name), "-e", f"{var}={host}", "-e", json.dumps(extra_vars)]


def run(cloud, name, host, reports, **extra):
    proc = subprocess.run(command(cloud, name, host, reports, **extra), env=cloud.env(), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def reports_of(reports, host=HOST):
    """Every report.json written for ``host``, oldest first."""
    return [json.loads(p.read_text()) for p in sorted(reports.glob(f"{host}-*/report.json"), key=lambda p: p.stat().st_mtime)]


def process_tree(root):
    children = {}
    for line in subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout.splitlines():
        pid, ppid = (int(x) for x in line.split())
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def kill(proc, whole_tree):
    """SIGKILL the controller: the whole tree (its machine or pod died), or only ansible-playbook (its workers
    and the running module live on in sessions of their own). Returns the tree as it was."""
    tree = process_tree(proc.pid)
    for pid in tree if whole_tree else [proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(30)
    return tree


# ---------------------------------------------------------------------------------------------------------
# Reading Nova


def get(cloud, path, microversion):
    response = cloud.connect().compute.get(path, microversion=microversion)
    assert response.status_code == 200, response.text
    return response.json()


def servers(cloud):
    return dict((s["id"], s) for s in get(cloud, "/servers/detail?all_tenants=True", "2.96")["servers"])


def evacuations(cloud, host=HOST):
    return get(cloud, f"/os-migrations?migration_type=evacuation&source_compute={host}", "2.59")["migrations"]


def service(cloud, host=HOST):
    (found,) = [s for s in get(cloud, "/os-services?binary=nova-compute", "2.53")["services"] if s["host"] == host]
    return found


def set_service(cloud, body, host=HOST):
    response = cloud.connect().compute.put(f"/os-services/{service(cloud, host)['id']}", json=body, microversion="2.53")
    assert response.status_code == 200, response.text


def stamp(seconds_ago):
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def outcome_in_nova(cloud, before):
    """What Nova shows of the servers ``before`` ({id: status}): a list of problems per server (not on a healthy
    host, not in its state, a task state, our lock or metadata note left) and the number of evacuation migrations
    of each. Measured, not asserted, so that a chaos run can record it before it asserts."""
    now = servers(cloud)
    problems = {}
    for sid, status in before.items():
        server = now[sid]
        found = []
        if server["OS-EXT-SRV-ATTR:host"] not in OTHERS:
            found.append("on %s" % server["OS-EXT-SRV-ATTR:host"])
        if server["status"] != status:
            found.append("%s, not %s" % (server["status"], status))
        if server["OS-EXT-STS:task_state"]:
            found.append("task state %s" % server["OS-EXT-STS:task_state"])
        if (server.get("locked_reason") or "").startswith(LOCK_PREFIX):
            found.append("our lock left: %s" % server["locked_reason"])
        if NOTE_KEY in server["metadata"]:
            found.append("our metadata %s left" % NOTE_KEY)
        problems[sid] = found
    per_server = dict((sid, 0) for sid in before)
    for mig in evacuations(cloud):
        per_server[mig["instance_uuid"]] = per_server.get(mig["instance_uuid"], 0) + 1
    return problems, per_server


def assert_recovered_once(cloud, before):
    """Every server on a healthy host in the state it had, exactly one evacuation migration each, and nothing
    of ours left on it (lock, metadata note)."""
    problems, per_server = outcome_in_nova(cloud, before)
    assert not any(problems.values()), problems
    assert per_server == dict((sid, 1) for sid in before), per_server


def boot(cloud, count=4, **opts):
    booted = cloud.boot(HOST, count=count - 1, metadata=SLOW, **opts)
    booted += cloud.boot(HOST, count=1, status="SHUTOFF", name="stopped", metadata=SLOW)
    return dict((s["id"], s["status"]) for s in booted)
