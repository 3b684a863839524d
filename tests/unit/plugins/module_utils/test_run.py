"""Unit tests of the run of a host recovery: the marker, who holds the host, claiming, renewing, releasing."""

import datetime

import pytest

from ansible_collections.novaha.recovery.plugins.module_utils import _run as run

from nova_fakes import Clock, ServiceNova

HOST = 'node-28'
T0 = datetime.datetime(2025, 11, 21, 12, 0, 0, tzinfo=datetime.timezone.utc)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def marker(run_id='first1', phase='evacuating', beat=0, lease=300, **was):
    return run.RunMarker(run_id, phase, 'awx-1@aa', at(-600), at(beat), lease, **was)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def nova(clock):
    return ServiceNova(clock)


def host_run(nova, clock, run_id='second', **kw):
    kw.setdefault('controller', 'ctl@00')
    return run.HostRun(nova, HOST, run_id, clock, **kw)


# -- the marker ----------------------------------------------------------------------------------------------


def test_marker_round_trip_keeps_every_field():
    m = marker(was_status='disabled', was_forced_down=True, was_reason='RMA-4711, do not enable')
    text = m.text()
    assert text == ('novaha.recovery run first1 evacuating ctl awx-1@aa start 20251121T115000Z beat 20251121T120000Z '
                    'lease 300; was: disabled,forced_down (RMA-4711, do not enable)')
    back = run.parse_marker(text)
    assert back.to_dict() == m.to_dict()
    assert back.restore_body() == {'status': 'disabled', 'forced_down': True,
                                   'disabled_reason': 'RMA-4711, do not enable'}
    assert run.parse_marker(marker().text()).restore_body() == {'status': 'enabled', 'forced_down': False}


def test_an_operators_reason_is_not_a_marker():
    assert run.parse_marker('hardware failure, ticket OPS-1') is None
    assert run.parse_marker(None) is None


def test_a_long_reason_is_cut_to_fit_nova_and_says_so():
    m = marker(was_status='disabled', was_reason='x' * 300)
    assert len(m.text()) <= 255 and run.parse_marker(m.text()).was_reason.endswith('x...')


def test_controller_identity_tells_apart_containers_with_one_hostname():
    one = run.controller_identity('awx-job.example.org', 'boot-1|pid:[4026531836]')
    two = run.controller_identity('awx-job.example.org', 'boot-1|pid:[4026532999]')
    assert one.startswith('awx-job@') and two.startswith('awx-job@') and one != two
    assert ' ' not in run.controller_identity('a host name') and run.controller_identity()


# -- who holds the host ----------------------------------------------------------------------------------------


@pytest.mark.parametrize('found, now, takeover, kind', [
    (None, 0, False, 'free'),
    (marker(run_id='second'), 0, False, 'ours'),
    (marker(phase='done'), 0, False, 'ended'),
    (marker(phase='interrupted'), 0, False, 'ended'),
    (marker(), 299, False, 'live'),
    (marker(), 301, False, 'stale'),
    (marker(), 10, True, 'overridden'),
])
def test_judge_holder(found, now, takeover, kind):
    holder = run.judge_holder(found, 'second', at(now), takeover)
    assert holder.kind == kind and holder.may_take == (kind != 'live')


# -- claiming --------------------------------------------------------------------------------------------------


def test_claim_of_a_free_host_records_the_service_before_it_and_reads_it_back(nova, clock):
    nova.services[HOST].update(status='disabled', disabled_reason='RMA-4711, do not enable')
    r = host_run(nova, clock)
    holder = r.claim()
    assert holder.kind == 'free' and r.took_over is None
    found = run.parse_marker(nova.services[HOST]['disabled_reason'])
    assert (found.run_id, found.phase, found.was_status, found.was_reason) == (
        'second', 'claimed', 'disabled', 'RMA-4711, do not enable')
    # Read, write, settle, read back: nothing else.
    assert [m for m, _p, _b in nova.requests] == ['GET', 'PUT', 'GET'] and clock.sleeps == [run.DEFAULT_SETTLE]


def test_a_live_run_is_waited_for_then_refused_naming_it(nova, clock):
    nova.services[HOST]['disabled_reason'] = marker(beat=0).text()
    seen = []
    r = host_run(nova, clock)
    with pytest.raises(run.RunError) as err:
        r.claim(wait_timeout=30, wait_interval=10, on_wait=lambda holder, waited: seen.append(int(waited)))
    assert err.value.kind == 'held' and 'run first1 (controller awx-1@aa, phase evacuating' in err.value.msg
    assert 'changed nothing' in err.value.msg and seen == [0, 10, 20] and nova.writes() == []


