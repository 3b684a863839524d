"""Unit tests of the nova-compute service helpers: the host meant by a near miss, the plan of the flags to change,
the service predicted for check mode, a stale heartbeat."""

import pytest

from ansible_collections.novaha.recovery.plugins.module_utils import _service
from ansible_collections.novaha.recovery.plugins.module_utils._errors import NovahaError
from ansible_collections.novaha.recovery.plugins.module_utils._nova import Response

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


# --- one listing for the host's service and the names of every compute host ----------------------------


class ListingNova:
    """Answers the nova-compute listing and counts the requests."""

    def __init__(self, services):
        self.services, self.requests = services, []

    def request(self, method, path, microversion, body=None):
        self.requests.append((method, path))
        return Response(200, {"services": self.services}, date=None)


def test_the_hosts_service_and_every_compute_host_come_from_one_listing():
    nova = ListingNova([SERVICE, dict(SERVICE, id="u2", host="node-31"), dict(SERVICE, id="u3", host="node-27")])
    view, hosts = _service.find_compute_service(nova, "node-28", "2.53", with_hosts=True)
    assert view["id"] == "u1" and hosts == ["node-27", "node-28", "node-31"] and len(nova.requests) == 1
    assert _service.find_compute_service(nova, "node-28", "2.53")["id"] == "u1"
    with pytest.raises(NovahaError) as err:
        _service.find_compute_service(nova, "node28", "2.53", with_hosts=True)
    assert "did you mean node-28" in err.value.msg
