"""extensions/prometheus/rules/: the shipped alerting rules, run by `promtool test rules` against the unit tests of
tests/prometheus/ (Prometheus' own rule engine, no server, no cloud), and held to what the rest of the house
expects: the alert that starts a recovery is one the rulebooks listen for, with the label they read the host from;
the example alerts read metrics the runs really write."""

import datetime
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from ansible_collections.novaha.recovery.plugins.module_utils import _metrics, _run

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "extensions" / "prometheus" / "rules"
TESTS = ROOT / "tests" / "prometheus"
EDA_VARS = yaml.safe_load((ROOT / "extensions" / "eda" / "vars" / "recover_host.example.yml").read_text())
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus; hack/install.sh installs it)")


def promtool(*args, cwd=ROOT):
    proc = subprocess.run([PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def alerts(name):
    return {rule["alert"]: rule for group in yaml.safe_load((RULES / name).read_text())["groups"] for rule in group["rules"]}


@needs_promtool
@pytest.mark.parametrize("name", sorted(p.name for p in RULES.glob("*.yml")))
def test_the_rules_load(name):
    rc, said = promtool("check", "rules", RULES / name)
    assert rc == 0 and "SUCCESS" in said, said


@needs_promtool
@pytest.mark.parametrize("name", sorted(p.name for p in TESTS.glob("*.test.yml")))
def test_the_rules_pass_their_promtool_tests(name):
    rc, said = promtool("test", "rules", TESTS / name)
    assert rc == 0 and "SUCCESS" in said, said


def test_every_rules_file_has_its_tests():
    for rules in RULES.glob("*.yml"):
        tests = TESTS / rules.name.replace(".yml", ".test.yml")
        assert tests.exists(), "no promtool tests for %s" % rules
        assert "../../extensions/prometheus/rules/%s" % rules.name in yaml.safe_load(tests.read_text())["rule_files"]


@needs_promtool
@pytest.mark.parametrize(
    "rules, change",
    [
        ("nova_compute_down.yml", ("for: 3m", "for: 1m")),  # a restart would fence a host
        ("nova_compute_down.yml", (', adminState="enabled"', "")),  # never resolves once isolated
        ("nova_compute_down.yml", ("verifying|interrupted)", "verifying|interrupted|done)")),  # never resolves after a run
        ("nova_compute_down.yml", ("|verifying|interrupted)", "|verifying)")),  # a stopped run is never retried
        ("nova_compute_down.yml", ("max without (adminState, disabledReason) (", "(")),  # a new alert per marker
        ("novaha_recovery.yml", ("novaha_recovery_needs_attention == 1", "novaha_recovery_needs_attention >= 0")),
    ],
    ids=["for-too-short", "disabled-alerts", "done-alerts", "interrupted-quiet", "one-alert-per-marker", "attention-always"],
)
def test_the_promtool_tests_fail_a_wrong_rule(tmp_path, rules, change):
    """The tests above can fail: the same tests against a rule with one mistake in it."""
    (tmp_path / "rules").mkdir()
    text = (RULES / rules).read_text()
    assert change[0] in text
    (tmp_path / "rules" / rules).write_text(text.replace(change[0], change[1]))
    tests = yaml.safe_load((TESTS / rules.replace(".yml", ".test.yml")).read_text())
    tests["rule_files"] = ["rules/" + rules]
    (tmp_path / "t.yml").write_text(yaml.safe_dump(tests))
    rc, said = promtool("test", "rules", "t.yml", cwd=tmp_path)
    assert rc != 0 and "FAILED" in said, said


def test_the_dead_compute_alert_is_the_one_the_rulebooks_recover_from():
    rule = alerts("nova_compute_down.yml")["NovaComputeDown"]
    assert "NovaComputeDown" in EDA_VARS["novaha_alertnames"]
    # The rulebooks' event filter reads the host from the `host` label (host_label: host).
    for rulebook in (ROOT / "extensions" / "eda" / "rulebooks").glob("*.yml"):
        (ruleset,) = yaml.safe_load(rulebook.read_text())
        (source,) = ruleset["sources"]
        assert source["filters"] == [{"novaha.recovery.alertmanager_alerts": {"host_label": "host"}}], rulebook
    assert rule["labels"]["host"] == "{{ $labels.hostname }}"
    assert re.search(r'\bopenstack_nova_agent_state\{[^}]*service="nova-compute"', rule["expr"])
    # The automation guide quotes the shipped rule: the same expression and wait.
    guide = (ROOT / "docs" / "docsite" / "rst" / "automation.rst").read_text()
    block = guide.split(".. code:: yaml\n\n   - alert: NovaComputeDown\n", 1)[1].split("\n\n", 1)[0]
    quoted = yaml.safe_load(textwrap.dedent("   - alert: NovaComputeDown\n" + block))[0]
    assert (quoted["expr"], quoted["for"], quoted["labels"]) == (rule["expr"], rule["for"], rule["labels"])


def test_the_alertmanager_route_sends_the_dead_compute_alert_to_the_rulebook_as_the_guide_says():
    config = yaml.safe_load((ROOT / "extensions" / "alertmanager" / "alertmanager.yml").read_text())
    (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "novaha-recovery"]
    assert route["matchers"] == ['alertname="NovaComputeDown"'] and "NovaComputeDown" in EDA_VARS["novaha_alertnames"]
    # The mass guard counts the hosts of one notification: every host of the alert in one group, none cut off.
    assert route["group_by"] == ["alertname"]
    (receiver,) = [r for r in config["receivers"] if r["name"] == "novaha-recovery"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["max_alerts"] == 0 and webhook["send_resolved"] is True
    assert webhook["url"] == "http://%s:%s/alertmanager" % (EDA_VARS["novaha_webhook_host"], EDA_VARS["novaha_webhook_port"])
    guide = (ROOT / "docs" / "docsite" / "rst" / "automation.rst").read_text()
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert "%s: %s" % (key, route[key]) in guide, key


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed (Debian package prometheus-alertmanager)")
def test_the_alertmanager_configuration_is_valid():
    proc = subprocess.run(
        ["amtool", "check-config", str(ROOT / "extensions" / "alertmanager" / "alertmanager.yml")], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_the_dead_compute_alert_reads_the_run_marker_as_the_runs_write_it():
    """The rule's phases are the run's: it fires for a run that holds the host or was interrupted, and not
    for one that is done (plugins/module_utils/_run.py, the one place the marker is written and judged)."""
    expr = alerts("nova_compute_down.yml")["NovaComputeDown"]["expr"]
    (pattern,) = re.findall(r'disabledReason=~"((?:[^"\\]|\\.)*)"', expr)
    pattern = pattern.encode().decode("unicode_escape")  # PromQL's string escapes, as Prometheus reads them
    (phases,) = re.findall(r"\(([a-z|]+)\)", pattern)
    assert set(phases.split("|")) == set(_run.HELD_PHASES) | {_run.PHASE_INTERRUPTED}
    moment = datetime.datetime(2025, 1, 1, 3, 0, tzinfo=datetime.timezone.utc)
    for phase, was_reason, fires in [
        (_run.PHASE_CLAIMED, None, True),
        (_run.PHASE_EVACUATING, "maintenance\nticket OPS-1", True),
        (_run.PHASE_INTERRUPTED, "x" * 300, True),
        (_run.PHASE_DONE, None, False),
    ]:
        marker = _run.RunMarker("20250101T030000Z-ab12", phase, "awx-job-17", moment, moment, 420, "disabled", True, was_reason)
        assert _run.parse_marker(marker.text()).phase == phase
        assert bool(re.fullmatch(pattern, marker.text())) is fires, (phase, marker.text())


def test_the_example_alerts_never_start_a_recovery_and_read_metrics_the_runs_write():
    examples = alerts("novaha_recovery.yml")
    assert examples and not set(examples) & set(EDA_VARS["novaha_alertnames"])
    server = dict(
        id="s1",
        name="web-1",
        outcome="recovered",
        verified=True,
        locked_by_us=False,
        before=dict(host="node-28"),
        after=dict(host="node-27"),
        finished_at="2025-11-22T00:23:08Z",
    )
    written = _metrics.render_metrics(
        dict(
            host="node-28",
            run_id="r1",
            outcome="recovered",
            check_mode=False,
            started_at="2025-11-22T00:21:56Z",
            finished_at="2025-11-22T00:23:18Z",
            servers=[server],
            skipped=[],
            phases=[],
            fencing={},
        )
    )
    names = set(re.findall(r"^(novaha_recovery_\w+)\{", written, re.M))
    for name, rule in examples.items():
        used = set(re.findall(r"\bnovaha_recovery_\w+", rule["expr"]))
        assert used and used <= names, (name, used - names)
