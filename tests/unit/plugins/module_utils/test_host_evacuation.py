"""Unit tests of the host-level evacuation: guards, marker, selection, capacity, and whole runs against
``HostNova`` (engine_fakes.py): the engine's fake Nova extended with the listings a host run makes (all
services, servers of a host, server groups, aggregates, hypervisors, service updates).
"""

import datetime
import sys
import threading
from urllib.parse import parse_qsl, urlsplit

import pytest
from engine_fakes import DST, OTHER, SRC, HostNova, host_run

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions, _errors, _evacuation as ev, _host_evacuation as he, _nova, _run as run, _watch

# ---------------------------------------------------------------------------------------------------------
# guards


def svc(host, binary='nova-compute', state='up', status='enabled', forced_down=False, reason=None):
    return dict(
        id='svc-%s-%s' % (binary, host), host=host, binary=binary, state=state, status=status, forced_down=forced_down, disabled_reason=reason, zone='nova'
    )


def cloud(*computes, scheduler='up'):
    return list(computes) + [svc('ctl-1', 'nova-scheduler', state=scheduler), svc('ctl-1', 'nova-conductor')]


def by_name(checks):
    return dict((c.name, c) for c in checks)


def test_all_guards_pass_for_a_forced_down_host():
    checks, source = he.check_preconditions(cloud(svc('n1', state='down', forced_down=True), svc('n2'), svc('n3')), 'n1', 50)
    assert source['host'] == 'n1'
    assert all(c.ok for c in checks), [c.detail for c in checks]
    assert by_name(checks)['down_percent'].detail.startswith('1 of 3 nova-compute services are down (33%')


def test_unknown_host_names_the_close_ones():
    checks, source = he.check_preconditions(cloud(svc('n1.example.org'), svc('n2')), 'n1', 50)
    assert source is None
    check = by_name(checks)['compute_host']
    assert not check.ok and 'n1 is not a nova-compute host' in check.detail and 'did you mean n1.example.org' in check.detail


def test_host_still_up_is_refused():
    checks, _source = he.check_preconditions(cloud(svc('n1'), svc('n2')), 'n1', 50)
    check = by_name(checks)['source_down']
    assert not check.ok and 'host n1 is not fenced/forced down' in check.detail


def test_reported_down_but_not_forced_down_passes_with_a_warning_in_the_detail():
    checks, _source = he.check_preconditions(cloud(svc('n1', state='down'), svc('n2'), svc('n3')), 'n1', 50)
    check = by_name(checks)['source_down']
    assert check.ok and 'not forced down' in check.detail


def test_no_other_usable_compute():
    checks, _source = he.check_preconditions(cloud(svc('n1', state='down', forced_down=True), svc('n2', status='disabled'), svc('n3', state='down')), 'n1', 100)
    assert not by_name(checks)['compute_remains'].ok


def test_percentage_guard_trips_with_two_of_three_down():
    checks, _source = he.check_preconditions(cloud(svc('n1', state='down', forced_down=True), svc('n2', forced_down=True), svc('n3')), 'n1', 50)
    check = by_name(checks)['down_percent']
    assert not check.ok and '2 of 3' in check.detail and '67%' in check.detail and 'partition' in check.detail
    checks, _source = he.check_preconditions(cloud(svc('n1', state='down', forced_down=True), svc('n2', forced_down=True), svc('n3')), 'n1', 70)
    assert by_name(checks)['down_percent'].ok


def test_scheduler_down_is_refused():
    checks, _source = he.check_preconditions(cloud(svc('n1', state='down'), svc('n2'), scheduler='down'), 'n1', 50)
    check = by_name(checks)['scheduler_up']
    assert not check.ok and 'ctl-1 down' in check.detail


def test_target_hosts_must_be_usable_computes():
    services = cloud(svc('n1', state='down', forced_down=True), svc('n2'), svc('n3', status='disabled'))
    checks, _source = he.check_preconditions(services, 'n1', 50, ['n3', 'n9'])
    check = by_name(checks)['target_hosts']
    assert not check.ok and 'not compute hosts: n9' in check.detail and 'not enabled and up: n3' in check.detail
    checks, _source = he.check_preconditions(services, 'n1', 50, ['n2', 'n3'])
    assert by_name(checks)['target_hosts'].ok


# ---------------------------------------------------------------------------------------------------------
# who holds the host (the marker itself is tested in test_run.py)


def test_holder_check_refuses_only_a_live_run_nobody_waits_for():
    now = he.utc('2025-11-21T12:00:00Z')
    live = run.RunMarker('first1', 'evacuating', 'awx-1@aa', now, now, 300)
    held = run.judge_holder(live, 'second', now)
    check = he.holder_check(held)
    assert not check.ok and 'run first1 (controller awx-1@aa, phase evacuating' in check.detail
    assert he.holder_check(held, wait_for_run=60).ok
    stale = run.judge_holder(live, 'second', now + datetime.timedelta(seconds=301))
    assert stale.kind == 'stale' and he.holder_check(stale).ok and 'controller is gone' in he.holder_check(stale).detail


# ---------------------------------------------------------------------------------------------------------
# selection


def view(name, metadata=None, extra_specs=None, image_properties=None, aggregate=None, status='ACTIVE', sid=None, project='p-1'):
    body = {
        'id': sid or 'id-%s' % name,
        'name': name,
        'status': status,
        'tenant_id': project,
        'metadata': metadata or {},
        'image': {'id': 'img-1'},
        'flavor': {'original_name': 'm1.tiny', 'vcpus': 1, 'ram': 512, 'disk': 1, 'extra_specs': extra_specs or {}},
    }
    return he.server_view(body, image_properties=image_properties, aggregate_metadata=aggregate)


