# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The evacuation engine: plan, issue, watch and verify the evacuation of servers off a failed host.

No Ansible imports. The compute API is reached through ``_nova.SdkNova`` (unit tests pass a fake with the same
``request`` / ``microversion_range`` / ``last_date``), and time through an injected clock. What to do with each
server and whether it is recovered are decided in ``_decisions``; the engine carries those decisions out:

- one server's plan, progress and result .............. ``ServerEvacuation`` (``record()``)
- what would be done to a server ...................... ``Engine.plan``
- at most N in flight, watched, retried, timed out .... ``Engine.run``
- counts for progress lines ........................... ``summarize``
"""

from __future__ import annotations

import concurrent.futures
import datetime
import re
import threading

from ansible_collections.novaha.recovery.plugins.module_utils._concurrency import FixedWindow
from ansible_collections.novaha.recovery.plugins.module_utils._decisions import (
    ACTION_EVACUATE,
    ACTION_NONE,
    ACTION_RECONCILE,
    ACTION_REFUSE,
    ACTION_WAIT,
    HIDDEN,
    KIND_API_OUTAGE,
    KIND_BAD_TARGET,
    KIND_NO_VALID_HOST,
    KIND_NOT_FENCED,
    KIND_POWER,
    KIND_POWERED_ON,
    KIND_STATE,
    KIND_TIMEOUT,
    OUTCOME_FAILED,
    OUTCOME_IN_PROGRESS,
    OUTCOME_NOTHING_TO_DO,
    OUTCOME_PENDING,
    OUTCOME_PLANNED,
    OUTCOME_RECOVERED,
    OUTCOME_REFUSED,
    brief,
    decide,
    disk_warnings,
    evacuate_request,
    judge,
    lock_reason,
    next_command,
    not_locked_warning,
    our_lock,
    retry_decision,
    snapshot,
    warning_kind,
)
from ansible_collections.novaha.recovery.plugins.module_utils._errors import (
    KIND_API,
    KIND_NOT_FOUND,
    EvacuationError,
)
from ansible_collections.novaha.recovery.plugins.module_utils._microversions import (
    MV_BASE,
    MV_SHARED_STORAGE_GONE,
    choose_microversions,
    mv_str,
)
from ansible_collections.novaha.recovery.plugins.module_utils._nova import (
    NovaApiError,
    RetryingReads,
    SystemClock,
    backoff,
    call,
    explain_api_error,
    isotime,
    list_all,
    query,
    transient,
)
from ansible_collections.novaha.recovery.plugins.module_utils._storage import storage_of
from ansible_collections.novaha.recovery.plugins.module_utils._watch import Watcher, next_poll_delay

# ---------------------------------------------------------------------------------------------------------
# The per-server record


class ServerEvacuation(object):
    """One server's plan, progress and result. ``record()`` is what modules return."""

    def __init__(self, snap, decision, source_host, target_host=None, request=None, microversion=None, warnings=None, lock=True, on_shared_storage=None):
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
        self.request = request  # the evacuate body, adminPass replaced by HIDDEN
        self.microversion = microversion
        self.warnings = list(decision.warnings) + list(warnings or [])
        self.lock_wanted = lock
        self.on_shared_storage = on_shared_storage
        self.exclusive_groups = set()  # the host module sets these (affinity serialisation)
        self.outcome = {ACTION_NONE: OUTCOME_NOTHING_TO_DO, ACTION_REFUSE: OUTCOME_REFUSED}.get(decision.action, OUTCOME_PLANNED)
        self.migration = decision.migration
        self.known_migration_ids = set()  # evacuation migrations that existed before us
        self.attempts = []
        self.request_ids = []
        self.locked_by_us = False
        self.user_locked = bool(snap.get('locked')) and not our_lock(snap)
        self.ours_from_earlier = bool(our_lock(snap))
        self.unlocked = False
        self.power_actions = []
        self.requested_at = None
        self.finished_at = None
        self._admin_password = None
        # Transient failures of the compute API (Engine.run pauses; see Engine._defer).
        self.deferred = None  # the error that sent this server back to the queue
        self.transient_failures = 0
        self.check_first = None  # an evacuate request whose effect is still to be found out
        self.reset_done = False
        self.power_unknown = None  # os-start/os-stop sent, its answer lost
        self.storage = None  # _storage.storage_of(...) when the host module read it

    def refuse(self, reason, kind):
        """Not evacuated after all (a guard the host module judges, such as an unusable volume)."""
        self.action = ACTION_REFUSE
        self.outcome = OUTCOME_REFUSED
        self.reason = reason
        self.kind = kind
        self.request = None

    @property
    def done(self):
        return self.outcome in (OUTCOME_RECOVERED, OUTCOME_FAILED, OUTCOME_REFUSED, OUTCOME_NOTHING_TO_DO)

    @property
    def changed(self):
        """Something in the cloud changed: a lock taken and removed again on the way is not a change."""
        acted = set(r['action'] for r in self.request_ids)
        return (
            bool(acted & set(['evacuate', 'reset_state', 'start', 'stop']))
            or (self.ours_from_earlier and self.unlocked)
            or (self.locked_by_us and not self.unlocked)
        )

    def note(self, action, response_or_id, microversion=None):
        request_id = getattr(response_or_id, 'request_id', response_or_id)
        self.request_ids.append(dict(action=action, request_id=request_id, microversion=mv_str(microversion) if microversion else None))

    def plan(self):
        """What would be sent (check mode)."""
        return dict(
            action=self.action,
            reason=self.reason,
            microversion=mv_str(self.microversion) if self.microversion else None,
            request=self.request,
            expected_status=self.expected_status,
            reset_state_to=self.reset_to,
            lock=self.lock_wanted and not self.before.get('locked'),
            storage=self.storage,
            warnings=[str(w) for w in self.warnings],
            warning_kinds=[warning_kind(w) for w in self.warnings],
        )

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
            lock=dict(user_locked=self.user_locked, locked_by_us=self.locked_by_us or self.ours_from_earlier, unlocked=self.unlocked),
            timings=dict(requested_at=isotime(self.requested_at), finished_at=isotime(self.finished_at), seconds=seconds),
            request_ids=list(self.request_ids),
            warnings=[str(w) for w in self.warnings],
            warning_kinds=[warning_kind(w) for w in self.warnings],
            storage=self.storage,
        )
        rec['next_command'] = None if self.outcome in (OUTCOME_RECOVERED, OUTCOME_NOTHING_TO_DO, OUTCOME_PLANNED) else next_command(rec)
        return rec


