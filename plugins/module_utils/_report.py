# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host recovery report: what one run of the host_recovery role amounts to, decided once.

No Ansible imports, no clock: the role hands over what its phases registered (plain dicts) and the time
(``finished_at``, ``verified_at``); the filter plugins of plugins/filter/recovery.py only pass them on.
The schema is documented in docs/docsite/rst/host_recovery_report.rst.

One function per decision:

- the server records of this recovery, as last read ........ ``recovery_records``
- whether a server was moved off the failed host ............ ``moved_off``
- whether evacuation started (the rollback keeps the host
  isolated instead of restoring its flags) ................... ``evacuation_started``
- which servers the verify phase watches ..................... ``servers_to_verify``
- whether a watched server is where and as it should be ..... ``verdict`` (the engine's ``judge``)
- whether a server of the report counts as recovered ......... ``server_recovered``
- the outcome of the run ..................................... ``decide_outcome``
- what the rollback did ...................................... ``rollback_record``
- whether an outcome needs an operator ....................... ``needs_attention``
- what happened to the servers of each project .............. ``project_summary``
"""

from __future__ import annotations

import datetime

from ansible_collections.novaha.recovery.plugins.module_utils._decisions import (
    ACTION_NONE,
    ACTION_RECONCILE,
    ACTION_WAIT,
    OUTCOME_IN_PROGRESS,
    OUTCOME_NOTHING_TO_DO,
    OUTCOME_PLANNED,
    OUTCOME_RECOVERED,
    judge,
)
from ansible_collections.novaha.recovery.plugins.module_utils._storage import storage_brief

SCHEMA = 'novaha.recovery/host-recovery-report'
SCHEMA_VERSION = 2
TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'

# Outcomes of a run (the report's top-level ``outcome``).
RUN_RECOVERED = 'recovered'  # every selected server verified where and as it should be
RUN_PARTIAL = 'partial'  # evacuation started, some servers recovered, some not
RUN_FAILED = 'failed'  # evacuation started, no server recovered
RUN_ABORTED = 'aborted'  # stopped before any server was moved off the host
RUN_PLANNED = 'planned'  # check mode
RUN_NOTHING_TO_DO = 'nothing_to_do'  # no server selected, or an earlier run already recovered the host; it is fenced and isolated
# What an operator need not look at; any other outcome fails the play that ran the recovery.
SETTLED = frozenset([RUN_RECOVERED, RUN_PLANNED, RUN_NOTHING_TO_DO])

REPORT_FILES = dict(json='report.json', markdown='report.md', html='report.html', snapshot='snapshot.json')


def _get(mapping, *path):
    """mapping[a][b]... or None where a level is missing or null (registered results vary by outcome)."""
    for key in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _ran(result):
    """A registered task result that ran. ``skipped`` is True for a skipped task, while os_host_evacuate
    returns under the same key the list of servers it did not select."""
    return isinstance(result, dict) and bool(result) and result.get('skipped') is not True


# ---------------------------------------------------------------------------------------------------------
# The servers of this recovery


def recovery_records(plan, evacuation):
    """The server records (os_host_evacuate's ``servers``) of this recovery, as last read.

    The evacuation's when it ran. Otherwise the run stopped before it (or had nothing selected): then only
    the preflight's records of servers an earlier run of this recovery already moved off the host or is
    moving, since they are the state of the recovery; the servers still waiting on the host were not
    evacuated by anyone and are left out, as before.
    """
    if _ran(evacuation) and evacuation.get('servers') is not None:
        return list(evacuation.get('servers') or [])
    return [r for r in (_get(plan, 'servers') or []) if r.get('action') in (ACTION_NONE, ACTION_RECONCILE, ACTION_WAIT)]


def moved_off(server, host):
    """The server is no longer on the failed host: it left during this run (``after``) or an earlier run
    of the same recovery moved it (``before`` is already elsewhere)."""
    where = [h for h in (_get(server, 'after', 'host'), _get(server, 'before', 'host')) if h]
    return bool(where) and where[0] != host


def evacuation_started(servers, host):
    """Did the recovery start moving servers off ``host``? Then the host stays isolated (forced down,
    disabled) whatever happens next: a host brought back could run a second copy of a server.

    True when this run asked Nova to evacuate a server, when a server has left the host (in this run or
    an earlier one), or when an evacuation is in flight (adopted, action ``wait``). ``servers``: report
    entries or engine records (``attempts`` is a count in the one, a list in the other).
    """
    for server in servers or []:
        if server.get('attempts') or server.get('action') == ACTION_WAIT or moved_off(server, host):
            return True
    return False


def _holds_our_lock(record):
    lock = record.get('lock') or {}
    return bool(lock.get('locked_by_us')) and not lock.get('unlocked')


def servers_to_verify(servers, host):
    """{id: expected status} of the servers the verify phase watches: every one moved off the host or on its
    way (recovered, in progress, already moved by an earlier run), never one left on the host by refusal."""
    watched = {}
    for record in servers or []:
        if record.get('outcome') in (OUTCOME_RECOVERED, OUTCOME_IN_PROGRESS) or (record.get('outcome') == OUTCOME_NOTHING_TO_DO and moved_off(record, host)):
            watched[record['id']] = record.get('expected_status')
    return watched


def verify_since(servers, watched):
    """Where the verify phase's listing of servers starts (Nova's clock, 'YYYY-MM-DDTHH:MM:SSZ'), or None when
    no watched server has a view of its own to start from.

    Nova lists with ``changes-since`` every server whose ``updated`` is at or after it, deleted ones included, and a
    server's ``updated`` never goes back: from the earliest ``updated`` the evacuation last saw of the watched servers
    (``after``), one listing shows each of them as it is now. A watched server without such a view (moved by an
    earlier run) or missing from the listing is read by its id (``_host_evacuation.read_tracked``), so the window
    only decides how many requests a look costs, never a verdict."""
    seen = []
    for record in servers or []:
        if record.get('id') in watched:
            stamp = _get(record, 'after', 'updated')
            if stamp:
                seen.append(str(stamp).replace('+00:00', 'Z'))
    return min(seen)[:19] + 'Z' if seen else None


# ---------------------------------------------------------------------------------------------------------
# Verification


def healthy_hosts(computes, failed_host):
    """Hosts a recovered server may be on: nova-compute up, not forced down, not the failed host."""
    return set(c.get('host') for c in computes or [] if c.get('state') == 'up' and not c.get('forced_down') and c.get('host') != failed_host)


def _latest_migration(migrations, server_id):
    mine = [m for m in migrations or [] if m.get('instance_uuid') == server_id]
    return max(mine, key=lambda m: m.get('id') or 0) if mine else None


def verdict(record, now, migration, healthy, host, verified_at):
    """One watched server judged now: the engine's ``judge`` (migration done, off the host, no task, its
    expected status, same ports and volumes), and a healthy host under it. ``waiting``: it may still get
    there (the evacuation is in progress), so the verify phase looks again."""
    before = record.get('snapshot') or dict(id=record.get('id'), name=record.get('name'))
    gone = now is None or now.get('deleted', False)
    judgement = judge(before, None if gone else now, migration, record.get('expected_status'), host, migration_required=False)
    on_healthy = not gone and now.get('host') in healthy
    ok = judgement.outcome == OUTCOME_RECOVERED and on_healthy
    reason = judgement.reason
    if judgement.outcome == OUTCOME_RECOVERED and not on_healthy:
        reason = '%s is %s on %s, which is not a healthy host (down, forced down or the failed one)' % (record.get('name'), now.get('status'), now.get('host'))
    return dict(
        id=record.get('id'),
        name=record.get('name') or record.get('id'),
        host=None if gone else now.get('host'),
        status='DELETED' if gone else now.get('status'),
        task_state=None if gone else now.get('task_state'),
        expected_status=record.get('expected_status'),
        ok=ok,
        waiting=judgement.outcome == OUTCOME_IN_PROGRESS,
        reason=reason,
        verified_at=verified_at,
    )


def verdicts(now, servers, host, verified_at):
    """A verdict per watched server (``servers_to_verify``) from one os_host_info reading ``now`` (its
    ``tracked`` servers, ``computes`` and ``migrations``). A reading that failed leaves each one waiting."""
    records = dict((r['id'], r) for r in servers or [])
    read = dict((s.get('id'), s) for s in (_get(now, 'tracked') or []))
    healthy = healthy_hosts(_get(now, 'computes'), host)
    out = []
    for server_id in servers_to_verify(servers, host):
        record = records[server_id]
        if server_id not in read:
            out.append(
                dict(
                    id=server_id,
                    name=record.get('name') or server_id,
                    host=None,
                    status=None,
                    task_state=None,
                    expected_status=record.get('expected_status'),
                    ok=False,
                    waiting=True,
                    reason='not read: %s' % (_get(now, 'msg') or 'no reading yet'),
                    verified_at=verified_at,
                )
            )
            continue
        migration = _latest_migration(_get(now, 'migrations'), server_id) or record.get('migration')
        out.append(verdict(record, read[server_id], migration, healthy, host, verified_at))
    return out


# ---------------------------------------------------------------------------------------------------------
# The report's server entries and the outcome


def server_entry(record, host, verified=None):
    """A server entry of the report (docs/docsite/rst/host_recovery_report.rst) from an engine record and its verdict."""
    before = record.get('before') or {}
    after = record.get('after') or {}
    timings = record.get('timings') or {}
    migration = record.get('migration') or {}
    return dict(
        id=record.get('id'),
        name=record.get('name'),
        project_id=record.get('project_id'),
        action=record.get('action'),
        outcome=record.get('outcome'),
        reason=record.get('reason'),
        kind=record.get('kind'),
        before=dict(host=before.get('host'), status=before.get('status')),
        after=dict(host=after.get('host'), status=after.get('status')),
        expected_status=record.get('expected_status'),
        migration=dict(id=migration.get('id'), status=migration.get('status')),
        attempts=len(record.get('attempts') or []),
        requested_at=timings.get('requested_at'),
        finished_at=timings.get('finished_at'),
        seconds=timings.get('seconds'),
        verified=verified.get('ok') if verified else None,
        verified_at=verified.get('verified_at') if verified else None,
        now=dict(host=verified.get('host'), status=verified.get('status')) if verified else None,
        locked_by_us=_holds_our_lock(record),
        storage=storage_brief(record.get('storage')),
        next_command=record.get('next_command'),
    )


def planned_entry(entry, host):
    """A server entry in check mode, from the plan (os_host_evacuate in check mode)."""
    return dict(
        id=entry.get('id'),
        name=entry.get('name'),
        project_id=entry.get('project_id'),
        action=entry.get('action'),
        outcome=entry.get('outcome'),
        reason=entry.get('reason'),
        kind=None,
        before=dict(host=host, status=entry.get('status')),
        after=dict(host=None, status=None),
        expected_status=entry.get('expected_status'),
        expected_target=entry.get('expected_target'),
        migration=dict(id=None, status=None),
        attempts=0,
        requested_at=None,
        finished_at=None,
        seconds=None,
        verified=None,
        verified_at=None,
        now=None,
        locked_by_us=False,
        storage=storage_brief(entry.get('storage')),
        next_command=None,
    )


def server_recovered(entry, host):
    """Recovered: off the failed host with nothing left to do (by this run or an earlier one), not judged
    otherwise by the verify phase, and no lock of ours left on it. A server still in progress or pending is
    never recovered, even when the verify phase found it in place (its evacuation did not finish: a run that
    timed out)."""
    if entry.get('outcome') not in (OUTCOME_RECOVERED, OUTCOME_NOTHING_TO_DO):
        return False
    if entry.get('verified') is False or entry.get('locked_by_us'):
        return False
    return entry.get('outcome') == OUTCOME_RECOVERED or moved_off(entry, host)


def decide_outcome(servers, host, check_mode, stopped, already_recovered=None):
    """The outcome of the run, from the state of its servers (report entries), not from what this run sent.

    ``stopped``: the failure record when the runbook stopped early, else None. ``already_recovered``: the marker
    (dict) of the earlier run that recovered the host, when the preflight found it so (``_host_evacuation.
    already_recovered``): a clean no-op, nothing to do, whatever servers that run moved.
    """
    if check_mode:
        return RUN_ABORTED if stopped else RUN_PLANNED
    if (not servers or already_recovered) and not stopped:
        return RUN_NOTHING_TO_DO
    recovered = [s for s in servers if server_recovered(s, host)]
    if servers and not stopped and len(recovered) == len(servers):
        return RUN_RECOVERED
    if not evacuation_started(servers, host):
        return RUN_ABORTED
    return RUN_PARTIAL if recovered else RUN_FAILED


def project_summary(servers, skipped, host):
    """Per project, what happened to its servers on the failed host, so that an operator can tell each project:
    one entry per project id (sorted), with ``servers`` (all of the project in the report), ``recovered``,
    ``not_recovered`` (failed, refused, in progress, pending, or not verified: ``not_recovered``), ``planned``
    (check mode), ``skipped`` (not selected or left alone), ``left_to_services`` ({service: count} of those a
    service recovers by itself) and ``attention`` (the not recovered ones: id, name, outcome, next_command).
    Project ids only: the report reads no names from Keystone."""
    projects = {}  # type: dict

    def entry(project_id):
        return projects.setdefault(
            project_id, dict(project_id=project_id, servers=0, recovered=0, not_recovered=0, planned=0, skipped=0, left_to_services={}, attention=[])
        )

    left = set(id(s) for s in not_recovered(servers, host))
    for server in servers or []:
        found = entry(server.get('project_id'))
        found['servers'] += 1
        if server_recovered(server, host):
            found['recovered'] += 1
        elif server.get('outcome') == OUTCOME_PLANNED:
            found['planned'] += 1
        if id(server) in left:
            found['not_recovered'] += 1
            found['attention'].append(
                dict(id=server.get('id'), name=server.get('name'), outcome=server.get('outcome'), next_command=server.get('next_command'))
            )
    for record in skipped or []:
        found = entry(record.get('project_id'))
        found['servers'] += 1
        found['skipped'] += 1
        if record.get('service'):
            found['left_to_services'][record['service']] = found['left_to_services'].get(record['service'], 0) + 1
    return [projects[k] for k in sorted(projects, key=lambda k: k or '')]


def not_recovered(servers, host):
    """The entries an operator has to look at (check mode plans nothing to look at)."""
    return [s for s in servers if s.get('outcome') != OUTCOME_PLANNED and not server_recovered(s, host)]


def needs_attention(outcome):
    return outcome not in SETTLED


def left_behind(servers, verdicts_, host):
    """'name: why' for each server of the recovery (records) not recovered after the verify phase."""
    judged = dict((v.get('id'), v) for v in verdicts_ or [])
    out = []
    for record in servers or []:
        seen = judged.get(record.get('id'))
        if not server_recovered(server_entry(record, host, seen), host):
            why = seen.get('reason') if seen and not seen.get('ok') else record.get('reason')
            if _holds_our_lock(record):
                why += '; it still carries the lock novaha.recovery took'
            out.append('%s (%s): %s' % (record.get('name') or record.get('id'), record.get('outcome'), why))
    return out


def _left_in_words(server):
    return '%s (%s%s)' % (server.get('name'), server.get('outcome'), ', still locked by novaha.recovery' if server.get('locked_by_us') else '')


def _reason(outcome, servers, host, stopped, plan):
    previous = _get(plan, 'already_recovered', 'run_id')
    if stopped:
        return stopped.get('msg')
    if outcome == RUN_PLANNED:
        said = _get(plan, 'msg') or 'plan made'
        if said.startswith('check mode: '):
            said = said[len('check mode: ') :]
        return 'check mode: %s; nothing was changed' % said
    kept = '%s stays forced down and disabled until restore-host.yml' % host
    if outcome == RUN_NOTHING_TO_DO and previous:
        return 'already recovered by run %s; nothing to do; %s' % (previous, kept)
    if outcome == RUN_NOTHING_TO_DO:
        return 'no server of %s selected, nothing to evacuate; %s' % (host, kept)
    verified = len([s for s in servers if s.get('verified')])
    reason = '%d of %d selected servers verified in their expected state on healthy hosts' % (verified, len(servers))
    left = not_recovered(servers, host)
    if left:
        reason += '; not recovered: %s' % ', '.join(_left_in_words(s) for s in left)
    return '%s; %s' % (reason, kept)


def _next_steps(outcome, servers, host, check_mode):
    steps = ['%s: %s' % (s.get('name'), s.get('next_command')) for s in not_recovered(servers, host) if s.get('next_command')]
    if outcome in (RUN_RECOVERED, RUN_PARTIAL, RUN_NOTHING_TO_DO):
        steps.append('after repairing %s: ansible-playbook novaha.recovery.restore_host -e restore_host=%s' % (host, host))
    elif outcome == RUN_ABORTED and not check_mode:
        steps.append('fix the cause above, then run recover-host.yml again for %s' % host)
    return steps


def _parse_time(text):
    return datetime.datetime.strptime(text, TIME_FORMAT)


def phases_of(started, report_started_at, finished_at):
    """Each phase that ran, ending where the next one starts; the report phase ends with the report."""
    steps = list(started or []) + [dict(name='report', started_at=report_started_at)]
    out = []
    for index, phase in enumerate(steps):
        end = steps[index + 1]['started_at'] if index + 1 < len(steps) else finished_at
        seconds = None
        if phase.get('started_at') and end:
            seconds = (_parse_time(end) - _parse_time(phase['started_at'])).total_seconds()
        out.append(dict(name=phase.get('name'), started_at=phase.get('started_at'), finished_at=end, seconds=seconds))
    return out


# ---------------------------------------------------------------------------------------------------------
# The report


def report_servers(run):
    """The server entries: the evacuation's records (or an earlier run's moved servers), each with its
    verdict; in check mode the plan."""
    host = run.get('host')
    plan = run.get('plan') or {}
    records = recovery_records(plan, run.get('evacuation'))
    if run.get('check_mode') and not records:
        return [planned_entry(p, host) for p in plan.get('plan') or []]
    judged = dict((v.get('id'), v) for v in run.get('verdicts') or [])
    return [server_entry(r, host, judged.get(r.get('id'))) for r in records]


def _fencing(fencing):
    evidence = _get(fencing, 'evidence') or {}
    out = dict(fenced=_get(fencing, 'fenced'), msg=_get(fencing, 'msg'))
    for key in (
        'method',
        'bmc',
        'power_state_before',
        'power_state',
        'read_at',
        'action',
        'action_sent_at',
        'fence_seconds',
        'attested',
        'error_cause',
        'level',
    ):
        out[key] = evidence.get(key)
    keys = ('level', 'method', 'bmc', 'result', 'power_state', 'action', 'error_cause', 'error')
    out['levels'] = [dict((k, lv.get(k)) for k in keys) for lv in evidence.get('levels') or [] if isinstance(lv, dict)]
    return out


def _service_after(run):
    """The service as last read: after the rollback, else by the verify phase, else as isolated."""
    for found in (_get(run, 'after_rollback', 'service'), _get(run, 'now', 'service'), _get(run, 'isolation', 'service', 'after')):
        if found:
            return found
    return None


def build_report(run, finished_at):
    """The report dict (schema version 2) of one run.

    ``run``: what the role registered, by name: host, run_id, check_mode, started_at, failure, plan (the
    preflight's os_host_evacuate in check mode), evacuation, verdicts, now (the verify phase's last reading),
    snapshot, fencing, claim (os_recovery_run state=claimed), isolation, marker, reason (the operator's words for
    the recovery), phases, report_started_at, after_rollback, rollback, report_dir.
    Missing or null entries stand for phases that did not run.
    """
    host = run.get('host')
    check_mode = bool(run.get('check_mode'))
    stopped = run.get('failure') or None
    plan = run.get('plan') or {}
    evacuation = run.get('evacuation') if _ran(run.get('evacuation')) else {}
    servers = report_servers(run)
    skipped = evacuation.get('skipped', plan.get('skipped')) or []
    outcome = decide_outcome(servers, host, check_mode, stopped, plan.get('already_recovered'))
    return dict(
        schema=SCHEMA,
        schema_version=SCHEMA_VERSION,
        run_id=run.get('run_id'),
        host=host,
        check_mode=check_mode,
        started_at=run.get('started_at'),
        finished_at=finished_at,
        outcome=outcome,
        reason=_reason(outcome, servers, host, stopped, plan),
        stopped=stopped,
        already_recovered=plan.get('already_recovered') or None,
        phases=phases_of(run.get('phases'), run.get('report_started_at'), finished_at),
        service=dict(snapshot=_get(run, 'snapshot', 'service'), after=_service_after(run)),
        fencing=_fencing(run.get('fencing')),
        isolation=dict(marker=run.get('marker'), changed=_get(run, 'isolation', 'changed'), msg=_get(run, 'isolation', 'msg'), reason=run.get('reason')),
        claim=dict(holder=_get(run, 'claim', 'holder'), took_over=_get(run, 'claim', 'took_over'), msg=_get(run, 'claim', 'msg')),
        guards=plan.get('preconditions') or [],
        evacuation=dict(
            run_id=evacuation.get('run_id', plan.get('run_id')),
            msg=evacuation.get('msg'),
            summary=evacuation.get('summary', plan.get('summary')),
            storage=evacuation.get('storage', plan.get('storage')),
        ),
        servers=servers,
        skipped=skipped,
        projects=project_summary(servers, skipped, host),
        rollback=run.get('rollback') or None,
        next_steps=_next_steps(outcome, servers, host, check_mode),
        files=dict(REPORT_FILES, directory=run.get('report_dir')),
    )


def host_result(report, report_dir=None):
    """What the play keeps of one host's run: its outcome, whether it needs an operator, its summary line."""
    line = '%s: %s (run %s) - %s' % (report['host'], report['outcome'].upper(), report['run_id'], report['reason'])
    return dict(
        host=report['host'],
        outcome=report['outcome'],
        run_id=report['run_id'],
        reason=report['reason'],
        report_dir=report_dir,
        needs_attention=needs_attention(report['outcome']),
        line=line,
    )


