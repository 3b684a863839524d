"""Chaos runs (issue 14, item 4) of recover-host.yml on the local cloud, each judged by what Nova shows after it.

- The controller SIGKILLed at a point of every phase (preflight, fence, isolate, evacuate, verify, report),
  chosen from a seeded list of kill points (a task of the job starting, or a state Nova shows, plus a seeded
  small delay), either way (the whole process tree, as a pod dying; or only ansible-playbook), then the same
  command: every server recovered, exactly one evacuation migration each, no lock or metadata of ours left, the
  host forced down and disabled under the final marker, a report listing every server.
- A whole recovery with 10 % of the collection's requests to Nova and to Keystone failing (503 before the
  service acts, or a connection reset after it acted, the answer lost), seeded: it completes, or it stops with
  a clear error, every server in its report and no lock of ours on a server not reported in progress; the
  same command then finishes it.

`make chaos` runs them all (tests marked ``chaos``); `make test` runs the fast subset (the ones not marked
``chaos_only``). Environment: NOVAHA_CHAOS_SEED (the seeded list), NOVAHA_CHAOS_COUNT (how many kill points),
NOVAHA_CHAOS_FAULT_RUNS (how many 10 % runs, each with its own seed), NOVAHA_CHAOS_RESULTS (a JSON-lines file
each run appends what it measured to; hack/chaos_table.py renders it for docs/reliability.md).
"""

import json
import os
import random
import re
import subprocess
import threading
import time
from collections import namedtuple

import pytest

from conftest import ROOT
from recovery_helpers import HOST, LOCK_PREFIX, NOTE_KEY, boot, command, kill as sigkill, outcome_in_nova, reports_of, servers as all_servers, service

SEED = int(os.environ.get("NOVAHA_CHAOS_SEED", "14"))
FAULT_RUNS = int(os.environ.get("NOVAHA_CHAOS_FAULT_RUNS", "3"))
# The same command every time, for the killed run and the one after it: a short lease so that a killed run's
# heartbeat goes stale in seconds; rebuilds of 5 s (recovery_helpers.boot) two at a time, so that the
# evacuate phase lasts long enough to be hit.
EXTRA = dict(host_recovery_lease=20, host_recovery_verify_timeout=60, host_recovery_max_parallel=2, host_recovery_poll_interval=2)
MODES = ("pod-gone", "playbook-killed")

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


# ---------------------------------------------------------------------------------------------------------
# Kill points: when to kill. ``task``: the job output shows this task starting; ``nova``: Nova shows this state
# (a predicate on one reading). Then a seeded delay of up to ``max_delay`` seconds.

KillPoint = namedtuple("KillPoint", "name phase task nova max_delay")


def marker_phase(phase):
    return lambda seen: f" {phase} ctl " in (seen["service"]["disabled_reason"] or "")


def migrations(least, done=False):
    def test(seen):
        migs = [m for m in seen["migrations"] if not done or m["status"] in ("done", "completed")]
        return len(migs) >= (seen["servers"] if least == "all" else least)

    return test


# A host with servers is isolated by the evacuate phase's module as its first write (the isolate phase's task runs
# only for a host with nothing to evacuate), and the claim rides in the preflight's module run: those points follow.
KILL_POINTS = [
    KillPoint("preflight-waiting", "preflight", "Preflight - wait for the service down, then snapshot", None, 3.0),
    KillPoint("preflight-claim", "preflight", None, marker_phase("claimed"), 0.5),
    KillPoint("preflight-claimed", "preflight", "Preflight - the plan, and who held the host", None, 0.3),
    KillPoint("fence-power-off", "fence", "Fence - power off through the BMC and prove it Off", None, 2.0),
    KillPoint("fence-verdict", "fence", "Fence - the verdict", None, 0.3),
    KillPoint("isolate-forcing-down", "isolate", "Evacuate - force down the nova-compute service under this run's marker", None, 1.5),
    KillPoint("isolate-marker", "isolate", None, marker_phase("isolated"), 0.5),
    KillPoint("evacuate-starting", "evacuate", "Evacuate - start", None, 1.0),
    KillPoint("evacuate-first-migration", "evacuate", None, migrations(1), 0.5),
    KillPoint("evacuate-one-done", "evacuate", None, migrations(1, done=True), 0.5),
    KillPoint("evacuate-all-done", "evacuate", None, migrations("all", done=True), 0.3),
    KillPoint("verify-waiting", "verify", "Verify - wait until every evacuated server", None, 2.0),
    KillPoint("verify-marker", "verify", None, marker_phase("verifying"), 1.0),
    KillPoint("verify-verdicts", "verify", "Verify - keep the verdicts", None, 0.2),
    KillPoint("report-end-marker", "report", "End of the run - mark this run's marker", None, 1.0),
    KillPoint("report-building", "report", "Report - assemble the report and decide the outcome", None, 0.5),
    KillPoint("report-writing", "report", "Report - write report.json", None, 0.2),
    KillPoint("report-written", "report", "Report - keep the outcome as job artifacts", None, 0.1),
]
BY_NAME = dict((p.name, p) for p in KILL_POINTS)
PHASES = ("preflight", "fence", "isolate", "evacuate", "verify", "report")

