"""When the token cache of another run is removed (and its token revoked): only once its run is gone."""

import datetime
import json

from ansible_collections.novaha.recovery.plugins.module_utils import _auth_cache
from ansible_collections.novaha.recovery.plugins.module_utils._run import RunMarker

NOW = datetime.datetime(2025, 11, 22, 12, 0, 0, tzinfo=datetime.timezone.utc)
LATER = "2025-11-22T12:40:00.000000Z"
EARLIER = "2025-11-22T11:40:00.000000Z"


def cache_text(*tokens):
    """A file as _cloud.save_auth_state writes it: {credentials key: keystoneauth auth state (JSON text)}."""
    return json.dumps(dict((key, json.dumps({"auth_token": token, "body": {"token": {"expires_at": expires}}})) for key, token, expires in tokens))


def judge(tokens, idle=1000, live=(), key="k1"):
    return _auth_cache.judge_cache("dead01", _auth_cache.cache_tokens(cache_text(*tokens)), idle, NOW, set(live), key)


def test_the_run_id_comes_from_the_file_name_only():
    assert _auth_cache.cache_run_id("/home/ops/.ansible/tmp/novaha-recovery-4f2a9c01de.token") == "4f2a9c01de"
    assert _auth_cache.cache_run_id("/tmp/novaha-recovery-.token") is None
    assert _auth_cache.cache_run_id("/tmp/other-4f2a.token") is None


def test_tokens_and_their_expiry_are_read():
    (token,) = _auth_cache.cache_tokens(cache_text(("k1", "gAAAA-1", LATER)))
    assert (token.key, token.token, token.expires_at.hour, token.expires_at.minute) == ("k1", "gAAAA-1", 12, 40)


def test_a_file_that_is_not_a_cache_is_an_error():
    for text in ("[]", "not json"):
        try:
            _auth_cache.cache_tokens(text)
        except ValueError:
            continue
        raise AssertionError(text)


def test_a_cache_whose_tokens_all_expired_is_removed_without_revoking():
    verdict = judge([("k1", "t1", EARLIER), ("other-cloud", "t2", EARLIER)], idle=5)
    assert verdict.remove and verdict.revoke == [] and "every token in it has expired" in verdict.reason


def test_a_run_that_holds_a_host_keeps_its_cache():
    verdict = judge([("k1", "t1", LATER)], idle=5000, live={"dead01"})
    assert not verdict.remove and "holds a host" in verdict.reason


def test_a_recently_used_cache_is_kept_even_without_a_marker():
    # A run in its preflight (no marker yet) may wait 480 s for another run before it claims its host.
    verdict = judge([("k1", "t1", LATER)], idle=600)
    assert not verdict.remove and "used it 600s ago" in verdict.reason


def test_a_gone_run_has_its_token_revoked_and_its_cache_removed():
    verdict = judge([("k1", "t1", LATER)], idle=901, live={"other"})
    assert verdict.remove and verdict.revoke == ["t1"]
    assert verdict.reason == "its run dead01 is gone: it holds no host and was last used 901s ago"


def test_a_token_of_other_credentials_is_left_until_it_expires():
    verdict = judge([("k2", "t1", LATER)], idle=5000)
    assert not verdict.remove and "other credentials" in verdict.reason


def test_only_live_markers_count():
    def service(phase, beat_age, lease=420):
        beat = NOW - datetime.timedelta(seconds=beat_age)
        marker = RunMarker("run-%s-%d" % (phase, beat_age), phase, "ctl@1", beat, beat, lease)
        return {"host": "node-28", "disabled_reason": marker.text()}

    services = [
        service("evacuating", 30),
        service("evacuating", 500),
        service("done", 10),
        {"host": "node-27", "disabled_reason": "maintenance"},
        {"host": "node-31", "disabled_reason": None},
    ]
    assert _auth_cache.live_runs(services, NOW) == {"run-evacuating-30"}


# -- ending the caches (TokenCaches) ------------------------------------------------------------------------------


# TokenCaches judges on the real clock.
VALID = "2099-01-01T00:00:00.000000Z"
EXPIRED = "2020-01-01T00:00:00.000000Z"


