# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host-level evacuation on top of the engine: guards, selection, capacity, the run marker, resume, summary.

No Ansible imports. Nova is reached through the engine's adapter (``request(method, path, microversion,
body)``), Placement and Glance through adapters with the same shape, time through the engine's clock.

One function per decision:

- may this host be evacuated now ............................ ``check_preconditions`` (``refusal_kind``)
- is another run in progress ................................ ``_run.judge_holder`` / ``holder_check``
- did an earlier run recover this host already .............. ``already_recovered``
- which servers are evacuated, in which order, and why not .. ``select_servers``
- which servers a service recovers by itself (left alone) ..... ``recovered_by_service``
- is there room for them .................................... ``check_capacity`` (``pack``)
- where each one goes with reserved target hosts ............ ``assign_targets``
- what the run amounts to ................................... ``summarize_run``
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import threading
import traceback
import uuid

from ansible_collections.novaha.recovery.plugins.module_utils._decisions import (
    ACTION_EVACUATE,
    ACTION_NONE,
    ACTION_RECONCILE,
    ACTION_WAIT,
    MIGRATION_DONE,
    MIGRATION_FAILED,
    OUTCOME_IN_PROGRESS,
    OUTCOME_PENDING,
    OUTCOME_PLANNED,
    WARNING_NOT_LOCKED,
    evacuate_request,
    not_locked_warning,
    our_lock,
    snapshot,
    warning_kind,
)
from ansible_collections.novaha.recovery.plugins.module_utils._errors import (
    KIND_CONFIGURATION,
    EvacuationError,
    MissingLibraryError,
    NovahaError,
)
from ansible_collections.novaha.recovery.plugins.module_utils._evacuation import summarize
from ansible_collections.novaha.recovery.plugins.module_utils._microversions import (
    MV_AGGREGATES,
    MV_BASE,
    MV_HYPERVISORS,
    MV_SERVER_GROUPS,
)
from ansible_collections.novaha.recovery.plugins.module_utils._nova import (
    NovaApiError,
    NovaWrapper,
    answer,
    call,
    explain_api_error,
    list_all,
    query as _query,
)
from ansible_collections.novaha.recovery.plugins.module_utils._options import option_error
from ansible_collections.novaha.recovery.plugins.module_utils._run import (
    COMPUTE,
    DEFAULT_LEASE,
    DEFAULT_SETTLE,
    PHASE_DONE,
    PHASE_EVACUATING,
    PHASE_INTERRUPTED,
    PHASE_VERIFYING,
    UNFINISHED_MIGRATIONS,
    HostRun,
    RunError,
    controller_identity,
    judge_holder,
    parse_marker,
    reference_time,
    wait_for,
)
from ansible_collections.novaha.recovery.plugins.module_utils._service import close_matches, service_view
from ansible_collections.novaha.recovery.plugins.module_utils._storage import (
    KIND_STORAGE_UNVERIFIED,
    KIND_VOLUME_UNUSABLE,
    LOCAL_SKIP,
    STORAGE_KINDS,
    STORAGE_LOCAL,
    judge_attachments,
    loss_warning,
    port_summary,
    root_volume,
    skip_record,
    storage_of,
    volume_guard,
    volume_summary,
)

SCHEDULER = 'nova-scheduler'

GROUP_POLICIES = ('anti-affinity', 'affinity', 'soft-anti-affinity', 'soft-affinity')

DEFAULT_PRIORITY_KEY = 'HA_Priority'

# Instance metadata noting the status to return to, on servers this run cannot lock (locked by their users,
# or lock=false) while Nova leaves evacuated servers stopped (2.95+): a run killed between the evacuation and
# the start would otherwise forget that the server was ACTIVE. Removed once the server is recovered.
NOTE_KEY = 'novaha.recovery:expected_status'


def _get(nova, path, microversion, doing):
    return call(nova, 'GET', path, microversion, doing)


def list_pages(nova, path, params, key, microversion, doing, limit_pages=100):
    """A Nova listing followed over its marker pages. Returns (items, server date of the first page)."""
    try:
        return list_all(nova, path, params, key, microversion, limit_pages=limit_pages)
    except NovaApiError as err:
        raise explain_api_error(err, doing)


# ---------------------------------------------------------------------------------------------------------
# The host as it is: what os_host_info returns and the role saves as snapshot.json before anything changes


class HostListing(object):
    """The raw listings of one host, read once: what ``read_host`` shows and ``HostEvacuation.prepare``
    plans from, so that a module doing both reads the cloud once."""

    def __init__(self, services, date, servers, migrations):
        self.services = services  # every Nova service (raw bodies)
        self.date = date  # the API's clock at the services listing
        self.servers = servers  # the servers whose host is this host (raw bodies)
        self.migrations = migrations  # the host's evacuation migrations (raw records)


def servers_detail(engine, query, what):
    """Every page of the servers of every project that ``query`` (pairs) selects; ``what`` names the listing
    in an error."""
    items, _date = list_pages(
        engine.nova, '/servers/detail', [('all_tenants', 'True')] + list(query), 'servers', engine.mv.read, 'listing the %s in all projects' % what
    )
    return items


def servers_on(engine, host):
    """The servers of every project whose host is ``host`` (all pages)."""
    items = servers_detail(engine, [('host', host)], 'servers of host %s' % host)
    return [s for s in items if s.get('OS-EXT-SRV-ATTR:host') == host]


def list_host(engine, host):
    """Three GETs: the Nova services, the servers on ``host`` and its evacuation migrations."""
    resp = _get(engine.nova, '/os-services', engine.mv.services, 'listing the Nova services')
    return HostListing(
        services=(resp.body or {}).get('services') or [],
        date=resp.date,
        servers=servers_on(engine, host),
        migrations=engine.evacuation_migrations(source_host=host),
    )


def read_host(engine, host, tracked_ids=(), listing=None):
    """The nova-compute service of ``host`` (None when it has none), every compute and scheduler service,
    every server on the host, the servers of ``tracked_ids`` wherever they are, and the host's evacuation
    migrations; from ``listing`` when given (see ``list_host``). Changes nothing."""
    mv = engine.mv
    listing = listing or list_host(engine, host)
    services = [service_view(s, listing.date) for s in listing.services]
    computes = sorted((s for s in services if s['binary'] == COMPUTE), key=lambda s: s['host'] or '')
    schedulers = [s for s in services if s['binary'] == SCHEDULER]
    mine = ([s for s in computes if s['host'] == host] or [None])[0]
    servers = sorted((snapshot(s) for s in listing.servers), key=lambda s: (s['name'] or '', s['id']))

    tracked = []
    if tracked_ids:
        everywhere, _date = list_pages(engine.nova, '/servers/detail', [('all_tenants', 'True')], 'servers', mv.read, 'listing the servers of every project')
        by_id = dict((s.get('id'), s) for s in everywhere)
        for server_id in tracked_ids:
            body = by_id.get(server_id)
            tracked.append(snapshot(body) if body else dict(id=server_id, deleted=True))

    migrations = sorted(listing.migrations, key=lambda m: m.get('id') or 0)
    migrations = [
        dict((k, m.get(k)) for k in ('id', 'uuid', 'instance_uuid', 'status', 'source_compute', 'dest_compute', 'created_at', 'updated_at')) for m in migrations
    ]

    down = [s for s in computes if s['state'] != 'up' or s['forced_down']]
    return dict(
        service=mine,
        computes=computes,
        schedulers=schedulers,
        servers=servers,
        tracked=tracked,
        migrations=migrations,
        summary=dict(
            servers=len(servers),
            computes=len(computes),
            computes_down=len(down),
            computes_down_percent=round(100.0 * len(down) / len(computes), 1) if computes else 0.0,
            schedulers_up=len([s for s in schedulers if s['state'] == 'up']),
            migrations_unfinished=len([m for m in migrations if m['status'] in UNFINISHED_MIGRATIONS]),
        ),
    )


