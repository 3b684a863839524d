"""tests/integration/awx_job.py, the AWX job of test_recover_end_to_end[newest]: the survey's answers validated the
way AWX validates them, the credential's injected extra vars, and the private data directory as AWX lays it out."""

import json
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.parsing.yaml.loader import AnsibleLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import awx_job  # noqa: E402  (test tooling)

TEMPLATE = awx_job.job_template()
QUESTIONS = {q["variable"]: q for q in TEMPLATE["related"]["survey_spec"]["spec"]}
BMC = awx_job.credential_type("novaha BMC")
REVISION = "17a57d1b9c2e4f60a8d3b5c7e9f1a2b4c6d8e0f1"


def test_the_host_alone_takes_every_other_default():
    assert awx_job.launch_extra_vars(TEMPLATE, {"recover_host": "node-28"}) == {
        "recover_host": "node-28",
        "host_recovery_max_parallel": QUESTIONS["host_recovery_max_parallel"]["default"],
        "host_recovery_fence": "true",
        "host_recovery_attest_powered_off": "false",
    }


def test_answers_replace_the_defaults():
    answers = {"recover_host": "node-28,node-31", "host_recovery_max_parallel": 3, "host_recovery_fence": "false", "host_recovery_attest_powered_off": "true"}
    assert awx_job.launch_extra_vars(TEMPLATE, answers) == answers


def test_no_host_is_refused_since_its_empty_default_is_too_short():
    with pytest.raises(awx_job.SurveyError) as refused:
        awx_job.launch_extra_vars(TEMPLATE, {})
    assert refused.value.errors == ["'recover_host' value missing"]
    with pytest.raises(awx_job.SurveyError, match=r"'recover_host' value  is too small"):
        awx_job.launch_extra_vars(TEMPLATE, {"recover_host": ""})


@pytest.mark.parametrize(
    "answer, error",
    [
        ("3", "Value 3 for 'host_recovery_max_parallel' expected to be an integer."),
        (True, "Value True for 'host_recovery_max_parallel' expected to be an integer."),
        (2.0, "Value 2.0 for 'host_recovery_max_parallel' expected to be an integer."),
        (0, "'host_recovery_max_parallel' value 0 is too small (must be at least 1)."),
        (201, "'host_recovery_max_parallel' value 201 is too large (must be no more than 200)."),
    ],
)
def test_max_parallel_must_be_an_integer_within_its_bounds(answer, error):
    with pytest.raises(awx_job.SurveyError) as refused:
        awx_job.launch_extra_vars(TEMPLATE, {"recover_host": "node-28", "host_recovery_max_parallel": answer})
    assert refused.value.errors == [error]


@pytest.mark.parametrize("answer", ["yes", True, "True", ""])
def test_fence_policy_is_one_of_its_choices(answer):
    with pytest.raises(awx_job.SurveyError, match=r"expected to be one of \['true', 'false'\]"):
        awx_job.launch_extra_vars(TEMPLATE, {"recover_host": "node-28", "host_recovery_fence": answer})


def test_a_variable_the_survey_does_not_ask_is_refused():
    # The template does not prompt for variables: the report root is not the person's to choose at launch.
    with pytest.raises(awx_job.SurveyError, match="Variables host_recovery_report_root are not allowed on launch"):
        awx_job.launch_extra_vars(TEMPLATE, {"recover_host": "node-28", "host_recovery_report_root": "/tmp"})


def test_other_question_types_as_awx_checks_them():
    text = {"variable": "t", "type": "textarea", "required": False, "min": 2, "max": 4}
    assert awx_job.survey_errors(text, {}) == []
    assert awx_job.survey_errors(text, {"t": 12}) == ["Value 12 for 't' expected to be a string."]
    assert awx_job.survey_errors(text, {"t": "abcde"}) == ["'t' value abcde is too large (must be no more than 4)."]
    number = {"variable": "f", "type": "float", "required": True, "min": 0.5, "max": ""}
    assert awx_job.survey_errors(number, {"f": 3}) == [] and awx_job.survey_errors(number, {"f": 0.1})
    lines = {"variable": "m", "type": "multiselect", "required": True, "choices": "a\nb\n\n"}
    assert awx_job.survey_errors(lines, {"m": ["a", "b"]}) == []
    assert awx_job.survey_errors(lines, {"m": "a"}) == ["'m' value is expected to be a list."]
    assert awx_job.survey_errors(lines, {"m": ["a", "c"]}) == ["Value c for 'm' expected to be one of ['a', 'b']."]


def test_the_bmc_credential_injects_its_account_as_extra_vars():
    assert awx_job.injected_extra_vars(BMC, {"bmc_username": "fence", "bmc_password": "s3cret"}) == {"bmc_username": "fence", "bmc_password": "s3cret"}
    with pytest.raises(ValueError, match=r"missing \['bmc_password'\]"):
        awx_job.injected_extra_vars(BMC, {"bmc_username": "fence"})


def test_extra_vars_are_never_templated():
    # Strings AWX writes are !unsafe: a password that looks like a template stays what it is.
    text = awx_job.unsafe_yaml({"bmc_password": "{{ lookup('pipe', 'id') }}", "host_recovery_max_parallel": 3})
    assert text == "!unsafe 'bmc_password': !unsafe '{{ lookup(''pipe'', ''id'') }}'\n!unsafe 'host_recovery_max_parallel': 3\n"
    assert AnsibleLoader(text).get_single_data() == {"bmc_password": "{{ lookup('pipe', 'id') }}", "host_recovery_max_parallel": 3}


