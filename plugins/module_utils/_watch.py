# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Watching many servers being evacuated: two listings per poll, whatever the number of servers.

No Ansible imports. ``Watcher`` keeps the last view of each watched server and of its evacuation migrations;
``next_poll_delay`` says when to look again. What a view means is decided in ``_decisions.judge``.
"""

from __future__ import annotations

import datetime

from ansible_collections.novaha.recovery.plugins.module_utils._decisions import snapshot
from ansible_collections.novaha.recovery.plugins.module_utils._nova import backoff, list_all

FIRST_LOOK = 1.0  # seconds from an action, or from a look that saw a change, to the next look
# Two looks start at least this far apart: a look is two listings against the floor's one listing a second. While
# the requests of a whole window went out one after the other between two looks they were 2.4 s apart (18 looks for
# 50 servers at 20 s rebuilds); with those requests sent together, 1 s after each change meant 47 looks, more
# requests per server than the evacuations themselves, and a loaded nova-api spent its CPU on listings.
LOOK_GAP = 2.0


class Watcher(object):
    """Observes the servers being evacuated with ONE server listing (all projects, changes-since) and ONE
    evacuation-migrations listing (changes-since) per poll, independent of how many servers it watches.

    ``changes-since`` is taken from the server clock (the Date of Nova's answers) minus a margin, so a
    skewed controller clock cannot hide a change. A server acted upon is "stale" until a listing shows
    it again, so no decision is taken on what it looked like before the action.
    """

    MARGIN = 5  # seconds of overlap between polls
    # Every FULL_EVERY-th poll looks again at everything changed since the watch began instead of since the last
    # look: a change missed once (a skewed clock, a commit slower than MARGIN) is seen within a few polls, never
    # left to the timeout. Still two listings, never a listing of every server.
    FULL_EVERY = 5

    def __init__(self, nova, microversions, source_host=None):
        self.nova = nova
        self.mv = microversions
        self.source_host = source_host
        self.since = None
        self.servers = {}
        self.migrations = {}
        self.stale = set()
        self.polls = 0
        self.full_polls = 0
        self.began = None
        self.failed_polls = []

    def start(self, server_time):
        self.since = server_time - datetime.timedelta(seconds=self.MARGIN)
        self.began = self.since
        self.full_polls = 0

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
        full = (self.polls + 1) % self.FULL_EVERY == 0
        since = self.began if full and self.began else self.since
        since = since.strftime('%Y-%m-%dT%H:%M:%SZ') if since else None
        # Migrations first: Nova saves the instance's new host, then marks the migration done
        # (resource_tracker.finish_evacuation), so a done migration is never seen with a server listing
        # older than it (which would look like "done but still on the source host").
        migrations, _date = list_all(
            self.nova,
            '/os-migrations',
            [('migration_type', 'evacuation'), ('source_compute', self.source_host), ('changes-since', since)],
            'migrations',
            self.mv.migrations,
        )
        servers, date = list_all(self.nova, '/servers/detail', [('all_tenants', 'True'), ('changes-since', since)], 'servers', self.mv.read)
        self.polls += 1
        self.full_polls += full
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


def next_poll_delay(poll_interval, quiet_polls, since_last_look=None):
    """Seconds to wait before the next look: FIRST_LOOK after something changed (an action was sent, a watched
    server or its migration moved on), doubling with each look that saw no change, at most ``poll_interval``, and
    never less than what is left of LOOK_GAP (up to ``poll_interval``) since the last look started
    (``since_last_look`` seconds ago; None: no look yet). Evacuations finish sooner than a fixed interval would
    notice, and a long quiet wait costs few requests."""
    delay = backoff(quiet_polls, cap=poll_interval, base=FIRST_LOOK)
    if since_last_look is None:
        return delay
    return max(delay, min(LOOK_GAP, float(poll_interval)) - since_last_look)
