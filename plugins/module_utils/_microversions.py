# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The compute API microversions the collection relies on, each named once, and the one way to read and write one.

No Ansible imports. A microversion is a tuple such as ``(2, 94)``: ``parse_mv`` reads one from what an operator,
clouds.yaml or keystoneauth gives, ``mv_str`` writes it for a request header or a result. Which microversion each
request of a run uses is decided in ``_evacuation.choose_microversions``.
"""

MV_BASE = (2, 1)                   # the compute API v2.1 itself: actions and metadata need nothing newer
MV_SERVICES_FORCED_DOWN = (2, 11)  # a service can be forced down
MV_SHARED_STORAGE_GONE = (2, 14)   # onSharedStorage removed from the request (Nova detects it)
MV_TARGET_SCHEDULED = (2, 29)      # a target host is validated by the scheduler unless forced
MV_AGGREGATES = (2, 41)            # aggregate uuid
MV_SERVICES = (2, 53)              # os-services by uuid (PUT /os-services/{id} instead of host + binary)
MV_HYPERVISORS = (2, 53)           # hypervisor id is the compute node / resource provider uuid; stats until 2.87
MV_MIGRATIONS = (2, 59)            # os-migrations: uuid, changes-since, paging
MV_SERVER_GROUPS = (2, 64)         # server group "policy" (singular) and "rules"
MV_FORCE_GONE = (2, 68)            # 'force' removed
MV_LOCK_REASON = (2, 73)           # lock with locked_reason; locked_reason shown
MV_HYPERVISOR_STATS_GONE = (2, 88)
MV_EVACUATE_STOPS = (2, 95)        # evacuated server left stopped at the destination
# The evacuate microversion unless the operator asks for another: the newest at which Nova restores the
# server's power state itself. 2.95 would stop every server and need a start request and another look per
# server (measured in docs/benchmarks.md); fencing is proven before any evacuation, so nothing is gained
# by leaving the servers stopped. 2.29 onwards the scheduler validates a target host; 2.68 onwards there
# is no 'force'.
MV_EVACUATE_DEFAULT = (2, 94)
# Reads: flavor embedded (2.47), server_groups in show (2.71), locked_reason (2.73), pinned AZ (2.96).
# Not higher: 2.102 restricts query parameters and nothing later adds what the engine reads.
MV_READ = (2, 96)
MV_MINIMUM = MV_MIGRATIONS         # the engine finds evacuations by their migration records


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
