"""auth_cache on the local cloud: the modules of a run share one Keystone token, and never leak it.

Each module of the collection authenticates to Keystone when it starts, and Nova then validates the new
token with Keystone on the module's first request. With ``auth_cache`` the first module saves its token
(and catalog) in a private file and the next ones use it. What an operator cares about: the second module
works with the first one's token (it authenticates no more), a token the API refuses costs a new
authentication and nothing else, the file is private, and the token shows up in no result or output.
"""

import json
import os

from conftest import run_module

MODULE = "novaha.recovery.os_host_info"
HOST = "node-28"


def info(cloud, cache):
    return run_module(cloud, MODULE, dict(cloud=cloud.admin_cloud, host=HOST, auth_cache=str(cache)))


def saved_token(cache):
    (state,) = json.loads(cache.read_text()).values()
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
    (key,) = saved
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
