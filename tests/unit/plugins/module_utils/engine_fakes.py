"""Test fakes of Nova for the evacuation engine and the host run: ``FakeNova`` answers the compute API calls
the engine makes and moves servers the way Nova's API, conductor and computes do (nova/compute/api.py
evacuate, conductor rebuild_instance, compute _do_rebuild_instance / finish_evacuation), including the 2.95
"stopped at destination" rule; ``HostNova`` adds what a host run reads and writes (all services, servers of
a host, server groups, aggregates, hypervisors, service updates, metadata notes). Payloads are shaped as
Nova 34 returns them; time is nova_fakes.Clock.

A helper module, not a test file: test files import it (``from engine_fakes import ...``)."""

import copy
import datetime
import re
from urllib.parse import parse_qsl, urlsplit

from ansible_collections.novaha.recovery.plugins.module_utils import _evacuation as ev, _host_evacuation as he, _nova
from ansible_collections.novaha.recovery.plugins.module_utils._microversions import mv_str, parse_mv

SRC = 'node-1'
DST = 'node-2'
OTHER = 'node-3'

# A GET /servers/{id} answer of Nova 34 at microversion 2.96 (admin), trimmed of nothing the engine reads.
RECORDED_SERVER = {
    "server": {
        "accessIPv4": "",
        "accessIPv6": "",
        "addresses": {
            "private": [
                {"version": 4, "addr": "10.0.0.15", "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:4c:2c:30"},
                {"version": 4, "addr": "172.24.4.20", "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:4c:2c:30"},
            ]
        },
        "created": "2025-11-20T09:12:03Z",
        "flavor": {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 1, "swap": 0, "original_name": "m1.tiny", "extra_specs": {}},
        "hostId": "2091634baaccdc4c5a1d57069c833e402921df696b7f970791b12ec6",
        "id": "9168b536-cd40-4630-b43f-b259807c6e87",
        "image": {"id": "70a599e0-31e7-49b7-b260-868f441e862b", "links": [{"rel": "bookmark", "href": "http://127.0.0.1/images/70a599e0"}]},
        "links": [],
        "metadata": {"HA_Enabled": "True"},
        "name": "web-1",
        "status": "ACTIVE",
        "tenant_id": "6f70656e737461636b20342065766572",
        "user_id": "fake",
        "updated": "2025-11-20T09:12:10Z",
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": "nova",
        "config_drive": "",
        "key_name": None,
        "OS-SRV-USG:launched_at": "2025-11-20T09:12:09.000000",
        "OS-SRV-USG:terminated_at": None,
        "security_groups": [{"name": "default"}],
        "OS-EXT-SRV-ATTR:host": "node-1",
        "OS-EXT-SRV-ATTR:instance_name": "instance-00000001",
        "OS-EXT-SRV-ATTR:hypervisor_hostname": "node-1",
        "OS-EXT-SRV-ATTR:hostname": "web-1",
        "OS-EXT-SRV-ATTR:kernel_id": "",
        "OS-EXT-SRV-ATTR:launch_index": 0,
        "OS-EXT-SRV-ATTR:ramdisk_id": "",
        "OS-EXT-SRV-ATTR:reservation_id": "r-3fhpjulh",
        "OS-EXT-SRV-ATTR:root_device_name": "/dev/sda",
        "OS-EXT-SRV-ATTR:user_data": None,
        "OS-EXT-STS:task_state": None,
        "OS-EXT-STS:vm_state": "active",
        "OS-EXT-STS:power_state": 1,
        "os-extended-volumes:volumes_attached": [{"id": "3a8d9c1c-8c4e-4b8a-9f5e-0d3c8f1b2a11", "delete_on_termination": False}],
        "locked": False,
        "host_status": "DOWN",
        "description": None,
        "tags": [],
        "trusted_image_certificates": None,
        "server_groups": ["a0b3c8a4-94ad-4f2e-9b8c-cc1e2f1f0d11"],
        "locked_reason": None,
        "pinned_availability_zone": None,
    }
}

