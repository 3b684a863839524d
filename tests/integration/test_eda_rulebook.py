"""From alert to recovery on the local cloud: a real Alertmanager, the rulebook, recover-host.yml.

The test posts alerts to Alertmanager's API, as Prometheus does. Alertmanager runs the shipped
configuration (extensions/alertmanager/alertmanager.yml, only the webhook URL and the three intervals
shortened) and posts its notifications to one ansible-rulebook (extensions/eda/rulebooks/
recover_host_local.yml, eda.builtin.webhook on 127.0.0.1). The outcome is read back from Nova, the
reports, Alertmanager's API and the rulebook's output:

- the route: NovaComputeDown goes to the rulebook, another alert does not;
- three hosts failing together arrive in one notification: a mass alert, said once, nothing started;
- the other two resolve, node-28 fires on: its recovery starts (run 1);
- run 1 crashes (ansible-playbook killed while its servers move; its module goes on): Alertmanager's repeat
  launches the recovery again (run 2), which waits while run 1's module still holds the host and takes the
  host over once run 1's heartbeat is stale - never a second evacuation beside the first;
- run 2 recovers node-28; its alert resolves and the rulebook says so.

The ruleset handles events one at a time, in order: an event's effect (a debug line, a playbook run)
proves that every event received before it was handled.
"""

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import DEV_BIN, ROOT, stop_process

sys.path.insert(0, str(ROOT / "tests" / "localcloud"))
from localcloud import bmc  # noqa: E402  (the package lives outside the test tree)

pytestmark = pytest.mark.slow

# As docs/docsite/rst/automation.rst runs it: by name, from the collection (found through ANSIBLE_COLLECTIONS_PATH).
RULEBOOK = "novaha.recovery.recover_host_local"
ALERTMANAGER_CONFIG = ROOT / "extensions" / "alertmanager" / "alertmanager.yml"
HOST = "node-28"
OTHERS = {"node-27", "node-31"}
ALERT = "NovaComputeDown"
MAX_HOSTS = 2
MASS_LINE = f"novaha.recovery: mass alert {ALERT}"
RESOLVED_LINE = f"novaha.recovery: {ALERT} resolved for {HOST}"
RECOVERY_PLAY = "PLAY [Recover compute hosts]"
# The shipped route's intervals, shortened: notifications a second after an alert arrives, a changed group
# sent within 2 s, a host that still fires sent again every 30 s (the shipped route says 15 minutes).
INTERVALS = dict(group_wait="1s", group_interval="2s", repeat_interval="30s")
# The shortest lease the role takes, so that a crashed run's heartbeat goes stale in seconds (the default is 420 s).
LEASE = 10


