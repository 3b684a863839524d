"""Every Nova the engine meets, deliberately: a ``compute_api_version`` pinned in clouds.yaml never lowers the
microversions of the engine's own requests, and a cloud below 2.73 (no lock reason) gets no lock at all, so that
every lock a later run finds is told apart by ``_decisions.our_lock`` alone.

The pins are those of the issue: 2.1 (onSharedStorage sent), 2.13 (the last one that sends it), 2.28 (a target
host bypasses the scheduler), 2.72 (a lock without a reason), and the newest the fake cloud offers (2.104).
"""

import pytest
from engine_fakes import DST, SRC, FakeNova, HostNova, host_run

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions, _evacuation as ev, _microversions as mvs

PINS = ['2.1', '2.13', '2.28', '2.72', '2.104', '2.latest', None]
OLD_CLOUDS = ['2.59', '2.72']  # what the engine still works with (2.59: migrations by uuid), below 2.73


def sent(nova, sid, action):
    return [(mv, body) for name, mv, body in nova.actions(sid) if name == action]


@pytest.mark.parametrize('pin', PINS)
def test_a_pin_is_reported_and_never_used(pin):
    mv = mvs.choose_microversions('2.1', '2.104', client_default=pin)
    out = mv.to_dict()
    assert (mv.evacuate, mv.read, mv.lock, mv.services) == ((2, 94), (2, 96), (2, 73), (2, 53))
    assert out['client_pin'] == pin and out['client_pin_ignored'] is (pin is not None)
    assert not out['sends_on_shared_storage'] and out['target_host_checked_by_scheduler'] and out['negotiated']


def test_a_pin_as_a_number_or_a_tuple_is_reported_as_written():
    assert mvs.choose_microversions('2.1', '2.104', client_default=2.1).to_dict()['client_pin'] == '2.1'
    assert mvs.choose_microversions('2.1', '2.104', client_default=(2, 13)).to_dict()['client_pin'] == '2.13'
    assert mvs.choose_microversions('2.1', '2.104', client_default='').to_dict()['client_pin'] is None


@pytest.mark.parametrize('pin', PINS)
def test_the_engine_sends_what_it_chose_whatever_the_pin(clock, pin):
    """The request sequence with a target host at each pin: lock with our reason (2.73), evacuate at 2.94 without
    onSharedStorage nor force (the scheduler checks the target), unlock; reads at 2.96."""
    nova = FakeNova(clock, max_mv='2.104', default_mv=pin)
    sid = nova.add_server('web-1')
    engine = ev.Engine(nova, clock)
    evac = engine.plan(sid, target_host=DST)
    engine.run([evac], poll_interval=2)
    rec = evac.record()
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert [name for name, _mv, _b in nova.actions(sid)] == ['lock', 'evacuate', 'unlock']
    assert sent(nova, sid, 'lock') == [('2.73', {'lock': {'locked_reason': _decisions.lock_reason(SRC, 'ACTIVE')}})]
    assert sent(nova, sid, 'evacuate') == [('2.94', {'evacuate': {'host': DST}})]
    assert set(mv for method, path, mv, _b in nova.calls if method == 'GET' and path.startswith('/servers')) == {'2.96'}
    assert rec['lock'] == dict(user_locked=False, locked_by_us=True, unlocked=True)
    assert not [w for w in rec['warnings'] if 'scheduler' in w]
    assert engine.mv.to_dict()['client_pin'] == pin


@pytest.mark.parametrize('pin', ['2.1', '2.72', '2.104'])
def test_the_module_option_still_wins_over_the_pin(clock, pin):
    nova = FakeNova(clock, max_mv='2.104', default_mv=pin)
    sid = nova.add_server('web-1')
    engine = ev.Engine(nova, clock, microversion='2.13')
    evac = engine.plan(sid, on_shared_storage=True)
    engine.run([evac], poll_interval=2)
    assert evac.record()['outcome'] == _decisions.OUTCOME_RECOVERED
    assert sent(nova, sid, 'evacuate') == [('2.13', {'evacuate': {'onSharedStorage': True}})]
    assert not engine.mv.negotiated and engine.mv.to_dict()['client_pin'] == pin


# ---------------------------------------------------------------------------------------------------------
# A cloud below 2.73


