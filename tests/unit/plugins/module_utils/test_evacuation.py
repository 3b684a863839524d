"""Unit tests of the evacuation engine: no network, a fake clock, Nova payloads shaped as Nova 34 returns them.

``FakeNova`` (engine_fakes.py) answers the handful of compute API calls the engine makes and moves servers the
way Nova's API, conductor and computes do, including the 2.95 "stopped at destination" rule.
"""

import copy

import pytest
from engine_fakes import DST, OTHER, RECORDED_SERVER, SRC, FakeNova
from nova_fakes import EPOCH, PagingNova

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions, _errors, _evacuation as ev, _microversions, _nova, _watch
from ansible_collections.novaha.recovery.plugins.module_utils._microversions import mv_str


def evacuate(nova, clock, ref, run=True, microversion=None, **opts):
    run_opts = dict((k, opts.pop(k)) for k in ('wait', 'timeout', 'poll_interval', 'retries', 'max_parallel') if k in opts)
    run_opts.setdefault('poll_interval', 2)
    engine = ev.Engine(nova, clock, microversion=microversion)
    plan = engine.plan(ref, **opts)
    if run:
        engine.run([plan], **run_opts)
    return plan.record()


# ---------------------------------------------------------------------------------------------------------
# snapshot


def test_snapshot_of_a_recorded_server():
    snap = _decisions.snapshot(RECORDED_SERVER['server'])
    assert snap['host'] == 'node-1' and snap['status'] == 'ACTIVE' and snap['power_state'] == 'RUNNING'
    assert snap['vm_state'] == 'active' and snap['task_state'] is None
    assert snap['image_id'] == '70a599e0-31e7-49b7-b260-868f441e862b' and not snap['boot_from_volume']
    assert snap['volumes'] == ['3a8d9c1c-8c4e-4b8a-9f5e-0d3c8f1b2a11']
    assert snap['ports'] == [
        dict(network='private', mac='fa:16:3e:4c:2c:30', ip='10.0.0.15', type='fixed'),
        dict(network='private', mac='fa:16:3e:4c:2c:30', ip='172.24.4.20', type='floating'),
    ]
    assert snap['flavor'] == dict(name='m1.tiny', vcpus=1, ram=512, disk=1, ephemeral=1, swap=0)
    assert snap['server_groups'] == ['a0b3c8a4-94ad-4f2e-9b8c-cc1e2f1f0d11']
    assert snap['availability_zone'] == 'nova' and snap['metadata'] == {'HA_Enabled': 'True'}
    assert snap['locked'] is False and snap['fault'] is None


def test_snapshot_boot_from_volume_and_listing_without_server_groups():
    body = dict(RECORDED_SERVER['server'], image='')
    del body['server_groups']
    snap = _decisions.snapshot(body)
    assert snap['boot_from_volume'] and snap['image_id'] is None
    assert snap['server_groups'] is None


# ---------------------------------------------------------------------------------------------------------
# classify


@pytest.mark.parametrize(
    'vm_state,task,expected',
    [
        ('active', None, 'ACTIVE'),
        ('stopped', None, 'SHUTOFF'),
        ('error', None, 'ACTIVE'),
    ],
)
def test_evacuable_states(vm_state, task, expected):
    v = _decisions.classify(dict(id='x', name='x', vm_state=vm_state, task_state=task, status='?'))
    assert v.evacuable and v.expected_status == expected and v.reset_to is None


@pytest.mark.parametrize(
    'vm_state,task,words',
    [
        ('paused', None, 'PAUSED'),
        ('suspended', None, 'SUSPENDED'),
        ('shelved', None, 'SHELVED'),
        ('shelved_offloaded', None, 'no host'),
        ('resized', None, 'VERIFY_RESIZE'),
        ('rescued', None, 'RESCUE'),
        ('building', None, 'BUILDING'),
        ('active', 'rebooting', 'task_state rebooting'),
        ('error', 'deleting', 'task_state deleting'),
    ],
)
def test_refused_states_explain_themselves(vm_state, task, words):
    v = _decisions.classify(dict(id='x', name='web', vm_state=vm_state, task_state=task, status='?'))
    assert not v.evacuable
    assert words in v.reason and 'web (x)' in v.reason


@pytest.mark.parametrize(
    'vm_state,task,reset_to,expected',
    [
        ('active', 'rebooting', 'active', 'ACTIVE'),
        ('stopped', 'powering-on', 'error', 'SHUTOFF'),
        ('paused', None, 'error', 'ACTIVE'),
        ('suspended', None, 'error', 'ACTIVE'),
    ],
)
def test_reset_state_is_opt_in(vm_state, task, reset_to, expected):
    snap = dict(id='x', name='x', vm_state=vm_state, task_state=task, status='?')
    assert not _decisions.classify(snap).evacuable
    v = _decisions.classify(snap, reset_state=True)
    assert v.evacuable and v.reset_to == reset_to and v.expected_status == expected


