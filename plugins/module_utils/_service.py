# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The nova-compute service of a host: find it, read its flags, plan and make the change, predict it in check mode.

No Ansible imports. The lookups and the update go through the compute API adapter (``_nova.SdkNova`` or a fake
with its ``request`` / ``microversion_range``); the plan, the prediction and the stale heartbeat are pure
functions on a service view.

- the service fields reported ............................... ``service_view``
- every nova-compute service and the time of the answer ...... ``compute_services``
- which service is the host's (hosts named like a typo) ..... ``find_compute_service`` (``close_matches``)
- the names of every compute host (a BMC of another host) ... ``find_compute_service(with_hosts=True)``
- the microversion of the service requests .................. ``service_microversion``
- making the change ......................................... ``update_compute_service``
- what must change (forced down, disabled, reason) .......... ``plan_service_update``
- the service after the change, for check mode .............. ``predict_service``
- Nova reports up a host the BMC reads powered off .......... ``stale_heartbeat``
"""

from __future__ import annotations

import datetime
import difflib

from ansible_collections.novaha.recovery.plugins.module_utils._errors import KIND_CONFIGURATION, NovahaError
from ansible_collections.novaha.recovery.plugins.module_utils._fencing import POWER_OFF
from ansible_collections.novaha.recovery.plugins.module_utils._microversions import (
    MV_SERVICES,
    MV_SERVICES_FORCED_DOWN,
    mv_str,
)
from ansible_collections.novaha.recovery.plugins.module_utils._nova import call, query

COMPUTE_BINARY = 'nova-compute'

DEFAULT_DISABLED_REASON = 'fenced by novaha.recovery.os_fence_check'


def heartbeat_age(updated_at, server_now):
    """Seconds from a Nova ``updated_at`` (naive UTC) to the API's clock (aware datetime), or None."""
    if not updated_at or server_now is None:
        return None
    try:
        beat = datetime.datetime.fromisoformat(str(updated_at).replace('Z', ''))
    except ValueError:
        return None
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=datetime.timezone.utc)
    return round((server_now - beat).total_seconds(), 1)


def service_view(raw, server_now=None):
    """The Nova service fields this collection reports, named as in the compute API, and the age of its last
    heartbeat on the API's clock (``server_now``, the Date of the answer; None when unknown)."""
    view = dict((k, raw.get(k)) for k in ('id', 'host', 'binary', 'zone', 'state', 'status', 'disabled_reason', 'updated_at'))
    view['forced_down'] = bool(raw.get('forced_down', False))
    view['heartbeat_age'] = heartbeat_age(raw.get('updated_at'), server_now)
    return view


def close_matches(name, candidates, limit=5):
    """Candidates that look like ``name`` (a typo, other case, short name vs FQDN)."""
    candidates = sorted(set(candidates))
    lowered = dict((c.lower(), c) for c in candidates)
    matches = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=limit, cutoff=0.6)]
    short = name.split('.')[0].lower()
    for candidate in candidates:
        if candidate.split('.')[0].lower() == short and candidate not in matches:
            matches.append(candidate)
    return matches[:limit]


def compute_services(nova, doing, microversion=None):
    """(every nova-compute service, the Date of the answer): one listing, at ``microversion`` or the cloud's best
    of 2.53 / 2.11 (``service_microversion``)."""
    resp = call(nova, 'GET', query('/os-services', [('binary', COMPUTE_BINARY)]), microversion or service_microversion(nova), doing)
    return [s for s in (resp.body or {}).get('services', []) if s.get('binary') == COMPUTE_BINARY], resp.date


def _host_names(services):
    return sorted(set(s.get('host') for s in services if s.get('host')))


