"""Test fakes of Nova for the engine's small pieces: its services (for _run), paged listings; and ``Clock``, the
fake clock of every unit test (the engine's whole fake Nova is in engine_fakes.py).

A helper module, not a test file: test files import it (``from nova_fakes import ...``)."""

import datetime
import re
from urllib.parse import parse_qsl, urlsplit

from ansible_collections.novaha.recovery.plugins.module_utils import _nova

EPOCH = datetime.datetime(2025, 11, 21, 12, 0, 0, tzinfo=datetime.timezone.utc).timestamp()


class Clock(object):
    def __init__(self, t=EPOCH):
        self.t = t
        self.sleeps = []
        self.on_sleep = []  # callables run (and dropped) at the next sleep: another process acting meanwhile

    def now(self):
        return self.t

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.t += seconds
        actions, self.on_sleep = self.on_sleep, []
        for action in actions:
            action()


class ServiceNova(object):
    """GET /os-services (binary and host filters) and PUT /os-services/{id}, as Nova 2.53+ answers them.
    ``requests`` records (method, path, body); ``fail_next`` makes the next request answer an HTTP error;
    ``send_date`` False answers without a Date header (``last_date`` stays None)."""

    def __init__(self, clock, hosts=('node-28', 'node-27')):
        self.clock = clock
        self.services = dict(
            (
                h,
                dict(
                    id='svc-%s' % h,
                    binary='nova-compute',
                    host=h,
                    zone='nova',
                    state='down',
                    status='enabled',
                    forced_down=False,
                    disabled_reason=None,
                    updated_at='2025-11-21T11:50:00.000000',
                ),
            )
            for h in hosts
        )
        self.requests = []
        self.fail_next = None
        self.put_faults = []  # the next PUTs: (status, landed) each; landed: Nova did it, the answer was lost
        self.send_date = True
        self.last_date = None

    def request(self, method, path, microversion, body=None):
        self.requests.append((method, path, body))
        self.last_date = datetime.datetime.fromtimestamp(int(self.clock.t), datetime.timezone.utc) if self.send_date else None
        if self.fail_next:
            status, self.fail_next = self.fail_next, None
            raise _nova.NovaApiError(status, 'Service Unavailable', request_id='req-fail', method=method, path=path)
        parts = urlsplit(path)
        query = dict(parse_qsl(parts.query))
        if method == 'GET' and parts.path == '/os-services':
            found = [dict(s) for s in self.services.values() if all(s.get(k) == v for k, v in query.items())]
            return _nova.Response(200, {'services': found}, request_id='req-get', date=self.last_date)
        match = re.match(r'^/os-services/svc-(.+)$', parts.path)
        if method == 'PUT' and match:
            if self.put_faults:
                status, landed = self.put_faults.pop(0)
                if landed:
                    self.write(match.group(1), body)
                raise _nova.NovaApiError(
                    status, 'Service Unavailable' if status else 'no answer (connection reset)', request_id='req-put-fault', method=method, path=path
                )
            self.write(match.group(1), body)
            return _nova.Response(200, {'service': dict(self.services[match.group(1)])}, request_id='req-put', date=self.last_date)
        raise AssertionError('unexpected request %s %s' % (method, path))

    def write(self, host, body):
        """What Nova does with a PUT body (also used by tests to play another run writing)."""
        service = self.services[host]
        if 'status' in body:
            if body['status'] == 'enabled' and body.get('disabled_reason'):
                raise _nova.NovaApiError(400, 'Specifying a disabled_reason with status enabled is invalid.')
            service['status'] = body['status']
            service['disabled_reason'] = body.get('disabled_reason') if body['status'] == 'disabled' else None
        if 'forced_down' in body:
            service['forced_down'] = body['forced_down']

    def writes(self):
        return [body for method, _path, body in self.requests if method == 'PUT']


class PagingNova(object):
    """A listing of ``total`` items served ``per_page`` at a time with Nova's ``<key>_links`` next links."""

    def __init__(self, key, total, per_page):
        self.key = key
        self.items = [dict(id='item-%04d' % i) for i in range(total)]
        self.per_page = per_page
        self.requests = []

    def request(self, method, path, microversion, body=None):
        self.requests.append(path)
        query = dict(parse_qsl(urlsplit(path).query))
        start = 0
        if query.get('marker'):
            start = [i['id'] for i in self.items].index(query['marker']) + 1
        page = self.items[start : start + self.per_page]
        out = {self.key: page}
        if start + self.per_page < len(self.items):
            out[self.key + '_links'] = [dict(rel='next', href='%s&marker=%s' % (path, page[-1]['id']))]
        return _nova.Response(200, out)


class FailingNova(object):
    """Every request answers ``status`` (a compute API that stays down): ``nova`` (a ServiceNova) records it."""

    def __init__(self, nova, status=503):
        self._nova = nova
        self.status = status
        self.last_date = None

    def request(self, method, path, microversion, body=None):
        self._nova.fail_next = self.status
        return self._nova.request(method, path, microversion, body)
