"""The engine under a failing compute API: outages ridden out, lost answers checked before anything is sent again,
an outage that lasts ends the run with every server reported, the failed host powering back on, missed changes.

FakeNova.outage() fails requests for a window of the fake clock (engine_fakes.py).
"""

import datetime

import pytest

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions, _evacuation as ev, _nova


def run(nova, clock, count=10, max_parallel=4, timeout=900, outage_timeout=120, power_check=None, delay=3):
    ids = [nova.add_server('web-%02d' % i) for i in range(count)]
    for sid in ids:
        nova.plans[sid] = [dict(delay=delay)]
    engine = ev.Engine(nova, clock)
    plans = [engine.plan(sid, expected_source_host='node-1') for sid in ids]
    engine.run(plans, timeout=timeout, poll_interval=2, max_parallel=max_parallel, outage_timeout=outage_timeout, power_check=power_check)
    return engine, [p.record() for p in plans]


def migrations_of(nova, sid):
    return [m for m in nova.migrations if m['instance_uuid'] == sid]


def posts_between(nova, start, end):
    return [c for c in nova.failed_calls if c[1] == 'POST' and start <= c[0] < end]


@pytest.mark.parametrize('status', [503, 502, 500, None])
def test_a_30_second_outage_after_the_first_evacuations_is_ridden_out(nova, clock, status):
    t0 = clock.t
    rule = nova.outage(start_in=4, seconds=30, status=status)
    engine, records = run(nova, clock, count=12, max_parallel=4)
    assert rule['hits'] > 0, 'the outage never met a request'
    assert [r['outcome'] for r in records] == [_decisions.OUTCOME_RECOVERED] * 12, [r['reason'] for r in records]
    for r in records:
        assert len(migrations_of(nova, r['id'])) == 1, r['name']  # exactly one evacuation each
        assert not nova.servers[r['id']]['locked']  # no lock of ours left
    assert engine.interrupted is None and engine.outage.count >= 1
    # The window paused: while the API failed, actions were tried at a backoff, not one per pending server.
    assert len(posts_between(nova, t0 + 4, t0 + 34)) <= 8


def test_an_outage_longer_than_outage_timeout_ends_the_run_with_every_server_reported(nova, clock):
    t0 = clock.t
    nova.outage(start_in=4, seconds=10000, status=503)
    engine, records = run(nova, clock, count=12, max_parallel=4, outage_timeout=60)
    assert engine.interrupted and 'compute API failed for' in engine.interrupted
    outcomes = set(r['outcome'] for r in records)
    assert _decisions.OUTCOME_FAILED not in outcomes  # nothing is called failed for an outage
    assert outcomes <= {_decisions.OUTCOME_IN_PROGRESS, _decisions.OUTCOME_PENDING, _decisions.OUTCOME_RECOVERED}
    unfinished = [r for r in records if r['outcome'] != _decisions.OUTCOME_RECOVERED]
    assert unfinished and all(r['kind'] == _decisions.KIND_API_OUTAGE for r in unfinished)
    assert all('Re-run once the API answers' in r['reason'] for r in unfinished)
    assert all(r['next_command'] for r in unfinished)
    assert all(len(migrations_of(nova, r['id'])) <= 1 for r in records)
    # Bounded: the run ended about outage_timeout after the outage began, not at the run's timeout.
    assert clock.t - (t0 + 4) < 60 + 40


def test_a_lost_answer_to_an_evacuation_is_adopted_never_sent_again(nova, clock):
    sid = nova.add_server('web-1')
    nova.outage(start_in=0, seconds=1, status=None, method='POST', path='/action$', after_processing=True)
    engine = ev.Engine(nova, clock)
    plan = engine.plan(sid, lock=False)
    engine.run([plan], poll_interval=2)
    rec = plan.record()
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert len(migrations_of(nova, sid)) == 1
    assert [a for a, _m, _b in nova.actions(sid)].count('evacuate') == 1


def test_a_lock_whose_answer_was_lost_is_sent_again_and_removed_at_the_end(nova, clock):
    sid = nova.add_server('web-1')
    nova.outage(start_in=0, seconds=1, status=None, method='POST', path='/action$', after_processing=True)
    engine = ev.Engine(nova, clock)
    plan = engine.plan(sid)
    engine.run([plan], poll_interval=2)
    rec = plan.record()
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert not nova.servers[sid]['locked'] and rec['lock']['unlocked']
    assert len(migrations_of(nova, sid)) == 1


def test_a_server_whose_requests_keep_failing_alone_is_failed_and_the_others_go_on(nova, clock):
    ids = [nova.add_server('web-%d' % i) for i in range(4)]
    nova.outage(start_in=0, seconds=10000, status=500, method='POST', path='^/servers/%s/action$' % ids[0])
    engine = ev.Engine(nova, clock)
    plans = [engine.plan(sid) for sid in ids]
    engine.run(plans, poll_interval=2, max_parallel=2)
    records = [p.record() for p in plans]
    assert records[0]['outcome'] == _decisions.OUTCOME_FAILED and 'HTTP 500' in records[0]['reason']
    assert [r['outcome'] for r in records[1:]] == [_decisions.OUTCOME_RECOVERED] * 3
    assert engine.interrupted is None