@pytest.mark.parametrize('vm_state', ['shelved', 'shelved_offloaded', 'resized', 'building'])
def test_reset_state_does_not_unlock_everything(vm_state):
    assert not _decisions.classify(dict(id='x', name='x', vm_state=vm_state, task_state=None), reset_state=True).evacuable


# ---------------------------------------------------------------------------------------------------------
# microversions


def test_negotiated_microversion_is_the_newest_that_keeps_the_power_state():
    mv = _microversions.choose_microversions('2.1', '2.104')
    assert mv.evacuate == (2, 94) and not mv.evacuate_stops_server and mv.negotiated
    assert mv.read == (2, 96) and mv.lock == (2, 73) and mv.migrations == (2, 59) and mv.services == (2, 53)


def test_negotiated_microversion_follows_an_older_cloud():
    mv = _microversions.choose_microversions('2.1', '2.90')
    assert mv.evacuate == (2, 90) and not mv.evacuate_stops_server and mv.read == (2, 90)


def test_requested_microversion_is_used_as_given():
    mv = _microversions.choose_microversions('2.1', '2.104', requested='2.13')
    assert mv.evacuate == (2, 13) and not mv.negotiated and mv.to_dict()['sends_on_shared_storage']


@pytest.mark.parametrize('low,high,requested', [('2.1', '2.58', None), ('2.1', '2.90', '2.95'), ('2.1', '2.104', '3.1'), ('2.1', None, None)])
def test_unusable_microversions_are_refused(low, high, requested):
    with pytest.raises(_errors.EvacuationError):
        _microversions.choose_microversions(low, high, requested)


@pytest.mark.parametrize(
    'mv,has_shared,warns_scheduler',
    [
        ((2, 13), True, True),
        ((2, 14), False, True),
        ((2, 28), False, True),
        ((2, 29), False, False),
        ((2, 67), False, False),
        ((2, 68), False, False),
        ((2, 95), False, False),
        ((2, 104), False, False),
    ],
)
def test_evacuate_request_per_microversion(mv, has_shared, warns_scheduler):
    body, warnings = _decisions.evacuate_request(mv, target_host=DST)
    inner = body['evacuate']
    assert inner['host'] == DST
    assert 'force' not in inner
    assert ('onSharedStorage' in inner) is has_shared
    assert any('bypasses the scheduler' in w for w in warnings) is warns_scheduler


def test_evacuate_request_without_target_and_shared_storage_flag():
    body, warnings = _decisions.evacuate_request((2, 13), on_shared_storage=True)
    assert body == {'evacuate': {'onSharedStorage': True}} and not warnings
    body, warnings = _decisions.evacuate_request((2, 95), on_shared_storage=True, admin_password='s3cret')
    assert body == {'evacuate': {'adminPass': 's3cret'}}
    assert any('not sent' in w for w in warnings)
    with pytest.raises(_errors.EvacuationError):
        _decisions.evacuate_request((2, 13), on_shared_storage=True, admin_password='s3cret')


# ---------------------------------------------------------------------------------------------------------
# judge: the one completion function


def _before():
    return _decisions.snapshot(RECORDED_SERVER['server'])


def _now(**changes):
    snap = _before()
    snap.update(host=DST, task_state=None)
    snap.update(changes)
    return snap


DONE = dict(id=7, status='done')


@pytest.mark.parametrize(
    'now,mig,expected,outcome,action',
    [
        (_now(status='ACTIVE'), DONE, 'ACTIVE', _decisions.OUTCOME_RECOVERED, None),
        (_now(status='ACTIVE'), dict(DONE, status='completed'), 'ACTIVE', _decisions.OUTCOME_RECOVERED, None),
        (_now(status='SHUTOFF', vm_state='stopped'), DONE, 'SHUTOFF', _decisions.OUTCOME_RECOVERED, None),
        (_now(status='SHUTOFF', vm_state='stopped'), DONE, 'ACTIVE', _decisions.OUTCOME_IN_PROGRESS, 'start'),
        (_now(status='ACTIVE'), DONE, 'SHUTOFF', _decisions.OUTCOME_IN_PROGRESS, 'stop'),
        (_now(status='ACTIVE'), dict(DONE, status='pre-migrating'), 'ACTIVE', _decisions.OUTCOME_IN_PROGRESS, None),
        (_now(status='ACTIVE'), None, 'ACTIVE', _decisions.OUTCOME_IN_PROGRESS, None),
        (_now(status='REBUILD', task_state='rebuild_spawning'), DONE, 'ACTIVE', _decisions.OUTCOME_IN_PROGRESS, None),
        (_now(status='ACTIVE', host=SRC), DONE, 'ACTIVE', _decisions.OUTCOME_FAILED, None),
        (_now(status='ERROR', vm_state='error', host=SRC), dict(DONE, status='error'), 'ACTIVE', _decisions.OUTCOME_FAILED, None),
        (_now(status='ERROR', vm_state='error', host=SRC), dict(DONE, status='accepted'), 'ACTIVE', _decisions.OUTCOME_FAILED, None),
        (_now(status='ACTIVE', volumes=[]), DONE, 'ACTIVE', _decisions.OUTCOME_FAILED, None),
        (_now(status='ACTIVE', ports=[]), DONE, 'ACTIVE', _decisions.OUTCOME_FAILED, None),
        (None, DONE, 'ACTIVE', _decisions.OUTCOME_FAILED, None),
    ],
)
def test_judge(now, mig, expected, outcome, action):
    j = _decisions.judge(_before(), now, mig, expected, SRC)
    assert (j.outcome, j.power_action) == (outcome, action), j.reason


