"""Unit tests of the run of a host recovery: the marker, who holds the host, claiming, renewing, releasing."""

import datetime

import pytest
from nova_fakes import Clock, FailingNova, ServiceNova

from ansible_collections.novaha.recovery.plugins.module_utils import _run as run

HOST = 'node-28'
T0 = datetime.datetime(2025, 11, 21, 12, 0, 0, tzinfo=datetime.timezone.utc)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def marker(run_id='first1', phase='evacuating', beat=0, lease=300, **was):
    return run.RunMarker(run_id, phase, 'awx-1@aa', at(-600), at(beat), lease, **was)


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
    assert text == (
        'novaha.recovery run first1 evacuating ctl awx-1@aa start 20251121T115000Z beat 20251121T120000Z '
        'lease 300; was: disabled,forced_down (RMA-4711, do not enable)'
    )
    back = run.parse_marker(text)
    assert back.to_dict() == m.to_dict()
    assert back.restore_body() == {'status': 'disabled', 'forced_down': True, 'disabled_reason': 'RMA-4711, do not enable'}
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


@pytest.mark.parametrize(
    'found, now, takeover, kind',
    [
        (None, 0, False, 'free'),
        (marker(run_id='second'), 0, False, 'ours'),
        (marker(phase='done'), 0, False, 'ended'),
        (marker(phase='interrupted'), 0, False, 'ended'),
        (marker(), 299, False, 'live'),
        (marker(), 301, False, 'stale'),
        (marker(), 10, True, 'overridden'),
    ],
)
def test_judge_holder(found, now, takeover, kind):
    holder = run.judge_holder(found, 'second', at(now), takeover)
    assert holder.kind == kind and holder.may_take == (kind != 'live')


@pytest.mark.parametrize(
    'now, skew, takeover, kind',
    [
        (301, run.CLOCK_SKEW, False, 'live'),  # past the lease on the local clock, within the skew: still live
        (300 + run.CLOCK_SKEW + 1, run.CLOCK_SKEW, False, 'stale'),
        (None, run.CLOCK_SKEW, False, 'live'),  # no clock at all: never stale
        (None, run.CLOCK_SKEW, True, 'overridden'),
    ],
)
def test_without_the_apis_clock_a_live_holder_never_looks_stale(now, skew, takeover, kind):
    holder = run.judge_holder(marker(), 'second', at(now) if now is not None else None, takeover, skew=skew)
    assert holder.kind == kind
    assert holder.clock == ('local' if now is not None else None)
    assert ('on the local clock' if now is not None else 'heartbeat age unknown') in holder.describe()


def test_reference_time_is_the_apis_date_else_the_local_clock_with_a_skew_allowance():
    assert run.reference_time(at(5), 0) == (at(5), 0)
    assert run.reference_time(None, at(7).timestamp()) == (at(7), run.CLOCK_SKEW)
    assert run.reference_time(None, None) == (None, run.CLOCK_SKEW)


def test_a_host_read_without_a_date_header_keeps_a_live_holder_live(nova, clock):
    # The API sends no Date; the controller's clock runs 350 s past the heartbeat, more than its lease.
    nova.send_date = False
    nova.services[HOST]['disabled_reason'] = marker(beat=0).text()
    clock.t = at(350).timestamp()
    r = host_run(nova, clock)
    assert r.read()[2].kind == 'live'
    with pytest.raises(run.RunError) as err:
        r.claim()
    assert err.value.kind == 'held' and nova.writes() == []
    clock.t = at(300 + run.CLOCK_SKEW + 1).timestamp()  # now older than lease and skew: its controller is gone
    assert r.claim().kind == 'stale'


# -- claiming --------------------------------------------------------------------------------------------------


def test_claim_of_a_free_host_records_the_service_before_it_and_reads_it_back(nova, clock):
    nova.services[HOST].update(status='disabled', disabled_reason='RMA-4711, do not enable')
    r = host_run(nova, clock)
    holder = r.claim()
    assert holder.kind == 'free' and r.took_over is None
    found = run.parse_marker(nova.services[HOST]['disabled_reason'])
    assert (found.run_id, found.phase, found.was_status, found.was_reason) == ('second', 'claimed', 'disabled', 'RMA-4711, do not enable')
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


