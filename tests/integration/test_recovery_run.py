"""One recovery, one run holding the host: recover-host.yml and restore-host.yml on the local cloud when the
controller dies, when two runs start together, when a dead controller's marker is found, and with an
operator's own disabled reason on the service.

Every assertion reads the outcome back from Nova: where each server is and in which state, how many evacuation
migrations it has, our locks and metadata, the service's flags and disabled reason; and the report.
"""

import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT
from recovery_helpers import HOST, LOCK_PREFIX, assert_recovered_once, boot, command, evacuations, kill, reports_of, run, servers, service, set_service, stamp

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------------------------------
# The tests


# Killed while evacuating, both ways, with `make chaos`. `make test` has this story once, in test_chaos.py's fast subset
# (the pod gone after the first server's evacuation is done), to stay under 50 minutes.
@pytest.mark.parametrize(
    "whole_tree",
    [pytest.param(True, marks=[pytest.mark.chaos, pytest.mark.chaos_only]), pytest.param(False, marks=[pytest.mark.chaos, pytest.mark.chaos_only])],
    ids=["pod-gone", "playbook-killed"],
)
def test_controller_killed_while_evacuating_then_the_same_command_completes(clean_cloud, tmp_path, whole_tree):
    cloud = clean_cloud
    before = boot(cloud)
    cloud.fail_host(HOST, power="on")
    # The same command both times; a short lease so that a dead run's heartbeat goes stale in seconds.
    extra = dict(host_recovery_lease=20, host_recovery_verify_timeout=15, host_recovery_max_parallel=1, host_recovery_poll_interval=2)
    cmd = command(cloud, "recover-host.yml", HOST, tmp_path / "reports", **extra)
    first = subprocess.Popen(cmd, env=cloud.env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        migs = evacuations(cloud)
        if any(m["status"] in ("done", "completed") for m in migs) and len(migs) >= 2:
            break
        assert first.poll() is None, "the first run ended before it was killed"
        time.sleep(0.5)
    else:
        raise AssertionError("no evacuation in flight after 240 s")
    tree = kill(first, whole_tree)
    assert len(tree) >= 3, tree
    marker = service(cloud)["disabled_reason"]
    assert marker.startswith("novaha.recovery run ") and " lease 20; was: enabled" in marker, marker
    killed_run = marker.split()[2]

    proc = subprocess.run(cmd, env=cloud.env(), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert f"took over the stale run {killed_run}" in output or f"took over the ended run {killed_run}" in output

    assert_recovered_once(cloud, before)
    report = reports_of(tmp_path / "reports")[-1]
    assert report["outcome"] == "recovered" and report["run_id"] != killed_run
    # One report lists every server, those the killed run moved too.
    assert sorted(s["id"] for s in report["servers"]) == sorted(before)
    svc = service(cloud)
    assert svc["forced_down"] is True and svc["status"] == "disabled"
    assert svc["disabled_reason"].startswith(f"novaha.recovery run {report['run_id']} done ")


def test_two_runs_started_together_only_one_evacuates(clean_cloud, tmp_path):
    cloud = clean_cloud
    before = boot(cloud)
    cloud.fail_host(HOST, power="on")
    extra = dict(host_recovery_wait_for_run=240, host_recovery_poll_interval=2)
    procs = []
    for name in ("alert", "operator"):
        cmd = command(cloud, "recover-host.yml", HOST, tmp_path / name, **extra)
        procs.append(subprocess.Popen(cmd, env=cloud.env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True))
        time.sleep(0.3)
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    codes = [p.returncode for p in procs]

    assert_recovered_once(cloud, before)
    for output in outputs:
        assert "is not proven fenced, so nothing is evacuated" not in output, output
    # One run did the work; the other waited for it and found nothing left, or lost the claim and said so.
    assert 0 in codes, outputs
    waited = [o for o in outputs if "a live novaha.recovery run holds node-28" in o or "took over the ended run" in o]
    lost = [o for o in outputs if "claimed host node-28 at the same moment" in o]
    assert len(waited) + len(lost) >= 1, outputs
    if lost:
        (loser,) = [r for name in ("alert", "operator") for r in reports_of(tmp_path / name) if "at the same moment" in (r["reason"] or "")]
        assert loser["outcome"] == "aborted" and loser["rollback"]["performed"] is False


def test_a_stale_marker_of_a_gone_controller_is_taken_over(clean_cloud, tmp_path):
    cloud = clean_cloud
    before = boot(cloud, count=2)
    cloud.fail_host(HOST, power="on")
    # A run in an AWX pod that is gone: another host name, a heartbeat ten minutes old.
    dead_start = stamp(700)
    dead = f"novaha.recovery run deadrun01 evacuating ctl awx-job-gone@0badc0de start {dead_start} beat {stamp(600)} lease 300; was: enabled"
    set_service(cloud, {"status": "disabled", "disabled_reason": dead, "forced_down": True})

    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "reports")
    assert rc == 0, output
    assert "took over the stale run deadrun01 (controller awx-job-gone@0badc0de" in output
    assert_recovered_once(cloud, before)
    report = reports_of(tmp_path / "reports")[-1]
    assert report["outcome"] == "recovered"
    # The start of the dead run (where the resume looks for evacuations) and the service as it was before it
    # are carried on.
    marker = service(cloud)["disabled_reason"]
    assert f" start {dead_start} " in marker and marker.endswith("; was: enabled"), marker


def test_an_operators_reason_survives_recovery_and_restore(clean_cloud, tmp_path):
    cloud = clean_cloud
    before = boot(cloud, count=2)
    set_service(cloud, {"status": "disabled", "disabled_reason": "RMA-4711, do not enable"})
    cloud.fail_host(HOST, power="on")

    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "reports")
    assert rc == 0, output
    assert_recovered_once(cloud, before)
    assert service(cloud)["disabled_reason"].endswith("; was: disabled (RMA-4711, do not enable)")

    cloud.revive_host(HOST)
    rc, output = run(cloud, "restore-host.yml", HOST, tmp_path / "reports")
    assert rc == 0, output
    svc = service(cloud)
    assert (svc["forced_down"], svc["status"], svc["disabled_reason"]) == (False, "disabled", "RMA-4711, do not enable")
    assert "left disabled with the reason it had before the recovery: RMA-4711, do not enable" in output