def test_judge_reports_novas_fault_and_no_valid_host():
    now = _now(status='ERROR', vm_state='error', host=SRC, fault=dict(code=500, message='No valid host was found. There are not enough hosts available.'))
    j = _decisions.judge(_before(), now, dict(id=9, status='error'), 'ACTIVE', SRC)
    assert j.kind == _decisions.KIND_NO_VALID_HOST and 'No valid host was found' in j.reason and 'migration 9' in j.reason


# ---------------------------------------------------------------------------------------------------------
# retry policy


def test_no_valid_host_at_target_retries_once_with_the_scheduler():
    first = dict(kind=_decisions.KIND_NO_VALID_HOST, target_host=OTHER)
    d = _decisions.retry_decision([first], retries=0, target_host=OTHER)
    assert d.retry and d.target_host is None
    second = dict(kind=_decisions.KIND_NO_VALID_HOST, target_host=None, scheduler_fallback=True)
    assert not _decisions.retry_decision([first, second], retries=0, target_host=OTHER).retry


def test_other_failures_retry_up_to_retries():
    fail = dict(kind=_decisions.KIND_EVACUATION_FAILED, target_host=None)
    assert _decisions.retry_decision([fail], retries=1).retry
    assert not _decisions.retry_decision([fail, fail], retries=1).retry
    assert not _decisions.retry_decision([fail], retries=0).retry


@pytest.mark.parametrize('kind', [_decisions.KIND_NOT_FENCED, _decisions.KIND_STATE, _errors.KIND_FORBIDDEN, _decisions.KIND_IDENTITY])
def test_refusals_are_never_retried(kind):
    assert not _decisions.retry_decision([dict(kind=kind)], retries=5).retry


# ---------------------------------------------------------------------------------------------------------
# the engine against the fake Nova


@pytest.mark.parametrize(
    'mv,status,final,starts',
    [
        ('2.94', 'active', 'ACTIVE', False),
        ('2.95', 'active', 'ACTIVE', True),
        ('2.94', 'stopped', 'SHUTOFF', False),
        ('2.95', 'stopped', 'SHUTOFF', False),
        ('2.60', 'error', 'ACTIVE', False),
        ('2.95', 'error', 'ACTIVE', False),
    ],
)
def test_evacuation_ends_in_the_expected_state(nova, clock, mv, status, final, starts):
    sid = nova.add_server('web-1', vm_state=status)
    rec = evacuate(nova, clock, sid, microversion=mv)
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert nova.status(sid) == (DST, final)
    assert rec['after']['host'] == DST and rec['after']['status'] == final
    assert rec['before']['host'] == SRC
    assert ('start' in rec['power_actions']) is starts
    assert [a for a, _mv, _b in nova.actions(sid)] == ['lock', 'evacuate'] + (['os-start'] if starts else []) + ['unlock']
    assert rec['changed'] and rec['migration']['status'] == 'done' and rec['migration']['dest_compute'] == DST
    assert rec['attempts'][0]['request_id'] and rec['timings']['seconds'] > 0
    evac = [b for a, m, b in nova.actions(sid) if a == 'evacuate'][0]
    assert [m for a, m, b in nova.actions(sid) if a == 'evacuate'] == [mv]
    assert evac == {'evacuate': {}}


def test_lock_carries_a_reason_and_is_removed(nova, clock):
    sid = nova.add_server('web-1')
    rec = evacuate(nova, clock, sid, microversion='2.95')
    lock = [b for a, m, b in nova.actions(sid) if a == 'lock'][0]
    assert lock == {'lock': {'locked_reason': 'novaha.recovery: evacuating from node-1 (was ACTIVE)'}}
    assert nova.servers[sid]['locked'] is False
    assert rec['lock'] == dict(user_locked=False, locked_by_us=True, unlocked=True)
    assert rec['after']['locked'] is False
    assert [r['action'] for r in rec['request_ids']] == ['lock', 'evacuate', 'start', 'unlock']


def test_user_locked_server_stays_locked(nova, clock):
    sid = nova.add_server('web-1', locked=True, locked_reason='do not touch: db migration')
    rec = evacuate(nova, clock, sid, microversion='2.95')
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED
    assert [a for a, _m, _b in nova.actions(sid)] == ['evacuate', 'os-start']
    assert nova.servers[sid]['locked'] is True
    assert nova.servers[sid]['locked_reason'] == 'do not touch: db migration'
    assert rec['lock']['user_locked'] and not rec['lock']['unlocked']


