# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The evacuation engine: plan, issue, watch and verify the evacuation of servers off a failed host.

No Ansible imports. The compute API is reached through a small adapter (``SdkNova`` wraps an
openstacksdk Connection; unit tests pass a fake with the same ``request``/``microversion_range``/
``last_date``), and time through an injected clock, so every decision runs in tests without a cloud.

One function per decision, so a reader finds each in exactly one place:

- what a server looks like before and after ........ ``snapshot``
- whether its state can be evacuated ................ ``classify``
- what happens to it (evacuate, wait, nothing) ...... ``decide``
- which microversions are used ...................... ``choose_microversions``
- what the evacuate request carries ................. ``evacuate_request``
- whether it is recovered, failed or in progress .... ``judge``
- whether a failed attempt is retried ............... ``retry_decision``

Behaviour pinned to Nova's code (nova/api/openstack/compute/evacuate.py, nova/compute/api.py,
nova/compute/manager.py, nova/conductor/manager.py, Nova 34 / API 2.104):

- Evacuable vm_states are active, stopped and error, with no task in progress.
- Below 2.14 the request must carry ``onSharedStorage``; from 2.14 on it must not.
- 2.29 to 2.67 accept ``force``; this engine never sends it (it would bypass the scheduler), and 2.68+
  reject it. Below 2.29 a target host always bypasses the scheduler: the plan warns about it.
- Up to 2.94 Nova gives the evacuated server back the power state it had (ACTIVE stays ACTIVE, SHUTOFF
  stays SHUTOFF): one request per server. The engine evacuates at 2.94 unless told otherwise.
- From 2.95 Nova stops the server at the destination (except a server in ERROR, which it rebuilds
  and leaves ACTIVE). Asked for 2.95 or later, the engine returns an originally ACTIVE server to ACTIVE
  by starting it; an originally SHUTOFF server stays SHUTOFF at every microversion, and an originally
  ERROR server ends ACTIVE at every microversion (Nova rebuilds and spawns it; ERROR was never a running
  state to keep).
- The API creates the evacuation migration record (status ``accepted``) before it answers; the
  conductor sets ``error`` (no valid host), the destination compute ``pre-migrating``, then ``done``
  after it moved the instance's host, or ``failed``; the source compute sets ``completed`` when it
  comes back and cleans up.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import re
import time

from urllib.parse import urlencode

from ansible_collections.novaha.recovery.plugins.module_utils._microversions import (
    MV_BASE, MV_EVACUATE_DEFAULT, MV_EVACUATE_STOPS, MV_LOCK_REASON, MV_MIGRATIONS, MV_MINIMUM, MV_READ, MV_SERVICES,
    MV_SERVICES_FORCED_DOWN, MV_SHARED_STORAGE_GONE, MV_TARGET_SCHEDULED, mv_str, parse_mv,
)

# ---------------------------------------------------------------------------------------------------------
# Vocabulary

OUTCOME_PLANNED = 'planned'            # check mode: what would be done
OUTCOME_NOTHING_TO_DO = 'nothing_to_do'
OUTCOME_REFUSED = 'refused'            # not touched: state, host not fenced, not on the expected host
OUTCOME_PENDING = 'pending'            # selected but never started (a run ended first)
OUTCOME_IN_PROGRESS = 'in_progress'
OUTCOME_RECOVERED = 'recovered'
OUTCOME_FAILED = 'failed'

ACTION_EVACUATE = 'evacuate'
ACTION_WAIT = 'wait'                  # an evacuation is already in flight: adopt it, issue nothing
ACTION_RECONCILE = 'reconcile'        # evacuated earlier by us: finish (start/stop, unlock) only
ACTION_NONE = 'none'
ACTION_REFUSE = 'refuse'

# Why an evacuation could not be done; retry_decision and next_command key on these.
KIND_STATE = 'state'
KIND_NOT_FENCED = 'not_fenced'
KIND_ELSEWHERE = 'not_on_source'
KIND_NO_HOST = 'no_host'
KIND_BAD_TARGET = 'bad_target'
KIND_FORBIDDEN = 'forbidden'
KIND_NOT_FOUND = 'not_found'
KIND_NO_VALID_HOST = 'no_valid_host'
KIND_EVACUATION_FAILED = 'evacuation_failed'
KIND_POWER = 'power_action_failed'
KIND_IDENTITY = 'identity_changed'
KIND_DELETED = 'deleted'
KIND_API = 'api_error'
KIND_TIMEOUT = 'timeout'

NOT_RETRYABLE = frozenset([KIND_STATE, KIND_NOT_FENCED, KIND_ELSEWHERE, KIND_NO_HOST, KIND_BAD_TARGET,
                           KIND_FORBIDDEN, KIND_NOT_FOUND, KIND_IDENTITY, KIND_DELETED, KIND_POWER])

MIGRATION_DONE = frozenset(['done', 'completed'])
MIGRATION_FAILED = frozenset(['error', 'failed'])

# Nova's numeric power states (nova/compute/power_state.py).
POWER_STATES = {0: 'NOSTATE', 1: 'RUNNING', 3: 'PAUSED', 4: 'SHUTDOWN', 6: 'CRASHED', 7: 'SUSPENDED'}

# Final status per original vm_state. Only active/stopped/error are evacuable as they are; the rest
# only after an opted-in state reset, their guest state (memory, rescue image) lives on the dead host.
EXPECTED_STATUS = {
    'active': 'ACTIVE',
    'stopped': 'SHUTOFF',
    'error': 'ACTIVE',
    'paused': 'ACTIVE',
    'suspended': 'ACTIVE',
    'rescued': 'ACTIVE',
}
RESETTABLE_VM_STATES = frozenset(['active', 'stopped', 'error', 'paused', 'suspended', 'rescued'])

# Kinds of the warnings a server's record carries (``warning_kinds``, one per warning).
WARNING_ROOT_DISK_LOST = 'root_disk_lost'      # image-booted, no shared storage: the root disk is rebuilt
WARNING_DISK_RECREATED = 'disk_recreated'      # an ephemeral or swap disk is recreated empty
WARNING_OTHER = 'other'

LOCK_REASON_PREFIX = 'novaha.recovery:'
_LOCK_REASON_RE = re.compile(r'^novaha\.recovery: evacuating from (?P<source>\S+) \(was (?P<status>[A-Z_]+)\)')

HIDDEN = '<hidden>'

# ---------------------------------------------------------------------------------------------------------
# Microversions (the constants and their parser: _microversions.py)


class Microversions(object):
    """The microversion of each kind of request, chosen once per run."""

    def __init__(self, evacuate, read, lock, migrations, services, cloud_max, negotiated):
        self.evacuate = evacuate
        self.read = read
        self.lock = lock
        self.migrations = migrations
        self.services = services
        self.cloud_max = cloud_max
        self.negotiated = negotiated  # False when the operator asked for the evacuate microversion

    @property
    def evacuate_stops_server(self):
        return self.evacuate >= MV_EVACUATE_STOPS

    @property
    def lock_reason(self):
        return self.lock >= MV_LOCK_REASON

    def to_dict(self):
        return dict(
            evacuate=mv_str(self.evacuate),
            read=mv_str(self.read),
            lock=mv_str(self.lock),
            migrations=mv_str(self.migrations),
            services=mv_str(self.services),
            cloud_max=mv_str(self.cloud_max),
            negotiated=self.negotiated,
            evacuate_stops_server=self.evacuate_stops_server,
            sends_on_shared_storage=self.evacuate < MV_SHARED_STORAGE_GONE,
            target_host_checked_by_scheduler=self.evacuate >= MV_TARGET_SCHEDULED,
        )


