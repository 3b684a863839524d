"""Storage kinds, the volumes guard, the data-loss warning and the verification that volumes and ports followed
each server (module_utils/_storage.py and its use by the host evacuation), with fake Cinder and Neutron that
follow the fake Nova's servers the way the real ones do when Nova moves an attachment and a port binding."""

import pytest
from engine_fakes import SRC, HostNova

from ansible_collections.novaha.recovery.plugins.module_utils import _decisions, _evacuation as ev, _host_evacuation as he, _nova, _storage as st


class FakeCinder(object):
    """Volumes whose attachments are on the host of the server they are attached to (as after Nova's
    attachment_update), unless ``stuck`` keeps one on the host it was on at the start."""

    def __init__(self, nova):
        self.nova = nova
        self.volumes = {}
        self.stuck = set()
        self.fail_status = None
        self.calls = []

    def add(self, sid, vid, device, bootable=False, status='in-use', name=None):
        self.volumes[vid] = dict(
            id=vid,
            name=name,
            status=status,
            bootable=str(bootable).lower(),
            server=sid,
            device=device,
            first_host=self.nova.servers[sid]['OS-EXT-SRV-ATTR:host'],
        )
        self.nova.servers[sid].setdefault('os-extended-volumes:volumes_attached', []).append(dict(id=vid, delete_on_termination=False))

    def request(self, method, path, microversion=None, body=None):
        self.calls.append((method, path))
        if self.fail_status:
            raise _nova.NovaApiError(self.fail_status, 'Cinder is failing', method=method, path=path, request_id='req-cinder-1')
        vid = path.rsplit('/', 1)[-1]
        vol = self.volumes.get(vid)
        if vol is None:
            raise _nova.NovaApiError(404, 'Volume %s could not be found.' % vid, method=method, path=path)
        server = self.nova.servers[vol['server']]
        host = vol['first_host'] if vid in self.stuck else server['OS-EXT-SRV-ATTR:host']
        body = dict(
            id=vid,
            name=vol['name'],
            status=vol['status'],
            bootable=vol['bootable'],
            attachments=[dict(server_id=vol['server'], attachment_id='att-' + vid, host_name=host, device=vol['device'], volume_id=vid)],
        )
        return _nova.Response(200, {'volume': body}, request_id='req-c')


class FakeNeutron(object):
    """One port per server, bound to the server's host unless ``unbound`` holds it on the failed host."""

    def __init__(self, nova):
        self.nova = nova
        self.unbound = set()

    def request(self, method, path, microversion=None, body=None):
        sid = path.split('device_id=')[1]
        server = self.nova.servers[sid]
        host = SRC if sid in self.unbound else server['OS-EXT-SRV-ATTR:host']
        return _nova.Response(
            200, {'ports': [{'id': 'port-' + sid[:8], 'device_id': sid, 'binding:host_id': host, 'status': 'ACTIVE', 'mac_address': 'fa:16:3e:00:00:01'}]}
        )


@pytest.fixture
def nova(clock):
    return HostNova(clock)


def _server(nova, name, bfv=False, ephemeral=0, swap=0, extra_specs=None):
    sid = nova.add_server(name, bfv=bfv)
    flavor = nova.servers[sid]['flavor']
    flavor.update(ephemeral=ephemeral, swap=swap, extra_specs=dict(extra_specs or {}))
    nova.servers[sid]['os-extended-volumes:volumes_attached'] = []
    nova.servers[sid]['OS-EXT-SRV-ATTR:root_device_name'] = '/dev/vda'
    return sid


@pytest.fixture
def four(nova):
    """The issue's four servers on one failed host."""
    cinder = FakeCinder(nova)
    bfv = _server(nova, 'bfv')
    nova.servers[bfv]['image'] = ''
    cinder.add(bfv, 'vol-root', '/dev/vda', bootable=True)
    cinder.add(bfv, 'vol-data', '/dev/vdb')
    shared = _server(nova, 'shared', extra_specs={'storage:instance': 'shared'})
    local = _server(nova, 'local', ephemeral=1)
    local_data = _server(nova, 'local-data')
    cinder.add(local_data, 'vol-data2', '/dev/vdb')
    return dict(cinder=cinder, neutron=FakeNeutron(nova), bfv=bfv, shared=shared, local=local, local_data=local_data)


