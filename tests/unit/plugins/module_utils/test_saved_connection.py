"""A run's later modules connect from the profile and token its first module saved, without openstacksdk's
configuration; a changed option, environment or file means connecting as usual."""

import json

from keystoneauth1 import access

from ansible_collections.novaha.recovery.plugins.module_utils import _cloud, _saved_connection as sc

OPTIONS = dict(cloud="novaha-admin", auth=None, region_name="RegionOne", interface="public", api_timeout=None)


def state(token="gAAAA-first", expires="2099-01-01T00:00:00.000000Z"):
    body = {"token": {"expires_at": expires, "issued_at": "2026-11-29T05:00:00.000000Z", "methods": ["password"], "catalog": []}}
    return json.dumps({"auth_token": token, "body": body})


class FakeProxy:
    def __init__(self, service_type, endpoint, default_microversion=None, fails=False):
        self.service_type = service_type
        self.interface = "public"
        self.region_name = "RegionOne"
        self.default_microversion = default_microversion
        self.connect_retries = None
        self.status_code_retries = None
        self.retriable_status_codes = None
        self._endpoint = endpoint
        self._fails = fails

    def get_endpoint(self):
        if self._fails:
            raise RuntimeError("no endpoint")
        return self._endpoint


class FakeSdkSession:
    verify = "/etc/ssl/cloud-ca.pem"
    cert = None
    timeout = 30


class FakeSdkConnection:
    def __init__(self, proxies):
        self._proxies = dict((p.service_type, p) for p in proxies)
        self.session = FakeSdkSession()


def profile(tmp_path, **services):
    config = tmp_path / "clouds.yaml"
    config.write_text("clouds: {novaha-admin: {}}\n")
    proxies = [FakeProxy(st, url) for st, url in services.items()] or [FakeProxy("compute", "http://127.0.0.1:8774/v2.1")]
    return sc.describe(FakeSdkConnection(proxies), "key-of-admin", [str(config), str(tmp_path / "secure.yaml")]), config


def test_the_key_follows_the_connection_options_and_the_os_environment_only():
    key = sc.profile_key(OPTIONS, {"OS_CLIENT_CONFIG_FILE": "/etc/a.yaml", "HOME": "/root"})
    assert key.startswith(sc.PROFILE_PREFIX)
    assert sc.profile_key(dict(OPTIONS), {"OS_CLIENT_CONFIG_FILE": "/etc/a.yaml", "HOME": "/tmp"}) == key
    assert sc.profile_key(OPTIONS, {"OS_CLIENT_CONFIG_FILE": "/etc/b.yaml"}) != key
    assert sc.profile_key(dict(OPTIONS, region_name="RegionTwo"), {"OS_CLIENT_CONFIG_FILE": "/etc/a.yaml"}) != key
    # A password in the options is in no readable form in the key.
    secret = dict(OPTIONS, cloud=None, auth={"password": "s3cret-pass"})
    assert "s3cret" not in sc.profile_key(secret, {})


def test_a_profile_holds_each_proxys_endpoint_and_is_refused_once_a_configuration_file_changes(tmp_path):
    saved, config = profile(tmp_path, compute="http://127.0.0.1:8774/v2.1", image="http://127.0.0.1:9292/v2")
    assert saved["auth_key"] == "key-of-admin" and saved["session"] == {"verify": "/etc/ssl/cloud-ca.pem", "cert": None, "timeout": 30}
    assert saved["services"]["image"]["endpoint"] == "http://127.0.0.1:9292/v2"
    assert saved["files"][str(tmp_path / "secure.yaml")] is None
    data = {"connection:k": saved}
    assert sc.find_profile(data, "connection:k") == saved
    assert sc.find_profile(data, "connection:other") is None
    config.write_text("clouds: {novaha-admin: {region_name: RegionTwo}}\n")
    assert sc.find_profile(data, "connection:k") is None
    config.write_text("clouds: {novaha-admin: {}}\n")
    (tmp_path / "secure.yaml").write_text("clouds: {}\n")  # a file that appeared counts as a change
    assert sc.find_profile(data, "connection:k") is None