# GET /os-migrations?migration_type=evacuation at 2.59: a finished evacuation.
RECORDED_MIGRATION = {
    "created_at": "2025-11-20T09:30:01.000000",
    "dest_compute": "node-2",
    "dest_host": "192.168.0.12",
    "dest_node": "node-2",
    "id": 7,
    "instance_uuid": "9168b536-cd40-4630-b43f-b259807c6e87",
    "new_instance_type_id": 1,
    "old_instance_type_id": 1,
    "source_compute": "node-1",
    "source_node": "node-1",
    "status": "done",
    "updated_at": "2025-11-20T09:30:09.000000",
    "migration_type": "evacuation",
    "uuid": "42341d4b-346a-40d0-83c6-5f4f6892b650",
}

_STATUS = {  # nova/api/openstack/common.py _STATE_MAP, what the tests need of it
    ('active', None): 'ACTIVE',
    ('active', 'rebuilding'): 'REBUILD',
    ('active', 'rebuild_spawning'): 'REBUILD',
    ('active', 'powering-off'): 'ACTIVE',
    ('active', 'rebooting'): 'REBOOT',
    ('stopped', None): 'SHUTOFF',
    ('stopped', 'rebuilding'): 'REBUILD',
    ('stopped', 'powering-on'): 'SHUTOFF',
    ('error', None): 'ERROR',
    ('error', 'rebuilding'): 'REBUILD',
    ('paused', None): 'PAUSED',
    ('suspended', None): 'SUSPENDED',
    ('rescued', None): 'RESCUE',
    ('shelved', None): 'SHELVED',
    ('shelved_offloaded', None): 'SHELVED_OFFLOADED',
    ('resized', None): 'VERIFY_RESIZE',
    ('building', None): 'BUILD',
    ('deleted', None): 'DELETED',
}
_POWER = {'active': 1, 'stopped': 4, 'error': 0, 'paused': 3, 'suspended': 7}


def _iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


