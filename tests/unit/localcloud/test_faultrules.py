"""The local cloud's fault proxy decides which request gets which fault: its rules, with a fake clock."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "localcloud"))
from localcloud.faultrules import RequestLog, RuleError, RuleSet, error_body  # noqa: E402  (test tooling)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def rules(clock):
    return RuleSet(clock=clock)


def faulted(rules, service="nova", method="GET", target="/v2.1/servers/detail"):
    rule = rules.decide(service, method, target)
    return rule.id if rule else None


def test_no_rule_no_fault(rules):
    assert faulted(rules) is None


def test_service_method_and_path_select_the_requests(rules):
    rule = rules.add({"service": "nova", "action": "error", "method": ["post", "PUT"], "path": r"/servers/[^/]+/action$"})
    assert faulted(rules, method="POST", target="/v2.1/servers/abc/action") == rule["id"]
    assert faulted(rules, method="PUT", target="/v2.1/servers/abc/action") == rule["id"]
    assert faulted(rules, method="GET", target="/v2.1/servers/abc/action") is None
    assert faulted(rules, method="POST", target="/v2.1/servers/abc/action/x") is None
    assert faulted(rules, service="placement", method="POST", target="/v2.1/servers/abc/action") is None


def test_a_service_pattern_selects_every_bmc(rules):
    rules.add({"service": "bmc-*", "action": "reset"})
    assert faulted(rules, service="bmc-node-28") == 1
    assert faulted(rules, service="bmc-node-27") == 1
    assert faulted(rules, service="nova") is None


def test_a_window_ends_the_rule(rules, clock):
    rules.add({"service": "nova", "action": "error", "window": 3})
    clock.now += 2.9
    assert faulted(rules) == 1
    clock.now += 0.1
    assert faulted(rules) is None
    assert rules.describe()[0]["active"] is False


def test_count_and_skip_fault_the_requests_in_between(rules):
    rules.add({"service": "nova", "action": "error", "skip": 2, "count": 3})
    assert [faulted(rules) for _request in range(7)] == [None, None, 1, 1, 1, None, None]
    (rule,) = rules.describe()
    assert (rule["matched"], rule["applied"], rule["active"]) == (5, 3, False)


def test_a_rate_is_drawn_from_its_seed_the_same_every_time(clock):
    def pattern():
        rules = RuleSet(clock=clock)
        rules.add({"service": "*", "action": "reset", "rate": 0.3, "seed": 42})
        return [faulted(rules) for _request in range(400)]

    first = pattern()
    assert first == pattern()
    assert 80 <= first.count(1) <= 160  # 30% of 400, give or take


def test_a_rule_not_drawn_by_its_rate_leaves_the_request_to_the_next_rule(rules):
    rules.add({"service": "nova", "action": "reset", "rate": 0})
    rules.add({"service": "nova", "action": "error", "status": 500})
    assert faulted(rules) == 2


def test_the_first_rule_that_fires_decides(rules):
    rules.add({"service": "nova", "action": "error", "count": 1})
    rules.add({"service": "nova", "action": "delay", "delay": 1})
    assert [faulted(rules) for _request in range(3)] == [1, 2, 2]


def test_removing_a_rule_ends_its_hangs(rules):
    rules.add({"service": "nova", "action": "hang"})
    rule = rules.decide("nova", "GET", "/")
    assert not rule.cleared.is_set()
    assert rules.remove() == 1
    assert rule.cleared.is_set()
    assert faulted(rules) is None


def test_a_hang_ends_with_its_window_or_hang_max(rules, clock):
    rules.add({"service": "nova", "action": "hang", "window": 5})
    rules.add({"service": "placement", "action": "hang", "hang_max": 2, "window": 10})
    assert rules.decide("nova", "GET", "/").hang_deadline(clock.now) == clock.now + 5
    assert rules.decide("placement", "GET", "/").hang_deadline(clock.now) == clock.now + 2


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"action": "error"}, "service"),
        ({"service": "nova", "action": "explode"}, "action"),
        ({"service": "nova", "action": "error", "status": 200}, "status"),
        ({"service": "nova", "action": "reset", "status": 503}, "status"),
        ({"service": "nova", "action": "delay"}, "delay"),
        ({"service": "nova", "action": "error", "delay": 1}, "delay"),
        ({"service": "nova", "action": "error", "rate": 1.5}, "rate"),
        ({"service": "nova", "action": "error", "count": 0}, "count"),
        ({"service": "nova", "action": "error", "window": "soon"}, "window"),
        ({"service": "nova", "action": "error", "path": "("}, "path"),
        ({"service": "nova", "action": "error", "method": "FETCH"}, "method"),
        ({"service": "nova", "action": "error", "phase": "later"}, "phase"),
        ({"service": "nova", "action": "error", "rates": 1}, r"unknown field\(s\) rates"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(rules, spec, field):
    with pytest.raises(RuleError, match=field):
        rules.add(spec)
    assert rules.describe() == []


def test_the_log_numbers_requests_and_reads_them_since_a_mark():
    log = RequestLog(clock=lambda: 5.0)
    first = log.record(service="nova", method="GET", path="/a")
    log.finish(first, status=200)
    mark = log.last_seq()
    log.record(service="bmc-node-28", method="POST", path="/b")
    assert [e["seq"] for e in log.read()] == [1, 2]
    assert [(e["path"], e["done"]) for e in log.read(since=mark)] == [("/b", False)]
    assert [e["path"] for e in log.read(service="bmc-*")] == ["/b"]
    assert log.read(service="nova")[0]["status"] == 200


@pytest.mark.parametrize(
    "service, status, key",
    [
        ("nova", 503, "serviceUnavailable"),
        ("nova", 500, "computeFault"),
        ("nova", 409, "conflictingRequest"),
        ("keystone", 503, "error"),
        ("placement", 503, "errors"),
        ("bmc-node-28", 500, "error"),
    ],
)
def test_an_injected_error_has_the_services_own_shape(service, status, key):
    assert key in error_body(service, status, "Some Reason", "req-1")
