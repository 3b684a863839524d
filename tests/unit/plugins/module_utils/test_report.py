"""Unit tests of the host recovery report: the outcome of a run, decided once from the state of its servers,
the verify verdict (the engine's judge), evacuation started (shared by the rollback and the report).

Records are what os_host_evacuate returns: built by the engine's own ServerEvacuation.record() (report_records.py).
"""

import pytest
from engine_fakes import DST, OTHER, SRC
from report_records import (
    FINISHED,
    MARKER,
    SERVICE_BEFORE,
    VERIFIED,
    moved_earlier,
    ok,
    plan_of,
    record,
    recovered,
    refused_paused,
    result,
    run,
)

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions, _report as rp

STOPPED_IN_VERIFY = dict(phase='verify', task='Verify - stop when servers were not recovered', msg='1 server(s) of node-1 not recovered: paused-1')


# ---------------------------------------------------------------------------------------------------------
# Every outcome


def test_every_server_verified_is_recovered():
    records = [recovered('web-1', 1), recovered('web-2', 2)]
    report = rp.build_report(run(plan_of(records), result(records), [ok(r) for r in records]), FINISHED)
    assert report['outcome'] == 'recovered' and report['schema_version'] == 2
    assert report['reason'].startswith('2 of 2 selected servers verified')
    assert [s['verified'] for s in report['servers']] == [True, True]
    assert report['next_steps'] == ['after repairing node-1: ansible-playbook novaha.recovery.restore_host -e restore_host=node-1']
    assert not rp.needs_attention(report['outcome'])


def test_a_refused_paused_server_makes_the_run_partial():
    records = [recovered('web-1', 1), recovered('web-2', 2), refused_paused()]
    report = rp.build_report(run(plan_of(records), result(records), [ok(r) for r in records[:2]], failure=STOPPED_IN_VERIFY), FINISHED)
    assert report['outcome'] == 'partial' and rp.needs_attention('partial')
    assert report['reason'] == STOPPED_IN_VERIFY['msg']
    assert report['next_steps'][0].startswith('paused-1: openstack server set --state error')
    assert report['next_steps'][-1].startswith('after repairing node-1')


def test_evacuations_that_all_failed_make_the_run_failed():
    records = [record('web-1', 1, _decisions.OUTCOME_FAILED, after_host=SRC, kind=_decisions.KIND_NO_VALID_HOST)]
    report = rp.build_report(run(plan_of(records), result(records), failure=dict(phase='verify', task='Verify - stop', msg='web-1 failed')), FINISHED)
    assert report['outcome'] == 'failed'
    assert report['next_steps'] == ['web-1: ' + records[0]['next_command']]


def test_stopped_before_anything_moved_is_aborted():
    records = [recovered('web-1', 1)]
    failure = dict(phase='fence', task='Fence - stop', msg='node-1 is not proven fenced')
    report = rp.build_report(run(plan_of([dict(r, outcome=_decisions.OUTCOME_PLANNED, attempts=[], after=None) for r in records]), failure=failure), FINISHED)
    assert report['outcome'] == 'aborted' and report['servers'] == []
    assert report['reason'] == 'node-1 is not proven fenced'
    assert report['next_steps'] == ['fix the cause above, then run recover-host.yml again for node-1']


def test_check_mode_is_planned_with_the_plan_as_servers():
    records = [dict(recovered('web-1', 1), outcome=_decisions.OUTCOME_PLANNED, attempts=[], after=None)]
    report = rp.build_report(run(plan_of(records), dict(skipped=True, changed=False), check_mode=True), FINISHED)
    assert report['outcome'] == 'planned' and report['check_mode'] is True
    (entry,) = report['servers']
    assert entry['outcome'] == 'planned' and entry['expected_target'] == 'the scheduler'
    assert entry['before'] == dict(host=SRC, status='ACTIVE')
    assert report['reason'] == 'check mode: host node-1: planned; nothing was changed'
    failure = dict(phase='fence', task='t', msg='check mode: not fenced')
    assert rp.build_report(run(plan_of(records), check_mode=True, failure=failure), FINISHED)['outcome'] == 'aborted'