def read_tracked(engine, host, tracked_ids, since=None):
    """What a watch over evacuated servers needs and no more: ``read_host`` without the servers on ``host``
    (``servers`` is empty), and the servers of ``tracked_ids`` wherever they are now. With ``since`` (Nova's clock,
    ``_report.verify_since``) one listing of the servers changed since then (all projects) shows them; a server it
    does not show, and every one without ``since``, is read by its id (one GET each). Never a listing of every
    server of every project. Changes nothing."""
    resp = _get(engine.nova, '/os-services', engine.mv.services, 'listing the Nova services')
    listing = HostListing(
        services=(resp.body or {}).get('services') or [], date=resp.date, servers=[], migrations=engine.evacuation_migrations(source_host=host)
    )
    found = read_host(engine, host, listing=listing)
    changed = changed_servers(engine, since, tracked_ids) if since and tracked_ids else {}
    found['tracked'] = [changed[server_id] if server_id in changed else tracked_server(engine, server_id) for server_id in tracked_ids]
    return found


def changed_servers(engine, since, ids):
    """{id: snapshot} of the servers of ``ids`` that Nova lists as changed since ``since`` (deleted ones as
    ``deleted``)."""
    wanted = set(ids)
    out = {}
    for body in servers_detail(engine, [('changes-since', since)], 'servers changed since %s' % since):
        if body.get('id') in wanted:
            out[body['id']] = dict(id=body['id'], deleted=True) if body.get('status') == 'DELETED' else snapshot(body)
    return out


def tracked_server(engine, server_id):
    """The snapshot of one server wherever it is now; ``deleted`` when Nova no longer knows it."""
    try:
        body = engine.nova.request('GET', '/servers/%s' % server_id, engine.mv.read).body['server']
    except NovaApiError as err:
        if err.status_code == 404:
            return dict(id=server_id, deleted=True)
        raise explain_api_error(err, 'reading server %s' % server_id)
    return snapshot(body)


def utc(value):
    """A Nova/placement timestamp ('2025-11-21T12:00:01.000000', '...Z', '+00:00') as aware UTC, or None."""
    if not value:
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    text = str(value).strip().replace('Z', '+00:00')
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = datetime.datetime.strptime(text[:19], '%Y-%m-%dT%H:%M:%S')
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


# ---------------------------------------------------------------------------------------------------------
# Preconditions


def service_down(service):
    """Down as Nova sees it: forced down, or its heartbeat is older than service_down_time."""
    return bool(service.get('forced_down')) or service.get('state') == 'down'


def service_usable(service):
    """A compute that can take servers: enabled, up, not forced down."""
    return service.get('status') == 'enabled' and service.get('state') == 'up' and not service.get('forced_down')


class Check(object):
    def __init__(self, name, ok, detail):
        self.name = name
        self.ok = ok
        self.detail = detail

    def to_dict(self):
        return dict(name=self.name, ok=self.ok, detail=self.detail)


def check_preconditions(services, host, max_down_percent, target_hosts=None):
    """The guards that make evacuating ``host`` safe, each as a Check; plus the host's compute service.

    ``services``: every service as GET /os-services lists them (all binaries).
    """
    computes = [s for s in services if s.get('binary') == COMPUTE]
    mine = [s for s in computes if s.get('host') == host]
    source = mine[0] if len(mine) == 1 else None
    checks = []

    if source is None:
        known = sorted(s.get('host') for s in computes if s.get('host'))
        close = close_matches(host, known)
        if mine:
            detail = 'host %s has %d nova-compute services; remove the stale ones first' % (host, len(mine))
        else:
            detail = '%s is not a nova-compute host (exact match, as in "openstack compute service list"); %s' % (
                host,
                'did you mean %s?' % ', '.join(close) if close else 'compute hosts: %s' % ', '.join(known[:20]) if known else 'the cloud has no compute hosts',
            )
        checks.append(Check('compute_host', False, detail))
    else:
        checks.append(Check('compute_host', True, '%s is a nova-compute host (service %s)' % (host, source.get('id'))))
        if service_down(source):
            how = 'forced down' if source.get('forced_down') else 'reported down (heartbeat older than service_down_time)'
            detail = 'the nova-compute service of %s is %s' % (host, how)
            if not source.get('forced_down'):
                detail += (
                    '; not forced down: if the host comes back while its servers are rebuilt elsewhere both '
                    'copies may run; fence it and force it down (novaha.recovery.os_fence_check)'
                )
            checks.append(Check('source_down', True, detail))
        else:
            checks.append(
                Check(
                    'source_down',
                    False,
                    'host %s is not fenced/forced down: its nova-compute service is up and not forced down, '
                    'so Nova refuses to evacuate from it. Fence the host and force its service down first '
                    '(novaha.recovery.os_fence_check)' % host,
                )
            )

    others = [s for s in computes if s.get('host') != host]
    usable = sorted(s.get('host') for s in others if service_usable(s))
    if usable:
        checks.append(
            Check(
                'compute_remains', True, '%d other compute host%s enabled and up: %s' % (len(usable), '' if len(usable) == 1 else 's', ', '.join(usable[:10]))
            )
        )
    else:
        checks.append(Check('compute_remains', False, 'no other nova-compute host is enabled and up; there is nowhere to evacuate the servers of %s to' % host))
    if target_hosts:
        unknown = [t for t in target_hosts if t not in set(s.get('host') for s in computes)]
        unusable = [t for t in target_hosts if t not in unknown and t not in usable]
        ok = not unknown and len(unusable) < len(target_hosts)
        parts = []
        if unknown:
            parts.append('not compute hosts: %s' % ', '.join(unknown))
        if unusable:
            parts.append('not enabled and up: %s' % ', '.join(unusable))
        if host in target_hosts:
            ok = False
            parts.append('%s is the failed host itself' % host)
        checks.append(
            Check('target_hosts', ok, 'target_hosts: %s' % '; '.join(parts) if parts else 'target hosts enabled and up: %s' % ', '.join(target_hosts))
        )

    down = sorted(s.get('host') for s in computes if service_down(s))
    if computes:
        percent = 100.0 * len(down) / len(computes)
        ok = percent <= max_down_percent
        detail = '%d of %d nova-compute services are down (%.0f%%: %s); the limit is %s%%' % (
            len(down),
            len(computes),
            percent,
            ', '.join(down[:10]) or 'none',
            max_down_percent,
        )
        if not ok:
            detail += (
                '. So many hosts down at once looks like a network partition or a control plane fault, not '
                'host failures; evacuating now could run servers twice. Raise max_down_percent only once you '
                'know the hosts are really dead'
            )
        checks.append(Check('down_percent', ok, detail))

    schedulers = [s for s in services if s.get('binary') == SCHEDULER]
    up = [s for s in schedulers if s.get('state') == 'up' and s.get('status') == 'enabled' and not s.get('forced_down')]
    if up:
        checks.append(Check('scheduler_up', True, '%d nova-scheduler up (%s)' % (len(up), ', '.join(sorted(s.get('host') for s in up)))))
    else:
        checks.append(
            Check(
                'scheduler_up',
                False,
                'no nova-scheduler service is up (%s); an evacuation would fail '
                'with no valid host' % (', '.join('%s %s' % (s.get('host'), s.get('state')) for s in schedulers) or 'none registered'),
            )
        )
    return checks, source


# The guards that judge the task's input (the host and target host names) rather than the cloud.
INPUT_CHECKS = ('compute_host', 'target_hosts')


def refusal_kind(failed):
    """The kind of a refusal by the ``failed`` checks: configuration when only the input is wrong, else refused."""
    return KIND_CONFIGURATION if all(c.name in INPUT_CHECKS for c in failed) else 'refused'


# ---------------------------------------------------------------------------------------------------------
# Who holds the host (the run marker lives in _run)


def holder_check(holder, wait_for_run=0):
    """The ``no_other_run`` guard for what ``_run.judge_holder`` found on the source service."""
    if holder.kind == 'free':
        return Check('no_other_run', True, 'no other novaha.recovery run holds this host')
    if holder.kind == 'ours':
        return Check('no_other_run', True, 'this run holds the host: %s' % holder.describe())
    if holder.kind == 'ended':
        return Check('no_other_run', True, 'resuming the recovery of the ended %s' % holder.describe())
    if holder.kind == 'stale':
        return Check('no_other_run', True, 'taking over %s: its heartbeat is older than its lease, so its controller is gone' % holder.describe())
    if holder.kind == 'overridden':
        return Check('no_other_run', True, 'taking over %s (takeover=true)' % holder.describe())
    if wait_for_run > 0:
        return Check('no_other_run', True, 'a live %s holds the host; this run waits up to %ss for it to end' % (holder.describe(), wait_for_run))
    return Check(
        'no_other_run',
        False,
        'another novaha.recovery run holds this host: %s. Wait for it to end; '
        'once its heartbeat is older than its lease the same command takes over' % holder.describe(),
    )


