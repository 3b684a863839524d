"""Builders of the records the report decides from: os_host_evacuate server records (built by the engine's own
ServerEvacuation.record()), the registered results of the role and what the role hands the report filter.

A helper module, not a test file: the report's tests and the filters' tests import it
(``from report_records import ...``)."""

import copy

from engine_fakes import DST, RECORDED_SERVER, SRC

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions, _evacuation as ev

FINISHED = '2025-11-22T00:23:18Z'
VERIFIED = '2025-11-22T00:23:17Z'
SERVICE_BEFORE = dict(host=SRC, state='down', status='enabled', forced_down=False, disabled_reason=None)
MARKER = 'novaha.recovery: host recovery r1 since 2025-11-22T00:21:56Z (host failure)'


def server(name, host=SRC, status='ACTIVE', vm_state='active', number=1):
    body = copy.deepcopy(RECORDED_SERVER['server'])
    body.update(id='%08d-0000-4000-8000-000000000000' % number, name=name, status=status, **{'OS-EXT-SRV-ATTR:host': host, 'OS-EXT-STS:vm_state': vm_state})
    return _decisions.snapshot(body)


def record(
    name,
    number,
    outcome,
    action=_decisions.ACTION_EVACUATE,
    before_host=SRC,
    after_host=DST,
    status='ACTIVE',
    vm_state='active',
    attempts=1,
    locked_by_us=False,
    unlocked=True,
    kind=None,
):
    """An os_host_evacuate server record as the engine writes it."""
    snap = server(name, before_host, status, vm_state, number)
    decision = _decisions.Decision(action, 'why %s' % name, kind=kind, expected_status=status if status != 'PAUSED' else None)
    evac = ev.ServerEvacuation(snap, decision, SRC)
    evac.outcome = outcome
    if after_host:
        evac.after = dict(snap, host=after_host)
    evac.attempts = [dict(n=i + 1, kind=None) for i in range(attempts)]
    if attempts:
        evac.requested_at, evac.finished_at = 1763770968.0, 1763770988.6
        evac.migration = dict(id=number, status='done', source_compute=SRC, dest_compute=after_host)
    evac.locked_by_us, evac.unlocked = locked_by_us, unlocked
    return evac.record()


def recovered(name, number):
    return record(name, number, _decisions.OUTCOME_RECOVERED)


def refused_paused(number=9):
    return record(
        'paused-1',
        number,
        _decisions.OUTCOME_REFUSED,
        action=_decisions.ACTION_REFUSE,
        after_host=None,
        status='PAUSED',
        vm_state='paused',
        attempts=0,
        kind=_decisions.KIND_STATE,
    )


def moved_earlier(name, number, where=DST, action=_decisions.ACTION_NONE):
    """A server an earlier run of this recovery moved off SRC: the re-run finds it on ``where``."""
    outcome = _decisions.OUTCOME_NOTHING_TO_DO if action == _decisions.ACTION_NONE else _decisions.OUTCOME_RECOVERED
    return record(name, number, outcome, action=action, before_host=where, after_host=where if action == _decisions.ACTION_RECONCILE else None, attempts=0)


def ok(rec):
    return dict(
        id=rec['id'],
        name=rec['name'],
        host=DST,
        status=rec['expected_status'],
        task_state=None,
        expected_status=rec['expected_status'],
        ok=True,
        waiting=False,
        reason='in place',
        verified_at=VERIFIED,
    )


def result(records, **extra):
    """A registered os_host_evacuate result."""
    return dict(dict(changed=True, servers=records, skipped=[], run_id='r1', msg='host %s: done' % SRC, summary=dict(selected=len(records))), **extra)


def plan_of(records):
    """The preflight's os_host_evacuate in check mode: the same records, planned."""
    return dict(
        changed=True,
        run_id='r1',
        msg='check mode: host %s: planned' % SRC,
        servers=records,
        preconditions=[dict(name='source_down', ok=True, detail='down')],
        skipped=[],
        plan=[
            dict(
                order=i + 1,
                id=r['id'],
                name=r['name'],
                project_id=r['project_id'],
                action=r['action'],
                outcome=_decisions.OUTCOME_PLANNED if r['action'] == _decisions.ACTION_EVACUATE else r['outcome'],
                reason=r['reason'],
                status=r['before']['status'],
                expected_status=r['expected_status'],
                expected_target='the scheduler',
            )
            for i, r in enumerate(records)
        ],
        summary=dict(selected=len(records)),
    )


def run(plan=None, evacuation=None, verdicts=(), failure=None, check_mode=False, **extra):
    """What the role hands the report filter."""
    base = dict(
        host=SRC,
        run_id='r1',
        check_mode=check_mode,
        started_at='2025-11-22T00:21:56Z',
        failure=failure,
        plan=plan or plan_of([]),
        evacuation=evacuation,
        verdicts=list(verdicts),
        now=None,
        snapshot=dict(service=SERVICE_BEFORE),
        fencing=dict(fenced=True, msg='fenced', evidence=dict(method='redfish', power_state='off')),
        isolation=dict(changed=True, msg='isolated'),
        marker=MARKER,
        phases=[dict(name='preflight', started_at='2025-11-22T00:21:56Z'), dict(name='fence', started_at='2025-11-22T00:22:27Z')],
        report_started_at='2025-11-22T00:23:16Z',
        after_rollback=None,
        rollback=None,
        report_dir='/var/reports/%s-r1' % SRC,
    )
    base.update(extra)
    return base