def test_no_server_selected_is_nothing_to_do_and_the_host_stays_isolated():
    report = rp.build_report(run(plan_of([]), dict(skipped=True, changed=False)), FINISHED)
    assert report['outcome'] == 'nothing_to_do' and report['servers'] == []
    assert 'nothing to evacuate' in report['reason'] and 'stays forced down and disabled' in report['reason']
    assert report['next_steps'][-1].startswith('after repairing node-1')
    assert not rp.needs_attention('nothing_to_do')


# ---------------------------------------------------------------------------------------------------------
# The state decides, not what this run sent


def test_the_rerun_over_the_same_state_has_the_same_outcome():
    first = [recovered('web-1', 1), recovered('web-2', 2), refused_paused()]
    first_report = rp.build_report(run(plan_of(first), result(first), [ok(r) for r in first[:2]], failure=STOPPED_IN_VERIFY), FINISHED)
    # The re-run: web-1 and web-2 are on DST already (nothing new to evacuate), paused-1 is still refused.
    again = [moved_earlier('web-1', 1), moved_earlier('web-2', 2, where=OTHER), refused_paused()]
    assert not any(r['attempts'] for r in again)
    assert rp.servers_to_verify(again, SRC) == {again[0]['id']: 'ACTIVE', again[1]['id']: 'ACTIVE'}
    rerun_report = rp.build_report(run(plan_of(again), result(again, changed=False), [ok(r) for r in again[:2]], failure=STOPPED_IN_VERIFY), FINISHED)
    assert first_report['outcome'] == rerun_report['outcome'] == 'partial'
    assert rp.evacuation_started(again, SRC) and rp.evacuation_started(first, SRC)


def test_a_rerun_that_finishes_what_an_earlier_run_moved_is_recovered():
    again = [moved_earlier('web-1', 1, action=_decisions.ACTION_RECONCILE), moved_earlier('web-2', 2)]
    report = rp.build_report(run(plan_of(again), result(again), [ok(r) for r in again]), FINISHED)
    assert report['outcome'] == 'recovered'


def test_a_rerun_stopped_at_the_fence_keeps_the_host_isolated_for_the_servers_moved_earlier():
    # The evacuation did not run; the preflight's records still show what an earlier run moved.
    earlier = [moved_earlier('web-1', 1), dict(refused_paused(), outcome=_decisions.OUTCOME_REFUSED)]
    plan = plan_of(earlier)
    assert rp.evacuation_started(rp.recovery_records(plan, {}), SRC)
    failure = dict(phase='fence', task='Fence - stop', msg='node-1 is not proven fenced')
    report = rp.build_report(run(plan, failure=failure), FINISHED)
    assert [s['name'] for s in report['servers']] == ['web-1']
    assert report['outcome'] == 'partial'
    record_ = rp.rollback_record('fence', True, {}, SERVICE_BEFORE, dict(SERVICE_BEFORE, forced_down=True), earlier)
    assert 'kept isolated' in record_['action'] and record_['evacuation_started'] is True


def test_a_fresh_host_stopped_at_the_fence_has_started_nothing():
    planned = [dict(recovered('web-1', 1), outcome=_decisions.OUTCOME_PLANNED, attempts=[], after=None)]
    assert not rp.evacuation_started(rp.recovery_records(plan_of(planned), {}), SRC)
    assert not rp.evacuation_started(rp.recovery_records(plan_of(planned), dict(skipped=True)), SRC)


def test_an_evacuation_in_flight_counts_as_started():
    waiting = record('web-1', 1, _decisions.OUTCOME_PLANNED, action=_decisions.ACTION_WAIT, after_host=None, attempts=0)
    assert rp.evacuation_started([waiting], SRC)


# ---------------------------------------------------------------------------------------------------------
# A run that timed out


def test_a_timed_out_run_is_never_recovered_while_a_server_is_in_progress():
    records = [recovered('web-1', 1), record('web-2', 2, _decisions.OUTCOME_IN_PROGRESS, after_host=SRC, unlocked=False, locked_by_us=True)]
    # Even when the verify phase found web-2 in place meanwhile and nothing stopped the run.
    report = rp.build_report(run(plan_of(records), result(records), [ok(r) for r in records]), FINISHED)
    assert report['outcome'] == 'partial'
    assert 'web-2 (in_progress, still locked by novaha.recovery)' in report['reason']
    assert report['servers'][1]['locked_by_us'] is True


