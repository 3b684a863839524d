"""Bad option values, checked before a module reads or changes anything: each error names the option itself,
its value and the cause, with kind configuration. The rules are the modules' own (their option_rules)."""

import pytest

from ansible_collections.novaha.recovery.plugins.module_utils import _options
from ansible_collections.novaha.recovery.plugins.module_utils._cloud import CLOUD_OPTION_RULES, connection_kwargs
from ansible_collections.novaha.recovery.plugins.module_utils._errors import NovahaError
from ansible_collections.novaha.recovery.plugins.modules.os_fence_check import FenceCheck
from ansible_collections.novaha.recovery.plugins.modules.os_host_evacuate import HostEvacuate
from ansible_collections.novaha.recovery.plugins.modules.os_instance_evacuate import InstanceEvacuate
from ansible_collections.novaha.recovery.plugins.modules.os_recovery_run import RecoveryRun


def host_evacuate_defaults(**changes):
    params = dict(
        run_id=None,
        max_parallel=20,
        max_down_percent=50,
        timeout=1800,
        outage_timeout=120,
        poll_interval=5,
        retries=1,
        progress_interval=10,
        lease=300,
        wait_for_run=0,
        wait_for_service_down=0,
    )
    params.update(changes)
    return params


BAD = [
    # (module rules, option, bad value, words the message must have)
    (HostEvacuate, 'max_parallel', 0, 'must be 1 or more'),
    (HostEvacuate, 'max_parallel', -3, 'must be 1 or more'),
    (HostEvacuate, 'timeout', 0, 'must be 1 seconds or more'),
    (HostEvacuate, 'timeout', -60, 'must be 1 seconds or more'),
    (HostEvacuate, 'outage_timeout', 0, 'must be 1 seconds or more'),
    (HostEvacuate, 'poll_interval', 0, 'must be 1 seconds or more'),
    (HostEvacuate, 'retries', -1, 'must be 0 or more'),
    (HostEvacuate, 'max_down_percent', 150, 'must be between 0 and 100 percent'),
    (HostEvacuate, 'max_down_percent', -1, 'must be between 0 and 100 percent'),
    (HostEvacuate, 'progress_interval', 0, 'must be 1 seconds or more'),
    (HostEvacuate, 'lease', 5, 'must be 10 seconds or more'),
    (HostEvacuate, 'wait_for_run', -1, 'must be 0 seconds or more'),
    (HostEvacuate, 'wait_for_service_down', -5, 'must be 0 seconds or more'),
    (HostEvacuate, 'run_id', 'run 1!', 'must be 1 to 32 letters, digits'),
    (HostEvacuate, 'run_id', 'x' * 33, 'must be 1 to 32 letters, digits'),
    (InstanceEvacuate, 'timeout', 0, 'must be 1 seconds or more'),
    (InstanceEvacuate, 'poll_interval', -1, 'must be 1 seconds or more'),
    (InstanceEvacuate, 'retries', -2, 'must be 0 or more'),
    (RecoveryRun, 'lease', 0, 'must be 10 seconds or more'),
    (RecoveryRun, 'lease', 9, 'must be 10 seconds or more'),
    (RecoveryRun, 'settle', -0.5, 'must be 0 seconds or more'),
    (RecoveryRun, 'wait_for_run', -10, 'must be 0 seconds or more'),
    (RecoveryRun, 'run_id', '', 'must be 1 to 32 letters, digits'),
    (FenceCheck, 'power_timeout', -1, 'must be 0 seconds or more'),
]


@pytest.mark.parametrize('module, option, value, words', BAD, ids=['%s-%s=%r' % (m.__name__, o, v) for m, o, v, _w in BAD])
def test_a_bad_value_is_named_with_its_option_and_the_cause(module, option, value, words):
    params = host_evacuate_defaults(**{option: value})
    with pytest.raises(NovahaError) as caught:
        _options.check_options(params, module.option_rules)
    error = caught.value
    assert error.msg.startswith('%s is %r:' % (option, value))
    assert words in error.msg and error.msg.endswith('Nothing was changed')
    assert error.result() == dict(kind='configuration', option=option, value=value)
    # Only the bad option is named, not a list of every option that could be wrong.
    others = [name for name in module.option_rules if name != option and name not in option]
    assert not [name for name in others if name in error.msg.replace(option, '')]


def test_the_defaults_of_every_module_pass_their_rules():
    for module in (HostEvacuate, InstanceEvacuate, RecoveryRun, FenceCheck):
        params = dict((name, spec.get('default')) for name, spec in module.argument_spec.items())
        _options.check_options(params, module.option_rules)


def test_a_lease_under_ten_seconds_names_the_role_variable_it_comes_from():
    # The only check of the lease: the role's first module (os_host_evacuate) refuses host_recovery_lease < 10.
    for module in (HostEvacuate, RecoveryRun):
        with pytest.raises(NovahaError) as caught:
            _options.check_options(host_evacuate_defaults(lease=9), module.option_rules)
        assert caught.value.msg.startswith('lease is 9: it must be 10 seconds or more (')
        assert 'host_recovery_lease' in caught.value.msg
        _options.check_options(host_evacuate_defaults(lease=10), module.option_rules)


