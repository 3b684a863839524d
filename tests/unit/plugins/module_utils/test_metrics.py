"""Unit tests of the run's metrics (module_utils/_metrics.py): rendered from reports built by the report's own
build_report over engine records, read back sample by sample, and checked by `promtool check metrics` (the
Prometheus tool that lints the text node_exporter's textfile collector reads)."""

import re
import shutil
import subprocess

import pytest
from engine_fakes import SRC
from report_records import FINISHED, ok, plan_of, record, recovered, refused_paused, result, run

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions, _metrics as mt, _report as rp

SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>.*)\} (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
STOPPED_IN_VERIFY = dict(phase='verify', task='Verify - stop', msg='1 server(s) of node-1 not recovered: paused-1')
PROMTOOL = shutil.which('promtool')
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason='promtool not installed (Debian package prometheus; hack/install.sh installs it)')


def samples(text):
    """{(name, frozenset of (label, value)): float} of every sample line; HELP and TYPE checked on the way."""
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith('# TYPE '):
            typed.add(line.split()[2])
            continue
        if line.startswith('#'):
            continue
        match = SAMPLE.match(line)
        assert match, line
        assert match['name'] in typed, 'sample before its TYPE line: %s' % line
        key = (match['name'], frozenset(LABEL.findall(match['labels'])))
        assert key not in out, 'duplicate sample %s' % line
        out[key] = float(match['value'])
    return out


def value(text, name, **labels):
    return samples(text)[('novaha_recovery_' + name, frozenset(dict(dict(host=SRC), **labels).items()))]


def promtool_check(text):
    proc = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text, capture_output=True, text=True, timeout=30, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def recovered_report():
    records = [recovered('web-1', 1), recovered('web-2', 2)]
    evacuation = result(records, skipped=[dict(id='s1', name='db-1', reason='excluded')])
    fencing = dict(fenced=True, msg='fenced', evidence=dict(method='redfish', power_state='off', fence_seconds=3.162))
    return rp.build_report(run(plan_of(records), evacuation, [ok(r) for r in records], fencing=fencing), FINISHED)


def test_a_recovered_run_in_numbers():
    report = recovered_report()
    text = mt.render_metrics(report)
    assert value(text, 'run_info', run_id='r1', outcome='recovered', check_mode='false') == 1
    assert {o: value(text, 'outcome', outcome=o) for o in mt.OUTCOMES} == dict(recovered=1, partial=0, failed=0, aborted=0, nothing_to_do=0, planned=0)
    assert value(text, 'needs_attention') == 0
    assert {r: value(text, 'servers', result=r) for r in mt.SERVER_RESULTS} == dict(recovered=2, failed=0, skipped=1, planned=0)
    assert {p['name']: value(text, 'phase_seconds', phase=p['name']) for p in report['phases']} == dict(preflight=31, fence=49, report=2)
    assert value(text, 'fencing_seconds') == 3.162
    # Started 00:21:56, both servers' evacuations finished at 1763770988.6 (00:23:08 in the report).
    assert report['servers'][0]['finished_at'] == '2025-11-22T00:23:08Z'
    assert value(text, 'time_to_all_recovered_seconds') == 72
    assert value(text, 'run_duration_seconds') == 82
    assert value(text, 'run_started_timestamp_seconds') == 1763770916
    assert value(text, 'run_finished_timestamp_seconds') == 1763770998


def test_a_partial_run_needs_attention_and_counts_the_server_left_as_failed():
    records = [recovered('web-1', 1), recovered('web-2', 2), refused_paused()]
    report = rp.build_report(run(plan_of(records), result(records), [ok(r) for r in records[:2]], failure=STOPPED_IN_VERIFY), FINISHED)
    text = mt.render_metrics(report)
    assert value(text, 'outcome', outcome='partial') == 1 and value(text, 'outcome', outcome='recovered') == 0
    assert value(text, 'needs_attention') == 1
    assert value(text, 'servers', result='recovered') == 2 and value(text, 'servers', result='failed') == 1
    # Not every server recovered: no time to all recovered, rather than a time that says they were.
    names = {name for name, _labels in samples(text)}
    assert 'novaha_recovery_time_to_all_recovered_seconds' not in names
    # No power-off was sent (the host read Off already): no fencing seconds either.
    assert 'novaha_recovery_fencing_seconds' not in names


