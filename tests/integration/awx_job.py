"""A job of the AWX job template "novaha recover host", laid out as AWX lays it out for ansible-runner and read
back as AWX reads it (test tooling: standard library, PyYAML and Jinja2, no AWX).

What AWX does for a job (awx/main/tasks/jobs.py RunJob, awx/main/models/mixins.py, awx/main/utils/safe_yaml.py),
and where each piece is made here:

- launch: the survey's defaults that pass validation, the answers over them, each answer validated against its
  question (type, choices, min, max) and anything else refused, since the template does not prompt for
  variables (``launch_extra_vars``);
- the private data directory (``write_private_data_dir``): ``project/`` the project's checkout (its playbook
  path is relative to it), ``requirements_collections/`` the project's collections (``ANSIBLE_COLLECTIONS_PATH``
  starts there), ``inventory/hosts`` an executable script that prints the inventory as JSON (``_meta.hostvars``,
  ``remote_tower_*`` vars), ``env/extravars`` the job's extra vars and AWX's meta vars as YAML with every string
  ``!unsafe`` (never templated), ``env/cmdline`` the job template's arguments and, for each credential with an
  extra_vars injector, ``-e @env/<temporary file>`` holding what the injector rendered; an OpenStack credential's
  clouds.yaml in ``env/`` with ``OS_CLIENT_CONFIG_FILE`` naming it; ``env/settings`` the runner's settings (the
  job's timeout, no output of its own, no stdout file: the job's output is its events);
- AWX hands the environment and the password prompts to ``ansible-runner worker`` as arguments
  (``suppress_env_files``); ``ansible-runner run`` reads the same from ``env/envvars`` and ``env/passwords``.

Paths are the private data directory's own: AWX runs the job in an execution environment's container, where the
directory is mounted at /runner; here ansible-runner runs the job as a process (no container engine).
"""

import copy
import json
import os
import shlex
import stat
import subprocess
import tempfile
from pathlib import Path

import jinja2.sandbox
import yaml

ROOT = Path(__file__).resolve().parents[2]
ASSETS_FILE = ROOT / "extensions" / "awx" / "novaha_recovery.awx.yml"

# The ids AWX would give the objects of one job (any positive integers).
JOB_ID = 4242
JOB_TEMPLATE_ID = 7
INVENTORY_ID = 3
USER = {"id": 1, "name": "admin", "email": "admin@example.com", "first_name": "", "last_name": ""}
# AWX's name for the cloud of an OpenStack credential's clouds.yaml (awx_plugins credentials injectors).
OPENSTACK_CREDENTIAL_CLOUD = "devstack"
# RunJob.get_password_prompts without a machine or vault credential: every prompt answered with nothing.
PASSWORD_PROMPTS = (
    r"Enter passphrase for .*:\s*?$",
    r"Bad passphrase, try again for .*:\s*?$",
    r"sudo password.*:\s*?$",
    r"SUDO password.*:\s*?$",
    r"su password.*:\s*?$",
    r"SU password.*:\s*?$",
    r"BECOME password.*:\s*?$",
    r"SSH password:\s*?$",
    r"Password:\s*?$",
    r"Vault password:\s*?$",
)


class SurveyError(ValueError):
    """A launch AWX refuses: the answers that do not fit the survey, as AWX words them."""

    def __init__(self, errors):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


def assets():
    return yaml.safe_load(ASSETS_FILE.read_text())


def job_template(name="novaha recover host"):
    (found,) = [t for t in assets()["job_templates"] if t["name"] == name]
    return found


def credential_type(name="novaha BMC"):
    (found,) = [c for c in assets()["credential_types"] if c["name"] == name]
    return found


# ---------------------------------------------------------------------------------------------------------
# Launch: the survey


def _choices(question):
    choices = question.get("choices") or []
    if isinstance(choices, str):  # AWX also takes them one a line
        choices = [c for c in choices.splitlines() if c.strip()]
    return choices


def _bounded(value, question, measure, kind):
    errors = []
    variable = question["variable"]
    low, high = question.get("min"), question.get("max")
    if low not in ("", None) and measure < kind(low):
        errors.append(f"'{variable}' value {value} is too small (must be at least {low}).")
    if high not in ("", None) and measure > kind(high):
        errors.append(f"'{variable}' value {value} is too large (must be no more than {high}).")
    return errors