def test_a_lease_under_ten_seconds_is_refused_before_anything_changes(clean_cloud, tmp_path):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "reports", host_recovery_lease=5)
    assert rc != 0 and "lease is 5: it must be 10 seconds or more" in output
    assert "the host_recovery role sets it from host_recovery_lease" in output
    svc = service(cloud)
    assert (svc["forced_down"], svc["status"], svc["disabled_reason"]) == (False, "enabled", None)


def test_a_metrics_dir_that_is_not_a_directory_is_refused_before_anything_changes(cloud, tmp_path):
    flags = ("forced_down", "status", "disabled_reason")
    before = {k: service(cloud)[k] for k in flags}
    missing = tmp_path / "textfile"
    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "reports", host_recovery_metrics_dir=str(missing))
    assert rc != 0 and f"host_recovery_metrics_dir: {missing} is not a directory on the controller" in output
    assert {k: service(cloud)[k] for k in flags} == before and not missing.exists()
    (report,) = reports_of(tmp_path / "reports")
    assert report["outcome"] == "aborted" and report["stopped"]["phase"] == "preflight"
    metrics = Path(report["files"]["directory"], "metrics.prom").read_text()
    assert f'novaha_recovery_outcome{{host="{HOST}",outcome="aborted"}} 1\n' in metrics


def test_restore_refuses_a_host_disabled_for_someone_elses_reason(clean_cloud, tmp_path):
    cloud = clean_cloud
    set_service(cloud, {"status": "disabled", "disabled_reason": "storage team maintenance"})

    rc, output = run(cloud, "restore-host.yml", HOST, tmp_path / "reports")
    assert rc != 0, output
    assert "is disabled, but not by novaha.recovery (disabled reason: 'storage team maintenance')" in output
    assert "restore_override=true" in output
    svc = service(cloud)
    assert (svc["status"], svc["disabled_reason"]) == ("disabled", "storage team maintenance")

    rc, output = run(cloud, "restore-host.yml", HOST, tmp_path / "reports", restore_override=True)
    assert rc == 0, output
    svc = service(cloud)
    assert (svc["forced_down"], svc["status"], svc["disabled_reason"]) == (False, "enabled", None)