def _migration_view(mig):
    if not mig:
        return None
    return dict((k, mig.get(k)) for k in ('id', 'uuid', 'status', 'source_compute', 'dest_compute', 'created_at', 'updated_at'))


# ---------------------------------------------------------------------------------------------------------
# The engine


MAX_TRANSIENT_PER_SERVER = 5  # transient failures of one server's requests while the API answers others
UNLOCK_RETRIES = 3  # an unlock is tried again after 1, 2 and 4 seconds


class Outage(object):
    """The compute API failing transiently, as a run sees it: since when, the last error, when to try an action
    again (1, 2, 4, 8, 16, 16 ... seconds after each failure). Any request that succeeds ends it."""

    def __init__(self, clock):
        self.clock = clock
        self._lock = threading.Lock()  # the engine's senders report failures from several threads
        self.since = None
        self.last = None
        self.failures = 0
        self.next_try = 0.0
        self.count = 0  # outages seen in the run
        self.longest = 0.0  # seconds of the longest that ended
        self.total = 0  # transient failures seen in the run (the window counts them per poll)

    @property
    def active(self):
        return self.since is not None

    def failed(self, err):
        with self._lock:
            self._failed(err)

    def _failed(self, err):
        now = self.clock.now()
        if self.since is None:
            self.since = now
            self.failures = 0
            self.count += 1
        self.failures += 1
        self.total += 1
        self.last = getattr(err, 'msg', str(err))
        self.next_try = now + backoff(self.failures - 1, cap=16)

    def ok(self):
        with self._lock:
            self._ok()

    def _ok(self):
        if self.since is not None:
            self.longest = max(self.longest, self.clock.now() - self.since)
            self.since = None
            self.failures = 0

    def paused(self):
        return self.since is not None and self.clock.now() < self.next_try

    def wait(self):
        return max(0.5, self.next_try - self.clock.now())

    def lasted(self):
        return 0.0 if self.since is None else self.clock.now() - self.since

    def to_dict(self):
        return dict(outages=self.count, longest_seconds=round(max(self.longest, self.lasted()), 1), ongoing=self.active, last_error=self.last)