def test_include_metadata_matches_as_text_ignoring_case():
    views = [view('a', {'HA_Enabled': 'True'}), view('b', {'HA_Enabled': 'false'}), view('c')]
    selected, skipped = he.select_servers(views, include={'metadata': {'HA_Enabled': True}})
    assert [v['name'] for v in selected] == ['a']
    reasons = dict((s['name'], s['reason']) for s in skipped)
    assert reasons['b'] == ('not selected: include.metadata needs metadata HA_Enabled=true, the server has HA_Enabled=false')
    assert reasons['c'].endswith('the server has HA_Enabled missing')


def test_exclude_by_name_flavor_extra_spec_image_property_and_aggregate():
    views = [view('test-1'), view('gpu', extra_specs={'resources:VGPU': '1'}), view('win', image_properties={'os_type': 'windows'}), view('web')]
    selected, skipped = he.select_servers(
        views, exclude={'names': ['test-*'], 'flavor_extra_specs': {'resources:VGPU': '*'}, 'image_properties': {'os_type': 'windows'}}
    )
    assert [v['name'] for v in selected] == ['web']
    reasons = dict((s['name'], s['reason']) for s in skipped)
    assert reasons == {
        'test-1': 'excluded: its name matches exclude.names pattern test-*',
        'gpu': 'excluded: exclude.flavor_extra_specs matches flavor extra spec resources:VGPU=1',
        'win': 'excluded: exclude.image_properties matches image property os_type=windows',
    }
    hosted = [view('a', aggregate={'ha': 'off'}), view('b', aggregate={'ha': 'off'})]
    selected, skipped = he.select_servers(hosted, exclude={'aggregate_metadata': {'ha': ['off', 'no']}})
    assert not selected and len(skipped) == 2 and 'host aggregate metadata ha=off' in skipped[0]['reason']


def test_include_names_and_image_properties():
    views = [view('db-1', image_properties={'os_distro': 'ubuntu'}), view('db-2'), view('web-1')]
    selected, skipped = he.select_servers(views, include={'names': ['db-*'], 'image_properties': {'os_distro': '*'}})
    assert [v['name'] for v in selected] == ['db-1']
    assert [s['name'] for s in skipped] == ['db-2', 'web-1']


def test_order_by_priority_then_name():
    views = [view('c'), view('b', {'HA_Priority': '10'}), view('a'), view('z', {'HA_Priority': '50'}), view('y', {'HA_Priority': 'high'})]
    selected, _skipped = he.select_servers(views)
    assert [v['name'] for v in selected] == ['z', 'b', 'a', 'c', 'y']


def test_jmespath_query_selects_and_explains():
    views = [view('a', status='SHUTOFF'), view('b'), view('c', project='p-2')]
    selected, skipped = he.select_servers(views, query="[?status=='ACTIVE' && project_id=='p-1']")
    assert [v['name'] for v in selected] == ['b']
    assert dict((s['name'], s['reason']) for s in skipped)['a'] == "not selected: the query [?status=='ACTIVE' && project_id=='p-1'] does not return it"
    selected, _skipped = he.select_servers(views, query="[?metadata.HA_Enabled==null].name")
    assert [v['name'] for v in selected] == ['a', 'b', 'c']
    selected, _skipped = he.select_servers(views, query="[?flavor.name=='m1.tiny'].id | [0:1]")
    assert [v['name'] for v in selected] == ['a']


def test_bad_jmespath_is_a_clear_error():
    with pytest.raises(_errors.NovahaError) as err:
        he.select_servers([view('a')], query="[?status=='ACTIVE'")
    assert "query \"[?status=='ACTIVE'\" is not a valid JMESPath expression" in err.value.msg
    assert err.value.msg.endswith('Nothing was changed')
    with pytest.raises(_errors.NovahaError) as err:
        he.select_servers([view('a')], query="length(@)")
    assert 'must return a list of servers' in err.value.msg
    with pytest.raises(_errors.NovahaError) as err:
        he.select_servers([view('a')], query="[].flavor")
    assert 'which is not a server of the list' in err.value.msg


def test_missing_jmespath_library_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, 'jmespath', None)
    with pytest.raises(_errors.MissingLibraryError) as err:
        he.select_servers([view('a')], query='[]')
    assert err.value.library == 'jmespath' and 'query' in err.value.reason
    assert 'import jmespath' in err.value.import_traceback


def test_servers_to_finish_are_selected_whatever_the_criteria():
    views = [view('a'), view('b')]
    selected, skipped = he.select_servers(views, include={'metadata': {'HA_Enabled': 'True'}}, always={'id-b'})
    assert [v['name'] for v in selected] == ['b'] and [s['name'] for s in skipped] == ['a']


# ---------------------------------------------------------------------------------------------------------
# capacity


def test_placement_free_capacity_applies_reserved_and_ratios():
    free = he.free_from_placement(
        {
            'VCPU': dict(total=8, reserved=0, allocation_ratio=4.0, max_unit=8),
            'MEMORY_MB': dict(total=16384, reserved=512, allocation_ratio=1.0, max_unit=16384),
            'DISK_GB': dict(total=100, reserved=0, allocation_ratio=1.0, max_unit=100),
        },
        {'VCPU': 30, 'MEMORY_MB': 15000, 'DISK_GB': 10},
    )
    assert free == {'VCPU': (2, 8), 'MEMORY_MB': (872, 16384), 'DISK_GB': (90, 100)}


def test_flavor_needs_boot_from_volume_has_no_root_disk():
    bfv = he.server_view({'id': 'x', 'name': 'x', 'image': '', 'flavor': {'vcpus': 2, 'ram': 4096, 'disk': 40, 'ephemeral': 5, 'swap': 1025}})
    assert he.flavor_needs(bfv) == dict(VCPU=2, MEMORY_MB=4096, DISK_GB=7)