def test_lock_false_takes_no_lock(nova, clock):
    sid = nova.add_server('web-1')
    evacuate(nova, clock, sid, lock=False, microversion='2.94')
    assert [a for a, _m, _b in nova.actions(sid)] == ['evacuate']


def test_paused_server_is_refused_and_nothing_is_sent(nova, clock):
    sid = nova.add_server('web-1', vm_state='paused')
    rec = evacuate(nova, clock, sid)
    assert rec['outcome'] == _decisions.OUTCOME_REFUSED and rec['kind'] == _decisions.KIND_STATE and 'PAUSED' in rec['reason']
    assert not nova.actions() and not rec['changed']
    assert rec['next_command'] == 'openstack server set --state error %s' % sid


def test_paused_server_with_reset_state(nova, clock):
    sid = nova.add_server('web-1', vm_state='paused')
    rec = evacuate(nova, clock, sid, reset_state=True, microversion='2.95')
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED and nova.status(sid) == (DST, 'ACTIVE')
    assert [a for a, _m, _b in nova.actions(sid)] == ['lock', 'os-resetState', 'evacuate', 'unlock']


def test_source_not_fenced_is_refused_before_anything_is_sent(nova, clock):
    nova.services[SRC] = dict(state='up', forced_down=False)
    sid = nova.add_server('web-1')
    rec = evacuate(nova, clock, sid)
    assert rec['outcome'] == _decisions.OUTCOME_REFUSED and rec['kind'] == _decisions.KIND_NOT_FENCED
    assert 'host node-1 is not fenced/forced down' in rec['reason']
    assert 'compute service set --down node-1' in rec['next_command']
    assert not nova.actions()


def test_novas_still_in_use_becomes_not_fenced(nova, clock):
    sid = nova.add_server('web-1')
    engine = ev.Engine(nova, clock)
    plan = engine.plan(sid)
    nova.services[SRC] = dict(state='up', forced_down=False)  # the host came back after planning
    engine.run([plan], poll_interval=1)
    rec = plan.record()
    assert rec['outcome'] == _decisions.OUTCOME_FAILED and rec['kind'] == _decisions.KIND_NOT_FENCED
    assert 'host node-1 is not fenced/forced down' in rec['reason'] and 'still in use' in rec['reason']
    assert rec['attempts'][0]['request_id'] in rec['reason']
    assert not rec['changed'] and nova.servers[sid]['locked'] is False
    assert [a for a, _m, _b in nova.actions(sid)] == ['lock', 'evacuate', 'unlock']


def test_source_down_but_not_forced_down_warns(nova, clock):
    nova.services[SRC] = dict(state='down', forced_down=False)
    sid = nova.add_server('web-1')
    rec = evacuate(nova, clock, sid)
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED
    assert any('not forced down' in w for w in rec['warnings'])


def test_target_host(nova, clock):
    sid = nova.add_server('web-1')
    rec = evacuate(nova, clock, sid, target_host=OTHER)
    assert nova.status(sid) == (OTHER, 'ACTIVE') and rec['after']['host'] == OTHER
    assert [b for a, _m, b in nova.actions(sid) if a == 'evacuate'] == [{'evacuate': {'host': OTHER}}]


def test_no_valid_host_at_target_then_scheduler(nova, clock):
    sid = nova.add_server('web-1')
    nova.plans[sid] = [dict(outcome='no_valid_host'), dict(outcome='done', dest=DST)]
    rec = evacuate(nova, clock, sid, target_host=OTHER, retries=0)
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED and nova.status(sid) == (DST, 'ACTIVE')
    assert [a['target_host'] for a in rec['attempts']] == [OTHER, None]
    assert rec['attempts'][0]['outcome'] == _decisions.OUTCOME_FAILED
    assert rec['attempts'][0]['kind'] == _decisions.KIND_NO_VALID_HOST and rec['attempts'][0]['migration_status'] == 'error'
    assert rec['attempts'][1]['scheduler_fallback'] and rec['attempts'][1]['outcome'] == _decisions.OUTCOME_RECOVERED
    sent = [b for a, _m, b in nova.actions(sid) if a == 'evacuate']
    assert sent == [{'evacuate': {'host': OTHER}}, {'evacuate': {}}]


def test_failures_are_retried_up_to_retries_then_reported(nova, clock):
    sid = nova.add_server('web-1')
    nova.plans[sid] = [dict(outcome='compute_failed')] * 3
    rec = evacuate(nova, clock, sid, retries=1)
    assert rec['outcome'] == _decisions.OUTCOME_FAILED and len(rec['attempts']) == 2
    assert 'Virtual Interface creation failed' in rec['reason']
    assert rec['next_command'] == 'openstack server event show %s %s' % (sid, rec['attempts'][-1]['request_id'])
    assert nova.servers[sid]['locked'] is False and rec['changed']


def test_changed_ports_fail_the_recovery(nova, clock):
    sid = nova.add_server('web-1')
    nova.plans[sid] = [dict(new_port=True)]
    rec = evacuate(nova, clock, sid, microversion='2.94', retries=3)
    assert rec['outcome'] == _decisions.OUTCOME_FAILED and rec['kind'] == _decisions.KIND_IDENTITY and 'ports' in rec['reason']
    assert len(rec['attempts']) == 1


