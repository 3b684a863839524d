# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The metrics of one host recovery run, rendered once from its report for node_exporter's textfile collector.

No Ansible imports, no clock: everything comes from the report dict of ``_report.build_report``. The text is the
Prometheus text exposition format (0.0.4), the format node_exporter's textfile collector reads from ``*.prom``
files: HELP and TYPE lines, no sample timestamps (the collector refuses them), every family a gauge (a run's file
replaces the last one of its host, so nothing here only ever goes up). The metrics and their labels are documented
in docs/docsite/rst/metrics.rst; what counts as recovered, failed or needing an operator is _report's decision, only counted here.
"""

from __future__ import annotations

import calendar
import datetime

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions, _report

PREFIX = 'novaha_recovery_'
# Every outcome a run can have, in the order of docs/docsite/rst/host_recovery_report.rst: one sample each.
OUTCOMES = (_report.RUN_RECOVERED, _report.RUN_PARTIAL, _report.RUN_FAILED, _report.RUN_ABORTED, _report.RUN_NOTHING_TO_DO, _report.RUN_PLANNED)
# The servers of a run by result: recovered, failed (selected and not recovered, whatever the reason: failed,
# refused, still in progress or pending), skipped (left out by the selection), planned (check mode).
SERVER_RESULTS = ('recovered', 'failed', 'skipped', 'planned')
FILE_NAME = 'metrics.prom'


def collector_file_name(host):
    """The name of the host's file in the textfile collector's directory (one file per host, replaced by each run)."""
    return '%s%s.prom' % (PREFIX, ''.join(c if c.isalnum() or c in '-_.' else '_' for c in str(host)))


def _epoch(text):
    if not text:
        return None
    return calendar.timegm(datetime.datetime.strptime(text, _report.TIME_FORMAT).timetuple())


def _number(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return '%d' % value
    return repr(float(value))


def _label_value(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _sample(name, labels, value):
    inner = ','.join('%s="%s"' % (key, _label_value(val)) for key, val in labels)
    return '%s%s{%s} %s' % (PREFIX, name, inner, _number(value))


def server_counts(report):
    """{result: number of servers} for SERVER_RESULTS, from the report's own decisions."""
    host = report.get('host')
    servers = report.get('servers') or []
    planned = [s for s in servers if s.get('outcome') == _decisions.OUTCOME_PLANNED]
    return dict(
        recovered=len([s for s in servers if _report.server_recovered(s, host)]),
        failed=len(_report.not_recovered(servers, host)),
        skipped=len(report.get('skipped') or []),
        planned=len(planned),
    )


def phase_seconds(report):
    """[(phase, seconds)] in the order the phases ran, a phase named twice added up (one sample per label set: a
    file with a duplicate sample is refused whole by the collector)."""
    out = {}  # type: dict
    for phase in report.get('phases') or []:
        if phase.get('seconds') is not None:
            out[phase.get('name')] = out.get(phase.get('name'), 0) + phase['seconds']
    return list(out.items())


def seconds_to_all_recovered(report):
    """Seconds from the start of the run to the moment its last server was recovered (its evacuation judged
    done, else its verification), for a run whose outcome is recovered; None for any other outcome, or when a
    server's time is not known (moved by an earlier run of the recovery)."""
    servers = report.get('servers') or []
    started = _epoch(report.get('started_at'))
    if report.get('outcome') != _report.RUN_RECOVERED or not servers or started is None:
        return None
    ends = [_epoch(s.get('finished_at') or s.get('verified_at')) for s in servers]
    if None in ends:
        return None
    return max(0, max(ends) - started)


def render_metrics(report):
    """The report of one run as node_exporter textfile-collector text: the one place the metrics are written."""
    host = report.get('host')
    by_host = (('host', host),)
    families = []

    def family(name, help_text, samples):
        samples = [s for s in samples if s[1] is not None]
        if samples:
            families.append(
                ['# HELP %s%s %s' % (PREFIX, name, help_text), '# TYPE %s%s gauge' % (PREFIX, name)]
                + [_sample(name, by_host + labels, value) for labels, value in samples]
            )

    outcome = report.get('outcome')
    family(
        'run_info',
        'The last recovery run of the host: its run id, outcome and check mode (always 1).',
        [((('run_id', report.get('run_id') or ''), ('outcome', outcome), ('check_mode', 'true' if report.get('check_mode') else 'false')), 1)],
    )
    family(
        'outcome',
        'Outcome of the last recovery run of the host: 1 for its outcome, 0 for the others.',
        [((('outcome', name),), 1 if name == outcome else 0) for name in OUTCOMES],
    )
    family(
        'needs_attention',
        'Whether the last recovery run of the host needs an operator (outcome partial, failed or aborted).',
        [((), _report.needs_attention(outcome))],
    )
    counts = server_counts(report)
    family(
        'servers',
        'Servers of the last recovery run of the host by result (failed: selected and not recovered; skipped: not selected; planned: check mode).',
        [((('result', name),), counts[name]) for name in SERVER_RESULTS],
    )
    family(
        'phase_seconds',
        'Seconds each phase of the last recovery run of the host took.',
        [((('phase', name),), seconds) for name, seconds in phase_seconds(report)],
    )
    family(
        'fencing_seconds',
        'Seconds from the power-off command to the first Off reading of the host\'s BMC in the last recovery run.',
        [((), (report.get('fencing') or {}).get('fence_seconds'))],
    )
    family(
        'time_to_all_recovered_seconds',
        'Seconds from the start of the last recovery run of the host to its last server recovered (outcome recovered only).',
        [((), seconds_to_all_recovered(report))],
    )
    started, finished = _epoch(report.get('started_at')), _epoch(report.get('finished_at'))
    family(
        'run_duration_seconds',
        'Seconds the last recovery run of the host took, from its start to its report.',
        [((), finished - started if started is not None and finished is not None else None)],
    )
    family('run_started_timestamp_seconds', 'When the last recovery run of the host started (Unix time).', [((), started)])
    family('run_finished_timestamp_seconds', 'When the last recovery run of the host wrote its report (Unix time).', [((), finished)])
    return '\n'.join(line for lines in families for line in lines) + '\n'
