"""playbooks/recover-host.yml and restore-host.yml on the local cloud, run as an operator runs them (and once as
AWX runs the job template, through ansible-runner: test_recover_end_to_end[newest]).

ansible-playbook with the local cloud's inventory (each compute host with its bmc_* vars), so the role
fences through the Redfish BMC emulator, isolates through real Nova, evacuates through os_host_evacuate
and writes its report. Every assertion reads the outcome back from Nova, the BMC or the report files.
"""

import base64
import datetime
import json
import os
import re
import shutil
import ssl
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

import awx_job
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


def projects_of(cloud):
    """Every server: id -> its project id."""
    body = cloud.connect().compute.get("/servers/detail?all_tenants=True", microversion="2.73").json()
    return {s["id"]: s["tenant_id"] for s in body["servers"]}


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


def metrics_of(path):
    """The samples of a metrics file, {(name, frozenset of labels): value}, after `promtool check metrics` took it
    as it is (no lint complaint either)."""
    text = path.read_text()
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: hack/install.sh installs Debian's prometheus package"
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr
    samples = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            name, labels, value = re.match(r"^(\w+)\{(.*)\} (\S+)$", line).groups()
            samples[(name, frozenset(re.findall(r'(\w+)="([^"]*)"', labels)))] = float(value)
    return samples


def metric(samples, name, host=HOST, **labels):
    return samples[("novaha_recovery_" + name, frozenset(dict(host=host, **labels).items()))]


def epoch(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def boot_story(cloud):
    """Three ACTIVE servers and one SHUTOFF server on node-28: id -> status before."""
    booted = cloud.boot(HOST, count=3) + cloud.boot(HOST, count=1, status="SHUTOFF", name="stopped")
    return {s["id"]: s["status"] for s in booted}


# The collection as a user gets it: `ansible-galaxy collection build` from this checkout, `ansible-galaxy collection
# install` of the tarball into a directory of the test's own (the only collection path), with the oldest
# ansible-core meta/runtime.yml claims (.venv/core-oldest, tests/requirements-oldest.txt) and the newest (.venv/dev).
# The oldest runs as an operator does, `ansible-playbook novaha.recovery.recover_host`; the newest as AWX runs the job
# template "novaha recover host" of extensions/awx/, through ansible-runner (awx_runner_job). noxfile.py's
# e2e-<version> sessions name more virtualenvs in NOVAHA_E2E_VENVS (os.pathsep separated), each run as the oldest.
CLAIMED = re.search(r'requires_ansible:\s*"?>=\s*(\d+\.\d+)', (ROOT / "meta" / "runtime.yml").read_text()).group(1)


def core_venvs():
    found = {"oldest": ROOT / ".venv" / "core-oldest", "newest": DEV_BIN.parent}
    for extra in filter(None, os.environ.get("NOVAHA_E2E_VENVS", "").split(os.pathsep)):
        found[Path(extra).name] = Path(extra)
    return found


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The collection built once from this checkout, as `ansible-galaxy collection build` makes it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(DEV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(ROOT)], check=True, capture_output=True, text=True)
    (built,) = out.glob("novaha-recovery-*.tar.gz")
    return built


