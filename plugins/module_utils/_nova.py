# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way the collection talks to the compute API: an adapter, its errors, listings over pages, the clock.

No Ansible imports. ``SdkNova`` wraps an openstacksdk Connection and sends every request at an explicit
microversion; unit tests pass a fake with the same ``request`` / ``microversion_range`` / ``last_date``. An error
answer is a ``NovaApiError`` (a ``NovahaError``); ``explain_api_error`` phrases it with what was being done.

- one request at a microversion ........................ ``SdkNova.request`` (``Response``)
- what the cloud offers ................................ ``SdkNova.microversion_range``
- an error answer phrased for the operator ............. ``explain_api_error``
- is an error worth trying again ........................ ``transient``
- how long to wait before trying again ................. ``backoff``
- reads that ride out a short outage ..................... ``RetryingReads``
- a listing followed over all its pages ................ ``list_all``
- the local clock (injected everywhere) ................ ``SystemClock``
"""

from __future__ import annotations

import datetime
import email.utils
import time
from urllib.parse import urlencode

from ansible_collections.novaha.recovery.plugins.module_utils._errors import (
    KIND_API,
    KIND_FORBIDDEN,
    KIND_NOT_FOUND,
    EvacuationError,
    NovahaError,
)
from ansible_collections.novaha.recovery.plugins.module_utils._microversions import mv_str, parse_mv

# ---------------------------------------------------------------------------------------------------------
# Errors


class NovaApiError(NovahaError):
    """An error answer of the compute API, or no answer at all (``status_code`` None). ``message`` is Nova's
    own message; ``explain_api_error`` phrases it for the operator with what was being done."""

    def __init__(self, status_code, message, request_id=None, method=None, path=None, retry=None):
        super(NovaApiError, self).__init__(
            '%s %s: %s%s' % (method, path, 'HTTP %s: ' % status_code if status_code is not None else '', message),
            kind=KIND_API,
            http_status=status_code,
            request_id=request_id,
        )
        self.status_code = status_code
        self.message = message
        self.retry = retry  # None: judged from the status (``transient``)
        self.method = method
        self.path = path


# Answers that say the API, not the request, failed: Nova's own 500 (its database or message bus gone), a
# gateway's 502/504, an API or load balancer that is unavailable (503). With no answer at all (status None)
# they are the transient failures: a read is sent again; an action is never sent again blindly (the engine
# first looks whether it took effect).
TRANSIENT_STATUSES = frozenset([500, 502, 503, 504])


def transient(err):
    """No answer, or an answer that says the API failed rather than the request: worth trying again later."""
    if not isinstance(err, NovaApiError):
        return False
    if err.retry is not None:
        return err.retry
    return err.status_code is None or err.status_code in TRANSIENT_STATUSES


def backoff(attempt, cap, base=1.0):
    """Seconds to wait after failed try ``attempt`` (0 for the first) before the next: ``base``, doubling with
    each failure (16 times at most), never more than ``cap``; base 1, cap 8: 1, 2, 4, 8, 8 ... The one backoff of
    the collection: each caller keeps its own cap and its own limit (tries or seconds)."""
    return min(float(cap), base * 2.0 ** min(attempt, 16))


def call(nova, method, path, microversion, doing, body=None):
    """One request through ``nova``; an error answer raises ``explain_api_error(err, doing)``."""
    try:
        return nova.request(method, path, microversion, body)
    except NovaApiError as err:
        raise explain_api_error(err, doing)


def explain_api_error(err, doing):
    """An EvacuationError (a NovahaError) for an HTTP error of the compute API while ``doing`` something."""
    if err.status_code == 403:
        msg = '%s was refused: forbidden (%s); this needs an account with the admin role' % (doing, err.message)
        kind = KIND_FORBIDDEN
    elif err.status_code == 401:
        msg = '%s was refused: the cloud rejected the credentials (%s)' % (doing, err.message)
        kind = KIND_FORBIDDEN
    elif err.status_code == 404:
        msg = '%s failed: not found (%s)' % (doing, err.message)
        kind = KIND_NOT_FOUND
    else:
        msg = '%s failed: %s' % (doing, err.message)
        kind = KIND_API
    facts = ['HTTP %s' % err.status_code] if err.status_code is not None else []
    if err.request_id:
        facts.append('request id %s' % err.request_id)
    if facts:
        msg = '%s (%s)' % (msg, ', '.join(facts))
    return EvacuationError(msg, kind=kind, request_id=err.request_id, http_status=err.status_code)


# ---------------------------------------------------------------------------------------------------------
# The adapter and the clock


class Response(object):
    def __init__(self, status, body, request_id=None, date=None):
        self.status = status
        self.body = body
        self.request_id = request_id
        self.date = date


def answer(resp, method, path, date=None):
    """A keystoneauth response as a ``Response`` (its JSON body and request id); an error answer raises
    ``NovaApiError`` with the service's own message (Nova's, Placement's or Glance's wrapping)."""
    headers = resp.headers or {}
    request_id = headers.get('x-openstack-request-id') or headers.get('x-compute-request-id')
    payload = None
    if resp.content:
        try:
            payload = resp.json()
        except ValueError:
            payload = None
    if resp.status_code >= 400:
        text = resp.text if isinstance(getattr(resp, 'text', None), str) else ''
        raise NovaApiError(resp.status_code, _nova_message(payload, text.strip()[:300] or resp.reason), request_id=request_id, method=method, path=path)
    return Response(resp.status_code, payload, request_id=request_id, date=date)


def _nova_message(payload, fallback):
    """Nova wraps errors as {"badRequest": {"message": ..., "code": 400}}."""
    if isinstance(payload, dict):
        for value in payload.values():
            if isinstance(value, dict) and value.get('message'):
                return str(value['message'])
        if payload.get('message'):
            return str(payload['message'])
    return fallback


def _http_date(value):
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


class SdkNova(object):
    """The compute API through an openstacksdk Connection, at an explicit microversion per request.

    Requests are raw on purpose: openstacksdk's evacuate_server negotiates its own microversion (up to
    2.100 today), and the engine must choose it deliberately.
    """

    def __init__(self, conn):
        self._compute = conn.compute
        self.last_date = None

    def microversion_range(self):
        """(min, max, client pin): what the endpoint announces, and clouds.yaml's ``compute_api_version`` as written
        (reported, never used for a request: ``choose_microversions``).

        From keystoneauth's version discovery when it has it, else from the compute API's version document (a
        GET on the endpoint itself); an unreachable API raises, it is never taken for "2.1 only"."""
        data = self._compute.get_endpoint_data()
        low = parse_mv(getattr(data, 'min_microversion', None)) if data is not None else None
        high = parse_mv(getattr(data, 'max_microversion', None)) if data is not None else None
        if high is None:
            low, high = self._version_document()
        return low, high, getattr(self._compute, 'default_microversion', None)

    def _version_document(self):
        try:
            resp = self._compute.get('/', raise_exc=False)
        except _transport_errors() as exc:
            raise NovaApiError(None, 'no answer from the compute API (%s)' % exc, method='GET', path='/')
        try:
            document = resp.json() if resp.content else {}
        except ValueError:
            document = {}
        if resp.status_code >= 400:
            raise NovaApiError(resp.status_code, _nova_message(document, resp.reason), method='GET', path='/')
        version = (document or {}).get('version') or {}
        return parse_mv(version.get('min_version') or None), parse_mv(version.get('version') or None)

    # A GET that met a dropped connection is sent again: the API's web server (gunicorn, Apache, HAProxy)
    # closes idle keep-alive connections after a few seconds, about as long as a poll interval, and a
    # request sent on one it is closing gets no answer at all. Actions are not resent blindly: the engine
    # decides (an evacuate may have been accepted before the connection dropped).
    GET_CONNECT_RETRIES = 3

    def request(self, method, path, microversion, body=None):
        kwargs = dict(microversion=mv_str(microversion), raise_exc=False, connect_retries=self.GET_CONNECT_RETRIES if method == 'GET' else 0)
        if body is not None:
            kwargs['json'] = body
        try:
            resp = self._compute.request(path, method, **kwargs)
        except _transport_errors() as exc:
            raise NovaApiError(None, 'no answer from the compute API (%s)' % exc, method=method, path=path)
        except _auth_errors() as exc:
            # keystoneauth renews the token inside a request (the old one expired): an error of Keystone then
            # is an error of this request, never a traceback that ends the run without a result per server.
            status = getattr(exc, 'http_status', None)
            raise NovaApiError(
                status,
                'renewing the token with Keystone failed (%s: %s)' % (type(exc).__name__, exc),
                method=method,
                path=path,
                retry=status is not None and status in TRANSIENT_STATUSES,
            )
        self.last_date = _http_date((resp.headers or {}).get('date')) or self.last_date
        return answer(resp, method, path, date=self.last_date)


def _transport_errors():
    """keystoneauth's "no HTTP answer" exceptions (refused, reset, timed out, TLS)."""
    try:
        from keystoneauth1 import exceptions as ksa_exc
    except ImportError:
        return ()
    return (ksa_exc.ConnectionError,)