def choose_microversions(cloud_min, cloud_max, requested=None, client_default=None):
    """Choose the microversion of each request from what the cloud offers.

    ``requested`` is the operator's explicit evacuate microversion (the module's ``microversion``
    option), used as given. Otherwise 2.94 (``MV_EVACUATE_DEFAULT``), lowered to a
    ``compute_api_version`` pinned in clouds.yaml (``client_default``) and to the cloud's maximum.
    Reads are separate from the evacuate request and use what they need.
    """
    low = parse_mv(cloud_min) or MV_BASE
    high = parse_mv(cloud_max)
    if high is None:
        raise EvacuationError('the compute API announces no microversions; this engine needs %s or later'
                              % mv_str(MV_MINIMUM), kind=KIND_API)
    if high < MV_MINIMUM:
        raise EvacuationError('the compute API offers microversions up to %s; finding evacuation migrations '
                              'needs %s or later' % (mv_str(high), mv_str(MV_MINIMUM)), kind=KIND_API)
    try:
        wanted = parse_mv(requested)
    except ValueError:
        raise EvacuationError('microversion %r is not a microversion such as 2.94' % (requested,), kind=KIND_API)
    if wanted is not None:
        if wanted[0] != 2 or not low <= wanted <= high:
            raise EvacuationError('microversion %s is outside what the compute API offers (%s to %s)'
                                  % (mv_str(wanted), mv_str(low), mv_str(high)), kind=KIND_API)
        evacuate, negotiated = wanted, False
    else:
        ceiling = min(parse_mv(client_default) or MV_EVACUATE_DEFAULT, MV_EVACUATE_DEFAULT)
        evacuate, negotiated = max(low, min(ceiling, high)), True
    return Microversions(
        evacuate=evacuate,
        read=min(high, MV_READ),
        lock=MV_LOCK_REASON if high >= MV_LOCK_REASON else MV_BASE,
        migrations=MV_MIGRATIONS,
        services=MV_SERVICES if high >= MV_SERVICES else MV_SERVICES_FORCED_DOWN,
        cloud_max=high,
        negotiated=negotiated,
    )


# ---------------------------------------------------------------------------------------------------------
# Errors


class NovaApiError(Exception):
    """An HTTP error answer of the compute API. Attribute names match what _cloud.describe_api_error
    reads (status_code, request_id, details)."""

    def __init__(self, status_code, details, request_id=None, method=None, path=None):
        super(NovaApiError, self).__init__('%s %s: HTTP %s: %s' % (method, path, status_code, details))
        self.status_code = status_code
        self.http_status = status_code
        self.details = details
        self.message = details
        self.request_id = request_id
        self.method = method
        self.path = path