def test_rerun_after_success_changes_nothing(nova, clock):
    sid = nova.add_server('web-1')
    evacuate(nova, clock, sid, expected_source_host=SRC)
    sent = len(nova.actions())
    rec = evacuate(nova, clock, sid, expected_source_host=SRC)
    assert rec['outcome'] == _decisions.OUTCOME_NOTHING_TO_DO and not rec['changed']
    assert 'already on node-2' in rec['reason'] and len(nova.actions()) == sent


def test_rerun_without_expected_source_finds_the_earlier_evacuation(nova, clock):
    sid = nova.add_server('web-1')
    evacuate(nova, clock, sid)
    sent = len(nova.actions())
    rec = evacuate(nova, clock, sid)
    assert rec['outcome'] == _decisions.OUTCOME_NOTHING_TO_DO, rec['reason']
    assert 'already evacuated from node-1 to node-2' in rec['reason'] and len(nova.actions()) == sent


def test_interrupted_run_is_finished_from_the_lock_reason(nova, clock):
    """Killed after Nova stopped it at the destination (2.95) but before the start: a re-run starts and
    unlocks it, and issues no evacuation."""
    sid = nova.add_server('web-1', host=DST, vm_state='stopped', locked=True, locked_reason='novaha.recovery: evacuating from node-1 (was ACTIVE)')
    nova.add_migration(sid, 'done')
    rec = evacuate(nova, clock, sid, expected_source_host=SRC)
    assert rec['action'] == _decisions.ACTION_RECONCILE and rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert [a for a, _m, _b in nova.actions(sid)] == ['os-start', 'unlock']
    assert nova.status(sid) == (DST, 'ACTIVE') and nova.servers[sid]['locked'] is False and rec['changed']


def test_evacuation_in_flight_is_waited_for_not_reissued(nova, clock):
    sid = nova.add_server('web-1', task_state='rebuilding')
    mig = nova.add_migration(sid, 'pre-migrating', dest=DST)

    def finish():
        nova._set(sid, host=DST, task_state=None)
        nova._mig_set(mig, 'done')

    nova.at(5, finish)
    rec = evacuate(nova, clock, sid, lock=False)
    assert rec['action'] == _decisions.ACTION_WAIT and rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert not nova.actions() and rec['migration']['id'] == mig['id']


def test_by_default_one_evacuate_request_and_nova_keeps_the_power_state(clock):
    nova = FakeNova(clock, old_computes=True)  # computes too old for 2.95 take the default too
    sid = nova.add_server('web-1')
    rec = evacuate(nova, clock, sid)
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED and rec['microversion'] == '2.94'
    assert [a for a, _m, _b in nova.actions(sid)] == ['lock', 'evacuate', 'unlock']
    assert nova.status(sid) == (DST, 'ACTIVE') and not rec['power_actions']


def test_explicit_2_95_is_not_silently_lowered(clock):
    nova = FakeNova(clock, old_computes=True)
    sid = nova.add_server('web-1')
    rec = evacuate(nova, clock, sid, microversion='2.95')
    assert rec['outcome'] == _decisions.OUTCOME_FAILED and 'microversion 2.95' in rec['reason']


def test_timeout_leaves_the_server_in_progress_and_locked(nova, clock):
    sid = nova.add_server('web-1')
    nova.plans[sid] = [dict(outcome='stuck')]
    rec = evacuate(nova, clock, sid, timeout=30, poll_interval=5)
    assert rec['outcome'] == _decisions.OUTCOME_IN_PROGRESS and rec['kind'] == _decisions.KIND_TIMEOUT
    assert 're-run to resume' in rec['reason'] and nova.servers[sid]['locked'] is True
    assert 'server migration list' in rec['next_command']
    assert clock.t - EPOCH <= 40


def test_servers_never_started_before_the_timeout_are_pending(nova, clock):
    stuck = nova.add_server('web-1')
    later = nova.add_server('web-2')
    nova.plans[stuck] = [dict(outcome='stuck')]
    engine = ev.Engine(nova, clock)
    plans = [engine.plan(stuck), engine.plan(later)]
    engine.run(plans, max_parallel=1, timeout=20, poll_interval=5)
    assert [p.outcome for p in plans] == [_decisions.OUTCOME_IN_PROGRESS, _decisions.OUTCOME_PENDING]
    assert nova.status(later) == (SRC, 'ACTIVE') and not nova.actions(later)
    assert 'not started' in plans[1].record()['reason']


def test_wait_false_returns_after_the_request(nova, clock):
    sid = nova.add_server('web-1')
    rec = evacuate(nova, clock, sid, wait=False)
    assert rec['outcome'] == _decisions.OUTCOME_IN_PROGRESS and rec['migration']['status'] == 'accepted'
    assert [a for a, _m, _b in nova.actions(sid)] == ['evacuate'] and not clock.sleeps


