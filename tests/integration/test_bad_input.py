"""Bad input on the local cloud: each one a clear error that names the option (or the clouds.yaml entry) and the
cause, and nothing changed in Nova.

One failed host is shared by the file: node-28 with two servers (one with metadata), its BMC powered off and
its nova-compute forced down; node-31 disabled (a target host that cannot take servers); node-27 up. Every case
reads Nova before and after (service flags and reasons, servers with their host, status, lock and metadata,
migrations) directly, not through the fault proxy, and the proxy's record shows that the collection sent no
write to Nova. The option checks that need no cloud run in one playbook and reach neither Keystone nor Nova.
"""

import json
import os
import subprocess
import sys
from collections import namedtuple

import pytest

from conftest import DEV_BIN, run_module

FAILED = "node-28"
DISABLED = "node-31"
UP = "node-27"
EVACUATE = "novaha.recovery.os_host_evacuate"
INSTANCE = "novaha.recovery.os_instance_evacuate"
RUN = "novaha.recovery.os_recovery_run"
INFO = "novaha.recovery.os_host_info"
SERVICE = "novaha.recovery.os_compute_service"
FENCE = "novaha.recovery.os_fence_check"

Case = namedtuple("Case", "id module args option words kind")


def case(case_id, module, args, option, words, kind="configuration"):
    return Case(case_id, module, args, option, words, kind)


# ---------------------------------------------------------------------------------------------------------
# The shared failed host and what Nova holds


def nova_state(cloud):
    """Everything a bad input must leave alone, read directly from Nova (no fault of the proxy)."""
    conn = cloud.connect(internal=True)
    services = conn.compute.get("/os-services?binary=nova-compute", microversion="2.53").json()["services"]
    servers = conn.compute.get("/servers/detail?all_tenants=True", microversion="2.73").json()["servers"]
    migrations = conn.compute.get("/os-migrations", microversion="2.59").json()["migrations"]
    return dict(
        services=sorted((s["host"], s["status"], s["forced_down"], s["disabled_reason"]) for s in services),
        servers=sorted(
            (s["id"], s["OS-EXT-SRV-ATTR:host"], s["status"], s["locked"], s.get("locked_reason"), json.dumps(s["metadata"], sort_keys=True)) for s in servers
        ),
        migrations=sorted(m["id"] for m in migrations),
    )


def set_service(cloud, host, **body):
    conn = cloud.connect(internal=True)
    (service,) = [s for s in conn.compute.get("/os-services?binary=nova-compute", microversion="2.53").json()["services"] if s["host"] == host]
    response = conn.compute.put(f"/os-services/{service['id']}", json=body, microversion="2.53")
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def failed_host(cloud):
    cloud.cli("reset")
    servers = cloud.boot(FAILED, count=2, metadata={"HA_Enabled": "True"})
    cloud.fail_host(FAILED, power="off")
    set_service(cloud, FAILED, forced_down=True)
    set_service(cloud, DISABLED, status="disabled", disabled_reason="maintenance")
    before = nova_state(cloud)
    assert len(before["servers"]) == 2
    yield dict(servers=servers, state=before)
    cloud.cli("reset")


def writes(faults, since):
    """The collection's requests that could have changed Nova (anything but GET to nova)."""
    return [(e["method"], e["path"]) for e in faults.log(service="nova", since=since) if e["method"] != "GET"]


def assert_named(result, output, c):
    assert result.get("failed"), output
    msg = result["msg"]
    assert c.option in msg, msg
    for words in c.words:
        assert words in msg, msg
    assert result.get("kind") == c.kind, (result.get("kind"), msg)
    assert not result.get("changed"), msg


# ---------------------------------------------------------------------------------------------------------
# Options a module checks before it connects: one playbook, no request to the cloud at all