def host_run(nova, clock, cinder, neutron, run=True, microversion=None, **opts):
    engine = ev.Engine(he.CountingNova(nova), clock, microversion=microversion)
    evacuation = he.HostEvacuation(engine, controller='ctl@00', volume=cinder, network=neutron)
    plan = evacuation.prepare(SRC, shared_storage={'flavor_extra_specs': {'storage:instance': 'shared'}}, **opts)
    summary = evacuation.execute(plan, poll_interval=2) if run and not plan.failed_checks else None
    return plan, summary


# ---------------------------------------------------------------------------------------------------------
# Pure decisions


def test_storage_of_each_kind_and_what_it_loses():
    flavor = dict(disk=10, ephemeral=2, swap=512)
    local = st.storage_of(dict(id='a', image_id='img', volumes=['v1'], flavor=flavor))
    assert local['kind'] == st.STORAGE_LOCAL and local['data_volumes'] == ['v1'] and local['data_loss']
    assert [x['disk'] for x in local['lost']] == ['root', 'ephemeral', 'swap']
    shared = st.storage_of(dict(id='b', image_id='img', flavor=flavor), shared=True)
    assert shared['kind'] == st.STORAGE_SHARED and shared['lost'] == [] and not shared['data_loss']
    bfv = st.storage_of(dict(id='c', boot_from_volume=True, volumes=['r', 'd'], flavor=dict(disk=0)), root='r')
    assert bfv['kind'] == st.STORAGE_VOLUME and bfv['root_volume'] == 'r' and bfv['data_volumes'] == ['d']
    assert not bfv['data_loss']
    # A boot-from-volume server's flavor ephemeral disk is in the instance directory: lost unless shared.
    bfv_eph = st.storage_of(dict(id='d', boot_from_volume=True, volumes=['r'], flavor=dict(ephemeral=1)))
    assert [x['disk'] for x in bfv_eph['lost']] == ['ephemeral']


def test_root_volume_is_the_one_at_the_root_device_else_the_only_bootable():
    snap = dict(id='s', volumes=['a', 'b'], root_device='/dev/vda')
    vols = {
        'a': dict(bootable='false', attachments=[dict(server_id='s', device='/dev/vdb')]),
        'b': dict(bootable='true', attachments=[dict(server_id='s', device='/dev/vda')]),
    }
    assert st.root_volume(snap, vols) == 'b'
    snap['root_device'] = None
    assert st.root_volume(snap, vols) == 'b'
    vols['a']['bootable'] = 'true'
    assert st.root_volume(snap, vols) is None


def test_volume_guard_names_each_unusable_volume():
    snap = dict(id='s', name='db', volumes=['a', 'b', 'c'])
    assert st.volume_guard(snap, {'a': dict(status='in-use'), 'b': dict(status='in-use'), 'c': dict(status='in-use')}) is None
    reason = st.volume_guard(snap, {'a': dict(status='error', name='data'), 'b': dict(status='maintenance'), 'c': None})
    assert 'volume a (data) is error' in reason and 'volume b is maintenance' in reason
    assert 'volume c is attached in Nova but Cinder does not know it' in reason and 'db (s)' in reason


def test_judge_attachments_needs_every_volume_and_port_on_the_new_host():
    snap = dict(id='s', name='db', volumes=['a'])

    def on(host):
        return {'a': dict(status='in-use', attachments=[dict(server_id='s', host_name=host)])}

    def port(host):
        return [{'id': 'p', 'binding:host_id': host}]

    assert st.judge_attachments(snap, 'new', 'old', on('new'), port('new')) is None
    kind, reason = st.judge_attachments(snap, 'new', 'old', on('old'), port('new'))
    assert kind == st.KIND_VOLUME_NOT_MOVED and 'still has an attachment on the failed host old' in reason
    kind, reason = st.judge_attachments(snap, 'new', 'old', {'a': dict(status='available', attachments=[])}, [])
    assert kind == st.KIND_VOLUME_NOT_MOVED and 'no longer attached' in reason
    kind, reason = st.judge_attachments(snap, 'new', 'old', on('new'), port('old'))
    assert kind == st.KIND_PORT_NOT_BOUND and 'port p is bound to old' in reason
    # A cloud without Cinder or Neutron: not checked.
    assert st.judge_attachments(snap, 'new', 'old', None, None) is None


