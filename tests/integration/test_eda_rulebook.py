"""extensions/eda/rulebooks/recover_host_local.yml end to end, on the local cloud.

One ansible-rulebook process (the JVM start is the slow part) listens with eda.builtin.webhook on
127.0.0.1; the test posts Alertmanager-shaped notifications to it, as Alertmanager's webhook receiver
does, and reads the outcome back from Nova, the report and the rulebook's output:

- a resolved alert, an unrelated alert and a mass alert (more hosts than the limit) start nothing,
  and the mass alert is said once;
- a firing alert for node-28 runs playbooks/recover-host.yml, which fences node-28 and evacuates its
  servers to healthy hosts;
- Alertmanager repeating that alert does not start a second recovery (the throttle).

The ruleset handles events one at a time, in order: an event's effect (a debug line, a playbook run)
proves that every event posted before it was judged already.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import DEV_BIN, ROOT

sys.path.insert(0, str(ROOT / "tests" / "localcloud"))
from localcloud import bmc  # noqa: E402  (the package lives outside the test tree)

pytestmark = pytest.mark.slow

# As docs/docsite/rst/automation.rst runs it: by name, from the collection (found through ANSIBLE_COLLECTIONS_PATH).
RULEBOOK = "novaha.recovery.recover_host_local"
HOST = "node-28"
OTHERS = {"node-27", "node-31"}
ALERT = "NovaComputeDown"
MAX_HOSTS = 2
MASS_LINE = f"novaha.recovery: mass alert {ALERT}"
RECOVERY_PLAY = "PLAY [Recover compute hosts]"


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


def alert(name, host, status="firing", **labels):
    """One alert as Alertmanager's webhook receiver posts it."""
    labels = {"alertname": name, "severity": "critical", **({"host": host} if host else {}), **labels}
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{name} on {host}"},
        "startsAt": "2025-01-01T03:00:00Z",
        "endsAt": "2025-01-01T03:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": f"{abs(hash((name, host))):016x}"[:16],
    }


def notification(*alerts):
    """An Alertmanager webhook notification (version 4) grouping these alerts."""
    name = alerts[0]["labels"]["alertname"]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "novaha-recovery",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


class Rulebook:
    """A running ansible-rulebook; its whole output goes to a file the test reads."""

    def __init__(self, cloud, workdir):
        self.port = free_port()
        self.log = workdir / "ansible-rulebook.log"
        self.reports = workdir / "reports"
        # The inventory recover-host.yml uses, plus where the report goes: run_playbook runs the
        # playbook in a temporary directory it removes afterwards, so the report root is absolute.
        inventory = json.loads(cloud.inventory.read_text())  # the local cloud writes JSON (valid YAML)
        inventory["all"]["vars"]["host_recovery_report_root"] = str(self.reports)
        # Recover fast: the local cloud's Nova reports a killed compute down within seconds.
        inventory["all"]["vars"]["host_recovery_poll_interval"] = 2
        inventory["all"]["vars"]["host_recovery_verify_interval"] = 2
        (workdir / "inventory.yml").write_text(json.dumps(inventory))
        (workdir / "vars.yml").write_text(
            json.dumps(
                {
                    "novaha_webhook_host": "127.0.0.1",
                    "novaha_webhook_port": self.port,
                    "novaha_alertnames": [ALERT],
                    "novaha_max_hosts": MAX_HOSTS,
                }
            )
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
            time.sleep(1)

    def wait_listening(self, timeout=180):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the webhook never listened on 127.0.0.1:{self.port}:\n{self.output()}") from None
                time.sleep(1)

    def post(self, body):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/alertmanager", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, response.status

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def rulebook(clean_cloud, tmp_path):
    running = Rulebook(clean_cloud, tmp_path)
    yield running
    running.stop()


def servers(cloud):
    """Every server: id -> (host, status, task_state)."""
    body = cloud.connect().compute.get("/servers/detail?all_tenants=True", microversion="2.73").json()
    return {s["id"]: (s["OS-EXT-SRV-ATTR:host"], s["status"], s["OS-EXT-STS:task_state"]) for s in body["servers"]}


def service(cloud, host):
    body = cloud.connect().compute.get("/os-services?binary=nova-compute", microversion="2.53").json()
    (found,) = [s for s in body["services"] if s["host"] == host]
    return found


def test_alertmanager_alert_recovers_the_host(clean_cloud, rulebook):
    cloud = clean_cloud
    # While the JVM starts: servers on node-28, then node-28 dies (compute killed, BMC still On).
    booted = cloud.boot(HOST, count=2)
    cloud.fail_host(HOST, power="on")
    rulebook.wait_listening()

    # Nothing to do: node-28's alert resolved; an alert the rulebook is not configured for;
    # an alert of the right name without a host label; the right alert for three hosts at once.
    rulebook.post(notification(alert(ALERT, HOST, status="resolved")))
    rulebook.post(notification(alert("NodeHighLoad", HOST), alert(ALERT, None)))
    rulebook.post(notification(*(alert(ALERT, h) for h in sorted(OTHERS | {HOST}))))
    output = rulebook.wait_for(MASS_LINE)
    assert output.count(MASS_LINE) == 1, output  # said once, not once per host
    assert RECOVERY_PLAY not in output, output
    assert all(where[0] == HOST for where in servers(cloud).values())
    assert service(cloud, HOST)["status"] == "enabled"  # not isolated: nothing ran

    # node-28 fires, in a notification that also resolves node-31: node-28 alone is recovered.
    rulebook.post(notification(alert(ALERT, HOST), alert(ALERT, "node-31", status="resolved")))
    output = rulebook.wait_for("PLAY RECAP", timeout=900)
    assert RECOVERY_PLAY in output, output
    assert "no hosts matched" not in output, output  # the input check on localhost ran too
    recap = output.split("PLAY RECAP", 1)[1]
    assert "failed=0" in recap and "unreachable=0" in recap, output

    now = servers(cloud)
    for server in booted:
        host, status, task = now[server["id"]]
        assert host in OTHERS, (server["name"], host)
        assert (status, task) == ("ACTIVE", None), (server["name"], now[server["id"]])
    svc = service(cloud, HOST)
    assert svc["forced_down"] is True and svc["status"] == "disabled", svc
    assert all(service(cloud, other)["status"] == "enabled" for other in OTHERS)  # recovered node-28 alone
    (report_file,) = sorted(rulebook.reports.glob(f"{HOST}-*/report.json"))
    report = json.loads(report_file.read_text())
    assert (report["host"], report["outcome"]) == (HOST, "recovered"), report["reason"]
    assert report["fencing"]["fenced"] is True and report["fencing"]["power_state"] == "off", report["fencing"]

    # Alertmanager repeats the firing alert: throttled. The mass alert after it proves it was judged.
    rulebook.post(notification(alert(ALERT, HOST)))
    rulebook.post(notification(*(alert(ALERT, h) for h in sorted(OTHERS | {HOST}))))
    output = rulebook.wait_for(MASS_LINE, count=2)
    assert output.count(RECOVERY_PLAY) == 1, output