BEFORE_CONNECTING = [
    case("max_parallel-0", EVACUATE, dict(host=FAILED, max_parallel=0), "max_parallel", ["max_parallel is 0: it must be 1 or more"]),
    case("timeout-negative", EVACUATE, dict(host=FAILED, timeout=-60), "timeout", ["timeout is -60: it must be 1 seconds or more"]),
    case("poll_interval-0", EVACUATE, dict(host=FAILED, poll_interval=0), "poll_interval", ["poll_interval is 0: it must be 1 seconds or more"]),
    case("retries-negative", EVACUATE, dict(host=FAILED, retries=-1), "retries", ["retries is -1: it must be 0 or more"]),
    case("max_down_percent-150", EVACUATE, dict(host=FAILED, max_down_percent=150), "max_down_percent", ["must be between 0 and 100 percent"]),
    case("outage_timeout-0", EVACUATE, dict(host=FAILED, outage_timeout=0), "outage_timeout", ["outage_timeout is 0"]),
    case("progress_interval-0", EVACUATE, dict(host=FAILED, progress_interval=0), "progress_interval", ["progress_interval is 0"]),
    case("lease-5", EVACUATE, dict(host=FAILED, lease=5), "lease", ["lease is 5: it must be 10 seconds or more"]),
    case("wait_for_run-negative", EVACUATE, dict(host=FAILED, wait_for_run=-1), "wait_for_run", ["wait_for_run is -1"]),
    case("wait_for_service_down-negative", EVACUATE, dict(host=FAILED, wait_for_service_down=-30), "wait_for_service_down", ["wait_for_service_down is -30"]),
    case("run_id-bad", EVACUATE, dict(host=FAILED, run_id="run 1!"), "run_id", ["run_id is 'run 1!': it must be 1 to 32 letters, digits"]),
    case("query-not-jmespath", EVACUATE, dict(host=FAILED, query="[?metadata.HA_Enabled=="), "query", ["is not a valid JMESPath expression"]),
    case("include-unknown-key", EVACUATE, dict(host=FAILED, include=dict(metdata=dict(HA_Enabled="True"))), "include.metdata", ["Unsupported parameters"]),
    case("exclude-names-not-a-list", EVACUATE, dict(host=FAILED, exclude=dict(names=dict(a=1))), "names", ["exclude"]),
    case(
        "recovered_by_services-empty-match",
        EVACUATE,
        dict(host=FAILED, recovered_by_services=[dict(service="octavia", match={})]),
        "recovered_by_services[0].match",
        ["recovered_by_services[0].match is", "must give at least one criterion", "would leave every server"],
    ),
    case("max_parallel-not-a-number", EVACUATE, dict(host=FAILED, max_parallel="many"), "max_parallel", ["many", "int"]),
    case("api_timeout-0", INFO, dict(host=FAILED, api_timeout=0), "api_timeout", ["api_timeout is 0"]),
    case(
        "cloud-dict-and-auth",
        INFO,
        dict(host=FAILED, cloud=dict(auth=dict(auth_url="http://127.0.0.1:1/v3")), auth=dict(password="x")),
        "auth",
        ["auth conflicts with cloud: cloud is a complete cloud configuration"],
    ),
    case("instance-timeout-0", INSTANCE, dict(server="web-1", timeout=0), "timeout", ["timeout is 0"]),
    case(
        "instance-target-is-source",
        INSTANCE,
        dict(server="web-1", target_host=FAILED, expected_source_host=FAILED),
        "target_host",
        ["target_host conflicts with expected_source_host: both are node-28"],
    ),
    case("run-settle-negative", RUN, dict(host=FAILED, state="claimed", run_id="r1", settle=-1), "settle", ["settle is -1"]),
    case("run-without-run_id", RUN, dict(host=FAILED, state="isolated"), "run_id", ["run_id is not given: it is needed with state=isolated"]),
    case("run-state-unknown", RUN, dict(host=FAILED, state="finished", run_id="r1"), "state", ["finished", "one of"]),
    case(
        "service-reason-without-disable",
        SERVICE,
        dict(host=FAILED, enabled=True, disabled_reason="x"),
        "disabled_reason",
        ["disabled_reason conflicts with enabled"],
    ),
    case("fence-power_timeout-negative", FENCE, dict(host=FAILED, power_timeout=-1), "power_timeout", ["power_timeout is -1: it must be 0 seconds or more"]),
]