class Keystone(object):
    """Revokes tokens (``revoked``, in order) unless told ``refuse`` one; ``own`` is the connection's token."""

    def __init__(self, own=None, refuse=()):
        self.own = own
        self.refuse = set(refuse)
        self.revoked = []
        self.live_reads = 0

    def revoke(self, token):
        if token in self.refuse:
            return 'Keystone answered HTTP 503'
        self.revoked.append(token)
        return None

    def read_live(self):
        self.live_reads += 1
        return set(), "k1"


def caches(tmp_path, keystone, run_id="mine01", check_mode=False, warnings=None, **files):
    """TokenCaches of ``run_id`` in ``tmp_path``, with a cache file per entry of ``files`` (run id: tokens)."""
    for other, tokens in files.items():
        (tmp_path / f"novaha-recovery-{other}.token").write_text(cache_text(*tokens))
    found = warnings if warnings is not None else []
    return _auth_cache.TokenCaches(
        str(tmp_path / f"novaha-recovery-{run_id}.token"),
        revoke=keystone.revoke,
        own_token=lambda: keystone.own,
        read_live=keystone.read_live,
        warn=found.append,
        check_mode=check_mode,
        clock=lambda: 4e9,  # every file looks long unused: judged by its tokens and the markers
    )


def test_a_run_ends_its_own_token_last_and_removes_its_file(tmp_path):
    keystone = Keystone(own="own-1")
    ending = caches(tmp_path, keystone, mine01=[("k1", "own-1", VALID), ("k2", "other-creds", VALID)])
    msg = ending.end()
    assert keystone.revoked == ["other-creds", "own-1"]
    assert not (tmp_path / "novaha-recovery-mine01.token").exists()
    assert ending.removed == [dict(path=ending.path, run_id="mine01", revoked=2, reason="this run ends")]
    assert msg.startswith("revoked 2 Keystone tokens and removed the token cache ")


def test_a_gone_run_is_pruned_before_the_run_ends_its_own(tmp_path):
    keystone = Keystone(own="own-1")
    ending = caches(tmp_path, keystone, mine01=[("k1", "own-1", VALID)], dead01=[("k1", "dead-1", VALID)], old01=[("k1", "old-1", EXPIRED)])
    ending.end()
    assert keystone.revoked == ["dead-1", "own-1"] and keystone.live_reads == 1
    assert [r["run_id"] for r in ending.removed] == ["dead01", "old01", "mine01"]
    assert list(tmp_path.iterdir()) == []


def test_a_token_keystone_does_not_revoke_is_a_warning_and_its_file_still_goes(tmp_path):
    keystone = Keystone(own="own-1", refuse=["own-1"])
    warnings = []
    ending = caches(tmp_path, keystone, warnings=warnings, mine01=[("k1", "own-1", VALID)])
    ending.end()
    assert ending.removed[0]["revoked"] == 0 and not (tmp_path / "novaha-recovery-mine01.token").exists()
    assert len(warnings) == 1 and "HTTP 503" in warnings[0] and "own-1" not in warnings[0]


def test_the_markers_are_read_only_for_a_cache_whose_run_may_be_gone(tmp_path):
    keystone = Keystone()
    ending = caches(tmp_path, keystone, old01=[("k1", "old-1", EXPIRED)])
    assert ending.end().startswith("no token cache at ")
    assert keystone.live_reads == 0 and keystone.revoked == [] and [r["run_id"] for r in ending.removed] == ["old01"]


def test_in_check_mode_nothing_is_revoked_or_removed(tmp_path):
    keystone = Keystone(own="own-1")
    ending = caches(tmp_path, keystone, check_mode=True, mine01=[("k1", "own-1", VALID)], dead01=[("k1", "dead-1", VALID)])
    assert ending.end().startswith("check mode: would revoke 1 tokens")
    assert keystone.revoked == [] and len(list(tmp_path.iterdir())) == 2
    assert [r["run_id"] for r in ending.removed] == ["dead01", "mine01"]
