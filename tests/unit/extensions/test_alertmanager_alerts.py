"""The event filter novaha.recovery.alertmanager_alerts (extensions/eda/plugins/event_filter/).

ansible-rulebook loads a filter by path (runpy) and calls its main(event, **args); so does this test.
"""

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FILTER = runpy.run_path(str(ROOT / "extensions" / "eda" / "plugins" / "event_filter" / "alertmanager_alerts.py"))
split = FILTER["main"]


def alert(name, host, status="firing", **labels):
    labels = {"alertname": name, **({"host": host} if host else {}), **labels}
    return {"status": status, "labels": labels, "annotations": {"summary": name}, "startsAt": "2025-01-01T03:00:00Z", "fingerprint": f"{name}-{host}"}


def webhook_event(*alerts, **payload):
    """An event as eda.builtin.webhook puts it on the queue: the POSTed body under payload."""
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "novaha",
        "groupKey": "{}:{alertname=\"X\"}",
        "groupLabels": {"alertname": "X"},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }
    body.update(payload)
    return {"payload": body, "meta": {"endpoint": "alertmanager", "headers": {"Content-Type": "application/json"}}}


def test_one_event_per_alert_with_its_host_status_and_the_notification():
    event = webhook_event(alert("NovaComputeDown", "node-28"), alert("NovaComputeDown", "node-31", "resolved"))
    events = split(event)
    assert [(e["alertname"], e.get("host"), e["status"]) for e in events] == [
        ("NovaComputeDown", "node-28", "firing"),
        ("NovaComputeDown", "node-31", "resolved"),
    ]
    first = events[0]
    assert first["alert"]["labels"] == {"alertname": "NovaComputeDown", "host": "node-28"}
    assert first["notification"] == {
        "receiver": "novaha",
        "group_key": "{}:{alertname=\"X\"}",
        "group_labels": {"alertname": "X"},
        "external_url": "http://127.0.0.1:9093",
        "alerts": 2,
    }
    assert first["meta"] == event["meta"]
    # Each event is its own copy: a rule changing one cannot change another or the original.
    first["alert"]["labels"]["host"] = "changed"
    assert event["payload"]["alerts"][0]["labels"]["host"] == "node-28"


def test_firing_hosts_counts_distinct_firing_hosts_of_the_same_alert_name():
    events = split(
        webhook_event(
            alert("NovaComputeDown", "node-27"),
            alert("NovaComputeDown", "node-28"),
            alert("NovaComputeDown", "node-28", instance="second-exporter"),  # the same host twice
            alert("NovaComputeDown", "node-31", "resolved"),  # resolved: not firing
            alert("NovaComputeDown", None),  # no host label
            alert("NodeHighLoad", "node-31"),  # another alert name
        )
    )
    down = [e for e in events if e["alertname"] == "NovaComputeDown"]
    assert {e["firing_hosts"] for e in down} == {2}
    assert down[0]["firing_host_names"] == ["node-27", "node-28"]
    # firing_rank numbers the firing alerts with a host, so exactly one event says "first".
    assert [e["firing_rank"] for e in down] == [1, 2, 3, 0, 0]
    (load,) = [e for e in events if e["alertname"] == "NodeHighLoad"]
    assert (load["firing_hosts"], load["firing_rank"], load["firing_host_names"]) == (1, 1, ["node-31"])


def test_an_alert_without_the_host_label_has_no_host():
    (event,) = split(webhook_event(alert("NovaComputeDown", None)))
    assert "host" not in event
    assert (event["firing_hosts"], event["firing_rank"]) == (0, 0)


def test_the_host_label_is_configurable_and_empty_values_are_no_host():
    events = split(webhook_event(alert("NovaComputeDown", None, hypervisor="node-28"), alert("NovaComputeDown", None, hypervisor="")), host_label="hypervisor")
    assert [e.get("host") for e in events] == ["node-28", None]
    assert events[0]["firing_hosts"] == 1


def test_alert_status_falls_back_to_the_notification_status():
    bare = {"labels": {"alertname": "NovaComputeDown", "host": "node-28"}}
    (event,) = split(webhook_event(bare, status="resolved"))
    assert event["status"] == "resolved" and event["firing_hosts"] == 0


def test_an_empty_notification_gives_no_event():
    assert split(webhook_event()) == []


@pytest.mark.parametrize(
    "event",
    [
        {"payload": {"text": "not an alert"}, "meta": {}},
        {"payload": {"alerts": "not a list"}},
        {"payload": ["a", "list"]},
        {"i": 1},
    ],
)
def test_other_events_pass_unchanged(event):
    assert split(dict(event)) == event