def java_home():
    """JAVA_HOME as set, or the JDK/JRE the `java` on PATH belongs to (ansible-rulebook needs it)."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if java is None:
        pytest.fail("ansible-rulebook needs Java 17: no `java` on PATH (hack/install.sh installs it)")
    return str(Path(java).resolve().parents[1])


def free_port():
    return bmc.free_port(bmc.REDFISH)  # a TCP port no outgoing connection can take meanwhile


def wait_listening(port, proc, output, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nothing listened on 127.0.0.1:{port}:\n{output()}") from None
            time.sleep(0.5)


def stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Alertmanager:
    """Debian's prometheus-alertmanager running the shipped configuration, posting to the rulebook."""

    def __init__(self, workdir, webhook_port):
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            pytest.fail("no Alertmanager: the Debian package prometheus-alertmanager (hack/install.sh installs it)")
        self.port = free_port()
        self.log = workdir / "alertmanager.log"
        config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
        (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "novaha-recovery"]
        assert set(INTERVALS) <= set(route), route  # only shortened, never added
        route.update(INTERVALS)
        (receiver,) = [r for r in config["receivers"] if r["name"] == "novaha-recovery"]
        (webhook,) = receiver["webhook_configs"]
        webhook["url"] = f"http://127.0.0.1:{webhook_port}/alertmanager"
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [
                    binary,
                    f"--config.file={workdir / 'alertmanager.yml'}",
                    f"--storage.path={workdir / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",  # one Alertmanager, no gossip port
                    "--log.level=debug",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self):
        return self.log.read_text(encoding="utf-8", errors="replace")

    def api(self, path, body=None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v2/{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, response.status
            return json.loads(response.read() or b"null")

    def fire(self, name, *hosts, resolved=False):
        """Post alerts as Prometheus does: firing (ends in an hour unless posted again) or resolved (ends now)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        ends = now if resolved else now + datetime.timedelta(hours=1)
        self.api(
            "alerts",
            [
                {
                    "labels": {"alertname": name, "severity": "critical", "host": host, "hostname": host},
                    "annotations": {"summary": f"{name} on {host}"},
                    "startsAt": stamp(now - datetime.timedelta(minutes=3)),
                    "endsAt": stamp(ends),
                    "generatorURL": "http://127.0.0.1:9090/graph",
                }
                for host in hosts
            ],
        )

    def receivers(self):
        """alertname/host -> the receivers Alertmanager routed the alert to."""
        return {(a["labels"]["alertname"], a["labels"]["host"]): sorted(r["name"] for r in a["receivers"]) for a in self.api("alerts")}


class Rulebook:
    """A running ansible-rulebook; its whole output goes to a file the test reads."""

    def __init__(self, cloud, workdir):
        self.port = free_port()
        self.log = workdir / "ansible-rulebook.log"
        self.reports = workdir / "reports"
        # The inventory recover-host.yml uses, plus where the report goes: run_playbook runs the
        # playbook in a temporary directory it removes afterwards, so the report root is absolute.
        inventory = json.loads(cloud.inventory.read_text())  # the local cloud writes JSON (valid YAML)
        inventory["all"]["vars"].update(
            host_recovery_report_root=str(self.reports),
            # Recover fast: the local cloud's Nova reports a killed compute down within seconds.
            host_recovery_poll_interval=2,
            host_recovery_verify_interval=2,
            host_recovery_lease=LEASE,
            host_recovery_wait_for_run=120,
        )
        (workdir / "inventory.yml").write_text(json.dumps(inventory))
        (workdir / "vars.yml").write_text(
            json.dumps({"novaha_webhook_host": "127.0.0.1", "novaha_webhook_port": self.port, "novaha_alertnames": [ALERT], "novaha_max_hosts": MAX_HOSTS})
        )
        env = cloud.env()
        env["JAVA_HOME"] = java_home()
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [
                    str(DEV_BIN / "ansible-rulebook"),
                    "--rulebook",
                    RULEBOOK,
                    "--inventory",
                    str(workdir / "inventory.yml"),
                    "--vars",
                    str(workdir / "vars.yml"),
                    "--verbose",
                ],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self):
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, what, count=1, timeout=600):
        """Wait until ``what`` appears ``count`` times in the output; return the output."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.output()
            if output.count(what) >= count:
                return output
            if self.proc.poll() is not None:
                raise AssertionError(f"ansible-rulebook exited ({self.proc.returncode}):\n{output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what!r} (x{count}) within {timeout}s; rulebook output:\n{output}")
            time.sleep(0.5)

    def playbooks(self):
        """The pids of the ansible-playbook processes the rulebook started (its descendants)."""
        children = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                children.setdefault(int(fields[1]), []).append((int(entry.name), cmdline))
        found, todo = [], [self.proc.pid]
        while todo:
            for pid, cmdline in children.get(todo.pop(), []):
                if any(part.endswith(b"ansible-playbook") for part in cmdline[:2]):
                    found.append(pid)  # not its workers (forks of it, the same command line)
                else:
                    todo.append(pid)
        return found


@pytest.fixture
def alert_path(clean_cloud, tmp_path):
    rulebook = Rulebook(clean_cloud, tmp_path)
    alertmanager = Alertmanager(tmp_path, rulebook.port)
    yield alertmanager, rulebook
    stop_process(rulebook.proc, grace=30)
    stop_process(alertmanager.proc, grace=30)


def servers(cloud):
    """Every server: id -> (host, status, task_state)."""
    body = cloud.connect().compute.get("/servers/detail?all_tenants=True", microversion="2.73").json()
    return {s["id"]: (s["OS-EXT-SRV-ATTR:host"], s["status"], s["OS-EXT-STS:task_state"]) for s in body["servers"]}


def service(cloud, host):
    body = cloud.connect().compute.get("/os-services?binary=nova-compute", microversion="2.53").json()
    (found,) = [s for s in body["services"] if s["host"] == host]
    return found


def evacuations(cloud, server_id):
    body = cloud.connect().compute.get(f"/os-migrations?migration_type=evacuation&instance_uuid={server_id}", microversion="2.80").json()
    return body["migrations"]


def wait_for_phase(cloud, phase, timeout=300):
    """The run marker on node-28's service once it reaches ``phase``: its run id."""
    deadline = time.monotonic() + timeout
    while True:
        reason = service(cloud, HOST)["disabled_reason"] or ""
        words = reason.split()
        if reason.startswith("novaha.recovery run ") and words[3] == phase:
            return words[2]
        if time.monotonic() > deadline:
            raise AssertionError(f"the service of {HOST} never reached phase {phase}: {reason!r}")
        time.sleep(0.3)


def test_alertmanager_alert_recovers_the_host_and_its_repeat_retries_a_crashed_run(clean_cloud, alert_path):
    cloud = clean_cloud
    alertmanager, rulebook = alert_path
    # While the JVM starts: servers on node-28, then node-28 dies (compute killed, BMC still On).
    booted = cloud.boot(HOST, count=2)
    cloud.fail_host(HOST, power="on")
    wait_listening(alertmanager.port, alertmanager.proc, alertmanager.output)
    wait_listening(rulebook.port, rulebook.proc, rulebook.output)

    # Three hosts fire together, and an alert no rulebook listens for: one notification reaches the
    # rulebook, a mass alert, said once; the other alert goes to the default receiver only.
    alertmanager.fire(ALERT, *sorted(OTHERS | {HOST}))
    alertmanager.fire("NodeHighLoad", HOST)
    output = rulebook.wait_for(MASS_LINE)
    routed = alertmanager.receivers()
    assert routed[("NodeHighLoad", HOST)] == ["default"], routed
    assert all(routed[(ALERT, h)] == ["novaha-recovery"] for h in OTHERS | {HOST}), routed

    # The other two resolve (Alertmanager sends the changed group at once): node-28 alone fires, run 1 starts.
    alertmanager.fire(ALERT, *sorted(OTHERS), resolved=True)
    run1 = wait_for_phase(cloud, "evacuating")
    output = rulebook.output()
    assert output.count(MASS_LINE) == 1, output  # said once, not once per host
    assert output.count(RECOVERY_PLAY) == 1, output

    # Run 1 crashes while its servers move: its ansible-playbook is killed (as a job's pod goes away); the
    # module that evacuates goes on in its own session, renewing run 1's heartbeat, until it ends.
    (playbook,) = rulebook.playbooks()
    os.kill(playbook, signal.SIGKILL)

    # Alertmanager repeats node-28's alert: run 2 waits while run 1 holds the host, takes it over once run 1's
    # heartbeat is stale, and finishes the recovery.
    output = rulebook.wait_for("PLAY RECAP", timeout=600)
    assert output.count(RECOVERY_PLAY) == 2, output
    recap = output.split("PLAY RECAP", 1)[1]
    assert "failed=0" in recap and "unreachable=0" in recap, output

    reports = [json.loads(f.read_text()) for f in sorted(rulebook.reports.glob(f"{HOST}-*/report.json"))]
    run2 = [r for r in reports if (r["claim"]["holder"] or {}).get("marker", {}).get("run_id") == run1]
    assert len(run2) == 1, [(r["run_id"], r["outcome"], r["claim"]) for r in reports]
    (report,) = run2
    assert (report["host"], report["outcome"]) == (HOST, "recovered"), report["reason"]
    holder = report["claim"]["holder"]
    assert holder["kind"] in ("stale", "ended") and holder["marker"]["run_id"] == run1, holder
    # Taken over only once run 1 had stopped beating for a lease, or had ended (its module finished it).
    assert holder["kind"] == "ended" or holder["heartbeat_age"] > LEASE, holder
    assert report["fencing"]["fenced"] is True and report["fencing"]["power_state"] == "off", report["fencing"]

    now = servers(cloud)
    for server in booted:
        host, status, task = now[server["id"]]
        assert host in OTHERS, (server["name"], host)
        assert (status, task) == ("ACTIVE", None), (server["name"], now[server["id"]])
        # Never a second evacuation beside the first: one evacuation migration per server.
        moved = evacuations(cloud, server["id"])
        assert len(moved) == 1, (server["name"], moved)
    svc = service(cloud, HOST)
    assert svc["forced_down"] is True and svc["status"] == "disabled", svc
    assert f"novaha.recovery run {report['run_id']} done " in svc["disabled_reason"], svc
    assert all(service(cloud, other)["status"] == "enabled" for other in OTHERS)  # recovered node-28 alone

    # The host is done: Prometheus' rule stops firing for it. Its alert resolves, the rulebook says so and
    # starts nothing; every repeat Alertmanager sent before was handled before this line.
    alertmanager.fire(ALERT, HOST, resolved=True)
    output = rulebook.wait_for(RESOLVED_LINE, timeout=300)
    assert output.count(RECOVERY_PLAY) == output.count("PLAY RECAP") + 1, output  # every run after run 1 ended
    assert output.count(MASS_LINE) == 1, output