def test_capacity_packs_largest_first_and_warns():
    free = {'n2': dict(VCPU=(4, 8), MEMORY_MB=(4096, 8192), DISK_GB=(100, 100)), 'n3': dict(VCPU=(4, 8), MEMORY_MB=(2048, 8192), DISK_GB=(100, 100))}
    needs = [('a', dict(VCPU=1, MEMORY_MB=2048, DISK_GB=1)), ('b', dict(VCPU=1, MEMORY_MB=4096, DISK_GB=1)), ('c', dict(VCPU=1, MEMORY_MB=2048, DISK_GB=1))]
    report = he.check_capacity(needs, free, 'Placement')
    assert report['fits'] and report['placement'] == {'b': 'n2', 'a': 'n3'} or report['unplaced'] == ['c']
    assert report['unplaced'] == ['c'] and 'not enough free capacity for 1 of 3 servers' in report['warning']
    ok = he.check_capacity(needs[:2], free, 'Placement')
    assert ok['fits'] and ok['warning'] is None and ok['placement'] == {'b': 'n2', 'a': 'n3'}


# ---------------------------------------------------------------------------------------------------------
# whole runs on the fake Nova


@pytest.fixture
def nova(clock):
    return HostNova(clock)


def test_a_host_run_recovers_every_server_within_max_parallel(nova, clock):
    ids = [nova.add_server('web-%02d' % i, vm_state='stopped' if i % 3 == 0 else 'active') for i in range(10)]
    seen = []
    plan, summary, counting = host_run(nova, clock, max_parallel=2, progress=seen.append)
    assert summary['recovered'] == 10 and summary['failed'] == 0 and summary['selected'] == 10
    for sid in ids:
        assert nova.status(sid)[0] == DST and nova.evacuate_count(sid) == 1
        assert nova.servers[sid]['locked'] is False
    assert nova.max_overlap() == 2
    assert summary['max_in_flight'] <= 2 and all(p['in_flight'] <= 2 for p in seen)
    assert seen[0]['pending'] == 10 and seen[-1]['recovered'] == 10 and seen[-1]['selected'] == 10
    # Watching: two listings per poll, whatever the number of servers.
    assert counting.watch_requests == 2 * counting.polls
    # The marker was there while it ran (claimed, then evacuating), and the service is back as it was.
    assert nova.reasons[0].startswith('novaha.recovery run %s claimed ctl ctl@00 start ' % plan.run_id)
    assert nova.reasons[1].startswith('novaha.recovery run %s evacuating ctl ctl@00 start ' % plan.run_id)
    assert nova.services[SRC]['status'] == 'enabled' and nova.services[SRC]['disabled_reason'] is None


class SerialNova(HostNova):
    """The fake answers one request at a time (it is no thread-safe Nova) and notes the thread of each action."""

    def __init__(self, clock):
        super(SerialNova, self).__init__(clock)
        self.lock = threading.Lock()
        self.threads = []

    def request(self, method, path, microversion, body=None):
        with self.lock:
            if method == 'POST':
                self.threads.append(threading.current_thread().ident)
            return super(SerialNova, self).request(method, path, microversion, body)


def test_senders_begin_servers_together_each_locked_before_its_evacuation(clock):
    nova = SerialNova(clock)
    ids = [nova.add_server('web-%02d' % i) for i in range(12)]
    plan, summary, counting = host_run(nova, clock, max_parallel=8, senders=4)
    assert summary['recovered'] == 12 and summary['failed'] == 0
    for sid in ids:
        # Each server's own requests in order: its lock, its one evacuation, its unlock once recovered.
        assert [a for a, _mv, _b in nova.actions(sid)] == ['lock', 'evacuate', 'unlock']
        assert nova.status(sid)[0] == DST and nova.servers[sid]['locked'] is False
    assert len(set(nova.threads)) > 1 and summary['max_in_flight'] <= 8 and nova.max_overlap() <= 8
    assert counting.watch_requests == 2 * counting.polls


def test_senders_stop_beginning_servers_once_the_api_fails_and_resume_after_it(clock):
    nova = SerialNova(clock)
    ids = [nova.add_server('web-%02d' % i) for i in range(12)]
    nova.outage(start_in=0, seconds=3, status=503, method='POST')
    _plan, summary, _counting = host_run(nova, clock, max_parallel=12, senders=4)
    # No more than the senders' first requests met the failing API before the run paused; none was sent twice.
    first = [c for c in nova.failed_calls if c[0] == nova.failed_calls[0][0]]
    assert 1 <= len(first) <= 4
    assert summary['recovered'] == 12 and all(nova.evacuate_count(sid) == 1 for sid in ids)


def test_looks_start_at_least_two_seconds_apart(clock, monkeypatch):
    nova = HostNova(clock)
    for i in range(6):
        nova.add_server('web-%02d' % i)
    started = []
    poll = _watch.Watcher.poll

    def noted(self, server_ids):
        started.append(clock.t)
        return poll(self, server_ids)

    monkeypatch.setattr(_watch.Watcher, 'poll', noted)
    _plan, summary, _counting = host_run(nova, clock, max_parallel=3, poll_interval=5)
    assert summary['recovered'] == 6 and len(started) > 3
    assert min(b - a for a, b in zip(started, started[1:])) >= _watch.LOOK_GAP


def test_watch_requests_do_not_grow_with_the_number_of_servers(clock):
    per_poll = []
    for count in (2, 12):
        nova = HostNova(clock)
        for i in range(count):
            nova.add_server('web-%02d' % i)
        _plan, _summary, counting = host_run(nova, clock, max_parallel=count)
        per_poll.append(float(counting.watch_requests) / counting.polls)
    assert per_poll == [2.0, 2.0]