def survey_errors(question, answers):
    """What AWX says about one survey question given ``answers`` (its _survey_element_validation): a required
    answer missing; text of the wrong type or length; an integer that is not one (a bool is refused too) or out of
    min..max; a float likewise; a choice not among the choices; a multiselect that is not a list of choices."""
    variable, kind = question["variable"], question["type"]
    if variable not in answers:
        return [f"'{variable}' value missing"] if question.get("required") else []
    value = answers[variable]
    if kind in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return [f"Value {value} for '{variable}' expected to be a string."]
        return _bounded(value, question, len(value), int)
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):  # AWX compares type(): a bool is no integer
            return [f"Value {value} for '{variable}' expected to be an integer."]
        return _bounded(value, question, value, int)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (float, int)):
            return [f"Value {value} for '{variable}' expected to be a numeric type."]
        return _bounded(value, question, value, float)
    if kind == "multiplechoice":
        return [] if value in _choices(question) else [f"Value {value} for '{variable}' expected to be one of {_choices(question)}."]
    if kind == "multiselect":
        if not isinstance(value, list):
            return [f"'{variable}' value is expected to be a list."]
        return [f"Value {v} for '{variable}' expected to be one of {_choices(question)}." for v in value if v not in _choices(question)]
    return [f"'{variable}' has a question type AWX does not know: {kind}"]


def launch_extra_vars(template, answers):
    """The extra vars of a job launched from ``template`` with the survey ``answers``, as AWX makes them: the
    template's own extra vars, each survey default that passes its question's validation (an empty default of a
    required text with a minimum length does not), the answers over them. Raises SurveyError when an answer does
    not fit its question, a required one is missing, or a variable is not the survey's and the template does not
    prompt for variables."""
    spec = template["related"]["survey_spec"]["spec"] if template.get("survey_enabled") else []
    questions = {q["variable"]: q for q in spec}
    errors = []
    for question in spec:
        if question["variable"] in answers:
            errors += survey_errors(question, answers)
    unknown = sorted(set(answers) - set(questions))
    if unknown and not template.get("ask_variables_on_launch"):
        errors.append(
            f"Variables {', '.join(unknown)} are not allowed on launch. Check the Prompt on Launch setting on the Job Template to include Extra Variables."
        )
    extra_vars = copy.deepcopy(template.get("extra_vars") or {})
    for question in spec:
        default = question.get("default")
        if default is not None and not survey_errors(question, {question["variable"]: default}):
            extra_vars[question["variable"]] = default
    extra_vars.update(answers)
    errors += [e for question in spec if question["variable"] not in answers for e in survey_errors(question, extra_vars)]
    if errors:
        raise SurveyError(errors)
    return extra_vars


def meta_vars(template, project_revision):
    """What AWX adds to every job's extra vars (Job.awx_meta_vars), under both prefixes."""
    found = {}
    for prefix in ("awx", "tower"):
        found.update(
            {
                f"{prefix}_job_id": JOB_ID,
                f"{prefix}_job_launch_type": "manual",
                f"{prefix}_user_id": USER["id"],
                f"{prefix}_user_name": USER["name"],
                f"{prefix}_user_email": USER["email"],
                f"{prefix}_user_first_name": USER["first_name"],
                f"{prefix}_user_last_name": USER["last_name"],
                f"{prefix}_project_revision": project_revision,
                f"{prefix}_project_scm_branch": "",
                f"{prefix}_job_template_id": JOB_TEMPLATE_ID,
                f"{prefix}_job_template_name": template["name"],
            }
        )
    return found


# ---------------------------------------------------------------------------------------------------------
# Credentials


def injected_extra_vars(cred_type, inputs):
    """The extra vars a credential of ``cred_type`` injects: its injectors' extra_vars templates rendered with the
    credential's inputs in Jinja2's immutable sandbox, as AWX renders them."""
    fields = {f["id"] for f in cred_type["inputs"]["fields"]}
    missing = [f for f in cred_type["inputs"].get("required", []) if not inputs.get(f)]
    if missing or set(inputs) - fields:
        raise ValueError(f"credential inputs do not fit {cred_type['name']}: missing {missing}, unknown {sorted(set(inputs) - fields)}")
    sandbox = jinja2.sandbox.ImmutableSandboxedEnvironment()
    return {name: sandbox.from_string(template).render(**inputs) for name, template in cred_type["injectors"].get("extra_vars", {}).items()}