Kill = namedtuple("Kill", "point mode delay")


def kill_plan(seed, count):
    """``count`` kills drawn with ``seed``: kill points taken round-robin over the phases (shuffled within each),
    so that a short list still spreads over every phase, the catalogue again past its end; each with a seeded
    delay and way of killing."""
    rng = random.Random(seed)
    groups = [[p for p in KILL_POINTS if p.phase == phase] for phase in PHASES]
    order = []
    while len(order) < count:
        for group in groups:
            rng.shuffle(group)
        for i in range(max(len(g) for g in groups)):
            order += [g[i] for g in groups if i < len(g)]
    order = order[:count]
    # Alternating, and flipped each round, so that every kill point is killed both ways over two rounds.
    first_mode = rng.randrange(2)
    return [Kill(p, MODES[(i + i // len(PHASES) + first_mode) % 2], round(rng.uniform(0, p.max_delay), 1)) for i, p in enumerate(order)]


PLAN = kill_plan(SEED, int(os.environ.get("NOVAHA_CHAOS_COUNT", len(KILL_POINTS))))
# The fast subset in `make test`: the AWX story, the pod gone (a new hostname next time) while the servers are moving,
# once the first one's evacuation is done; test_recovery_run.py's kill tests are `make chaos` only (`make test` must
# stay under 50 minutes; `make chaos` runs every phase, both ways of killing).
SUBSET = [Kill(BY_NAME["evacuate-one-done"], "pod-gone", 0.5)]


def kill_params(kills, marks=()):
    return [pytest.param(k, marks=list(marks), id=f"{i:02d}-{k.point.name}-{k.mode}-{k.delay}s") for i, k in enumerate(kills, 1)]


# ---------------------------------------------------------------------------------------------------------
# Measuring and recording


def record(entry):
    """Append what a run measured to NOVAHA_CHAOS_RESULTS (JSON lines), when set."""
    path = os.environ.get("NOVAHA_CHAOS_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")


def measure(cloud, before, report):
    problems, per_server = outcome_in_nova(cloud, before)
    svc = service(cloud)
    reported = dict((s["id"], s["outcome"]) for s in (report or {}).get("servers", []))
    return dict(
        servers=len(before),
        recovered=sum(1 for sid in before if not problems[sid]),
        evacuations=sum(per_server.values()),
        duplicate_evacuations=sum(n - 1 for n in per_server.values() if n > 1),
        not_evacuated=sum(1 for n in per_server.values() if n == 0),
        locks_left=sum(1 for p in problems.values() for x in p if x.startswith("our lock")),
        notes_left=sum(1 for p in problems.values() for x in p if x.startswith("our metadata")),
        problems=dict((sid, p) for sid, p in problems.items() if p),
        forced_down=svc["forced_down"],
        status=svc["status"],
        marker=svc["disabled_reason"],
        report_outcome=(report or {}).get("outcome"),
        report_run_id=(report or {}).get("run_id"),
        report_reason=(report or {}).get("reason"),
        reported=len(set(reported) & set(before)),
        reported_outcomes=sorted(reported.values()),
    )


class Job:
    """recover-host.yml running in the background, its output read line by line as it comes."""

    TASK_RE = re.compile(r"^TASK \[(?:[^\]]*? : )?(?P<name>[^\]]*)\]")

    def __init__(self, cloud, cmd):
        env = dict(cloud.env(), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines = []
        self.tasks = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            match = self.TASK_RE.match(line)
            if match:
                self.tasks.append(match.group("name"))

    def started(self, task):
        return any(name.startswith(task) for name in self.tasks)

    def last_task(self):
        return self.tasks[-1] if self.tasks else None

    def output(self):
        return "".join(self.lines)


def nova_reading(conn):
    svc = [s for s in conn.compute.get("/os-services?binary=nova-compute", microversion="2.53").json()["services"] if s["host"] == HOST][0]
    migs = conn.compute.get(f"/os-migrations?migration_type=evacuation&source_compute={HOST}", microversion="2.59").json()["migrations"]
    return dict(service=svc, migrations=migs)


def wait_for_kill_point(cloud, job, point, servers, timeout=300):
    """Return once the kill point is reached; fail when the job ends before it."""
    conn = cloud.connect(internal=True) if point.nova else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if point.task and job.started(point.task):
            return
        if point.nova and point.nova(dict(nova_reading(conn), servers=servers)):
            return
        assert job.proc.poll() is None, f"the run ended ({job.proc.returncode}) before kill point {point.name}:\n" + job.output()[-3000:]
        time.sleep(0.2 if point.task else 0.3)
    raise AssertionError(f"kill point {point.name} not reached in {timeout} s:\n" + job.output()[-3000:])


# ---------------------------------------------------------------------------------------------------------
# The controller killed at a kill point, then the same command


def controller_killed_then_same_command(cloud, tmp_path, kill):
    before = boot(cloud)
    cloud.fail_host(HOST, power="on")
    cmd = command(cloud, "recover-host.yml", HOST, tmp_path / "reports", **EXTRA)
    started = time.monotonic()
    first = Job(cloud, cmd)
    wait_for_kill_point(cloud, first, kill.point, len(before))
    time.sleep(kill.delay)
    killed_in = first.last_task()
    assert first.proc.poll() is None, f"the run ended before the kill ({kill}):\n" + first.output()[-3000:]
    sigkill(first.proc, kill.mode == "pod-gone")
    killed_at = round(time.monotonic() - started, 1)
    at_kill = service(cloud)["disabled_reason"]
    (tmp_path / "first.log").write_text(first.output())

    again = time.monotonic()
    proc = subprocess.run(cmd, env=cloud.env(), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    (tmp_path / "second.log").write_text(output)
    reports = reports_of(tmp_path / "reports")
    report = reports[-1] if reports else None
    seen = measure(cloud, before, report)
    record(
        dict(
            seen,
            test="kill",
            point=kill.point.name,
            phase=kill.point.phase,
            mode=kill.mode,
            delay=kill.delay,
            seed=SEED,
            killed_in=killed_in,
            killed_after=killed_at,
            marker_at_kill=at_kill,
            rc=proc.returncode,
            seconds_after=round(time.monotonic() - again, 1),
        )
    )

    context = f"killed at {kill} in task {killed_in!r}, marker then {at_kill!r}; logs in {tmp_path}"
    assert proc.returncode == 0, context + "\n" + output[-4000:]
    assert not seen["problems"] and seen["recovered"] == len(before), (context, seen["problems"])
    assert seen["duplicate_evacuations"] == 0 and seen["not_evacuated"] == 0, (context, seen)
    assert report is not None and report["outcome"] == "recovered", (context, report and report["reason"])
    assert sorted(s["id"] for s in report["servers"]) == sorted(before), context
    assert seen["forced_down"] is True and seen["status"] == "disabled", (context, seen)
    assert seen["marker"].startswith(f"novaha.recovery run {report['run_id']} done "), (context, seen["marker"])


@pytest.mark.parametrize("kill", kill_params(SUBSET))
def test_controller_killed_then_the_same_command_recovers_every_server_once(clean_cloud, tmp_path, kill):
    controller_killed_then_same_command(clean_cloud, tmp_path, kill)


@pytest.mark.parametrize("kill", kill_params(PLAN, marks=[pytest.mark.chaos_only]))
def test_chaos_controller_killed_at_a_seeded_kill_point(clean_cloud, tmp_path, kill):
    controller_killed_then_same_command(clean_cloud, tmp_path, kill)


# ---------------------------------------------------------------------------------------------------------
# 10 % of the requests to Nova and Keystone fail during a whole recovery

FAULT_RATE = 0.10


def inject(faults, seed):
    """About FAULT_RATE of the requests to each service fail: half a 503 before the service sees the request,
    half a connection reset after it acted (the answer lost); each rule its own seeded draw."""
    error_rate = FAULT_RATE / 2
    reset_rate = round((FAULT_RATE - error_rate) / (1 - error_rate), 4)
    for n, svc in enumerate(("nova", "keystone")):
        faults.error(svc, status=503, rate=error_rate, seed=seed * 10 + 2 * n)
        faults.reset(svc, rate=reset_rate, seed=seed * 10 + 2 * n + 1, phase="response")


def faults_seen(faults):
    out = {}
    for svc in ("nova", "keystone"):
        entries = faults.requests(svc)
        out[svc] = dict(requests=len(entries), faulted=sum(1 for e in entries if e.get("fault")))
    return out


def api_faults_then_same_command(cloud, faults, tmp_path, seed):
    booted = cloud.boot(HOST, count=5, metadata={"novaha_fake:rebuild_delay": "3"})
    booted += cloud.boot(HOST, count=1, status="SHUTOFF", name="stopped", metadata={"novaha_fake:rebuild_delay": "3"})
    before = dict((s["id"], s["status"]) for s in booted)
    cloud.fail_host(HOST, power="on")
    cmd = command(cloud, "recover-host.yml", HOST, tmp_path / "faulted", host_recovery_poll_interval=2, host_recovery_max_parallel=3)
    faults.clear_log()
    inject(faults, seed)
    proc = subprocess.run(cmd, env=cloud.env(), cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False)
    output = proc.stdout + proc.stderr
    seen_faults = faults_seen(faults)
    faults.clear()
    (tmp_path / "faulted.log").write_text(output)
    reports = reports_of(tmp_path / "faulted")
    report = reports[-1] if reports else None
    seen = measure(cloud, before, report)
    reported = dict((s["id"], s["outcome"]) for s in (report or {}).get("servers", []))
    servers_now = dict((sid, s) for sid, s in all_servers(cloud).items() if sid in before)
    locked = [sid for sid, s in servers_now.items() if (s.get("locked_reason") or "").startswith(LOCK_PREFIX) or NOTE_KEY in s["metadata"]]
    unreported_locks = [sid for sid in locked if reported.get(sid) not in ("in_progress", "pending")]

    # The same command, the API healthy again, finishes whatever is left.
    proc2 = subprocess.run(
        command(cloud, "recover-host.yml", HOST, tmp_path / "after"), env=cloud.env(), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    (tmp_path / "after.log").write_text(proc2.stdout + proc2.stderr)
    after_reports = reports_of(tmp_path / "after")
    after = measure(cloud, before, after_reports[-1] if after_reports else None)
    record(
        dict(
            seen,
            test="faults",
            seed=seed,
            rate=FAULT_RATE,
            rc=proc.returncode,
            faults=seen_faults,
            unreported_locks=len(unreported_locks),
            then=dict(after, rc=proc2.returncode),
        )
    )

    context = f"seed {seed}, faults {seen_faults}; logs in {tmp_path}"
    assert report is not None, context + "\n" + output[-4000:]
    assert "MODULE FAILURE" not in output and "Traceback" not in output, context + "\n" + output[-4000:]
    assert seen["duplicate_evacuations"] == 0, (context, seen)
    if proc.returncode == 0:
        assert report["outcome"] == "recovered" and not seen["problems"], (context, seen)
        assert seen["not_evacuated"] == 0, (context, seen)
    else:
        # Stopped: a clear reason, nothing half-done unreported.
        assert report["outcome"] != "recovered" and report["reason"], (context, report["outcome"])
        assert not unreported_locks, (context, reported, locked)
        if seen["evacuations"]:
            assert seen["reported"] == len(before), (context, reported)
    assert sorted(reported) == sorted(before) or (report["outcome"] == "aborted" and not seen["evacuations"] and not locked), (
        context,
        report["outcome"],
        reported,
    )
    # And the same command finishes the recovery, each server evacuated once.
    assert proc2.returncode == 0, context + "\n" + (proc2.stdout + proc2.stderr)[-4000:]
    assert not after["problems"] and after["duplicate_evacuations"] == 0 and after["not_evacuated"] == 0, after
    # (Keystone sees few requests: the modules of a run share one token.)
    assert seen_faults["nova"]["faulted"] > 0, seen_faults


def test_ten_percent_of_nova_and_keystone_requests_failing_during_a_recovery(clean_cloud, faults, tmp_path):
    api_faults_then_same_command(clean_cloud, faults, tmp_path, seed=1)


@pytest.mark.chaos_only
@pytest.mark.parametrize("seed", [SEED * 100 + n for n in range(1, FAULT_RUNS + 1)])
def test_chaos_ten_percent_api_faults_with_a_seed(clean_cloud, faults, tmp_path, seed):
    api_faults_then_same_command(clean_cloud, faults, tmp_path, seed)