def test_server_group_members_are_not_evacuated_together(nova, clock):
    a = nova.add_server('a')
    b = nova.add_server('b')
    c = nova.add_server('c')
    nova.groups = [dict(id='g-1', name='pair', policy='soft-anti-affinity', members=[a, b])]
    plan, summary, _counting = host_run(nova, clock, max_parallel=5)
    assert summary['recovered'] == 3
    wins = dict((m['instance_uuid'], nova.windows[m['id']]) for m in nova.migrations)
    assert wins[b][0] >= wins[a][1] or wins[a][0] >= wins[b][1]
    assert wins[c][0] < wins[a][1]  # c is not held back
    assert any('share server group g-1' in w for w in plan.warnings)


def test_selection_refusals_and_skips_are_reported(nova, clock):
    ha = nova.add_server('ha-1')
    nova.servers[ha]['metadata'] = {'HA_Enabled': 'True'}
    paused = nova.add_server('paused-1', vm_state='paused')
    nova.servers[paused]['metadata'] = {'HA_Enabled': 'True'}
    other = nova.add_server('plain-1')
    nova.servers[other]['metadata'] = {}
    plan, summary, _counting = host_run(nova, clock, include={'metadata': {'HA_Enabled': 'True'}})
    assert summary['recovered'] == 1 and summary['refused'] == 1 and summary['skipped'] == 1
    assert nova.status(paused) == (SRC, 'PAUSED') and nova.status(other)[0] == SRC
    assert plan.skipped[0]['id'] == other and 'include.metadata' in plan.skipped[0]['reason']
    refused = [e for e in plan.evacuations if e.id == paused][0]
    assert refused.outcome == _decisions.OUTCOME_REFUSED and 'PAUSED' in refused.reason


def test_check_mode_plan_changes_nothing(nova, clock):
    sid = nova.add_server('web-1')
    plan, _summary, _counting = host_run(nova, clock, run=False)
    entry = plan.plan_list()[0]
    assert entry['action'] == 'evacuate' and entry['expected_status'] == 'ACTIVE'
    assert entry['expected_target'] == 'the scheduler' and entry['outcome'] == 'planned'
    assert any('root disk' in w for w in entry['warnings'])
    assert not nova.actions() and not nova.reasons and nova.status(sid) == (SRC, 'ACTIVE')


def test_a_host_with_nothing_selected_is_isolated_by_the_isolate_phase(nova, clock):
    plan, _summary, _counting = host_run(nova, clock, run=False)
    assert not plan.evacuations and he.isolating_phase(plan) == 'isolate'
    nova.servers[nova.add_server('plain-1')]['metadata'] = {}
    plan, _summary, _counting = host_run(nova, clock, run=False, include={'metadata': {'HA_Enabled': 'True'}})
    assert plan.skipped and not plan.evacuations and he.isolating_phase(plan) == 'isolate'
    # Nothing between its isolation and its end: the isolation ends the run, except in check mode.
    assert he.ending_phase(plan) == 'isolate' and he.ending_phase(plan, check_mode=True) == 'end'


def test_snapshot_and_plan_read_the_host_once(nova, clock):
    ids = sorted(nova.add_server('web-%d' % i) for i in range(3))

    def preflight(shared):
        counting = he.CountingNova(nova)
        engine = ev.Engine(counting, clock)
        listing = he.list_host(engine, SRC) if shared else None
        snap = he.read_host(engine, SRC, listing=listing)
        plan = he.HostEvacuation(engine, controller='ctl@00', run_id='r-1').prepare(SRC, listing=listing)
        return snap, plan, counting.requests

    twice = preflight(shared=False)
    once = preflight(shared=True)
    # Same snapshot and same plan, three GETs fewer (services, servers on the host, migrations).
    assert [s['id'] for s in once[0]['servers']] == ids and once[0]['service']['host'] == SRC
    assert once[0] == twice[0] and once[1].plan_list() == twice[1].plan_list()
    assert twice[2] - once[2] == 3
    assert not nova.actions()


def test_a_second_run_is_refused_while_the_first_runs(nova, clock):
    nova.add_server('web-1')
    nova.services[SRC]['status'] = 'disabled'
    # Its heartbeat is 60 s old, its lease 300 s: alive.
    nova.services[SRC]['disabled_reason'] = (
        'novaha.recovery run first1 evacuating ctl awx-1@aa start 20251121T114500Z beat 20251121T115900Z lease 300; was: enabled'
    )
    plan, summary, _counting = host_run(nova, clock)
    assert summary is None
    (failed,) = plan.failed_checks
    assert failed.name == 'no_other_run' and 'run first1' in failed.detail
    assert not nova.actions()


def test_without_a_date_header_a_live_run_past_its_lease_on_the_local_clock_is_not_taken(nova, clock):
    nova.add_server('web-1')
    nova.send_date = False
    nova.services[SRC]['status'] = 'disabled'
    # Heartbeat 11:55:00, lease 300 s; the local clock says 12:00:30: past the lease, within the clock skew allowed.
    nova.services[SRC]['disabled_reason'] = (
        'novaha.recovery run first1 evacuating ctl awx-1@aa start 20251121T114500Z beat 20251121T115500Z lease 300; was: enabled'
    )
    clock.t += 30
    plan, summary, _counting = host_run(nova, clock)
    assert plan.holder.kind == 'live' and plan.holder.clock == 'local' and summary is None
    assert not nova.actions()