_UUID_RE = re.compile(r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$')


class Engine(object):
    """Plans and runs evacuations. ``nova``: SdkNova or a fake; ``clock``: now()/sleep()."""

    def __init__(self, nova, clock=None, microversion=None, read_retry_budget=30.0, senders=1):
        self.clock = clock or SystemClock()
        # How many servers are begun together (lock, evacuate): each server's requests in order in one thread, at
        # most this many servers' requests in flight (``_begin_batch``). 1: one after the other, no thread.
        self.senders = max(1, int(senders))
        # Every read rides out a short outage (RetryingReads); actions are sent once and checked (see _defer).
        self.nova = RetryingReads(nova, self.clock, read_retry_budget) if read_retry_budget else nova
        self._requested_mv = microversion
        self._mv = None
        self.outage = Outage(self.clock)
        self.interrupted = None  # why the last run() ended before its servers did (an API outage)
        self.stopped = None  # the failed host read power On: no new evacuation was started
        # Power reads that failed, over every run() of this Engine (one per module call); set here, so that it is
        # there for its readers also when run() returns early with nothing to do.
        self.power_warnings = []
        self.window = None  # the last run's window (_concurrency), for the summary
        # verify(evacuation, server snapshot) -> None or (kind, reason): asked once Nova says a server is recovered
        # (the host module checks that its volumes and ports followed it).
        self.verify = None

    # -- reading ------------------------------------------------------------------------------------------

    @property
    def mv(self):
        if self._mv is None:
            low, high, default = self.nova.microversion_range()
            self._mv = choose_microversions(low, high, self._requested_mv, default)
        return self._mv

    def _get(self, path, microversion, doing):
        return call(self.nova, 'GET', path, microversion, doing)

    def find_server(self, ref):
        """The server body for an id or an exact name (all projects). Ambiguous or unknown -> error."""
        ref = str(ref)
        if _UUID_RE.match(ref):
            try:
                return self.nova.request('GET', '/servers/%s' % ref, self.mv.read).body['server']
            except NovaApiError as err:
                if err.status_code != 404:
                    raise explain_api_error(err, 'looking up server %s' % ref)
        resp = self._get(
            query('/servers/detail', [('all_tenants', 'True'), ('name', '^%s$' % re.escape(ref))]), self.mv.read, 'looking up server %s in all projects' % ref
        )
        matches = [s for s in (resp.body or {}).get('servers', []) if s.get('name') == ref or s.get('id') == ref]
        if not matches:
            raise EvacuationError(
                'server %s not found: no server has this id or exact name in any project' % ref, kind=KIND_NOT_FOUND, request_id=resp.request_id
            )
        if len(matches) > 1:
            raise EvacuationError(
                'server name %s is ambiguous: %s; give the id instead'
                % (
                    ref,
                    '; '.join(
                        '%s (project %s, host %s, %s)' % (s.get('id'), s.get('tenant_id'), s.get('OS-EXT-SRV-ATTR:host'), s.get('status')) for s in matches
                    ),
                ),
                kind=KIND_NOT_FOUND,
            )
        # The detail listing lacks server_groups (2.71 shows them in GET /servers/{id} only).
        return self._get('/servers/%s' % matches[0]['id'], self.mv.read, 'reading server %s' % ref).body['server']

    def compute_service(self, host):
        """The nova-compute service of ``host`` as os-services shows it, or None."""
        resp = self._get(query('/os-services', [('binary', 'nova-compute'), ('host', host)]), self.mv.services, 'reading the nova-compute service of %s' % host)
        found = [s for s in (resp.body or {}).get('services', []) if s.get('host') == host]
        return found[0] if found else None

    def evacuation_migrations(self, server_id=None, source_host=None):
        """Evacuation migration records of one server and/or one source host (all pages)."""
        try:
            items, _date = list_all(
                self.nova,
                '/os-migrations',
                [('migration_type', 'evacuation'), ('instance_uuid', server_id), ('source_compute', source_host)],
                'migrations',
                self.mv.migrations,
            )
        except NovaApiError as err:
            raise explain_api_error(err, 'listing evacuation migrations of %s' % (server_id or source_host))
        return [m for m in items if m.get('migration_type', 'evacuation') == 'evacuation']

    # -- planning -----------------------------------------------------------------------------------------

    def plan(
        self,
        server,
        expected_source_host=None,
        target_host=None,
        admin_password=None,
        on_shared_storage=None,
        reset_state=False,
        lock=True,
        service=None,
        migrations=None,
        storage=None,
    ):
        """A ServerEvacuation saying what would be done to ``server`` (a body, an id or a name).

        The host module passes ``service`` and ``migrations`` from one listing for the whole host, and the
        server's ``storage`` (``_storage.storage_of``): whether its instance directory is shared then comes from it
        (sent below 2.14, and the disks it loses). Changes nothing.
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
        shared = storage['shared'] if storage is not None else on_shared_storage
        if storage is not None and self.mv.evacuate < MV_SHARED_STORAGE_GONE:
            on_shared_storage = shared
        if decision.action == ACTION_EVACUATE:
            mv = self.mv.evacuate
            body_, warnings = evacuate_request(mv, target_host, admin_password, on_shared_storage)
            request = _masked(body_)
            warnings = warnings + disk_warnings(snap, shared)
            if self.mv.evacuate_stops_server and decision.expected_status == 'ACTIVE':
                warnings.append('at microversion %s Nova leaves the evacuated server stopped; it is started afterwards to return it to ACTIVE' % mv_str(mv))
        if lock and not self.mv.can_lock:
            lock = False
            if decision.action in (ACTION_EVACUATE, ACTION_WAIT, ACTION_RECONCILE) and not snap.get('locked'):
                warnings.append(not_locked_warning('%s (%s)' % (snap.get('name'), snap.get('id')), self.mv.cloud_max))
        evac = ServerEvacuation(snap, decision, source, target_host, request, mv, warnings, lock, on_shared_storage)
        # os_instance_evacuate has no Cinder reading: the kind from Nova and the declaration alone.
        evac.storage = storage if storage is not None else storage_of(snap, bool(on_shared_storage))
        evac.known_migration_ids = set(m.get('id') for m in migrations)
        evac._admin_password = admin_password
        return evac

    # -- running ------------------------------------------------------------------------------------------

    def run(
        self,
        evacuations,
        wait=True,
        timeout=900,
        poll_interval=5,
        retries=1,
        max_parallel=1,
        on_progress=None,
        outage_timeout=120,
        power_check=None,
        window=None,
    ):
        """Carry out planned evacuations: at most ``max_parallel`` in flight, servers sharing an exclusive
        group never together, two listings per poll whatever the number of servers. Returns the same
        objects, updated. Servers still in flight at ``timeout`` stay ``in_progress`` (a re-run resumes).

        While the compute API fails transiently (no answer, 5xx) no new evacuation starts: the server whose
        request failed waits at the head of the queue and the window pauses, with backoff, until a request
        succeeds again. An outage longer than ``outage_timeout`` seconds ends the run (``self.interrupted``
        says why; servers in flight stay ``in_progress``, the others ``pending``, a re-run resumes them).
        ``power_check()`` is asked before each new batch: a string (the host reads power On) stops every new
        evacuation at once. ``window``: a ``_concurrency`` window deciding how many are in flight after each poll
        (at most ``max_parallel``); without it, ``max_parallel`` at all times.
        """
        self.interrupted = None
        self.stopped = None
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
        active = []  # type: list
        self.window = window if window is not None else FixedWindow(max_parallel)
        width = self.window.width if wait else len(todo)
        quiet_polls = 0
        looked_at = None  # when the last look started
        errors_seen = 0
        outage = self.outage = Outage(self.clock)
        while pending or active:
            if pending and len(active) < width and not outage.paused() and power_check is not None:
                self.stopped = self._power_stop(power_check, pending)
                if self.stopped:
                    pending = []
            while True:  # batches until the window is full (a server failed at once leaves its place free)
                batch = []  # type: list
                for e in pending:
                    if len(active) + len(batch) >= width or outage.paused():
                        break
                    if any(e.exclusive_groups & other.exclusive_groups for other in active + batch):
                        continue
                    batch.append(e)
                if not batch:
                    break
                deferred = []
                for e in self._begin_batch(batch, watcher, wait, retries):
                    pending.remove(e)
                    quiet_polls = 0
                    if e.deferred is not None:
                        deferred.append(e)
                        continue
                    outage.ok()
                    if not e.done:
                        active.append(e)
                for e in deferred:
                    # The API failed transiently before this evacuation was accepted: back to the head of the queue,
                    # and nothing new starts until the API answers again (the failures count after the batch's
                    # successes).
                    outage.failed(e.deferred)
                    e.deferred = None
                pending[0:0] = deferred
                if deferred or not wait:
                    break
            if not wait:
                self._settle_without_waiting(active)
                break
            if on_progress is not None:
                on_progress(dict(summarize(evacuations, self.clock.now() - start), width=self.window.width))  # the window as it is now
            if outage.active and outage.lasted() >= outage_timeout:
                self._interrupt(active, pending, outage, outage_timeout)
                break
            if not active:
                if pending and outage.paused():
                    self.clock.sleep(outage.wait())
                continue
            self.clock.sleep(next_poll_delay(poll_interval, quiet_polls, None if looked_at is None else self.clock.now() - looked_at))
            in_flight = len(active)
            looked_at = self.clock.now()
            latency = None
            no_valid_host = 0
            try:
                changes = watcher.poll([e.id for e in active])
            except NovaApiError as err:
                # Nothing is decided on a failed look: the next poll, or the timeout, settles it.
                watcher.failed_polls.append(explain_api_error(err, 'watching the evacuations').msg)
                if transient(err):
                    outage.failed(err)
                quiet_polls += 1
            else:
                latency = self.clock.now() - looked_at
                outage.ok()
                quiet_polls = 0 if changes else quiet_polls + 1
                # Judged and acted on (unlocked once recovered, started, evacuated again) ``senders`` at a time.
                self._each(list(active), lambda e: self._advance(e, watcher, retries))
                for e in list(active):
                    if e.done:
                        active.remove(e)
                        no_valid_host += e.kind == KIND_NO_VALID_HOST
            errors = outage.total - errors_seen
            errors_seen = outage.total
            self.window.observe(in_flight, latency=latency, queued=self._queued(active), errors=errors, no_valid_host=no_valid_host)
            width = self.window.width
            if outage.active and outage.lasted() >= outage_timeout:
                self._interrupt(active, pending, outage, outage_timeout)
                break
            if (pending or active) and self.clock.now() >= deadline:
                for e in active:
                    self._timed_out(e, timeout, watcher.failed_polls[-1:])
                for e in pending:
                    e.outcome = OUTCOME_PENDING
                    e.reason = 'not started: the run reached its timeout of %ss first' % timeout
                break
        if on_progress is not None and wait:
            on_progress(dict(summarize(evacuations, self.clock.now() - start), width=self.window.width))
        return evacuations

    def _each(self, evacuations, step):
        """``step(e)`` for each evacuation, ``senders`` at a time (each one's requests in order in one thread)."""
        if self.senders == 1 or len(evacuations) < 2:
            for e in evacuations:
                step(e)
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(self.senders, len(evacuations))) as pool:
            futures = [pool.submit(step, e) for e in evacuations]
        for future in futures:
            future.result()  # the first error, if any, as one after the other would raise it

    def _begin_batch(self, batch, watcher, wait, retries):
        """Begin the servers of ``batch`` (``_begin``: lock, evacuate), ``senders`` at a time, each server's requests
        in order in one thread. Returns those begun, in the order of ``batch``. Once one is deferred (the API failed
        transiently) no other one begins, as one after the other would stop there: at most ``senders`` requests are
        sent into an API that fails."""
        if self.senders == 1 or len(batch) < 2:
            begun = []
            for e in batch:
                self._begin(e, watcher, wait, retries)
                begun.append(e)
                if e.deferred is not None:
                    break
            return begun
        halt = threading.Event()

        def begin(e):
            if halt.is_set():
                return False
            self._begin(e, watcher, wait, retries)
            if e.deferred is not None:
                halt.set()
            return True

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(self.senders, len(batch))) as pool:
            futures = [pool.submit(begin, e) for e in batch]
        return [e for e, future in zip(batch, futures) if future.result()]

    def _queued(self, active):
        """Seconds each evacuation in flight has waited in Nova's queue since it was requested: its migration
        still ``accepted`` (the conductor and the scheduler have not handed it to a compute) or not seen yet.
        ``pre-migrating`` is not queue: the destination compute sets it as it starts the rebuild, which lasts
        as long as the rebuild does (a first benchmark counted it, and the window shrank on every 20 s rebuild)."""
        now = self.clock.now()
        return [now - e.requested_at for e in active if e.requested_at is not None and (e.migration or {}).get('status') in (None, 'accepted')]

    def _power_stop(self, power_check, pending):
        """Before a new batch: does the failed host still read power Off? A host that reads On stops every new
        evacuation (the servers already moving go on: their rebuild elsewhere has begun)."""
        try:
            reading_on = power_check()
        except Exception as exc:  # pylint: disable=broad-except
            # The host was proven off before the run; a BMC that stops answering is noted, not a reason to stop.
            self.power_warnings.append(
                'the power of the failed host could not be read again (%s); it was proven off before the run, evacuations go on' % getattr(exc, 'msg', exc)
            )
            return None
        if not reading_on:
            return None
        for e in pending:
            e.outcome = OUTCOME_PENDING
            e.kind = KIND_POWERED_ON
            e.reason = 'not started: the failed host %s reads power On again (%s); no evacuation is started while it may run its own copy of the server' % (
                e.source_host,
                reading_on,
            )
        return reading_on

    def _interrupt(self, active, pending, outage, outage_timeout):
        why = 'the compute API failed for %ss (longer than outage_timeout %ss; last error: %s)' % (int(outage.lasted()), outage_timeout, outage.last)
        self.interrupted = why
        for e in active:
            e.outcome = OUTCOME_IN_PROGRESS
            e.kind = KIND_API_OUTAGE
            e.reason = 'server %s (%s) is still being evacuated, not failed: %s. Re-run once the API answers to resume waiting%s' % (
                e.name,
                e.id,
                why,
                '; the lock novaha.recovery took stays until then' if e.locked_by_us and not e.unlocked else '',
            )
        for e in pending:
            e.outcome = OUTCOME_PENDING
            e.kind = KIND_API_OUTAGE
            e.reason = 'not started: %s. Re-run once the API answers' % why

    # -- steps --------------------------------------------------------------------------------------------

    def _action(self, e, name, body, microversion):
        resp = self.nova.request('POST', '/servers/%s/action' % e.id, microversion, body)
        e.note(name, resp, microversion)
        return resp

    def _begin(self, e, watcher, wait, retries):
        if e.requested_at is None:
            e.requested_at = self.clock.now()
        e.outcome = OUTCOME_IN_PROGRESS
        ident = '%s (%s)' % (e.name, e.id)
        if e.lock_wanted and not e.before.get('locked') and not e.locked_by_us:
            if wait:
                try:
                    self._lock(e)
                except NovaApiError as err:
                    if transient(err):
                        e.locked_by_us = True  # it may have taken effect: unlocked at the end either way
                        return self._defer(e, err, 'locking %s before its evacuation' % ident)
                    error = explain_api_error(err, 'locking %s before its evacuation' % ident)
                    return self._finish(e, OUTCOME_FAILED, error.msg, error.kind)
            else:
                e.warnings.append('%s was not locked: with wait=false nothing would unlock it afterwards' % ident)
        if e.action != ACTION_EVACUATE:
            return None
        if e.check_first:
            # An earlier evacuate request got no usable answer and its effect could not be checked then.
            adopted = self._adopt_in_flight(e, watcher)
            if adopted is None:
                return self._defer(e, e.check_first, 'finding out whether the evacuation of %s was accepted' % ident)
            e.check_first = None
            if adopted:
                return None
            self._drop_unaccepted_attempt(e)
        if e.reset_to and not e.reset_done:
            try:
                self._action(e, 'reset_state', {'os-resetState': {'state': e.reset_to}}, MV_BASE)
                e.reset_done = True
            except NovaApiError as err:
                if transient(err):
                    return self._defer(e, err, 'resetting the state of %s to %s' % (ident, e.reset_to))
                error = explain_api_error(err, 'resetting the state of %s to %s' % (ident, e.reset_to))
                return self._finish(e, OUTCOME_FAILED, error.msg, error.kind)
        return self._issue_or_fail(e, watcher, e.target_host, retries)

    def _defer(self, e, err, doing):
        """A transient failure before the evacuation was accepted: the server waits for the API to answer again
        (``Engine.run`` pauses the window). A server that keeps failing alone is failed, with the API's error."""
        e.transient_failures += 1
        error = explain_api_error(err, doing)
        if e.transient_failures > MAX_TRANSIENT_PER_SERVER:
            return self._finish(e, OUTCOME_FAILED, '%s (%d times; the API answered other requests meanwhile)' % (error.msg, e.transient_failures), error.kind)
        e.deferred = err
        e.outcome = OUTCOME_PLANNED
        e.warnings.append('%s; waiting for the compute API and trying again' % error.msg)
        return None

    def _drop_unaccepted_attempt(self, e):
        """An evacuate request Nova has no record of (no migration newer than it): it was not accepted, so it is
        not an attempt; the request goes again."""
        dropped = e.attempts.pop()
        e.warnings.append(
            'the evacuate request of %s sent at %s got no usable answer and Nova recorded no '
            'evacuation for it; it is sent again' % (e.id, dropped.get('requested_at'))
        )

    def _lock(self, e):
        """Only at 2.73 or later (``plan`` takes no lock below): the reason is what makes the lock ours."""
        body = {'lock': {'locked_reason': lock_reason(e.source_host, e.expected_status)}}  # type: dict
        self._action(e, 'lock', body, self.mv.lock)
        e.locked_by_us = True

    def _unlock(self, e):
        """Unlocking is idempotent (an unlocked server stays unlocked): sent again after a transient failure."""
        if not (e.locked_by_us or e.ours_from_earlier) or e.unlocked:
            return
        failures = 0
        while True:
            try:
                self._action(e, 'unlock', {'unlock': None}, MV_BASE)
            except NovaApiError as err:
                if transient(err) and failures < UNLOCK_RETRIES:
                    self.clock.sleep(backoff(failures, cap=4.0))
                    failures += 1
                    continue
                e.warnings.append(
                    'could not remove the lock novaha.recovery took on %s: %s (request id %s); a re-run removes it' % (e.id, err.message, err.request_id)
                )
                return
            e.unlocked = True
            if e.after is not None:
                e.after = dict(e.after, locked=False, locked_reason=None)
            return

    def _issue(self, e, target_host, scheduler_fallback=False):
        """POST the evacuate action once; records the attempt. Raises NovaApiError."""
        body, _warnings = evacuate_request(self.mv.evacuate, target_host, e._admin_password, e.on_shared_storage)
        known = e.known_migration_ids | set(a.get('migration_id') for a in e.attempts if a.get('migration_id'))
        attempt = dict(
            number=len(e.attempts) + 1,
            target_host=target_host,
            microversion=mv_str(self.mv.evacuate),
            scheduler_fallback=scheduler_fallback,
            requested_at=isotime(self.clock.now()),
            request_id=None,
            migration_id=None,
            migration_status=None,
            outcome=OUTCOME_IN_PROGRESS,
            kind=None,
            error=None,
            finished_at=None,
            _after=max(known) if known else 0,
        )
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
                if error.kind in (KIND_STATE, KIND_API):
                    adopted = self._adopt_in_flight(e, watcher)
                    if adopted:
                        return None
                    if transient(err):
                        # Never sent again blindly: Nova has no evacuation for it (dropped, sent again once the API
                        # answers), or we could not look (looked at first when its turn comes again).
                        if adopted is None:
                            e.check_first = err
                        else:
                            self._drop_unaccepted_attempt(e)
                        return self._defer(e, err, 'evacuating %s (%s) from %s' % (e.name, e.id, e.source_host))
                decision = retry_decision(e.attempts, retries, e.target_host)
                if not decision.retry:
                    return self._finish(e, OUTCOME_FAILED, error.msg, error.kind)
                e.warnings.append(decision.reason)
                scheduler_fallback = bool(e.target_host) and decision.target_host is None
                target_host = decision.target_host

    def _adopt_in_flight(self, e, watcher):
        """After a 409, a 5xx or no answer: was an evacuation accepted anyway (ours or a concurrent one)? Wait
        for it. True: adopted; False: Nova has none newer than the attempt; None: the migrations could not be read."""
        attempt = e.attempts[-1]
        try:
            migrations = self.evacuation_migrations(server_id=e.id)
        except EvacuationError:
            return None  # could not look
        # Any evacuation newer than the attempt, even one already done or failed: the watcher judges it.
        fresh = [m for m in migrations if (m.get('id') or 0) > attempt['_after']]
        if not fresh:
            return False
        mig = max(fresh, key=lambda m: m.get('id') or 0)
        attempt.update(
            outcome=OUTCOME_IN_PROGRESS,
            kind=None,
            migration_id=mig.get('id'),
            migration_status=mig.get('status'),
            error='adopted evacuation migration %s already in flight' % mig.get('id'),
            finished_at=None,
        )
        e.migration = mig
        watcher.seed(watcher.servers.get(e.id) or e.before, [mig])
        watcher.invalidate(e.id)
        e.warnings.append('an evacuation of %s was already in flight (migration %s); waited for it instead of issuing another' % (e.id, mig.get('id')))
        return True

    def _classify_issue_error(self, e, err):
        details = err.message or ''
        if err.status_code == 400 and 'still in use' in details:
            return EvacuationError(
                'host %s is not fenced/forced down: Nova says "%s"; %s (%s) was not evacuated. '
                'Fence the host and force its nova-compute service down first '
                '(novaha.recovery.os_fence_check) (HTTP 400, request id %s)' % (e.source_host, details, e.name, e.id, err.request_id),
                kind=KIND_NOT_FENCED,
                request_id=err.request_id,
                http_status=400,
            )
        if err.status_code == 404 and 'Compute host' in details:
            return EvacuationError(
                'target host %s of %s (%s) is not a compute host: %s (HTTP 404, request id %s)' % (e.target_host, e.name, e.id, details, err.request_id),
                kind=KIND_BAD_TARGET,
                request_id=err.request_id,
                http_status=404,
            )
        if err.status_code == 400 and 'same one' in details:
            return EvacuationError(
                'target host of %s (%s) is the host it is on: %s (HTTP 400, request id %s)' % (e.name, e.id, details, err.request_id),
                kind=KIND_BAD_TARGET,
                request_id=err.request_id,
                http_status=400,
            )
        if err.status_code == 409:
            return EvacuationError(
                'Nova refused to evacuate %s (%s): %s (HTTP 409, request id %s)' % (e.name, e.id, details, err.request_id),
                kind=KIND_STATE,
                request_id=err.request_id,
                http_status=409,
            )
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
        j = judge(e.before, now, mig, e.expected_status, e.source_host, migration_required=e.action != ACTION_RECONCILE)
        if j.outcome == OUTCOME_RECOVERED and self.verify is not None:
            mismatch = self.verify(e, now)
            if mismatch is not None:
                kind, reason = mismatch
                self._end_attempt(e, OUTCOME_FAILED, kind, reason)
                return self._finish(e, OUTCOME_FAILED, reason, kind)
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
            reason = 'os-%s was sent to %s after its evacuation but it is still %s%s' % (
                action,
                ident,
                now.get('status'),
                '; Nova: %s' % now['fault']['message'] if now.get('fault') else '',
            )
            return self._finish(e, OUTCOME_FAILED, reason, KIND_POWER)
        try:
            self._action(e, action, {'os-%s' % action: None}, MV_BASE)
        except NovaApiError as err:
            if transient(err):
                # Sent again on a later look if the server is still not there; a 409 then means it took effect.
                e.power_unknown = action
                self.outage.failed(err)
                watcher.invalidate(e.id)
                return None
            if err.status_code == 409 and e.power_unknown == action:
                e.power_unknown = None
                e.power_actions.append(action)
                watcher.invalidate(e.id)
                return None
            error = explain_api_error(err, 'sending os-%s to %s after its evacuation' % (action, ident))
            return self._finish(e, OUTCOME_FAILED, error.msg, KIND_POWER)
        e.power_unknown = None
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
        e.reason = 'server %s (%s) is still being evacuated after %ss (%s); it is not failed: re-run to resume waiting%s%s' % (
            e.name,
            e.id,
            timeout,
            'migration %s is %s' % (mig.get('id'), mig.get('status')) if mig else 'no migration record seen yet',
            '; the lock novaha.recovery took stays until then' if e.locked_by_us else '',
            ''.join('; the last look failed: %s' % msg for msg in poll_errors),
        )

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
                    e.attempts[-1].update(migration_id=e.migration.get('id'), migration_status=e.migration.get('status'))
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
