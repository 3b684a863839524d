# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The compute API microversions the collection relies on, each named once, and the one way to read and write one.

No Ansible imports. A microversion is a tuple such as ``(2, 94)``: ``parse_mv`` reads one from what an operator,
clouds.yaml or keystoneauth gives, ``mv_str`` writes it for a request header or a result. Which microversion each
request of a run uses is decided once per run in ``choose_microversions`` (below).
"""

from __future__ import annotations

from ansible_collections.novaha.recovery.plugins.module_utils._errors import KIND_API, EvacuationError

MV_BASE = (2, 1)  # the compute API v2.1 itself: actions and metadata need nothing newer
MV_SERVICES_FORCED_DOWN = (2, 11)  # a service can be forced down
MV_SHARED_STORAGE_GONE = (2, 14)  # onSharedStorage removed from the request (Nova detects it)
MV_TARGET_SCHEDULED = (2, 29)  # a target host is validated by the scheduler unless forced
MV_AGGREGATES = (2, 41)  # aggregate uuid
MV_SERVICES = (2, 53)  # os-services by uuid (PUT /os-services/{id} instead of host + binary)
MV_HYPERVISORS = (2, 53)  # hypervisor id is the compute node / resource provider uuid; stats until 2.87
MV_MIGRATIONS = (2, 59)  # os-migrations: uuid, changes-since, paging
MV_SERVER_GROUPS = (2, 64)  # server group "policy" (singular) and "rules"
MV_FORCE_GONE = (2, 68)  # 'force' removed
MV_LOCK_REASON = (2, 73)  # lock with locked_reason; locked_reason shown
MV_HYPERVISOR_STATS_GONE = (2, 88)
MV_EVACUATE_STOPS = (2, 95)  # evacuated server left stopped at the destination
# The evacuate microversion unless the operator asks for another: the newest at which Nova restores the
# server's power state itself. 2.95 would stop every server and need a start request and another look per
# server (measured in docs/benchmarks.md); fencing is proven before any evacuation, so nothing is gained
# by leaving the servers stopped. 2.29 onwards the scheduler validates a target host; 2.68 onwards there
# is no 'force'.
MV_EVACUATE_DEFAULT = (2, 94)
# Reads: flavor embedded (2.47), server_groups in show (2.71), locked_reason (2.73), pinned AZ (2.96).
# Not higher: 2.102 restricts query parameters and nothing later adds what the engine reads.
MV_READ = (2, 96)
MV_MINIMUM = MV_MIGRATIONS  # the engine finds evacuations by their migration records


def parse_mv(value):
    """'2.95' / (2, 95) / None -> (2, 95) / None."""
    if value is None or value == '':
        return None
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[1]) if len(value) > 1 else 0)
    if isinstance(value, float):
        value = repr(value)
    major, _sep, minor = str(value).strip().partition('.')
    if not major.isdigit() or (minor and not minor.isdigit()):
        raise ValueError('not a microversion: %r' % (value,))
    return (int(major), int(minor or 0))


def mv_str(value):
    """(2, 95) -> '2.95'."""
    return '%d.%d' % tuple(value)


# ---------------------------------------------------------------------------------------------------------
# The microversion of each request of a run


class Microversions(object):
    """The microversion of each kind of request, chosen once per run."""

    def __init__(self, evacuate, read, lock, migrations, services, cloud_max, negotiated, client_pin=None):
        self.evacuate = evacuate
        self.read = read
        self.lock = lock  # None: the cloud cannot mark a lock as ours (below 2.73), none is taken
        self.migrations = migrations
        self.services = services
        self.cloud_max = cloud_max
        self.negotiated = negotiated  # False when the operator asked for the evacuate microversion
        self.client_pin = client_pin  # clouds.yaml's compute_api_version as written, never used for a request

    @property
    def evacuate_stops_server(self):
        return self.evacuate >= MV_EVACUATE_STOPS

    @property
    def can_lock(self):
        """A lock of ours carries its reason, so that any later run tells it from its user's lock."""
        return self.lock is not None

    def to_dict(self):
        return dict(
            evacuate=mv_str(self.evacuate),
            read=mv_str(self.read),
            lock=mv_str(self.lock) if self.lock is not None else None,
            migrations=mv_str(self.migrations),
            services=mv_str(self.services),
            cloud_max=mv_str(self.cloud_max),
            negotiated=self.negotiated,
            client_pin=self.client_pin,
            client_pin_ignored=self.client_pin is not None,
            evacuate_stops_server=self.evacuate_stops_server,
            sends_on_shared_storage=self.evacuate < MV_SHARED_STORAGE_GONE,
            target_host_checked_by_scheduler=self.evacuate >= MV_TARGET_SCHEDULED,
        )


def pin_text(value):
    """clouds.yaml's ``compute_api_version`` as the operator wrote it (``2.1``, ``2.latest``), or None."""
    if value is None or value == '':
        return None
    if isinstance(value, (tuple, list)):
        return mv_str(parse_mv(value))
    if isinstance(value, float):
        return repr(value)
    return str(value).strip() or None


def choose_microversions(cloud_min, cloud_max, requested=None, client_default=None):
    """Choose the microversion of each request from what the cloud offers.

    ``requested`` is the operator's explicit evacuate microversion (the module's ``microversion``
    option), used as given. Otherwise 2.94 (``MV_EVACUATE_DEFAULT``), lowered to the cloud's maximum.

    ``client_default`` (a ``compute_api_version`` pinned in clouds.yaml) is never used for a request of the
    engine: it is meant for the operator's own clients, and taken for ours it changed what Nova does - at 2.1 to
    2.13 ``onSharedStorage: false`` is sent, below 2.29 a target host bypasses the scheduler, below 2.73 a lock
    carries no reason. It is only reported (``client_pin``), so that a reader sees it was there and ignored.

    A lock is taken only where it carries our reason (2.73): an unmarked lock left behind by a killed run is one
    no later run can tell from its user's, so below 2.73 the servers are moved unlocked (``lock`` None).
    Reads are separate from the evacuate request and use what they need.
    """
    low = parse_mv(cloud_min) or MV_BASE
    high = parse_mv(cloud_max)
    if high is None:
        raise EvacuationError('the compute API announces no microversions; this engine needs %s or later' % mv_str(MV_MINIMUM), kind=KIND_API)
    if high < MV_MINIMUM:
        raise EvacuationError(
            'the compute API offers microversions up to %s; finding evacuation migrations needs %s or later' % (mv_str(high), mv_str(MV_MINIMUM)), kind=KIND_API
        )
    try:
        wanted = parse_mv(requested)
    except ValueError:
        raise EvacuationError('microversion %r is not a microversion such as 2.94' % (requested,), kind=KIND_API)
    if wanted is not None:
        if wanted[0] != 2 or not low <= wanted <= high:
            raise EvacuationError(
                'microversion %s is outside what the compute API offers (%s to %s)' % (mv_str(wanted), mv_str(low), mv_str(high)), kind=KIND_API
            )
        evacuate, negotiated = wanted, False
    else:
        evacuate, negotiated = max(low, min(MV_EVACUATE_DEFAULT, high)), True
    return Microversions(
        evacuate=evacuate,
        read=min(high, MV_READ),
        lock=MV_LOCK_REASON if high >= MV_LOCK_REASON else None,
        migrations=MV_MIGRATIONS,
        services=MV_SERVICES if high >= MV_SERVICES else MV_SERVICES_FORCED_DOWN,
        cloud_max=high,
        negotiated=negotiated,
        client_pin=pin_text(client_default),
    )
