# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The decisions about one server: what it looks like, whether and how it is evacuated, whether it is recovered.

No Ansible imports, no requests: pure functions on server bodies, migration records and service views, so every
decision runs in tests without a cloud. The engine that acts on them is ``_evacuation``; the watch, ``_watch``.

One function per decision, so a reader finds each in exactly one place:

- what a server looks like before and after ........ ``snapshot``
- whether its state can be evacuated ................ ``classify``
- what happens to it (evacuate, wait, nothing) ...... ``decide``
- whether its lock is ours .......................... ``our_lock``
- which microversions are used ...................... ``_microversions.choose_microversions``
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

import json
import re

from ansible_collections.novaha.recovery.plugins.module_utils._errors import (
    KIND_FORBIDDEN,
    KIND_NOT_FOUND,
    EvacuationError,
)
from ansible_collections.novaha.recovery.plugins.module_utils._microversions import (
    MV_SHARED_STORAGE_GONE,
    MV_TARGET_SCHEDULED,
    mv_str,
)
from ansible_collections.novaha.recovery.plugins.module_utils._storage import storage_next_command, storage_of

# ---------------------------------------------------------------------------------------------------------
# Vocabulary

OUTCOME_PLANNED = 'planned'  # check mode: what would be done
OUTCOME_NOTHING_TO_DO = 'nothing_to_do'
OUTCOME_REFUSED = 'refused'  # not touched: state, host not fenced, not on the expected host
OUTCOME_PENDING = 'pending'  # selected but never started (a run ended first)
OUTCOME_IN_PROGRESS = 'in_progress'
OUTCOME_RECOVERED = 'recovered'
OUTCOME_FAILED = 'failed'

ACTION_EVACUATE = 'evacuate'
ACTION_WAIT = 'wait'  # an evacuation is already in flight: adopt it, issue nothing
ACTION_RECONCILE = 'reconcile'  # evacuated earlier by us: finish (start/stop, unlock) only
ACTION_NONE = 'none'
ACTION_REFUSE = 'refuse'

# Why an evacuation could not be done; retry_decision and next_command key on these (with KIND_API,
# KIND_FORBIDDEN and KIND_NOT_FOUND of _errors, shared by every topic).
KIND_STATE = 'state'
KIND_NOT_FENCED = 'not_fenced'
KIND_ELSEWHERE = 'not_on_source'
KIND_NO_HOST = 'no_host'
KIND_BAD_TARGET = 'bad_target'
KIND_NO_VALID_HOST = 'no_valid_host'
KIND_EVACUATION_FAILED = 'evacuation_failed'
KIND_POWER = 'power_action_failed'
KIND_IDENTITY = 'identity_changed'
KIND_DELETED = 'deleted'
KIND_TIMEOUT = 'timeout'
KIND_API_OUTAGE = 'api_outage'  # the compute API failed for longer than the run rides out
KIND_POWERED_ON = 'host_powered_on'  # the failed host read power On again: no new evacuation

NOT_RETRYABLE = frozenset(
    [KIND_STATE, KIND_NOT_FENCED, KIND_ELSEWHERE, KIND_NO_HOST, KIND_BAD_TARGET, KIND_FORBIDDEN, KIND_NOT_FOUND, KIND_IDENTITY, KIND_DELETED, KIND_POWER]
)

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
WARNING_ROOT_DISK_LOST = 'root_disk_lost'  # image-booted, no shared storage: the root disk is rebuilt
WARNING_DISK_RECREATED = 'disk_recreated'  # an ephemeral or swap disk is recreated empty
WARNING_NOT_LOCKED = 'not_locked'  # the cloud offers no lock reason (below 2.73): moved unlocked
WARNING_OTHER = 'other'

LOCK_REASON_PREFIX = 'novaha.recovery:'
_LOCK_REASON_RE = re.compile(r'^novaha\.recovery: evacuating from (?P<source>\S+) \(was (?P<status>[A-Z_]+)\)')

HIDDEN = '<hidden>'


# ---------------------------------------------------------------------------------------------------------
# Snapshot


def _ports(addresses):
    ports = []
    for network, entries in sorted((addresses or {}).items()):
        for entry in entries or []:
            ports.append(dict(network=network, mac=entry.get('OS-EXT-IPS-MAC:mac_addr'), ip=entry.get('addr'), type=entry.get('OS-EXT-IPS:type')))
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
        flavor=dict(
            name=flavor.get('original_name') or flavor.get('id'),
            vcpus=flavor.get('vcpus'),
            ram=flavor.get('ram'),
            disk=flavor.get('disk'),
            ephemeral=flavor.get('ephemeral', 0),
            swap=flavor.get('swap', 0),
        ),
        image_id=image.get('id') if isinstance(image, dict) else None,
        boot_from_volume=not image,
        volumes=sorted(v.get('id') for v in server.get('os-extended-volumes:volumes_attached') or []),
        root_device=server.get('OS-EXT-SRV-ATTR:root_device_name'),
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
    # ``updated`` (Nova's clock): the verify phase lists the servers changed since then (``_report.verify_since``).
    keys = ('host', 'status', 'vm_state', 'task_state', 'power_state', 'locked', 'locked_reason', 'updated')
    return dict((k, snap.get(k)) for k in keys)