def _auth_errors():
    """keystoneauth's errors of the token renewal it does inside a request (Keystone down, 5xx, refused)."""
    try:
        from keystoneauth1 import exceptions as ksa_exc
    except ImportError:
        return ()
    return (ksa_exc.ClientException,)


class NovaWrapper(object):
    """An adapter around another (the same ``request`` / ``microversion_range`` / ``last_date``): subclasses add
    to ``request`` and pass the rest through."""

    def __init__(self, nova):
        self._nova = nova

    @property
    def last_date(self):
        return self._nova.last_date

    def microversion_range(self):
        return self._nova.microversion_range()

    def request(self, method, path, microversion, body=None):
        return self._nova.request(method, path, microversion, body)


class RetryingReads(NovaWrapper):
    """A compute API adapter whose reads ride out a short outage: a GET that failed transiently is sent again
    after 1, 2, 4, 8, 8 ... seconds until ``budget`` seconds have passed, then the last error is raised. Actions
    (POST, PUT, DELETE) are sent once: whether one took effect is for the caller to find out."""

    def __init__(self, nova, clock, budget=30.0):
        super(RetryingReads, self).__init__(nova)
        self.clock = clock
        self.budget = float(budget)
        self.retried = []  # (method, path, error message) of every read sent again

    def request(self, method, path, microversion, body=None):
        if method != 'GET':
            return self._nova.request(method, path, microversion, body)
        start = self.clock.now()
        failures = 0
        while True:
            try:
                return self._nova.request(method, path, microversion, body)
            except NovaApiError as err:
                delay = backoff(failures, cap=8.0)
                if not transient(err) or self.clock.now() + delay - start > self.budget:
                    raise
                self.retried.append((method, path, err.msg))
            self.clock.sleep(delay)
            failures += 1