def openstack_clouds_yaml(inputs):
    """The clouds.yaml of AWX's OpenStack credential (host, username, password, project, project_domain_name,
    domain, region, verify_ssl): one cloud, named devstack."""
    auth = {"auth_url": inputs["host"], "username": inputs["username"], "password": inputs["password"], "project_name": inputs["project"]}
    if inputs.get("project_domain_name"):
        auth["project_domain_name"] = inputs["project_domain_name"]
    if inputs.get("domain"):
        auth["domain_name"] = inputs["domain"]
    cloud = {"auth": auth, "verify": bool(inputs.get("verify_ssl", True))}
    if inputs.get("region"):
        cloud["region_name"] = inputs["region"]
    return {"clouds": {OPENSTACK_CREDENTIAL_CLOUD: cloud}}


# ---------------------------------------------------------------------------------------------------------
# The private data directory


class _UnsafeStrings(yaml.SafeDumper):
    """awx.main.utils.safe_yaml: every string tagged !unsafe, so Ansible never templates it."""

    def represent_data(self, data):
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def unsafe_yaml(data):
    """Extra vars as AWX writes them (no template-trusted variables: every key and string value !unsafe)."""
    return "".join(yaml.dump({key: value}, Dumper=_UnsafeStrings, default_flow_style=False) for key, value in data.items())


def inventory_script_data(inventory, drop=()):
    """An Ansible YAML inventory (all: vars, hosts, children) as AWX's inventory script prints it: a group per
    group with its hosts, children and vars, every host's vars under _meta.hostvars with AWX's remote_tower_*
    vars; the variables in ``drop`` left out (they come from a credential)."""
    data = {"_meta": {"hostvars": {}}}

    def walk(name, group):
        group = group or {}
        entry = data.setdefault(name, {"hosts": [], "children": [], "vars": {}})
        entry["vars"].update({k: v for k, v in (group.get("vars") or {}).items() if k not in drop})
        for host, host_vars in (group.get("hosts") or {}).items():
            entry["hosts"].append(host)
            hostvars = data["_meta"]["hostvars"].setdefault(host, {})
            hostvars.update({k: v for k, v in (host_vars or {}).items() if k not in drop})
            hostvars.setdefault("remote_tower_enabled", "true")
            hostvars.setdefault("remote_tower_id", len(data["_meta"]["hostvars"]))
        for child, child_group in (group.get("children") or {}).items():
            entry["children"].append(child)
            walk(child, child_group)

    walk("all", inventory["all"])
    return data


def requirements_collections(pdd):
    """Where AWX's project update installs the project's collections for the job (the first collections path)."""
    return Path(pdd) / "requirements_collections"