def test_a_live_run_that_ends_while_we_wait_is_resumed(nova, clock):
    nova.services[HOST]['disabled_reason'] = marker(beat=0).text()
    clock.on_sleep.append(lambda: nova.services[HOST].update(disabled_reason=marker(phase='done').text()))
    r = host_run(nova, clock)
    assert r.claim(wait_timeout=60).kind == 'ended'
    assert r.took_over.marker.run_id == 'first1' and r.marker.run_id == 'second'


def test_a_stale_run_is_taken_over_keeping_its_start_and_the_service_before_it(nova, clock):
    old = marker(beat=-400, was_status='disabled', was_reason='RMA-1')
    nova.services[HOST]['disabled_reason'] = old.text()
    r = host_run(nova, clock)
    assert r.claim().kind == 'stale'
    found = run.parse_marker(nova.services[HOST]['disabled_reason'])
    assert found.run_id == 'second' and found.started_at == old.started_at and found.was_reason == 'RMA-1'


def test_two_claims_at_the_same_moment_only_one_goes_on(nova, clock):
    # The other run read the host free too, and writes its claim while ours settles: the last writer wins.
    other = marker(run_id='other1', phase='claimed', beat=0)
    clock.on_sleep.append(lambda: nova.write(HOST, {'status': 'disabled', 'disabled_reason': other.text()}))
    r = host_run(nova, clock)
    with pytest.raises(run.RunError) as err:
        r.claim()
    assert err.value.kind == 'lost' and 'run other1' in err.value.msg


class SlowNova(ServiceNova):
    """Each GET takes the seconds popped from ``slow`` (then none)."""

    def __init__(self, clock, slow):
        super(SlowNova, self).__init__(clock)
        self.slow = list(slow)

    def request(self, method, path, microversion, body=None):
        if method == 'GET' and self.slow:
            self.clock.t += self.slow.pop(0)
        return super(SlowNova, self).request(method, path, microversion, body)


def test_a_slow_read_and_write_is_done_again_before_the_claim_counts(clock):
    slow = SlowNova(clock, [3.0])
    r = host_run(slow, clock)
    assert r.claim().kind == 'free'
    # The slow round, then a fast one (which reads our own marker and refreshes it), then the read back.
    assert [m for m, _p, _b in slow.requests] == ['GET', 'PUT', 'GET', 'PUT', 'GET']
    assert run.parse_marker(slow.services[HOST]['disabled_reason']).phase == 'claimed'


def test_an_api_too_slow_to_claim_safely_gives_up_and_leaves_no_live_claim(clock):
    slow = SlowNova(clock, [3.0] * 10)
    with pytest.raises(run.RunError) as err:
        host_run(slow, clock).claim()
    assert err.value.kind == 'api' and 'cannot be proven alone' in err.value.msg
    left = run.parse_marker(slow.services[HOST]['disabled_reason'])
    assert left.phase == 'interrupted' and not left.held


def test_a_re_claim_with_the_same_run_id_holds_the_host_again(nova, clock):
    nova.services[HOST]['disabled_reason'] = marker(run_id='second', phase='done').text()
    r = host_run(nova, clock)
    assert r.claim().kind == 'ours'
    assert run.parse_marker(nova.services[HOST]['disabled_reason']).phase == 'claimed'


# -- holding, renewing, releasing --------------------------------------------------------------------------------


