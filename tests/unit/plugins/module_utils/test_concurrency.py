"""The adaptive evacuation window (module_utils/_concurrency.py): pure, one poll's evidence at a time."""

import pytest

from ansible_collections.novaha.recovery.plugins.module_utils import _concurrency as cc


def full(window, latency=0.2, queued=(1.0,), **kw):
    return window.observe(window.width, latency=latency, queued=queued, **kw)


def test_grows_by_doubling_while_nova_keeps_pace_and_stops_at_the_cap():
    w = cc.AdaptiveWindow(cap=20, start=2)
    widths = []
    for _poll in range(6):
        full(w)
        widths.append(w.width)
    assert widths == [4, 8, 16, 20, 20, 20]
    assert w.peak == 20 and full(w) == (cc.HOLD, 'at max_parallel (20)')


def test_does_not_grow_while_the_window_is_not_full():
    w = cc.AdaptiveWindow(cap=20, start=4)
    assert w.observe(2, latency=0.2, queued=[0.5, 0.5])[0] == cc.HOLD and w.width == 4


def test_a_long_queue_holds_and_a_very_long_one_halves():
    w = cc.AdaptiveWindow(cap=20, start=8)
    assert full(w, queued=[5.0])[0] == cc.HOLD and w.width == 8
    action, reason = full(w, queued=[20.0])
    assert action == cc.SHRINK and w.width == 4 and "queue" in reason


def test_errors_and_no_valid_host_halve_once_per_cooldown_then_growth_is_additive():
    w = cc.AdaptiveWindow(cap=32, start=16)
    assert full(w, errors=1)[0] == cc.SHRINK and w.width == 8
    assert full(w, no_valid_host=2)[0] == cc.HOLD and w.width == 8  # the same bad moment, not cut twice
    full(w)  # cooldown ends
    assert full(w, no_valid_host=1)[0] == cc.SHRINK and w.width == 4
    full(w)
    full(w)
    assert w.width in (5, 6)  # one at a time above the last width that was too much
    assert w.threshold == 4


def test_a_slow_api_against_its_baseline_halves():
    w = cc.AdaptiveWindow(cap=20, start=8)
    full(w, latency=0.1)
    full(w, latency=0.12)
    assert w.baseline == 0.1
    action, reason = full(w, latency=2.5)
    assert action == cc.SHRINK and "2.5s (baseline 0.1s)" in reason
    assert w.baseline == 0.1  # a slow answer is never the new baseline


def test_never_below_the_floor_nor_above_the_cap():
    w = cc.AdaptiveWindow(cap=3, start=10)
    assert w.width == 3
    for _poll in range(10):
        full(w, errors=1)
        full(w)
        full(w)
    assert w.width >= 1
    w = cc.AdaptiveWindow(cap=1)
    assert full(w) == (cc.HOLD, 'at max_parallel (1)')


def test_a_failed_poll_has_no_latency_and_decides_on_the_rest():
    w = cc.AdaptiveWindow(cap=20, start=4)
    assert w.observe(4, latency=None, queued=[1.0], errors=1)[0] == cc.SHRINK


def test_the_report_view_names_the_last_change():
    w = cc.AdaptiveWindow(cap=20, start=4)
    full(w)
    view = w.to_dict()
    assert view == dict(width=8, cap=20, peak=8, changes=1, last_change={'poll': 1, 'from': 4, 'to': 8, 'why': 'Nova keeps pace'})
    assert cc.FixedWindow(5).to_dict()['width'] == 5


# ---------------------------------------------------------------------------------------------------------
# In the engine (fake Nova, fake clock)

from engine_fakes import HostNova, host_run  # noqa: E402

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions  # noqa: E402


def test_the_engine_widens_the_window_while_nova_keeps_pace(clock):
    nova = HostNova(clock)
    for i in range(24):
        nova.add_server('web-%02d' % i)
    window = cc.AdaptiveWindow(cap=16, start=2)
    _plan, summary, _counting = host_run(nova, clock, window=window, max_parallel=16, poll_interval=2)
    assert summary['recovered'] == 24
    assert nova.max_overlap() > 2 and window.peak > 2
    assert [c[3] for c in window.changes] and all(c[2] > c[1] for c in window.changes)


def test_the_engine_narrows_the_window_on_no_valid_host(clock):
    nova = HostNova(clock)
    ids = [nova.add_server('web-%02d' % i) for i in range(12)]
    for sid in ids[:4]:
        nova.plans[sid] = [dict(outcome='no_valid_host')]
    window = cc.AdaptiveWindow(cap=8, start=8)
    plan, summary, _counting = host_run(nova, clock, window=window, max_parallel=8, retries=0, poll_interval=2)
    assert summary['failed'] == 4 and summary['recovered'] == 8
    assert any(c[2] < c[1] and 'no valid host' in c[3] for c in window.changes), window.changes
    failed = [e for e in plan.evacuations if e.outcome == _decisions.OUTCOME_FAILED]
    assert all(e.kind == _decisions.KIND_NO_VALID_HOST for e in failed)


def test_window_for_defaults_and_caps():
    adaptive = cc.window_for('adaptive')
    assert (adaptive.cap, adaptive.width) == (cc.ADAPTIVE_CAP, cc.DEFAULT_START)
    assert cc.window_for('adaptive', 4).width == 4  # the first width never exceeds the cap
    fixed = cc.window_for('fixed')
    assert (fixed.cap, fixed.width) == (cc.FIXED_CAP, cc.FIXED_CAP)
    assert cc.window_for('fixed', 7).width == 7
    with pytest.raises(ValueError, match='adaptive or fixed'):
        cc.window_for('eager')


def test_hosts_recovered_together_share_the_cap():
    assert cc.window_for('adaptive', sharing=3).cap == cc.ADAPTIVE_CAP // 3
    assert cc.window_for('fixed', 20, sharing=3).cap == 6
    assert cc.window_for('fixed', 2, sharing=5).cap == 1  # never below one
    assert cc.window_for('adaptive', 12, sharing=2).width == 6  # the first width within the share
