"""The filters of plugins/filter/recovery.py: each documented, each passing the role's registered results on
to the one function of _report.py that decides (the decisions are tested in test_report.py)."""

import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.novaha.recovery.plugins.filter import recovery
from ansible_collections.novaha.recovery.plugins.module_utils import _decisions

# The record builders shared with the report's tests, a helper module beside them (tests/unit has no packages:
# each directory is on the path of its own tests only).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'module_utils'))
from engine_fakes import SRC  # noqa: E402
from report_records import FINISHED, moved_earlier, ok, plan_of, recovered, refused_paused, result, run  # noqa: E402

FILTERS = recovery.FilterModule().filters()


@pytest.mark.parametrize('name', sorted(FILTERS))
def test_every_filter_is_documented_beside_its_file(name):
    doc = yaml.safe_load((Path(recovery.__file__).parent / ('%s.yml' % name)).read_text())
    assert doc['DOCUMENTATION']['name'] == name
    assert doc['EXAMPLES'] and doc['RETURN']['_value']


def test_the_role_reads_the_same_records_for_verify_rollback_and_report():
    records = [recovered('web-1', 1), refused_paused()]
    plan, evacuation = plan_of(records), result(records)
    assert FILTERS['recovery_records'](plan, evacuation) == records  # what the verify phase is given
    assert FILTERS['recovery_records'](plan, {}) == []  # stopped before: nothing moved yet
    expected = FILTERS['recovery_servers_to_verify'](plan, evacuation, host=SRC)
    assert expected == {records[0]['id']: 'ACTIVE'}
    assert FILTERS['recovery_evacuation_started'](plan, evacuation, host=SRC) is True
    verdicts = [ok(records[0])]
    assert FILTERS['recovery_not_recovered'](verdicts, plan, evacuation, host=SRC) == ['paused-1 (refused): why paused-1']
    done = FILTERS['recovery_rollback_record'](
        'verify', plan=plan, evacuation=evacuation, host=SRC, restored=dict(skipped=True), snapshot=None, service_now=None
    )
    assert done['evacuation_started'] is True and done['performed'] is False
    report = FILTERS['host_recovery_report'](run(plan, evacuation, verdicts, failure=dict(phase='verify', msg='x')), FINISHED)
    assert report['outcome'] == 'partial'
    assert FILTERS['host_recovery_result'](report, '')['needs_attention'] is True
    metrics = FILTERS['host_recovery_metrics'](report)
    assert 'novaha_recovery_outcome{host="%s",outcome="partial"} 1\n' % SRC in metrics
    assert FILTERS['host_recovery_metrics_file'](SRC) == 'novaha_recovery_%s.prom' % SRC


def test_a_skipped_evacuation_reads_what_the_preflight_saw_moved_earlier():
    earlier = [moved_earlier('web-1', 1)]
    assert FILTERS['recovery_evacuation_started'](plan_of(earlier), dict(skipped=True, changed=False), host=SRC)
    assert not FILTERS['recovery_evacuation_started'](
        plan_of([dict(recovered('web-2', 2), outcome=_decisions.OUTCOME_PLANNED, attempts=[], after=None)]), {}, host=SRC
    )


def test_a_wrong_input_is_named():
    with pytest.raises(AnsibleFilterError, match='plan must be a dict, not str'):
        FILTERS['recovery_evacuation_started']('node-28', {}, host=SRC)