# ---------------------------------------------------------------------------------------------------------
# In the host run


def test_the_plan_shows_each_kind_and_warns_once_for_the_local_disks_only(nova, clock, four):
    plan, _summary = host_run(nova, clock, four['cinder'], four['neutron'], run=False)
    kinds = dict((e['name'], e['storage']['kind']) for e in plan.plan_list())
    assert kinds == {'bfv': st.STORAGE_VOLUME, 'shared': st.STORAGE_SHARED, 'local': st.STORAGE_LOCAL, 'local-data': st.STORAGE_LOCAL}
    by_name = dict((e['name'], e) for e in plan.plan_list())
    assert by_name['bfv']['storage']['root_volume'] == 'vol-root'
    assert by_name['bfv']['storage']['data_volumes'] == ['vol-data']
    assert by_name['local-data']['storage']['data_volumes'] == ['vol-data2']
    assert [a['host'] for a in by_name['bfv']['storage']['volume_states'][0]['attachments']] == [SRC]
    # Per server: disk warnings only where a disk is lost.
    assert not by_name['bfv']['warnings'] and not by_name['shared']['warnings']
    assert _decisions.WARNING_ROOT_DISK_LOST in by_name['local']['warning_kinds']
    assert _decisions.WARNING_DISK_RECREATED in by_name['local']['warning_kinds']
    # One warning for the run, first, with the number of servers concerned.
    assert plan.warnings[0].startswith('2 of 4 servers to evacuate lose data on local disks: local (')
    assert 'local-data (' in plan.warnings[0] and 'bfv (' not in plan.warnings[0]
    assert plan.storage_summary() == dict(kinds={st.STORAGE_VOLUME: 1, st.STORAGE_SHARED: 1, st.STORAGE_LOCAL: 2}, data_loss=2, local_ephemeral_skipped=0)
    assert not nova.actions()


def test_local_ephemeral_skip_leaves_them_alone_with_the_reason_and_next_command(nova, clock, four):
    plan, summary = host_run(nova, clock, four['cinder'], four['neutron'], local_ephemeral=st.LOCAL_SKIP)
    assert summary['recovered'] == 2 and summary['selected'] == 2 and summary['skipped'] == 2
    skipped = dict((s['name'], s) for s in plan.skipped)
    assert set(skipped) == {'local', 'local-data'}
    assert skipped['local']['kind'] == st.KIND_LOCAL_SKIPPED and 'local_ephemeral=skip' in skipped['local']['reason']
    assert skipped['local']['next_command'].startswith('openstack server evacuate %s' % four['local'])
    assert nova.status(four['local'])[0] == SRC and nova.status(four['local_data'])[0] == SRC
    assert not any('lose data' in w for w in plan.warnings)
    assert plan.storage_summary()['local_ephemeral_skipped'] == 2


def test_after_recovery_volumes_and_ports_are_verified_on_the_new_host(nova, clock, four):
    plan, summary = host_run(nova, clock, four['cinder'], four['neutron'])
    assert summary['recovered'] == 4 and summary['failed'] == 0
    rec = dict((e.name, e.record()) for e in plan.evacuations)['bfv']
    new_host = nova.status(four['bfv'])[0]
    after = rec['storage']['after']
    assert [a['host'] for v in after['volumes'] for a in v['attachments']] == [new_host, new_host]
    assert [p['host'] for p in after['ports']] == [new_host]