def lock_reason(source_host, status):
    return '%s evacuating from %s (was %s)' % (LOCK_REASON_PREFIX, source_host, status)


def our_lock(server):
    """{'source': ..., 'status': ...} when ``server`` (a body or a snapshot) is locked by novaha.recovery, else None.

    The one answer to "is this lock ours": a lock carrying our reason (``lock_reason``). Nova shows a lock's
    reason from microversion 2.73; below it no lock is ours, because the engine takes none there
    (``_microversions.choose_microversions``) - a lock without a reason is its user's, and stays."""
    if not server or not server.get('locked'):
        return None
    match = _LOCK_REASON_RE.match(server.get('locked_reason') or '')
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
    'shelved_offloaded': 'is SHELVED_OFFLOADED: it runs on no host, there is nothing to evacuate; "openstack server unshelve {id}" starts it on a healthy host',
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
            return Verdict(
                True, 'its task_state %s was left by its failed host; reset_state resets it to %s first' % (task, reset_to), EXPECTED_STATUS[vm_state], reset_to
            )
        return Verdict(
            False,
            'server %s has task_state %s in progress (status %s, vm_state %s); Nova does '
            'not evacuate a server with a task in progress. If the task is stuck because '
            'its host failed, re-run with reset_state=true (sends os-resetState) or run '
            '"openstack server set --state %s %s"' % (ident, task, snap.get('status'), vm_state, 'active' if vm_state == 'active' else 'error', snap.get('id')),
        )
    if vm_state in ('active', 'stopped'):
        return Verdict(True, 'it is %s' % snap.get('status'), EXPECTED_STATUS[vm_state])
    if vm_state == 'error':
        return Verdict(True, 'it is ERROR with no task in progress; Nova rebuilds it on the new host and it ends ACTIVE', 'ACTIVE')
    if vm_state in ('paused', 'suspended', 'rescued') and reset_state:
        return Verdict(
            True, 'it is %s; reset_state resets it to error first, it then boots fresh on the new host and ends ACTIVE' % snap.get('status'), 'ACTIVE', 'error'
        )
    why = _REFUSED_STATES.get(vm_state)
    if why is None:
        why = 'is in vm_state %s (status %s), which Nova does not evacuate' % (vm_state, snap.get('status'))
    return Verdict(False, 'server %s %s' % (ident, why.format(id=snap.get('id'))))


def service_is_up(service):
    return bool(service) and service.get('state') == 'up' and not service.get('forced_down')


class Decision(object):
    def __init__(self, action, reason, kind=None, expected_status=None, reset_to=None, migration=None, warnings=None):
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
    ours = our_lock(snap)
    original = ours['status'] if ours else None
    migrations = sorted(migrations or [], key=lambda m: m.get('id') or 0, reverse=True)

    in_flight = [m for m in migrations if m.get('status') not in MIGRATION_DONE | MIGRATION_FAILED]
    if in_flight:
        mig = in_flight[0]
        expected = original or EXPECTED_STATUS.get(snap.get('vm_state'), 'ACTIVE')
        reason = 'an evacuation of %s from %s is already in flight (migration %s, status %s); waiting for it, issuing nothing' % (
            ident,
            mig.get('source_compute'),
            mig.get('id'),
            mig.get('status'),
        )
        return Decision(ACTION_WAIT, reason, expected_status=expected, migration=mig)

    if not host:
        return Decision(ACTION_REFUSE, 'server %s is on no host (status %s); there is nothing to evacuate' % (ident, snap.get('status')), kind=KIND_NO_HOST)

    moved = [m for m in migrations if m.get('status') in MIGRATION_DONE and m.get('dest_compute') == host]
    settled = not snap.get('task_state') and snap.get('status') in ('ACTIVE', 'SHUTOFF')

    if expected_source and host != expected_source:
        if not settled:
            return Decision(
                ACTION_REFUSE,
                'server %s is on %s, not on the expected source host %s, and is %s%s; '
                'not touching it'
                % (ident, host, expected_source, snap.get('status'), ' with task %s' % snap.get('task_state') if snap.get('task_state') else ''),
                kind=KIND_ELSEWHERE,
            )
        return _already_moved(snap, ident, ours, original, moved[0] if moved else None, 'is already on %s, not on %s' % (host, expected_source))

    if service is None:
        return Decision(
            ACTION_REFUSE, 'server %s is on host %s, which has no nova-compute service; Nova cannot evacuate from it' % (ident, host), kind=KIND_NO_HOST
        )

    if service_is_up(service):
        if not expected_source and moved and settled:
            return _already_moved(snap, ident, ours, original, moved[0], 'was already evacuated from %s to %s' % (moved[0].get('source_compute'), host))
        return Decision(
            ACTION_REFUSE,
            'host %s is not fenced/forced down: its nova-compute service is up, so Nova '
            'refuses to evacuate %s. Fence the host and force its service down first '
            '(novaha.recovery.os_fence_check)' % (host, ident),
            kind=KIND_NOT_FENCED,
        )

    if target_host and target_host == host:
        return Decision(
            ACTION_REFUSE, 'target host %s is the host %s is on; choose another host or let the scheduler choose' % (target_host, ident), kind=KIND_BAD_TARGET
        )

    verdict = classify(snap, reset_state)
    if not verdict.evacuable:
        return Decision(ACTION_REFUSE, verdict.reason, kind=KIND_STATE)
    warnings = []
    if not service.get('forced_down'):
        warnings.append(
            'the nova-compute service of %s is reported down but not forced down; if the host comes '
            'back while %s is rebuilt elsewhere both copies may run. Force it down after fencing.' % (host, ident)
        )
    return Decision(
        ACTION_EVACUATE,
        'evacuate %s from %s: %s' % (ident, host, verdict.reason),
        expected_status=original or verdict.expected_status,
        reset_to=verdict.reset_to,
        warnings=warnings,
    )