class SystemClock(object):
    def now(self):
        return time.time()

    def sleep(self, seconds):
        if seconds > 0:
            time.sleep(seconds)


def isotime(epoch):
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def query(path, params):
    """``path`` with its query string (parameters whose value is None are left out)."""
    params = [(k, v) for k, v in params if v is not None]
    return '%s?%s' % (path, urlencode(params)) if params else path


def list_all(nova, path, params, key, microversion, limit_pages=100):
    """A listing followed over its pages (Nova pages at [api]max_limit). Returns (items, server date)."""
    items = []  # type: list
    date = None
    marker = None
    for _page in range(limit_pages):
        resp = nova.request('GET', query(path, list(params) + [('marker', marker)]), microversion)
        date = date or resp.date
        page = (resp.body or {}).get(key) or []
        items.extend(page)
        links = (resp.body or {}).get(key + '_links') or []
        if not page or not any(link.get('rel') == 'next' for link in links):
            break
        marker = page[-1].get('uuid') or page[-1].get('id')
    else:
        # A cut list would silently leave servers or migrations out of every decision made from it.
        raise EvacuationError(
            'listing %s stopped after %d pages (%d items) with more still to come; nothing is '
            'decided from a partial list. Raise Nova\'s [api]max_limit, or narrow the listing' % (path, limit_pages, len(items)),
            kind=KIND_API,
        )
    return items, date