class EvacuationError(Exception):
    """A failure already phrased for the operator (object, cause, request id)."""

    def __init__(self, msg, kind=KIND_API, request_id=None, http_status=None, next_command=None):
        super(EvacuationError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.request_id = request_id
        self.http_status = http_status
        self.next_command = next_command

    def details(self):
        return dict(kind=self.kind, request_id=self.request_id, http_status=self.http_status,
                    next_command=self.next_command)


def explain_api_error(err, doing):
    """An EvacuationError for an HTTP error of the compute API while ``doing`` something."""
    if err.status_code == 403:
        msg = ('%s was refused: forbidden (%s); evacuation needs an account with the admin role'
               % (doing, err.details))
        kind = KIND_FORBIDDEN
    elif err.status_code == 401:
        msg = '%s was refused: the cloud rejected the credentials (%s)' % (doing, err.details)
        kind = KIND_FORBIDDEN
    elif err.status_code == 404:
        msg = '%s failed: not found (%s)' % (doing, err.details)
        kind = KIND_NOT_FOUND
    else:
        msg = '%s failed: %s' % (doing, err.details)
        kind = KIND_API
    facts = ['HTTP %s' % err.status_code] if err.status_code is not None else []
    if err.request_id:
        facts.append('request id %s' % err.request_id)
    if facts:
        msg = '%s (%s)' % (msg, ', '.join(facts))
    return EvacuationError(msg, kind=kind, request_id=err.request_id,
                           http_status=err.status_code)


# ---------------------------------------------------------------------------------------------------------
# The compute API adapter and the clock


class Response(object):
    def __init__(self, status, body, request_id=None, date=None):
        self.status = status
        self.body = body
        self.request_id = request_id
        self.date = date


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
        """(min, max, client default) as announced by the endpoint / pinned in clouds.yaml."""
        data = self._compute.get_endpoint_data()
        low = parse_mv(getattr(data, 'min_microversion', None)) if data is not None else None
        high = parse_mv(getattr(data, 'max_microversion', None)) if data is not None else None
        return low, high, parse_mv(getattr(self._compute, 'default_microversion', None))

    # A GET that met a dropped connection is sent again: the API's web server (gunicorn, Apache, HAProxy)
    # closes idle keep-alive connections after a few seconds, about as long as a poll interval, and a
    # request sent on one it is closing gets no answer at all. Actions are not resent blindly: the engine
    # decides (an evacuate may have been accepted before the connection dropped).
    GET_CONNECT_RETRIES = 3

    def request(self, method, path, microversion, body=None):
        kwargs = dict(microversion=mv_str(microversion), raise_exc=False,
                      connect_retries=self.GET_CONNECT_RETRIES if method == 'GET' else 0)
        if body is not None:
            kwargs['json'] = body
        try:
            resp = self._compute.request(path, method, **kwargs)
        except _transport_errors() as exc:
            raise NovaApiError(None, 'no answer from the compute API (%s)' % exc, method=method, path=path)
        headers = resp.headers or {}
        request_id = headers.get('x-openstack-request-id') or headers.get('x-compute-request-id')
        self.last_date = _http_date(headers.get('date')) or self.last_date
        payload = None
        if resp.content:
            try:
                payload = resp.json()
            except ValueError:
                payload = None
        if resp.status_code >= 400:
            text = resp.text if isinstance(getattr(resp, 'text', None), str) else ''
            raise NovaApiError(resp.status_code, _nova_message(payload, text.strip()[:300] or resp.reason),
                               request_id=request_id, method=method, path=path)
        return Response(resp.status_code, payload, request_id=request_id, date=self.last_date)


def _transport_errors():
    """keystoneauth's "no HTTP answer" exceptions (refused, reset, timed out, TLS)."""
    try:
        from keystoneauth1 import exceptions as ksa_exc
    except ImportError:
        return ()
    return (ksa_exc.ConnectionError,)


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


def _query(path, params):
    params = [(k, v) for k, v in params if v is not None]
    return '%s?%s' % (path, urlencode(params)) if params else path


# ---------------------------------------------------------------------------------------------------------
# Snapshot


def _ports(addresses):
    ports = []
    for network, entries in sorted((addresses or {}).items()):
        for entry in entries or []:
            ports.append(dict(network=network, mac=entry.get('OS-EXT-IPS-MAC:mac_addr'),
                              ip=entry.get('addr'), type=entry.get('OS-EXT-IPS:type')))
    return sorted(ports, key=lambda p: (p['network'], p['mac'] or '', p['ip'] or ''))


def snapshot(server):
    """What the engine records and compares of one server, from a server body (show or detail list)."""
    if server is None:
        return None
    flavor = server.get('flavor') or {}
    image = server.get('image')
    fault = server.get('fault') or None
    power = server.get('OS-EXT-STS:power_state')
    groups = server.get('server_groups')
    return dict(
        id=server.get('id'),
        name=server.get('name'),
        project_id=server.get('tenant_id'),
        status=server.get('status'),
        vm_state=server.get('OS-EXT-STS:vm_state'),
        task_state=server.get('OS-EXT-STS:task_state'),
        power_state=POWER_STATES.get(power, power),
        host=server.get('OS-EXT-SRV-ATTR:host'),
        node=server.get('OS-EXT-SRV-ATTR:hypervisor_hostname'),
        host_status=server.get('host_status'),
        locked=bool(server.get('locked', False)),
        locked_reason=server.get('locked_reason'),
        flavor=dict(name=flavor.get('original_name') or flavor.get('id'), vcpus=flavor.get('vcpus'),
                    ram=flavor.get('ram'), disk=flavor.get('disk'), ephemeral=flavor.get('ephemeral', 0),
                    swap=flavor.get('swap', 0)),
        image_id=image.get('id') if isinstance(image, dict) else None,
        boot_from_volume=not image,
        volumes=sorted(v.get('id') for v in server.get('os-extended-volumes:volumes_attached') or []),
        ports=_ports(server.get('addresses')),
        availability_zone=server.get('OS-EXT-AZ:availability_zone'),
        pinned_availability_zone=server.get('pinned_availability_zone'),
        server_groups=list(groups) if groups is not None else None,
        metadata=dict(server.get('metadata') or {}),
        updated=server.get('updated'),
        fault=dict(code=fault.get('code'), message=fault.get('message')) if fault else None,
    )


def brief(snap):
    """The before/after view of a record."""
    if snap is None:
        return None
    keys = ('host', 'status', 'vm_state', 'task_state', 'power_state', 'locked', 'locked_reason')
    return dict((k, snap.get(k)) for k in keys)


def lock_reason(source_host, status):
    return '%s evacuating from %s (was %s)' % (LOCK_REASON_PREFIX, source_host, status)


def parse_lock_reason(reason):
    """{'source': ..., 'status': ...} when ``reason`` is a lock this engine took, else None."""
    match = _LOCK_REASON_RE.match(reason or '')
    return match.groupdict() if match else None


# ---------------------------------------------------------------------------------------------------------
# Decisions


class Verdict(object):
    def __init__(self, evacuable, reason, expected_status=None, reset_to=None):
        self.evacuable = evacuable
        self.reason = reason
        self.expected_status = expected_status
        self.reset_to = reset_to


_REFUSED_STATES = {
    'paused': 'is PAUSED: Nova evacuates only active, stopped or error servers, and the paused guest '
              'memory is on the failed host anyway. Reset its state to error (reset_state=true, or '
              '"openstack server set --state error {id}") to evacuate it; it then boots fresh and ends ACTIVE',
    'suspended': 'is SUSPENDED: Nova evacuates only active, stopped or error servers, and the suspended '
                 'guest memory is on the failed host. Reset its state to error (reset_state=true, or '
                 '"openstack server set --state error {id}") to evacuate it; it then boots fresh and ends ACTIVE',
    'rescued': 'is in RESCUE: Nova does not evacuate a rescued server. Reset its state to error '
               '(reset_state=true, or "openstack server set --state error {id}") to evacuate it from its own disk',
    'shelved': 'is SHELVED: Nova does not evacuate a shelved server; its snapshot lets it be unshelved '
               'elsewhere once offloaded ("openstack server shelve --offload {id}" needs its host up)',
    'shelved_offloaded': 'is SHELVED_OFFLOADED: it runs on no host, there is nothing to evacuate; '
                         '"openstack server unshelve {id}" starts it on a healthy host',
    'resized': 'is in VERIFY_RESIZE: a resize waits for confirmation and Nova does not evacuate it; '
               'confirm or revert the resize first ("openstack server resize confirm {id}")',
    'building': 'is still BUILDING; Nova does not evacuate a server that was never built',
    'deleted': 'is DELETED',
    'soft-deleted': 'is SOFT_DELETED; restore it first ("openstack server restore {id}")',
}


def classify(snap, reset_state=False):
    """Can this server be evacuated as it is, after an opted-in reset, or not at all?

    Nova accepts vm_state active, stopped or error with no task in progress. A task left behind by the
    failed host (rebooting, powering-off, ...) or a paused/suspended/rescued guest is "stuck": it can
    only go after ``os-resetState``, which the operator must ask for (``reset_state``).
    """
    vm_state = snap.get('vm_state')
    task = snap.get('task_state')
    ident = '%s (%s)' % (snap.get('name'), snap.get('id'))
    if task:
        if reset_state and vm_state in RESETTABLE_VM_STATES:
            reset_to = 'active' if vm_state == 'active' else 'error'
            return Verdict(True, 'its task_state %s was left by its failed host; reset_state resets it to %s '
                                 'first' % (task, reset_to),
                           EXPECTED_STATUS[vm_state], reset_to)
        return Verdict(False, 'server %s has task_state %s in progress (status %s, vm_state %s); Nova does '
                              'not evacuate a server with a task in progress. If the task is stuck because '
                              'its host failed, re-run with reset_state=true (sends os-resetState) or run '
                              '"openstack server set --state %s %s"'
                       % (ident, task, snap.get('status'), vm_state,
                          'active' if vm_state == 'active' else 'error', snap.get('id')))
    if vm_state in ('active', 'stopped'):
        return Verdict(True, 'it is %s' % snap.get('status'), EXPECTED_STATUS[vm_state])
    if vm_state == 'error':
        return Verdict(True, 'it is ERROR with no task in progress; Nova rebuilds it on the new host and it '
                             'ends ACTIVE', 'ACTIVE')
    if vm_state in ('paused', 'suspended', 'rescued') and reset_state:
        return Verdict(True, 'it is %s; reset_state resets it to error first, it then boots fresh on the '
                             'new host and ends ACTIVE' % snap.get('status'),
                       'ACTIVE', 'error')
    why = _REFUSED_STATES.get(vm_state)
    if why is None:
        why = 'is in vm_state %s (status %s), which Nova does not evacuate' % (vm_state, snap.get('status'))
    return Verdict(False, 'server %s %s' % (ident, why.format(id=snap.get('id'))))


def service_is_up(service):
    return bool(service) and service.get('state') == 'up' and not service.get('forced_down')


class Decision(object):
    def __init__(self, action, reason, kind=None, expected_status=None, reset_to=None, migration=None,
                 warnings=None):
        self.action = action
        self.reason = reason
        self.kind = kind
        self.expected_status = expected_status
        self.reset_to = reset_to
        self.migration = migration
        self.warnings = warnings or []


def decide(snap, service, migrations, expected_source=None, reset_state=False, target_host=None):
    """What to do with one server: evacuate, wait for an evacuation in flight, finish one of ours,
    nothing, or refuse (with the reason).

    ``service``: the nova-compute service (as os-services shows it) of the host the server is on;
    ``migrations``: its evacuation migrations, any order; ``expected_source``: refuse unless it is there.
    """
    ident = '%s (%s)' % (snap.get('name'), snap.get('id'))
    host = snap.get('host')
    ours = parse_lock_reason(snap.get('locked_reason')) if snap.get('locked') else None
    original = ours['status'] if ours else None
    migrations = sorted(migrations or [], key=lambda m: m.get('id') or 0, reverse=True)

    in_flight = [m for m in migrations if m.get('status') not in MIGRATION_DONE | MIGRATION_FAILED]
    if in_flight:
        mig = in_flight[0]
        expected = original or EXPECTED_STATUS.get(snap.get('vm_state'), 'ACTIVE')
        reason = ('an evacuation of %s from %s is already in flight (migration %s, status %s); waiting for it, '
                  'issuing nothing' % (ident, mig.get('source_compute'), mig.get('id'), mig.get('status')))
        return Decision(ACTION_WAIT, reason,
                        expected_status=expected, migration=mig)

    if not host:
        return Decision(ACTION_REFUSE, 'server %s is on no host (status %s); there is nothing to evacuate'
                        % (ident, snap.get('status')), kind=KIND_NO_HOST)

    moved = [m for m in migrations if m.get('status') in MIGRATION_DONE and m.get('dest_compute') == host]
    settled = not snap.get('task_state') and snap.get('status') in ('ACTIVE', 'SHUTOFF')

    if expected_source and host != expected_source:
        if not settled:
            return Decision(ACTION_REFUSE, 'server %s is on %s, not on the expected source host %s, and is %s%s; '
                                           'not touching it' % (ident, host, expected_source, snap.get('status'),
                                                                ' with task %s' % snap.get('task_state')
                                                                if snap.get('task_state') else ''),
                            kind=KIND_ELSEWHERE)
        return _already_moved(snap, ident, ours, original, moved[0] if moved else None,
                              'is already on %s, not on %s' % (host, expected_source))

    if service is None:
        return Decision(ACTION_REFUSE, 'server %s is on host %s, which has no nova-compute service; Nova cannot '
                                       'evacuate from it' % (ident, host), kind=KIND_NO_HOST)

    if service_is_up(service):
        if not expected_source and moved and settled:
            return _already_moved(snap, ident, ours, original, moved[0],
                                  'was already evacuated from %s to %s' % (moved[0].get('source_compute'), host))
        return Decision(ACTION_REFUSE, 'host %s is not fenced/forced down: its nova-compute service is up, so Nova '
                                       'refuses to evacuate %s. Fence the host and force its service down first '
                                       '(novaha.recovery.os_fence_check)' % (host, ident), kind=KIND_NOT_FENCED)

    if target_host and target_host == host:
        return Decision(ACTION_REFUSE, 'target host %s is the host %s is on; choose another host or let the '
                                       'scheduler choose' % (target_host, ident), kind=KIND_BAD_TARGET)

    verdict = classify(snap, reset_state)
    if not verdict.evacuable:
        return Decision(ACTION_REFUSE, verdict.reason, kind=KIND_STATE)
    warnings = []
    if not service.get('forced_down'):
        warnings.append('the nova-compute service of %s is reported down but not forced down; if the host comes '
                        'back while %s is rebuilt elsewhere both copies may run. Force it down after fencing.'
                        % (host, ident))
    return Decision(ACTION_EVACUATE, 'evacuate %s from %s: %s' % (ident, host, verdict.reason),
                    expected_status=original or verdict.expected_status, reset_to=verdict.reset_to,
                    warnings=warnings)


def _already_moved(snap, ident, ours, original, migration, where):
    status = snap.get('status')
    if ours:
        todo = []
        if original and status != original:
            todo.append('return it to %s' % original)
        todo.append('remove the lock novaha.recovery left')
        return Decision(ACTION_RECONCILE, 'server %s %s (%s) after an earlier novaha.recovery run; %s'
                        % (ident, where, status, ' and '.join(todo)),
                        expected_status=original or status, migration=migration)
    return Decision(ACTION_NONE, 'server %s %s (%s); nothing to do' % (ident, where, status),
                    expected_status=status, migration=migration)


def evacuate_request(mv, target_host=None, admin_password=None, on_shared_storage=None):
    """The evacuate action body for microversion ``mv`` and the warnings it implies.

    Never sends ``force`` (2.29-2.67 would bypass the scheduler with it; 2.68+ reject it) nor
    ``onSharedStorage`` at 2.14+ (Nova detects shared storage itself).
    """
    body = {}
    warnings = []
    if target_host:
        body['host'] = target_host
        if mv < MV_TARGET_SCHEDULED:
            warnings.append('at microversion %s a target host bypasses the scheduler: Nova does not check that '
                            '%s has room or fits the server\'s filters (2.29 or later lets the scheduler validate it)'
                            % (mv_str(mv), target_host))
    if mv < MV_SHARED_STORAGE_GONE:
        shared = bool(on_shared_storage)
        if shared and admin_password:
            raise EvacuationError('admin_password cannot be set when on_shared_storage is true below microversion '
                                  '2.14: the existing disk is reused', kind=KIND_BAD_TARGET)
        body['onSharedStorage'] = shared
    elif on_shared_storage is not None:
        warnings.append('on_shared_storage is not sent at microversion %s: Nova detects shared instance storage '
                        'itself since 2.14' % mv_str(mv))
    if admin_password:
        body['adminPass'] = admin_password
    return {'evacuate': body}, warnings


class Note(str):
    """A warning with its kind (``WARNING_*``): callers decide on the kind, never on the words."""

    def __new__(cls, text, kind=WARNING_OTHER):
        note = str.__new__(cls, text)
        note.kind = kind
        return note


def warning_kind(warning):
    return getattr(warning, 'kind', WARNING_OTHER)


def disk_warnings(snap, on_shared_storage=None):
    """What the operator loses: local disks are rebuilt from the image on the new host."""
    warnings = []
    ident = '%s (%s)' % (snap.get('name'), snap.get('id'))
    if not snap.get('boot_from_volume') and not on_shared_storage:
        warnings.append(Note('server %s boots from image %s: unless its instance directory is on shared storage, '
                             'Nova rebuilds the root disk from the image on the new host and data written to the '
                             'root disk is lost' % (ident, snap.get('image_id')), WARNING_ROOT_DISK_LOST))
    flavor = snap.get('flavor') or {}
    for kind, unit in (('an ephemeral', 'GB'), ('a swap', 'MB')):
        size = flavor.get(kind.split()[1])
        if size and not on_shared_storage:
            warnings.append(Note('server %s has %s disk (%s %s) on its failed host; it is recreated empty'
                                 % (ident, kind, size, unit), WARNING_DISK_RECREATED))
    return warnings


class Judgement(object):
    def __init__(self, outcome, reason, kind=None, power_action=None):
        self.outcome = outcome
        self.reason = reason
        self.kind = kind
        self.power_action = power_action

    def __repr__(self):
        return 'Judgement(%s, %s, %s)' % (self.outcome, self.kind, self.power_action)


def judge(before, now, migration, expected_status, source_host, migration_required=True):
    """Is the server recovered, failed, or still in progress? The one place that decides.

    Recovered: the evacuation migration is done/completed, the server's host differs from the source,
    no task is in progress, its status is ``expected_status``, and its id, ports/addresses and attached
    volumes equal ``before``. Failed: the migration is error/failed, or the server went ERROR (with
    Nova's fault message), or it disappeared, or it landed with different ports or volumes.
    In progress otherwise; ``power_action`` ('start'/'stop') says when only the power state is left.
    ``migration_required=False`` finishes a server whose evacuation record is gone (lock of ours found
    on a server already moved): the other conditions still apply.
    """
    ident = '%s (%s)' % (before.get('name'), before.get('id'))
    if now is None or now.get('status') in ('DELETED', 'SOFT_DELETED'):
        return Judgement(OUTCOME_FAILED, 'server %s was deleted during its evacuation' % ident, KIND_DELETED)
    fault = (now.get('fault') or {}).get('message')
    mig_status = (migration or {}).get('status')
    mig = 'migration %s' % migration.get('id') if migration else 'the migration'
    if mig_status in MIGRATION_FAILED:
        kind = KIND_NO_VALID_HOST if fault and 'No valid host' in fault else KIND_EVACUATION_FAILED
        return Judgement(OUTCOME_FAILED, 'evacuation of %s failed: %s is %s%s'
                         % (ident, mig, mig_status, '; Nova: %s' % fault if fault else ''), kind)
    if now.get('vm_state') == 'error' and not now.get('task_state'):
        kind = KIND_NO_VALID_HOST if fault and 'No valid host' in fault else KIND_EVACUATION_FAILED
        return Judgement(OUTCOME_FAILED, 'evacuation of %s failed: the server went ERROR%s'
                         % (ident, '; Nova: %s' % fault if fault else ' (no fault recorded)'), kind)
    if mig_status not in MIGRATION_DONE and (migration_required or migration is not None):
        return Judgement(OUTCOME_IN_PROGRESS, '%s is %s' % (mig, mig_status or 'not visible yet'))
    if now.get('task_state'):
        return Judgement(OUTCOME_IN_PROGRESS, 'task %s in progress on %s' % (now.get('task_state'), now.get('host')))
    if now.get('host') == source_host:
        return Judgement(OUTCOME_FAILED, '%s is %s but server %s is still on %s'
                         % (mig, mig_status, ident, source_host),
                         KIND_EVACUATION_FAILED)
    changed = [name for name in ('id', 'ports', 'volumes') if now.get(name) != before.get(name)]
    if changed:
        return Judgement(OUTCOME_FAILED, 'server %s landed on %s but its %s changed: before %s, after %s'
                         % (ident, now.get('host'), ' and '.join(changed),
                            json.dumps([before.get(n) for n in changed], sort_keys=True),
                            json.dumps([now.get(n) for n in changed], sort_keys=True)), KIND_IDENTITY)
    status = now.get('status')
    if status != expected_status:
        if status == 'SHUTOFF' and expected_status == 'ACTIVE':
            return Judgement(OUTCOME_IN_PROGRESS, 'evacuated to %s and SHUTOFF; it must be started'
                             % now.get('host'), power_action='start')
        if status == 'ACTIVE' and expected_status == 'SHUTOFF':
            return Judgement(OUTCOME_IN_PROGRESS, 'evacuated to %s and ACTIVE; it must be stopped'
                             % now.get('host'), power_action='stop')
        return Judgement(OUTCOME_IN_PROGRESS, 'evacuated to %s, status %s, waiting for %s'
                         % (now.get('host'), status, expected_status))
    return Judgement(OUTCOME_RECOVERED, 'server %s was evacuated from %s and is %s on %s (%s %s)'
                     % (ident, source_host, status, now.get('host'), mig, mig_status))


class RetryDecision(object):
    def __init__(self, retry, target_host=None, reason=''):
        self.retry = retry
        self.target_host = target_host
        self.reason = reason


def retry_decision(attempts, retries, target_host=None):
    """After a failed attempt: try again, and where?

    No valid host at a requested target host: retry once with the scheduler choosing (not counted
    against ``retries``). Other failures: up to ``retries`` more attempts. Refusals (state, not fenced,
    forbidden, not found, identity changed, deleted) are never retried.
    """
    last = attempts[-1]
    kind = last.get('kind')
    if kind in NOT_RETRYABLE:
        return RetryDecision(False, reason='%s is not retried' % kind)
    fallback_used = any(a.get('scheduler_fallback') for a in attempts)
    if kind == KIND_NO_VALID_HOST and last.get('target_host') and not fallback_used:
        return RetryDecision(True, None, 'no valid host at %s; retrying once with the scheduler choosing'
                             % last.get('target_host'))
    counted = len(attempts) - (1 if fallback_used else 0)
    if counted <= retries:
        target = None if fallback_used else target_host
        return RetryDecision(True, target, 'attempt %d of %d failed (%s); retrying'
                             % (counted, retries + 1, kind))
    return RetryDecision(False, reason='%d attempt%s failed' % (len(attempts), '' if len(attempts) == 1 else 's'))


def next_command(record):
    """The command an operator runs next for a server that was not recovered."""
    sid = record.get('id')
    kind = record.get('kind')
    source = record.get('source_host')
    request_id = None
    for attempt in reversed(record.get('attempts') or []):
        if attempt.get('request_id'):
            request_id = attempt['request_id']
            break
    if kind == KIND_NOT_FENCED:
        return ('openstack --os-compute-api-version 2.53 compute service set --down %s nova-compute '
                '(only once the host is confirmed powered off)' % source)
    if kind == KIND_STATE:
        before = record.get('before') or {}
        if before.get('vm_state') in RESETTABLE_VM_STATES and (
                before.get('task_state') or before.get('vm_state') in ('paused', 'suspended', 'rescued')):
            # What reset_state=true would do; the evacuation then accepts the server.
            return 'openstack server set --state %s %s' % (
                'active' if before.get('vm_state') == 'active' else 'error', sid)
        return 'openstack server show %s -c status -c OS-EXT-STS:vm_state -c OS-EXT-STS:task_state' % sid
    if kind in (KIND_TIMEOUT,) or record.get('outcome') == OUTCOME_IN_PROGRESS:
        return 'openstack --os-compute-api-version 2.59 server migration list --server %s --type evacuation' % sid
    if kind == KIND_FORBIDDEN:
        return 'openstack role assignment list --names --effective --user <the user of this cloud entry>'
    if request_id:
        return 'openstack server event show %s %s' % (sid, request_id)
    if sid:
        return 'openstack server show %s -c status -c fault' % sid
    return None


# ---------------------------------------------------------------------------------------------------------
# The per-server record


class ServerEvacuation(object):
    """One server's plan, progress and result. ``record()`` is what modules return."""

    def __init__(self, snap, decision, source_host, target_host=None, request=None, microversion=None,
                 warnings=None, lock=True, on_shared_storage=None):
        self.id = snap['id']
        self.name = snap.get('name')
        self.before = snap
        self.after = None
        self.action = decision.action
        self.reason = decision.reason
        self.kind = decision.kind
        self.expected_status = decision.expected_status
        self.reset_to = decision.reset_to
        self.source_host = source_host
        self.target_host = target_host
        self.request = request                      # the evacuate body, adminPass replaced by HIDDEN
        self.microversion = microversion
        self.warnings = list(decision.warnings) + list(warnings or [])
        self.lock_wanted = lock
        self.on_shared_storage = on_shared_storage
        self.exclusive_groups = set()               # the host module sets these (affinity serialisation)
        self.outcome = {ACTION_NONE: OUTCOME_NOTHING_TO_DO, ACTION_REFUSE: OUTCOME_REFUSED}.get(
            decision.action, OUTCOME_PLANNED)
        self.migration = decision.migration
        self.known_migration_ids = set()            # evacuation migrations that existed before us
        self.attempts = []
        self.request_ids = []
        self.locked_by_us = False
        self.user_locked = bool(snap.get('locked')) and not parse_lock_reason(snap.get('locked_reason'))
        self.ours_from_earlier = bool(snap.get('locked')) and bool(parse_lock_reason(snap.get('locked_reason')))
        self.unlocked = False
        self.power_actions = []
        self.requested_at = None
        self.finished_at = None
        self._admin_password = None

    @property
    def done(self):
        return self.outcome in (OUTCOME_RECOVERED, OUTCOME_FAILED, OUTCOME_REFUSED, OUTCOME_NOTHING_TO_DO)

    @property
    def changed(self):
        """Something in the cloud changed: a lock taken and removed again on the way is not a change."""
        acted = set(r['action'] for r in self.request_ids)
        return bool(acted & set(['evacuate', 'reset_state', 'start', 'stop'])) or (
            self.ours_from_earlier and self.unlocked) or (self.locked_by_us and not self.unlocked)

    def note(self, action, response_or_id, microversion=None):
        request_id = getattr(response_or_id, 'request_id', response_or_id)
        self.request_ids.append(dict(action=action, request_id=request_id,
                                     microversion=mv_str(microversion) if microversion else None))

    def plan(self):
        """What would be sent (check mode)."""
        return dict(action=self.action, reason=self.reason, microversion=mv_str(self.microversion)
                    if self.microversion else None, request=self.request, expected_status=self.expected_status,
                    reset_state_to=self.reset_to, lock=self.lock_wanted and not self.before.get('locked'),
                    warnings=[str(w) for w in self.warnings], warning_kinds=[warning_kind(w) for w in self.warnings])

    def record(self):
        seconds = None
        if self.requested_at is not None and self.finished_at is not None:
            seconds = round(self.finished_at - self.requested_at, 1)
        rec = dict(
            id=self.id,
            name=self.name,
            project_id=self.before.get('project_id'),
            action=self.action,
            outcome=self.outcome,
            changed=self.changed,
            reason=self.reason,
            kind=self.kind,
            source_host=self.source_host,
            target_host=self.target_host,
            expected_status=self.expected_status,
            microversion=mv_str(self.microversion) if self.microversion else None,
            request=self.request,
            before=brief(self.before),
            after=brief(self.after),
            snapshot=self.before,
            migration=_migration_view(self.migration),
            attempts=[dict((k, v) for k, v in a.items() if not k.startswith('_')) for a in self.attempts],
            power_actions=list(self.power_actions),
            lock=dict(user_locked=self.user_locked, locked_by_us=self.locked_by_us or self.ours_from_earlier,
                      unlocked=self.unlocked),
            timings=dict(requested_at=isotime(self.requested_at), finished_at=isotime(self.finished_at),
                         seconds=seconds),
            request_ids=list(self.request_ids),
            warnings=[str(w) for w in self.warnings],
            warning_kinds=[warning_kind(w) for w in self.warnings],
        )
        rec['next_command'] = None if self.outcome in (OUTCOME_RECOVERED, OUTCOME_NOTHING_TO_DO,
                                                       OUTCOME_PLANNED) else next_command(rec)
        return rec


def _migration_view(mig):
    if not mig:
        return None
    return dict((k, mig.get(k)) for k in ('id', 'uuid', 'status', 'source_compute', 'dest_compute',
                                          'created_at', 'updated_at'))


# ---------------------------------------------------------------------------------------------------------
# Watching many servers: two listings per poll, whatever the number of servers


FIRST_LOOK = 1.0  # seconds from an action, or from a look that saw a change, to the next look


class Watcher(object):
    """Observes the servers being evacuated with ONE server listing (all projects, changes-since) and ONE
    evacuation-migrations listing (changes-since) per poll, independent of how many servers it watches.

    ``changes-since`` is taken from the server clock (the Date of Nova's answers) minus a margin, so a
    skewed controller clock cannot hide a change. A server acted upon is "stale" until a listing shows
    it again, so no decision is taken on what it looked like before the action.
    """

    MARGIN = 5  # seconds of overlap between polls

    def __init__(self, nova, microversions, source_host=None):
        self.nova = nova
        self.mv = microversions
        self.source_host = source_host
        self.since = None
        self.servers = {}
        self.migrations = {}
        self.stale = set()
        self.polls = 0
        self.failed_polls = []

    def start(self, server_time):
        self.since = server_time - datetime.timedelta(seconds=self.MARGIN)

    def seed(self, snap, migrations=()):
        self.servers[snap['id']] = snap
        for mig in migrations:
            self._keep(mig)

    def invalidate(self, server_id):
        self.stale.add(server_id)

    def server(self, server_id):
        if server_id in self.stale:
            return None
        return self.servers.get(server_id)

    def migrations_of(self, server_id):
        return list(self.migrations.get(server_id, {}).values())

    def _keep(self, mig):
        self.migrations.setdefault(mig.get('instance_uuid'), {})[mig.get('id')] = mig

    def poll(self, server_ids):
        """Look once; returns how many watched servers or their evacuation migrations changed since the last look."""
        watched = set(server_ids)
        since = self.since.strftime('%Y-%m-%dT%H:%M:%SZ') if self.since else None
        # Migrations first: Nova saves the instance's new host, then marks the migration done
        # (resource_tracker.finish_evacuation), so a done migration is never seen with a server listing
        # older than it (which would look like "done but still on the source host").
        migrations, _date = list_all(self.nova, '/os-migrations',
                                     [('migration_type', 'evacuation'), ('source_compute', self.source_host),
                                      ('changes-since', since)], 'migrations', self.mv.migrations)
        servers, date = list_all(self.nova, '/servers/detail',
                                 [('all_tenants', 'True'), ('changes-since', since)], 'servers', self.mv.read)
        self.polls += 1
        changes = 0
        for body in servers:
            if body.get('id') in watched:
                snap = snapshot(body)
                changes += body['id'] in self.stale or _progress(self.servers.get(body['id'])) != _progress(snap)
                self.servers[body['id']] = snap
                self.stale.discard(body['id'])
        for mig in migrations:
            if mig.get('instance_uuid') in watched and mig.get('migration_type', 'evacuation') == 'evacuation':
                known = self.migrations.get(mig.get('instance_uuid'), {}).get(mig.get('id'))
                changes += known is None or known.get('status') != mig.get('status')
                self._keep(mig)
        if date is not None:
            self.since = date - datetime.timedelta(seconds=self.MARGIN)
        return changes


def _progress(snap):
    """What of a server tells that its evacuation moved on."""
    if snap is None:
        return None
    return (snap.get('host'), snap.get('status'), snap.get('vm_state'), snap.get('task_state'))


def next_poll_delay(poll_interval, quiet_polls):
    """Seconds to wait before the next look: FIRST_LOOK after something changed (an action was sent, a watched
    server or its migration moved on), doubling with each look that saw no change, at most ``poll_interval``.
    Evacuations finish sooner than a fixed interval would notice, and a long quiet wait costs few requests."""
    return min(float(poll_interval), FIRST_LOOK * 2 ** min(quiet_polls, 16))


def list_all(nova, path, params, key, microversion, limit_pages=100):
    """A listing followed over its pages (Nova pages at [api]max_limit). Returns (items, server date)."""
    items = []
    date = None
    marker = None
    for _page in range(limit_pages):
        resp = nova.request('GET', _query(path, list(params) + [('marker', marker)]), microversion)
        date = date or resp.date
        page = (resp.body or {}).get(key) or []
        items.extend(page)
        links = (resp.body or {}).get(key + '_links') or []
        if not page or not any(link.get('rel') == 'next' for link in links):
            break
        marker = page[-1].get('uuid') or page[-1].get('id')
    else:
        # A cut list would silently leave servers or migrations out of every decision made from it.
        raise EvacuationError('listing %s stopped after %d pages (%d items) with more still to come; nothing is '
                              'decided from a partial list. Raise Nova\'s [api]max_limit, or narrow the listing'
                              % (path, limit_pages, len(items)), kind=KIND_API)
    return items, date


# ---------------------------------------------------------------------------------------------------------
# The engine


_UUID_RE = re.compile(r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$')


class Engine(object):
    """Plans and runs evacuations. ``nova``: SdkNova or a fake; ``clock``: now()/sleep()."""

    def __init__(self, nova, clock=None, microversion=None):
        self.nova = nova
        self.clock = clock or SystemClock()
        self._requested_mv = microversion
        self._mv = None

    # -- reading ------------------------------------------------------------------------------------------

    @property
    def mv(self):
        if self._mv is None:
            low, high, default = self.nova.microversion_range()
            self._mv = choose_microversions(low, high, self._requested_mv, default)
        return self._mv

    def _get(self, path, microversion, doing):
        try:
            return self.nova.request('GET', path, microversion)
        except NovaApiError as err:
            raise explain_api_error(err, doing)

    def find_server(self, ref):
        """The server body for an id or an exact name (all projects). Ambiguous or unknown -> error."""
        ref = str(ref)
        if _UUID_RE.match(ref):
            try:
                return self.nova.request('GET', '/servers/%s' % ref, self.mv.read).body['server']
            except NovaApiError as err:
                if err.status_code != 404:
                    raise explain_api_error(err, 'looking up server %s' % ref)
        resp = self._get(_query('/servers/detail', [('all_tenants', 'True'), ('name', '^%s$' % re.escape(ref))]),
                         self.mv.read, 'looking up server %s in all projects' % ref)
        matches = [s for s in (resp.body or {}).get('servers', []) if s.get('name') == ref or s.get('id') == ref]
        if not matches:
            raise EvacuationError('server %s not found: no server has this id or exact name in any project' % ref,
                                  kind=KIND_NOT_FOUND, request_id=resp.request_id)
        if len(matches) > 1:
            raise EvacuationError('server name %s is ambiguous: %s; give the id instead' % (ref, '; '.join(
                '%s (project %s, host %s, %s)' % (s.get('id'), s.get('tenant_id'), s.get('OS-EXT-SRV-ATTR:host'),
                                                  s.get('status')) for s in matches)), kind=KIND_NOT_FOUND)
        # The detail listing lacks server_groups (2.71 shows them in GET /servers/{id} only).
        return self._get('/servers/%s' % matches[0]['id'], self.mv.read,
                         'reading server %s' % ref).body['server']

    def compute_service(self, host):
        """The nova-compute service of ``host`` as os-services shows it, or None."""
        resp = self._get(_query('/os-services', [('binary', 'nova-compute'), ('host', host)]), self.mv.services,
                         'reading the nova-compute service of %s' % host)
        found = [s for s in (resp.body or {}).get('services', []) if s.get('host') == host]
        return found[0] if found else None

    def evacuation_migrations(self, server_id=None, source_host=None):
        """Evacuation migration records of one server and/or one source host (all pages)."""
        try:
            items, _date = list_all(self.nova, '/os-migrations',
                                    [('migration_type', 'evacuation'), ('instance_uuid', server_id),
                                     ('source_compute', source_host)], 'migrations', self.mv.migrations)
        except NovaApiError as err:
            raise explain_api_error(err, 'listing evacuation migrations of %s' % (server_id or source_host))
        return [m for m in items if m.get('migration_type', 'evacuation') == 'evacuation']

    # -- planning -----------------------------------------------------------------------------------------

    def plan(self, server, expected_source_host=None, target_host=None, admin_password=None,
             on_shared_storage=None, reset_state=False, lock=True, service=None, migrations=None):
        """A ServerEvacuation saying what would be done to ``server`` (a body, an id or a name).

        The host module passes ``service`` and ``migrations`` from one listing for the whole host.
        Changes nothing.
        """
        body = server if isinstance(server, dict) else self.find_server(server)
        snap = snapshot(body)
        if migrations is None:
            migrations = self.evacuation_migrations(server_id=snap['id'])
        else:
            migrations = [m for m in migrations if m.get('instance_uuid') == snap['id']]
        host = snap.get('host')
        if service is None and host and (not expected_source_host or host == expected_source_host):
            service = self.compute_service(host)
        decision = decide(snap, service, migrations, expected_source_host, reset_state, target_host)
        if decision.action in (ACTION_NONE, ACTION_RECONCILE) and decision.migration:
            source = decision.migration.get('source_compute') or expected_source_host
        else:
            source = expected_source_host or host
        request = None
        warnings = []
        mv = None
        if decision.action == ACTION_EVACUATE:
            mv = self.mv.evacuate
            body_, warnings = evacuate_request(mv, target_host, admin_password, on_shared_storage)
            request = _masked(body_)
            warnings = warnings + disk_warnings(snap, on_shared_storage)
            if self.mv.evacuate_stops_server and decision.expected_status == 'ACTIVE':
                warnings.append('at microversion %s Nova leaves the evacuated server stopped; it is started '
                                'afterwards to return it to ACTIVE' % mv_str(mv))
        evac = ServerEvacuation(snap, decision, source, target_host, request, mv, warnings, lock, on_shared_storage)
        evac.known_migration_ids = set(m.get('id') for m in migrations)
        evac._admin_password = admin_password
        return evac

    # -- running ------------------------------------------------------------------------------------------

    def run(self, evacuations, wait=True, timeout=900, poll_interval=5, retries=1, max_parallel=1,
            on_progress=None):
        """Carry out planned evacuations: at most ``max_parallel`` in flight, servers sharing an exclusive
        group never together, two listings per poll whatever the number of servers. Returns the same
        objects, updated. Servers still in flight at ``timeout`` stay ``in_progress`` (a re-run resumes).
        """
        todo = [e for e in evacuations if e.action in (ACTION_EVACUATE, ACTION_WAIT, ACTION_RECONCILE)]
        if not todo:
            return evacuations
        sources = set(e.source_host for e in todo)
        watcher = Watcher(self.nova, self.mv, sources.pop() if len(sources) == 1 else None)
        start = self.clock.now()
        watcher.start(self.nova.last_date or datetime.datetime.fromtimestamp(start, datetime.timezone.utc))
        for e in todo:
            watcher.seed(e.before, [e.migration] if e.migration else [])
        deadline = start + timeout
        pending = list(todo)
        active = []
        window = max(1, max_parallel) if wait else len(todo)
        quiet_polls = 0
        while pending or active:
            for e in list(pending):
                if len(active) >= window:
                    break
                if any(e.exclusive_groups & other.exclusive_groups for other in active):
                    continue
                pending.remove(e)
                self._begin(e, watcher, wait, retries)
                quiet_polls = 0
                if not e.done:
                    active.append(e)
            if not wait:
                self._settle_without_waiting(active)
                break
            if on_progress is not None:
                on_progress(summarize(evacuations, self.clock.now() - start))  # the window as it is now
            if not active:
                continue
            self.clock.sleep(next_poll_delay(poll_interval, quiet_polls))
            try:
                changes = watcher.poll([e.id for e in active])
            except NovaApiError as err:
                # Nothing is decided on a failed look: the next poll, or the timeout, settles it.
                watcher.failed_polls.append(explain_api_error(err, 'watching the evacuations').msg)
                quiet_polls += 1
            else:
                quiet_polls = 0 if changes else quiet_polls + 1
                for e in list(active):
                    self._advance(e, watcher, retries)
                    if e.done:
                        active.remove(e)
            if (pending or active) and self.clock.now() >= deadline:
                for e in active:
                    self._timed_out(e, timeout, watcher.failed_polls[-1:])
                for e in pending:
                    e.outcome = OUTCOME_PENDING
                    e.reason = 'not started: the run reached its timeout of %ss first' % timeout
                break
        if on_progress is not None and wait:
            on_progress(summarize(evacuations, self.clock.now() - start))
        return evacuations

    # -- steps --------------------------------------------------------------------------------------------

    def _action(self, e, name, body, microversion):
        resp = self.nova.request('POST', '/servers/%s/action' % e.id, microversion, body)
        e.note(name, resp, microversion)
        return resp

    def _begin(self, e, watcher, wait, retries):
        e.requested_at = self.clock.now()
        e.outcome = OUTCOME_IN_PROGRESS
        ident = '%s (%s)' % (e.name, e.id)
        if e.lock_wanted and not e.before.get('locked'):
            if wait:
                try:
                    self._lock(e)
                except NovaApiError as err:
                    error = explain_api_error(err, 'locking %s before its evacuation' % ident)
                    return self._finish(e, OUTCOME_FAILED, error.msg, error.kind)
            else:
                e.warnings.append('%s was not locked: with wait=false nothing would unlock it afterwards' % ident)
        if e.action != ACTION_EVACUATE:
            return None
        if e.reset_to:
            try:
                self._action(e, 'reset_state', {'os-resetState': {'state': e.reset_to}}, MV_BASE)
            except NovaApiError as err:
                error = explain_api_error(err, 'resetting the state of %s to %s' % (ident, e.reset_to))
                return self._finish(e, OUTCOME_FAILED, error.msg, error.kind)
        return self._issue_or_fail(e, watcher, e.target_host, retries)

    def _lock(self, e):
        if self.mv.lock_reason:
            body = {'lock': {'locked_reason': lock_reason(e.source_host, e.expected_status)}}
        else:
            body = {'lock': None}
        self._action(e, 'lock', body, self.mv.lock)
        e.locked_by_us = True

    def _unlock(self, e):
        if not (e.locked_by_us or e.ours_from_earlier) or e.unlocked:
            return
        try:
            self._action(e, 'unlock', {'unlock': None}, MV_BASE)
            e.unlocked = True
            if e.after is not None:
                e.after = dict(e.after, locked=False, locked_reason=None)
        except NovaApiError as err:
            e.warnings.append('could not remove the lock novaha.recovery took on %s: %s (request id %s)'
                              % (e.id, err.details, err.request_id))

    def _issue(self, e, target_host, scheduler_fallback=False):
        """POST the evacuate action once; records the attempt. Raises NovaApiError."""
        body, _warnings = evacuate_request(self.mv.evacuate, target_host, e._admin_password, e.on_shared_storage)
        known = e.known_migration_ids | set(a.get('migration_id') for a in e.attempts if a.get('migration_id'))
        attempt = dict(number=len(e.attempts) + 1, target_host=target_host, microversion=mv_str(self.mv.evacuate),
                       scheduler_fallback=scheduler_fallback, requested_at=isotime(self.clock.now()),
                       request_id=None, migration_id=None, migration_status=None, outcome=OUTCOME_IN_PROGRESS,
                       kind=None, error=None, finished_at=None, _after=max(known) if known else 0)
        e.attempts.append(attempt)
        try:
            resp = self.nova.request('POST', '/servers/%s/action' % e.id, self.mv.evacuate, body)
        except NovaApiError as err:
            attempt['request_id'] = err.request_id
            raise
        attempt['request_id'] = resp.request_id
        e.note('evacuate', resp, self.mv.evacuate)
        return resp

    def _issue_or_fail(self, e, watcher, target_host, retries, scheduler_fallback=False):
        while True:
            try:
                self._issue(e, target_host, scheduler_fallback)
                watcher.invalidate(e.id)
                return None
            except NovaApiError as err:
                error = self._classify_issue_error(e, err)
                self._end_attempt(e, OUTCOME_FAILED, error.kind, error.msg)
                if error.kind in (KIND_STATE, KIND_API) and self._adopt_in_flight(e, watcher):
                    return None
                decision = retry_decision(e.attempts, retries, e.target_host)
                if not decision.retry:
                    return self._finish(e, OUTCOME_FAILED, error.msg, error.kind)
                e.warnings.append(decision.reason)
                scheduler_fallback = bool(e.target_host) and decision.target_host is None
                target_host = decision.target_host

    def _adopt_in_flight(self, e, watcher):
        """After a 409, a 5xx or no answer: was an evacuation accepted anyway (ours or a concurrent one)? Wait
        for it."""
        attempt = e.attempts[-1]
        try:
            migrations = self.evacuation_migrations(server_id=e.id)
        except EvacuationError:
            return False
        # Any evacuation newer than the attempt, even one already done or failed: the watcher judges it.
        fresh = [m for m in migrations if (m.get('id') or 0) > attempt['_after']]
        if not fresh:
            return False
        mig = max(fresh, key=lambda m: m.get('id') or 0)
        attempt.update(outcome=OUTCOME_IN_PROGRESS, kind=None, migration_id=mig.get('id'),
                       migration_status=mig.get('status'),
                       error='adopted evacuation migration %s already in flight' % mig.get('id'), finished_at=None)
        e.migration = mig
        watcher.seed(watcher.servers.get(e.id) or e.before, [mig])
        watcher.invalidate(e.id)
        e.warnings.append('an evacuation of %s was already in flight (migration %s); waited for it instead of '
                          'issuing another' % (e.id, mig.get('id')))
        return True

    def _classify_issue_error(self, e, err):
        details = err.details or ''
        if err.status_code == 400 and 'still in use' in details:
            return EvacuationError('host %s is not fenced/forced down: Nova says "%s"; %s (%s) was not evacuated. '
                                   'Fence the host and force its nova-compute service down first '
                                   '(novaha.recovery.os_fence_check) (HTTP 400, request id %s)'
                                   % (e.source_host, details, e.name, e.id, err.request_id),
                                   kind=KIND_NOT_FENCED, request_id=err.request_id, http_status=400)
        if err.status_code == 404 and 'Compute host' in details:
            return EvacuationError('target host %s of %s (%s) is not a compute host: %s (HTTP 404, request id %s)'
                                   % (e.target_host, e.name, e.id, details, err.request_id), kind=KIND_BAD_TARGET,
                                   request_id=err.request_id, http_status=404)
        if err.status_code == 400 and 'same one' in details:
            return EvacuationError('target host of %s (%s) is the host it is on: %s (HTTP 400, request id %s)'
                                   % (e.name, e.id, details, err.request_id), kind=KIND_BAD_TARGET,
                                   request_id=err.request_id, http_status=400)
        if err.status_code == 409:
            return EvacuationError('Nova refused to evacuate %s (%s): %s (HTTP 409, request id %s)'
                                   % (e.name, e.id, details, err.request_id), kind=KIND_STATE,
                                   request_id=err.request_id, http_status=409)
        return explain_api_error(err, 'evacuating %s (%s) from %s' % (e.name, e.id, e.source_host))

    def _advance(self, e, watcher, retries):
        now = watcher.server(e.id)
        if now is None:
            return  # acted on since the last listing showed it: wait for a fresh view
        attempt = e.attempts[-1] if e.attempts else None
        mig = self._migration_for(e, watcher, attempt)
        if mig is not None:
            e.migration = mig
            if attempt is not None:
                attempt.update(migration_id=mig.get('id'), migration_status=mig.get('status'))
        e.after = now
        j = judge(e.before, now, mig, e.expected_status, e.source_host,
                  migration_required=e.action != ACTION_RECONCILE)
        if j.outcome == OUTCOME_RECOVERED:
            self._end_attempt(e, OUTCOME_RECOVERED)
            return self._finish(e, OUTCOME_RECOVERED, j.reason)
        if j.outcome == OUTCOME_IN_PROGRESS:
            if j.power_action:
                self._power(e, watcher, j.power_action, now)
            return None
        self._end_attempt(e, OUTCOME_FAILED, j.kind, j.reason)
        if e.action == ACTION_EVACUATE:
            decision = retry_decision(e.attempts, retries, e.target_host)
            if decision.retry:
                e.warnings.append(decision.reason)
                fallback = bool(e.target_host) and decision.target_host is None and j.kind == KIND_NO_VALID_HOST
                return self._issue_or_fail(e, watcher, decision.target_host, retries, fallback)
        return self._finish(e, OUTCOME_FAILED, j.reason, j.kind)

    def _power(self, e, watcher, action, now):
        """Start (or stop) an evacuated server to reach its expected status; once only."""
        ident = '%s (%s)' % (e.name, e.id)
        if action in e.power_actions:
            reason = ('os-%s was sent to %s after its evacuation but it is still %s%s'
                      % (action, ident, now.get('status'),
                         '; Nova: %s' % now['fault']['message'] if now.get('fault') else ''))
            return self._finish(e, OUTCOME_FAILED, reason, KIND_POWER)
        try:
            self._action(e, action, {'os-%s' % action: None}, MV_BASE)
        except NovaApiError as err:
            error = explain_api_error(err, 'sending os-%s to %s after its evacuation' % (action, ident))
            return self._finish(e, OUTCOME_FAILED, error.msg, KIND_POWER)
        e.power_actions.append(action)
        watcher.invalidate(e.id)
        return None

    def _migration_for(self, e, watcher, attempt):
        candidates = watcher.migrations_of(e.id)
        if attempt is not None:
            candidates = [m for m in candidates if (m.get('id') or 0) > attempt['_after']]
        elif e.migration is not None:
            candidates = [m for m in candidates if m.get('id') == e.migration.get('id')] or [e.migration]
        else:
            candidates = []
        if not candidates:
            return None
        return max(candidates, key=lambda m: m.get('id') or 0)

    def _end_attempt(self, e, outcome, kind=None, error=None):
        if e.attempts and e.attempts[-1].get('outcome') == OUTCOME_IN_PROGRESS:
            e.attempts[-1].update(outcome=outcome, kind=kind, error=error, finished_at=isotime(self.clock.now()))

    def _finish(self, e, outcome, reason, kind=None):
        e.outcome = outcome
        e.reason = reason
        e.kind = kind
        e.finished_at = self.clock.now()
        self._unlock(e)

    def _timed_out(self, e, timeout, poll_errors=()):
        e.outcome = OUTCOME_IN_PROGRESS
        e.kind = KIND_TIMEOUT
        mig = e.migration
        e.reason = ('server %s (%s) is still being evacuated after %ss (%s); it is not failed: re-run to resume '
                    'waiting%s%s' % (e.name, e.id, timeout,
                                     'migration %s is %s' % (mig.get('id'), mig.get('status')) if mig
                                     else 'no migration record seen yet',
                                     '; the lock novaha.recovery took stays until then' if e.locked_by_us else '',
                                     ''.join('; the last look failed: %s' % msg for msg in poll_errors)))

    def _settle_without_waiting(self, issued):
        """wait=false: report the migration each server got, from one listing."""
        if not issued:
            return
        sources = set(e.source_host for e in issued)
        try:
            migrations = self.evacuation_migrations(source_host=sources.pop() if len(sources) == 1 else None)
        except EvacuationError:
            migrations = []
        for e in issued:
            after = e.attempts[-1]['_after'] if e.attempts else 0
            mine = [m for m in migrations if m.get('instance_uuid') == e.id and (m.get('id') or 0) > after]
            if mine:
                e.migration = max(mine, key=lambda m: m.get('id') or 0)
                if e.attempts:
                    e.attempts[-1].update(migration_id=e.migration.get('id'),
                                          migration_status=e.migration.get('status'))
            e.reason = 'evacuation requested, not waited for (wait=false)'


def _masked(body):
    inner = dict(body['evacuate'])
    if 'adminPass' in inner:
        inner['adminPass'] = HIDDEN
    return {'evacuate': inner}


def summarize(evacuations, elapsed=None):
    """Counts for progress lines and the host module's summary."""
    counts = dict(recovered=0, in_flight=0, failed=0, pending=0, refused=0, nothing_to_do=0)
    for e in evacuations:
        if e.outcome == OUTCOME_RECOVERED:
            counts['recovered'] += 1
        elif e.outcome == OUTCOME_IN_PROGRESS:
            counts['in_flight'] += 1
        elif e.outcome == OUTCOME_FAILED:
            counts['failed'] += 1
        elif e.outcome == OUTCOME_REFUSED:
            counts['refused'] += 1
        elif e.outcome == OUTCOME_NOTHING_TO_DO:
            counts['nothing_to_do'] += 1
        else:
            counts['pending'] += 1
    if elapsed is not None:
        counts['elapsed'] = round(elapsed, 1)
    return counts