def test_a_joined_run_is_held_by_one_host_run_from_the_wait_to_the_end(nova, clock):
    sid = nova.add_server('web-1')
    engine = ev.Engine(he.CountingNova(nova), clock)
    run.HostRun(engine.nova, SRC, 'role0run1', clock, controller='ctl@00').claim()
    evacuation = he.HostEvacuation(engine, controller='ctl@00', run_id='role0run1', joined=True)
    assert evacuation.wait_for_service_down(SRC, timeout=30) == 0
    held = evacuation.run
    plan = evacuation.prepare(SRC)
    summary = evacuation.execute(plan, poll_interval=2)
    assert evacuation.run is held and summary['recovered'] == 1 and nova.status(sid) == (DST, 'ACTIVE')
    # A joined run stays held for its verification.
    assert run.parse_marker(nova.services[SRC]['disabled_reason']).phase == 'verifying'


def test_a_standalone_run_whose_host_was_taken_does_not_give_it_back(nova, clock):
    nova.add_server('web-1')
    other = 'novaha.recovery run other1 claimed ctl awx-2@cc start 20251121T120000Z beat 20251121T120000Z lease 300; was: enabled'
    evacuation = he.HostEvacuation(ev.Engine(he.CountingNova(nova), clock), controller='ctl@00', run_id='mine1')
    plan = evacuation.prepare(SRC)
    evacuation.claim(plan)
    evacuation.run.advance(run.PHASE_EVACUATING)
    nova.services[SRC]['disabled_reason'] = other
    with pytest.raises(run.RunError) as err:
        evacuation.end(finished=True)
    assert err.value.kind == 'lost' and nova.services[SRC]['disabled_reason'] == other


def test_resume_after_a_killed_run_issues_only_what_is_left(nova, clock):
    ids = [nova.add_server('web-%d' % i) for i in range(4)]
    # The killed run: web-0 recovered, web-1 evacuated but left stopped at 2.95 with our lock, web-2 in flight.
    # Its controller died ten minutes ago: the heartbeat is older than the lease.
    first_marker = run.claim_marker(nova._svc(SRC), 'first1', 'awx-7@bb', he.utc('2025-11-21T11:49:00Z'), 300)
    first_marker.phase = 'evacuating'
    nova.services[SRC].update(status='disabled', disabled_reason=first_marker.text())
    mig0 = nova.add_migration(ids[0], 'done')
    nova._set(ids[0], host=DST)
    nova.add_migration(ids[1], 'done')
    nova._set(ids[1], host=DST, vm_state='stopped', power=4)
    nova.servers[ids[1]].update(locked=True, locked_reason=_decisions.lock_reason(SRC, 'ACTIVE'))
    mig2 = nova.add_migration(ids[2], 'accepted', dest=None)
    nova._set(ids[2], task_state='rebuilding')
    nova.at(3, lambda: (nova._mig_set(mig2, 'done'), nova._set(ids[2], host=DST, task_state=None)))
    assert mig0['status'] == 'done'

    plan, summary, _counting = host_run(nova, clock, max_parallel=2)
    actions = dict((e.id, e.action) for e in plan.evacuations)
    assert actions == {ids[0]: 'none', ids[1]: 'reconcile', ids[2]: 'wait', ids[3]: 'evacuate'}
    assert plan.holder.kind == 'stale' and any('controller is gone' in w for w in plan.warnings)
    assert summary['failed'] == 0 and summary['recovered'] == 3 and summary['nothing_to_do'] == 1
    assert [nova.evacuate_count(sid) for sid in ids] == [0, 0, 0, 1]
    for sid in ids:
        assert nova.status(sid) == (DST, 'ACTIVE') and nova.servers[sid]['locked'] is False
    assert nova.services[SRC]['status'] == 'enabled' and nova.services[SRC]['disabled_reason'] is None


def test_timeout_leaves_servers_in_progress_and_the_marker_interrupted(nova, clock):
    ids = [nova.add_server('web-%d' % i) for i in range(3)]
    for sid in ids:
        nova.plans[sid] = [dict(outcome='stuck')]
    plan, summary, _counting = host_run(nova, clock, max_parallel=2, timeout=10)
    assert summary['in_progress'] == 2 and summary['pending'] == 1 and summary['failed'] == 0
    marker = run.parse_marker(nova.services[SRC]['disabled_reason'])
    assert marker.run_id == plan.run_id and marker.phase == 'interrupted'
    # The next run resumes: waits for the two in flight, issues the third.
    for sid in ids:
        nova.plans[sid] = []
    for mig in nova.migrations:
        nova.at(2, lambda mig=mig: (nova._mig_set(mig, 'done'), nova._set(mig['instance_uuid'], host=DST, task_state=None)))
    plan2, summary2, _counting = host_run(nova, clock, max_parallel=2)
    assert sorted(e.action for e in plan2.evacuations) == ['evacuate', 'wait', 'wait']
    assert summary2['recovered'] == 3 and [nova.evacuate_count(sid) for sid in ids] == [1, 1, 1]
    assert nova.services[SRC]['disabled_reason'] is None


def test_require_capacity_fails_the_guard(nova, clock):
    for i in range(3):
        nova.add_server('big-%d' % i)
    for sid in nova.servers:
        nova.servers[sid]['flavor'] = dict(nova.servers[sid]['flavor'], ram=8192)
    plan, summary, _counting = host_run(nova, clock, require_capacity=True)
    assert summary is None
    (failed,) = plan.failed_checks
    assert failed.name == 'capacity' and 'not enough free capacity for 1 of 3 servers' in failed.detail
    assert plan.capacity['source'].startswith('hypervisor statistics')


def test_target_hosts_are_assigned_by_free_capacity(nova, clock):
    sid = nova.add_server('web-1')
    plan, summary, _counting = host_run(nova, clock, target_hosts=[OTHER])
    assert plan.evacuations[0].target_host == OTHER and plan.plan_list()[0]['expected_target'] == OTHER
    assert summary['recovered'] == 1 and nova.status(sid)[0] == OTHER