def test_a_run_that_timed_out_is_not_recovered_and_the_same_command_finishes_it(clean_cloud, tmp_path):
    cloud = clean_cloud
    booted = cloud.boot(HOST, count=3, metadata={"novaha_fake:rebuild_delay": "20"})
    before = dict((s["id"], s["status"]) for s in booted)
    cloud.fail_host(HOST, power="on")
    extra = dict(host_recovery_evacuate_timeout=6, host_recovery_verify_timeout=5, host_recovery_poll_interval=2)

    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "reports", **extra)
    assert rc != 0, output
    first = reports_of(tmp_path / "reports")[-1]
    # Still moving at the timeout, our locks on them: never reported recovered.
    assert first["outcome"] in ("partial", "failed"), first["outcome"]
    assert all(s["outcome"] == "in_progress" for s in first["servers"]), [s["outcome"] for s in first["servers"]]
    locked = [s for s in servers(cloud).values() if (s.get("locked_reason") or "").startswith(LOCK_PREFIX)]
    assert len(locked) == 3
    # The run ended interrupted (os_recovery_run state=ended decided it) and its rollback kept the host isolated;
    # the verify phase waited in one task.
    svc = service(cloud)
    assert svc["disabled_reason"].startswith(f"novaha.recovery run {first['run_id']} interrupted ctl ")
    assert svc["forced_down"] is True and first["rollback"]["performed"] is False
    assert "FAILED - RETRYING" not in output

    # Once Nova finished the rebuilds, the same command finishes the recovery: our locks go, nothing is
    # evacuated twice.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(m["status"] in ("done", "completed") for m in evacuations(cloud)):
        time.sleep(2)
    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "reports", **extra)
    assert rc == 0, output
    assert_recovered_once(cloud, before)
    second = reports_of(tmp_path / "reports")[-1]
    assert second["outcome"] == "recovered" and sorted(s["id"] for s in second["servers"]) == sorted(before)
    done = service(cloud)
    assert done["disabled_reason"].startswith(f"novaha.recovery run {second['run_id']} done ctl ")
    assert second["isolation"]["marker"] == done["disabled_reason"], second["isolation"]

    # The host is recovered (marker done, compute still down, none of its servers left on it): the same command
    # again changes nothing - no claim, no fencing, no marker written - and its report says why.
    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "reports", **extra)
    assert rc == 0, output
    recap = output.split("PLAY RECAP", 1)[1]
    assert f"{HOST}                    : " in recap and " changed=0 " in recap.split(HOST, 1)[1].splitlines()[0], recap
    third = reports_of(tmp_path / "reports")[-1]
    assert third["run_id"] != second["run_id"] and third["outcome"] == "nothing_to_do", third["reason"]
    assert third["reason"].startswith(f"already recovered by run {second['run_id']}; nothing to do"), third["reason"]
    assert third["already_recovered"]["run_id"] == second["run_id"] and third["fencing"]["fenced"] is None
    # The report's marker is the earlier run's, as the preflight's module returned it.
    assert third["isolation"]["marker"] == done["disabled_reason"], third["isolation"]
    assert [p["name"] for p in third["phases"]] == ["preflight", "report"], third["phases"]
    assert service(cloud) == done and len(evacuations(cloud)) == len(before)


def test_the_same_state_gives_the_same_outcome_when_run_again(clean_cloud, tmp_path):
    cloud = clean_cloud
    active = cloud.boot(HOST, count=2)
    (paused,) = cloud.boot(HOST, count=1, status="PAUSED", name="paused")
    cloud.fail_host(HOST, power="on")

    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "first")
    assert rc != 0, output
    (first,) = reports_of(tmp_path / "first")
    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "again")
    assert rc != 0, output
    (again,) = reports_of(tmp_path / "again")

    assert first["outcome"] == again["outcome"] == "partial", (first["reason"], again["reason"])
    outcomes = dict((s["id"], s["outcome"]) for s in again["servers"])
    assert outcomes[paused["id"]] == "refused" and set(outcomes) == {paused["id"]} | set(s["id"] for s in active)
    # The host stays isolated for the paused server; nothing was evacuated twice.
    svc = service(cloud)
    assert svc["forced_down"] is True and svc["status"] == "disabled"
    assert len(evacuations(cloud)) == 2
    assert again["rollback"] is None or again["rollback"]["performed"] is False


def test_a_host_with_nothing_to_evacuate_ends_with_its_isolation(clean_cloud, tmp_path):
    cloud = clean_cloud
    cloud.fail_host(HOST, power="on")
    rc, output = run(cloud, "recover-host.yml", HOST, tmp_path / "reports")
    assert rc == 0, output
    report = reports_of(tmp_path / "reports")[-1]
    svc = service(cloud)
    # Fenced, isolated, and the run ended done, with its token, in the isolation's own module run.
    assert svc["forced_down"] is True and svc["status"] == "disabled", svc
    assert svc["disabled_reason"].startswith(f"novaha.recovery run {report['run_id']} done ctl "), svc
    words = report["isolation"]["msg"]
    assert words.startswith(f"run {report['run_id']} on {HOST}: forced down, disabled, phase isolated; then ended: phase done; revoked 1 Keystone tokens"), (
        words
    )
    ending = output.split("End of the run - mark this run's marker", 1)[1].split("TASK [", 1)[0]
    assert "skipping:" in ending and "changed:" not in ending and "ok:" not in ending, ending
    assert report["outcome"] == "nothing_to_do" and report["servers"] == [] and report["fencing"]["fenced"] is True
    assert report["isolation"]["marker"] == svc["disabled_reason"], report["isolation"]
    assert not (Path.home() / ".ansible" / "tmp" / f"novaha-recovery-{report['run_id']}.token").exists()
