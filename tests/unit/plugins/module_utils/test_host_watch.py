"""os_host_info with list_host_servers=false (the verify phase's watch): it reads the services, each watched
server by its id and the host's evacuations, never a listing of servers."""

from engine_fakes import DST, SRC, HostNova, host_run
from nova_fakes import Clock

from ansible_collections.novaha.recovery.plugins.module_utils import _evacuation as ev, _host_evacuation as he


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