def test_progress_line():
    line = he.progress_line('node-28', 'abc', dict(recovered=5, in_flight=2, failed=0, pending=7, selected=14, elapsed=35.4))
    assert line == ('os_host_evacuate node-28 (run abc): 5 recovered, 2 in flight, 0 failed, 7 pending of 14 selected; 35s elapsed')


def test_query_string_helpers():
    assert dict(parse_qsl(urlsplit(_nova.query('/x', [('a', 1), ('b', None)])).query)) == {'a': '1'}


def test_each_poll_lists_migrations_before_servers(nova, clock):
    # Nova saves the new host before it marks the migration done: read in the other order, a done migration
    # can meet a server listing that still shows the source host (seen on the local cloud).
    for i in range(3):
        nova.add_server('web-%d' % i)
    host_run(nova, clock, max_parallel=3)
    watch = [path.split('?')[0] for method, path, _mv, _b in nova.calls if method == 'GET' and 'changes-since' in path]
    assert watch and watch == ['/os-migrations', '/servers/detail'] * (len(watch) // 2)


def test_user_locked_active_server_is_noted_then_the_note_removed(nova, clock):
    sid = nova.add_server('web-1', locked=True, locked_reason='mine')
    _plan, summary, _counting = host_run(nova, clock, microversion='2.95')
    assert summary['recovered'] == 1 and nova.status(sid) == (DST, 'ACTIVE')
    assert nova.notes == [('PUT', sid, he.NOTE_KEY), ('DELETE', sid, he.NOTE_KEY)]
    assert he.NOTE_KEY not in nova.servers[sid]['metadata'] and nova.servers[sid]['locked_reason'] == 'mine'


def test_a_noted_server_left_stopped_by_a_killed_run_is_started(nova, clock):
    # The killed run evacuated a user-locked ACTIVE server at 2.95; Nova left it SHUTOFF and nobody started it.
    sid = nova.add_server('web-1', locked=True, locked_reason='mine')
    nova.servers[sid]['metadata'] = {he.NOTE_KEY: 'ACTIVE'}
    first = run.claim_marker(nova._svc(SRC), 'first1', 'ctl@00', he.utc('2025-11-21T11:49:00Z'), 300)
    nova.services[SRC].update(status='disabled', disabled_reason=first.text())
    nova.add_migration(sid, 'done')
    nova._set(sid, host=DST, vm_state='stopped', power=4)
    plan, summary, _counting = host_run(nova, clock)
    assert plan.evacuations[0].action == 'reconcile' and plan.evacuations[0].power_actions == ['start']
    assert summary['recovered'] == 1 and nova.status(sid) == (DST, 'ACTIVE') and nova.evacuate_count(sid) == 0
    assert he.NOTE_KEY not in nova.servers[sid]['metadata'] and nova.servers[sid]['locked'] is True


def test_no_note_below_2_95_or_with_our_own_lock(nova, clock):
    nova.add_server('web-1', locked=True, locked_reason='mine')
    nova.add_server('web-2')
    _plan, summary, _counting = host_run(nova, clock, microversion='2.95')
    assert summary['recovered'] == 2 and len(nova.notes) == 2  # web-2 carries our lock instead
    older = HostNova(clock)
    older.add_server('web-1', locked=True, locked_reason='mine')
    _plan, summary, _counting = host_run(older, clock)  # the default, 2.94: Nova keeps the power state
    assert summary['recovered'] == 1 and older.notes == []


def test_waiting_for_the_service_down_reads_only_the_service(nova, clock):
    nova.services[SRC].update(state='up', forced_down=False)
    nova.at(12, lambda: nova.services[SRC].update(state='down'))
    counting = he.CountingNova(nova)
    engine = ev.Engine(counting, clock)
    _mv = engine.mv
    before = len(nova.calls)
    evacuation = he.HostEvacuation(engine, controller='ctl@00', run_id='waiter')
    assert evacuation.wait_for_service_down(SRC, timeout=90) == 15
    # t = 0, 5, 10, 15: one read of the host's nova-compute service each (HostRun.read), nothing else.
    assert [c[:2] for c in nova.calls[before:]] == [('GET', '/os-services?binary=nova-compute&host=%s' % SRC)] * 4
    # The one HostRun of the evacuation read it, and the claim uses the same one.
    assert evacuation.run.service['state'] == 'down' and evacuation.host_run(SRC) is evacuation.run


def test_waiting_for_the_service_down_gives_up_at_the_timeout(nova, clock):
    nova.services[SRC].update(state='up', forced_down=False)
    engine = ev.Engine(he.CountingNova(nova), clock)
    assert he.HostEvacuation(engine, run_id='waiter').wait_for_service_down(SRC, timeout=12) == 12
    assert nova.services[SRC]['state'] == 'up'


def test_waiting_for_the_service_down_of_a_host_without_one_returns_at_once(nova, clock):
    engine = ev.Engine(he.CountingNova(nova), clock)
    assert he.HostEvacuation(engine, run_id='waiter').wait_for_service_down('node-99', timeout=60) == 0
    assert clock.sleeps == []


# ---------------------------------------------------------------------------------------------------------
# servers a service recovers by itself (Octavia's amphorae by default)

AMPHORA = 'amphora-0d9e1c9a-7f5b-4a8e-9c1d-2b3a4c5d6e7f'


def test_the_default_matches_amphorae_by_their_whole_uuid_name_only():
    octavia = he.DEFAULT_RECOVERED_BY_SERVICES
    assert he.recovered_by_service(view(AMPHORA), octavia) == (0, octavia[0])
    for name in ('amphora-web', 'amphora-0d9e1c9a', AMPHORA + '-1', 'my-' + AMPHORA, 'web-1', None):
        assert he.recovered_by_service(view(name), octavia) is None, name


def test_the_first_matching_entry_decides_and_every_criterion_of_it_must_match():
    entries = [dict(service='octavia', match=dict(names=['amphora-*'], project_ids=['svc'])), dict(service='trove', match=dict(metadata={'trove_guest': '*'}))]
    assert he.recovered_by_service(view('amphora-x', project='svc'), entries)[0] == 0
    assert he.recovered_by_service(view('amphora-x', project='p-1'), entries) is None
    assert he.recovered_by_service(view('db-1', {'trove_guest': 'x'}), entries)[1]['service'] == 'trove'
    assert he.recovered_by_service(view(AMPHORA), []) is None and he.recovered_by_service(view(AMPHORA), None) is None


def test_an_amphora_named_exactly_in_include_names_is_evacuated_a_glob_does_not_do():
    octavia = he.DEFAULT_RECOVERED_BY_SERVICES
    assert he.recovered_by_service(view(AMPHORA), octavia, include={'names': [AMPHORA]}) is None
    assert he.recovered_by_service(view(AMPHORA), octavia, include={'names': ['amphora-*']}) is not None
    assert he.recovered_by_service(view(AMPHORA), octavia, include={'metadata': {'a': 'b'}}) is not None


def test_project_ids_select_and_exclude():
    views = [view('a', project='p-1'), view('b', project='p-2')]
    selected, skipped = he.select_servers(views, include={'project_ids': ['p-2']})
    assert [v['name'] for v in selected] == ['b']
    assert skipped[0]['reason'] == 'not selected: its project p-1 is none of include.project_ids (p-2)'
    selected, skipped = he.select_servers(views, exclude={'project_ids': ['p-2']})
    assert [v['name'] for v in selected] == ['a'] and 'exclude.project_ids' in skipped[0]['reason']


def test_the_skipped_record_names_the_service_the_criteria_and_the_command_to_evacuate_anyway():
    amphora = view(AMPHORA, project='svc', sid='s-1')
    record = he.service_skip_record(amphora, 0, he.DEFAULT_RECOVERED_BY_SERVICES[0])
    assert record['kind'] == he.KIND_RECOVERED_BY_SERVICE == 'recovered_by_service'
    assert (record['id'], record['name'], record['project_id'], record['service']) == ('s-1', AMPHORA, 'svc', 'octavia')
    assert record['reason'] == ('left alone: octavia recovers it by itself (recovered_by_services[0]: its name matches %s)' % he.AMPHORA_NAMES)
    assert record['next_command'].startswith('openstack server evacuate s-1 ')


@pytest.mark.parametrize(
    'entries, option, value',
    [
        ([{'service': '', 'match': {'names': ['x']}}], 'recovered_by_services[0].service', ''),
        (
            [{'service': 'octavia', 'match': {'names': ['x']}}, {'service': 'trove', 'match': {'names': None}}],
            'recovered_by_services[1].match',
            {'names': None},
        ),
        ([{'service': 'octavia', 'match': {}}], 'recovered_by_services[0].match', {}),
    ],
)
def test_an_entry_without_a_service_or_criteria_is_a_configuration_error(entries, option, value):
    with pytest.raises(_errors.NovahaError) as err:
        he.check_recovered_by_services(entries)
    assert err.value.kind == _errors.KIND_CONFIGURATION and err.value.result()['option'] == option
    assert err.value.msg.startswith(option) and 'Nothing was changed' in err.value.msg
    he.check_recovered_by_services(he.DEFAULT_RECOVERED_BY_SERVICES)
    he.check_recovered_by_services([])


def test_an_amphora_is_left_on_the_host_the_others_recovered_and_none_of_ours_to_finish_is_left(nova, clock):
    web = nova.add_server('web-1')
    amphora = nova.add_server(AMPHORA, project='svc')
    plan, summary, _counting = host_run(nova, clock, recovered_by_services=he.DEFAULT_RECOVERED_BY_SERVICES)
    assert summary['recovered'] == 1 and summary['skipped'] == 1 and summary['selected'] == 1
    assert nova.status(web)[0] == DST and nova.status(amphora) == (SRC, 'ACTIVE')
    assert nova.evacuate_count(amphora) == 0
    (skipped,) = plan.skipped
    assert (skipped['id'], skipped['kind'], skipped['service']) == (amphora, 'recovered_by_service', 'octavia')
    # With the option empty the same amphora is evacuated.
    plan, summary, _counting = host_run(nova, clock, recovered_by_services=[])
    assert summary['recovered'] == 1 and not plan.skipped and nova.status(amphora)[0] == DST


def test_an_amphora_whose_evacuation_an_earlier_run_started_is_finished(nova, clock):
    amphora = nova.add_server(AMPHORA, project='svc')
    nova.servers[amphora]['metadata'] = {he.NOTE_KEY: 'ACTIVE'}  # an evacuation of ours to finish
    plan, _summary, _counting = host_run(nova, clock, run=False, recovered_by_services=he.DEFAULT_RECOVERED_BY_SERVICES)
    assert [e.id for e in plan.evacuations] == [amphora] and not plan.skipped


# ---------------------------------------------------------------------------------------------------------
# a host an earlier run already recovered


def recovered_earlier(nova, phase='done', forced_down=True):
    """node-28 as run first1 left it: its servers moved to DST by it (one done evacuation each), the service
    forced down and disabled under first1's marker in ``phase``."""
    ids = [nova.add_server('web-%d' % i) for i in range(2)]
    marker = run.claim_marker(nova._svc(SRC), 'first1', 'awx-7@bb', he.utc('2025-11-21T11:49:00Z'), 300)
    marker.phase = phase
    nova.services[SRC].update(status='disabled', forced_down=forced_down, disabled_reason=marker.text())
    for sid in ids:
        nova.add_migration(sid, 'done')
        nova._set(sid, host=DST)
    return ids


def test_a_host_an_earlier_run_recovered_is_already_recovered_and_nothing_is_written(nova, clock):
    recovered_earlier(nova)
    plan, summary, _counting = host_run(nova, clock, run=False, run_id='second1')
    found = he.already_recovered(plan)
    assert found is not None and found.run_id == 'first1' and found.phase == 'done'
    assert summary is None and not nova.actions() and not nova.reasons


@pytest.mark.parametrize(
    'change',
    ['a server booted on the host since', 'the run was interrupted', 'the service is no longer forced down', 'a guard refuses', 'our lock is left'],
)
def test_a_host_is_recovered_again_unless_the_earlier_run_left_nothing_to_do(nova, clock, change):
    ids = recovered_earlier(nova, phase='interrupted' if change == 'the run was interrupted' else 'done')
    if change == 'a server booted on the host since':
        nova.add_server('web-new')
    elif change == 'the service is no longer forced down':
        nova.services[SRC]['forced_down'] = False
    elif change == 'a guard refuses':
        nova.services[DST]['status'] = nova.services[OTHER]['status'] = 'disabled'
    elif change == 'our lock is left':
        nova.servers[ids[0]].update(locked=True, locked_reason=_decisions.lock_reason(SRC, 'ACTIVE'))
    plan, _summary, _counting = host_run(nova, clock, run=False, run_id='second1')
    assert he.already_recovered(plan) is None, [(e.name, e.action) for e in plan.evacuations]


def test_the_preflight_claim_is_written_once_and_proven_by_the_next_write(nova, clock):
    # The role's preflight (os_host_evacuate claim=true): the plan's reading, then one read and one write of the
    # service; the isolate phase's module (another HostRun) reads it back at settled_at before it writes.
    counting = he.CountingNova(nova)
    evacuation = he.HostEvacuation(ev.Engine(counting, clock), controller='ctl@00', run_id='role0run1', joined=True)
    plan = evacuation.prepare(SRC)
    planned = counting.requests
    before = evacuation.claim(plan, read_back=False)
    assert before.kind == 'free' and counting.requests - planned == 2
    assert run.parse_marker(nova.services[SRC]['disabled_reason']).phase == 'claimed'
    settled_at = evacuation.run.settled_at
    assert settled_at == clock.now() + run.DEFAULT_SETTLE
    isolate = run.HostRun(nova, SRC, 'role0run1', clock, controller='ctl@00')
    proven = isolate.prove_claim(settled_at)
    assert clock.now() >= settled_at
    isolate.advance(run.PHASE_ISOLATED, forced_down=True, held=proven)
    assert nova.services[SRC]['forced_down'] is True
    assert run.parse_marker(nova.services[SRC]['disabled_reason']).phase == 'isolated'


def test_a_preflight_claim_taken_by_another_run_meanwhile_is_lost_before_any_write(nova, clock):
    engine = ev.Engine(he.CountingNova(nova), clock)
    evacuation = he.HostEvacuation(engine, controller='ctl@00', run_id='role0run1', joined=True)
    evacuation.claim(evacuation.prepare(SRC), read_back=False)
    other = 'novaha.recovery run other1 claimed ctl awx-2@cc start 20251121T120000Z beat 20251121T120000Z lease 300; was: enabled'
    nova.services[SRC]['disabled_reason'] = other
    writes = len(nova.reasons)
    isolate = run.HostRun(nova, SRC, 'role0run1', clock, controller='ctl@00')
    with pytest.raises(run.RunError) as err:
        isolate.prove_claim(evacuation.run.settled_at)
    assert err.value.kind == 'lost' and nova.services[SRC]['disabled_reason'] == other and len(nova.reasons) == writes


class LoggingNova(HostNova):
    """HostNova that notes every write, in order."""

    def __init__(self, clock):
        super(LoggingNova, self).__init__(clock)
        self.writes_in_order = []

    def request(self, method, path, microversion, body=None):
        if method != 'GET':
            self.writes_in_order.append((method, path, dict(body or {})))
        return super(LoggingNova, self).request(method, path, microversion, body)


def test_the_evacuate_phase_isolates_first_then_evacuates_in_one_run(clock):
    # os_host_evacuate isolate=true in the role: the plan, then the claim read back at settled_at, the service forced
    # down under the run's marker (phase isolated), and only then the evacuations.
    nova = LoggingNova(clock)
    nova.services[SRC]['forced_down'] = False
    sid = nova.add_server('web-1')
    run.HostRun(nova, SRC, 'role0run1', clock, controller='ctl@00').claim(read_back=False)
    settled_at = clock.now() + run.DEFAULT_SETTLE
    claimed = len(nova.writes_in_order)
    evacuation = he.HostEvacuation(ev.Engine(he.CountingNova(nova), clock), controller='ctl@00', run_id='role0run1', joined=True)
    plan = evacuation.prepare(SRC)
    host_run = evacuation.host_run(SRC)
    assert he.isolating_phase(plan) == 'evacuate' and he.isolating_phase(plan, check_mode=True) == 'isolate'
    assert he.ending_phase(plan) == 'end'
    host_run.move_to(run.PHASE_ISOLATED, settled_at)
    assert clock.now() >= settled_at
    summary = evacuation.execute(plan, poll_interval=2)
    assert summary['recovered'] == 1 and nova.status(sid) == (DST, 'ACTIVE')
    writes = nova.writes_in_order[claimed:]
    isolated = writes[0]
    assert isolated[0] == 'PUT' and isolated[2]['forced_down'] is True and ' isolated ctl ' in isolated[2]['disabled_reason']
    first_server_write = next(i for i, w in enumerate(writes) if w[1].startswith('/servers/'))
    assert first_server_write > 0 and all(w[1].startswith('/os-services/') for w in writes[:first_server_write])