def test_private_data_dir_is_laid_out_as_awx_lays_it_out(tmp_path):
    source = tmp_path / "checkout" / "playbooks" / "recover-host.yml"
    source.parent.mkdir(parents=True)
    source.write_text("- hosts: all\n")
    inventory = {
        "all": {
            "vars": {"openstack_cloud": "novaha-admin", "openstack_clouds_yaml": "/somewhere/clouds.yaml"},
            "children": {"compute": {"hosts": {"node-28": {"bmc_type": "redfish", "bmc_username": "root", "bmc_password": "in-the-inventory"}}}},
        }
    }
    openstack = {"host": "http://127.0.0.1:5000/v3", "username": "admin", "password": "cloud-secret", "project": "admin", "domain": "Default"}
    pdd = tmp_path / "awx_4242_pdd"
    envvars = awx_job.write_private_data_dir(
        pdd,
        template=TEMPLATE,
        extra_vars={"recover_host": "node-28"},
        project_files={"playbooks/recover-host.yml": source},
        project_revision=REVISION,
        inventory=inventory,
        credentials=[(BMC, {"bmc_username": "fence", "bmc_password": "s3cret"})],
        openstack=openstack,
        path="/usr/bin:/bin",
    )
    assert (pdd / "project" / "playbooks" / "recover-host.yml").read_text() == "- hosts: all\n"
    assert stat.S_IMODE(pdd.stat().st_mode) == 0o700

    # The inventory script prints the inventory with AWX's host vars, the BMC account and the clouds.yaml left to
    # the credentials.
    script = pdd / "inventory" / "hosts"
    assert stat.S_IMODE(script.stat().st_mode) == 0o700
    printed = json.loads(subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout)
    assert printed["compute"]["hosts"] == ["node-28"] and printed["all"]["children"] == ["compute"]
    assert printed["all"]["vars"] == {"openstack_cloud": "devstack"}
    assert printed["_meta"]["hostvars"]["node-28"] == {"bmc_type": "redfish", "remote_tower_enabled": "true", "remote_tower_id": 1}

    # The job's extra vars with AWX's meta vars; the credential's in a file of its own, named by env/cmdline.
    extra_vars = AnsibleLoader((pdd / "env" / "extravars").read_text()).get_single_data()
    assert extra_vars["recover_host"] == "node-28" and extra_vars["awx_job_id"] == extra_vars["tower_job_id"] == awx_job.JOB_ID
    assert extra_vars["awx_job_template_name"] == "novaha recover host" and extra_vars["awx_project_revision"] == REVISION
    args = shlex.split((pdd / "env" / "cmdline").read_text())
    assert args[:3] == ["-u", "root", f"--forks={TEMPLATE['forks']}"] and args[3] == "-e"
    injected = Path(args[4].removeprefix("@"))
    assert injected.parent == pdd / "env" and stat.S_IMODE(injected.stat().st_mode) == 0o400
    assert AnsibleLoader(injected.read_text()).get_single_data() == {"bmc_username": "fence", "bmc_password": "s3cret"}

    # The OpenStack credential's clouds.yaml, the collections of the job first, the runner's settings and prompts.
    assert yaml.safe_load((pdd / "env" / "envvars").read_text()) == envvars
    clouds = yaml.safe_load(Path(envvars["OS_CLIENT_CONFIG_FILE"]).read_text())["clouds"]
    assert clouds == {
        "devstack": {
            "auth": {**{k: openstack[k] for k in ("username", "password")}, "auth_url": openstack["host"], "project_name": "admin", "domain_name": "Default"},
            "verify": True,
        }
    }
    assert envvars["ANSIBLE_COLLECTIONS_PATH"].split(":")[0] == str(pdd / "requirements_collections") == str(awx_job.requirements_collections(pdd))
    assert envvars["JOB_ID"] == str(awx_job.JOB_ID) and envvars["AWX_PRIVATE_DATA_DIR"] == str(pdd) and envvars["PATH"] == "/usr/bin:/bin"
    settings = json.loads((pdd / "env" / "settings").read_text())
    assert settings == {"job_timeout": TEMPLATE["timeout"], "suppress_ansible_output": True, "suppress_output_file": True}
    assert set(yaml.safe_load((pdd / "env" / "passwords").read_text()).values()) == {""}
    for path in (pdd / "env").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_the_job_is_read_back_from_its_events(tmp_path):
    events = tmp_path / "job_events"
    events.mkdir()
    written = [
        {"counter": 2, "event": "runner_on_ok", "stdout": "ok: [node-28]", "event_data": {}},
        {"counter": 1, "event": "playbook_on_start", "stdout": "", "event_data": {}},
        {"counter": 3, "event": "playbook_on_stats", "stdout": "PLAY RECAP", "event_data": {"artifact_data": {"host_recovery": {"node-28": {}}}}},
    ]
    for event in written:
        (events / f"{event['counter']}-x.json").write_text(json.dumps(event))
    read = awx_job.job_events(tmp_path)
    assert [e["counter"] for e in read] == [1, 2, 3]
    assert awx_job.job_stdout(read) == "ok: [node-28]\nPLAY RECAP"
    assert awx_job.job_artifacts(read) == {"host_recovery": {"node-28": {}}}