def _private_file(directory, name, text, mode=0o600):
    """A file only the job's user reads (AWX's write_private_data_file); ``name`` None: a temporary name."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if name is None:
        handle, path = tempfile.mkstemp(dir=directory)
        os.close(handle)
        path = Path(path)
    else:
        path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


def write_private_data_dir(
    pdd,
    *,
    template,
    extra_vars,
    project_files,
    project_revision,
    inventory,
    credentials,
    openstack,
    path,
):
    """Lay out ``pdd`` for the job: ``project_files`` (relative path -> source file) copied to project/, the
    inventory script, the extra vars with AWX's meta vars, each credential's injected extra vars (``credentials``:
    (credential type, inputs) pairs) and the OpenStack credential's clouds.yaml (``openstack``: its inputs), the
    arguments, environment (``path``: the execution environment's PATH), password prompts and runner settings. The
    caller installs the project's collections into requirements_collections(pdd). Returns the job's environment
    (env/envvars)."""
    pdd = Path(pdd)
    pdd.mkdir(parents=True, exist_ok=True)
    pdd.chmod(stat.S_IRWXU)
    env_dir = pdd / "env"
    project = pdd / "project"
    for relative, source in project_files.items():
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(source).read_bytes())
        target.chmod(Path(source).stat().st_mode & 0o777)

    drop = {name for cred_type, _inputs in credentials for name in cred_type["injectors"].get("extra_vars", {})} | {"openstack_clouds_yaml"}
    script = inventory_script_data(inventory, drop=drop)
    script["all"]["vars"]["openstack_cloud"] = OPENSTACK_CREDENTIAL_CLOUD
    _private_file(pdd / "inventory", "hosts", f"#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint({json.dumps(script)!r})\n", mode=0o700)

    _private_file(env_dir, "extravars", unsafe_yaml({**extra_vars, **meta_vars(template, project_revision)}))

    # RunJob.build_args: no machine credential (the modules run on the controller), so the default user root.
    args = ["-u", "root"]
    if template.get("job_type") == "check":
        args.append("--check")
    if template.get("forks"):
        args.append(f"--forks={template['forks']}")
    if template.get("verbosity"):
        args.append("-" + "v" * min(5, template["verbosity"]))
    for cred_type, inputs in credentials:
        injected = injected_extra_vars(cred_type, inputs)
        if injected:
            args += ["-e", f"@{_private_file(env_dir, None, unsafe_yaml(injected), mode=stat.S_IRUSR)}"]
    _private_file(env_dir, "cmdline", shlex.join(args))

    clouds_yaml = _private_file(env_dir, None, yaml.safe_dump(openstack_clouds_yaml(openstack), default_flow_style=False))
    (pdd / "cp").mkdir(mode=0o700, exist_ok=True)
    envvars = {
        # AWX's ANSIBLE_* settings (awx/settings/defaults.py)
        "ANSIBLE_FORCE_COLOR": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False",
        # RunJob.build_env
        "AWX_PRIVATE_DATA_DIR": str(pdd),
        "JOB_ID": str(JOB_ID),
        "INVENTORY_ID": str(INVENTORY_ID),
        "PROJECT_REVISION": project_revision,
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "MAX_EVENT_RES": "700000",
        "AWX_HOST": "https://awx.example.invalid",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(pdd / "cp"),
        "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
        "ANSIBLE_ROLES_PATH": os.pathsep.join([str(pdd / "requirements_roles"), "~/.ansible/roles", "/usr/share/ansible/roles", "/etc/ansible/roles"]),
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([str(requirements_collections(pdd)), "~/.ansible/collections", "/usr/share/ansible/collections"]),
        "ANSIBLE_CALLBACK_PLUGINS": os.pathsep.join(
            [str(pdd / "plugins_path"), "~/.ansible/plugins", "/plugins/callback", "/usr/share/ansible/plugins/callback"]
        ),
        # The execution environment's PATH: its ansible-playbook and Python first.
        "PATH": path,
    }
    _private_file(env_dir, "envvars", yaml.safe_dump(envvars, default_flow_style=False))
    _private_file(env_dir, "passwords", yaml.safe_dump(dict.fromkeys(PASSWORD_PROMPTS, ""), default_flow_style=False))
    settings = {"job_timeout": template.get("timeout", 0), "suppress_ansible_output": True, "suppress_output_file": True}
    _private_file(env_dir, "settings", json.dumps(settings))
    return envvars


# ---------------------------------------------------------------------------------------------------------
# Running it and reading it back


def run_job(runner, pdd, template, env, timeout=900):
    """`ansible-runner run` of the job (``runner``: the execution environment's ansible-runner, ``env``: the
    environment it starts with): the template's playbook relative to project/, the job id as the runner's ident,
    the inventory script. Returns the finished process and the job's artifacts directory."""
    pdd = Path(pdd)
    cmd = [str(runner), "run", str(pdd), "-p", template["playbook"], "--ident", str(JOB_ID), "--inventory", str(pdd / "inventory" / "hosts")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc, pdd / "artifacts" / str(JOB_ID)


def job_events(artifacts):
    """The job's events in the order AWX shows them (their counter)."""
    events = [json.loads(p.read_text()) for p in (Path(artifacts) / "job_events").glob("*.json")]
    return sorted(events, key=lambda e: e["counter"])


def job_stdout(events):
    """The job's output as AWX shows it: the events' stdout, in order."""
    return "\n".join(e["stdout"] for e in events if e.get("stdout"))


def job_artifacts(events):
    """What AWX stores as the job's artifacts (and hands to the next nodes of a workflow): the set_stats data of the
    playbook_on_stats event."""
    (stats,) = [e for e in events if e["event"] == "playbook_on_stats"]
    return stats["event_data"].get("artifact_data", {})