def test_check_mode_plan_sends_nothing(nova, clock):
    sid = nova.add_server('web-1')
    rec = evacuate(nova, clock, sid, run=False, target_host=OTHER, admin_password='s3cret')
    assert not nova.actions()
    assert rec['outcome'] == _decisions.OUTCOME_PLANNED and not rec['changed'] and rec['next_command'] is None
    assert rec['action'] == _decisions.ACTION_EVACUATE and rec['microversion'] == '2.94'
    assert rec['request'] == {'evacuate': {'host': OTHER, 'adminPass': _decisions.HIDDEN}}
    assert rec['expected_status'] == 'ACTIVE'
    assert any('root disk' in w for w in rec['warnings'])
    assert not any('started afterwards' in w for w in rec['warnings'])
    assert 's3cret' not in repr(rec)


def test_admin_password_is_sent_but_never_recorded(nova, clock):
    sid = nova.add_server('web-1', bfv=True)
    rec = evacuate(nova, clock, sid, admin_password='s3cret')
    assert [b for a, _m, b in nova.actions(sid) if a == 'evacuate'] == [{'evacuate': {'adminPass': 's3cret'}}]
    assert 's3cret' not in repr(rec)
    assert not any('root disk' in w for w in rec['warnings'])


def test_server_by_name_unknown_and_ambiguous(nova, clock):
    nova.add_server('web-1')
    nova.add_server('dup')
    nova.add_server('dup', project='p-2')
    engine = ev.Engine(nova, clock)
    assert engine.plan('web-1').before['name'] == 'web-1'
    with pytest.raises(_errors.EvacuationError) as err:
        engine.plan('nope')
    assert err.value.kind == _errors.KIND_NOT_FOUND and 'server nope not found' in err.value.msg
    with pytest.raises(_errors.EvacuationError) as err:
        engine.plan('dup')
    assert 'ambiguous' in err.value.msg and 'p-2' in err.value.msg
    with pytest.raises(_errors.EvacuationError) as err:
        engine.plan('00000000-0000-4000-8000-000000000099')
    assert err.value.kind == _errors.KIND_NOT_FOUND


def test_forbidden_is_a_permission_error(nova, clock):
    sid = nova.add_server('web-1')

    def forbid(method, path, microversion, body=None):
        raise _nova.NovaApiError(403, "Policy doesn't allow os_compute_api:os-services:list to be performed.", request_id='req-x', method=method, path=path)

    engine = ev.Engine(nova, clock)
    engine.find_server(sid)
    nova.request = forbid
    with pytest.raises(_errors.EvacuationError) as err:
        engine.plan(sid)
    assert err.value.kind == _errors.KIND_FORBIDDEN and 'admin role' in err.value.msg and 'req-x' in err.value.msg


# ---------------------------------------------------------------------------------------------------------
# no answer from the API: a dropped keep-alive connection, a restarting nova-api


class _NoAnswer(object):
    """Makes FakeNova fail requests the way a dropped connection does (no HTTP status at all)."""

    def __init__(self, nova, method, path_prefix, times=1, after_processing=False):
        self.nova, self.left = nova, times
        self.method, self.prefix, self.after = method, path_prefix, after_processing
        self._request = nova.request
        nova.request = self

    def __call__(self, method, path, microversion, body=None):
        hit = self.left > 0 and method == self.method and path.startswith(self.prefix)
        if hit and self.after:
            self.left -= 1
            self._request(method, path, microversion, body)  # Nova did it; the answer got lost
        elif hit:
            self.left -= 1
            self.nova.calls.append((method, path, mv_str(microversion), copy.deepcopy(body)))
        if hit:
            raise _nova.NovaApiError(None, 'no answer from the compute API (Connection aborted)', method=method, path=path)
        return self._request(method, path, microversion, body)


def test_a_failed_look_is_not_a_failed_evacuation(nova, clock):
    sid = nova.add_server('web-1')
    _NoAnswer(nova, 'GET', '/servers/detail', times=2)
    rec = evacuate(nova, clock, sid)
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert [a for a, _m, _b in nova.actions(sid)].count('evacuate') == 1


def test_looks_failing_until_the_timeout_leave_it_in_progress_with_the_cause(nova, clock):
    sid = nova.add_server('web-1')
    _NoAnswer(nova, 'GET', '/servers/detail', times=1000)
    rec = evacuate(nova, clock, sid, timeout=20)
    assert rec['outcome'] == _decisions.OUTCOME_IN_PROGRESS and rec['kind'] == _decisions.KIND_TIMEOUT
    assert 'the last look failed: watching the evacuations failed: no answer' in rec['reason']
    assert 'HTTP' not in rec['reason']


def test_evacuate_accepted_but_unanswered_is_adopted_not_reissued(nova, clock):
    sid = nova.add_server('web-1')
    _NoAnswer(nova, 'POST', '/servers/%s/action' % sid, after_processing=True)
    rec = evacuate(nova, clock, sid, lock=False)
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert [a for a, _m, _b in nova.actions(sid)].count('evacuate') == 1
    assert any('already in flight' in w for w in rec['warnings'])
    assert rec['migration']['status'] == 'done'


