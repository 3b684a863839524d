"""playbooks/recover-host.yml and restore-host.yml on the local cloud, run as an operator runs them.

ansible-playbook with the local cloud's inventory (each compute host with its bmc_* vars), so the role
fences through the Redfish BMC emulator, isolates through real Nova, evacuates through os_host_evacuate
and writes its report. Every assertion reads the outcome back from Nova, the BMC or the report files.
"""

import base64
import json
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import DEV_BIN, ROOT

HOST = "node-28"
OTHERS = {"node-27", "node-31"}

pytestmark = pytest.mark.slow


def playbook(cloud, name, host, tmp_path, check=False, verbosity=0, **extra):
    """Run playbooks/<name> for ``host`` (or several, "node-28,node-31"); returns (returncode, output, the
    report of the first host or None)."""
    reports = tmp_path / "reports"
    extra_vars = {"host_recovery_report_root": str(reports), **extra}
    var = "recover_host" if name.startswith("recover") else "restore_host"
    cmd = [str(DEV_BIN / "ansible-playbook"), "-i", str(cloud.inventory), str(ROOT / "playbooks" / name), "-e", f"{var}={host}", "-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    proc = subprocess.run(cmd, env=cloud.env(), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    return proc.returncode, output, report_of(tmp_path, host.split(",")[0])


def report_of(tmp_path, host):
    """The last report.json written for ``host``, or None."""
    reports = tmp_path / "reports"
    found = sorted(reports.glob(f"{host}-*/report.json")) if reports.exists() else []
    return json.loads(found[-1].read_text()) if found else None


def servers(cloud):
    """Every server: id -> (host, status, task_state)."""
    conn = cloud.connect()
    body = conn.compute.get("/servers/detail?all_tenants=True", microversion="2.73").json()
    return {s["id"]: (s["OS-EXT-SRV-ATTR:host"], s["status"], s["OS-EXT-STS:task_state"]) for s in body["servers"]}


def service(cloud, host):
    conn = cloud.connect()
    body = conn.compute.get("/os-services?binary=nova-compute", microversion="2.53").json()
    (found,) = [s for s in body["services"] if s["host"] == host]
    return found


def evacuations(cloud, host):
    conn = cloud.connect()
    body = conn.compute.get(f"/os-migrations?migration_type=evacuation&source_compute={host}", microversion="2.59").json()
    return body["migrations"]


def power_of(cloud, host):
    """PowerState as the host's Redfish BMC answers now."""
    bmc = cloud.bmc(host)
    request = urllib.request.Request(f"{bmc['redfish']['url']}/redfish/v1/Systems/{bmc['redfish']['system_id']}")
    token = f"{bmc['username']}:{bmc['password']}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    context = ssl.create_default_context(cafile=bmc["ca_path"])
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.load(response)["PowerState"]


def admin_password(cloud):
    clouds = json.loads(cloud.clouds_yaml.read_text())["clouds"]  # the local cloud writes JSON (valid YAML)
    return clouds[cloud.admin_cloud]["auth"]["password"]


def flags(svc):
    return svc["forced_down"], svc["status"], svc["disabled_reason"]


def last_task_output(output):
    """The text of the last TASK block before the PLAY RECAP."""
    body = output.split("PLAY RECAP")[0]
    return body.rsplit("TASK [", 1)[-1]


def boot_story(cloud):
    """Three ACTIVE servers and one SHUTOFF server on node-28: id -> status before."""
    booted = cloud.boot(HOST, count=3) + cloud.boot(HOST, count=1, status="SHUTOFF", name="stopped")
    return {s["id"]: s["status"] for s in booted}


def test_recover_end_to_end(clean_cloud, tmp_path):
    cloud = clean_cloud
    before = boot_story(cloud)
    cloud.fail_host(HOST, power="on")
    assert power_of(cloud, HOST) == "On"

    rc, output, report = playbook(cloud, "recover-host.yml", HOST, tmp_path)
    assert rc == 0, output

    # Every server on a healthy host, in the state it had, nothing left behind.
    now = servers(cloud)
    for server_id, status in before.items():
        host, status_now, task = now[server_id]
        assert host in OTHERS, (server_id, host)
        assert (status_now, task) == (status, None), (server_id, now[server_id])
    assert all(m["status"] in ("done", "completed") for m in evacuations(cloud, HOST))
    assert len(evacuations(cloud, HOST)) == len(before)  # exactly one evacuation per server

    # Fenced through Redfish; the service isolated with the run's marker.
    assert power_of(cloud, HOST) == "Off"
    svc = service(cloud, HOST)
    assert svc["forced_down"] is True and svc["status"] == "disabled"
    assert svc["disabled_reason"].startswith(f"novaha.recovery run {report['run_id']} done ctl ")

    # The report says the same.
    assert report["schema_version"] == 2 and report["outcome"] == "recovered", report["reason"]
    assert report["fencing"]["fenced"] is True and report["fencing"]["method"] == "redfish"
    assert report["fencing"]["power_state_before"] == "on" and report["fencing"]["power_state"] == "off"
    assert [p["name"] for p in report["phases"]] == ["preflight", "fence", "isolate", "evacuate", "verify", "report"]
    assert {s["id"] for s in report["servers"]} == set(before)
    for entry in report["servers"]:
        assert entry["outcome"] == "recovered" and entry["verified"] is True, entry
        assert entry["after"]["host"] == now[entry["id"]][0]
        assert entry["after"]["status"] == before[entry["id"]] == entry["expected_status"]
        assert entry["requested_at"] and entry["finished_at"]
    assert report["service"]["snapshot"]["forced_down"] is False
    assert report["rollback"] is None and report["stopped"] is None
    directory = tmp_path / "reports" / f"{HOST}-{report['started_at'].replace('-', '').replace(':', '')}-{report['run_id']}"
    assert report["files"]["directory"] == str(directory)
    snapshot = json.loads((directory / "snapshot.json").read_text())
    assert {s["id"] for s in snapshot["servers"]} == set(before)
    html = (directory / "report.html").read_text()
    assert "<svg" in html and all(s["name"] in html for s in report["servers"])
    assert "RECOVERED" in (directory / "report.md").read_text()
    # The modules shared one Keystone token through a private file, removed at the end.
    assert not (Path.home() / ".ansible" / "tmp" / f"novaha-recovery-{report['run_id']}.token").exists()

    # The waits (service down, verify) are single tasks that say what they waited for, never retried tasks.
    assert "FAILED - RETRYING" not in output
    assert f"{len(before)} of {len(before)} servers verified in their expected state on healthy hosts" in output

    # The last task output is the summary, one line per host naming its report.
    last = last_task_output(output)
    assert "Summary - one line per host" in last and f"{HOST}: RECOVERED" in last and str(directory) in last


def test_abort_unfenced_evacuates_nothing_and_restores_flags(clean_cloud, tmp_path):
    cloud = clean_cloud
    before = boot_story(cloud)
    service_before = flags(service(cloud, HOST))
    cloud.fail_host(HOST, power="stuck")

    rc, output, report = playbook(cloud, "recover-host.yml", HOST, tmp_path, host_recovery_power_timeout=5)
    assert rc != 0, output

    now = servers(cloud)
    assert {sid: now[sid][0] for sid in before} == {sid: HOST for sid in before}
    assert evacuations(cloud, HOST) == []
    assert flags(service(cloud, HOST)) == service_before == (False, "enabled", None)
    assert power_of(cloud, HOST) == "On"

    assert report["outcome"] == "aborted"
    assert report["stopped"]["phase"] == "fence"
    assert "not proven fenced" in report["reason"] and "still reads PowerState On" in report["reason"]
    assert report["fencing"]["fenced"] is False and report["fencing"]["error_cause"] == "stayed on"
    assert report["rollback"]["evacuation_started"] is False
    # os_recovery_run state=released decided to give the flags back, under this run's own marker.
    assert report["rollback"]["performed"] is True and report["rollback"]["flags_as_before"] is True
    assert report["servers"] == []
    assert "ABORTED" in last_task_output(output)


def test_check_mode_changes_nothing(clean_cloud, tmp_path):
    cloud = clean_cloud
    before = boot_story(cloud)
    service_before = flags(service(cloud, HOST))
    cloud.fail_host(HOST, power="on")

    rc, output, report = playbook(cloud, "recover-host.yml", HOST, tmp_path, check=True, verbosity=4)
    assert rc == 0, output

    now = servers(cloud)
    assert {sid: now[sid][:2] for sid in before} == {sid: (HOST, status) for sid, status in before.items()}
    assert evacuations(cloud, HOST) == []
    assert flags(service(cloud, HOST)) == service_before
    assert power_of(cloud, HOST) == "On"

    assert report["check_mode"] is True and report["outcome"] == "planned"
    assert {s["id"] for s in report["servers"]} == set(before)
    assert all(s["action"] == "evacuate" and s["outcome"] == "planned" for s in report["servers"])
    assert all(g["ok"] for g in report["guards"]) and report["guards"]
    assert "would power off" in report["fencing"]["msg"]
    assert "PLANNED" in last_task_output(output)

    # Neither the BMC password nor the cloud password shows, even at -vvvv, nor in the report files.
    secrets = [cloud.bmc(HOST)["password"], admin_password(cloud)]
    written = "".join(p.read_text() for p in (tmp_path / "reports").rglob("*") if p.is_file())
    for secret in secrets:
        assert secret not in output and secret not in written


@pytest.fixture(scope="module")
def recovered(cloud, tmp_path_factory):
    """node-28 recovered by the playbook once, for the restore tests (which run in this order)."""
    cloud.cli("reset")
    cloud.boot(HOST, count=2)
    cloud.fail_host(HOST, power="on")
    rc, output, report = playbook(cloud, "recover-host.yml", HOST, tmp_path_factory.mktemp("recover"))
    assert rc == 0 and report["outcome"] == "recovered", output
    return report


def test_restore_refused_while_compute_down(cloud, recovered, tmp_path):
    # Someone powered the host on, but nova-compute is not running.
    cloud.fail_host(HOST, power="on")
    assert power_of(cloud, HOST) == "On"
    before = flags(service(cloud, HOST))

    rc, output, _report = playbook(cloud, "restore-host.yml", HOST, tmp_path, restore_host_wait=15)
    assert rc != 0, output
    assert "refusing to return node-28 to service, nothing changed" in output
    assert "nova-compute does not report" in output
    assert "evacuations from it are not cleaned up yet" in output
    assert "FAILED - RETRYING" not in output
    assert flags(service(cloud, HOST)) == before
    assert before[:2] == (True, "disabled")


# The restore after the host is repaired (revived) is one story, told once: the molecule scenario
# extensions/molecule/restore runs recover-host.yml, revives the host and runs restore-host.yml as an operator
# does, and checks the service is back (up, enabled, marker cleared) with its evacuations completed.


def test_partial_failure_keeps_host_isolated_and_lists_what_is_left(clean_cloud, tmp_path):
    cloud = clean_cloud
    active = cloud.boot(HOST, count=2)
    (paused,) = cloud.boot(HOST, count=1, status="PAUSED", name="paused")
    cloud.fail_host(HOST, power="on")

    rc, output, report = playbook(cloud, "recover-host.yml", HOST, tmp_path)
    assert rc != 0, output

    # The evacuable servers were recovered; the paused one (its guest state died with the host) was not
    # touched, since reset_state is off; the host stays isolated for it.
    now = servers(cloud)
    assert all(now[s["id"]][0] in OTHERS and now[s["id"]][1] == "ACTIVE" for s in active), now
    assert now[paused["id"]][:2] == (HOST, "PAUSED")
    svc = service(cloud, HOST)
    assert svc["forced_down"] is True and svc["status"] == "disabled"

    assert report["outcome"] == "partial"
    assert report["stopped"]["phase"] == "verify" and "paused-1" in report["reason"]
    assert report["rollback"]["evacuation_started"] is True and report["rollback"]["performed"] is False
    assert "kept isolated" in report["rollback"]["action"]
    (left,) = [s for s in report["servers"] if s["id"] == paused["id"]]
    assert left["outcome"] == "refused" and left["next_command"]
    assert any(step.startswith("paused-1: ") for step in report["next_steps"])
    assert all(s["verified"] is True for s in report["servers"] if s["id"] != paused["id"])
    assert "PARTIAL" in last_task_output(output)


def test_two_failed_hosts_are_both_recovered_and_the_partial_one_is_named(clean_cloud, tmp_path):
    cloud = clean_cloud
    first, second = HOST, "node-31"
    active = cloud.boot(first, count=2)
    (paused,) = cloud.boot(first, count=1, status="PAUSED", name="paused")
    others = cloud.boot(second, count=2, name="db")
    cloud.fail_host(first, power="on")
    cloud.fail_host(second, power="on")

    # Two of three computes down is above the default partition guard (50 %): the operator raises it.
    rc, output, _report = playbook(cloud, "recover-host.yml", f"{first},{second}", tmp_path, host_recovery_max_down_percent=70)
    assert rc != 0, output

    # Both hosts fenced and isolated; every evacuable server on node-27, the paused one left on node-28.
    now = servers(cloud)
    assert all(now[s["id"]][:2] == ("node-27", "ACTIVE") for s in active + others), now
    assert now[paused["id"]][:2] == (first, "PAUSED")
    for host in (first, second):
        assert power_of(cloud, host) == "Off"
        svc = service(cloud, host)
        assert svc["forced_down"] is True and svc["status"] == "disabled", svc

    # Two report directories, one per host, with what each one amounts to.
    reports = {host: report_of(tmp_path, host) for host in (first, second)}
    written = sorted(p.parent.name.rsplit("-", 2)[0] for p in (tmp_path / "reports").glob("*/report.json"))
    assert written == [first, second]
    assert reports[first]["outcome"] == "partial" and reports[first]["stopped"]["phase"] == "verify"
    assert reports[second]["outcome"] == "recovered" and reports[second]["rollback"] is None
    assert {s["id"] for s in reports[second]["servers"]} == {s["id"] for s in others}

    # The summary has a line per host, and the play fails naming the partial host only.
    last = last_task_output(output)
    assert "Summary - one line per host" in last
    assert f"{first}: PARTIAL" in last and f"{second}: RECOVERED" in last
    assert f"not recovered: {first} (PARTIAL) - 1 of 2 hosts" in last and f"{second} (" not in last