def test_a_failed_run_counts_every_server_failed():
    records = [record('web-1', 1, _decisions.OUTCOME_FAILED, after_host=SRC, kind=_decisions.KIND_NO_VALID_HOST)]
    report = rp.build_report(run(plan_of(records), result(records), failure=dict(phase='verify', task='Verify - stop', msg='web-1 failed')), FINISHED)
    text = mt.render_metrics(report)
    assert value(text, 'outcome', outcome='failed') == 1 and value(text, 'needs_attention') == 1
    assert value(text, 'servers', result='failed') == 1 and value(text, 'servers', result='recovered') == 0


def test_check_mode_is_planned_and_says_so():
    records = [recovered('web-1', 1), recovered('web-2', 2)]
    report = rp.build_report(run(plan_of(records), dict(skipped=True, changed=False), check_mode=True), FINISHED)
    text = mt.render_metrics(report)
    assert value(text, 'run_info', run_id='r1', outcome='planned', check_mode='true') == 1
    assert value(text, 'outcome', outcome='planned') == 1 and value(text, 'needs_attention') == 0
    assert value(text, 'servers', result='planned') == 2 and value(text, 'servers', result='recovered') == 0


def test_an_aborted_run_before_any_phase_timing_still_renders():
    report = rp.build_report(run(plan_of([]), failure=dict(phase='preflight', task='t', msg='refused'), phases=[], started_at=None, fencing=None), FINISHED)
    text = mt.render_metrics(report)
    assert value(text, 'outcome', outcome='aborted') == 1 and value(text, 'needs_attention') == 1
    names = {name for name, _labels in samples(text)}
    assert 'novaha_recovery_run_started_timestamp_seconds' not in names
    assert 'novaha_recovery_run_duration_seconds' not in names
    assert value(text, 'run_finished_timestamp_seconds') == 1763770998


def test_a_phase_named_twice_is_one_sample():
    report = dict(recovered_report(), phases=[dict(name='verify', seconds=3.5), dict(name='verify', seconds=2.0), dict(name='report', seconds=None)])
    text = mt.render_metrics(report)
    assert value(text, 'phase_seconds', phase='verify') == 5.5
    assert ('novaha_recovery_phase_seconds', frozenset(dict(host=SRC, phase='report').items())) not in samples(text)


def test_label_values_are_escaped():
    report = dict(recovered_report(), host='odd"host\\x\ny', run_id='r"1')
    line = [li for li in mt.render_metrics(report).splitlines() if li.startswith('novaha_recovery_run_info')][0]
    assert line.startswith('novaha_recovery_run_info{host="odd\\"host\\\\x\\ny",run_id="r\\"1",')


def test_the_collector_file_is_named_per_host():
    assert mt.collector_file_name('node-28') == 'novaha_recovery_node-28.prom'
    assert mt.collector_file_name('a/b c') == 'novaha_recovery_a_b_c.prom'


@needs_promtool
@pytest.mark.parametrize(
    'build',
    [
        recovered_report,
        lambda: rp.build_report(run(plan_of([recovered('w', 1)]), dict(skipped=True), check_mode=True), FINISHED),
        lambda: rp.build_report(run(failure=dict(phase='fence', task='t', msg='not fenced')), FINISHED),
    ],
    ids=['recovered', 'planned', 'aborted'],
)
def test_promtool_accepts_the_metrics(build):
    rc, said = promtool_check(mt.render_metrics(build()))
    assert rc == 0 and said.strip() == '', said


@needs_promtool
def test_promtool_check_can_fail():
    """The check above is a real one: promtool refuses a counter without _total and a missing HELP."""
    rc, said = promtool_check('# TYPE novaha_recovery_runs counter\nnovaha_recovery_runs 1\n')
    assert rc != 0 and 'novaha_recovery_runs' in said, said