class FakeNova(object):
    """Nova's compute API as the engine sees it, driven by the fake clock."""

    def __init__(self, clock, max_mv='2.104', default_mv=None, old_computes=False):
        self.clock = clock
        self.max_mv = max_mv
        self.default_mv = default_mv
        self.old_computes = old_computes
        self.servers = {}
        self.migrations = []
        self.services = {SRC: dict(state='down', forced_down=True), DST: dict(state='up', forced_down=False), OTHER: dict(state='up', forced_down=False)}
        self.calls = []
        self.plans = {}  # server id -> how its next evacuation ends
        self.timeline = []  # (time, fn) applied when the clock passes time
        self.last_date = None
        self.send_date = True  # False: answers carry no Date header (last_date stays None)
        self._next_mig = 100
        self._req = 0
        self.faults = []  # outages: see outage()
        self.failed_calls = []  # (time, method, path) of the requests an outage failed

    # -- building the world ---------------------------------------------------------------------------

    def add_server(self, name, host=SRC, vm_state='active', task_state=None, locked=False, locked_reason=None, bfv=False, project='p-1', fault=None):
        sid = '%08d-0000-4000-8000-%012d' % (len(self.servers) + 1, len(self.servers) + 1)
        body = copy.deepcopy(RECORDED_SERVER['server'])
        body.update(id=sid, name=name, tenant_id=project, locked=locked, locked_reason=locked_reason)
        body['OS-EXT-SRV-ATTR:host'] = host
        body['OS-EXT-SRV-ATTR:hypervisor_hostname'] = host
        body['OS-EXT-STS:vm_state'] = vm_state
        body['OS-EXT-STS:task_state'] = task_state
        body['OS-EXT-STS:power_state'] = _POWER.get(vm_state, 0)
        body['addresses'] = {
            'private': [
                {
                    'version': 4,
                    'addr': '10.0.0.%d' % (len(self.servers) + 10),
                    'OS-EXT-IPS:type': 'fixed',
                    'OS-EXT-IPS-MAC:mac_addr': 'fa:16:3e:00:00:%02x' % len(self.servers),
                }
            ]
        }
        if bfv:
            body['image'] = ''
        if fault:
            body['fault'] = dict(code=500, created='2025-11-21T11:00:00Z', message=fault)
        self._touch(body)
        self.servers[sid] = body
        return sid

    def add_migration(self, sid, status, source=SRC, dest=DST):
        self._next_mig += 1
        mig = dict(
            RECORDED_MIGRATION,
            id=self._next_mig,
            instance_uuid=sid,
            status=status,
            source_compute=source,
            source_node=source,
            dest_compute=dest,
            dest_node=dest,
            uuid='mig-%d' % self._next_mig,
            created_at=_iso(self.clock.t),
            updated_at=_iso(self.clock.t),
        )
        self.migrations.append(mig)
        return mig

    def _touch(self, body):
        body['status'] = _STATUS.get((body['OS-EXT-STS:vm_state'], body['OS-EXT-STS:task_state']), 'UNKNOWN')
        body['updated'] = _iso(self.clock.t)
        body['_updated_t'] = self.clock.t
        if body['status'] not in ('ERROR', 'DELETED'):
            body.pop('fault', None)

    def _set(self, sid, **fields):
        body = self.servers[sid]
        for key, value in fields.items():
            body[
                {
                    'vm_state': 'OS-EXT-STS:vm_state',
                    'task_state': 'OS-EXT-STS:task_state',
                    'host': 'OS-EXT-SRV-ATTR:host',
                    'power': 'OS-EXT-STS:power_state',
                }.get(key, key)
            ] = value
        if 'host' in fields:
            body['OS-EXT-SRV-ATTR:hypervisor_hostname'] = fields['host']
        self._touch(body)

    def _mig_set(self, mig, status):
        mig['status'] = status
        mig['updated_at'] = _iso(self.clock.t)

    def at(self, delay, fn):
        self.timeline.append((self.clock.t + delay, fn))

    def _tick(self):
        due = sorted([item for item in self.timeline if item[0] <= self.clock.t], key=lambda item: item[0])
        self.timeline = [item for item in self.timeline if item[0] > self.clock.t]
        for _when, fn in due:
            fn()

    # -- the adapter interface ------------------------------------------------------------------------

    def microversion_range(self):
        # the pin as clouds.yaml / openstacksdk give it: a string such as '2.1' or '2.latest'
        return parse_mv('2.1'), parse_mv(self.max_mv), self.default_mv

    def outage(self, start_in, seconds, status=503, method=None, path=None, after_processing=False):
        """From ``start_in`` seconds from now, for ``seconds``: matching requests (``method``; ``path`` a regex)
        get ``status`` (None: no answer at all). ``after_processing``: Nova did the request, the answer was lost."""
        rule = dict(
            start=self.clock.t + start_in,
            end=self.clock.t + start_in + seconds,
            status=status,
            method=method,
            path=re.compile(path) if path else None,
            after=after_processing,
            hits=0,
        )
        self.faults.append(rule)
        return rule

    def _fault(self, method, path):
        for rule in self.faults:
            if rule['start'] <= self.clock.t < rule['end'] and (rule['method'] in (None, method)) and (rule['path'] is None or rule['path'].search(path)):
                rule['hits'] += 1
                return rule
        return None

    def request(self, method, path, microversion, body=None):
        self._tick()
        rule = self._fault(method, path)
        if rule is not None and not rule['after']:
            self.failed_calls.append((self.clock.t, method, path))
            raise _nova.NovaApiError(
                rule['status'], 'Service Unavailable' if rule['status'] else 'no answer from the compute API (Connection aborted)', method=method, path=path
            )
        if rule is not None:
            try:
                self.request_unfaulted(method, path, microversion, body)
            except _nova.NovaApiError:
                pass
            self.failed_calls.append((self.clock.t, method, path))
            raise _nova.NovaApiError(rule['status'], 'no answer (the request was done, its answer lost)', method=method, path=path)
        return self.request_unfaulted(method, path, microversion, body)

    def request_unfaulted(self, method, path, microversion, body=None):
        self.calls.append((method, path, mv_str(microversion), copy.deepcopy(body)))
        self._req += 1
        rid = 'req-%04d' % self._req
        self.last_date = datetime.datetime.fromtimestamp(int(self.clock.t), datetime.timezone.utc) if self.send_date else None
        url = urlsplit(path)
        query = parse_qsl(url.query)
        try:
            payload = self._route(method, url.path, dict(query), microversion, body, rid)
        except _nova.NovaApiError as err:
            err.details['request_id'] = rid
            raise
        return _nova.Response(200, payload, request_id=rid, date=self.last_date)

    def _error(self, status, message):
        raise _nova.NovaApiError(status, message)

    @staticmethod
    def _public(body, mv=None):
        shown = dict((k, v) for k, v in body.items() if not k.startswith('_'))
        if mv is not None and mv < (2, 73):
            shown.pop('locked_reason', None)  # nova/api/openstack/compute/views/servers.py: from 2.73
        return shown

    def _route(self, method, path, query, mv, body, rid):
        if method == 'GET' and path == '/servers/detail':
            since = query.get('changes-since')
            found = []
            for s in self.servers.values():
                if since and s['_updated_t'] < datetime.datetime.strptime(since, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc).timestamp():
                    continue
                if not since and s['status'] == 'DELETED':
                    continue
                if 'name' in query and not re.search(query['name'], s['name']):
                    continue
                found.append(self._public(s, mv))
            return {'servers': found}
        m = re.match(r'^/servers/([^/]+)$', path)
        if method == 'GET' and m:
            if m.group(1) not in self.servers:
                self._error(404, 'Instance %s could not be found.' % m.group(1))
            return {'server': self._public(self.servers[m.group(1)], mv)}
        if method == 'GET' and path == '/os-migrations':
            since = query.get('changes-since')
            out = []
            for mig in sorted(self.migrations, key=lambda x: x['id'], reverse=True):
                keys = ('instance_uuid', 'source_compute', 'migration_type')
                if any(query.get(k) and mig.get(k) != query[k] for k in keys):
                    continue
                if since and (mig['updated_at'] is None or mig['updated_at'] < since):
                    continue
                out.append(dict(mig))
            return {'migrations': out}
        if method == 'GET' and path == '/os-services':
            host = query.get('host')
            if host not in self.services:
                return {'services': []}
            svc = self.services[host]
            return {
                'services': [
                    dict(
                        id='svc-' + host,
                        binary='nova-compute',
                        host=host,
                        zone='nova',
                        status='disabled' if svc['forced_down'] else 'enabled',
                        state=svc['state'],
                        forced_down=svc['forced_down'],
                        disabled_reason=None,
                        updated_at='2025-11-21T11:59:00.000000',
                    )
                ]
            }
        m = re.match(r'^/servers/([^/]+)/action$', path)
        if method == 'POST' and m:
            return self._action(m.group(1), body, mv)
        raise AssertionError('unexpected request %s %s' % (method, path))

    def _action(self, sid, body, mv):
        if sid not in self.servers:
            self._error(404, 'Instance %s could not be found.' % sid)
        server = self.servers[sid]
        ((name, args),) = body.items()
        if name == 'lock':
            # nova/api/openstack/compute/schemas/lock_server.py: a body with locked_reason from 2.73 on only
            if args and mv < (2, 73):
                self._error(400, "Invalid input for field/attribute lock. Value: %s. %s is not of type 'null'" % (args, args))
            server['locked'] = True
            server['locked_reason'] = (args or {}).get('locked_reason')
            self._touch(server)
        elif name == 'unlock':
            server['locked'] = False
            server['locked_reason'] = None
            self._touch(server)
        elif name == 'os-resetState':
            self._set(sid, vm_state=args['state'], task_state=None)
        elif name == 'os-start':
            assert server['OS-EXT-STS:vm_state'] == 'stopped', 'os-start on a server that is not stopped'
            self._set(sid, task_state='powering-on')
            self.at(1, lambda: self._set(sid, vm_state='active', task_state=None, power=1))
        elif name == 'os-stop':
            self._set(sid, task_state='powering-off')
            self.at(1, lambda: self._set(sid, vm_state='stopped', task_state=None, power=4))
        elif name == 'evacuate':
            return self._evacuate(sid, args, mv)
        else:
            raise AssertionError(name)
        return None

    def _evacuate(self, sid, args, mv):
        server = self.servers[sid]
        # nova/api/openstack/compute/schemas/evacuate.py
        assert 'force' not in args or mv < (2, 68), 'force sent at %s' % mv_str(mv)
        if mv < (2, 14):
            assert 'onSharedStorage' in args
        else:
            assert 'onSharedStorage' not in args, 'onSharedStorage sent at %s' % mv_str(mv)
        if mv >= (2, 95) and self.old_computes:
            self._error(
                400,
                'Starting with microversion 2.95, evacuate API will stop instance on destination. '
                'To evacuate before upgrades are complete please use an older microversion. Required '
                'version for compute 62, current version 61',
            )
        host = server['OS-EXT-SRV-ATTR:host']
        target = args.get('host')
        if target and target not in self.services:
            self._error(404, 'Compute host %s not found.' % target)
        if target == host:
            self._error(400, "The target host can't be the same one.")
        if server['OS-EXT-STS:vm_state'] not in ('active', 'stopped', 'error') or server['OS-EXT-STS:task_state']:
            self._error(409, "Cannot 'evacuate' instance %s while it is in vm_state %s" % (sid, server['OS-EXT-STS:vm_state']))
        if self.services[host]['state'] == 'up':
            self._error(400, 'Compute service of %s is still in use.' % host)
        plan = self.plans.get(sid, {}).pop(0) if self.plans.get(sid) else {}
        self._next_mig += 1
        mig = dict(
            RECORDED_MIGRATION,
            id=self._next_mig,
            instance_uuid=sid,
            status='accepted',
            source_compute=host,
            source_node=host,
            dest_compute=target,
            dest_node=target,
            uuid='mig-%d' % self._next_mig,
            created_at=_iso(self.clock.t),
            updated_at=None,
        )
        self.migrations.append(mig)
        original = server['OS-EXT-STS:vm_state']
        self._set(sid, task_state='rebuilding')
        outcome = plan.get('outcome', 'done')
        dest = target or plan.get('dest', DST)
        if outcome == 'no_valid_host' or (target and plan.get('no_room_at_target')):

            def fail():
                self._mig_set(mig, 'error')
                self._set(sid, vm_state='error', task_state=None)
                server['fault'] = dict(code=500, created=_iso(self.clock.t), message='No valid host was found. There are not enough hosts available.')

            self.at(1, fail)
            return None
        if outcome == 'compute_failed':

            def cfail():
                self._mig_set(mig, 'failed')
                self._set(sid, vm_state='error', task_state=None)
                server['fault'] = dict(code=500, created=_iso(self.clock.t), message='Virtual Interface creation failed')

            self.at(2, cfail)
            return None
        if outcome == 'stuck':
            return None
        delay = plan.get('delay', 3)

        def claim():
            mig['dest_compute'] = mig['dest_node'] = dest
            self._mig_set(mig, 'pre-migrating')
            self._set(sid, task_state='rebuild_spawning')

        def finish():
            # compute _do_rebuild_instance: target_state STOPPED from 2.95 unless the server was in ERROR
            stop = original == 'stopped' or (mv >= (2, 95) and original != 'error')
            self._set(sid, host=dest, vm_state='stopped' if stop else 'active', task_state=None, power=4 if stop else 1)
            if plan.get('new_port'):
                new = {'version': 4, 'addr': '10.0.0.250', 'OS-EXT-IPS:type': 'fixed', 'OS-EXT-IPS-MAC:mac_addr': 'fa:16:3e:ff:ff:ff'}
                self.servers[sid]['addresses'] = {'private': [new]}
            self._mig_set(mig, 'done')

        self.at(1, claim)
        self.at(delay, finish)
        return None

    # -- what the tests look at -----------------------------------------------------------------------

    def actions(self, sid=None):
        out = []
        for method, path, mv, body in self.calls:
            if method == 'POST' and (sid is None or path == '/servers/%s/action' % sid):
                out.append((list(body)[0], mv, body))
        return out

    def status(self, sid):
        s = self.servers[sid]
        return s['OS-EXT-SRV-ATTR:host'], s['status']