def _already_moved(snap, ident, ours, original, migration, where):
    status = snap.get('status')
    if ours:
        todo = []
        if original and status != original:
            todo.append('return it to %s' % original)
        todo.append('remove the lock novaha.recovery left')
        return Decision(
            ACTION_RECONCILE,
            'server %s %s (%s) after an earlier novaha.recovery run; %s' % (ident, where, status, ' and '.join(todo)),
            expected_status=original or status,
            migration=migration,
        )
    return Decision(ACTION_NONE, 'server %s %s (%s); nothing to do' % (ident, where, status), expected_status=status, migration=migration)


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
            warnings.append(
                'at microversion %s a target host bypasses the scheduler: Nova does not check that '
                '%s has room or fits the server\'s filters (2.29 or later lets the scheduler validate it)' % (mv_str(mv), target_host)
            )
    if mv < MV_SHARED_STORAGE_GONE:
        shared = bool(on_shared_storage)
        if shared and admin_password:
            raise EvacuationError(
                'admin_password cannot be set when on_shared_storage is true below microversion 2.14: the existing disk is reused', kind=KIND_BAD_TARGET
            )
        body['onSharedStorage'] = shared
    elif on_shared_storage is not None:
        warnings.append('on_shared_storage is not sent at microversion %s: Nova detects shared instance storage itself since 2.14' % mv_str(mv))
    if admin_password:
        body['adminPass'] = admin_password
    return {'evacuate': body}, warnings


class Note(str):
    """A warning with its kind (``WARNING_*``): callers decide on the kind, never on the words."""

    kind = WARNING_OTHER  # each note sets its own in __new__

    def __new__(cls, text, kind=WARNING_OTHER):
        note = str.__new__(cls, text)
        note.kind = kind
        return note


def not_locked_warning(what, cloud_max):
    """Why ``what`` (a server, or "N servers") is moved without a lock: the cloud cannot mark the lock as ours."""
    return Note(
        '%s not locked: the compute API offers microversions up to %s, and a lock carries its reason only '
        'from 2.73 on; a lock without it, left behind if the run were killed, could not be told from its '
        "user's lock by any later run" % (what, mv_str(cloud_max)),
        WARNING_NOT_LOCKED,
    )


def warning_kind(warning):
    return getattr(warning, 'kind', WARNING_OTHER)


