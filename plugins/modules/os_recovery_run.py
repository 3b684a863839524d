#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: os_recovery_run
short_description: Claim a failed compute host for one recovery run, move the run through its phases, end it
version_added: 0.1.0
description:
  - "One recovery run holds one host. Its record is the disabled reason of the host's C(nova-compute) service
    (the run marker) - C(novaha.recovery run RUN_ID PHASE ctl CONTROLLER start TIME beat TIME lease SECONDS;
    was: STATUS[,forced_down] (REASON)) - which survives a dead controller, a new AWX pod, anything."
  - O(state=claimed) takes the host. A host held by a live run (its heartbeat younger than its lease) is
    waited for up to O(wait_for_run) seconds and then refused, naming that run, its controller, phase and
    last heartbeat; nothing is changed. A run whose heartbeat is older than its lease (its controller died)
    and a run that ended are taken over, keeping the start of the first run and the service as it was before
    it. The claim disables the service with the marker, waits O(settle) seconds and reads it back; of two runs
    claiming at the same moment exactly one goes on, the other fails without changing anything more. With
    O(read_back=false) it returns once the marker is written, and the next module of the run reads it back
    (O(settled_at)).
  - O(state=isolated) forces the service down (after the host is proven fenced); O(state=verifying),
    O(state=done) and O(state=interrupted) move the run to that phase. Each renews the heartbeat and first
    checks that the marker is still this run's; a run whose host was taken stops there.
  - O(state=verifying) with O(servers) also waits, up to O(verify_timeout) seconds, until every server moved off
    the host is in its expected state on a healthy host, and returns the verdict per server (RV(verdicts)). It
    reads the services, the host's evacuation migrations and the watched servers every O(verify_interval)
    seconds - one listing of the servers changed since the evacuation last saw them, and by its id each one the
    listing does not show - and renews the heartbeat while it waits; a failed reading is one more look.
  - O(state=ended) ends the run's hold - phase V(interrupted) when O(stopped=true) (the run stopped on a
    failure), V(done) otherwise - so that the next run goes on at once and resumes what is left. A run that
    holds nothing (it never claimed the host, gave it back, or another run took it) changes nothing and returns
    RV(phase) null, since another run's marker is never written over.
  - O(state=isolated) with O(end_run=true) ends the run right after the isolation, in the same module run, as
    O(state=ended) would - for a host with nothing to evacuate, where nothing comes between the two.
  - O(state=ended) (or O(end_run=true)) with O(end_auth_cache=true) also ends the run's shared Keystone token
    afterwards, in the same module run, as M(novaha.recovery.os_auth_cache) with its O(novaha.recovery.os_auth_cache#module:state=absent)
    does - whether the marker was ended, held nothing to end, or could not be ended.
  - O(state=released) gives the service back what it had before the first run (status, forced down, disabled
    reason), for a run that stopped before any evacuation. It declines, changing nothing and without failing,
    when the marker on the service is not this run's (V(not_held)), when servers left the host or are on their
    way - O(evacuation_started), or the marker reached phase evacuating or verifying - (V(evacuation_started)),
    or when this run took over an earlier run of the recovery (O(took_over), V(took_over)); the host then stays
    isolated. RV(declined) says which.
  - O(state=restored) returns a repaired host to service - forced down cleared, and the status and disabled
    reason it had before the recovery, so a host an operator had disabled stays disabled for the operator's
    reason. A host disabled by someone else (no run marker) is refused unless O(override=true); a live run is
    never cut short. O(run_id) is not needed.
  - With O(wait_for_repair) or O(power_state), O(state=restored) first makes sure the host is repaired - its BMC
    reads power On (O(power_state), when given), its C(nova-compute) reports again (the heartbeat moves while the
    module watches, up to O(wait_for_repair) seconds) and no evacuation from it is left unfinished - and
    refuses (V(refused), each unmet condition in RV(refusals)), changing nothing, otherwise.
author:
  - novaha.recovery maintainers (@novaha)
options:
  host:
    description:
      - The host name of the C(nova-compute) service, exactly as C(openstack compute service list) shows it.
    type: str
    required: true
  run_id:
    description:
      - The id of this recovery run, made once per host recovery and given to every module of the run
        (1 to 32 letters, digits, C(-) or C(_)). Required unless O(state=restored).
    type: str
  state:
    description:
      - What to do with the run; see the description.
    type: str
    required: true
    choices: [claimed, isolated, verifying, done, interrupted, ended, released, restored]
  lease:
    description:
      - Seconds the heartbeat of this run stays valid, 10 or more. Another run takes the host over once the
        heartbeat is older. Every module of the run renews it; M(novaha.recovery.os_host_evacuate) every quarter
        lease.
      - The P(novaha.recovery.host_recovery#role) role sets it from C(host_recovery_lease).
    type: int
    default: 300
  wait_for_run:
    description:
      - With O(state=claimed), seconds to wait for a live run that holds the host to end before refusing.
    type: int
    default: 0
  settle:
    description:
      - With O(state=claimed), seconds between writing the claim and reading it back.
    type: float
    default: 2.0
  read_back:
    description:
      - With O(state=claimed), read the claim back (O(settle) seconds after it was written) before returning.
      - V(false) - return as soon as the marker is written, with RV(settled_at); the claim is not proven yet. The
        next task of the run must be this module with O(settled_at), before anything else is written to Nova, and it
        reads the claim back then. The P(novaha.recovery.host_recovery#role) role fences the host meanwhile (its
        BMC only, which a competing run would do as well), so the settle costs no time of its own.
    type: bool
    default: true
  settled_at:
    description:
      - With O(state=isolated), O(state=verifying), O(state=done) or O(state=interrupted), the RV(settled_at) of this
        run's claim written with O(read_back=false). The claim is read back at that time or later (the module waits
        for it, at most 60 s), and a run whose claim lost to another one fails there without changing anything, as
        a claim does.
    type: float
  takeover:
    description:
      - With O(state=claimed), take over a run whose heartbeat still looks fresh. Only for a holder you know is
        gone; a stale one is taken over without this.
    type: bool
    default: false
  override:
    description:
      - With O(state=restored), enable a host disabled by someone else (without a run marker).
    type: bool
    default: false
  wait_for_repair:
    description:
      - With O(state=restored), seconds to watch the host for a new heartbeat of its C(nova-compute) and its
        evacuations cleaned up before returning it to service (Nova's C(report_interval) is 10 s by default).
    type: int
    default: 0
  power_state:
    description:
      - With O(state=restored), the power state its BMC reads now (as M(novaha.recovery.os_fence_check) returns
        it); anything but V(on) refuses. Not judged when not given.
    type: str
  power_msg:
    description:
      - With O(state=restored), what the BMC reading said, quoted when the power refuses.
    type: str
  stopped:
    description:
      - With O(state=ended), the run stopped on a failure (it ends V(interrupted), else V(done)).
    type: bool
    default: false
  end_run:
    description:
      - With O(state=isolated), once the host is isolated, end the run (phase V(done)) in the same module run, as
        O(state=ended) does; with O(end_auth_cache=true) its token too. For a host with nothing to evacuate, where
        nothing comes between the isolation and the end (the P(novaha.recovery.host_recovery#role) role passes
        it when the preflight's RV(novaha.recovery.os_host_evacuate#module:ends_in) is V(isolate)).
      - When the isolation fails nothing is ended; when the end fails the task fails after the isolation.
    type: bool
    default: false
  end_auth_cache:
    description:
      - With O(state=ended) or O(end_run=true), once the marker is dealt with, revoke every token in O(auth_cache) with Keystone and
        remove the file, after removing the caches of runs that are gone beside it (revoking their tokens), as
        M(novaha.recovery.os_auth_cache) does with O(novaha.recovery.os_auth_cache#module:state=absent). No module of
        the run may come after it.
      - The token is ended whatever happened to the marker, and the marker whatever happens to the token. The task
        fails only when the marker could not be ended; a token that could not be revoked or a file that could not be
        removed is a warning (RV(token_caches)).
      - The token is the run's own, not a state of the cloud. It is ended in check mode as well, and its end is not
        counted as a change.
    type: bool
    default: false
  took_over:
    description:
      - With O(state=released), the run this run's claim took over (the claim's RV(took_over)), or null. A run that
        took over an earlier run of the recovery does not give the service back.
    type: dict
  evacuation_started:
    description:
      - With O(state=released), servers of the host were moved off it or are on their way (the role's records say
        so); the service is then not given back.
    type: bool
    default: false
  servers:
    description:
      - With O(state=verifying), the server records of the recovery (M(novaha.recovery.os_host_evacuate)'s
        RV(novaha.recovery.os_host_evacuate#module:servers)); those moved off the host or on their way are
        watched. Without it the run only moves to phase verifying.
    type: list
    elements: dict
  verify_timeout:
    description:
      - With O(state=verifying) and O(servers), seconds to wait for the watched servers.
    type: int
    default: 300
  verify_interval:
    description:
      - With O(state=verifying) and O(servers), seconds between two readings.
    type: int
    default: 5
attributes:
  check_mode:
    support: full
    details:
      - Reads the service, judges who holds the host and returns what would be done; writes nothing to Nova.
        With O(end_auth_cache=true) the run's own token is ended all the same.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - Every state but V(claimed), V(released) and V(restored) renews the heartbeat of a run that holds the host,
        so it reports a change each time.
notes:
  - Needs an account with the admin role (by default policy) and compute API microversion 2.53 or later.
  - The operator's disabled reason is kept inside the marker, cut to fit Nova's 255 characters (C(...) marks a
    cut); the role's snapshot.json keeps it whole.
seealso:
  - module: novaha.recovery.os_host_evacuate
  - module: novaha.recovery.os_fence_check
extends_documentation_fragment:
  - novaha.recovery.attributes
  - novaha.recovery.openstack
"""

EXAMPLES = r"""
- name: Claim node-28 for this recovery, waiting up to 6 minutes for a live run
  novaha.recovery.os_recovery_run:
    cloud: novaha-admin
    host: node-28
    run_id: "{{ recovery_run_id }}"
    state: claimed
    wait_for_run: 360
  delegate_to: localhost

- name: Isolate node-28 once it is proven fenced
  novaha.recovery.os_recovery_run:
    cloud: novaha-admin
    host: node-28
    run_id: "{{ recovery_run_id }}"
    state: isolated
  delegate_to: localhost

- name: Wait up to 5 minutes until the evacuated servers are where they should be
  novaha.recovery.os_recovery_run:
    cloud: novaha-admin
    host: node-28
    run_id: "{{ recovery_run_id }}"
    state: verifying
    servers: "{{ evacuation.servers }}"
    verify_timeout: 300
  delegate_to: localhost
  register: verification

- name: End the run, interrupted when it stopped on a failure, then revoke the run's shared Keystone token
  novaha.recovery.os_recovery_run:
    cloud: novaha-admin
    auth_cache: ~/.ansible/tmp/novaha-recovery-{{ recovery_run_id }}.token
    host: node-28
    run_id: "{{ recovery_run_id }}"
    state: ended
    stopped: "{{ recovery_failure is defined }}"
    end_auth_cache: true
  delegate_to: localhost

- name: Return the repaired node-28 to service, once its nova-compute reports again (watched up to 45 s)
  novaha.recovery.os_recovery_run:
    cloud: novaha-admin
    host: node-28
    state: restored
    wait_for_repair: 45
    power_state: "{{ power.evidence.power_state }}"
  delegate_to: localhost
"""

RETURN = r"""
msg:
  description: What was done, or why not, in one sentence.
  returned: always
  type: str
  sample: "run 3f9a1c0b2e holds node-28 (phase claimed); took over the stale run 00aa11bb22"
run:
  description:
    - The marker of this run after the task - run_id, phase, controller, started_at, heartbeat_at, lease and
      C(was) (status, forced_down, disabled_reason before the first run); null after V(released) and V(restored).
  returned: always
  type: dict
holder:
  description:
    - Who held the host when it was read - C(kind) (V(free), V(ours), V(ended), V(stale), V(overridden),
      V(live)), C(heartbeat_age), C(marker), C(detail). For a claim refused, the live run.
  returned: when the service was read
  type: dict
took_over:
  description: The run this claim took over (a C(holder) entry), or null.
  returned: with O(state=claimed)
  type: dict
settled_at:
  description: With O(read_back=false), when the claim may be read back (seconds since the epoch, the controller's
    clock); give it to the next task as O(settled_at). Null when the claim was read back.
  returned: with O(state=claimed)
  type: float
service:
  description: The nova-compute service before and after the task (C(before), C(after)).
  returned: when the service was read
  type: dict
refusals:
  description: With O(state=restored), why the host is not repaired yet, one sentence per unmet condition.
  returned: when O(state=restored) refuses a host that is not repaired
  type: list
  elements: str
keeps_disabled_reason:
  description: With O(state=restored), the disabled reason from before the recovery that the host keeps (it stays
    disabled for it), or null.
  returned: with O(state=restored)
  type: str
phase:
  description: With O(state=ended) or O(end_run=true), the phase the run ended in (V(done), V(interrupted)), or null
    when the run held nothing to end.
  returned: with O(state=ended) or O(end_run=true)
  type: str
token_caches:
  description:
    - With O(end_auth_cache=true), what was done to the token caches - C(msg), C(removed) and C(kept) as
      M(novaha.recovery.os_auth_cache) returns them, C(failed) (why the file could not be removed, or null).
  returned: with O(end_auth_cache=true)
  type: dict
declined:
  description: With O(state=released), null when the service was given back, else why not - V(not_held),
    V(evacuation_started), V(took_over) (see the description).
  returned: with O(state=released)
  type: str
verdicts:
  description:
    - With O(state=verifying) and O(servers), one per watched server - C(id), C(name), C(host), C(status),
      C(task_state), C(expected_status), C(ok), C(waiting) (still on its way at the timeout), C(reason),
      C(verified_at).
  returned: with O(state=verifying) and O(servers)
  type: list
  elements: dict
reading:
  description: With O(state=verifying) and O(servers), the last reading (as M(novaha.recovery.os_host_info) returns
    it with O(novaha.recovery.os_host_info#module:list_host_servers=false)), or C(msg) when it failed.
  returned: with O(state=verifying) and O(servers)
  type: dict
waited:
  description: With O(state=verifying) and O(servers), seconds waited and the number of readings (C(seconds),
    C(looks)).
  returned: with O(state=verifying) and O(servers)
  type: dict
kind:
  description:
    - Why the task failed, as a flag for playbooks - V(held) (a live run holds the host), V(lost) (another run
      took it), V(refused) (restore refused), V(no_service), V(api), V(configuration).
  returned: on failure
  type: str
"""

from ansible_collections.novaha.recovery.plugins.module_utils._cloud import NovahaModule
from ansible_collections.novaha.recovery.plugins.module_utils._errors import EvacuationError
from ansible_collections.novaha.recovery.plugins.module_utils._evacuation import Engine
from ansible_collections.novaha.recovery.plugins.module_utils._host_evacuation import read_tracked
from ansible_collections.novaha.recovery.plugins.module_utils._nova import SdkNova, SystemClock
from ansible_collections.novaha.recovery.plugins.module_utils._options import at_least, conflict_error, option_error
from ansible_collections.novaha.recovery.plugins.module_utils._report import servers_to_verify, verdicts, verify_since
from ansible_collections.novaha.recovery.plugins.module_utils._run import (
    LEASE_RULE,
    PHASE_DONE,
    PHASE_INTERRUPTED,
    PHASE_ISOLATED,
    PHASE_VERIFYING,
    RUN_ID_RULE,
    HostRun,
    end_run,
    iso,
    plan_restore,
    retrying_reads,
    wait_for_repair,
)
from ansible_collections.novaha.recovery.plugins.module_utils._service import service_view

PHASES = dict(isolated=PHASE_ISOLATED, verifying=PHASE_VERIFYING, done=PHASE_DONE, interrupted=PHASE_INTERRUPTED)


def brief(service):
    """The service as every module of the collection reports it."""
    return service_view(service) if service else None


class RecoveryRun(NovahaModule):
    argument_spec = dict(
        host=dict(type='str', required=True),
        run_id=dict(type='str'),
        state=dict(type='str', required=True, choices=['claimed', 'isolated', 'verifying', 'done', 'interrupted', 'ended', 'released', 'restored']),
        lease=dict(type='int', default=300),
        wait_for_run=dict(type='int', default=0),
        settle=dict(type='float', default=2.0),
        read_back=dict(type='bool', default=True),
        settled_at=dict(type='float'),
        takeover=dict(type='bool', default=False),
        override=dict(type='bool', default=False),
        wait_for_repair=dict(type='int', default=0),
        power_state=dict(type='str'),
        power_msg=dict(type='str'),
        stopped=dict(type='bool', default=False),
        end_run=dict(type='bool', default=False),
        end_auth_cache=dict(type='bool', default=False),
        took_over=dict(type='dict'),
        evacuation_started=dict(type='bool', default=False),
        servers=dict(type='list', elements='dict'),
        verify_timeout=dict(type='int', default=300),
        verify_interval=dict(type='int', default=5),
    )
    module_kwargs = dict(supports_check_mode=True)
    option_rules = dict(
        run_id=RUN_ID_RULE,
        lease=LEASE_RULE,
        wait_for_run=at_least(0, 'seconds'),
        settle=at_least(0, 'seconds'),
        verify_timeout=at_least(0, 'seconds'),
        verify_interval=at_least(1, 'seconds'),
        wait_for_repair=at_least(0, 'seconds'),
    )

    def check_inputs(self):
        p = self.params
        if p['state'] != 'restored' and p['run_id'] is None:
            raise option_error('run_id', None, 'is needed with state=%s: the id of this run' % p['state'], shown='not given')
        if p.get('end_run') and p['state'] != 'isolated':
            raise conflict_error(
                'end_run', 'state', 'a run ends with its isolation (state=isolated) or on its own (state=ended), not with state=%s' % p['state']
            )
        if p.get('end_auth_cache') and not (p['state'] == 'ended' or p.get('end_run')):
            raise conflict_error(
                'end_auth_cache', 'state', 'a run ends its token when it ends (state=ended, or state=isolated with end_run), not with state=%s' % p['state']
            )
        if p.get('end_auth_cache') and not p.get('auth_cache'):
            raise option_error('auth_cache', None, 'is needed with end_auth_cache=true: the token cache of this run', shown='not given')

    def run(self):
        p = self.params
        self.results.update(run=None)
        self.nova = SdkNova(self.conn)
        # Restoring judges every run marker as someone else's: a live run is never cut short, whatever run_id says.
        clock = SystemClock()
        host_run = HostRun(
            retrying_reads(self.nova, clock, p['lease']),
            p['host'],
            'restore' if p['state'] == 'restored' else p['run_id'],
            clock,
            lease=p['lease'],
            settle=p['settle'],
        )
        if p['state'] == 'verifying' and p['servers'] is not None:
            handler = self.do_verify
        else:
            handler = getattr(self, 'do_' + ('phase' if p['state'] in PHASES else p['state']))
        handler(host_run)

    def reader(self, host_run):
        """One reading of the host for the watches (``read_tracked``): the services, its evacuation migrations and
        the servers of ``ids``. A reading that failed is one more look, not the end of the watch."""
        engine = Engine(self.nova, host_run.clock)

        def read(ids=(), strict=False, since=None):
            try:
                return read_tracked(engine, host_run.host, list(ids), since=since)
            except EvacuationError as exc:
                if strict:
                    raise
                return dict(msg=exc.msg)

        return read

    def _done(self, host_run, before, msg, changed=True):
        after = host_run.service
        self.results['service'] = dict(before=brief(before), after=brief(after))
        if host_run.marker is not None:
            self.results['run'] = host_run.marker.to_dict()
        self.exit(changed=changed, msg=msg)

    def do_claimed(self, host_run):
        p = self.params
        service, _found, holder = host_run.read()
        self.results['holder'] = holder.to_dict()
        self.results.update(took_over=None, settled_at=None)
        if self.check_mode:
            if holder.kind == 'live' and not p['takeover']:
                verb = 'would wait up to %ss for' % p['wait_for_run'] if p['wait_for_run'] else 'would refuse: held by'
                self.exit(changed=False, msg='check mode: %s %s' % (verb, holder.describe()))
            self.exit(changed=holder.kind != 'ours', msg='check mode: would claim %s for run %s (%s)' % (p['host'], p['run_id'], holder.describe()))
        holder = host_run.claim(takeover=p['takeover'], wait_timeout=p['wait_for_run'], read_back=p['read_back'])
        self.results['holder'] = holder.to_dict()
        self.results['settled_at'] = None if p['read_back'] else host_run.settled_at
        msg, warning = host_run.claim_words(p['read_back'])
        if host_run.took_over is not None:
            self.results['took_over'] = host_run.took_over.to_dict()
        if warning:
            self.warn(warning)
        self._done(host_run, service, msg)

    def do_phase(self, host_run):
        p = self.params
        phase = PHASES[p['state']]
        if self.check_mode:
            # A dry run claimed nothing: say what would be done from what the host shows now.
            service, _found, holder = host_run.read()
            self.results.update(holder=holder.to_dict(), service=dict(before=brief(service), after=None))
            self.exit(changed=True, msg='check mode: run %s would move to phase %s on %s (%s)' % (p['run_id'], phase, p['host'], holder.describe()))
        before, msg = host_run.move_to(phase, p['settled_at'])
        if p['end_run']:
            end, token = self._end(host_run, stopped=False)
            if end.phase is None:
                self.results['service'] = dict(before=brief(before), after=None)
                self.exit(changed=True, msg='%s; then it held nothing to end%s' % (msg, token))
            msg = '%s; then ended: phase %s%s' % (msg, end.phase, token)
        self._done(host_run, before, msg)

    def do_verify(self, host_run):
        """Phase verifying, and the verdict per watched server once none is on its way any more (or the timeout)."""
        p = self.params
        host = p['host']
        records = p['servers']
        read = self.reader(host_run)
        watched = list(servers_to_verify(records, host))
        # One listing of the servers changed since the evacuation last saw them, not one GET per server.
        since = verify_since(records, watched)
        last = {}

        def look():
            last['reading'] = read(watched, since=since) if watched else {}
            return verdicts(last['reading'], records, host, iso(host_run.now()))

        if self.check_mode:
            # A dry run claimed nothing: one look at the servers, no wait, no write.
            found = look()
            self.exit(
                changed=False,
                verdicts=found,
                reading=last['reading'],
                waited=dict(seconds=0, looks=1),
                msg='check mode: %d of %d watched servers of %s verified now; run %s would wait up to %ss'
                % (len([v for v in found if v['ok']]), len(found), host, p['run_id'], p['verify_timeout']),
            )
        if p['settled_at'] is not None:
            host_run.prove_claim(p['settled_at'])
        found, seconds, looks = host_run.verify(look, p['verify_timeout'], p['verify_interval'])
        before = host_run.first_read  # verify() reads first, before any write
        self.results.update(verdicts=found, reading=last.get('reading') or {}, waited=dict(seconds=seconds, looks=looks))
        ok = len([v for v in found if v['ok']])
        waiting = len([v for v in found if v['waiting']])
        self._done(
            host_run,
            before,
            'run %s on %s: phase verifying; %d of %d servers verified in their expected state '
            'on healthy hosts after %ss (%d readings)%s'
            % (p['run_id'], host, ok, len(found), seconds, looks, '; %d still on their way at the timeout' % waiting if waiting else ''),
        )

    def _end(self, host_run, stopped):
        """The end of the run (``_run.end_run``: its marker, then its token with O(end_auth_cache)): (the RunEnd, the
        words on the token). Fails the task when the marker could not be ended."""
        p = self.params
        caches = self.token_caches(check_mode=False) if p['end_auth_cache'] else None
        end = end_run(lambda: host_run.end(stopped, check_mode=self.check_mode), (lambda: self.end_token_cache(caches)) if caches else None)
        if caches is not None:
            failed = end.token_failure.msg if end.token_failure is not None else None
            if failed:
                self.warn('the token of run %s was not ended: %s' % (p['run_id'], failed))
            self.results['token_caches'] = dict(msg=end.token or failed, removed=caches.removed, kept=caches.kept, failed=failed)
        self.results['phase'] = end.phase
        if end.failure is not None:
            self.fail_error(end.failure)
        return end, '; %s' % end.token if end.token else ''

    def do_ended(self, host_run):
        p = self.params
        end, token = self._end(host_run, p['stopped'])
        if end.phase is None:
            self.results['service'] = dict(before=brief(end.before), after=None)
            self.exit(
                changed=False,
                msg='run %s holds nothing on %s to end: it never claimed the host, gave it back, or another run took it%s' % (p['run_id'], p['host'], token),
            )
        if self.check_mode:
            self.exit(changed=True, msg='check mode: run %s would end in phase %s on %s%s' % (p['run_id'], end.phase, p['host'], token))
        self._done(host_run, end.before, 'run %s on %s ended: phase %s%s' % (p['run_id'], p['host'], end.phase, token))

    def do_released(self, host_run):
        p = self.params
        release = host_run.release(took_over=p['took_over'] is not None, evacuation_started=p['evacuation_started'], check_mode=self.check_mode)
        self.results.update(declined=release.declined, holder=release.holder.to_dict())
        if release.declined is not None or self.check_mode:
            self.results['service'] = dict(before=brief(release.service), after=None)
            self.exit(changed=release.declined is None, msg=release.describe())
        self._done(host_run, release.service, release.describe())

    def do_restored(self, host_run):
        p = self.params
        if p['wait_for_repair'] or p['power_state'] is not None:
            host_run.read()  # a host without a nova-compute service fails here, named, without waiting
            read = self.reader(host_run)
            refusals = wait_for_repair(
                read(strict=True), read, host_run.clock, p['wait_for_repair'], power_state=p['power_state'], power_msg=p['power_msg'] or None
            )
            if refusals:
                self.fail('refusing to return %s to service, nothing changed: %s' % (p['host'], '; '.join(refusals)), kind='refused', refusals=refusals)
        if self.check_mode:
            service, _found, holder = host_run.read()
            plan = plan_restore(service, holder, p['override'])
            if plan.refusal:
                self.fail('check mode: refusing to return %s to service: %s' % (p['host'], plan.refusal), kind='refused', holder=holder.to_dict())
            self.exit(changed=plan.body is not None, msg='check mode: %s' % plan.msg, service=dict(before=brief(service), after=None))
        plan, before, after = host_run.restore(override=p['override'])
        self.results['service'] = dict(before=brief(before), after=brief(after or before))
        self.exit(changed=plan.body is not None, msg='%s: %s' % (p['host'], plan.msg), keeps_disabled_reason=plan.keeps_disabled_reason)


def main():
    RecoveryRun()()


if __name__ == '__main__':
    main()
