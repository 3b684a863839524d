"""extensions/awx/novaha_recovery.awx.yml: the AWX assets an operator imports (`awx import`).

AWX cannot run here; this checks what AWX would check on import and what would only show up at 3 a.m.:
every asset has the natural key `awx import` matches it by, every reference names an asset of the file
(or one the operator creates, listed in the file's header), the survey asks what the playbook and the
role read, with defaults among the choices, and the BMC password is a secret that only an injector
sees.
"""

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.novaha.recovery.plugins.module_utils._concurrency import ADAPTIVE_CAP

ROOT = Path(__file__).resolve().parents[2]
ASSETS_FILE = ROOT / "extensions" / "awx" / "novaha_recovery.awx.yml"
ASSETS = yaml.safe_load(ASSETS_FILE.read_text())
ROLE_OPTIONS = yaml.safe_load((ROOT / "roles" / "host_recovery" / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
# Inputs of playbooks/recover-host.yml itself (not role options).
PLAYBOOK_INPUTS = {"recover_host"}
# Natural keys by type, as awxkit builds them (organization-scoped assets carry the organization).
NATURAL_KEY_FIELDS = {
    "credential_type": ("name", "kind"),
    "notification_template": ("name", "organization"),
    "execution_environment": ("name",),
    "job_template": ("name", "organization"),
    "project": ("name", "organization"),
    "inventory": ("name", "organization"),
    "credential": ("name", "organization", "credential_type"),
    "organization": ("name",),
}
# Created by the operator before the import (the file's header says so).
SITE_SPECIFIC = {
    ("organization", "Default"),
    ("project", "novaha.recovery"),
    ("inventory", "OpenStack compute hosts"),
    ("credential", "novaha BMC fence account"),
}
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


def by_type(kind):
    return {asset["name"]: asset for asset in ASSETS.get(kind + "s", [])}


def references(node):
    """Every natural-key reference (a dict with `type`) nested in an asset, except its own key."""
    if isinstance(node, dict):
        if "type" in node and "name" in node and isinstance(node["type"], str) and "natural_key" not in node:
            yield node
        for key, value in node.items():
            if key != "natural_key":
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def test_only_resources_awx_import_knows():
    assert set(ASSETS) <= {
        "users",
        "organizations",
        "teams",
        "credential_types",
        "credentials",
        "notification_templates",
        "projects",
        "inventory",
        "inventory_sources",
        "job_templates",
        "workflow_job_templates",
        "execution_environments",
        "applications",
        "schedules",
    }
    assert set(ASSETS) >= {"credential_types", "notification_templates", "job_templates"}


@pytest.mark.parametrize("kind", ["credential_type", "notification_template", "execution_environment", "job_template"])
def test_every_asset_has_its_natural_key(kind):
    for name, asset in by_type(kind).items():
        key = asset["natural_key"]
        assert key["type"] == kind, name
        for field in NATURAL_KEY_FIELDS[kind]:
            assert key[field] == asset[field], (name, field)


def test_every_reference_resolves():
    known = {(kind, name) for kind in NATURAL_KEY_FIELDS for name in by_type(kind)} | SITE_SPECIFIC
    for kind in ("credential_type", "notification_template", "execution_environment", "job_template"):
        for name, asset in by_type(kind).items():
            for ref in references(asset):
                assert (ref["type"], ref["name"]) in known, (name, ref)
                for field in NATURAL_KEY_FIELDS[ref["type"]]:
                    assert field in ref, (name, ref, field)


def test_bmc_credential_type_injects_the_secret_without_showing_it():
    cred = by_type("credential_type")["novaha BMC"]
    fields = {f["id"]: f for f in cred["inputs"]["fields"]}
    assert fields["bmc_password"]["secret"] is True
    assert set(cred["inputs"]["required"]) == {"bmc_username", "bmc_password"}
    injected = cred["injectors"]["extra_vars"]
    # The role reads bmc_username / bmc_password (its defaults); each injector uses a declared field.
    assert injected == {"bmc_username": "{{ bmc_username }}", "bmc_password": "{{ bmc_password }}"}
    assert "bmc_username" in ROLE_OPTIONS["host_recovery_bmc_username"]["default"]
    assert "bmc_password" in ROLE_OPTIONS["host_recovery_bmc_password"]["default"]
    assert ROLE_OPTIONS["host_recovery_bmc_password"].get("no_log") is True
    for section in cred["injectors"].values():
        for template in section.values():
            for used in re.findall(r"{{\s*(\w+)\s*}}", template):
                assert used in fields, used
    # No secret, nor a place for one, anywhere in the notifications.
    for notification in by_type("notification_template").values():
        config = notification["notification_configuration"]
        assert config.get("password", "") == "" and not config.get("headers"), notification["name"]


def test_job_template_runs_recover_host_one_at_a_time_and_notifies():
    job = by_type("job_template")["novaha recover host"]
    assert (ROOT / job["playbook"]).is_file()
    assert job["allow_simultaneous"] is False
    assert job["survey_enabled"] is True and job["ask_job_type_on_launch"] is True
    related = job["related"]
    for when in ("started", "success", "error"):
        assert related[f"notification_templates_{when}"], when
    assert any(c["credential_type"]["name"] == "novaha BMC" for c in related["credentials"])


def test_survey_asks_host_parallelism_and_fence_policy_and_launch_asks_dry_run():
    job = by_type("job_template")["novaha recover host"]
    # The dry run is AWX's own job type "check" (ansible-playbook --check), asked at launch: the role
    # runs every read and reports the plan. A survey variable could not switch check mode on.
    assert job["job_type"] == "run" and job["ask_job_type_on_launch"] is True
    spec = job["related"]["survey_spec"]
    questions = {q["variable"]: q for q in spec["spec"]}
    assert set(questions) == {"recover_host", "host_recovery_max_parallel", "host_recovery_fence", "host_recovery_attest_powered_off"}
    assert questions["recover_host"]["required"] is True and questions["recover_host"]["default"] == ""
    for variable, question in questions.items():
        assert question["type"] in SURVEY_TYPES, variable
        assert question["question_name"] and question["question_description"], variable
        assert variable in ROLE_OPTIONS or variable in PLAYBOOK_INPUTS, variable
        if question["type"] == "multiplechoice":
            assert question["default"] in question["choices"], variable
        if question["type"] == "integer":
            assert question["min"] <= question["default"] <= question["max"], variable
    # The role's defaults are the survey's: launching without touching the survey changes nothing.
    # host_recovery_max_parallel is unset in the role (the cap of the default, adaptive window): the survey asks the same.
    assert ROLE_OPTIONS["host_recovery_max_parallel"].get("default") is None
    assert questions["host_recovery_max_parallel"]["default"] == ADAPTIVE_CAP
    assert questions["host_recovery_fence"]["default"] == "true"
    assert questions["host_recovery_attest_powered_off"]["default"] == "false"


@pytest.mark.parametrize("variable", sorted(PLAYBOOK_INPUTS))
def test_recover_host_playbook_reads_its_survey_inputs(variable):
    playbook = (ROOT / "playbooks" / "recover-host.yml").read_text()
    assert variable in playbook, f"playbooks/recover-host.yml does not read {variable}"