def disk_warnings(snap, on_shared_storage=None):
    """What the operator loses, one warning per disk (``_storage.storage_of`` decides what is lost)."""
    warnings = []
    ident = '%s (%s)' % (snap.get('name'), snap.get('id'))
    for item in storage_of(snap, bool(on_shared_storage))['lost']:
        if item['disk'] == 'root':
            warnings.append(
                Note(
                    'server %s boots from image %s and its instance directory is not declared on '
                    'shared storage: Nova rebuilds the root disk from the image on the new host and data '
                    'written to the root disk is lost' % (ident, item.get('image_id')),
                    WARNING_ROOT_DISK_LOST,
                )
            )
        elif item['disk'] == 'ephemeral':
            warnings.append(
                Note('server %s has an ephemeral disk (%s GB) on its failed host; it is recreated empty' % (ident, item.get('size_gb')), WARNING_DISK_RECREATED)
            )
        else:
            warnings.append(
                Note('server %s has a swap disk (%s MB) on its failed host; it is recreated empty' % (ident, item.get('size_mb')), WARNING_DISK_RECREATED)
            )
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
        return Judgement(OUTCOME_FAILED, 'evacuation of %s failed: %s is %s%s' % (ident, mig, mig_status, '; Nova: %s' % fault if fault else ''), kind)
    if now.get('vm_state') == 'error' and not now.get('task_state'):
        kind = KIND_NO_VALID_HOST if fault and 'No valid host' in fault else KIND_EVACUATION_FAILED
        return Judgement(
            OUTCOME_FAILED, 'evacuation of %s failed: the server went ERROR%s' % (ident, '; Nova: %s' % fault if fault else ' (no fault recorded)'), kind
        )
    if mig_status not in MIGRATION_DONE and (migration_required or migration is not None):
        return Judgement(OUTCOME_IN_PROGRESS, '%s is %s' % (mig, mig_status or 'not visible yet'))
    if now.get('task_state'):
        return Judgement(OUTCOME_IN_PROGRESS, 'task %s in progress on %s' % (now.get('task_state'), now.get('host')))
    if now.get('host') == source_host:
        return Judgement(OUTCOME_FAILED, '%s is %s but server %s is still on %s' % (mig, mig_status, ident, source_host), KIND_EVACUATION_FAILED)
    changed = [name for name in ('id', 'ports', 'volumes') if now.get(name) != before.get(name)]
    if changed:
        return Judgement(
            OUTCOME_FAILED,
            'server %s landed on %s but its %s changed: before %s, after %s'
            % (
                ident,
                now.get('host'),
                ' and '.join(changed),
                json.dumps([before.get(n) for n in changed], sort_keys=True),
                json.dumps([now.get(n) for n in changed], sort_keys=True),
            ),
            KIND_IDENTITY,
        )
    status = now.get('status')
    if status != expected_status:
        if status == 'SHUTOFF' and expected_status == 'ACTIVE':
            return Judgement(OUTCOME_IN_PROGRESS, 'evacuated to %s and SHUTOFF; it must be started' % now.get('host'), power_action='start')
        if status == 'ACTIVE' and expected_status == 'SHUTOFF':
            return Judgement(OUTCOME_IN_PROGRESS, 'evacuated to %s and ACTIVE; it must be stopped' % now.get('host'), power_action='stop')
        return Judgement(OUTCOME_IN_PROGRESS, 'evacuated to %s, status %s, waiting for %s' % (now.get('host'), status, expected_status))
    return Judgement(
        OUTCOME_RECOVERED, 'server %s was evacuated from %s and is %s on %s (%s %s)' % (ident, source_host, status, now.get('host'), mig, mig_status)
    )


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
        return RetryDecision(True, None, 'no valid host at %s; retrying once with the scheduler choosing' % last.get('target_host'))
    counted = len(attempts) - (1 if fallback_used else 0)
    if counted <= retries:
        target = None if fallback_used else target_host
        return RetryDecision(True, target, 'attempt %d of %d failed (%s); retrying' % (counted, retries + 1, kind))
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
    storage = storage_next_command(record)
    if storage:
        return storage
    if kind == KIND_NOT_FENCED:
        return 'openstack --os-compute-api-version 2.53 compute service set --down %s nova-compute (only once the host is confirmed powered off)' % source
    if kind == KIND_STATE:
        before = record.get('before') or {}
        if before.get('vm_state') in RESETTABLE_VM_STATES and (before.get('task_state') or before.get('vm_state') in ('paused', 'suspended', 'rescued')):
            # What reset_state=true would do; the evacuation then accepts the server.
            return 'openstack server set --state %s %s' % ('active' if before.get('vm_state') == 'active' else 'error', sid)
        return 'openstack server show %s -c status -c OS-EXT-STS:vm_state -c OS-EXT-STS:task_state' % sid
    if kind == KIND_POWERED_ON:
        return 'power the host off again and prove it (novaha.recovery.os_fence_check host=%s), then run the same recovery again' % source
    if kind in (KIND_TIMEOUT, KIND_API_OUTAGE) or record.get('outcome') == OUTCOME_IN_PROGRESS:
        return 'openstack --os-compute-api-version 2.59 server migration list --server %s --type evacuation' % sid
    if kind == KIND_FORBIDDEN:
        return 'openstack role assignment list --names --effective --user <the user of this cloud entry>'
    if request_id:
        return 'openstack server event show %s %s' % (sid, request_id)
    if sid:
        return 'openstack server show %s -c status -c fault' % sid
    return None