def test_a_pending_server_is_never_recovered():
    records = [recovered('web-1', 1), record('web-2', 2, _decisions.OUTCOME_PENDING, after_host=None, attempts=0)]
    report = rp.build_report(run(plan_of(records), result(records), [ok(records[0])]), FINISHED)
    assert report['outcome'] == 'partial'


def test_a_recovered_server_still_carrying_our_lock_is_not_recovered():
    records = [record('web-1', 1, _decisions.OUTCOME_RECOVERED, locked_by_us=True, unlocked=False)]
    report = rp.build_report(run(plan_of(records), result(records), [ok(records[0])]), FINISHED)
    assert report['outcome'] == 'failed'  # its only server is not recovered
    left = rp.left_behind(records, [ok(records[0])], SRC)
    assert left and 'lock novaha.recovery took' in left[0]
    assert rp.rollback_record('verify', True, {}, None, None, records)['locked_by_us'] == [records[0]['id']]


def test_a_server_the_verify_phase_found_elsewhere_is_not_recovered():
    records = [recovered('web-1', 1), recovered('web-2', 2)]
    verdicts = [ok(records[0]), dict(ok(records[1]), ok=False, reason='web-2 is SHUTOFF')]
    report = rp.build_report(run(plan_of(records), result(records), verdicts), FINISHED)
    assert report['outcome'] == 'partial' and report['servers'][1]['verified'] is False
    assert rp.left_behind(records, verdicts, SRC) == ['web-2 (recovered): web-2 is SHUTOFF']


# ---------------------------------------------------------------------------------------------------------
# Verification: the engine's judge


def computes(*down):
    return [dict(host=h, state='down' if h in down else 'up', forced_down=h in down) for h in (SRC, DST, OTHER)]


def test_verdict_is_the_engines_judgement_on_a_healthy_host():
    rec = recovered('web-1', 1)
    now = dict(rec['snapshot'], host=DST)
    (verdict,) = rp.verdicts(dict(tracked=[now], computes=computes(SRC), migrations=[]), [rec], SRC, VERIFIED)
    assert verdict['ok'] and not verdict['waiting'] and verdict['host'] == DST and verdict['verified_at'] == VERIFIED
    # The same server on a host forced down since is not verified.
    (verdict,) = rp.verdicts(dict(tracked=[now], computes=computes(SRC, DST), migrations=[]), [rec], SRC, VERIFIED)
    assert not verdict['ok'] and not verdict['waiting'] and 'not a healthy host' in verdict['reason']


def test_verdict_waits_for_a_migration_in_progress_and_reads_the_latest_one():
    rec = record('web-1', 1, _decisions.OUTCOME_IN_PROGRESS, after_host=SRC)
    now = dict(rec['snapshot'], host=DST, task_state='rebuilding', status='REBUILD')
    reading = dict(tracked=[now], computes=computes(SRC), migrations=[dict(id=1, instance_uuid=rec['id'], status='pre-migrating')])
    (verdict,) = rp.verdicts(reading, [rec], SRC, VERIFIED)
    assert verdict['waiting'] and not verdict['ok']
    reading = dict(
        tracked=[dict(now, task_state=None, status='ACTIVE')],
        computes=computes(SRC),
        migrations=[dict(id=1, instance_uuid=rec['id'], status='failed'), dict(id=2, instance_uuid=rec['id'], status='done')],
    )
    (verdict,) = rp.verdicts(reading, [rec], SRC, VERIFIED)
    assert verdict['ok']


def test_verdict_of_a_deleted_server_and_of_a_failed_reading():
    rec = recovered('web-1', 1)
    (verdict,) = rp.verdicts(dict(tracked=[dict(id=rec['id'], deleted=True)], computes=computes(SRC)), [rec], SRC, VERIFIED)
    assert verdict['status'] == 'DELETED' and not verdict['ok'] and not verdict['waiting']
    (verdict,) = rp.verdicts(dict(failed=True, msg='Keystone unreachable'), [rec], SRC, VERIFIED)
    assert verdict['waiting'] and 'Keystone unreachable' in verdict['reason']


def test_verify_watches_what_left_the_host_never_what_was_refused():
    records = [recovered('web-1', 1), record('web-2', 2, _decisions.OUTCOME_IN_PROGRESS, after_host=SRC), refused_paused(), moved_earlier('web-3', 3)]
    assert list(rp.servers_to_verify(records, SRC)) == [records[0]['id'], records[1]['id'], records[3]['id']]


