"""What an operator reads when the cloud refuses: the shared error phrasing, secrets; the auth cache."""

import pytest
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from ansible_collections.novaha.recovery.plugins.module_utils import _cloud


class FakeResponse:
    def __init__(self, status, headers=None):
        self.status_code = status
        self.headers = headers or {}


def http_error(status, message, request_id="req-5d1c"):
    return sdk_exc.HttpException(message=message, response=FakeResponse(status, {"x-compute-request-id": request_id}))


def test_forbidden_says_admin_is_needed_with_status_and_request_id():
    msg, details = _cloud.describe_api_error(
        http_error(403, "Policy doesn't allow os_compute_api:os-services:list to be performed."), "looking up the nova-compute service of node-28"
    )
    assert msg.startswith("looking up the nova-compute service of node-28 failed: forbidden; this needs an account with the admin role")
    assert "HTTP 403" in msg and "request id req-5d1c" in msg
    assert details == {"http_status": 403, "request_id": "req-5d1c", "kind": "forbidden"}


def test_rejected_credentials_are_named_as_such():
    msg, details = _cloud.describe_api_error(
        ksa_exc.Unauthorized("The request you have made requires authentication.", http_status=401), "connecting to the cloud"
    )
    assert "the cloud rejected the credentials" in msg
    assert details["http_status"] == 401


def test_an_unreachable_api_is_not_mistaken_for_an_http_error():
    msg, details = _cloud.describe_api_error(ksa_exc.ConnectFailure("Unable to establish connection"), "listing servers on node-28")
    assert "the API is unreachable" in msg
    assert details == {"http_status": None, "request_id": None, "kind": "unreachable"}


def test_nova_message_is_kept_for_other_http_errors():
    msg, _details = _cloud.describe_api_error(http_error(400, "Compute service of node-28 is still in use."), "evacuating web-3")
    assert msg == ("evacuating web-3 failed: Compute service of node-28 is still in use. (HTTP 400, request id req-5d1c)")


def test_secrets_are_found_at_any_depth_of_a_cloud_dict():
    cloud = {
        "auth": {"username": "admin", "password": "s3cret", "auth_url": "http://127.0.0.1:5000/v3", "application_credential_secret": "appsecret"},
        "region_name": "RegionOne",
        "extra": [{"token": "tok"}],
    }
    assert _cloud.collect_secrets(cloud) == {"s3cret", "appsecret", "tok"}


# ---------------------------------------------------------------------------------------------------------
# auth_cache: one Keystone token for the modules of a run


class FakeAuth:
    """The part of a keystoneauth identity plugin that auth_cache uses."""

    def __init__(self, credentials="admin:secret@keystone", token=None):
        self.credentials = credentials
        self.state = None if token is None else '{"auth_token": "%s"}' % token

    def get_cache_id(self):
        return "id-" + str(abs(hash(self.credentials)))

    def get_auth_state(self):
        return self.state

    def set_auth_state(self, state):
        self.state = state


def test_a_token_saved_by_one_module_is_used_by_the_next_with_the_same_credentials(tmp_path):
    cache = tmp_path / "run.token"
    tmp_path.chmod(0o700)
    assert _cloud.save_auth_state(str(cache), FakeAuth(token="gAAAA-first")) is None
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    later = FakeAuth()
    assert _cloud.load_auth_state(str(cache), later) == '{"auth_token": "gAAAA-first"}'
    assert later.state == '{"auth_token": "gAAAA-first"}'
    # other credentials never get it
    stranger = FakeAuth(credentials="demo:other@keystone")
    assert _cloud.load_auth_state(str(cache), stranger) is None and stranger.state is None


def test_the_token_file_is_only_kept_in_a_private_directory(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    problem = _cloud.save_auth_state(str(shared / "run.token"), FakeAuth(token="gAAAA-first"))
    assert "open to other users" in problem and not (shared / "run.token").exists()
    fresh = tmp_path / "made" / "run.token"
    tmp_path.chmod(0o700)
    assert _cloud.save_auth_state(str(fresh), FakeAuth(token="gAAAA-first")) is None
    assert oct(fresh.parent.stat().st_mode & 0o777) == "0o700"


def test_an_unreadable_cache_means_authenticating_as_usual(tmp_path):
    tmp_path.chmod(0o700)
    cache = tmp_path / "run.token"
    cache.write_text("not json")
    auth = FakeAuth()
    assert _cloud.load_auth_state(str(cache), auth) is None and auth.state is None
    assert _cloud.load_auth_state(str(tmp_path / "missing"), auth) is None


class _Session(object):
    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def get_token(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return 'token'


class _Clock(object):
    def __init__(self):
        self.t = 0.0

    def now(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds


def test_authenticate_waits_out_a_keystone_that_fails_transiently():
    ksa_exc = pytest.importorskip('keystoneauth1.exceptions')
    clock = _Clock()
    session = _Session([ksa_exc.ConnectFailure('refused'), ksa_exc.http.ServiceUnavailable(http_status=503), ksa_exc.http.BadGateway(http_status=502)])
    assert _cloud.authenticate(session, budget=60, clock=clock.now, sleep=clock.sleep) == 'token'
    assert session.calls == 4 and clock.t == 1 + 2 + 4


def test_authenticate_fails_at_once_when_keystone_refuses_and_after_its_budget_when_it_stays_down():
    ksa_exc = pytest.importorskip('keystoneauth1.exceptions')
    clock = _Clock()
    refused = _Session([ksa_exc.http.Unauthorized(http_status=401)])
    with pytest.raises(ksa_exc.http.Unauthorized):
        _cloud.authenticate(refused, budget=60, clock=clock.now, sleep=clock.sleep)
    assert refused.calls == 1 and clock.t == 0
    down = _Session([ksa_exc.ConnectFailure('refused')] * 100)
    with pytest.raises(ksa_exc.ConnectFailure):
        _cloud.authenticate(down, budget=30, clock=clock.now, sleep=clock.sleep)
    assert 15 <= clock.t <= 30
