"""The local cloud's wait for Cinder's backend: a cinder-scheduler that missed cinder-volume's pool is restarted once."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "localcloud"))
from localcloud import proc, volumes  # noqa: E402  (test tooling)


class Answer:
    status_code = 200
    content = b"{}"

    def __init__(self, body):
        self.body = body

    def json(self):
        return self.body


class FakeCinder:
    """cinder-volume up from the second look; the scheduler knows its pool only once restarted (when ``missed``)."""

    def __init__(self, missed):
        self.looks = 0
        self.missed = missed
        self.restarts = 0
        self.block_storage = self

    def request(self, path, method, microversion=None, **kwargs):
        if "os-services" in path:
            self.looks += 1
            state = "up" if self.looks > 1 else "down"
            return Answer({"services": [{"host": "cinder@fake", "state": state, "status": "enabled"}]})
        known = not self.missed or self.restarts
        return Answer({"pools": [{"name": "cinder@fake#fake"}] if known else []})

    def restart(self):
        self.restarts += 1


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(proc.time, "sleep", lambda seconds: None)


def test_a_pool_known_at_once_needs_no_restart():
    cinder = FakeCinder(missed=False)
    assert volumes.wait_backend(cinder, 60, restart_scheduler=cinder.restart, clock=Clock()) is False
    assert cinder.restarts == 0


def test_a_scheduler_that_missed_the_pool_is_restarted_once_and_then_knows_it():
    cinder = FakeCinder(missed=True)
    assert volumes.wait_backend(cinder, 60, restart_scheduler=cinder.restart, restart_after=5, clock=Clock()) is True
    assert cinder.restarts == 1


def test_the_timeout_says_what_was_seen_and_that_the_scheduler_was_restarted(monkeypatch):
    cinder = FakeCinder(missed=True)
    cinder.restart = lambda: None  # the restart does not help
    monkeypatch.setattr(proc, "tail_log", lambda name, lines=20: f"(end of {name}.log)")
    with pytest.raises(proc.CloudError) as caught:
        volumes.wait_backend(cinder, 0.5, restart_scheduler=cinder.restart, restart_after=0, clock=Clock())
    text = str(caught.value)
    assert "cinder-volume: cinder@fake up enabled; pools: none known to cinder-scheduler; cinder-scheduler was restarted once" in text
    assert "(end of cinder-volume.log)" in text and "(end of cinder-scheduler.log)" in text
