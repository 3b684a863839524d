"""Unit tests of the nova-compute service helpers: the host meant by a near miss, the plan of the flags to change,
the service predicted for check mode, a stale heartbeat."""

import pytest

from ansible_collections.novaha.recovery.plugins.module_utils import _service

# --- the host meant -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("node28", ["node-28"]),
        ("NODE-28", ["node-28"]),
        ("node-28.example.org", ["node-28"]),
    ],
)
def test_close_matches_suggest_the_host_meant(name, expected):
    hosts = ["node-27", "node-28", "node-31", "ctl-1"]
    assert _service.close_matches(name, hosts)[:1] == expected


def test_no_close_match_for_an_unrelated_name():
    assert not _service.close_matches("storage-9", ["node-27", "node-28"])


# --- what must change on the service, and how it will look --------------------------------------------


SERVICE = dict(id="u1", host="node-28", binary="nova-compute", state="up", status="enabled", forced_down=False, disabled_reason=None)


def test_service_plan():
    assert _service.plan_service_update(SERVICE) == {}
    assert _service.plan_service_update(SERVICE, force_down=True) == {"forced_down": True}
    assert _service.plan_service_update(SERVICE, disable=True) == {"disabled": True, "disabled_reason": _service.DEFAULT_DISABLED_REASON}
    done = dict(SERVICE, forced_down=True, status="disabled", disabled_reason="OPS-1")
    assert _service.plan_service_update(done, force_down=True, disable=True) == {}
    assert _service.plan_service_update(done, force_down=True, disable=True, disabled_reason="OPS-1") == {}
    assert _service.plan_service_update(done, disable=True, disabled_reason="OPS-2") == {"disabled": True, "disabled_reason": "OPS-2"}


def test_predicted_service_and_stale_heartbeat():
    after = _service.predict_service(SERVICE, {"forced_down": True, "disabled": True, "disabled_reason": "x"})
    assert (after["state"], after["status"], after["forced_down"], after["disabled_reason"]) == ("down", "disabled", True, "x")
    off = {"evidence": {"power_state": "off"}}
    on = {"evidence": {"power_state": "on"}}
    assert _service.stale_heartbeat(SERVICE, off)
    assert not _service.stale_heartbeat(SERVICE, on)
    assert not _service.stale_heartbeat(dict(SERVICE, state="down"), off)