def test_an_attachment_left_on_the_failed_host_fails_the_server_with_the_next_command(nova, clock, four):
    four['cinder'].stuck.add('vol-data')
    plan, summary = host_run(nova, clock, four['cinder'], four['neutron'])
    assert summary['recovered'] == 3 and summary['failed'] == 1
    rec = dict((e.name, e.record()) for e in plan.evacuations)['bfv']
    assert rec['kind'] == st.KIND_VOLUME_NOT_MOVED and rec['outcome'] == 'failed'
    assert 'volume vol-data still has an attachment on the failed host %s' % SRC in rec['reason']
    assert rec['next_command'].startswith('openstack volume list --long --all-projects')
    assert nova.servers[four['bfv']]['locked'] is False  # failed servers are unlocked as any other


def test_a_port_not_bound_to_the_new_host_fails_the_server(nova, clock, four):
    four['neutron'].unbound.add(four['shared'])
    plan, summary = host_run(nova, clock, four['cinder'], four['neutron'])
    rec = dict((e.name, e.record()) for e in plan.evacuations)['shared']
    assert rec['kind'] == st.KIND_PORT_NOT_BOUND and 'is bound to %s' % SRC in rec['reason']
    assert 'openstack port list --server %s' % four['shared'] in rec['next_command']
    assert summary['recovered'] == 3


def test_a_volume_in_error_before_the_run_refuses_only_its_server(nova, clock, four):
    four['cinder'].volumes['vol-data2']['status'] = 'error'
    plan, summary = host_run(nova, clock, four['cinder'], four['neutron'])
    rec = dict((e.name, e.record()) for e in plan.evacuations)['local-data']
    assert rec['outcome'] == 'refused' and rec['kind'] == st.KIND_VOLUME_UNUSABLE
    assert 'volume vol-data2 is error' in rec['reason'] and rec['next_command'].startswith('openstack volume show')
    assert nova.evacuate_count(four['local_data']) == 0 and summary['recovered'] == 3


def test_cinder_failing_during_verification_says_so_with_its_message(nova, clock, four):
    cinder = four['cinder']
    plan = None
    engine = ev.Engine(he.CountingNova(nova), clock)
    evacuation = he.HostEvacuation(engine, controller='ctl@00', volume=cinder, network=four['neutron'])
    plan = evacuation.prepare(SRC)
    cinder.fail_status = 403
    summary = evacuation.execute(plan, poll_interval=2)
    recs = dict((e.name, e.record()) for e in plan.evacuations)
    assert recs['bfv']['kind'] == st.KIND_STORAGE_UNVERIFIED and 'Cinder is failing' in recs['bfv']['reason']
    assert 'could not be verified' in recs['bfv']['reason']
    assert recs['local']['outcome'] == 'recovered'  # no volume: nothing to read in Cinder
    assert summary['failed'] == 2


@pytest.mark.parametrize('mv, sent', [('2.13', {'shared': True, 'local': False, 'bfv': False}), (None, {'shared': None, 'local': None, 'bfv': None})])
def test_on_shared_storage_is_sent_per_server_below_2_14(nova, clock, four, mv, sent):
    plan, summary = host_run(nova, clock, four['cinder'], four['neutron'], microversion=mv)
    assert summary['recovered'] == 4
    bodies = dict((path.split('/')[2], body['evacuate']) for method, path, _mv, body in nova.calls if method == 'POST' and body and 'evacuate' in body)
    for name in sent:
        body = bodies[four[name.replace('-', '_')]]
        assert body.get('onSharedStorage') == sent[name], (name, body)


def test_the_live_progress_line_shows_the_disks(nova, clock, four):
    seen = []
    engine = ev.Engine(he.CountingNova(nova), clock)
    evacuation = he.HostEvacuation(engine, controller='ctl@00', volume=four['cinder'], network=four['neutron'])
    plan = evacuation.prepare(SRC)
    evacuation.execute(plan, poll_interval=2, on_progress=seen.append)
    line = he.progress_line(SRC, plan.run_id, seen[-1])
    assert '4 recovered' in line and '(1 boot_from_volume, 3 local_ephemeral; 3 lose local disks)' in line
