"""extensions/eda/rulebooks/: both rulebooks are valid for ansible-rulebook and differ only in the action.

The run_playbook rulebook is proven end to end in tests/integration/test_eda_rulebook.py; the
run_job_template one needs a controller, which cannot run here. Both must judge alerts the same way,
so everything but the recovery action is compared.
"""

import copy
import sys
from pathlib import Path

import pytest
import yaml
from ansible_rulebook import collection, rules_parser
from ansible_rulebook.conf import settings
from ansible_rulebook.validators import Validate

ROOT = Path(__file__).resolve().parents[2]
RULEBOOKS = ROOT / "extensions" / "eda" / "rulebooks"
VARS = yaml.safe_load((ROOT / "extensions" / "eda" / "vars" / "recover_host.example.yml").read_text())


@pytest.fixture(autouse=True)
def collection_found(monkeypatch):
    """ansible-rulebook finds novaha.recovery's event filter with ansible-galaxy, as at run time."""
    monkeypatch.setattr(settings, "ansible_galaxy_path", str(Path(sys.executable).parent / "ansible-galaxy"))
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(ROOT / "build" / "collections"))


def load(name):
    return yaml.safe_load((RULEBOOKS / name).read_text())


@pytest.mark.parametrize("name", ["recover_host_local.yml", "recover_host_awx.yml"])
def test_rulebook_is_valid(name):
    data = load(name)
    Validate.rulebook(data)
    (ruleset,) = rules_parser.parse_rule_sets(copy.deepcopy(data), VARS)
    assert [rule.name for rule in ruleset.rules] == ["Refuse a mass alert", "Note a resolved alert", "Recover the compute host"]
    # No throttle: a repeated alert launches the recovery again (the retry of a run that crashed); the run's
    # claim on the host decides whether it may act (plugins/module_utils/_run.py).
    assert ruleset.rules[2].throttle is None
    (source,) = ruleset.sources
    assert source.source_name == "eda.builtin.webhook"
    assert [f.filter_name for f in source.source_filters] == ["novaha.recovery.alertmanager_alerts"]
    # Found where ansible-rulebook looks at run time: in the installed collection.
    assert collection.has_source_filter("novaha.recovery", "alertmanager_alerts")


def test_both_rulebooks_judge_alerts_the_same_way():
    playbook, job_template = load("recover_host_local.yml")[0], load("recover_host_awx.yml")[0]
    assert playbook["sources"] == job_template["sources"]
    for mine, theirs in zip(playbook["rules"], job_template["rules"], strict=True):
        assert {k: v for k, v in mine.items() if k != "action"} == {k: v for k, v in theirs.items() if k != "action"}
    recover_playbook = playbook["rules"][2]["action"]["run_playbook"]
    recover_job = job_template["rules"][2]["action"]["run_job_template"]
    assert recover_playbook["extra_vars"] == recover_job["job_args"]["extra_vars"] == {"recover_host": "{{ event.host }}"}
    assert recover_playbook["name"] == "novaha.recovery.recover_host"
    assert collection.has_playbook("novaha.recovery", "recover_host")
    assert playbook["rules"][:2] == job_template["rules"][:2]