def test_evacuate_never_received_is_sent_again_after_checking_and_is_not_an_attempt(nova, clock):
    sid = nova.add_server('web-1')
    _NoAnswer(nova, 'POST', '/servers/%s/action' % sid)
    rec = evacuate(nova, clock, sid, lock=False, retries=0)
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert [a['outcome'] for a in rec['attempts']] == [_decisions.OUTCOME_RECOVERED]
    assert [a for a, _m, _b in nova.actions(sid)].count('evacuate') == 2  # sent twice: the first never reached Nova
    assert len([m for m in nova.migrations if m['instance_uuid'] == sid]) == 1
    assert any('got no usable answer and Nova recorded no evacuation' in w for w in rec['warnings'])
    assert any('no answer from the compute API' in w and 'HTTP' not in w for w in rec['warnings'])


class _SdkResponse(object):
    def __init__(self, status, payload):
        self.status_code = status
        self.headers = {'x-openstack-request-id': 'req-1', 'date': 'Fri, 21 Nov 2025 12:00:00 GMT'}
        self.content = b'x'
        self._payload = payload
        self.text = str(payload)
        self.reason = 'reason'

    def json(self):
        return self._payload


class _SdkCompute(object):
    def __init__(self, fail_with=None):
        self.calls = []
        self.fail_with = fail_with

    def request(self, path, method, **kwargs):
        self.calls.append((method, path, kwargs))
        if self.fail_with is not None:
            raise self.fail_with
        return _SdkResponse(200, {'servers': []})


def test_sdk_adapter_resends_reads_only():
    compute = _SdkCompute()
    nova = _nova.SdkNova(type('Conn', (), {'compute': compute})())
    nova.request('GET', '/servers/detail', (2, 96))
    nova.request('POST', '/servers/x/action', (2, 95), {'evacuate': {}})
    (get, post) = [kwargs for _m, _p, kwargs in compute.calls]
    assert get['connect_retries'] >= 1 and get['microversion'] == '2.96'
    assert post['connect_retries'] == 0 and post['json'] == {'evacuate': {}}


def test_sdk_adapter_turns_no_answer_into_an_api_error_without_status():
    ksa_exc = pytest.importorskip('keystoneauth1.exceptions')
    compute = _SdkCompute(fail_with=ksa_exc.ConnectFailure('Connection aborted.'))
    nova = _nova.SdkNova(type('Conn', (), {'compute': compute})())
    with pytest.raises(_nova.NovaApiError) as caught:
        nova.request('GET', '/servers/detail', (2, 96))
    assert caught.value.status_code is None and 'Connection aborted' in caught.value.message
    error = _nova.explain_api_error(caught.value, 'watching')
    assert error.kind == _errors.KIND_API and 'HTTP' not in error.msg


# ---------------------------------------------------------------------------------------------------------
# many servers: the watcher's request count, the window, exclusive groups


@pytest.mark.parametrize('count', [1, 25])
def test_watcher_makes_two_listings_per_poll_whatever_the_number_of_servers(nova, clock, count):
    ids = [nova.add_server('web-%d' % i) for i in range(count)]
    engine = ev.Engine(nova, clock, microversion='2.94')
    migrations = engine.evacuation_migrations(source_host=SRC)
    service = engine.compute_service(SRC)
    plans = [engine.plan(nova._public(nova.servers[i]), service=service, migrations=migrations) for i in ids]
    before = len(nova.calls)
    engine.run(plans, max_parallel=count, poll_interval=2)
    assert all(p.outcome == _decisions.OUTCOME_RECOVERED for p in plans)
    gets = [c for c in nova.calls[before:] if c[0] == 'GET']
    polls = len(clock.sleeps)
    assert polls >= 2
    assert len(gets) == 2 * polls
    assert sorted(set(c[1].split('?')[0] for c in gets)) == ['/os-migrations', '/servers/detail']
    assert all('changes-since=' in c[1] for c in gets)
    assert all('all_tenants=True' in c[1] for c in gets if c[1].startswith('/servers/detail'))


def test_max_parallel_is_never_exceeded(nova, clock):
    ids = [nova.add_server('web-%d' % i) for i in range(6)]
    engine = ev.Engine(nova, clock, microversion='2.94')
    plans = [engine.plan(i, lock=False) for i in ids]
    in_flight = []
    engine.run(plans, max_parallel=2, poll_interval=1, on_progress=lambda summary: in_flight.append(summary['in_flight']))
    assert all(p.outcome == _decisions.OUTCOME_RECOVERED for p in plans)
    assert max(in_flight) == 2  # progress shows the window as filled, never more
    assert in_flight[-1] == 0
    # each evacuation POST happens only when fewer than two are unfinished
    for t in sorted(p.requested_at for p in plans):
        assert sum(1 for p in plans if p.requested_at <= t < p.finished_at) <= 2