def test_a_host_that_reads_on_again_stops_new_evacuations_at_once(nova, clock):
    readings = iter([None, None])  # off twice, then on

    def power_check():
        return next(readings, 'power On (On)')

    engine, records = run(nova, clock, count=10, max_parallel=2, power_check=power_check)
    started = [r for r in records if r['outcome'] == _decisions.OUTCOME_RECOVERED]
    stopped = [r for r in records if r['kind'] == _decisions.KIND_POWERED_ON]
    assert engine.stopped == 'power On (On)'
    assert started and stopped and len(started) + len(stopped) == 10
    assert all(r['outcome'] == _decisions.OUTCOME_PENDING and not migrations_of(nova, r['id']) for r in stopped)
    assert all('reads power On again' in r['reason'] and r['next_command'] for r in stopped)


def test_a_bmc_that_cannot_be_read_again_is_noted_and_evacuations_go_on(nova, clock):
    def power_check():
        raise RuntimeError('BMC unreachable')

    engine, records = run(nova, clock, count=3, max_parallel=1, power_check=power_check)
    assert [r['outcome'] for r in records] == [_decisions.OUTCOME_RECOVERED] * 3
    assert engine.power_warnings and 'BMC unreachable' in engine.power_warnings[0]


def test_a_change_missed_by_changes_since_is_seen_by_the_next_full_look(nova, clock):
    sid = nova.add_server('web-1')
    nova.plans[sid] = [dict(delay=20)]
    engine = ev.Engine(nova, clock)
    plan = engine.plan(sid)
    real_set = nova._set

    def late_commit(server_id, **fields):
        real_set(server_id, **fields)
        if fields.get('host'):
            # The move was committed with an old timestamp (a slow commit): changes-since of later polls skips it.
            body = nova.servers[server_id]
            body['_updated_t'] -= 12
            body['updated'] = datetime.datetime.fromtimestamp(body['_updated_t'], datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')

    nova._set = late_commit
    engine.run([plan], poll_interval=2, timeout=600)
    rec = plan.record()
    assert rec['outcome'] == _decisions.OUTCOME_RECOVERED, rec['reason']
    assert rec['timings']['seconds'] < 20 + 5 * 2 * 2  # within FULL_EVERY polls of the move, not the timeout


def test_reads_are_sent_again_through_an_outage_and_actions_are_not(clock):
    calls = []

    class Flaky(object):
        last_date = None

        def microversion_range(self):
            return (2, 1), (2, 96), None

        def request(self, method, path, microversion, body=None):
            calls.append((method, clock.t))
            if len(calls) <= 3:
                raise _nova.NovaApiError(503, 'Service Unavailable', method=method, path=path)
            return _nova.Response(200, {}, request_id='req-1')

    reads = _nova.RetryingReads(Flaky(), clock, budget=30)
    assert reads.request('GET', '/servers', (2, 96)).status == 200
    assert len(calls) == 4 and len(reads.retried) == 3
    calls[:] = []
    with pytest.raises(_nova.NovaApiError):
        reads.request('POST', '/servers/x/action', (2, 1), {'unlock': None})
    assert len(calls) == 1


def test_reads_give_up_after_their_budget_with_the_last_error(clock):
    class Down(object):
        last_date = None

        def request(self, method, path, microversion, body=None):
            raise _nova.NovaApiError(None, 'no answer', method=method, path=path)

    start = clock.t
    with pytest.raises(_nova.NovaApiError):
        _nova.RetryingReads(Down(), clock, budget=20).request('GET', '/x', (2, 1))
    assert 10 <= clock.t - start <= 20


def test_backoff_starts_at_base_doubles_and_stops_at_its_cap():
    assert [_nova.backoff(n, cap=8.0) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert [_nova.backoff(n, cap=16) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    assert [_nova.backoff(n, cap=5, base=0.5) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert _nova.backoff(0, cap=0.25) == 0.25  # the cap wins even over base
    assert _nova.backoff(10**6, cap=float('inf')) == 2.0**16  # doubles 16 times at most, never overflows


@pytest.mark.parametrize(
    'status,expected', [(None, True), (500, True), (502, True), (503, True), (504, True), (400, False), (401, False), (403, False), (404, False), (409, False)]
)
def test_which_errors_are_transient(status, expected):
    assert _nova.transient(_nova.NovaApiError(status, 'x')) is expected


def test_a_keystone_failure_while_renewing_the_token_is_an_api_error_of_the_request():
    ksa_exc = pytest.importorskip('keystoneauth1.exceptions')

    class Compute(object):
        def __init__(self, exc):
            self.exc = exc

        def request(self, *args, **kwargs):
            raise self.exc

    class Conn(object):
        def __init__(self, exc):
            self.compute = Compute(exc)

    unavailable = ksa_exc.http.ServiceUnavailable(http_status=503, message='keystone down')
    with pytest.raises(_nova.NovaApiError) as caught:
        _nova.SdkNova(Conn(unavailable)).request('GET', '/servers/detail', (2, 96))
    assert _nova.transient(caught.value) and 'Keystone' in caught.value.message
    refused = ksa_exc.http.Unauthorized(http_status=401, message='The request you have made requires authentication.')
    with pytest.raises(_nova.NovaApiError) as caught:
        _nova.SdkNova(Conn(refused)).request('GET', '/servers/detail', (2, 96))
    assert not _nova.transient(caught.value) and caught.value.status_code == 401