def test_api_timeout_of_every_module_must_be_positive():
    with pytest.raises(NovahaError) as caught:
        _options.check_options({'api_timeout': 0}, CLOUD_OPTION_RULES)
    assert caught.value.msg.startswith('api_timeout is 0: it must be 1 seconds or more')


def test_a_suboption_is_named_with_its_parent():
    rules = {'bmc.timeout': _options.at_least(1, 'seconds')}
    with pytest.raises(NovahaError) as caught:
        _options.check_options({'bmc': {'timeout': 0}}, rules)
    assert caught.value.msg.startswith('bmc.timeout is 0:')
    _options.check_options({'bmc': None}, rules)


def test_a_boolean_is_not_a_number():
    with pytest.raises(NovahaError):
        _options.check_options({'retries': True}, {'retries': _options.at_least(0)})


def test_options_not_given_are_left_to_the_argument_spec():
    _options.check_options({'timeout': None}, {'timeout': _options.at_least(1)})


def test_a_cloud_dictionary_with_auth_is_a_conflict_named_by_option():
    with pytest.raises(NovahaError) as caught:
        connection_kwargs({'cloud': {'auth': {'auth_url': 'http://x'}}, 'auth': {'password': 'p'}, 'interface': 'public'})
    error = caught.value
    assert error.kind == 'configuration' and error.details['option'] == 'auth'
    assert error.msg.startswith('auth conflicts with cloud: cloud is a complete cloud configuration')


def test_a_cloud_that_is_neither_a_name_nor_a_dictionary():
    with pytest.raises(NovahaError) as caught:
        connection_kwargs({'cloud': ['novaha-admin']})
    assert caught.value.msg.startswith('cloud is a list: it must be the name of a cloud in clouds.yaml')
    assert caught.value.details == {'option': 'cloud'}


def conflicts(module, **params):
    instance = object.__new__(module)
    instance.params = params
    instance.check_inputs()


def test_evacuating_a_server_to_its_own_failed_host_is_a_conflict():
    with pytest.raises(NovahaError) as caught:
        conflicts(InstanceEvacuate, target_host='node-28', expected_source_host='node-28')
    assert caught.value.msg.startswith('target_host conflicts with expected_source_host: both are node-28')
    assert caught.value.details['option'] == 'target_host'
    conflicts(InstanceEvacuate, target_host='node-27', expected_source_host='node-28')
    conflicts(InstanceEvacuate, target_host=None, expected_source_host=None)


def test_a_disabled_reason_without_enabled_false_is_a_conflict():
    from ansible_collections.novaha.recovery.plugins.modules.os_compute_service import ComputeService

    for enabled in (True, None):
        with pytest.raises(NovahaError) as caught:
            conflicts(ComputeService, disabled_reason='maintenance', enabled=enabled)
        assert caught.value.msg.startswith('disabled_reason conflicts with enabled:')
    conflicts(ComputeService, disabled_reason='maintenance', enabled=False)


def test_a_run_without_run_id_is_named():
    with pytest.raises(NovahaError) as caught:
        conflicts(RecoveryRun, state='claimed', run_id=None)
    assert caught.value.msg == ('run_id is not given: it is needed with state=claimed: the id of this run. Nothing was changed')
    conflicts(RecoveryRun, state='restored', run_id=None)


def test_a_run_ends_its_token_only_when_it_ends_and_only_a_token_it_shares():
    with pytest.raises(NovahaError) as caught:
        conflicts(RecoveryRun, state='isolated', run_id='r1', end_auth_cache=True, auth_cache='/tmp/x.token')
    assert caught.value.msg.startswith('end_auth_cache conflicts with state: a run ends its token when it ends (state=ended, or state=isolated with end_run)')
    with pytest.raises(NovahaError) as caught:
        conflicts(RecoveryRun, state='ended', run_id='r1', end_auth_cache=True, auth_cache=None)
    assert caught.value.details['option'] == 'auth_cache' and 'end_auth_cache=true' in caught.value.msg
    conflicts(RecoveryRun, state='ended', run_id='r1', end_auth_cache=True, auth_cache='/tmp/x.token')
    # A run with nothing to evacuate ends with its isolation, token included; no other phase ends it.
    conflicts(RecoveryRun, state='isolated', run_id='r1', end_run=True, end_auth_cache=True, auth_cache='/tmp/x.token')
    with pytest.raises(NovahaError) as caught:
        conflicts(RecoveryRun, state='verifying', run_id='r1', end_run=True)
    assert caught.value.msg.startswith('end_run conflicts with state: a run ends with its isolation (state=isolated)')


def test_a_refusal_for_the_input_alone_is_a_configuration_error():
    from ansible_collections.novaha.recovery.plugins.module_utils._host_evacuation import Check, refusal_kind

    unknown = Check('compute_host', False, 'node-99 is not a nova-compute host')
    targets = Check('target_hosts', False, 'target_hosts: node-28 is the failed host itself')
    up = Check('source_down', False, 'host node-27 is not fenced/forced down')
    assert refusal_kind([unknown]) == refusal_kind([targets]) == 'configuration'
    assert refusal_kind([targets, up]) == 'refused'