def test_advance_renews_the_heartbeat_and_forces_down(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    clock.t += 100
    r.advance('isolated', forced_down=True)
    found = run.parse_marker(nova.services[HOST]['disabled_reason'])
    assert found.phase == 'isolated' and found.heartbeat_at == at(102) and nova.services[HOST]['forced_down'] is True
    assert found.was_status == 'enabled' and found.was_forced_down is False


def test_a_failed_renewal_is_tried_again_while_the_lease_is_safe(nova, clock):
    r = host_run(nova, clock, lease=100)
    r.claim()
    clock.t += 30
    nova.fail_next = 503
    assert r.renew_if_due() is False and len(r.renew_errors) == 1 and 'HTTP 503' in r.renew_errors[0]
    clock.t += 1
    assert r.renew_if_due() is True
    clock.t += 60
    nova.fail_next = 503
    clock.t += 10   # half the lease without a heartbeat: no more waiting
    with pytest.raises(run.RunError):
        r.renew_if_due()


def test_renew_if_due_writes_once_a_quarter_lease(nova, clock):
    r = host_run(nova, clock, lease=100)
    r.claim()
    puts = len(nova.writes())
    clock.t += 20
    assert r.renew_if_due() is False and len(nova.writes()) == puts
    clock.t += 6
    assert r.renew_if_due() is True and len(nova.writes()) == puts + 1


def test_a_run_whose_host_was_taken_stops_without_writing(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    nova.services[HOST]['disabled_reason'] = marker(run_id='other1', beat=2).text()
    puts = len(nova.writes())
    with pytest.raises(run.RunError) as err:
        r.advance('evacuating')
    assert err.value.kind == 'lost' and 'run other1' in err.value.msg and len(nova.writes()) == puts


def test_release_refuses_a_run_that_reached_the_evacuation(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    r.advance('evacuating', forced_down=True)
    with pytest.raises(run.RunError) as err:
        r.release()
    assert err.value.kind == 'refused' and nova.services[HOST]['forced_down'] is True
    r.release(evacuated=True)  # the evacuation itself finished: the host goes back as it was
    assert nova.services[HOST]['status'] == 'enabled'


def test_release_sends_forced_down_only_when_it_changes(nova, clock):
    # Nova refuses forced_down=false while evacuations from a dead host are left 'done'.
    r = host_run(nova, clock)
    r.claim()
    r.release()
    assert nova.writes()[-1] == {'status': 'enabled'}


def test_release_puts_the_service_back_as_it_was_before_the_first_run(nova, clock):
    nova.services[HOST].update(status='disabled', disabled_reason='RMA-4711')
    r = host_run(nova, clock)
    r.claim()
    r.advance('isolated', forced_down=True)
    r.release()
    assert nova.services[HOST]['status'] == 'disabled' and nova.services[HOST]['disabled_reason'] == 'RMA-4711'
    assert nova.services[HOST]['forced_down'] is False


def test_api_errors_name_the_step_status_and_request_id(nova, clock):
    nova.fail_next = 503
    with pytest.raises(run.RunError) as err:
        host_run(nova, clock).claim()
    assert err.value.kind == 'api' and 'reading the nova-compute service of node-28 failed' in err.value.msg
    assert 'HTTP 503' in err.value.msg and 'request id req-fail' in err.value.msg


def test_a_bad_run_id_is_refused():
    with pytest.raises(run.RunError) as err:
        run.HostRun(None, HOST, 'has space', Clock())
    assert err.value.kind == 'configuration' and 'run_id' in err.value.msg


def test_a_host_without_a_compute_service_is_named(nova, clock):
    with pytest.raises(run.RunError) as err:
        run.HostRun(nova, 'node-99', 'second', clock).claim()
    assert err.value.kind == 'no_service' and 'node-99' in err.value.msg


# -- is a recovered host repaired --------------------------------------------------------------------------------


def reading(updated_at, migrations=(), age=3.0):
    return dict(service=dict(updated_at=updated_at, heartbeat_age=age), migrations=list(migrations))


def test_a_repaired_host_has_no_refusal():
    first = reading('2025-11-21T12:00:00.000000', [dict(id=7, status='completed')])
    now = reading('2025-11-21T12:00:10.000000', [dict(id=7, status='completed')])
    assert run.restore_refusals(now, first, power_state='on', waited=45) == []


def test_each_unmet_condition_is_named():
    first = reading('2025-11-21T12:00:00.000000')
    now = reading('2025-11-21T12:00:00.000000', [dict(id=7, status='done'), dict(id=8, status='completed')], 62.0)
    refusals = run.restore_refusals(now, first, power_state='off', power_msg='Redfish reads Off', waited=45)
    assert refusals == ['the BMC does not read power On but off - Redfish reads Off',
                        'nova-compute does not report: no heartbeat in 45 s, the last one 62.0 s ago; start '
                        'nova-compute on the host',
                        'evacuations from it are not cleaned up yet, migrations 7 are not completed; its restarted '
                        'nova-compute completes them']
    # Without a power reading the power is not judged (the wait loop uses it so).
    assert len(run.restore_refusals(now, first, waited=45)) == 2


@pytest.mark.parametrize('service, marker_, override, body, refused', [
    (dict(status='enabled', forced_down=True), None, False, {'status': 'enabled', 'forced_down': False}, None),
    (dict(status='enabled', forced_down=False), None, False, None, None),
    (dict(status='disabled', disabled_reason='storage team'), None, False, None, 'not by novaha.recovery'),
    (dict(status='disabled', disabled_reason='storage team'), None, True, {'status': 'enabled', 'forced_down': False},
     None),
    (dict(status='disabled', forced_down=True), marker(phase='done', was_status='disabled', was_reason='RMA-1'), False,
     {'status': 'disabled', 'forced_down': False, 'disabled_reason': 'RMA-1'}, None),
    (dict(status='disabled', forced_down=True), marker(phase='done'), False,
     {'status': 'enabled', 'forced_down': False}, None),
    (dict(status='disabled', forced_down=True), marker(phase='evacuating', beat=0), True, None, 'still holds'),
])
def test_plan_restore(service, marker_, override, body, refused):
    holder = run.judge_holder(marker_, 'restore', at(10))
    plan = run.plan_restore(dict(service, host=HOST), holder, override)
    assert plan.body == body
    assert (plan.refusal is None) if refused is None else (refused in plan.refusal)
