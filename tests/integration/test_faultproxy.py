"""The local cloud's fault proxy: faults for the collection's requests, none for Nova's own.

The collection reaches Keystone, Nova, Placement and the Redfish BMCs through the proxy (clouds.yaml, the
catalog's public endpoints, the BMC addresses); Nova's services talk to each other directly. A test adds
rules through the `faults` fixture (localcloud/faultclient.py) and reads what the proxy saw.
"""

import base64
import json
import ssl
import time
import urllib.error
import urllib.request

import openstack.config
import openstack.connection
import pytest
from keystoneauth1 import exceptions as ksa_exceptions

from conftest import run_module

HOST = "node-28"
SERVICES_PATH = r"^/v2\.1/os-services"


def list_services(conn):
    return conn.compute.get("/os-services?binary=nova-compute", microversion="2.53")


def wait_done(faults, entry_filter, timeout=5.0):
    """The proxy's entries matching `entry_filter`, once every one of them is finished."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [e for e in faults.log() if entry_filter(e)]
        if entries and all(e["done"] for e in entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


def test_the_collection_goes_through_the_proxy_and_the_cloud_does_not(cloud, faults):
    endpoints, internal = cloud.info["endpoints"], cloud.info["internal_endpoints"]
    proxied = cloud.info["faultproxy"]["services"]
    assert endpoints["compute"].startswith(proxied["nova"]["listen"])
    assert internal["compute"].startswith(proxied["nova"]["upstream"])
    assert json.loads(cloud.clouds_yaml.read_text())["clouds"][cloud.admin_cloud]["auth"]["auth_url"] == endpoints["identity"]
    assert cloud.bmc(HOST)["redfish"]["url"] == proxied[f"bmc-{HOST}"]["listen"]

    conn = cloud.connect()
    assert list_services(conn).status_code == 200
    assert conn.compute.get_endpoint() == endpoints["compute"]
    seen = {(e["service"], e["method"]) for e in faults.log()}
    assert {("keystone", "POST"), ("nova", "GET")} <= seen
    mark = faults.mark()
    direct = cloud.connect(internal=True)
    assert list_services(direct).status_code == 200
    assert faults.log(since=mark) == []


def test_a_nova_read_gets_503_during_the_window_and_passes_after(cloud, faults):
    conn = cloud.connect()
    conn.authorize()
    rule = faults.error("nova", status=503, method="GET", path=SERVICES_PATH, window=2)
    started = time.monotonic()
    refused = list_services(conn)
    assert refused.status_code == 503
    assert refused.json()["serviceUnavailable"]["code"] == 503
    assert refused.headers["x-openstack-request-id"].startswith("req-")
    # A request the rule does not select passes during the window.
    assert conn.compute.get("/flavors").status_code == 200
    time.sleep(max(0.0, started + 2.1 - time.monotonic()))
    assert list_services(conn).status_code == 200

    entries = faults.requests("nova", method="GET", path=SERVICES_PATH)
    assert [(e["status"], e["forwarded"]) for e in entries] == [(503, False), (200, True)]
    assert faults.rule(rule["id"])["applied"] == 1


def test_a_reset_fails_the_request_and_the_next_one_goes_through(cloud, faults):
    conn = cloud.connect()
    conn.authorize()
    faults.reset("nova", path=SERVICES_PATH, count=1)
    with pytest.raises(ksa_exceptions.ConnectFailure, match="reset by peer"):
        list_services(conn)
    assert list_services(conn).status_code == 200
    entries = faults.requests("nova", path=SERVICES_PATH)
    outcomes = [(e["status"], e["forwarded"], bool(e["fault"])) for e in entries]
    assert outcomes == [(None, False, True), (200, True, False)]


def test_a_hang_fails_an_sdk_call_in_its_api_timeout(cloud, faults):
    region = openstack.config.OpenStackConfig(config_files=[str(cloud.clouds_yaml)], load_envvars=False).get_one(cloud.admin_cloud, api_timeout=2)
    conn = openstack.connection.Connection(config=region)
    conn.authorize()
    faults.hang("nova", path=SERVICES_PATH)
    started = time.monotonic()
    with pytest.raises(ksa_exceptions.ConnectTimeout):
        list_services(conn)
    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed <= 3.5, elapsed
    # The proxy saw the client leave; the request never reached Nova.
    (entry,) = wait_done(faults, lambda e: e["service"] == "nova")
    assert entry["client_gone"] and not entry["forwarded"] and entry["status"] is None


def test_a_slow_keystone_delays_the_authentication(cloud, faults):
    faults.delay("keystone", 1.5, method="POST", path=r"^/v3/auth/tokens", count=1)
    started = time.monotonic()
    cloud.connect().authorize()
    assert time.monotonic() - started >= 1.5
    (entry,) = faults.requests("keystone", method="POST", path="/auth/tokens")
    assert entry["status"] == 201 and entry["forwarded"] and entry["fault"]["action"] == "delay"


def test_a_lost_answer_means_nova_did_the_post_once(clean_cloud, faults):
    cloud = clean_cloud
    (server,) = cloud.boot(HOST)
    conn = cloud.connect()
    conn.authorize()
    faults.reset("nova", method="POST", path=r"/metadata$", phase="response", count=1)
    with pytest.raises(ksa_exceptions.ConnectFailure):
        conn.compute.post(f"/servers/{server['id']}/metadata", json={"metadata": {"novaha-probe": "1"}})
    metadata = conn.compute.get(f"/servers/{server['id']}/metadata").json()["metadata"]
    assert metadata["novaha-probe"] == "1"
    (post,) = faults.requests("nova", method="POST")
    assert post["forwarded"] and post["upstream_status"] == 200 and post["status"] is None


def test_nova_boots_a_server_while_every_public_endpoint_fails(clean_cloud, faults):
    cloud = clean_cloud
    conn = cloud.connect()
    conn.authorize()
    faults.error("*", status=503)
    assert list_services(conn).status_code == 503
    mark = faults.mark()
    # The boot (the local cloud's tooling goes direct) needs nova-api, Keystone's token validation,
    # the scheduler and Placement, nova-conductor and nova-compute: none of them goes through the proxy.
    started = time.monotonic()
    (server,) = cloud.boot(HOST)
    assert server["status"] == "ACTIVE" and server["host"] == HOST
    assert faults.log(since=mark) == []
    assert list_services(conn).status_code == 503
    faults.clear()
    assert list_services(conn).status_code == 200
    assert time.monotonic() - started < 60


def test_a_redfish_bmc_answers_through_the_proxy_and_fails_when_told(cloud, faults):
    bmc = cloud.bmc(HOST)

    def get_system():
        request = urllib.request.Request(bmc["redfish"]["url"] + bmc["redfish"]["system_path"])
        token = base64.b64encode(f"{bmc['username']}:{bmc['password']}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=bmc["ca_path"])
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read())

    status, system = get_system()
    assert status == 200 and system["PowerState"] in ("On", "Off")
    faults.error(f"bmc-{HOST}", status=500, count=1)
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_system()
    assert refused.value.code == 500
    assert "error" in json.loads(refused.value.read())
    assert get_system()[0] == 200
    assert [e["status"] for e in faults.requests(f"bmc-{HOST}")] == [200, 500, 200]


def test_the_collections_module_works_unchanged_through_the_proxy(cloud, faults):
    result, output = run_module(cloud, "novaha.recovery.os_host_info", dict(cloud=cloud.admin_cloud, host=HOST))
    assert not result.get("failed"), output
    assert result["service"]["host"] == HOST
    entries = faults.log()
    assert {e["service"] for e in entries} >= {"keystone", "nova"}
    assert all(e["status"] and e["status"] < 400 and not e["fault"] for e in entries), entries


def test_the_cli_adds_lists_logs_and_clears_faults(cloud, faults):
    added = json.loads(cloud.cli("fault", "add", "nova", "error", "--status", "500", "--method", "GET", "--path", SERVICES_PATH, "--count", "1").stdout)
    assert added["status"] == 500 and added["count"] == 1
    conn = cloud.connect()
    assert list_services(conn).status_code == 500
    (rule,) = json.loads(cloud.cli("fault", "list").stdout)
    assert (rule["id"], rule["applied"], rule["active"]) == (added["id"], 1, False)
    log = cloud.cli("fault", "log", "--service", "nova").stdout
    assert "500" in log and f"error@request#{added['id']}" in log
    bad = cloud.cli("fault", "add", "nova", "error", "--rate", "2", check=False)
    assert bad.returncode == 2 and "rate must be at most 1" in bad.stderr
    assert "removed 1 rule(s)" in cloud.cli("fault", "clear").stdout
    assert faults.rules() == []
