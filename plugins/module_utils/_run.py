# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The run of a host recovery: its marker in the nova-compute service's disabled reason, and who holds the host.

No Ansible imports. Nova is reached through the engine's adapter (``request(method, path, microversion, body)``
and ``last_date``, the API's clock), time through a clock with ``now()`` and ``sleep()``.

One recovery run holds one host. The marker is the only record of it that survives a dead controller, so it
carries everything a later run needs: the run id, the controller, the phase, the start of the first run of
this recovery, a heartbeat (the lease a live run keeps renewing) and the service as it was before the first
run (status, forced down, disabled reason: an operator's reason is kept, never lost).

One function per decision:

- what a disabled reason says about a run .................. ``parse_marker`` (``RunMarker.text`` writes it)
- the clock a heartbeat's age is measured on ................ ``reference_time``
- whether a marker's run still holds the host ............... ``judge_holder``
- the marker a run writes when it takes the host ............ ``claim_marker``
- the phase a run ends in (done or interrupted) ............. ``end_phase``
- the end of a run: its marker, then its token, each
  whatever the other did ..................................... ``end_run``
- whether a run may give the service back as it was ........ ``release_refusal``
- how long to look again (service down, servers verified,
  a host repaired) ........................................... ``wait_for``
- whether a repaired host may go back to service ............ ``restore_refusals`` / ``plan_restore``
- taking, renewing and ending the hold ...................... ``HostRun``
- how long a run's own reads ride out a failing API ......... ``retrying_reads``
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import socket

from ansible_collections.novaha.recovery.plugins.module_utils._errors import NovahaError
from ansible_collections.novaha.recovery.plugins.module_utils._microversions import MV_SERVICES
from ansible_collections.novaha.recovery.plugins.module_utils._nova import NovaApiError, RetryingReads, backoff, transient
from ansible_collections.novaha.recovery.plugins.module_utils._options import at_least, matching

COMPUTE = 'nova-compute'
REASON_MAX = 255  # Nova's column for disabled_reason
# Evacuation migration statuses that still block forcing the source service up (Nova cleans them up when the
# source's nova-compute starts again).
UNFINISHED_MIGRATIONS = ('accepted', 'pre-migrating', 'migrating', 'done')

MARKER_PREFIX = 'novaha.recovery run '
# Phases while a run holds the host (its heartbeat counts), and phases of a run that ended (the host is free
# for the next run, which resumes the recovery).
PHASE_CLAIMED = 'claimed'
PHASE_ISOLATED = 'isolated'
PHASE_EVACUATING = 'evacuating'
PHASE_VERIFYING = 'verifying'
PHASE_DONE = 'done'
PHASE_INTERRUPTED = 'interrupted'
HELD_PHASES = (PHASE_CLAIMED, PHASE_ISOLATED, PHASE_EVACUATING, PHASE_VERIFYING)
ENDED_PHASES = (PHASE_DONE, PHASE_INTERRUPTED)

DEFAULT_LEASE = 300
# Seconds a heartbeat must be older than its lease before its run counts as stale when the API sent no usable
# Date header and the controller's own clock stands in for the API's: the heartbeat was written on another
# clock (the API's, or another controller's), and NTP keeps clocks within seconds, so two minutes keep a live
# holder live through any ordinary skew while a dead one is still taken over.
CLOCK_SKEW = 120
DEFAULT_SETTLE = 2.0
CLAIM_ROUNDS = 3  # slow read-and-write rounds before a claim gives up
# The longest a claim's read-back waits for its settled_at: a settle is seconds; a settled_at further away than this
# comes from a clock that jumped, and waiting this long still proves the claim for any settle up to it.
CLAIM_PROOF_WAIT = 60.0
CLAIM_WRITE_RETRIES = 4  # marker writes that failed transiently (sent again after a fresh read) before giving up
READ_RETRY_BUDGET = 30.0  # seconds a run's read rides out a failing API at most (the evacuation engine's budget)

_STAMP = '%Y%m%dT%H%M%SZ'
_RUN_ID_RE = re.compile(r'^[0-9A-Za-z_-]{1,32}$')
# The rule of every module option run_id (see _options).
RUN_ID_RULE = matching(_RUN_ID_RE.pattern, '1 to 32 letters, digits, "-" or "_"')
# The rule of every module option lease, the only check of a lease: the host_recovery role's host_recovery_lease
# reaches its first module (the preflight's os_host_evacuate) before anything is read, and is named here for it.
LEASE_RULE = at_least(
    10, 'seconds', why='a shorter heartbeat lets another run take the host over between two tasks; the host_recovery role sets it from host_recovery_lease'
)
_MARKER_RE = re.compile(
    r'^novaha\.recovery run (?P<run_id>[0-9A-Za-z_-]{1,32}) (?P<phase>[a-z]+) ctl (?P<controller>\S+)'
    r' start (?P<start>\d{8}T\d{6}Z) beat (?P<beat>\d{8}T\d{6}Z) lease (?P<lease>\d+);'
    r' was: (?P<was>enabled|disabled)(?P<down>,forced_down)?(?: \((?P<reason>.*)\))?$',
    re.DOTALL,
)


class RunError(NovahaError):
    """A failure of the run's hold on a host, phrased for the operator. ``kind``: held (a live run holds the
    host), lost (another run took it), no_service, api; ``holder``: the run found, returned as its dict."""

    transient = False  # set True by a failed API request that may succeed when sent again

    def __init__(self, msg, kind='api', holder=None, request_id=None, http_status=None):
        super(RunError, self).__init__(msg, kind=kind, request_id=request_id, http_status=http_status, holder=holder.to_dict() if holder is not None else None)
        self.holder = holder


def stamp(moment):
    return moment.astimezone(datetime.timezone.utc).strftime(_STAMP)


def _parse_stamp(text):
    return datetime.datetime.strptime(text, _STAMP).replace(tzinfo=datetime.timezone.utc)


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ') if moment else None


def valid_run_id(run_id):
    return bool(_RUN_ID_RE.match(run_id or ''))


def controller_identity(hostname=None, namespace=None):
    """Who runs this: the short host name and a fingerprint of the machine and process namespace.

    Two containers (or AWX pods) may share a host name; they never share a pid namespace on one kernel, and two
    machines never share a boot id, so the fingerprint tells them apart. Informative only: whether a run is
    alive is judged by its heartbeat, never by its controller."""
    name = (hostname if hostname is not None else socket.gethostname() or 'localhost').split('.')[0]
    name = re.sub(r'[^0-9A-Za-z_-]', '-', name)[:24] or 'localhost'
    if namespace is None:
        parts = []
        for path in ('/proc/sys/kernel/random/boot_id', '/proc/self/ns/pid'):
            try:
                parts.append(os.readlink(path) if path.endswith('/pid') else open(path).read().strip())
            except (IOError, OSError):
                parts.append('')
        namespace = '|'.join(parts)
    return '%s@%s' % (name, hashlib.sha256(namespace.encode('utf-8')).hexdigest()[:8])


class RunMarker(object):
    """What the disabled reason says about a run (see the module docstring)."""

    def __init__(self, run_id, phase, controller, started_at, heartbeat_at, lease, was_status='enabled', was_forced_down=False, was_reason=None):
        self.run_id = run_id
        self.phase = phase
        self.controller = controller
        self.started_at = started_at
        self.heartbeat_at = heartbeat_at
        self.lease = int(lease)
        self.was_status = was_status
        self.was_forced_down = bool(was_forced_down)
        self.was_reason = was_reason if was_status == 'disabled' else None

    @property
    def held(self):
        return self.phase in HELD_PHASES

    def text(self):
        head = '%s%s %s ctl %s start %s beat %s lease %d; was: %s%s' % (
            MARKER_PREFIX,
            self.run_id,
            self.phase,
            self.controller,
            stamp(self.started_at),
            stamp(self.heartbeat_at),
            self.lease,
            self.was_status,
            ',forced_down' if self.was_forced_down else '',
        )
        if self.was_reason:
            room = REASON_MAX - len(head) - 3
            reason = self.was_reason if len(self.was_reason) <= room else self.was_reason[: max(0, room - 3)] + '...'
            head += ' (%s)' % reason
        return head

    def to_dict(self):
        return dict(
            run_id=self.run_id,
            phase=self.phase,
            controller=self.controller,
            started_at=iso(self.started_at),
            heartbeat_at=iso(self.heartbeat_at),
            lease=self.lease,
            was=dict(status=self.was_status, forced_down=self.was_forced_down, disabled_reason=self.was_reason),
        )

    def restore_body(self, current=None):
        """The PUT /os-services/{id} body that puts the service back as it was before the first run.

        Forced down is sent only when it differs from ``current`` (the service now): Nova refuses any request
        carrying forced_down=false while evacuations from the host are left 'done' (its compute is dead)."""
        body = dict(status=self.was_status)
        if current is None or bool(current.get('forced_down')) != self.was_forced_down:
            body['forced_down'] = self.was_forced_down
        if self.was_status == 'disabled' and self.was_reason:
            body['disabled_reason'] = self.was_reason
        return body


def parse_marker(reason):
    """The RunMarker a disabled reason holds, or None for any other reason (an operator's, or none)."""
    text = reason or ''
    match = _MARKER_RE.match(text)
    if match:
        return RunMarker(
            match.group('run_id'),
            match.group('phase'),
            match.group('controller'),
            _parse_stamp(match.group('start')),
            _parse_stamp(match.group('beat')),
            int(match.group('lease')),
            match.group('was'),
            bool(match.group('down')),
            match.group('reason'),
        )
    return None


class Holder(object):
    """The judgement of a marker found on the service. ``kind``:

    - ``free``: no run marker; the host may be taken.
    - ``ours``: this run's own marker.
    - ``ended``: a run that ended (done or interrupted); taken and its recovery resumed.
    - ``stale``: a run whose heartbeat is older than its lease (its controller died); taken over, with a warning.
    - ``overridden``: a live-looking run the operator told us to take over (``takeover``).
    - ``live``: a run that holds the host now; never a second evacuator beside it.

    ``clock``: what the heartbeat's ``age`` was measured on - ``api`` (the API's Date), ``local`` (the
    controller's clock, with CLOCK_SKEW allowed) or None (no clock: the age is unknown).
    """

    def __init__(self, kind, marker=None, age=None, clock='api'):
        self.kind = kind
        self.marker = marker
        self.age = age
        self.clock = clock if age is not None else None

    @property
    def may_take(self):
        return self.kind != 'live'

    def describe(self):
        m = self.marker
        if m is None:
            return 'no novaha.recovery run holds this host'
        beat = (
            'last heartbeat %ss ago%s' % (int(self.age), ' on the local clock' if self.clock == 'local' else '')
            if self.age is not None
            else 'heartbeat age unknown (no clock to measure it)'
        )
        return 'run %s (controller %s, phase %s, started %s, %s, lease %ss)' % (m.run_id, m.controller, m.phase, iso(m.started_at), beat, m.lease)

    def to_dict(self):
        out = dict(kind=self.kind, heartbeat_age=round(self.age, 1) if self.age is not None else None)
        out['marker'] = self.marker.to_dict() if self.marker is not None else None
        out['detail'] = self.describe()
        return out


def reference_time(api_date, local_seconds):
    """(now, skew): the time a heartbeat's age is measured against, and the skew allowed on top of the lease.

    The API's clock (the Date header of its last answer) when it sent one: every heartbeat is written on it, so
    no skew. Otherwise the controller's clock (``local_seconds``, epoch) with CLOCK_SKEW: a missing or
    unparseable Date must never make a live holder look stale. None for both: no clock."""
    if api_date is not None:
        return api_date, 0
    if local_seconds is None:
        return None, CLOCK_SKEW
    return datetime.datetime.fromtimestamp(local_seconds, datetime.timezone.utc), CLOCK_SKEW


def judge_holder(marker, run_id, now, takeover=False, skew=0):
    """Who holds the host, judged at ``now`` (aware datetime, see ``reference_time``; ``skew``: seconds its clock
    may differ from the one the heartbeat was written on).

    Stale means the heartbeat is older than the lease plus the skew. A heartbeat whose age cannot be measured
    (no clock) is never stale: the run counts as live, and only ``takeover`` overrides it."""
    if marker is None:
        return Holder('free')
    age = (now - marker.heartbeat_at).total_seconds() if now and marker.heartbeat_at else None
    clock = 'local' if skew else 'api'
    if marker.run_id == run_id:
        return Holder('ours', marker, age, clock)
    if not marker.held:
        return Holder('ended', marker, age, clock)
    if age is not None and age > marker.lease + skew:
        return Holder('stale', marker, age, clock)
    if takeover:
        return Holder('overridden', marker, age, clock)
    return Holder('live', marker, age, clock)


def end_phase(stopped):
    """The phase a run ends in: ``interrupted`` when it stopped on a failure, ``done`` when nothing stopped it.
    Either way the host is free at once for the next run, which resumes whatever is left."""
    return PHASE_INTERRUPTED if stopped else PHASE_DONE


class RunEnd(object):
    """What ending a run did (``end_run``): the ``phase`` its marker ended in (None: it held nothing to end, or
    ``failure``), the service ``before``, ``failure`` (the NovahaError that stopped the marker's end, or None), and
    what ending its token said (``token``: words, None when not asked) or why it failed (``token_failure``)."""

    def __init__(self, phase=None, before=None, failure=None, token=None, token_failure=None):
        self.phase = phase
        self.before = before
        self.failure = failure
        self.token = token
        self.token_failure = token_failure


def end_run(end_marker, end_token=None):
    """The one place that ends a run: first its marker (``end_marker()`` -> (phase or None, service before), as
    ``HostRun.end``), then its shared token (``end_token()`` -> words, when given), whatever the marker's end did.

    The order and the independence are the guarantees: the marker is written with the token before the token is
    revoked; a marker that cannot be ended (Nova failing, the host taken) never leaves the token valid, and a token
    that cannot be ended never stops the marker ending ``done`` or ``interrupted`` (its file is removed later by
    the report in any case). The end fails (``failure``) only when its marker could not be ended; a token that
    could not be ended is a warning (``token_failure``). Anything else raised by the marker's end still ends the
    token first."""
    end = RunEnd()
    try:
        end.phase, end.before = end_marker()
    except NovahaError as exc:
        end.failure = exc
    finally:
        if end_token is not None:
            try:
                end.token = end_token()
            except NovahaError as exc:
                end.token_failure = exc
    return end


# Why a run does not give the service back (``release_refusal``): flags, not words.
RELEASE_NOT_HELD = 'not_held'  # the service carries no marker of this run
RELEASE_TOOK_OVER = 'took_over'  # this run took over an earlier run of the recovery
RELEASE_EVACUATION_STARTED = 'evacuation_started'  # servers left the host, or are on their way


def release_refusal(holder, took_over=False, evacuation_started=False, evacuated=False):
    """The one decision whether a run gives the service back what it had before the first run of the recovery
    (status, forced down, disabled reason): None when it does, else why not, a RELEASE_* kind.

    - ``not_held``: the marker on the service is not this run's (``holder``, as read now): it never claimed the
      host, gave it back already, or another run took it. Another run's marker is never written over.
    - ``evacuation_started``: servers left the host or are on their way - the run's records say so
      (``evacuation_started``) or its marker reached phase evacuating or verifying. The host stays isolated
      (forced down, disabled): brought back, it could run a second copy of a server.
    - ``took_over``: this run took over an earlier run of this recovery, which may have moved servers; the host
      stays isolated too.

    ``evacuated``: the evacuation itself finished every server (a standalone os_host_evacuate): the recovery
    is complete, and a host held by this run is given back whatever came before."""
    if holder.kind != 'ours':
        return RELEASE_NOT_HELD
    if evacuated:
        return None
    if evacuation_started or holder.marker.phase in (PHASE_EVACUATING, PHASE_VERIFYING):
        return RELEASE_EVACUATION_STARTED
    if took_over:
        return RELEASE_TOOK_OVER
    return None


def wait_for(look, settled, clock, timeout, interval, between=None):
    """Look (``look()``) until ``settled(seen)`` or ``timeout`` seconds have passed, ``interval`` seconds apart:
    the one waiting loop of a run (Nova reporting the service down, the evacuated servers verified). ``between``
    runs before each pause (a run that waits renews its heartbeat there). Returns (last seen, seconds waited,
    number of looks)."""
    start = clock.now()
    looks = 0
    while True:
        seen = look()
        looks += 1
        waited = clock.now() - start
        if settled(seen) or waited >= timeout:
            return seen, round(waited, 1), looks
        if between is not None:
            between()
        clock.sleep(max(0, min(interval, timeout - waited)))


def claim_marker(service, run_id, controller, now, lease, previous=None):
    """The marker a run writes when it takes the host. It keeps, from a marker it takes over, the start of the
    first run and the service as it was before it, so that the recovery resumes and the operator's reason
    survives; otherwise it records the service as it is now."""
    if previous is not None:
        start = min(previous.started_at, now) if previous.started_at else now
        return RunMarker(run_id, PHASE_CLAIMED, controller, start, now, lease, previous.was_status, previous.was_forced_down, previous.was_reason)
    disabled = service.get('status') == 'disabled'
    return RunMarker(
        run_id,
        PHASE_CLAIMED,
        controller,
        now,
        now,
        lease,
        'disabled' if disabled else 'enabled',
        bool(service.get('forced_down')),
        service.get('disabled_reason') if disabled else None,
    )


def retrying_reads(nova, clock, lease):
    """The compute API adapter a run's hold reads through when no evacuation engine wraps it (os_recovery_run): a
    read that failed transiently (a 5xx, a reset, no answer) is sent again for up to a quarter of the lease
    (READ_RETRY_BUDGET at most), as the engine's reads are, so one lost answer does not end a claim, a phase change
    or a verify, and a renewal still lands well inside the lease. Writes are sent once: HostRun reads before it
    writes, and a write whose answer was lost is found on the next read."""
    return RetryingReads(nova, clock, min(READ_RETRY_BUDGET, lease / 4.0))


def held_message(host, holder, waited=None):
    """Why a run refuses a host a live run holds, and what to do."""
    waited_text = ' after waiting %ds' % waited if waited else ''
    return (
        'host %s is held by a live novaha.recovery run%s: %s. This run changed nothing and starts no second '
        'evacuator. Watch it with: openstack compute service list --service nova-compute --host %s --long '
        '(the disabled reason shows its phase and heartbeat); when its controller is gone the same command '
        'takes over once the heartbeat is older than the lease; takeover=true overrides a live-looking run' % (host, waited_text, holder.describe(), host)
    )


class HostRun(object):
    """One run's hold on one host: claim it, move its phase on (renewing the heartbeat), end it.

    Every write is preceded by a read that checks the marker is still ours, and a claim is written, left to
    settle and read back: two runs that claim at the same moment cannot both go on."""

    def __init__(self, nova, host, run_id, clock, controller=None, lease=DEFAULT_LEASE, settle=DEFAULT_SETTLE, microversion=MV_SERVICES):
        if not valid_run_id(run_id):
            raise RunError('run_id %r is not valid: 1 to 32 letters, digits, "-" or "_"' % (run_id,), kind='configuration')
        self.nova = nova
        self.host = host
        self.run_id = run_id
        self.clock = clock
        self.controller = controller or controller_identity()
        self.lease = int(lease)
        self.settle = float(settle)
        self.mv = microversion
        self.marker = None
        self.service = None
        self.first_read = None  # the service as this HostRun first read it: before any write of its own
        self.took_over = None
        self.settled_at = None  # when a claim written with read_back=False may be read back (``prove_claim``)
        self.last_beat = None
        self.renew_errors = []  # heartbeat renewals that failed and were tried again

    # -- reading -----------------------------------------------------------------------------------------------

    def _request(self, method, path, body, doing):
        try:
            return self.nova.request(method, path, self.mv, body)
        except NovaApiError as err:
            status, details, request_id = err.status_code, err.message, err.request_id
            facts = ', '.join(x for x in ('HTTP %s' % status if status else '', 'request id %s' % request_id if request_id else '') if x)
            error = RunError('%s failed: %s%s' % (doing, details, ' (%s)' % facts if facts else ''), kind='api', request_id=request_id, http_status=status)
            error.transient = transient(err)
            raise error

    def reference(self):
        """(now, skew) as ``reference_time`` decides: the API's clock (the Date of its last answer), else the
        local one with a skew allowance."""
        return reference_time(getattr(self.nova, 'last_date', None), self.clock.now())

    def now(self):
        """The time a heartbeat is written with (the API's clock, else the local one)."""
        return self.reference()[0]

    def read(self):
        """(service, marker found, Holder) as Nova has them now: the one reader of the host's nova-compute
        service (the wait for the service down reads it so too)."""
        resp = self._request('GET', '/os-services?binary=%s&host=%s' % (COMPUTE, self.host), None, 'reading the nova-compute service of %s' % self.host)
        found = [s for s in (resp.body or {}).get('services') or [] if s.get('binary') == COMPUTE and s.get('host') == self.host]
        if not found:
            raise RunError(
                'host %s has no nova-compute service: check the host name (openstack compute service list --service nova-compute)' % self.host,
                kind='no_service',
            )
        service = found[0]
        marker = parse_marker(service.get('disabled_reason'))
        self.service = service
        if self.first_read is None:
            self.first_read = dict(service)
        now, skew = self.reference()
        return service, marker, judge_holder(marker, self.run_id, now, skew=skew)

    def read_if_any(self):
        """``read``, except that a host without a nova-compute service is read as held by no run (service None):
        for ending and giving back, which have nothing to do there."""
        try:
            return self.read()
        except RunError as exc:
            if exc.kind != 'no_service':
                raise
            return None, None, Holder('free')

    # -- writing -----------------------------------------------------------------------------------------------

    def _put(self, body, doing):
        resp = self._request('PUT', '/os-services/%s' % self.service['id'], body, doing)  # type: ignore[index]  # read before any write
        updated = (resp.body or {}).get('service') if resp is not None else None
        if isinstance(updated, dict):
            self.service = dict(self.service, **updated)  # type: ignore[arg-type]  # read before any write
        return self.service

    def _write(self, marker, doing, forced_down=None):
        body = {'status': 'disabled', 'disabled_reason': marker.text()}
        if forced_down is not None:
            body['forced_down'] = forced_down
        self._put(body, doing)
        self.marker = marker
        self.last_beat = self.clock.now()

    def claim(self, takeover=False, wait_timeout=0, wait_interval=10, on_wait=None, read_back=True):
        """Take the host for this run. A live run is waited for (up to ``wait_timeout`` s) and then refused;
        a stale or ended run is taken over, keeping its start and the service before it. Returns the Holder
        found. Raises RunError(kind='held'), RunError(kind='lost'), or RunError(kind='api') for an API too slow
        to claim safely.

        Why the claim is sound: a competitor that read the host free did so before our write landed, and it
        writes at most ``settle`` seconds after its read started (it checks, as we do); we read back ``settle``
        seconds after our write returned, so its write, if any, is there to see.

        ``read_back=False``: return as soon as the write returned, with ``settled_at`` (this clock) set to the
        moment the read-back may be done; ``prove_claim(settled_at)`` does it, and nothing may be written to Nova
        before it did (the host_recovery role proves the claim as the isolate phase starts, and fences the host
        meanwhile: the BMC only, which a competitor would do as well). The settle is not shortened, it is spent
        on that work."""
        started = self.clock.now()
        slow_rounds = 0
        failed_writes = 0
        before = None  # who held the host before this run's first write
        while True:
            read_at = self.clock.now()  # the answer may be as old as the request
            service, found, holder = self.read()
            if holder.kind == 'live' and not takeover:
                waited = self.clock.now() - started
                if waited >= wait_timeout:
                    raise RunError(held_message(self.host, holder, waited), kind='held', holder=holder)
                if on_wait is not None:
                    on_wait(holder, waited)
                self.clock.sleep(min(wait_interval, max(1, wait_timeout - waited)))
                continue
            if holder.kind == 'live':
                holder = Holder('overridden', holder.marker, holder.age)
            if before is None or holder.kind != 'ours':
                before = holder
            if holder.kind == 'ours':
                marker = found
                marker.phase = PHASE_CLAIMED
                marker.heartbeat_at = self.now()
                marker.lease = self.lease
            else:
                marker = claim_marker(service, self.run_id, self.controller, self.now(), self.lease, found if holder.kind != 'free' else None)
                self.took_over = holder if holder.kind in ('ended', 'stale', 'overridden') else None
            try:
                self._write(marker, 'marking the nova-compute service of %s with run %s' % (self.host, self.run_id))
            except RunError as exc:
                # The write failed transiently, or its answer was lost: a fresh round reads the host again (our
                # marker, if the write landed; the host as it was, if not) and writes again. Sound as any round:
                # the read-back below still comes ``settle`` after a write that returned.
                failed_writes += 1
                self._wait_to_write_again(exc, failed_writes)
                continue
            gap = self.clock.now() - read_at
            if gap > self.settle:
                # Read and write took longer than a competitor is allowed: not proven alone. Read again (a
                # competitor's claim shows as a live run) and write again, a few times, then give up.
                slow_rounds += 1
                if slow_rounds >= CLAIM_ROUNDS:
                    self._give_up(marker)
                    raise RunError(
                        'the compute API took %.1f s to read and write the nova-compute service of %s, '
                        'more than settle (%ss), %d times: the claim cannot be proven alone. Nothing '
                        'else was changed; run again, or raise settle' % (gap, self.host, self.settle, slow_rounds),
                        kind='api',
                    )
                continue
            self.settled_at = self.clock.now() + self.settle
            if read_back:
                self.prove_claim(self.settled_at)
            return before

    def prove_claim(self, settled_at):
        """The read-back of a claim (``claim``): at ``settled_at`` or later (this clock; ``settle`` seconds after the
        claim's write returned, at most CLAIM_PROOF_WAIT from now), the marker read must still be this run's.
        Returns it. Raises RunError(kind='lost') when a competitor's claim is there instead."""
        self.clock.sleep(max(0.0, min(settled_at - self.clock.now(), CLAIM_PROOF_WAIT)))
        _service, now_found, now_holder = self.read()
        if now_holder.kind != 'ours':
            raise RunError(
                'another novaha.recovery run claimed host %s at the same moment: %s. This run stops '
                'here; the other one goes on' % (self.host, now_holder.describe()),
                kind='lost',
                holder=now_holder,
            )
        self.marker = now_found
        return now_found

    def claim_words(self, read_back=True):
        """What a claim did, told once for every module that claims: (message, warning or None). The warning
        names a takeover of a run whose heartbeat went stale or that was overridden (``takeover``)."""
        msg = 'run %s holds %s (phase claimed%s)' % (self.run_id, self.host, '' if read_back else '; read back before the first write')
        warning = None
        if self.took_over is not None:
            words = 'took over the %s %s' % (self.took_over.kind, self.took_over.describe())
            msg += '; ' + words
            if self.took_over.kind in ('stale', 'overridden'):
                warning = '%s: %s' % (self.host, words)
        return msg, warning

    def move_to(self, phase, settled_at=None):
        """Move this run to ``phase`` (isolated: the service forced down as well), for every module that does: the
        claim read back first when it was left to this process (``settled_at``, see ``claim``), else ``advance``
        reads first (the host must still be ours). Returns (the service before: as this process first read it,
        before any write of its own; the words for what was done)."""
        proven = self.prove_claim(settled_at) if settled_at is not None else None
        self.advance(phase, forced_down=True if phase == PHASE_ISOLATED else None, held=proven)
        words = 'forced down, disabled, phase %s' % phase if phase == PHASE_ISOLATED else 'phase %s' % phase
        return self.first_read, 'run %s on %s: %s' % (self.run_id, self.host, words)

    def _give_up(self, marker):
        """A claim that could not be proven is marked interrupted, so that no run waits a lease for it."""
        marker.phase = PHASE_INTERRUPTED
        try:
            self.hold()
            self._write(marker, 'marking the unproven claim of run %s on %s interrupted' % (self.run_id, self.host))
        except RunError:
            pass  # another run took the host meanwhile, or the API failed again: nothing of ours to undo

    def hold(self):
        """The marker, read now, must be ours; returns it. Raises RunError(kind='lost') otherwise."""
        service, found, holder = self.read()
        if holder.kind != 'ours':
            raise RunError(
                'run %s no longer holds host %s: %s. This run stops without changing anything more'
                % (
                    self.run_id,
                    self.host,
                    holder.describe() if found else 'the service carries no run marker (disabled reason: %r)' % service.get('disabled_reason'),
                ),
                kind='lost',
                holder=holder,
            )
        self.marker = found
        return found

    def advance(self, phase, forced_down=None, held=None):
        """Move to ``phase`` with a fresh heartbeat (and set forced down when asked), once sure the host is ours.
        ``held``: this run's marker as a read just now found it (``prove_claim``), written without reading again.

        A write that failed transiently (or whose answer was lost) is sent again after the host is read again and
        found still ours: the write is the same, so one that landed is only written twice."""
        failed_writes = 0
        while True:
            marker, held = held or self.hold(), None
            marker.phase = phase
            marker.heartbeat_at = self.now()
            try:
                self._write(marker, 'moving run %s on %s to phase %s' % (self.run_id, self.host, phase), forced_down)
            except RunError as exc:
                failed_writes += 1
                self._wait_to_write_again(exc, failed_writes)
                continue
            return marker

    def _wait_to_write_again(self, exc, failed_writes):
        """A marker write failed (the claim's or a phase change's): raise it unless it failed transiently and fewer
        than ``CLAIM_WRITE_RETRIES`` writes failed before; else wait the backoff before the caller reads and writes
        again."""
        if not getattr(exc, 'transient', False) or failed_writes > CLAIM_WRITE_RETRIES:
            raise exc
        self.clock.sleep(backoff(failed_writes - 1, cap=8.0))

    def renew_if_due(self):
        """Renew the heartbeat when a quarter of the lease has passed since the last one (cheap to call often).

        A failed renewal is tried again at the next call while three quarters of the lease remain: one API error
        does not end an evacuation. Another run holding the host (lost) always does."""
        if self.last_beat is not None and self.clock.now() - self.last_beat < self.lease / 4.0:
            return False
        try:
            self.advance(self.marker.phase if self.marker is not None else PHASE_EVACUATING)
        except RunError as exc:
            if exc.kind == 'lost' or self.last_beat is None or self.clock.now() - self.last_beat >= self.lease / 2.0:
                raise
            self.renew_errors.append(exc.msg)
            return False
        return True

    def restore(self, override=False, check_mode=False):
        """Return a repaired host to service as ``plan_restore`` decides. Returns (RestorePlan, service before,
        service after or None). Raises RunError(kind='refused') when it must not."""
        service, _found, holder = self.read()
        plan = plan_restore(service, holder, override)
        if plan.refusal:
            raise RunError('refusing to return %s to service, nothing changed: %s' % (self.host, plan.refusal), kind='refused', holder=holder)
        before = dict(service)
        if plan.body is None or check_mode:
            return plan, before, None
        return plan, before, dict(self._put(plan.body, 'returning the nova-compute service of %s to service' % self.host))

    def end(self, stopped, check_mode=False):
        """End this run's hold: its marker moves to the phase ``end_phase`` decides, with a fresh heartbeat, so
        the next run for the host goes on at once and resumes what is left. Returns that phase, or None when the
        run holds nothing (it never claimed the host, gave it back, or another run took it): nothing of ours to
        end, and another run's marker is never written over. Returns (that phase or None, the service as read
        before). ``check_mode``: decide, write nothing.

        A write that failed transiently (or whose answer was lost) is sent again after a fresh read finds the
        marker still ours, as ``advance`` does: a run left in a held phase would make the next run wait a lease."""
        phase = end_phase(stopped)
        before = None
        failed_writes = 0
        while True:
            service, found, holder = self.read_if_any()
            if not failed_writes:
                before = dict(service) if service is not None else None
            if holder.kind != 'ours':
                return None, before
            if check_mode:
                return phase, before
            found.phase = phase
            found.heartbeat_at = self.now()
            try:
                self._write(found, 'ending run %s on %s in phase %s' % (self.run_id, self.host, phase))
            except RunError as exc:
                failed_writes += 1
                self._wait_to_write_again(exc, failed_writes)
                continue
            return phase, before

    def release(self, took_over=False, evacuation_started=False, evacuated=False, check_mode=False):
        """Give the service back what it had before the first run of this recovery, when ``release_refusal``
        allows it (this run's marker on it, nothing moved, no earlier run taken over; see there for the facts
        passed). ``took_over`` also counts when this run's own claim took over another run. Returns a Release:
        ``declined`` is None when the service was given back (or would be, in ``check_mode``), else the RELEASE_*
        kind; nothing is written then. A write that failed transiently is sent again after a fresh read, as
        ``end`` does; one whose answer was lost is found done (the service reads as it was given back)."""
        failed_writes = 0
        sent = None  # (service before, body) of the last write that failed
        while True:
            service, found, holder = self.read_if_any()
            if sent is not None and holder.kind == 'free' and service is not None and all(service.get(k) == v for k, v in sent[1].items()):
                self.marker = None
                return Release(self.host, self.run_id, None, holder, sent[0], sent[1], check_mode)
            declined = release_refusal(
                holder, took_over=bool(took_over) or self.took_over is not None, evacuation_started=evacuation_started, evacuated=evacuated
            )
            if declined is not None:
                return Release(self.host, self.run_id, declined, holder, service)
            before = dict(service)
            body = found.restore_body(service)
            if not check_mode:
                try:
                    self._put(body, 'restoring the nova-compute service of %s as it was before run %s' % (self.host, self.run_id))
                except RunError as exc:
                    failed_writes += 1
                    sent = (before, body)
                    self._wait_to_write_again(exc, failed_writes)
                    continue
                self.marker = None
            return Release(self.host, self.run_id, None, holder, before, body, check_mode)

    def verify(self, look, timeout, interval):
        """Hold the host in phase verifying while the evacuated servers get where they should: ``look()``
        returns a verdict per watched server (``waiting``: it may still get there); looks again until none is
        waiting, at most ``timeout`` seconds. The heartbeat is renewed while it waits, and a run whose host was
        taken stops (RunError lost). Returns (last verdicts, seconds waited, number of looks).

        A marker of this run already in phase verifying with a heartbeat younger than a quarter lease (the
        evacuation moved it there as it ended) is not written again: the read proves the host is still ours, and
        the next renewal is due a quarter lease after that heartbeat, as if this run had written it."""
        marker = self.hold()
        now, skew = self.reference()
        age = (now - marker.heartbeat_at).total_seconds() + skew if now is not None else None
        if marker.phase == PHASE_VERIFYING and age is not None and 0 <= age < self.lease / 4.0:
            self.last_beat = self.clock.now() - age
        else:
            self.advance(PHASE_VERIFYING)
        return wait_for(look, lambda verdicts: not any(v.get('waiting') for v in verdicts), self.clock, timeout, interval, between=self.renew_if_due)


class Release(object):
    """What ``HostRun.release`` did: ``declined`` (None, or the RELEASE_* kind why not), ``holder`` (as read),
    ``service`` (before), ``body`` (the PUT sent, or that would be sent in check mode)."""

    def __init__(self, host, run_id, declined, holder, service, body=None, check_mode=False):
        self.host = host
        self.run_id = run_id
        self.declined = declined
        self.holder = holder
        self.service = service
        self.body = body
        self.check_mode = check_mode

    def describe(self):
        """In words, for the operator (decided by ``declined``, never parsed back)."""
        if self.declined is None:
            return '%s the nova-compute service of %s as it was before run %s: %s' % (
                'check mode: would put back' if self.check_mode else 'put back',
                self.host,
                self.run_id,
                self.body,
            )
        return {
            RELEASE_NOT_HELD: 'run %s does not hold %s (%s): nothing of this run to give back' % (self.run_id, self.host, self.holder.describe()),
            RELEASE_EVACUATION_STARTED: 'servers of %s were moved off it or are on their way, so it stays isolated (forced down, disabled)' % self.host,
            RELEASE_TOOK_OVER: 'run %s took over an earlier run of this recovery, which may have moved servers, so '
            '%s stays isolated (forced down, disabled)' % (self.run_id, self.host),
        }[self.declined]


# ---------------------------------------------------------------------------------------------------------
# Returning a repaired host to service


class RestorePlan(object):
    """What restoring a repaired host does: ``body`` (the PUT, None for nothing to do), ``msg`` in words, and
    ``refusal`` (why it must not, or None)."""

    def __init__(self, body=None, msg='', refusal=None, keeps_disabled_reason=None):
        self.body = body
        self.msg = msg
        self.refusal = refusal
        self.keeps_disabled_reason = keeps_disabled_reason


def plan_restore(service, holder, override=False):
    """The way back to service for a repaired host, decided from its service and the marker's holder.

    A recovery's marker gives the service back what it had before the first run (an operator's disabled
    reason stays: the host stays disabled for it), never forced down. A live run is never cut short. A host
    disabled by someone else (no marker) is left alone unless ``override``."""
    host = service.get('host')
    marker = holder.marker
    if holder.kind == 'live':
        return RestorePlan(refusal='a novaha.recovery run still holds %s: %s; wait for it to end' % (host, holder.describe()))
    if marker is not None:
        body = dict(status=marker.was_status, forced_down=False)
        if marker.was_status == 'disabled':
            body['disabled_reason'] = marker.was_reason or 'disabled before novaha.recovery run %s' % marker.run_id
            return RestorePlan(
                body,
                'forced down cleared; left disabled with the reason it had before the recovery: %s' % body['disabled_reason'],
                keeps_disabled_reason=body['disabled_reason'],
            )
        return RestorePlan(body, 'forced down cleared and enabled (the recovery marker of run %s is removed)' % marker.run_id)
    if service.get('status') == 'disabled' and not override:
        return RestorePlan(
            refusal='%s is disabled, but not by novaha.recovery (disabled reason: %r); it is left '
            'as it is. Enable it yourself, or run again with override=true (restore-host.yml: '
            '-e restore_override=true) to enable it anyway' % (host, service.get('disabled_reason'))
        )
    if service.get('status') == 'enabled' and not service.get('forced_down'):
        return RestorePlan(None, '%s is enabled and not forced down; nothing to do' % host)
    words = []
    if service.get('forced_down'):
        words.append('forced down cleared')
    if service.get('status') == 'disabled':
        words.append('enabled (override: it was disabled for %r)' % service.get('disabled_reason'))
    return RestorePlan(dict(status='enabled', forced_down=False), ', '.join(words))


def wait_for_repair(first, read, clock, timeout, interval=5, power_state=None, power_msg=None):
    """Watch a recovered host until ``restore_refusals`` finds nothing against it, at most ``timeout`` seconds.
    ``first``: a reading taken before (as ``os_host_info`` returns it without servers; it must be a real one, or
    any later heartbeat would look new); ``read()`` the next ones. The power state (read once, by the caller) is
    judged at the end. Returns the refusals: an empty list, the host may go back to service."""
    now, waited, _looks = wait_for(read, lambda reading: not restore_refusals(reading, first), clock, timeout, interval)
    return restore_refusals(now, first, power_state, power_msg, int(round(waited)))


def restore_refusals(now, first, power_state=None, power_msg=None, waited=None):
    """Why a host is not repaired yet, from two readings of it (``os_host_info`` results, ``first`` taken before
    waiting) and its BMC power state (None: not judged). An empty list: it may go back to service.

    Repaired means powered On, its nova-compute reporting again (the heartbeat moved between the two readings)
    and no evacuation from it left unfinished (Nova refuses to force a host up before its restarted
    nova-compute has cleaned them up)."""
    refusals = []
    if power_state is not None and power_state != 'on':
        refusals.append('the BMC does not read power On but %s%s' % (power_state or 'no reading', ' - %s' % power_msg if power_msg else ''))
    service = (now or {}).get('service') or {}
    before = (first or {}).get('service') or {}
    if not service.get('updated_at') or service.get('updated_at') == before.get('updated_at'):
        refusals.append(
            'nova-compute does not report: no heartbeat in %s s, the last one %s s ago; start '
            'nova-compute on the host' % (waited if waited is not None else '?', service.get('heartbeat_age', '?'))
        )
    unfinished = [str(m.get('id')) for m in (now or {}).get('migrations') or [] if m.get('status') in UNFINISHED_MIGRATIONS]
    if unfinished:
        refusals.append(
            'evacuations from it are not cleaned up yet, migrations %s are not completed; its restarted nova-compute completes them' % ', '.join(unfinished)
        )
    return refusals