def test_exclusive_groups_are_not_evacuated_together(nova, clock):
    a = nova.add_server('db-a')
    b = nova.add_server('db-b')
    c = nova.add_server('web-c')
    engine = ev.Engine(nova, clock, microversion='2.94')
    plans = [engine.plan(i, lock=False) for i in (a, b, c)]
    plans[0].exclusive_groups = plans[1].exclusive_groups = {'anti-affinity-1'}
    engine.run(plans, max_parallel=5, poll_interval=1)
    pa, pb, pc = plans
    assert all(p.outcome == _decisions.OUTCOME_RECOVERED for p in plans)
    assert pb.requested_at >= pa.finished_at
    assert pc.requested_at < pa.finished_at


def test_progress_summary(nova, clock):
    ids = [nova.add_server('web-%d' % i) for i in range(3)]
    nova.add_server('paused', vm_state='paused')
    engine = ev.Engine(nova, clock, microversion='2.94')
    plans = [engine.plan(nova._public(s)) for s in nova.servers.values()]
    seen = []
    engine.run(plans, max_parallel=3, poll_interval=1, on_progress=seen.append)
    assert seen[-1]['recovered'] == 3 and seen[-1]['refused'] == 1 and seen[-1]['in_flight'] == 0
    assert ev.summarize(plans)['recovered'] == len(ids)


# ---------------------------------------------------------------------------------------------------------
# when to look again


def test_next_poll_delay_is_short_after_a_change_and_backs_off_to_the_poll_interval():
    assert [_watch.next_poll_delay(5, quiet) for quiet in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert _watch.next_poll_delay(1, 0) == 1.0 and _watch.next_poll_delay(1, 9) == 1.0
    # Two looks start at least LOOK_GAP apart: the time spent acting after the last one counts.
    assert _watch.next_poll_delay(5, 0, since_last_look=0.3) == 1.7 and _watch.next_poll_delay(5, 0, since_last_look=1.5) == 1.0
    assert _watch.next_poll_delay(5, 2, since_last_look=0.3) == 4.0 and _watch.next_poll_delay(1, 0, since_last_look=0.3) == 1.0


def test_a_finished_evacuation_is_seen_about_a_second_after_nova_finished_it(nova, clock):
    # Nova finishes each rebuild 3 s after the request; with poll_interval 10 a fixed rhythm would see it at 10 s.
    ids = [nova.add_server('web-%d' % i) for i in range(4)]
    engine = ev.Engine(nova, clock)
    plans = [engine.plan(i, lock=False) for i in ids]
    engine.run(plans, max_parallel=2, poll_interval=10)
    assert all(p.outcome == _decisions.OUTCOME_RECOVERED for p in plans)
    # the window refills as soon as one is seen done: the second pair starts within 2 s of Nova finishing the first
    assert all(p.finished_at - p.requested_at <= 4 for p in plans)
    assert plans[2].requested_at - plans[0].requested_at <= 5
    assert max(clock.sleeps) <= 2


def test_a_long_quiet_evacuation_is_polled_less_and_less_often(nova, clock):
    sid = nova.add_server('web-1')
    nova.plans[sid] = [dict(delay=60)]
    engine = ev.Engine(nova, clock)
    plan = engine.plan(sid, lock=False)
    engine.run([plan], poll_interval=8)
    assert plan.outcome == _decisions.OUTCOME_RECOVERED
    assert max(clock.sleeps) == 8 and len(clock.sleeps) <= 14  # not 60 one-second looks


# -- listings are whole or an error (list_all, used by every reading of a host) -----------------


def test_a_listing_follows_every_page():
    nova = PagingNova('servers', total=25, per_page=10)
    items, _date = _nova.list_all(nova, '/servers/detail', [('all_tenants', 'True')], 'servers', (2, 96))
    assert len(items) == 25 and len(nova.requests) == 3


def test_a_listing_cut_by_the_page_limit_is_an_error_not_a_short_list():
    nova = PagingNova('servers', total=31, per_page=10)
    with pytest.raises(_errors.EvacuationError) as err:
        _nova.list_all(nova, '/servers/detail', [('all_tenants', 'True')], 'servers', (2, 96), limit_pages=3)
    assert 'stopped after 3 pages (30 items) with more still to come' in err.value.msg
    items, _date = _nova.list_all(PagingNova('servers', 30, 10), '/servers/detail', [], 'servers', (2, 96), limit_pages=3)
    assert len(items) == 30


def test_each_warning_of_a_record_has_its_kind():
    snap = dict(id='s-1', name='web-1', image_id='img-1', boot_from_volume=False, flavor=dict(ephemeral=10, swap=512))
    warnings = _decisions.disk_warnings(snap)
    assert [_decisions.warning_kind(w) for w in warnings] == ['root_disk_lost', 'disk_recreated', 'disk_recreated']
    assert _decisions.disk_warnings(dict(snap, boot_from_volume=True, flavor={})) == []
    assert _decisions.disk_warnings(snap, on_shared_storage=True) == []
    assert _decisions.warning_kind('a plain string') == 'other'