class HostNova(FakeNova):
    """The engine's fake Nova plus what a host run reads and writes."""

    def __init__(self, clock, **kw):
        super(HostNova, self).__init__(clock, **kw)
        self.services[SRC].update(status='enabled', disabled_reason=None)
        self.services[DST].update(status='enabled', disabled_reason=None)
        self.services[OTHER].update(status='enabled', disabled_reason=None)
        self.groups = []
        self.windows = {}  # migration id -> [issued, done]
        self.reasons = []  # every disabled reason written
        self.notes = []  # metadata notes written and removed

    def _svc(self, host):
        s = self.services[host]
        return dict(
            id='svc-' + host,
            binary='nova-compute',
            host=host,
            zone='nova',
            state=s['state'],
            status=s.get('status', 'enabled'),
            forced_down=s['forced_down'],
            disabled_reason=s.get('disabled_reason'),
            updated_at='2025-11-21T11:59:00.000000',
        )

    def _route(self, method, path, query, mv, body, rid):
        if method == 'GET' and path == '/os-services':
            found = [self._svc(h) for h in sorted(self.services)] + [
                dict(id='svc-sched', binary='nova-scheduler', host='ctl', state='up', status='enabled', forced_down=False, disabled_reason=None)
            ]
            return {'services': [s for s in found if all(s.get(k) == v for k, v in query.items())]}
        m = re.match(r'^/os-services/svc-(.+)$', path)
        if method == 'PUT' and m:
            s = self.services[m.group(1)]
            s['status'] = body.get('status', s.get('status', 'enabled'))
            s['disabled_reason'] = body.get('disabled_reason') if s['status'] == 'disabled' else None
            if 'forced_down' in body:
                s['forced_down'] = body['forced_down']
            self.reasons.append(s['disabled_reason'])
            return {'service': self._svc(m.group(1))}
        if method == 'GET' and path == '/servers/detail' and 'host' in query:
            found = super(HostNova, self)._route(method, path, query, mv, body, rid)['servers']
            return {'servers': [s for s in found if s['OS-EXT-SRV-ATTR:host'] == query['host']]}
        m = re.match(r'^/servers/([^/]+)/metadata/(.+)$', path)
        if m and method in ('PUT', 'DELETE'):
            meta = self.servers[m.group(1)].setdefault('metadata', {})
            self.notes.append((method, m.group(1), m.group(2)))
            if method == 'PUT':
                meta.update(body['meta'])
                return {'meta': body['meta']}
            if m.group(2) not in meta:
                self._error(404, 'Metadata item was not found')
            del meta[m.group(2)]
            return None
        if method == 'GET' and path == '/os-server-groups':
            return {'server_groups': list(self.groups)}
        if method == 'GET' and path == '/os-aggregates':
            return {'aggregates': []}
        if method == 'GET' and path == '/os-hypervisors/detail':
            return {
                'hypervisors': [
                    dict(
                        id='rp-' + h,
                        hypervisor_hostname=h,
                        service=dict(host=h),
                        vcpus=16,
                        vcpus_used=0,
                        memory_mb=8192,
                        memory_mb_used=0,
                        local_gb=100,
                        local_gb_used=0,
                    )
                    for h in sorted(self.services)
                ]
            }
        return super(HostNova, self)._route(method, path, query, mv, body, rid)

    def _evacuate(self, sid, args, mv):
        out = super(HostNova, self)._evacuate(sid, args, mv)
        mig = self.migrations[-1]
        self.windows[mig['id']] = [self.clock.t, None]
        return out

    def _mig_set(self, mig, status):
        super(HostNova, self)._mig_set(mig, status)
        if status in ('done', 'error', 'failed') and mig['id'] in self.windows:
            self.windows[mig['id']][1] = self.clock.t

    def max_overlap(self):
        events = []
        for start, end in self.windows.values():
            events += [(start, 1), (end if end is not None else float('inf'), -1)]
        peak = current = 0
        for _t, delta in sorted(events, key=lambda e: (e[0], e[1])):
            current += delta
            peak = max(peak, current)
        return peak

    def evacuate_count(self, sid):
        return len([a for a, _m, _b in self.actions(sid) if a == 'evacuate'])


def host_run(nova, clock, run=True, controller='ctl@00', run_id=None, progress=None, microversion=None, **opts):
    run_opts = dict((k, opts.pop(k)) for k in ('timeout', 'poll_interval', 'retries', 'max_parallel', 'window') if k in opts)
    run_opts.setdefault('poll_interval', 2)
    counting = he.CountingNova(nova)
    engine = ev.Engine(counting, clock, microversion=microversion, senders=opts.pop('senders', 1))
    evacuation = he.HostEvacuation(engine, controller=controller, run_id=run_id)
    plan = evacuation.prepare(SRC, **opts)
    summary = None
    if run and not plan.failed_checks:
        summary = evacuation.execute(plan, on_progress=progress, **run_opts)
    return plan, summary, counting