def summarize_hosts(results):
    """{inventory host: host_result or None} -> ``lines`` (one per host), ``needs_attention`` (the hosts an
    operator must look at) and ``msg`` naming them with their outcome. A host without a result never reached
    its report (the play stopped for it first)."""
    lines, attention, named = [], [], []
    for name, result in results.items():
        if not result:
            lines.append('%s: NO OUTCOME - the recovery stopped before its report; see the output above' % name)
            attention.append(name)
            named.append('%s (NO OUTCOME)' % name)
            continue
        lines.append('%s Report: %s' % (result['line'], result.get('report_dir') or 'not written'))
        if result.get('needs_attention'):
            attention.append(name)
            named.append('%s (%s)' % (name, result['outcome'].upper()))
    msg = (
        'every host recovered, planned or with nothing to do'
        if not attention
        else ('not recovered: %s - %d of %d hosts; see the line of each above and its report' % (', '.join(named), len(attention), len(results)))
    )
    return dict(lines=lines, needs_attention=attention, msg=msg)


# ---------------------------------------------------------------------------------------------------------
# The rollback


def flags_as_before(snapshot_service, service_now):
    """The service's forced down flag, status and disabled reason are those of the snapshot."""
    if not snapshot_service or not service_now:
        return False
    return all(service_now.get(k) == snapshot_service.get(k) for k in ('forced_down', 'status', 'disabled_reason'))


def rollback_record(stopped_in, started, restored, snapshot_service, service_now, servers):
    """What the rollback did, in the report's words. ``stopped_in``: the phase the run stopped in;
    ``started``: ``evacuation_started``; ``restored``: the registered restore task (may have been skipped);
    ``servers``: the records of this recovery (``recovery_records``)."""
    restored = restored if _ran(restored) else {}
    as_before = flags_as_before(snapshot_service, service_now)
    if started:
        action = 'host kept isolated (forced down, disabled): evacuations had started; see the servers below'
    elif restored.get('changed'):
        action = 'service flags restored from the snapshot (forced down, status, disabled reason)'
    elif stopped_in in ('preflight', 'fence') or as_before:
        action = 'nothing to restore: this run stopped before it changed the service flags'
    else:
        action = 'service flags left as they are: %s' % (restored.get('msg') or 'rollback disabled')
    return dict(
        performed=bool(restored.get('changed')),
        evacuation_started=bool(started),
        action=action,
        service_before=snapshot_service or None,
        service_after=service_now or None,
        flags_as_before=as_before,
        locked_by_us=[r.get('id') for r in servers or [] if _holds_our_lock(r)],
    )