@pytest.mark.parametrize('cloud_max', OLD_CLOUDS)
def test_below_2_73_no_lock_is_taken_and_the_plan_says_why(clock, cloud_max):
    nova = FakeNova(clock, max_mv=cloud_max, default_mv='2.1')
    sid = nova.add_server('web-1')
    engine = ev.Engine(nova, clock)
    evac = engine.plan(sid)
    plan = evac.plan()
    assert plan['lock'] is False and plan['microversion'] == cloud_max
    assert _decisions.WARNING_NOT_LOCKED in plan['warning_kinds']
    assert 'up to %s' % cloud_max in plan['warnings'][plan['warning_kinds'].index(_decisions.WARNING_NOT_LOCKED)]
    assert engine.mv.to_dict()['lock'] is None and not engine.mv.can_lock
    engine.run([evac], poll_interval=2)
    rec = evac.record()
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED and nova.status(sid) == (DST, 'ACTIVE')
    assert [name for name, _mv, _b in nova.actions(sid)] == ['evacuate']
    assert rec['lock'] == dict(user_locked=False, locked_by_us=False, unlocked=False)
    assert rec['changed'] and nova.servers[sid]['locked'] is False


@pytest.mark.parametrize('reason', [None, 'novaha.recovery: evacuating from node-1 (was SHUTOFF)'])
def test_below_2_73_every_lock_found_is_its_users_and_stays(clock, reason):
    """Nova shows no lock reason below 2.73: a lock found there - a user's, or one an older release took without a
    reason - is never taken for ours, never unlocked, and the server keeps its own status."""
    nova = FakeNova(clock, max_mv='2.72')
    sid = nova.add_server('web-1', locked=True, locked_reason=reason)
    rec = ev.Engine(nova, clock).plan(sid).record()
    assert rec['lock']['user_locked'] and not rec['lock']['locked_by_us'] and rec['expected_status'] == 'ACTIVE'
    engine = ev.Engine(nova, clock)
    evac = engine.plan(sid)
    assert _decisions.WARNING_NOT_LOCKED not in [_decisions.warning_kind(w) for w in evac.warnings]
    engine.run([evac], poll_interval=2)
    assert [name for name, _mv, _b in nova.actions(sid)] == ['evacuate']
    assert nova.servers[sid]['locked'] is True


def test_the_2_73_cloud_finishes_a_lock_of_ours_from_an_earlier_run(clock):
    """The other side of the same answer: where Nova shows the reason, a lock of ours is recognised and removed."""
    nova = FakeNova(clock, max_mv='2.73')
    sid = nova.add_server('web-1', host=DST, vm_state='stopped', locked=True, locked_reason=_decisions.lock_reason(SRC, 'SHUTOFF'))
    nova.add_migration(sid, 'done')
    engine = ev.Engine(nova, clock)
    evac = engine.plan(sid)
    assert evac.ours_from_earlier and not evac.user_locked
    engine.run([evac], poll_interval=2)
    assert [name for name, _mv, _b in nova.actions(sid)] == ['unlock'] and nova.servers[sid]['locked'] is False


@pytest.mark.parametrize(
    'server,ours',
    [
        (dict(locked=True, locked_reason='novaha.recovery: evacuating from n1 (was ACTIVE)'), dict(source='n1', status='ACTIVE')),
        (dict(locked=False, locked_reason='novaha.recovery: evacuating from n1 (was ACTIVE)'), None),
        (dict(locked=True, locked_reason=None), None),  # below 2.73, or a user's lock without reason
        (dict(locked=True), None),  # below 2.73 the key is not there at all
        (dict(locked=True, locked_reason='db migration, ask ops'), None),
        (None, None),
    ],
)
def test_our_lock_is_one_answer(server, ours):
    assert _decisions.our_lock(server) == ours


def test_a_host_below_2_73_warns_once_and_locks_nothing(clock):
    nova = HostNova(clock, max_mv='2.72', default_mv='2.1')
    ids = [nova.add_server('web-%d' % i) for i in range(3)]
    plan, summary, _counting = host_run(nova, clock)
    assert summary['recovered'] == 3
    unlocked = [w for w in plan.warnings if 'not locked' in w]
    assert unlocked == [str(_decisions.not_locked_warning('3 servers', (2, 72)))]
    assert [name for name, _mv, _b in nova.actions() if name in ('lock', 'unlock')] == []
    assert set(mv for name, mv, _b in nova.actions() if name == 'evacuate') == {'2.72'}
    assert all(nova.status(sid) == (DST, 'ACTIVE') for sid in ids)


def test_the_fake_refuses_a_lock_reason_below_2_73(clock):
    """The fake is as strict as Nova's schema, so the tests above could fail if the engine sent one."""
    nova = FakeNova(clock, max_mv='2.72')
    sid = nova.add_server('web-1')
    with pytest.raises(Exception) as err:
        nova.request('POST', '/servers/%s/action' % sid, (2, 72), {'lock': {'locked_reason': 'x'}})
    assert getattr(err.value, 'status_code', None) == 400