def test_a_claim_left_to_be_read_back_later_returns_after_its_write_and_is_proven_settle_after_it(nova, clock):
    r = host_run(nova, clock)
    assert r.claim(read_back=False).kind == 'free'
    assert [m for m, _p, _b in nova.requests] == ['GET', 'PUT'] and clock.sleeps == []
    assert r.settled_at == clock.t + run.DEFAULT_SETTLE
    # The next module of the run (another HostRun) reads it back: it waits what is left of the settle (the fence
    # took 1.5 s meanwhile), reads once, and writes its phase without reading again.
    clock.t += 1.5
    nova.requests.clear()
    later = host_run(nova, clock)
    before, words = later.move_to(run.PHASE_ISOLATED, r.settled_at)
    assert clock.sleeps == [0.5] and [m for m, _p, _b in nova.requests] == ['GET', 'PUT']
    assert run.parse_marker(nova.services[HOST]['disabled_reason']).phase == 'isolated'
    assert nova.services[HOST]['forced_down'] is True and before['forced_down'] is False
    assert words == 'run second on %s: forced down, disabled, phase isolated' % HOST


def test_move_to_a_later_phase_reads_first_and_forces_nothing(nova, clock):
    host_run(nova, clock).claim()
    nova.requests.clear()
    del clock.sleeps[:]
    r = host_run(nova, clock)
    before, words = r.move_to(run.PHASE_VERIFYING)
    assert [m for m, _p, _b in nova.requests] == ['GET', 'PUT'] and 'forced_down' not in nova.requests[1][2]
    assert before == r.first_read and words == 'run second on %s: phase verifying' % HOST and clock.sleeps == []