def run_modules(cloud, cases):
    """Run every case's module as one task of one playbook; return [(result, output)] in the order of ``cases``."""
    tmp = cloud.state_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    out = tmp / f"bad-input-{os.getpid()}.json"
    playbook = tmp / f"bad-input-{os.getpid()}.yml"
    tasks = [
        {"name": c.id, c.module: dict(c.args, **({} if "cloud" in c.args else {"cloud": cloud.admin_cloud})), "register": "r%d" % i, "ignore_errors": True}
        for i, c in enumerate(cases)
    ]
    results = "[%s]" % ", ".join("r%d" % i for i in range(len(cases)))
    tasks.append({"name": "Save the results", "ansible.builtin.copy": {"content": "{{ %s | to_nice_json }}" % results, "dest": str(out)}, "no_log": True})
    playbook.write_text(
        json.dumps(
            [{"hosts": "localhost", "gather_facts": False, "connection": "local", "vars": {"ansible_python_interpreter": sys.executable}, "tasks": tasks}]
        )
    )
    proc = subprocess.run([str(DEV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook)], env=cloud.env(), capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    assert out.exists(), output
    results = json.loads(out.read_text())
    out.unlink()
    return results, output


def test_options_checked_before_connecting_name_the_option_and_reach_no_cloud(cloud, failed_host, faults):
    mark = faults.mark()
    results, output = run_modules(cloud, BEFORE_CONNECTING)
    for c, result in zip(BEFORE_CONNECTING, results):
        assert_named(result, output, c)
        if c.option not in ("include.metdata", "names", "max_parallel", "state") or c.id == "max_parallel-0":
            # Our own checks, not Ansible's argument spec: they say so.
            assert result["msg"].endswith("Nothing was changed"), (c.id, result["msg"])
    # Not one request: no authentication, no read, no write.
    assert faults.log(since=mark) == []
    assert nova_state(cloud) == failed_host["state"]


# ---------------------------------------------------------------------------------------------------------
# Input that only the cloud can judge, one module run each


def clouds_yaml(tmp_path, text):
    path = tmp_path / "clouds.yaml"
    path.write_text(text)
    return {"OS_CLIENT_CONFIG_FILE": str(path)}


def admin_auth(cloud, **changes):
    auth = dict(json.loads(cloud.clouds_yaml.read_text())["clouds"][cloud.admin_cloud]["auth"])
    auth.update(changes)
    return auth


CLOUD_SIDE = [
    case("unknown-host", EVACUATE, dict(host="node-99"), "host", ["host node-99 cannot be evacuated now", "node-99 is not a nova-compute host"]),
    case("host-other-case", EVACUATE, dict(host="NODE-28"), "host", ["NODE-28 is not a nova-compute host", "did you mean node-28"]),
    case("host-ambiguous-prefix", INFO, dict(host="node-2"), "host", ["no nova-compute service on host node-2", "did you mean ", "node-27", "node-28"]),
    case("host-fqdn", SERVICE, dict(host="node-28.example.com", forced_down=True), "host", ["node-28.example.com", "did you mean node-28"]),
    case("host-still-up", EVACUATE, dict(host=UP), "host", ["host node-27 cannot be evacuated now", "its nova-compute service is up"], kind="refused"),
    case(
        "target-is-the-failed-host", EVACUATE, dict(host=FAILED, target_hosts=[FAILED]), "target_hosts", ["target_hosts: ", "node-28 is the failed host itself"]
    ),
    case("target-disabled", EVACUATE, dict(host=FAILED, target_hosts=[DISABLED]), "target_hosts", ["target_hosts: not enabled and up: node-31"]),
    case("target-unknown", EVACUATE, dict(host=FAILED, target_hosts=["node-99"]), "target_hosts", ["target_hosts: not compute hosts: node-99"]),
    case("query-returns-no-list", EVACUATE, dict(host=FAILED, query="length(@)"), "query", ["query 'length(@)' must return a list of servers"]),
    case("query-returns-no-server", EVACUATE, dict(host=FAILED, query="[].flavor"), "query", ["which is not a server of the list"]),
    case("cloud-unknown", INFO, dict(host=FAILED, cloud="novaha-admn"), "cloud", ["cloud 'novaha-admn' is not in the clouds.yaml", "its clouds: novaha-admin"]),
    case(
        "cloud-non-admin",
        INFO,
        dict(host=FAILED, cloud="novaha-member"),
        "cloud",
        ["forbidden", "admin role", "HTTP 403", "with the account of cloud 'novaha-member'"],
        kind="forbidden",
    ),
    case(
        "region-unknown",
        INFO,
        dict(host=FAILED, region_name="RegionTwo"),
        "region_name",
        ["region_name is 'RegionTwo': cloud 'novaha-admin' has the regions RegionOne"],
    ),
]


@pytest.mark.parametrize("c", CLOUD_SIDE, ids=[c.id for c in CLOUD_SIDE])
def test_input_the_cloud_judges_is_named_and_changes_nothing(cloud, failed_host, faults, c):
    mark = faults.mark()
    args = dict(c.args)
    args.setdefault("cloud", cloud.admin_cloud)
    result, output = run_module(cloud, c.module, args)
    assert_named(result, output, c)
    assert writes(faults, mark) == []
    assert nova_state(cloud) == failed_host["state"]


def test_wrong_password_is_named_as_rejected_credentials(cloud, failed_host, faults):
    auth = admin_auth(cloud, password="not-the-password")
    result, output = run_module(cloud, INFO, dict(host=FAILED, auth=auth, auth_type="password"))
    assert_named(result, output, case("", INFO, {}, "auth", ["the cloud rejected the credentials", "HTTP 401"], kind="unauthorized"))
    assert result["option"] == "auth"
    assert "not-the-password" not in json.dumps(result) + output
    assert faults.requests("nova") == []
    assert nova_state(cloud) == failed_host["state"]


def test_an_expired_token_is_named_as_rejected_credentials(cloud, failed_host, faults):
    # A token that Keystone revoked is as dead as an expired one: a token auth with it is refused.
    conn = cloud.connect(internal=True)
    token = conn.session.get_token()
    response = conn.session.delete(
        cloud.info["internal_endpoints"]["identity"].rstrip("/") + "/auth/tokens", headers={"X-Subject-Token": token}, raise_exc=False
    )
    assert response.status_code == 204, response.text
    auth = dict(auth_url=admin_auth(cloud)["auth_url"], token=token, project_name="admin", project_domain_name="Default")
    result, output = run_module(cloud, INFO, dict(host=FAILED, auth=auth, auth_type="v3token"))
    assert_named(result, output, case("", INFO, {}, "auth", ["an expired or revoked token", "HTTP 404"], kind="unauthorized"))
    assert token not in json.dumps(result) + output
    assert nova_state(cloud) == failed_host["state"]


def test_an_unparsable_clouds_yaml_is_named(cloud, failed_host, faults, tmp_path):
    env = clouds_yaml(tmp_path, "clouds:\n  novaha-admin: {auth: {auth_url: 'http://x'}\n  novaha-member: [\n")
    result, output = run_module(cloud, INFO, dict(host=FAILED, cloud="novaha-admin"), extra_env=env)
    assert_named(result, output, case("", INFO, {}, "cloud", ["the clouds.yaml %s is not valid YAML" % env["OS_CLIENT_CONFIG_FILE"]]))
    assert faults.requests() == []


def test_a_clouds_yaml_entry_without_auth_url_is_named(cloud, failed_host, faults, tmp_path):
    env = clouds_yaml(tmp_path, "clouds:\n  novaha-admin:\n    region_name: RegionOne\n    auth:\n      username: admin\n      password: x\n")
    result, output = run_module(cloud, INFO, dict(host=FAILED, cloud="novaha-admin"), extra_env=env)
    assert_named(result, output, case("", INFO, {}, "cloud", ["cloud 'novaha-admin'", "auth_url"]))
    assert faults.requests() == []


def test_an_unreachable_keystone_is_named(cloud, failed_host, faults):
    faults.reset("keystone")
    # Asked once (auth_retry_timeout 0): the wait for a Keystone that comes back is tested in test_api_faults.py.
    result, output = run_module(cloud, EVACUATE, dict(cloud=cloud.admin_cloud, host=FAILED, auth_retry_timeout=0))
    assert_named(result, output, case("", EVACUATE, {}, "cloud", ["connecting to cloud 'novaha-admin' failed", "unreachable"], kind="unreachable"))
    assert faults.requests("nova") == []
    assert nova_state(cloud) == failed_host["state"]


def test_a_keystone_that_never_answers_is_named_within_api_timeout(cloud, failed_host, faults):
    faults.hang("keystone")
    result, output = run_module(cloud, INFO, dict(cloud=cloud.admin_cloud, host=FAILED, api_timeout=3, auth_retry_timeout=0))
    assert_named(result, output, case("", INFO, {}, "cloud", ["connecting to cloud 'novaha-admin' failed", "did not answer in time"], kind="unreachable"))
    assert nova_state(cloud) == failed_host["state"]


def test_an_unreachable_nova_is_named_and_nothing_is_changed(cloud, failed_host, faults):
    faults.reset("nova")
    result, output = run_module(cloud, SERVICE, dict(cloud=cloud.admin_cloud, host=FAILED, enabled=False, disabled_reason="x"))
    assert result.get("failed"), output
    assert "no answer from the compute API" in result["msg"], result["msg"]
    assert result.get("kind") == "api_error"
    assert nova_state(cloud) == failed_host["state"]