def already_recovered(plan):
    """The marker of the earlier run that already recovered this host, or None: a run finds nothing to do there
    and ends at once, claiming, fencing and writing nothing.

    Already recovered means all of: the marker on the service is another run's that ended ``done`` (nothing
    stopped it); the service is still forced down and disabled (the host stays isolated, as that run left it: a
    host forced up or enabled since is no longer the recovery's, and a run recovers it again); no guard refuses;
    and every selected server is one that run moved off the host with nothing left to finish (action none, no
    lock of ours, not on the host). A server on the host again (booted there, put back, or left behind), one still
    on its way, or one refused, makes the run go on as any other."""
    holder = plan.holder
    service = plan.source_service or {}
    if holder is None or holder.kind != 'ended' or holder.marker is None or holder.marker.phase != PHASE_DONE:
        return None
    if not service.get('forced_down') or service.get('status') != 'disabled' or plan.failed_checks:
        return None
    for evac in plan.evacuations:
        if evac.action != ACTION_NONE or (evac.before or {}).get('host') in (None, plan.host):
            return None
    return holder.marker


def isolating_phase(plan, check_mode=False):
    """Which phase of a host_recovery run isolates the host, decided once: ``evacuate`` when servers are to be
    evacuated (os_host_evacuate forces the service down as its first write, once its own plan and guards passed:
    one module run from the fence to the first evacuation), else ``isolate`` (a host with nothing to evacuate,
    and check mode, where the isolate phase says what it would do)."""
    return 'evacuate' if plan.evacuations and not check_mode else 'isolate'


def ending_phase(plan, check_mode=False):
    """Which phase of a host_recovery run ends its marker (and its token), decided once: ``isolate`` for a host with
    nothing to evacuate (nothing comes between its isolation and its end: os_recovery_run ends the run in the same
    module run, one module process fewer), else ``end`` (the role's end of the run, after verify; check mode too)."""
    return 'isolate' if not plan.evacuations and not check_mode else 'end'


# ---------------------------------------------------------------------------------------------------------
# Selection


def compile_query(expression):
    """A compiled JMESPath expression. Missing library and bad syntax become clear errors."""
    try:
        import jmespath
        import jmespath.exceptions
    except ImportError:
        raise MissingLibraryError('jmespath', 'the query option (JMESPath selection of servers)', traceback.format_exc())
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise NovahaError(
            'query %r is not a valid JMESPath expression: %s. Nothing was changed' % (expression, ' '.join(str(exc).split())),
            kind=KIND_CONFIGURATION,
            option='query',
            query=expression,
        )


def run_query(compiled, expression, views):
    """The ids the query picks from ``views``. It must return a list of servers, ids or names."""
    import jmespath.exceptions

    try:
        found = compiled.search(views)
    except jmespath.exceptions.JMESPathError as exc:
        raise NovahaError('query %r failed on the server list: %s. Nothing was changed' % (expression, ' '.join(str(exc).split())), query=expression)
    if found is None:
        return set()
    if not isinstance(found, list):
        raise NovahaError(
            'query %r must return a list of servers (or of their ids or names), not %s %s. '
            'Write it as a filter, for example "[?metadata.HA_Enabled==\'True\']". '
            'Nothing was changed' % (expression, type(found).__name__, json.dumps(found)[:80]),
            kind=KIND_CONFIGURATION,
            option='query',
            query=expression,
        )
    by_name = {}  # type: dict
    for view in views:
        by_name.setdefault(view['name'], []).append(view['id'])
    ids = set(view['id'] for view in views)
    picked = set()
    for item in found:
        if isinstance(item, dict) and item.get('id') in ids:
            picked.add(item['id'])
        elif isinstance(item, str) and item in ids:
            picked.add(item)
        elif isinstance(item, str) and item in by_name:
            picked.update(by_name[item])
        else:
            raise NovahaError(
                'query %r returned %s, which is not a server of the list (an object with its '
                '"id", an id or a name). Nothing was changed' % (expression, json.dumps(item)[:80]),
                kind=KIND_CONFIGURATION,
                option='query',
                query=expression,
            )
    return picked


def server_view(body, groups=None, image_properties=None, aggregate_metadata=None):
    """What selection and the JMESPath ``query`` see of one server: plain names, no Nova prefixes."""
    flavor = body.get('flavor') or {}
    image = body.get('image')
    return dict(
        id=body.get('id'),
        name=body.get('name'),
        project_id=body.get('tenant_id'),
        user_id=body.get('user_id'),
        status=body.get('status'),
        vm_state=body.get('OS-EXT-STS:vm_state'),
        task_state=body.get('OS-EXT-STS:task_state'),
        host=body.get('OS-EXT-SRV-ATTR:host'),
        locked=bool(body.get('locked', False)),
        locked_reason=body.get('locked_reason'),
        metadata=dict(body.get('metadata') or {}),
        tags=list(body.get('tags') or []),
        flavor=dict(
            name=flavor.get('original_name') or flavor.get('id'),
            vcpus=flavor.get('vcpus'),
            ram=flavor.get('ram'),
            disk=flavor.get('disk'),
            ephemeral=flavor.get('ephemeral', 0),
            swap=flavor.get('swap', 0),
            extra_specs=dict(flavor.get('extra_specs') or {}),
        ),
        image_id=image.get('id') if isinstance(image, dict) else None,
        image_properties=dict(image_properties or {}),
        boot_from_volume=not image,
        volumes=sorted(v.get('id') for v in body.get('os-extended-volumes:volumes_attached') or []),
        root_device=body.get('OS-EXT-SRV-ATTR:root_device_name'),
        availability_zone=body.get('OS-EXT-AZ:availability_zone'),
        server_groups=[dict(id=g.get('id'), name=g.get('name'), policy=g.get('policy')) for g in groups or []],
        aggregate_metadata=dict(aggregate_metadata or {}),
        created=body.get('created'),
    )


CRITERIA = (  # option key, what it is called in reasons, where it is in the view
    ('metadata', 'metadata', 'metadata'),
    ('flavor_extra_specs', 'flavor extra spec', None),
    ('image_properties', 'image property', 'image_properties'),
    ('aggregate_metadata', 'host aggregate metadata', 'aggregate_metadata'),
)


def _lookup(view, option):
    if option == 'flavor_extra_specs':
        return view['flavor']['extra_specs']
    return view[dict((c[0], c[2]) for c in CRITERIA)[option]]


def _value_matches(actual, wanted):
    """'*' means present; a list means any of; otherwise equal as text, ignoring case (True == 'true')."""
    if isinstance(wanted, (list, tuple)):
        return any(_value_matches(actual, w) for w in wanted)
    if wanted == '*':
        return True
    return str(actual).strip().lower() == str(_yaml_text(wanted)).strip().lower()