def test_a_proxy_without_endpoint_is_left_out_and_nothing_is_described_without_any():
    conn = FakeSdkConnection([FakeProxy("compute", "http://127.0.0.1:8774/v2.1"), FakeProxy("image", None, fails=True)])
    assert list(sc.describe(conn, "key", [])["services"]) == ["compute"]
    assert sc.describe(FakeSdkConnection([FakeProxy("image", None, fails=True)]), "key", []) is None
    assert sc.describe(conn, None, []) is None


class Calls:
    def __init__(self):
        self.full = []
        self.renew = []

    def make_full(self, fake):
        def full(auth_state):
            self.full.append(auth_state)
            return fake

        return full

    def make_renew(self, token):
        def renew(session):
            self.renew.append(session)
            return access.create(body=json.loads(state(token))["body"], auth_token=token)

        return renew


class FakeFull:
    def __init__(self):
        self.network = "the full connection's network proxy"

    def has_service(self, service_type):
        return service_type == "network"


def test_a_saved_connection_uses_the_cached_token_and_the_saved_endpoints_without_openstacksdk(tmp_path):
    saved, _config = profile(tmp_path, compute="http://127.0.0.1:8774/v2.1", **{"block-storage": "http://127.0.0.1:8776/v3/p1"})
    calls, fake = Calls(), FakeFull()
    conn = sc.SavedConnection(saved, state(), "novaha.recovery", calls.make_full(fake), calls.make_renew("gAAAA-new"))
    assert conn.session.get_token() == "gAAAA-first" and calls.renew == [] and calls.full == []
    assert conn.session.auth.get_cache_id() == "key-of-admin"
    assert conn.compute.endpoint_override == "http://127.0.0.1:8774/v2.1" and conn.compute.service_type == "compute"
    assert conn.volume is conn.block_storage and conn.volume.endpoint_override == "http://127.0.0.1:8776/v3/p1"
    assert conn.session.verify == "/etc/ssl/cloud-ca.pem" and conn.session.timeout == 30
    assert conn.has_service("block-storage") and calls.full == []
    # A service the first module did not use: openstacksdk's connection, on the same token, made once.
    assert conn.has_service("network") and conn.network == fake.network
    assert len(calls.full) == 1 and json.loads(calls.full[0])["auth_token"] == "gAAAA-first"


def test_an_expired_cached_token_is_renewed_through_the_configuration_and_kept_under_the_same_key(tmp_path):
    saved, _config = profile(tmp_path)
    calls = Calls()
    conn = sc.SavedConnection(saved, state(expires="2020-01-01T00:00:00.000000Z"), "novaha.recovery", calls.make_full(None), calls.make_renew("gAAAA-new"))
    assert conn.session.get_token() == "gAAAA-new" and len(calls.renew) == 1
    assert json.loads(conn.session.auth.get_auth_state())["auth_token"] == "gAAAA-new"


def test_a_later_module_connects_from_the_saved_profile_and_not_after_a_change(tmp_path, monkeypatch):
    tmp_path.chmod(0o700)
    cache = str(tmp_path / "novaha-recovery-abc.token")
    saved, config = profile(tmp_path)
    assert _cloud._write_cache(cache, "key-of-admin", state()) is None
    params = dict(OPTIONS, auth_cache=cache, auth_retry_timeout=0, sdk_log_path=None)
    assert _cloud._write_cache(cache, sc.profile_key(params), saved) is None
    secrets = set()
    conn = _cloud._saved_connect(params, cache, secrets)
    assert isinstance(conn, sc.SavedConnection) and secrets == {"gAAAA-first"}
    # The cache's own readers skip the profile: one token in it.
    from ansible_collections.novaha.recovery.plugins.module_utils._auth_cache import cache_tokens

    assert [t.token for t in cache_tokens(open(cache).read())] == ["gAAAA-first"]
    assert _cloud._saved_connect(dict(params, region_name="RegionTwo"), cache, set()) is None
    config.write_text("clouds: {}\n")
    assert _cloud._saved_connect(params, cache, set()) is None


def test_keystone_is_found_in_the_tokens_catalog_without_openstacksdk(tmp_path):
    saved, _config = profile(tmp_path)
    calls = Calls()
    conn = sc.SavedConnection(saved, state(), "novaha.recovery", calls.make_full(None), calls.make_renew("x"))
    identity = conn.identity
    assert identity.service_type == "identity" and identity.interface == "public" and identity.region_name == "RegionOne"
    assert identity.version == "3" and calls.full == []