def test_the_claims_words_name_a_takeover_and_warn_of_a_stale_one(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    assert r.claim_words() == ('run second holds %s (phase claimed)' % HOST, None)
    nova.services[HOST]['disabled_reason'] = marker(beat=-400).text()
    stale = host_run(nova, clock, run_id='third')
    stale.claim(read_back=False)
    msg, warning = stale.claim_words(read_back=False)
    assert msg.startswith('run third holds %s (phase claimed; read back before the first write); took over the stale run first1' % HOST)
    assert warning.startswith('%s: took over the stale run first1' % HOST)


def test_a_claim_read_back_later_loses_to_a_competitor_that_wrote_while_it_settled(nova, clock):
    r = host_run(nova, clock)
    r.claim(read_back=False)
    # The other run read the host free before our write landed and wrote its claim within its settle.
    nova.write(HOST, {'status': 'disabled', 'disabled_reason': marker(run_id='other1', phase='claimed', beat=1).text()})
    with pytest.raises(run.RunError) as err:
        host_run(nova, clock).prove_claim(r.settled_at)
    assert err.value.kind == 'lost' and 'claimed host %s at the same moment' % HOST in err.value.msg
    assert clock.sleeps == [run.DEFAULT_SETTLE] and len(nova.writes()) == 1  # ours only: nothing written after it lost


def test_a_read_back_never_waits_longer_than_the_proof_needs(nova, clock):
    r = host_run(nova, clock)
    r.claim(read_back=False)
    clock.t += 5
    r.prove_claim(r.settled_at)  # the settle passed long ago: no wait
    r.prove_claim(clock.t + 3600)  # a clock that jumped: CLAIM_PROOF_WAIT at most
    assert clock.sleeps == [0.0, run.CLAIM_PROOF_WAIT]


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
    clock.t += 10  # half the lease without a heartbeat: no more waiting
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


def held_by(phase='claimed', run_id='second'):
    return run.Holder('ours' if run_id == 'second' else 'live', marker(run_id=run_id, phase=phase), 0)


@pytest.mark.parametrize(
    'holder, facts, declined',
    [
        (held_by(), {}, None),
        (held_by('isolated'), {}, None),
        (held_by('isolated'), dict(evacuation_started=True), run.RELEASE_EVACUATION_STARTED),
        (held_by('evacuating'), {}, run.RELEASE_EVACUATION_STARTED),
        (held_by('verifying'), {}, run.RELEASE_EVACUATION_STARTED),
        (held_by('isolated'), dict(took_over=True), run.RELEASE_TOOK_OVER),
        (held_by('evacuating'), dict(took_over=True, evacuated=True), None),  # the evacuation itself finished
        (run.Holder('free'), {}, run.RELEASE_NOT_HELD),
        (held_by(run_id='other1'), {}, run.RELEASE_NOT_HELD),
        (held_by(run_id='other1'), dict(evacuated=True), run.RELEASE_NOT_HELD),
    ],
)
def test_release_refusal_is_the_one_decision(holder, facts, declined):
    assert run.release_refusal(holder, **facts) == declined


def test_release_declines_a_run_that_reached_the_evacuation_and_writes_nothing(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    r.advance('evacuating', forced_down=True)
    puts = len(nova.writes())
    released = r.release()
    assert released.declined == run.RELEASE_EVACUATION_STARTED and len(nova.writes()) == puts
    assert nova.services[HOST]['forced_down'] is True and 'stays isolated' in released.describe()
    assert r.release(evacuated=True).declined is None  # the evacuation itself finished: back as it was
    assert nova.services[HOST]['status'] == 'enabled'


def test_release_declines_on_the_facts_the_role_passes(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    r.advance('isolated', forced_down=True)
    puts = len(nova.writes())
    assert r.release(evacuation_started=True).declined == run.RELEASE_EVACUATION_STARTED
    assert r.release(took_over=True).declined == run.RELEASE_TOOK_OVER
    assert len(nova.writes()) == puts and nova.services[HOST]['forced_down'] is True


def test_release_after_this_runs_own_claim_took_over_is_declined(nova, clock):
    nova.services[HOST]['disabled_reason'] = marker(phase='interrupted').text()
    r = host_run(nova, clock)
    assert r.claim().kind == 'ended'
    assert r.release().declined == run.RELEASE_TOOK_OVER


@pytest.mark.parametrize('setup', ['never_claimed', 'other_run', 'no_service', 'released'])
def test_release_declines_a_run_that_holds_nothing_and_never_writes_over_another(nova, clock, setup):
    r = host_run(nova, clock) if setup != 'no_service' else run.HostRun(nova, 'node-99', 'second', clock)
    if setup == 'other_run':
        nova.services[HOST]['disabled_reason'] = marker(run_id='other1', beat=0).text()
    if setup == 'released':
        r.claim()
        assert r.release().declined is None
    puts = len(nova.writes())
    released = r.release()
    assert released.declined == run.RELEASE_NOT_HELD and len(nova.writes()) == puts
    if setup == 'other_run':
        assert run.parse_marker(nova.services[HOST]['disabled_reason']).run_id == 'other1'


def test_release_in_check_mode_decides_and_writes_nothing(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    puts = len(nova.writes())
    released = r.release(check_mode=True)
    assert released.declined is None and released.body == {'status': 'enabled'} and len(nova.writes()) == puts
    assert released.describe().startswith('check mode: would put back')


# -- ending ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('stopped, phase', [(False, 'done'), (True, 'interrupted')])
def test_end_phase(stopped, phase):
    assert run.end_phase(stopped) == phase


def test_end_marks_the_run_done_or_interrupted_and_frees_the_host(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    r.advance('isolated', forced_down=True)
    clock.t += 30
    phase, before = r.end(stopped=True)
    found = run.parse_marker(nova.services[HOST]['disabled_reason'])
    assert phase == 'interrupted' and found.phase == 'interrupted' and not found.held
    assert found.heartbeat_at == at(32) and run.parse_marker(before['disabled_reason']).phase == 'isolated'
    assert run.judge_holder(found, 'next1', at(33)).kind == 'ended'  # the next run goes on at once
    assert r.end(stopped=False)[0] == 'done'


@pytest.mark.parametrize('setup', ['never_claimed', 'other_run', 'no_service', 'released'])
def test_end_of_a_run_that_holds_nothing_changes_nothing(nova, clock, setup):
    r = host_run(nova, clock) if setup != 'no_service' else run.HostRun(nova, 'node-99', 'second', clock)
    if setup == 'other_run':
        nova.services[HOST]['disabled_reason'] = marker(run_id='other1', beat=0).text()
    if setup == 'released':
        r.claim()
        r.release()
    puts = len(nova.writes())
    assert r.end(stopped=True)[0] is None and len(nova.writes()) == puts


def test_end_in_check_mode_decides_and_writes_nothing(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    puts = len(nova.writes())
    assert r.end(stopped=False, check_mode=True)[0] == 'done' and len(nova.writes()) == puts


def ending(nova, clock, r, token_problem=None):
    """end_run over ``r``'s marker and a token whose end is recorded (after the marker's requests so far)."""
    seen = []

    def end_token():
        seen.append(len(nova.requests))
        if token_problem is not None:
            raise token_problem
        return 'revoked 1 Keystone tokens'

    return run.end_run(lambda: r.end(stopped=False), end_token), seen


def test_the_end_of_a_run_ends_its_marker_first_then_its_token(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    end, seen = ending(nova, clock, r)
    assert end.phase == 'done' and end.failure is None and end.token == 'revoked 1 Keystone tokens'
    # The marker was written (with the token) before the token was ended.
    assert seen == [len(nova.requests)] and nova.requests[-1][0] == 'PUT'
    assert run.parse_marker(nova.services[HOST]['disabled_reason']).phase == 'done'


def test_a_marker_that_cannot_be_ended_still_ends_the_token_and_fails_the_end(nova, clock):
    r = host_run(run.retrying_reads(nova, clock, lease=20), clock, lease=20)
    r.claim()
    r.nova = run.retrying_reads(FailingNova(nova), clock, lease=20)
    end, seen = ending(nova, clock, r)
    assert end.phase is None and 'HTTP 503' in end.failure.msg
    assert end.token == 'revoked 1 Keystone tokens' and len(seen) == 1


def test_a_token_that_cannot_be_ended_leaves_the_marker_ended(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    end, _seen = ending(nova, clock, r, token_problem=run.NovahaError('removing the token cache x failed: EACCES'))
    assert end.phase == 'done' and end.failure is None and 'EACCES' in end.token_failure.msg
    assert run.parse_marker(nova.services[HOST]['disabled_reason']).phase == 'done'


@pytest.mark.parametrize('setup', ['never_claimed', 'already_recovered_by_another_run'])
def test_a_run_that_holds_nothing_to_end_still_ends_its_token(nova, clock, setup):
    if setup == 'already_recovered_by_another_run':
        nova.services[HOST]['disabled_reason'] = marker(run_id='first1', phase='done', beat=-900).text()
    r = host_run(nova, clock)
    end, seen = ending(nova, clock, r)
    assert end.phase is None and end.failure is None and len(seen) == 1 and nova.writes() == []


def test_anything_else_the_marker_raises_still_ends_the_token_first():
    seen = []

    def end_marker():
        raise KeyError('a bug')

    with pytest.raises(KeyError):
        run.end_run(end_marker, lambda: seen.append('token'))
    assert seen == ['token']


def test_without_a_token_to_end_only_the_marker_is_ended(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    end = run.end_run(lambda: r.end(stopped=True))
    assert end.phase == 'interrupted' and end.token is None and end.token_failure is None


# -- waiting -----------------------------------------------------------------------------------------------------


def test_wait_for_looks_until_settled_or_the_timeout(clock):
    seen = iter([1, 2, 3, 4])
    assert run.wait_for(lambda: next(seen), lambda n: n == 3, clock, timeout=60, interval=5) == (3, 10, 3)
    calls = []
    assert run.wait_for(lambda: 0, lambda n: False, clock, timeout=12, interval=5, between=lambda: calls.append(clock.now())) == (0, 12, 4)
    assert clock.sleeps[-3:] == [5, 5, 2] and len(calls) == 3


def verdict(waiting=False, ok=False):
    return dict(id='s-1', waiting=waiting, ok=ok)


def test_verify_holds_the_host_renews_the_heartbeat_and_returns_the_verdicts(nova, clock):
    r = host_run(nova, clock, lease=40)
    r.claim()
    looks = iter([[verdict(waiting=True)]] * 5 + [[verdict(ok=True)]])
    found, waited, count = r.verify(lambda: next(looks), timeout=300, interval=5)
    assert found == [verdict(ok=True)] and (waited, count) == (25, 6)
    # Phase verifying, written first, then a heartbeat every quarter lease (10 s) while it waited.
    phases = [run.parse_marker(b['disabled_reason']).phase for b in nova.writes()]
    assert phases == ['claimed', 'verifying', 'verifying', 'verifying']
    assert run.parse_marker(nova.services[HOST]['disabled_reason']).heartbeat_at >= at(20)


def test_verify_after_the_evacuation_moved_the_run_to_verifying_reads_and_does_not_write_again(nova, clock):
    # The evacuation (another module, another HostRun) ended in phase verifying a few seconds ago.
    host_run(nova, clock, lease=40).claim()
    host_run(nova, clock, lease=40).advance('verifying')
    clock.t += 3
    nova.requests.clear()
    r = host_run(nova, clock, lease=40)
    looks = iter([[verdict(waiting=True)]] * 3 + [[verdict(ok=True)]])
    found, waited, count = r.verify(lambda: next(looks), timeout=300, interval=5)
    assert found == [verdict(ok=True)] and count == 4
    # One read proves the host is ours; the heartbeat written 3 s before is due again a quarter lease after it
    # (at 10 s), not at once.
    assert [m for m, _p, _b in nova.requests][:1] == ['GET'] and r.first_read['disabled_reason'].startswith('novaha.recovery run second verifying')
    assert len(nova.writes()) == 1 and run.parse_marker(nova.writes()[0]['disabled_reason']).heartbeat_at >= at(10)


def test_verify_writes_the_phase_when_the_heartbeat_is_older_than_a_quarter_lease(nova, clock):
    host_run(nova, clock, lease=40).claim()
    host_run(nova, clock, lease=40).advance('verifying')
    clock.t += 11
    nova.requests.clear()
    host_run(nova, clock, lease=40).verify(lambda: [verdict(ok=True)], timeout=300, interval=5)
    assert [m for m, _p, _b in nova.requests] == ['GET', 'GET', 'PUT']


def test_advance_reads_once_and_keeps_the_service_before_its_write(nova, clock):
    host_run(nova, clock).claim()
    nova.requests.clear()
    r = host_run(nova, clock)
    r.advance('isolated', forced_down=True)
    assert [m for m, _p, _b in nova.requests] == ['GET', 'PUT']
    assert r.first_read['forced_down'] is False and nova.services[HOST]['forced_down'] is True


def test_verify_gives_up_at_the_timeout_with_servers_still_waiting(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    found, waited, count = r.verify(lambda: [verdict(waiting=True)], timeout=12, interval=5)
    assert found[0]['waiting'] and waited == 12 and count == 4


def test_verify_stops_when_another_run_took_the_host(nova, clock):
    r = host_run(nova, clock, lease=40)
    r.claim()
    clock.on_sleep.append(lambda: nova.services[HOST].update(disabled_reason=marker(run_id='other1', beat=3).text()))
    with pytest.raises(run.RunError) as err:
        r.verify(lambda: [verdict(waiting=True)], timeout=300, interval=15)
    assert err.value.kind == 'lost'


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


def test_a_claim_reading_through_retrying_reads_rides_out_one_503_and_writes_once(nova, clock):
    # Found by a chaos run (10 % of requests failing): os_recovery_run's claim failed on one 503 read.
    nova.fail_next = 503
    r = host_run(run.retrying_reads(nova, clock, lease=100), clock)
    r.claim()
    assert run.parse_marker(nova.services[HOST]['disabled_reason']).run_id == 'second'
    methods = [m for m, _path, _body in nova.requests]
    assert methods[:2] == ['GET', 'GET'] and methods.count('PUT') == 1, methods


def test_a_runs_reads_retry_for_a_quarter_lease_at_most_then_name_the_error(nova, clock):
    assert run.retrying_reads(nova, clock, lease=20).budget == 5.0
    assert run.retrying_reads(nova, clock, lease=420).budget == run.READ_RETRY_BUDGET
    r = host_run(run.retrying_reads(nova, clock, lease=20), clock)
    r.claim()
    r.nova = run.retrying_reads(FailingNova(nova), clock, lease=20)
    started = clock.t
    with pytest.raises(run.RunError) as err:
        r.advance('isolated')
    assert 'HTTP 503' in err.value.msg and clock.t - started <= 5.0


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
    assert refusals == [
        'the BMC does not read power On but off - Redfish reads Off',
        'nova-compute does not report: no heartbeat in 45 s, the last one 62.0 s ago; start nova-compute on the host',
        'evacuations from it are not cleaned up yet, migrations 7 are not completed; its restarted nova-compute completes them',
    ]
    # Without a power reading the power is not judged (the wait loop uses it so).
    assert len(run.restore_refusals(now, first, waited=45)) == 2


def test_a_host_whose_compute_starts_reporting_while_watched_is_repaired(clock):
    first = reading('2025-11-21T12:00:00.000000', [dict(id=7, status='done')], 62.0)
    later = iter([first, first, reading('2025-11-21T12:00:10.000000', [dict(id=7, status='completed')])])
    assert run.wait_for_repair(first, lambda: next(later), clock, timeout=45, interval=5, power_state='on') == []
    assert clock.sleeps == [5, 5]


def test_a_host_still_dead_at_the_end_of_the_watch_is_refused_with_every_reason(clock):
    first = reading('2025-11-21T12:00:00.000000', [dict(id=7, status='done')], 62.0)
    refusals = run.wait_for_repair(first, lambda: first, clock, timeout=12, interval=5, power_state='off', power_msg='Redfish reads Off')
    assert len(refusals) == 3 and 'no heartbeat in 12 s' in refusals[1] and sum(clock.sleeps) == 12


def test_a_failed_first_reading_never_makes_a_later_heartbeat_look_new(clock):
    # A later reading that failed is one more look; the first must be a real one (the module reads it strictly).
    first = reading('2025-11-21T12:00:00.000000')
    refusals = run.wait_for_repair(first, lambda: dict(msg='HTTP 503'), clock, timeout=10, interval=5)
    assert refusals and refusals[0].startswith('nova-compute does not report')


@pytest.mark.parametrize(
    'service, marker_, override, body, refused',
    [
        (dict(status='enabled', forced_down=True), None, False, {'status': 'enabled', 'forced_down': False}, None),
        (dict(status='enabled', forced_down=False), None, False, None, None),
        (dict(status='disabled', disabled_reason='storage team'), None, False, None, 'not by novaha.recovery'),
        (dict(status='disabled', disabled_reason='storage team'), None, True, {'status': 'enabled', 'forced_down': False}, None),
        (
            dict(status='disabled', forced_down=True),
            marker(phase='done', was_status='disabled', was_reason='RMA-1'),
            False,
            {'status': 'disabled', 'forced_down': False, 'disabled_reason': 'RMA-1'},
            None,
        ),
        (dict(status='disabled', forced_down=True), marker(phase='done'), False, {'status': 'enabled', 'forced_down': False}, None),
        (dict(status='disabled', forced_down=True), marker(phase='evacuating', beat=0), True, None, 'still holds'),
    ],
)
def test_plan_restore(service, marker_, override, body, refused):
    holder = run.judge_holder(marker_, 'restore', at(10))
    plan = run.plan_restore(dict(service, host=HOST), holder, override)
    assert plan.body == body
    assert (plan.refusal is None) if refused is None else (refused in plan.refusal)


@pytest.mark.parametrize('status', [503, 502, None])
def test_a_claim_write_that_failed_transiently_is_written_again_after_a_fresh_read(nova, clock, status):
    # Found by a chaos run (10 % of requests failing): one faulted marker write stopped a recovery at its claim.
    nova.put_faults = [(status, False)]
    r = host_run(nova, clock)
    assert r.claim().kind == 'free'
    assert run.parse_marker(nova.services[HOST]['disabled_reason']).run_id == 'second'
    assert [m for m, _p, _b in nova.requests] == ['GET', 'PUT', 'GET', 'PUT', 'GET']
    assert r.took_over is None


def test_a_claim_write_whose_answer_was_lost_finds_its_own_marker_and_goes_on(nova, clock):
    nova.services[HOST].update(status='disabled', disabled_reason='RMA-4711, do not enable')
    nova.put_faults = [(None, True)]  # Nova wrote the marker; the answer never came
    r = host_run(nova, clock)
    assert r.claim().kind == 'free'  # who held the host before this run's first write: nobody
    found = run.parse_marker(nova.services[HOST]['disabled_reason'])
    assert (found.run_id, found.phase, found.was_reason) == ('second', 'claimed', 'RMA-4711, do not enable')
    assert r.took_over is None


def test_a_claim_write_refused_or_failing_too_often_is_not_sent_again_forever(nova, clock):
    nova.put_faults = [(400, False)]
    with pytest.raises(run.RunError) as err:
        host_run(nova, clock).claim()
    assert 'HTTP 400' in err.value.msg
    assert [m for m, _p, _b in nova.requests].count('PUT') == 1
    nova.requests[:] = []
    nova.put_faults = [(503, False)] * (run.CLAIM_WRITE_RETRIES + 1)
    with pytest.raises(run.RunError) as err:
        host_run(nova, clock).claim()
    assert 'HTTP 503' in err.value.msg
    assert [m for m, _p, _b in nova.requests].count('PUT') == run.CLAIM_WRITE_RETRIES + 1


def test_a_phase_write_that_failed_transiently_is_written_again_once_the_host_reads_ours(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    nova.requests[:] = []
    nova.put_faults = [(503, False), (None, True)]
    r.advance('isolated', forced_down=True)
    found = run.parse_marker(nova.services[HOST]['disabled_reason'])
    assert found.phase == 'isolated' and nova.services[HOST]['forced_down'] is True
    assert [m for m, _p, _b in nova.requests] == ['GET', 'PUT', 'GET', 'PUT', 'GET', 'PUT']


def test_a_phase_write_is_not_sent_again_when_another_run_took_the_host(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    real_request = nova.request

    def request(method, path, microversion, body=None):
        if method == 'PUT':
            # Our write fails, and meanwhile another run takes the host over.
            nova.services[HOST]['disabled_reason'] = marker(run_id='third', beat=0).text()
            nova.requests.append((method, path, body))
            raise run.NovaApiError(503, 'Service Unavailable', method=method, path=path)
        return real_request(method, path, microversion, body)

    nova.request = request
    with pytest.raises(run.RunError) as err:
        r.advance('isolated')
    assert err.value.kind == 'lost'
    assert [m for m, _p, _b in nova.requests if m == 'PUT'][-1:] == ['PUT']
    assert run.parse_marker(nova.services[HOST]['disabled_reason']).run_id == 'third'


@pytest.mark.parametrize('faults', [[(503, False)], [(None, True)], [(502, False), (None, True)]], ids=['503', 'answer-lost', '502-then-lost'])
def test_an_end_write_that_failed_transiently_is_written_again(nova, clock, faults):
    # Found by make test's chaos subset (10 % of requests failing): one 503 on the end write left the marker in phase
    # verifying, and the same command, run again, waited a whole lease before it could take the host over.
    r = host_run(nova, clock)
    r.claim()
    r.advance('verifying')
    nova.requests[:] = []
    nova.put_faults = list(faults)
    phase, before = r.end(stopped=False)
    assert phase == 'done' and run.parse_marker(before['disabled_reason']).phase == 'verifying'
    assert run.parse_marker(nova.services[HOST]['disabled_reason']).phase == 'done'
    assert [m for m, _p, _b in nova.requests] == ['GET', 'PUT'] * (len(faults) + 1)


def test_an_end_write_failing_too_often_or_refused_is_raised(nova, clock):
    r = host_run(nova, clock)
    r.claim()
    nova.put_faults = [(503, False)] * (run.CLAIM_WRITE_RETRIES + 1)
    with pytest.raises(run.RunError) as err:
        r.end(stopped=True)
    assert 'HTTP 503' in err.value.msg
    nova.put_faults = [(400, False)]
    nova.requests[:] = []
    with pytest.raises(run.RunError):
        r.end(stopped=True)
    assert [m for m, _p, _b in nova.requests].count('PUT') == 1


@pytest.mark.parametrize('faults', [[(503, False)], [(None, True)]], ids=['503', 'answer-lost'])
def test_a_release_write_that_failed_transiently_gives_the_service_back_once(nova, clock, faults):
    nova.services[HOST].update(status='disabled', disabled_reason='RMA-4711')
    r = host_run(nova, clock)
    r.claim()
    nova.requests[:] = []
    nova.put_faults = list(faults)
    released = r.release()
    assert released.declined is None
    assert (nova.services[HOST]['status'], nova.services[HOST]['disabled_reason']) == ('disabled', 'RMA-4711')
    assert [m for m, _p, _b in nova.requests].count('PUT') == (2 if faults[0][0] else 1)