def find_compute_service(nova, host, microversion=None, with_hosts=False):
    """The nova-compute service of ``host`` (exact match) as a service_view dict; ``with_hosts``: (that dict, the
    host names of every nova-compute service, so that a BMC answering for another host is recognized), from the
    same listing.

    Not found -> NovahaError naming close matches. ``microversion`` defaults to the cloud's best
    of 2.53 / 2.11 so that ``forced_down`` and the service id are reported.
    """
    services, date = compute_services(nova, 'looking up the %s service of host %s' % (COMPUTE_BINARY, host), microversion)
    exact = [s for s in services if s.get('host') == host]
    if len(exact) == 1:
        view = service_view(exact[0], date)
        return (view, _host_names(services)) if with_hosts else view
    if len(exact) > 1:
        raise NovahaError(
            'host %s has %d %s services (ids %s); remove the stale ones first' % (host, len(exact), COMPUTE_BINARY, ', '.join(str(s.get('id')) for s in exact)),
            kind=KIND_CONFIGURATION,
        )
    hosts = [s.get('host') for s in services if s.get('host')]
    similar = close_matches(host, hosts)
    if similar:
        hint = 'did you mean %s?' % ', '.join(similar)
    elif hosts:
        hint = 'known compute hosts: %s' % ', '.join(sorted(hosts)[:20])
    else:
        hint = 'the cloud has no %s services' % COMPUTE_BINARY
    raise NovahaError(
        'no %s service on host %s (exact match, as in openstack compute service list); %s' % (COMPUTE_BINARY, host, hint),
        kind=KIND_CONFIGURATION,
        similar_hosts=similar,
    )


def service_microversion(nova):
    """2.53 when the cloud offers it, else 2.11; older clouds cannot force a service down."""
    _low, best, _default = nova.microversion_range()
    if best >= MV_SERVICES:
        return MV_SERVICES
    if best >= MV_SERVICES_FORCED_DOWN:
        return MV_SERVICES_FORCED_DOWN
    raise NovahaError(
        'the compute API offers microversions up to %s; forcing a service down needs %s or later' % (mv_str(best), mv_str(MV_SERVICES_FORCED_DOWN))
    )


def update_compute_service(nova, service, forced_down=None, disabled=None, disabled_reason=None, microversion=None):
    """Set forced_down and/or disabled (+ reason) on a service_view; returns the service re-read.

    ``None`` leaves a field as it is. ``disabled_reason`` is only sent when disabling.
    """
    microversion = microversion or service_microversion(nova)
    host = service['host']
    doing = 'updating the %s service of host %s' % (COMPUTE_BINARY, host)
    if microversion >= MV_SERVICES:
        body = {}  # type: dict
        if forced_down is not None:
            body['forced_down'] = bool(forced_down)
        if disabled is not None:
            body['status'] = 'disabled' if disabled else 'enabled'
            if disabled and disabled_reason:
                body['disabled_reason'] = disabled_reason
        if body:
            call(nova, 'PUT', '/os-services/%s' % service['id'], microversion, doing, body=body)
    else:
        target = dict(host=host, binary=service.get('binary') or COMPUTE_BINARY)
        if forced_down is not None:
            call(nova, 'PUT', '/os-services/force-down', microversion, doing, body=dict(target, forced_down=bool(forced_down)))
        if disabled:
            if disabled_reason:
                call(nova, 'PUT', '/os-services/disable-log-reason', microversion, doing, body=dict(target, disabled_reason=disabled_reason))
            else:
                call(nova, 'PUT', '/os-services/disable', microversion, doing, body=target)
        elif disabled is not None:
            call(nova, 'PUT', '/os-services/enable', microversion, doing, body=target)
    return find_compute_service(nova, host, microversion)


def plan_service_update(service, force_down=False, disable=False, disabled_reason=None):
    """What must change on the Nova service (a dict for update_compute_service; empty: nothing)."""
    changes = {}  # type: dict
    if force_down and not service.get('forced_down'):
        changes['forced_down'] = True
    if disable:
        if service.get('status') != 'disabled':
            changes['disabled'] = True
            changes['disabled_reason'] = disabled_reason or DEFAULT_DISABLED_REASON
        elif disabled_reason and service.get('disabled_reason') != disabled_reason:
            changes['disabled'] = True
            changes['disabled_reason'] = disabled_reason
    return changes


def predict_service(service, changes):
    """The service as it will look after ``changes`` (forced_down, disabled, disabled_reason), for check mode."""
    after = dict(service)
    if 'forced_down' in changes:
        after['forced_down'] = changes['forced_down']
        if changes['forced_down']:
            after['state'] = 'down'
    if changes.get('disabled') is True:
        after['status'] = 'disabled'
        after['disabled_reason'] = changes.get('disabled_reason') or service.get('disabled_reason')
    elif changes.get('disabled') is False:
        after['status'] = 'enabled'
        after['disabled_reason'] = None
    return after


def stale_heartbeat(service, fence_result):
    """Nova still reports the service up although the BMC reads power Off."""
    evidence = fence_result['evidence']
    return service is not None and service.get('state') == 'up' and not service.get('forced_down') and evidence.get('power_state') == POWER_OFF
