"""The watch over evacuated servers (os_host_info with list_host_servers=false, the verify phase): it reads the
services, the host's evacuations and the watched servers - by their ids, or in one listing of the servers changed
since the evacuation saw them - never a listing of every server."""

from engine_fakes import DST, SRC, HostNova, host_run
from nova_fakes import Clock

from ansible_collections.novaha.recovery.plugins.module_utils import _evacuation as ev, _host_evacuation as he, _report as rp


def test_the_watch_reads_each_evacuated_server_by_id_and_lists_no_servers():
    clock = Clock()
    nova = HostNova(clock)
    ids = [nova.add_server('web-%d' % i) for i in range(3)]
    left = nova.add_server('left-on-the-host')
    nova.services[SRC].update(state='down', forced_down=True)
    host_run(nova, clock, include={'names': ['web-*']})
    nova.calls.clear()

    watch = he.read_tracked(ev.Engine(nova, clock), SRC, ids + ['00000000-0000-4000-8000-00000000dead'])

    assert [s['host'] for s in watch['tracked'][:3]] == [DST] * 3
    assert watch['tracked'][3] == dict(id='00000000-0000-4000-8000-00000000dead', deleted=True)
    assert watch['servers'] == [] and watch['service']['host'] == SRC
    assert sorted(m['instance_uuid'] for m in watch['migrations']) == sorted(ids)
    paths = [path.split('?')[0] for method, path, _mv, _body in nova.calls if method == 'GET']
    assert paths.count('/servers/detail') == 0 and left not in ' '.join(paths)
    assert sorted(p for p in paths if p.startswith('/servers/')) == sorted('/servers/%s' % i for i in ids + ['00000000-0000-4000-8000-00000000dead'])
    assert paths.count('/os-services') == 1 and paths.count('/os-migrations') == 1


def test_the_verify_look_lists_the_servers_changed_since_the_evacuation_saw_them_once():
    clock = Clock()
    nova = HostNova(clock)
    ids = [nova.add_server('web-%d' % i) for i in range(20)]
    nova.add_server('left-on-the-host')
    nova.services[SRC].update(state='down', forced_down=True)
    plan, _summary, _counting = host_run(nova, clock, include={'names': ['web-*']})
    records = [e.record() for e in plan.evacuations]
    gone = ids[0]
    nova.servers[gone].update(status='DELETED', _updated_t=clock.t)
    clock.t += 30
    nova.calls.clear()

    since = rp.verify_since(records, ids + ['00000000-0000-4000-8000-00000000dead'])
    watch = he.read_tracked(ev.Engine(nova, clock), SRC, ids + ['00000000-0000-4000-8000-00000000dead'], since=since)

    assert since == min(r['after']['updated'] for r in records)
    assert [s['host'] for s in watch['tracked'][1:20]] == [DST] * 19
    assert watch['tracked'][0] == dict(id=gone, deleted=True)
    assert watch['tracked'][20] == dict(id='00000000-0000-4000-8000-00000000dead', deleted=True)
    # One listing for the twenty servers, whatever their number; a GET only for the one it does not show.
    gets = [path for method, path, _mv, _body in nova.calls if method == 'GET']
    assert [p.split('?')[0] for p in gets if p.startswith('/servers')] == ['/servers/detail', '/servers/00000000-0000-4000-8000-00000000dead']
    assert 'changes-since=' in [p for p in gets if p.startswith('/servers/detail')][0]
    assert len(gets) == 4


def test_the_verify_window_starts_at_the_earliest_view_and_is_none_without_one():
    records = [
        dict(id='a', after=dict(updated='2025-11-21T12:00:05Z')),
        dict(id='b', after=dict(updated='2025-11-21T11:59:58Z')),
        dict(id='c', after=None),  # moved by an earlier run: read by its id
        dict(id='d', after=dict(updated='2025-11-21T11:00:00Z')),  # not watched
    ]
    assert rp.verify_since(records, ['a', 'b', 'c']) == '2025-11-21T11:59:58Z'
    assert rp.verify_since(records, ['c']) is None
