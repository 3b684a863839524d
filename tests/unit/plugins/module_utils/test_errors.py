"""One error type: every failure of the collection is a NovahaError with msg, kind and details of one shape."""

from ansible_collections.novaha.recovery.plugins.module_utils import _errors, _fencing, _nova, _run


def test_every_error_class_is_a_novaha_error_with_one_shape():
    holder = _run.Holder('live', marker=None, age=12.0)
    errors = [
        _errors.EvacuationError('evacuating x failed', request_id='req-1', http_status=500),
        _nova.NovaApiError(503, 'Service Unavailable', request_id='req-2', method='GET', path='/servers'),
        _run.RunError('host held', kind='held', holder=holder),
        _fencing.FenceError(_fencing.CAUSE_TIMEOUT, 'no answer', bmc='redfish https://127.0.0.1'),
        _fencing.TransportError('refused'),
        _errors.MissingLibraryError('jmespath', 'query', 'Traceback ...'),
    ]
    for err in errors:
        assert isinstance(err, _errors.NovahaError)
        assert isinstance(err.msg, str) and err.msg
        assert isinstance(err.details, dict)
        result = err.result()
        assert result['kind'] == err.kind and err.kind
        assert None not in result.values()


def test_result_leaves_out_unknown_facts_and_keeps_the_known_ones():
    err = _errors.EvacuationError('x', kind=_errors.KIND_NOT_FOUND, request_id='req-9')
    assert err.result() == {'kind': 'not_found', 'request_id': 'req-9'}
    assert err.request_id == 'req-9' and err.http_status is None and err.next_command is None


def test_an_api_error_keeps_novas_message_apart_from_the_operators_one():
    err = _nova.NovaApiError(409, 'Cannot evacuate while in state paused', request_id='req-3', method='POST', path='/servers/s1/action')
    assert err.message == 'Cannot evacuate while in state paused'
    assert err.result() == {'kind': 'api_error', 'http_status': 409, 'request_id': 'req-3'}
    explained = _nova.explain_api_error(err, 'evacuating s1')
    assert explained.msg == 'evacuating s1 failed: Cannot evacuate while in state paused (HTTP 409, request id req-3)'
    no_answer = _nova.NovaApiError(None, 'no answer from the compute API (reset)', method='GET', path='/x')
    assert 'HTTP' not in no_answer.msg and no_answer.result() == {'kind': 'api_error'}


def test_a_refused_claim_returns_the_holder_as_a_dict():
    holder = _run.Holder('live', marker=None, age=3.0)
    err = _run.RunError('held', kind='held', holder=holder)
    assert err.result()['holder'] == holder.to_dict() and err.holder is holder