# ---------------------------------------------------------------------------------------------------------
# The report as documented


def test_an_evacuation_that_left_servers_unselected_is_still_the_evacuation():
    # os_host_evacuate returns the servers it did not select under "skipped", a list.
    records = [recovered('web-1', 1)]
    evacuation = result(records, skipped=[dict(id='x', name='db-1', reason='exclude.names')])
    report = rp.build_report(run(plan_of(records), evacuation, [ok(records[0])]), FINISHED)
    assert report['outcome'] == 'recovered' and [s['name'] for s in report['servers']] == ['web-1']
    assert report['skipped'][0]['name'] == 'db-1'


def test_the_report_keeps_every_field_of_the_schema():
    records = [recovered('web-1', 1)]
    report = rp.build_report(run(plan_of(records), result(records), [ok(records[0])]), FINISHED)
    assert set(report) == {
        'schema',
        'schema_version',
        'run_id',
        'host',
        'check_mode',
        'started_at',
        'finished_at',
        'outcome',
        'already_recovered',
        'reason',
        'stopped',
        'phases',
        'service',
        'fencing',
        'claim',
        'isolation',
        'guards',
        'evacuation',
        'servers',
        'skipped',
        'projects',
        'rollback',
        'next_steps',
        'files',
    }
    assert set(report['claim']) == {'holder', 'took_over', 'msg'} and set(report['isolation']) == {'marker', 'changed', 'msg', 'reason'}
    assert set(report['servers'][0]) >= {
        'id',
        'name',
        'project_id',
        'action',
        'outcome',
        'reason',
        'kind',
        'before',
        'after',
        'expected_status',
        'migration',
        'attempts',
        'requested_at',
        'finished_at',
        'seconds',
        'verified',
        'verified_at',
        'now',
        'next_command',
    }
    assert report['isolation']['marker'] == MARKER
    assert report['fencing']['method'] == 'redfish' and report['fencing']['error_cause'] is None
    assert report['files'] == dict(directory='/var/reports/node-1-r1', json='report.json', markdown='report.md', html='report.html', snapshot='snapshot.json')
    assert [(p['name'], p['seconds']) for p in report['phases']] == [('preflight', 31.0), ('fence', 49.0), ('report', 2.0)]
    assert report['phases'][-1]['finished_at'] == FINISHED
    assert report['service'] == dict(snapshot=SERVICE_BEFORE, after=None)


def test_the_service_after_is_the_last_one_read():
    after = dict(SERVICE_BEFORE, forced_down=True, status='disabled')
    isolated = dict(changed=True, service=dict(after=dict(after, disabled_reason=MARKER)))
    assert rp.build_report(run(isolation=isolated), FINISHED)['service']['after']['disabled_reason'] == MARKER
    assert rp.build_report(run(isolation=isolated, after_rollback=dict(service=SERVICE_BEFORE)), FINISHED)['service']['after'] == SERVICE_BEFORE


# ---------------------------------------------------------------------------------------------------------
# Rollback and the summary of several hosts


@pytest.mark.parametrize(
    'stopped_in,restored,now,words',
    [
        ('isolate', dict(changed=True), SERVICE_BEFORE, 'service flags restored from the snapshot'),
        ('fence', dict(skipped=True), SERVICE_BEFORE, 'nothing to restore'),
        (
            'isolate',
            dict(changed=False, msg='the disabled reason is not ours'),
            dict(SERVICE_BEFORE, status='disabled'),
            'service flags left as they are: the disabled reason is not ours',
        ),
    ],
)
def test_rollback_before_any_evacuation(stopped_in, restored, now, words):
    done = rp.rollback_record(stopped_in, False, restored, SERVICE_BEFORE, now, [])
    assert done['action'].startswith(words) and done['evacuation_started'] is False
    assert done['flags_as_before'] == (now == SERVICE_BEFORE)
    assert done['performed'] == bool(restored.get('changed'))