def _yaml_text(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return value


def _pair_matches(found, key, wanted):
    return key in found and _value_matches(found[key], wanted)


def _describe(key, wanted):
    if wanted == '*':
        return '%s present' % key
    if isinstance(wanted, (list, tuple)):
        return '%s in %s' % (key, ', '.join(str(_yaml_text(w)) for w in wanted))
    return '%s=%s' % (key, _yaml_text(wanted))


def selection_reason(view, include, exclude):
    """None when the server passes the include/exclude criteria, else why not (in words)."""
    include = include or {}
    exclude = exclude or {}
    for option, words, _where in CRITERIA:
        for key, wanted in sorted((include.get(option) or {}).items()):
            found = _lookup(view, option)
            if not _pair_matches(found, key, wanted):
                have = ('%s=%s' % (key, found[key])) if key in found else '%s missing' % key
                return 'not selected: include.%s needs %s %s, the server has %s' % (option, words, _describe(key, wanted), have)
    names = include.get('names') or []
    if names and not any(fnmatch.fnmatchcase(view['name'] or '', pattern) for pattern in names):
        return 'not selected: its name matches none of include.names (%s)' % ', '.join(names)
    projects = include.get('project_ids') or []
    if projects and view['project_id'] not in projects:
        return 'not selected: its project %s is none of include.project_ids (%s)' % (view['project_id'], ', '.join(projects))
    for option, words, _where in CRITERIA:
        for key, wanted in sorted((exclude.get(option) or {}).items()):
            found = _lookup(view, option)
            if _pair_matches(found, key, wanted):
                return 'excluded: exclude.%s matches %s %s=%s' % (option, words, key, found[key])
    for pattern in exclude.get('names') or []:
        if fnmatch.fnmatchcase(view['name'] or '', pattern):
            return 'excluded: its name matches exclude.names pattern %s' % pattern
    if view['project_id'] in (exclude.get('project_ids') or []):
        return 'excluded: its project %s is in exclude.project_ids' % view['project_id']
    return None


def _matched_by(view, criteria):
    """The criteria of a match the server meets, in words: 'its name matches amphora-*, its project is p-1'."""
    words = []
    for option, what, _where in CRITERIA:
        for key, wanted in sorted((criteria.get(option) or {}).items()):
            words.append('%s %s' % (what, _describe(key, wanted)))
    names = criteria.get('names') or []
    if names:
        pattern = [n for n in names if fnmatch.fnmatchcase(view['name'] or '', n)][0]
        words.append('its name matches %s' % pattern)
    if criteria.get('project_ids'):
        words.append('its project is %s' % view['project_id'])
    return ', '.join(words)


# ---------------------------------------------------------------------------------------------------------
# Servers that a service recovers by itself

# Octavia names each amphora it boots "amphora-" and the amphora's UUID (octavia/controller/worker/*/tasks/
# compute_tasks.py ComputeCreate) in its service project, from the image tagged [controller_worker] amp_image_tag;
# it sets no instance metadata, and its health manager fails a dead amphora over by booting a new one. The name is
# the one mark every amphora carries (unless [nova] random_amphora_name_length is set: then match the project),
# and "amphora-" with a whole UUID after it is no name a person types. Operators add project_ids (Octavia's
# service project) to make it stricter, or replace or remove the entry.
AMPHORA_NAMES = 'amphora-????????-????-????-????-????????????'
DEFAULT_RECOVERED_BY_SERVICES = [dict(service='octavia', match=dict(names=[AMPHORA_NAMES]))]

KIND_RECOVERED_BY_SERVICE = 'recovered_by_service'  # a ``skipped`` kind: left alone, its service recovers it
SELECTION_KEYS = tuple(c[0] for c in CRITERIA) + ('names', 'project_ids')
_GLOB = frozenset('*?[')


def named_exactly(view, include):
    """The operator named this server in ``include.names`` (a name without glob characters): an explicit choice
    that wins over ``recovered_by_services``."""
    return any(view['name'] == name for name in (include or {}).get('names') or [] if not _GLOB & set(name))


def recovered_by_service(view, services, include=None):
    """The one decision: (index, entry) of the first ``recovered_by_services`` entry whose ``match`` the server
    matches (every criterion given, as ``include``), or None when the run evacuates it. A server the operator
    named exactly in ``include.names`` is evacuated whatever the entries say."""
    if named_exactly(view, include):
        return None
    for index, entry in enumerate(services or []):
        if selection_reason(view, entry.get('match'), None) is None:
            return index, entry
    return None


def service_skip_record(view, index, entry):
    """The ``skipped`` entry of a server left alone because ``entry['service']`` recovers it by itself."""
    sid = view['id']
    service = entry['service']
    return dict(
        id=sid,
        name=view['name'],
        project_id=view['project_id'],
        status=view['status'],
        kind=KIND_RECOVERED_BY_SERVICE,
        service=service,
        reason='left alone: %s recovers it by itself (recovered_by_services[%d]: %s)' % (service, index, _matched_by(view, entry.get('match') or {})),
        next_command='openstack server evacuate %s (only to evacuate it anyway, rather than let %s recover it;'
        ' or run again with recovered_by_services=[])' % (sid, service),
    )


def check_recovered_by_services(entries, option='recovered_by_services'):
    """Raise ``option_error`` for an entry without a service or with a ``match`` that names no criterion (it
    would leave every server of the host alone)."""
    for index, entry in enumerate(entries or []):
        name = '%s[%d]' % (option, index)
        if not isinstance(entry, dict) or not str(entry.get('service') or '').strip():
            raise option_error(
                '%s.service' % name,
                (entry or {}).get('service') if isinstance(entry, dict) else entry,
                'must name the service that recovers these servers (for example octavia)',
            )
        match = dict((k, v) for k, v in (entry.get('match') or {}).items() if v is not None)  # as the operator gave it
        if not any(match.get(key) for key in SELECTION_KEYS):
            raise option_error(
                '%s.match' % name,
                match,
                'must give at least one criterion (%s): an empty match would leave every server of the host alone' % ', '.join(SELECTION_KEYS),
            )


def priority_of(view, key):
    """Higher first; a missing or non-numeric value counts as 0."""
    if not key:
        return 0
    try:
        return float(view['metadata'].get(key, 0))
    except (TypeError, ValueError):
        return 0


def select_servers(views, include=None, exclude=None, query=None, priority_key=DEFAULT_PRIORITY_KEY, always=()):
    """(selected views in evacuation order, skipped [{id, name, reason}]).

    A server is selected when it passes ``include`` (every criterion), is hit by no ``exclude`` criterion,
    and is picked by ``query`` when one is given. Servers in ``always`` (an evacuation of ours to finish)
    are selected whatever the criteria. Order: priority metadata (higher first), then name, then id.
    """
    picked = None
    if query:
        compiled = compile_query(query)
        picked = run_query(compiled, query, views)
    selected, skipped = [], []
    for view in views:
        reason = None
        if view['id'] not in always:
            reason = selection_reason(view, include, exclude)
            if reason is None and picked is not None and view['id'] not in picked:
                reason = 'not selected: the query %s does not return it' % query
        if reason is None:
            selected.append(view)
        else:
            skipped.append(dict(id=view['id'], name=view['name'], project_id=view['project_id'], status=view['status'], reason=reason))
    selected.sort(key=lambda v: (-priority_of(v, priority_key), v['name'] or '', v['id']))
    skipped.sort(key=lambda s: (s['name'] or '', s['id']))
    return selected, skipped


def needs_option(include, exclude, option):
    return bool((include or {}).get(option) or (exclude or {}).get(option))


# ---------------------------------------------------------------------------------------------------------
# Capacity

RESOURCES = ('VCPU', 'MEMORY_MB', 'DISK_GB')


def flavor_needs(view):
    """What a server claims in Placement: VCPU, MEMORY_MB, DISK_GB (root disk only when booted from image)."""
    flavor = view.get('flavor') or {}
    disk = (0 if view.get('boot_from_volume') else (flavor.get('disk') or 0)) + (flavor.get('ephemeral') or 0)
    swap = flavor.get('swap') or 0
    disk += (swap + 1023) // 1024 if swap else 0
    return dict(VCPU=flavor.get('vcpus') or 0, MEMORY_MB=flavor.get('ram') or 0, DISK_GB=disk)


def free_from_placement(inventories, usages):
    """{resource: (free, max_unit)} of one provider from its inventories and usages."""
    free = {}
    for rc in RESOURCES:
        inv = inventories.get(rc)
        if not inv:
            free[rc] = (0, 0)
            continue
        capacity = int((inv.get('total', 0) - inv.get('reserved', 0)) * inv.get('allocation_ratio', 1.0))
        free[rc] = (capacity - usages.get(rc, 0), inv.get('max_unit', capacity))
    return free


def pack(needs, free):
    """First fit, largest memory first: {server id: host} and the ids that fit nowhere.

    ``needs``: [(id, {rc: amount})]; ``free``: {host: {rc: (free, max_unit)}} (not modified).
    """
    left = dict((h, dict((rc, list(v)) for rc, v in res.items())) for h, res in free.items())
    placed, unplaced = {}, []
    for sid, need in sorted(needs, key=lambda item: (-item[1].get('MEMORY_MB', 0), -item[1].get('VCPU', 0))):
        for host in sorted(left, key=lambda h: -left[h].get('MEMORY_MB', [0])[0]):
            res = left[host]
            if all(res.get(rc, [0, 0])[0] >= amount and res.get(rc, [0, 0])[1] >= amount for rc, amount in need.items() if amount):
                for rc, amount in need.items():
                    if amount:
                        res[rc][0] -= amount
                placed[sid] = host
                break
        else:
            unplaced.append(sid)
    return placed, unplaced


def check_capacity(needs, free, source):
    """A capacity report: needed and free totals, what fits nowhere, a warning text or None."""
    placed, unplaced = pack(needs, free)
    total_need = dict((rc, sum(n.get(rc, 0) for _sid, n in needs)) for rc in RESOURCES)
    total_free = dict((rc, sum(max(0, res.get(rc, (0, 0))[0]) for res in free.values())) for rc in RESOURCES)
    warning = None
    if not free:
        warning = 'capacity not checked: no usable host to evacuate to was found in %s' % source
    elif unplaced:
        warning = (
            'not enough free capacity for %d of %d servers to evacuate on %s (needed VCPU %s, MEMORY_MB %s, '
            'DISK_GB %s; free VCPU %s, MEMORY_MB %s, DISK_GB %s, per %s): some evacuations may fail with '
            '"No valid host"'
            % (
                len(unplaced),
                len(needs),
                ', '.join(sorted(free)),
                total_need['VCPU'],
                total_need['MEMORY_MB'],
                total_need['DISK_GB'],
                total_free['VCPU'],
                total_free['MEMORY_MB'],
                total_free['DISK_GB'],
                source,
            )
        )
    return dict(
        source=source,
        hosts=sorted(free),
        needed=total_need,
        free=total_free,
        fits=not unplaced and bool(free),
        unplaced=unplaced,
        placement=placed,
        warning=warning,
    )


def assign_targets(needs, free):
    """Server id -> target host for reserved target hosts, by free capacity; the rest go to the scheduler."""
    placed, _unplaced = pack(needs, free)
    return placed


# ---------------------------------------------------------------------------------------------------------
# Adapters for Placement and Glance (same shape as the engine's SdkNova)


class SdkService(object):
    """Raw requests to another service of an openstacksdk Connection (``placement``, ``image``)."""

    def __init__(self, proxy):
        self._proxy = proxy

    def request(self, method, path, microversion=None, body=None):
        kwargs = dict(raise_exc=False)
        if microversion:
            kwargs['microversion'] = microversion
        if body is not None:
            kwargs['json'] = body
        return answer(self._proxy.request(path, method, **kwargs), method, path)


class CountingNova(NovaWrapper):
    """Counts the requests made through a Nova adapter: the watch requests per poll are reported."""

    def __init__(self, nova):
        super(CountingNova, self).__init__(nova)
        self.requests = 0
        self.watch_requests = 0
        self.polls = 0
        self._lock = threading.Lock()  # the engine's senders count from several threads

    def request(self, method, path, microversion, body=None):
        with self._lock:
            self.requests += 1
            if method == 'GET' and 'changes-since' in path:
                self.watch_requests += 1
                if path.startswith('/servers/detail'):
                    self.polls += 1
        return self._nova.request(method, path, microversion, body)


# ---------------------------------------------------------------------------------------------------------
# The host evacuation


class HostPlan(object):
    """Everything decided before acting: checks, marker, selection, per-server plans, capacity."""

    def __init__(self, host):
        self.host = host
        self.checks = []
        self.source_service = None
        self.holder = None  # _run.Holder: who held the host when it was read
        self.selected = []  # views
        self.skipped = []
        self.evacuations = []  # engine ServerEvacuation objects, in order
        self.capacity = None
        self.warnings = []
        self.run_id = None
        self.wait_for_run = 0
        self.storage = {}  # server id -> _storage.storage_of(...) with the volumes as Cinder shows them

    @property
    def failed_checks(self):
        return [c for c in self.checks if not c.ok]

    @property
    def work(self):
        return [e for e in self.evacuations if e.action in (ACTION_EVACUATE, ACTION_WAIT, ACTION_RECONCILE)]

    def plan_list(self):
        out = []
        for order, e in enumerate(self.evacuations, 1):
            entry = e.plan()
            entry.update(
                order=order,
                id=e.id,
                name=e.name,
                project_id=e.before.get('project_id'),
                status=e.before.get('status'),
                expected_target=e.target_host or ('the scheduler' if e.action == ACTION_EVACUATE else None),
                exclusive_groups=sorted(e.exclusive_groups),
                outcome=e.outcome,
                storage=e.storage,
            )
            out.append(entry)
        return out

    def storage_summary(self):
        """How many selected servers have each storage kind, and how many lose data when evacuated."""
        kinds = dict((kind, 0) for kind in STORAGE_KINDS)
        losing = 0
        for e in self.evacuations:
            if e.storage:
                kinds[e.storage['kind']] += 1
                losing += bool(e.storage['data_loss']) and e.action == ACTION_EVACUATE
        skipped = sum(1 for s in self.skipped if s.get('storage') == STORAGE_LOCAL)
        return dict(kinds=kinds, data_loss=losing, local_ephemeral_skipped=skipped)


class HostEvacuation(object):
    """Plans and runs the evacuation of one failed host. ``engine``: an _evacuation.Engine whose ``nova``
    is the adapter used here too; ``placement`` / ``image``: adapters or None."""

    def __init__(
        self,
        engine,
        placement=None,
        image=None,
        controller=None,
        run_id=None,
        joined=False,
        lease=DEFAULT_LEASE,
        settle=DEFAULT_SETTLE,
        volume=None,
        network=None,
    ):
        self.engine = engine
        self.nova = engine.nova
        self.clock = engine.clock
        self.placement = placement
        self.image = image
        # Cinder and Neutron (adapters or None, reads only): the volumes guard, and the verification that the
        # volumes and ports of a recovered server followed it (the engine asks ``verify_storage``).
        self.volume = volume
        self.network = network
        if volume is not None or network is not None:
            engine.verify = self.verify_storage
        self.controller = controller or controller_identity()
        self.run_id = run_id or uuid.uuid4().hex[:10]
        # joined: the run was claimed before this module (the role's os_recovery_run) and stays held after it;
        # otherwise this evacuation is a run of its own, claimed in execute() and given back when finished.
        self.joined = joined
        self.lease = lease
        self.settle = settle
        self.run = None

    @property
    def mv(self):
        return self.engine.mv

    # -- reading -----------------------------------------------------------------------------------------

    def services(self):
        resp = _get(self.nova, '/os-services', self.mv.services, 'listing the Nova services')
        return (resp.body or {}).get('services') or []

    def server(self, server_id):
        try:
            return self.nova.request('GET', '/servers/%s' % server_id, self.mv.read).body['server']
        except NovaApiError as err:
            if err.status_code == 404:
                return None
            raise explain_api_error(err, 'reading server %s' % server_id)

    def server_groups(self):
        groups, offset = [], 0  # type: list, int
        while True:
            resp = _get(
                self.nova,
                _query('/os-server-groups', [('all_projects', 'True'), ('limit', 1000), ('offset', offset or None)]),
                MV_SERVER_GROUPS,
                'listing the server groups of all projects',
            )
            page = (resp.body or {}).get('server_groups') or []
            groups.extend(page)
            if len(page) < 1000:
                return groups
            offset += len(page)

    def aggregate_metadata(self, host):
        resp = _get(self.nova, '/os-aggregates', MV_AGGREGATES, 'listing the host aggregates')
        merged = {}  # type: dict
        for agg in sorted((resp.body or {}).get('aggregates') or [], key=lambda a: a.get('id') or 0):
            if host in (agg.get('hosts') or []):
                merged.update(agg.get('metadata') or {})
        return merged

    def image_properties(self, image_id):
        if self.image is None or not image_id:
            return {}
        try:
            body = self.image.request('GET', '/v2/images/%s' % image_id).body or {}
        except NovaApiError as err:
            if err.status_code == 404:
                return {}
            raise explain_api_error(err, 'reading image %s for image_properties selection' % image_id)
        standard = (
            'id',
            'name',
            'status',
            'visibility',
            'protected',
            'os_hidden',
            'checksum',
            'os_hash_algo',
            'os_hash_value',
            'owner',
            'size',
            'virtual_size',
            'container_format',
            'disk_format',
            'created_at',
            'updated_at',
            'tags',
            'self',
            'file',
            'schema',
            'min_disk',
            'min_ram',
            'locations',
            'direct_url',
            'stores',
        )
        return dict((k, v) for k, v in body.items() if k not in standard)

    def volumes(self, ids):
        """Volume id -> the Cinder volume body (None: Cinder does not know it); {} without Cinder."""
        found = {}  # type: dict
        if self.volume is None:
            return found
        for vid in ids:
            try:
                found[vid] = (self.volume.request('GET', '/volumes/%s' % vid, None).body or {}).get('volume')
            except NovaApiError as err:
                if err.status_code != 404:
                    raise explain_api_error(err, 'reading volume %s in Cinder' % vid)
                found[vid] = None
        return found

    def ports_of(self, server_id):
        """The Neutron ports of a server (device_id), with their binding host; None without Neutron."""
        if self.network is None:
            return None
        try:
            body = self.network.request('GET', _query('/ports', [('device_id', server_id)]), None).body
        except NovaApiError as err:
            raise explain_api_error(err, 'listing the ports of server %s in Neutron' % server_id)
        return (body or {}).get('ports') or []

    def verify_storage(self, evac, now):
        """The engine asks this once Nova says a server is recovered: None when its volumes and ports followed
        it to its new host, else (kind, reason) and the server fails."""
        new_host = now.get('host')
        try:
            volumes = self.volumes(now.get('volumes') or [])
            ports = self.ports_of(evac.id)
        except NovahaError as exc:
            return KIND_STORAGE_UNVERIFIED, (
                'server %s (%s) is on %s but its volumes and ports could not be verified: %s' % (evac.name, evac.id, new_host, exc.msg)
            )
        if evac.storage is not None:
            evac.storage['after'] = dict(
                volumes=[volume_summary(volumes[v]) for v in sorted(volumes)], ports=[port_summary(p) for p in ports] if ports is not None else None
            )
        return judge_attachments(now, new_host, evac.source_host, volumes if self.volume is not None else None, ports)

    # -- planning ----------------------------------------------------------------------------------------

    def prepare(
        self,
        host,
        include=None,
        exclude=None,
        query=None,
        priority_key=DEFAULT_PRIORITY_KEY,
        max_down_percent=50,
        target_hosts=None,
        takeover=False,
        reset_state=False,
        lock=True,
        on_shared_storage=None,
        require_capacity=False,
        listing=None,
        wait_for_run=0,
        shared_storage=None,
        local_ephemeral=None,
        recovered_by_services=None,
    ):
        """Read everything, decide everything, change nothing. Raises NovahaError for a bad query.

        ``on_shared_storage``: every instance directory of the host is on shared storage (True), or none is
        (False); ``shared_storage``: criteria (as ``include``) of the servers whose directory is; ``local_ephemeral``
        V(skip) leaves the servers whose local disks would be lost alone; ``recovered_by_services``: [{service, match}]
        of the servers a service recovers by itself, left alone (``recovered_by_service``).

        ``listing`` (from ``list_host``) saves reading the services, the servers and the migrations again."""
        plan = HostPlan(host)
        plan.run_id = self.run_id
        plan.wait_for_run = wait_for_run
        services = listing.services if listing is not None else self.services()
        source = self._check_host(plan, services, max_down_percent, target_hosts, listing, takeover, wait_for_run)
        bodies, migrations, always = self._servers_to_consider(plan, source, listing)
        views = self._server_views(host, bodies, include, exclude, query, shared_storage)
        plan.selected, plan.skipped = select_servers(views, include, exclude, query, priority_key, always)
        self._leave_to_services(plan, recovered_by_services, include, always)
        self._plan_storage(plan, on_shared_storage, shared_storage, local_ephemeral, always)
        self._plan_servers(plan, bodies, source, migrations, on_shared_storage, reset_state, lock)
        self._capacity_and_targets(plan, services, target_hosts, require_capacity)
        self._serialisation_warnings(plan)
        warning = loss_warning(
            [(e.name, e.id, e.storage) for e in plan.evacuations if e.action == ACTION_EVACUATE and e.storage],
            sum(1 for e in plan.evacuations if e.action == ACTION_EVACUATE),
        )
        if warning:
            plan.warnings.insert(0, warning)
        unlocked = sum(1 for e in plan.evacuations if WARNING_NOT_LOCKED in [warning_kind(w) for w in e.warnings])
        if unlocked:
            plan.warnings.append(str(not_locked_warning('%d servers' % unlocked, self.mv.cloud_max)))
        return plan

    @staticmethod
    def _leave_to_services(plan, services, include, always):
        """The selected servers a service recovers by itself move to ``plan.skipped`` (not those ours to finish:
        an evacuation already started is finished)."""
        keep = []
        for view in plan.selected:
            found = recovered_by_service(view, services, include) if view['id'] not in always else None
            if found is None:
                keep.append(view)
            else:
                plan.skipped.append(service_skip_record(view, *found))
        plan.selected = keep
        plan.skipped.sort(key=lambda s: (s['name'] or '', s['id']))

    def _plan_storage(self, plan, on_shared_storage, shared_storage, local_ephemeral, always):
        """The storage kind of each selected server (its volumes read from Cinder) into ``plan.storage``; with
        ``local_ephemeral=skip`` the local-ephemeral servers move to ``plan.skipped`` (not those ours to finish)."""
        ids = sorted(set(v for view in plan.selected for v in view['volumes']))
        volumes = self.volumes(ids) if ids else {}
        keep = []
        for view in plan.selected:
            shared = on_shared_storage is True or (bool(shared_storage) and selection_reason(view, shared_storage, None) is None)
            storage = storage_of(view, shared, root_volume(view, volumes))
            if volumes:
                storage['volume_states'] = [volume_summary(volumes.get(v)) for v in view['volumes']]
            storage['guard'] = volume_guard(view, volumes) if volumes else None
            plan.storage[view['id']] = storage
            if local_ephemeral == LOCAL_SKIP and storage['kind'] == STORAGE_LOCAL and view['id'] not in always:
                plan.skipped.append(skip_record(view, storage))
                continue
            keep.append(view)
        plan.selected = keep
        plan.skipped.sort(key=lambda s: (s['name'] or '', s['id']))

    def _check_host(self, plan, services, max_down_percent, target_hosts, listing, takeover, wait_for_run):
        """The guards and who holds the host, into ``plan``; returns the host's nova-compute service (None when
        it has none)."""
        plan.checks, source = check_preconditions(services, plan.host, max_down_percent, target_hosts)
        plan.source_service = source
        if source is not None:
            now, skew = reference_time((listing.date if listing is not None else None) or self.nova.last_date, self.clock.now())
            plan.holder = judge_holder(parse_marker(source.get('disabled_reason')), self.run_id, now, takeover, skew)
            check = holder_check(plan.holder, wait_for_run)
            plan.checks.append(check)
            if plan.holder.kind in ('stale', 'overridden'):
                plan.warnings.append(check.detail)
        return source

    def _servers_to_consider(self, plan, source, listing):
        """(bodies, migrations, always): the servers on the host and those whose evacuation from it is ours to
        finish, the host's evacuation migrations, and the ids selected whatever the criteria (ours to finish,
        locked by an evacuation from this host, or carrying our note)."""
        host = plan.host
        if source is None:
            bodies, migrations = [], []
        elif listing is not None:
            bodies, migrations = list(listing.servers), list(listing.migrations)
        else:
            bodies, migrations = servers_on(self.engine, host), self.engine.evacuation_migrations(source_host=host)
        on_host = set(b['id'] for b in bodies)
        finish = self._earlier_work(migrations, plan.holder.marker if plan.holder is not None else None)
        for sid in sorted(finish - on_host):
            body = self.server(sid)
            if body is not None:
                bodies.append(body)
        ours = set(b['id'] for b in bodies if (our_lock(b) or {}).get('source') == host)
        noted = set(b['id'] for b in bodies if NOTE_KEY in (b.get('metadata') or {}))
        return bodies, migrations, (finish | ours | noted)

    def _server_views(self, host, bodies, include, exclude, query, shared_storage=None):
        """What selection looks at for each server: its body with its server groups, and the image properties and
        aggregate metadata when a criterion needs them (read only then)."""
        groups_by_server = {}  # type: dict
        if bodies:
            for group in self.server_groups():
                if group.get('policy') in GROUP_POLICIES:
                    for member in group.get('members') or []:
                        groups_by_server.setdefault(member, []).append(group)
        by_aggregate = needs_option(include, exclude, 'aggregate_metadata') or needs_option(shared_storage, None, 'aggregate_metadata')
        aggregate_md = self.aggregate_metadata(host) if bodies and by_aggregate else {}
        image_props = {}
        if (
            needs_option(include, exclude, 'image_properties')
            or (query and 'image_properties' in query)
            or needs_option(shared_storage, None, 'image_properties')
        ):
            for image_id in sorted(set((b.get('image') or {}).get('id') for b in bodies if isinstance(b.get('image'), dict))):  # type: ignore[type-var]
                image_props[image_id] = self.image_properties(image_id)

        views = []
        for body in bodies:
            image_id = (body.get('image') or {}).get('id') if isinstance(body.get('image'), dict) else None
            views.append(server_view(body, groups_by_server.get(body['id']), image_props.get(image_id), aggregate_md))
        return views

    def _plan_servers(self, plan, bodies, source, migrations, on_shared_storage, reset_state, lock):
        """The engine's plan of each selected server, in the order of selection, into ``plan.evacuations``."""
        by_id = dict((b['id'], b) for b in bodies)
        for view in plan.selected:
            storage = plan.storage.get(view['id'])
            evac = self.engine.plan(
                by_id[view['id']],
                expected_source_host=plan.host,
                target_host=None,
                on_shared_storage=on_shared_storage,
                reset_state=reset_state,
                lock=lock,
                service=source,
                migrations=migrations,
                storage=storage,
            )
            if storage and storage['guard'] and evac.action == ACTION_EVACUATE:
                evac.refuse(storage['guard'], KIND_VOLUME_UNUSABLE)
            evac.exclusive_groups = set(g['id'] for g in view['server_groups'])
            if evac.before.get('server_groups') is None:
                evac.before['server_groups'] = [g['id'] for g in view['server_groups']]
            finish_noted(evac)
            plan.evacuations.append(evac)

    def _capacity_and_targets(self, plan, services, target_hosts, require_capacity):
        """Capacity for the servers to evacuate on the usable computes (or the target hosts among them): a warning,
        or a failed check with ``require_capacity``; with target hosts, the host each server is sent to."""
        host = plan.host
        targets = {}
        evacuate_needs = []
        for view in plan.selected:
            evacuate_needs.append((view['id'], flavor_needs(view)))
        usable = [s.get('host') for s in services if s.get('binary') == COMPUTE and s.get('host') != host and service_usable(s)]
        candidate_hosts = [t for t in (target_hosts or usable) if t in usable]

        to_move = [e for e in plan.evacuations if e.action == ACTION_EVACUATE]
        needs = [(sid, need) for sid, need in evacuate_needs if sid in set(e.id for e in to_move)]
        if to_move and candidate_hosts:
            free, where = self.free_capacity(candidate_hosts)
            plan.capacity = check_capacity(needs, free, where)
            if plan.capacity['warning']:
                if require_capacity and free:
                    plan.checks.append(Check('capacity', False, plan.capacity['warning']))
                else:
                    plan.warnings.append(plan.capacity['warning'])
            elif require_capacity:
                plan.checks.append(Check('capacity', True, 'the %d servers to evacuate fit on %s' % (len(needs), ', '.join(plan.capacity['hosts']))))
            if target_hosts and free:
                targets = assign_targets(needs, free)
        for e in to_move:
            if target_hosts:
                target = targets.get(e.id)
                if target:
                    self._retarget(e, target)
                else:
                    e.warnings.append('%s (%s) fits on none of the target hosts %s; the scheduler chooses its host' % (e.name, e.id, ', '.join(target_hosts)))

    def _retarget(self, evac, target):
        """Re-plan an evacuation for a target host (the engine builds the request and its warnings)."""
        body, warnings = evacuate_request(self.mv.evacuate, target, None, evac.on_shared_storage)
        evac.target_host = target
        inner = dict(body['evacuate'])
        evac.request = {'evacuate': inner}
        evac.warnings.extend(warnings)

    def _earlier_work(self, migrations, previous):
        """Servers whose evacuation from this host is ours to finish: in flight, or started by an earlier run of
        this recovery (since the first run's start, kept in the marker)."""
        ids = set()
        since = previous.started_at - datetime.timedelta(seconds=60) if previous is not None and previous.started_at else None
        for mig in migrations:
            if mig.get('status') not in MIGRATION_DONE | MIGRATION_FAILED:
                ids.add(mig.get('instance_uuid'))
            elif since is not None and (utc(mig.get('created_at')) or since) >= since:
                ids.add(mig.get('instance_uuid'))
        ids.discard(None)
        return ids

    def _serialisation_warnings(self, plan):
        members = {}  # type: dict
        for e in plan.work:
            for gid in e.exclusive_groups:
                members.setdefault(gid, []).append(e)
        for gid, evacs in sorted(members.items()):
            if len(evacs) > 1:
                plan.warnings.append('servers %s share server group %s: they are evacuated one after the other' % (', '.join(e.name for e in evacs), gid))

    def free_capacity(self, hosts):
        """({host: {rc: (free, max_unit)}}, source) from Placement, else from hypervisor statistics."""
        try:
            resp = _get(self.nova, '/os-hypervisors/detail', MV_HYPERVISORS, 'listing the hypervisors')
        except EvacuationError:
            return {}, 'no source (the hypervisor listing failed)'
        hypervisors = (resp.body or {}).get('hypervisors') or []
        mine = [h for h in hypervisors if (h.get('service') or {}).get('host') in hosts]
        if self.placement is not None:
            try:
                free = {}
                for hyp in mine:
                    rp = hyp.get('id')
                    inv = self.placement.request('GET', '/resource_providers/%s/inventories' % rp, '1.0').body
                    use = self.placement.request('GET', '/resource_providers/%s/usages' % rp, '1.0').body
                    free[hyp['service']['host']] = free_from_placement((inv or {}).get('inventories') or {}, (use or {}).get('usages') or {})
                return free, 'Placement inventories and usages'
            except (NovaApiError, KeyError, TypeError):
                pass
        free = {}
        for hyp in mine:
            if hyp.get('memory_mb') is None:
                continue
            free[hyp['service']['host']] = dict(
                VCPU=((hyp.get('vcpus') or 0) - (hyp.get('vcpus_used') or 0), hyp.get('vcpus') or 0),
                MEMORY_MB=((hyp.get('memory_mb') or 0) - (hyp.get('memory_mb_used') or 0), hyp.get('memory_mb') or 0),
                DISK_GB=((hyp.get('local_gb') or 0) - (hyp.get('local_gb_used') or 0), hyp.get('local_gb') or 0),
            )
        return free, 'hypervisor statistics (allocation ratios not applied)'

    # -- notes of the expected status ------------------------------------------------------------------------

    def _note(self, evac, status):
        try:
            self.nova.request('PUT', '/servers/%s/metadata/%s' % (evac.id, NOTE_KEY), MV_BASE, {'meta': {NOTE_KEY: status}})
        except NovaApiError as err:
            raise explain_api_error(err, 'noting the expected status of %s (%s) in its metadata' % (evac.name, evac.id))
        evac.before.setdefault('metadata', {})[NOTE_KEY] = status

    def drop_notes(self, plan):
        """Remove the notes of servers that need them no more (anything but in progress / not started)."""
        for evac in plan.evacuations:
            if NOTE_KEY not in (evac.before.get('metadata') or {}) or evac.outcome in (OUTCOME_IN_PROGRESS, OUTCOME_PENDING, OUTCOME_PLANNED):
                continue
            try:
                self.nova.request('DELETE', '/servers/%s/metadata/%s' % (evac.id, NOTE_KEY), MV_BASE)
            except NovaApiError as err:
                if err.status_code != 404:
                    evac.warnings.append(
                        'could not remove the metadata %s novaha.recovery set on %s: %s (request id %s)' % (NOTE_KEY, evac.id, err.message, err.request_id)
                    )

    # -- the hold on the host ----------------------------------------------------------------------------

    def host_run(self, host):
        """This evacuation's hold on ``host``: the one HostRun of the module, built at its first use (the wait for
        the service down, the claim, the evacuation)."""
        if self.run is None:
            self.run = HostRun(
                self.nova, host, self.run_id, self.clock, controller=self.controller, lease=self.lease, settle=self.settle, microversion=self.mv.services
            )
        return self.run

    def wait_for_service_down(self, host, timeout, interval=5):
        """Read only the host's nova-compute service (``HostRun.read``) until Nova reports it down or forced down,
        at most ``timeout`` seconds. Returns the seconds waited. A host without the service returns at once (the
        guards name it)."""
        run = self.host_run(host)

        def look():
            try:
                return run.read()[0]
            except RunError as exc:
                if exc.kind == 'no_service':
                    return None
                raise

        _service, waited, _looks = wait_for(look, lambda service: service is None or service_down(service), self.clock, timeout, interval)
        return waited

    def claim(self, plan, read_back=True):
        """An evacuation of its own takes the host, waiting up to ``plan.wait_for_run`` for a live holder.
        A plan made while another run held the host is out of date once it is taken: plan again.

        ``read_back=False``: the claim of a recovery run in its preflight (os_host_evacuate claim=true), written and
        not read back yet; the run's next write to Nova proves it first (``HostRun.prove_claim`` at
        ``self.run.settled_at``). Returns the Holder found before the claim."""
        return self.host_run(plan.host).claim(
            takeover=plan.holder is not None and plan.holder.kind == 'overridden', wait_timeout=plan.wait_for_run, read_back=read_back
        )

    def begin(self, plan):
        """Hold the host for the evacuation: a joined run must already hold it (its phase moves on to
        evacuating); an evacuation of its own claims it unless it did already."""
        run = self.host_run(plan.host)
        if not self.joined and run.marker is None:
            self.claim(plan)
        run.advance(PHASE_EVACUATING)

    def end(self, finished):
        """A joined run stays held for its verification; an evacuation of its own gives the host back as it
        was when finished, and is marked interrupted otherwise (the next run resumes it)."""
        if self.run is None or self.run.marker is None:
            return
        if self.joined:
            self.run.advance(PHASE_VERIFYING)
        elif finished:
            released = self.run.release(evacuated=True)
            if released.declined is not None:
                raise RunError(released.describe(), kind='lost', holder=released.holder)
        else:
            self.run.advance(PHASE_INTERRUPTED)

    # -- running -----------------------------------------------------------------------------------------

    def execute(
        self, plan, wait=True, timeout=1800, poll_interval=5, retries=1, max_parallel=20, on_progress=None, outage_timeout=120, power_check=None, window=None
    ):
        """Mark the host, run the engine over the planned servers, release the marker. Returns the summary."""
        start = self.clock.now()
        peak = dict(in_flight=0)

        disks = plan.storage_summary()

        def progress(counts):
            peak['in_flight'] = max(peak['in_flight'], counts.get('in_flight', 0))
            if on_progress is not None:
                on_progress(dict(counts, selected=len(plan.evacuations), storage=disks))

        if on_progress is not None:
            on_progress(dict(summarize(plan.evacuations, 0.0), selected=len(plan.evacuations), storage=disks))
        self.begin(plan)

        def keep_holding(counts):
            # The heartbeat of the lease, and proof every quarter lease that no other run took the host.
            self.run.renew_if_due()  # type: ignore[union-attr]  # begin() made the run
            progress(counts)

        finished = False
        lost = False
        failed = False
        try:
            for evac in plan.evacuations:
                if needs_note(evac, self.mv.evacuate_stops_server):
                    self._note(evac, evac.expected_status)
            self.engine.run(
                plan.evacuations,
                wait=wait,
                timeout=timeout,
                poll_interval=poll_interval,
                retries=retries,
                max_parallel=max_parallel,
                on_progress=keep_holding,
                outage_timeout=outage_timeout,
                power_check=power_check,
                window=window,
            )
            finished = wait and not any(e.outcome in (OUTCOME_IN_PROGRESS, OUTCOME_PENDING, OUTCOME_PLANNED) for e in plan.evacuations)
        except RunError as exc:
            lost = exc.kind == 'lost'
            failed = True
            raise
        except Exception:
            failed = True
            raise
        finally:
            self.drop_notes(plan)
            end_error = None
            if not lost:
                try:
                    self.end(finished)
                except RunError as exc:
                    if not (failed or self.engine.interrupted):
                        raise  # otherwise the first error (or the outage) is the one to report
                    end_error = exc.msg
        summary = summarize_run(plan, self.clock.now() - start)
        # An outage that ended the run may also keep its marker from saying so: its heartbeat then goes stale after
        # the lease, and the same command takes the host over and resumes.
        summary['end_error'] = end_error
        summary['max_in_flight'] = peak['in_flight']
        summary['window'] = self.engine.window.to_dict() if self.engine.window is not None else None
        summary['api_outages'] = dict(self.engine.outage.to_dict(), reads_sent_again=len(getattr(self.engine.nova, 'retried', ())))
        summary['interrupted'] = self.engine.interrupted
        summary['host_powered_on'] = self.engine.stopped
        return summary


def needs_note(evac, evacuate_stops_server):
    """A server returned to ACTIVE after Nova stopped it, without a lock of ours carrying its status."""
    return (
        evac.action == ACTION_EVACUATE
        and evacuate_stops_server
        and evac.expected_status == 'ACTIVE'
        and evac.before.get('vm_state') == 'active'
        and (evac.user_locked or not evac.lock_wanted)
    )


def finish_noted(evac):
    """A server an earlier run evacuated and noted, found stopped elsewhere: finish it (start it)."""
    noted = (evac.before.get('metadata') or {}).get(NOTE_KEY)
    if not noted or evac.action != ACTION_NONE or evac.before.get('status') == noted:
        return
    evac.action = ACTION_RECONCILE
    evac.expected_status = noted
    evac.outcome = OUTCOME_PLANNED
    evac.reason = 'server %s (%s) was evacuated to %s by an earlier run and is %s; it is returned to %s (noted in its metadata %s)' % (
        evac.name,
        evac.id,
        evac.before.get('host'),
        evac.before.get('status'),
        noted,
        NOTE_KEY,
    )


def summarize_run(plan, seconds=None):
    """selected, recovered, failed, refused, nothing_to_do, in_progress, pending, skipped, seconds."""
    counts = summarize(plan.evacuations)
    out = dict(
        selected=len(plan.evacuations),
        recovered=counts['recovered'],
        failed=counts['failed'],
        refused=counts['refused'],
        nothing_to_do=counts['nothing_to_do'],
        in_progress=counts['in_flight'],
        pending=0,
        planned=0,
        skipped=len(plan.skipped),
        seconds=round(seconds, 1) if seconds is not None else None,
    )
    for e in plan.evacuations:
        if e.outcome == OUTCOME_PENDING:
            out['pending'] += 1
        elif e.outcome == OUTCOME_PLANNED:
            out['planned'] += 1
    return out


def progress_line(host, run_id, counts):
    """The line operators read in the job output while the task waits."""
    storage = counts.get('storage') or {}
    kinds = ', '.join('%d %s' % (n, kind) for kind, n in sorted((storage.get('kinds') or {}).items()) if n)
    return 'os_host_evacuate %s (run %s): %d recovered, %d in flight, %d failed, %d pending of %d selected%s; %s%ds elapsed' % (
        host,
        run_id,
        counts.get('recovered', 0),
        counts.get('in_flight', 0),
        counts.get('failed', 0),
        counts.get('pending', 0),
        counts.get('selected', 0),
        ' (%s%s)' % (kinds, '; %d lose local disks' % storage['data_loss'] if storage.get('data_loss') else '') if kinds else '',
        'window %d; ' % counts['width'] if counts.get('width') else '',
        int(counts.get('elapsed', 0) or 0),
    )
