"""auth_cache on the local cloud: the modules of a run share one Keystone token, and never leak it.

Each module of the collection authenticates to Keystone when it starts, and Nova then validates the new
token with Keystone on the module's first request. With ``auth_cache`` the first module saves its token
(and catalog) in a private file and the next ones use it. What an operator cares about: the second module
works with the first one's token (it authenticates no more), a token the API refuses costs a new
authentication and nothing else, the file is private, and the token shows up in no result or output.
"""

import http.server
import json
import os
import threading

from conftest import run_module

MODULE = "novaha.recovery.os_host_info"
HOST = "node-28"


def info(cloud, cache):
    return run_module(cloud, MODULE, dict(cloud=cloud.admin_cloud, host=HOST, auth_cache=str(cache)))


def saved_token(cache):
    (state,) = [v for v in json.loads(cache.read_text()).values() if isinstance(v, str)]  # beside it, the connection profile
    return json.loads(state)["auth_token"]


def private_dir(tmp_path):
    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
    return directory


def test_the_second_module_uses_the_first_ones_token(cloud, tmp_path):
    cache = private_dir(tmp_path) / "run.token"
    first, output = info(cloud, cache)
    assert not first.get("failed"), output
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    token, written = saved_token(cache), cache.read_bytes()

    second, output2 = info(cloud, cache)
    assert not second.get("failed"), output2
    assert second["service"]["host"] == HOST
    # Authenticating again would have saved the new token: the file is as the first module left it.
    assert cache.read_bytes() == written
    for text in (json.dumps(first), output, json.dumps(second), output2):
        assert token not in text


def test_a_token_the_api_refuses_costs_one_new_authentication(cloud, tmp_path):
    cache = private_dir(tmp_path) / "run.token"
    info(cloud, cache)
    # A token Keystone never issued, still "valid" by its expiry time: Nova answers 401 to it. (A revoked
    # token is not the same test: Nova's keystonemiddleware keeps accepting it from its cache for minutes.)
    saved = json.loads(cache.read_text())
    (key,) = [k for k, v in saved.items() if isinstance(v, str)]
    state = json.loads(saved[key])
    state["auth_token"] = "gAAAAABnot-a-token-keystone-issued"
    saved[key] = json.dumps(state)
    cache.write_text(json.dumps(saved))

    result, output = info(cloud, cache)
    assert not result.get("failed"), output
    assert result["service"]["host"] == HOST
    fresh = saved_token(cache)
    assert fresh != "gAAAAABnot-a-token-keystone-issued"
    assert fresh not in json.dumps(result) and fresh not in output


def test_a_shared_directory_is_refused_with_a_warning(cloud, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    result, output = info(cloud, shared / "run.token")
    assert not result.get("failed"), output
    assert not (shared / "run.token").exists()
    assert any("open to other users" in w for w in result.get("warnings", [])), output
    assert os.listdir(shared) == []


def test_the_next_module_connects_from_the_profile_the_first_saved_until_a_configuration_file_changes(cloud, tmp_path):
    cache = private_dir(tmp_path) / "run.token"
    first, output = info(cloud, cache)
    assert not first.get("failed"), output
    saved = json.loads(cache.read_text())
    (key,) = [k for k in saved if k.startswith("connection:")]
    profile = saved[key]
    # The endpoint openstacksdk resolved, the credentials' key of the token beside it, and no password.
    assert profile["services"]["compute"]["endpoint"].rstrip("/") == cloud.info["endpoints"]["compute"].rstrip("/"), profile
    assert isinstance(saved[profile["auth_key"]], str)
    password = json.loads(cloud.clouds_yaml.read_text())["clouds"][cloud.admin_cloud]["auth"]["password"]
    assert password not in cache.read_text()

    # The next module follows the profile: a compute endpoint changed in it (a stub that answers 404 to anything and
    # records what it was asked) is the one called.
    asked = []

    class Stub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = b'{"itemNotFound": {"code": 404, "message": "a stub"}}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        profile["services"]["compute"]["endpoint"] = f"http://127.0.0.1:{stub.server_address[1]}/v2.1"
        cache.write_text(json.dumps(saved))
        second, output2 = info(cloud, cache)
    finally:
        stub.shutdown()
    assert second.get("failed") and asked and all(path.startswith("/") for path in asked), (asked, output2)

    # A configuration file that changed since (here clouds.yaml, rewritten with the same clouds) means connecting
    # through openstacksdk again, from the catalog.
    original = cloud.clouds_yaml.read_text()
    try:
        cloud.clouds_yaml.write_text(json.dumps(json.loads(original), indent=4))
        third, output3 = info(cloud, cache)
    finally:
        cloud.clouds_yaml.write_text(original)
    assert not third.get("failed"), output3
    assert third["service"]["host"] == HOST