def test_summary_names_every_host_not_recovered():
    def line(host, outcome):
        report = dict(host=host, outcome=outcome, run_id='r-' + host, reason='because')
        return rp.host_result(report, '/r/' + host)

    summary = rp.summarize_hosts(
        {'node-28': line('node-28', 'partial'), 'node-31': line('node-31', 'recovered'), 'node-40': None, 'node-41': line('node-41', 'nothing_to_do')}
    )
    assert summary['needs_attention'] == ['node-28', 'node-40']
    assert summary['lines'][0] == 'node-28: PARTIAL (run r-node-28) - because Report: /r/node-28'
    assert summary['lines'][2].startswith('node-40: NO OUTCOME')
    assert summary['msg'].startswith('not recovered: node-28 (PARTIAL), node-40 (NO OUTCOME) - 2 of 4 hosts')
    assert rp.summarize_hosts({'node-31': line('node-31', 'recovered')})['needs_attention'] == []


# ---------------------------------------------------------------------------------------------------------
# Per project


def in_project(rec, project_id):
    return dict(rec, project_id=project_id)


def test_each_project_is_told_what_happened_to_its_servers():
    records = [in_project(recovered('web-1', 1), 'p-a'), in_project(recovered('web-2', 2), 'p-b'), in_project(refused_paused(), 'p-b')]
    skipped = [
        dict(
            id='amp',
            name='amphora-1',
            project_id='svc',
            status='ACTIVE',
            kind='recovered_by_service',
            service='octavia',
            reason='left alone: octavia recovers it by itself',
            next_command='x',
        ),
        dict(id='db', name='db-1', project_id='p-a', status='ACTIVE', reason='excluded: exclude.names'),
    ]
    report = rp.build_report(run(plan_of(records), result(records, skipped=skipped), [ok(r) for r in records[:2]], failure=STOPPED_IN_VERIFY), FINISHED)
    projects = dict((p['project_id'], p) for p in report['projects'])
    assert [p['project_id'] for p in report['projects']] == ['p-a', 'p-b', 'svc']
    assert projects['p-a'] == dict(project_id='p-a', servers=2, recovered=1, not_recovered=0, planned=0, skipped=1, left_to_services={}, attention=[])
    assert (projects['p-b']['servers'], projects['p-b']['recovered'], projects['p-b']['not_recovered']) == (2, 1, 1)
    assert projects['p-b']['attention'] == [dict(id=records[2]['id'], name='paused-1', outcome='refused', next_command=records[2]['next_command'])]
    assert projects['svc']['left_to_services'] == {'octavia': 1} and projects['svc']['skipped'] == 1
    assert sum(p['servers'] for p in report['projects']) == len(report['servers']) + len(report['skipped'])


def test_a_server_the_verify_phase_found_wrong_is_not_recovered_for_its_project():
    records = [recovered('web-1', 1)]
    wrong = dict(ok(records[0]), ok=False, reason='web-1 is ERROR on node-2')
    report = rp.build_report(run(plan_of(records), result(records), [wrong]), FINISHED)
    (project,) = report['projects']
    assert (project['recovered'], project['not_recovered']) == (0, 1)
    assert project['attention'][0]['name'] == 'web-1'


def test_check_mode_counts_each_project_planned():
    records = [recovered('web-1', 1)]
    report = rp.build_report(run(plan_of(records), check_mode=True), FINISHED)
    (project,) = report['projects']
    assert (project['planned'], project['recovered'], project['not_recovered']) == (1, 0, 0)


def test_a_host_an_earlier_run_recovered_is_a_clean_no_op_that_says_so():
    records = [moved_earlier('web-1', 1), moved_earlier('web-2', 2)]
    plan = dict(plan_of(records), already_recovered=dict(run_id='first1', phase='done'), msg='host %s: already recovered by run first1; nothing to do' % SRC)
    report = rp.build_report(run(plan), FINISHED)
    assert report['outcome'] == rp.RUN_NOTHING_TO_DO and not rp.needs_attention(report['outcome'])
    assert report['reason'].startswith('already recovered by run first1; nothing to do; ')
    assert report['already_recovered']['run_id'] == 'first1'
    assert [s['name'] for s in report['servers']] == ['web-1', 'web-2']
    # Without that run's marker the same servers are a recovery this run verified: the outcome is not a no-op.
    assert rp.build_report(run(plan_of(records)), FINISHED)['outcome'] == rp.RUN_RECOVERED
    # A run that stopped is never a no-op.
    stopped = rp.build_report(run(plan, failure=dict(phase='preflight', msg='boom')), FINISHED)
    assert stopped['outcome'] != rp.RUN_NOTHING_TO_DO and stopped['already_recovered'] is not None
