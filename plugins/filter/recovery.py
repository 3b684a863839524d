# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the host_recovery role: each passes what the role registered to the one function of
module_utils/_report.py (or _run.py) that decides it. Their documentation is in the YAML file of each filter's name."""

from ansible.errors import AnsibleFilterError

from ansible_collections.novaha.recovery.plugins.module_utils import _fencing, _metrics, _report, _run
from ansible_collections.novaha.recovery.plugins.module_utils._errors import NovahaError


def _plain(value, what, kind=dict):
    """None for a value that is not there, the value itself when it has the expected type."""
    if value is None or value == '':
        return None
    if not isinstance(value, kind):
        raise AnsibleFilterError('%s must be a %s, not %s' % (what, kind.__name__, type(value).__name__))
    return value


def host_recovery_report(run, finished_at):
    return _report.build_report(_plain(run, 'the run') or {}, finished_at)


def recovery_records(plan, evacuation=None):
    return _report.recovery_records(_plain(plan, 'plan'), _plain(evacuation, 'evacuation'))


def recovery_evacuation_started(plan, evacuation=None, host=None):
    records = _report.recovery_records(_plain(plan, 'plan'), _plain(evacuation, 'evacuation'))
    return _report.evacuation_started(records, host)


def recovery_servers_to_verify(plan, evacuation=None, host=None):
    records = _report.recovery_records(_plain(plan, 'plan'), _plain(evacuation, 'evacuation'))
    return _report.servers_to_verify(records, host)


def recovery_verdicts(now, plan=None, evacuation=None, host=None, verified_at=None):
    records = _report.recovery_records(_plain(plan, 'plan'), _plain(evacuation, 'evacuation'))
    return _report.verdicts(_plain(now, 'the reading'), records, host, verified_at)


def recovery_not_recovered(verdicts, plan=None, evacuation=None, host=None):
    records = _report.recovery_records(_plain(plan, 'plan'), _plain(evacuation, 'evacuation'))
    return _report.left_behind(records, _plain(verdicts, 'the verdicts', list), host)


def recovery_rollback_record(stopped_in, plan=None, evacuation=None, host=None, restored=None, snapshot=None, service_now=None):
    records = _report.recovery_records(_plain(plan, 'plan'), _plain(evacuation, 'evacuation'))
    return _report.rollback_record(
        stopped_in,
        _report.evacuation_started(records, host),
        _plain(restored, 'restored'),
        _plain(snapshot, 'snapshot'),
        _plain(service_now, 'service_now'),
        records,
    )


def host_recovery_result(report, report_dir=None):
    return _report.host_result(_plain(report, 'the report'), report_dir or None)


def host_recovery_metrics(report):
    return _metrics.render_metrics(_plain(report, 'the report') or {})


def host_recovery_metrics_file(host):
    return _metrics.collector_file_name(host)


def host_recovery_summary(results):
    return _report.summarize_hosts(_plain(results, 'the results') or {})


def restore_refusals(now, first=None, power_state=None, power_msg=None, waited=None):
    return _run.restore_refusals(_plain(now, 'the reading'), _plain(first, 'first'), power_state or None, power_msg or None, waited)


def host_recovery_bmc(bmc_type, **settings):
    try:
        return _fencing.bmc_settings(bmc_type, **settings)
    except NovahaError as exc:
        raise AnsibleFilterError(exc.msg)
    except TypeError as exc:  # an argument the function does not take
        raise AnsibleFilterError('host_recovery_bmc: %s' % exc)


class FilterModule(object):
    """novaha.recovery's host recovery filters."""

    def filters(self):
        return dict(
            host_recovery_bmc=host_recovery_bmc,
            host_recovery_report=host_recovery_report,
            host_recovery_metrics=host_recovery_metrics,
            host_recovery_metrics_file=host_recovery_metrics_file,
            host_recovery_result=host_recovery_result,
            host_recovery_summary=host_recovery_summary,
            recovery_evacuation_started=recovery_evacuation_started,
            recovery_records=recovery_records,
            recovery_servers_to_verify=recovery_servers_to_verify,
            recovery_verdicts=recovery_verdicts,
            recovery_not_recovered=recovery_not_recovered,
            recovery_rollback_record=recovery_rollback_record,
            restore_refusals=restore_refusals,
        )