def core_version(venv):
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import ansible.release as r; print(r.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()


def install_collection(venv, tarball, collections):
    """`ansible-galaxy collection install` of the tarball into ``collections`` with the virtualenv's ansible-galaxy."""
    subprocess.run(
        [str(venv / "bin" / "ansible-galaxy"), "collection", "install", "-p", str(collections), str(tarball)],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
    )
    installed = collections / "ansible_collections" / "novaha" / "recovery"
    assert (installed / "MANIFEST.json").exists() and not installed.is_symlink()
    return installed


def installed_playbook(cloud, venv, tarball, tmp_path, metrics_dir):
    """The operator's command line: install the tarball with the virtualenv's ansible-galaxy, run
    novaha.recovery.recover_host with its ansible-playbook; returns (returncode, output, report, reports root)."""
    collections = tmp_path / "collections"
    install_collection(venv, tarball, collections)
    env = dict(
        cloud.env(),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_PYTHON_INTERPRETER=str(venv / "bin" / "python"),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    extra = {"host_recovery_report_root": str(tmp_path / "reports"), "host_recovery_metrics_dir": str(metrics_dir)}
    proc = subprocess.run(
        [
            str(venv / "bin" / "ansible-playbook"),
            "-i",
            str(cloud.inventory),
            "novaha.recovery.recover_host",
            "-e",
            f"recover_host={HOST}",
            "-e",
            json.dumps(extra),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr, report_of(tmp_path, HOST), tmp_path / "reports"


# The survey's answers of the AWX job (the others are the survey's defaults): a window of 3 evacuations at most.
SURVEY_ANSWERS = {"recover_host": HOST, "host_recovery_max_parallel": 3, "host_recovery_fence": "true"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def awx_runner_job(cloud, venv, tarball, tmp_path, metrics_dir):
    """What AWX runs for the job template "novaha recover host" launched with SURVEY_ANSWERS (tests/integration/
    awx_job.py): a private data directory as AWX lays it out - the project's checkout in project/, the collection
    installed from the tarball into requirements_collections/, the inventory script without the BMC account (the
    "novaha BMC" credential injects it), the OpenStack credential's clouds.yaml - run by the virtualenv's
    ansible-runner. The report root is the role's default (relative: in the job's project/ directory); the metrics
    directory is a site setting of the inventory. Returns (returncode, the job's output, report, reports root, the
    job: private data directory, artifacts, events, process)."""
    pdd = tmp_path / f"awx_{awx_job.JOB_ID}_pdd"
    template = awx_job.job_template()
    install_collection(venv, tarball, awx_job.requirements_collections(pdd))
    inventory = json.loads(cloud.inventory.read_text())  # the local cloud writes JSON (valid YAML)
    inventory["all"]["vars"]["host_recovery_metrics_dir"] = str(metrics_dir)
    bmc = cloud.bmc(HOST)
    auth = json.loads(cloud.clouds_yaml.read_text())["clouds"][cloud.admin_cloud]["auth"]
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    project_files = {name: ROOT / name for name in listed.stdout.split("\0") if name and (ROOT / name).is_file()}
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    awx_job.write_private_data_dir(
        pdd,
        template=template,
        extra_vars=awx_job.launch_extra_vars(template, SURVEY_ANSWERS),
        project_files=project_files,
        project_revision=revision,
        inventory=inventory,
        credentials=[(awx_job.credential_type("novaha BMC"), {"bmc_username": bmc["username"], "bmc_password": bmc["password"]})],
        openstack={
            "host": auth["auth_url"],
            "username": auth["username"],
            "password": auth["password"],
            "project": auth["project_name"],
            "project_domain_name": auth["project_domain_name"],
            "domain": auth["user_domain_name"],
            "region": "RegionOne",
            "verify_ssl": False,
        },
        path=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    # The runner starts with nothing of the test's environment (no clouds.yaml, no collections path of the checkout).
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", "HOME": os.environ["HOME"], "LANG": "C.UTF-8"}
    proc, artifacts = awx_job.run_job(venv / "bin" / "ansible-runner", pdd, template, env)
    events = awx_job.job_events(artifacts) if artifacts.exists() else []
    output = ANSI.sub("", awx_job.job_stdout(events)) + proc.stdout + proc.stderr
    reports = pdd / "project" / "reports"
    found = sorted(reports.glob(f"{HOST}-*/report.json"))
    report = json.loads(found[-1].read_text()) if found else None
    rc = int((artifacts / "rc").read_text()) if (artifacts / "rc").exists() else proc.returncode or -1
    return rc, output, report, reports, {"pdd": pdd, "artifacts": artifacts, "events": events, "process": proc}


@pytest.mark.parametrize("core", sorted(core_venvs()))
def test_recover_end_to_end(core, tarball, clean_cloud, tmp_path):
    venv = core_venvs()[core]
    if not (venv / "bin" / "ansible-playbook").exists():
        pytest.fail(f"{venv} has no ansible-playbook: `make install` creates .venv/core-oldest")
    cloud = clean_cloud
    before = boot_story(cloud)
    cloud.fail_host(HOST, power="on")
    assert power_of(cloud, HOST) == "On"

    textfile = tmp_path / "textfile"  # node_exporter's textfile collector directory
    textfile.mkdir()
    version = core_version(venv)
    if core == "oldest":
        assert version.startswith(CLAIMED + "."), (version, CLAIMED)  # the oldest we claim, not another
    if core == "newest":  # as AWX runs the job template, through ansible-runner
        rc, output, report, reports, job = awx_runner_job(cloud, venv, tarball, tmp_path, textfile)
    else:  # as an operator runs it
        rc, output, report, reports = installed_playbook(cloud, venv, tarball, tmp_path, textfile)
    assert rc == 0, f"ansible-core {version}:\n{output[-6000:]}"

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
    directory = reports / f"{HOST}-{report['started_at'].replace('-', '').replace(':', '')}-{report['run_id']}"
    assert report["files"]["directory"] == str(directory)
    snapshot = json.loads((directory / "snapshot.json").read_text())
    assert {s["id"] for s in snapshot["servers"]} == set(before)
    html = (directory / "report.html").read_text()
    assert "<svg" in html and all(s["name"] in html for s in report["servers"])
    assert "RECOVERED" in (directory / "report.md").read_text()
    # metrics.prom says the same as report.json, in a form promtool accepts; the collector's copy is the same
    # text, readable by node_exporter, with no temporary file left beside it.
    metrics = metrics_of(directory / "metrics.prom")
    assert metric(metrics, "run_info", run_id=report["run_id"], outcome="recovered", check_mode="false") == 1
    assert metric(metrics, "outcome", outcome="recovered") == 1 and metric(metrics, "needs_attention") == 0
    others = ("partial", "failed", "aborted", "nothing_to_do", "planned")
    assert sum(metric(metrics, "outcome", outcome=o) for o in others) == 0
    assert metric(metrics, "servers", result="recovered") == len(report["servers"]) == len(before)
    assert metric(metrics, "servers", result="failed") == 0
    assert metric(metrics, "servers", result="skipped") == len(report["skipped"])
    assert {p["name"]: metric(metrics, "phase_seconds", phase=p["name"]) for p in report["phases"]} == {p["name"]: p["seconds"] for p in report["phases"]}
    assert metric(metrics, "fencing_seconds") == report["fencing"]["fence_seconds"] >= 0
    last_recovered = max(epoch(s["finished_at"]) for s in report["servers"])
    assert metric(metrics, "time_to_all_recovered_seconds") == last_recovered - epoch(report["started_at"]) > 0
    assert metric(metrics, "run_finished_timestamp_seconds") == epoch(report["finished_at"])
    assert metric(metrics, "run_duration_seconds") == epoch(report["finished_at"]) - epoch(report["started_at"])
    published = textfile / f"novaha_recovery_{HOST}.prom"
    assert published.read_text() == (directory / "metrics.prom").read_text()
    assert published.stat().st_mode & 0o777 == 0o644 and [p.name for p in textfile.iterdir()] == [published.name]
    # The modules shared one Keystone token through a private file, removed at the end.
    assert not (Path.home() / ".ansible" / "tmp" / f"novaha-recovery-{report['run_id']}.token").exists()

    # The waits (service down, verify) are single tasks that say what they waited for, never retried tasks.
    assert "FAILED - RETRYING" not in output
    assert f"{len(before)} of {len(before)} servers verified in their expected state on healthy hosts" in output

    # The last task output is the summary, one line per host naming its report.
    last = last_task_output(output)
    assert "Summary - one line per host" in last and f"{HOST}: RECOVERED" in last and str(directory) in last
    if core == "newest":
        awx_job_is_what_awx_shows(cloud, job, report)


def awx_job_is_what_awx_shows(cloud, job, report):
    """The AWX job of test_recover_end_to_end: its status, its artifacts (set_stats) saying what report.json says,
    the survey's answers applied, the collection taken from the job's requirements_collections/, and no secret in
    anything the job keeps (its output, its events, its artifacts)."""
    artifacts, events = job["artifacts"], job["events"]
    assert (artifacts / "status").read_text() == "successful" and (artifacts / "rc").read_text() == "0"
    assert job["process"].stdout == ""  # the runner prints nothing of its own (env/settings): AWX shows the events
    assert [e["event"] for e in events][0] == "playbook_on_start" and events[-1]["event"] == "playbook_on_stats"

    # The job's artifacts, as AWX stores them and hands them to the next nodes of a workflow.
    stats = awx_job.job_artifacts(events)
    assert set(stats) == {"host_recovery"} and set(stats["host_recovery"]) == {HOST}, stats
    outcome = stats["host_recovery"][HOST]
    assert outcome == {
        "outcome": "recovered",
        "needs_attention": False,
        "run_id": report["run_id"],
        "reason": report["reason"],
        "report_dir": report["files"]["directory"],
        "summary": report["evacuation"]["summary"],
        "servers": {s["name"]: "recovered" for s in report["servers"]},
    }, outcome
    assert Path(outcome["report_dir"]).parent == job["pdd"] / "project" / "reports"  # the default root: inside the job

    # The survey's answers reached the run: at most 3 evacuations in flight (4 servers; 10 without the answer).
    assert 1 <= report["evacuation"]["summary"]["max_in_flight"] <= 3, report["evacuation"]["summary"]
    # The role's tasks came from the collection installed for the job, not from the project's checkout.
    installed = str(awx_job.requirements_collections(job["pdd"]) / "ansible_collections" / "novaha" / "recovery" / "roles" / "host_recovery") + "/"
    role_files = {e["event_data"]["task_path"].rsplit(":", 1)[0] for e in events if "/roles/host_recovery/" in e.get("event_data", {}).get("task_path", "")}
    assert all(path.startswith(installed) for path in role_files), sorted(role_files)
    assert {"tasks/fence.yml", "tasks/report.yml"} <= {path.removeprefix(installed) for path in role_files}, sorted(role_files)

    # The BMC account came from the credential only (the inventory has none), and no secret shows in what the job
    # keeps: its output, its events, the artifacts' set_stats, the runner's record of the command and environment.
    assert "bmc_password" not in (job["pdd"] / "inventory" / "hosts").read_text()
    secrets = {"BMC": cloud.bmc(HOST)["password"], "cloud": admin_password(cloud)}
    kept = {p: p.read_text() for p in artifacts.rglob("*") if p.is_file()}
    assert any(p.parent.name == "job_events" for p in kept) and (artifacts / "command") in kept
    for name, secret in secrets.items():
        leaks = [str(p.relative_to(artifacts)) for p, text in kept.items() if secret in text]
        assert not leaks, f"the {name} password is in {leaks}"


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

    textfile = tmp_path / "textfile"
    textfile.mkdir()
    rc, output, report = playbook(cloud, "recover-host.yml", HOST, tmp_path, check=True, verbosity=4, host_recovery_metrics_dir=str(textfile))
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
    # The plan in numbers beside the report; the collector keeps the host's last real run (none here).
    metrics = metrics_of(Path(report["files"]["directory"]) / "metrics.prom")
    assert metric(metrics, "run_info", run_id=report["run_id"], outcome="planned", check_mode="true") == 1
    assert metric(metrics, "servers", result="planned") == len(before)
    assert list(textfile.iterdir()) == []

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
    amphora = active.pop()  # named as Octavia names it: left to Octavia by default (test_recovered_by_services.py)
    amphora["name"] = f"amphora-{uuid.uuid4()}"
    renamed = cloud.connect().compute.put(f"/servers/{amphora['id']}", json={"server": {"name": amphora["name"]}})
    assert renamed.status_code == 200, renamed.text
    (paused,) = cloud.boot(HOST, count=1, status="PAUSED", name="paused", project="member")
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
    metrics = metrics_of(Path(report["files"]["directory"]) / "metrics.prom")
    assert metric(metrics, "outcome", outcome="partial") == 1 and metric(metrics, "needs_attention") == 1
    assert (metric(metrics, "servers", result="recovered"), metric(metrics, "servers", result="failed")) == (len(active), 1)
    assert ("novaha_recovery_time_to_all_recovered_seconds", frozenset({("host", HOST)})) not in metrics

    # The amphora was left on the host for Octavia; each project is told what happened to its servers.
    assert now[amphora["id"]][0] == HOST
    (skipped,) = report["skipped"]
    assert (skipped["id"], skipped["kind"], skipped["service"]) == (amphora["id"], "recovered_by_service", "octavia")
    project_of = projects_of(cloud)
    admin_project, member_project = project_of[active[0]["id"]], project_of[paused["id"]]
    projects = dict((p["project_id"], p) for p in report["projects"])
    assert set(projects) == {admin_project, member_project}, projects
    admin, member = projects[admin_project], projects[member_project]
    assert (admin["servers"], admin["recovered"], admin["not_recovered"], admin["skipped"]) == (2, 1, 0, 1)
    assert admin["left_to_services"] == {"octavia": 1} and admin["attention"] == []
    assert (member["servers"], member["recovered"], member["not_recovered"], member["skipped"]) == (1, 0, 1, 0)
    assert [a["id"] for a in member["attention"]] == [paused["id"]] and member["left_to_services"] == {}
    directory = Path(report["files"]["directory"])
    markdown = (directory / "report.md").read_text()
    assert "## Projects" in markdown and f"| `{admin_project}` | 2 | 1 | 0 | 0 | 1 | octavia: 1 | - |" in markdown
    assert f"| `{member_project}` | 1 | 0 | 1 | 0 | 0 | - | paused-1 |" in markdown
    assert skipped["next_command"] in markdown
    assert f"<td><code>{member_project}</code></td><td>1</td><td>0</td><td>1</td>" in (directory / "report.html").read_text()


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
    # Recovered together (not one after the other): the two evacuate phases overlap in time.
    evacuate = {host: next(p for p in reports[host]["phases"] if p["name"] == "evacuate") for host in (first, second)}
    assert max(p["started_at"] for p in evacuate.values()) < min(p["finished_at"] for p in evacuate.values()), evacuate

    # The summary has a line per host, and the play fails naming the partial host only.
    last = last_task_output(output)
    assert "Summary - one line per host" in last
    assert f"{first}: PARTIAL" in last and f"{second}: RECOVERED" in last
    assert f"not recovered: {first} (PARTIAL) - 1 of 2 hosts" in last and f"{second} (" not in last
