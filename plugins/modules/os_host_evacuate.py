#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: os_host_evacuate
short_description: Evacuate the selected servers of a failed compute host, bounded and resumable
version_added: 0.1.0
description:
  - Recovers the servers of one failed, fenced compute host with Nova's evacuate action, at most
    O(max_parallel) at a time, and proves each one recovered the way
    M(novaha.recovery.os_instance_evacuate) does (the same per-server record).
  - "Guards, checked before anything changes; every failed one is reported at once and the task fails:
    O(host) is a C(nova-compute) host; its service is forced down or reported down; another enabled, up
    compute host remains; no more than O(max_down_percent) of the compute services are down (more looks
    like a partition or a control plane fault, not host failures); a C(nova-scheduler) is up; no other live run
    holds the host (see O(wait_for_run) and O(takeover)); with O(require_capacity=true), the servers fit."
  - Capacity pre-check. The flavors of the servers to evacuate are packed (first fit, largest memory first)
    into the free capacity of the enabled, up hosts (or O(target_hosts)), from Placement inventories and
    usages, or from hypervisor statistics when Placement cannot be read. Not fitting is a warning, or a
    failed guard with O(require_capacity=true).
  - Selection. By default every server on the host, in all projects. O(include) and O(exclude) select by
    instance metadata, flavor extra specs, image properties, metadata of the host's aggregates and name
    globs; O(query) is a JMESPath expression over the server list. Every server not selected is returned in
    RV(skipped) with the reason. Selected servers are evacuated in the order of the O(priority_key)
    metadata (higher first), then by name.
  - Servers that share a server group (V(anti-affinity), V(affinity) and their soft variants) are not
    evacuated at the same time as each other, so Nova's group checks see each placement before the next.
  - Watching costs one server listing and one migrations listing per poll for the whole host
    (C(changes-since)), whatever the number of servers (RV(summary.watch_requests_per_poll)).
  - "Run marker. While a run holds the host, the disabled reason of its C(nova-compute) service reads
    C(novaha.recovery run RUN_ID PHASE ctl CONTROLLER start TIME beat TIME lease SECONDS; was: ...): the run,
    its phase, a heartbeat the running module renews every quarter of the lease, and the service as it was
    before the first run (an operator's disabled reason is kept there). A second run refuses a host whose
    holder's heartbeat is fresh, naming that run; a holder whose heartbeat is older than its lease (its
    controller died, also in another container or AWX pod) is taken over automatically with a warning.
    Without O(run_id) the module claims the host itself and, when every server is finished, gives the
    service back the status and disabled reason it had before; a run that times out or fails is marked
    C(interrupted) so that the next run resumes it. With O(run_id) the host must already be held by that
    run (claimed with O(claim=true) or M(novaha.recovery.os_recovery_run); the C(host_recovery) role claims it in
    its preflight), and stays held, in phase C(verifying), when the module ends."
  - Power read again. With O(bmc) or O(fence_levels) (the settings M(novaha.recovery.os_fence_check) proved the
    host off with), the failed host's power is read again before each new batch of evacuations. A host that
    reads On stops every new evacuation at once (those already moving go on), and RV(summary.host_powered_on)
    says so; a BMC that cannot be read is a warning, and the run goes on (the host was proven off before).
    A bad BMC setting fails the task before anything changes.
  - Resume. Run again after a timeout, a failure or a killed controller, the module skips servers already
    recovered, waits for evacuations in flight, finishes those the earlier run moved (power state, its
    lock) and issues only what is left, so every server ends with exactly one evacuation migration.
  - "Live progress. While it waits, the task prints a line at least every O(progress_interval) seconds
    (and when the counts change) in the job output, in C(ansible-playbook) as in AWX:
    C(os_host_evacuate node-28 (run 3f2a1c9e0b): 5 recovered, 2 in flight, 0 failed, 7 pending of 14
    selected; 35s elapsed). This needs the module to run on the controller (C(connection: local) or
    C(delegate_to: localhost), the usual way for cloud API modules); on a remote host, or with C(async),
    the task runs without live progress."
author:
  - novaha.recovery maintainers (@novaha)
options:
  host:
    description:
      - The failed compute host, exactly as its C(nova-compute) service is named
        (C(openstack compute service list)).
    type: str
    required: true
  include:
    description:
      - Evacuate only servers that match every criterion given here. Values are compared as text, ignoring
        case (V(true) matches C(True)); V(*) means the key is present; a list means any of its values.
      - Servers with an evacuation of an earlier run to finish (in flight, or moved with a lock of ours) are
        finished whatever the selection.
      - A name given in O(include.names) without glob characters also wins over O(recovered_by_services) (the
        operator named that server).
      - O(exclude), O(shared_storage) and O(recovered_by_services[].match) take the same criteria.
    type: dict
    suboptions: &criteria
      metadata:
        description: 'Instance metadata, for example C({HA_Enabled: "True"}).'
        type: dict
      flavor_extra_specs:
        description: Extra specs of the server's flavor (as embedded in the server).
        type: dict
      image_properties:
        description: Properties of the server's image in Glance (one request per distinct image).
        type: dict
      aggregate_metadata:
        description:
          - Metadata of the host aggregates O(host) belongs to (merged). It is the same for every server of
            the host, so it matches the whole host or none of it.
        type: dict
      names:
        description: Shell-style globs; the server's name must match one of them.
        type: list
        elements: str
      project_ids:
        description: Project ids; the server's project must be one of them.
        type: list
        elements: str
  exclude:
    description:
      - Do not evacuate servers hit by any criterion given here (same criteria and matching as O(include)).
    type: dict
    suboptions: *criteria
  query:
    description:
      - A JMESPath expression evaluated over the list of the host's servers; the servers it returns (objects
        with their C(id), ids or names) are selected, on top of O(include) and O(exclude).
      - "Each server has: C(id), C(name), C(project_id), C(user_id), C(status), C(vm_state), C(task_state),
        C(host), C(locked), C(locked_reason), C(metadata), C(tags), C(flavor) (C(name), C(vcpus), C(ram),
        C(disk), C(ephemeral), C(swap), C(extra_specs)), C(image_id), C(image_properties) (read when the
        expression mentions them), C(boot_from_volume), C(availability_zone), C(server_groups) (C(id),
        C(name), C(policy)), C(aggregate_metadata), C(created)."
      - An invalid expression fails the task before anything changes.
      - Needs the C(jmespath) Python library on the host that runs the module.
    type: str
  priority_key:
    description:
      - Instance metadata key whose numeric value orders the evacuations, higher first. Servers without it,
        or with a value that is not a number, count as 0. Ties are ordered by name.
    type: str
    default: HA_Priority
  max_parallel:
    description:
      - At most this many evacuations in flight at once (a sliding window, refilled as each server is seen
        recovered).
      - With O(concurrency=adaptive) it is the cap of a window that adapts, 100 when unset; with
        O(concurrency=fixed), the window itself, 20 when unset.
    type: int
  concurrency:
    description:
      - V(adaptive) starts with 10 evacuations in flight (fewer when O(max_parallel) is lower) and widens the
        window while Nova keeps pace - each evacuation's migration leaves C(accepted) within seconds and the API
        answers as fast as it did - doubling, up to O(max_parallel). It halves the window when the API slows down
        or fails, when Nova answers "No valid host", or when evacuations wait in C(accepted), and grows again one
        at a time once Nova keeps pace. The live progress shows the width and RV(summary.window) its history.
      - V(fixed) keeps O(max_parallel) evacuations in flight at all times.
    type: str
    choices: [adaptive, fixed]
    default: adaptive
  sharing:
    description:
      - How many failed hosts are recovered together, each by its own O(host) run, their evacuations sharing
        O(max_parallel) - this host's window is capped at an equal part of it (at least 1). The role sets it to the
        number of hosts recovered at once.
    type: int
    default: 1
  max_down_percent:
    description:
      - Refuse when more than this percentage of the C(nova-compute) services are down or forced down,
        O(host) included.
    type: int
    default: 50
  require_capacity:
    description:
      - Fail the capacity guard, changing nothing, when the servers to evacuate do not fit into the free
        capacity. With V(false) it is a warning.
    type: bool
    default: false
  target_hosts:
    description:
      - Reserved hosts to evacuate to. Each server gets one of them by free capacity; a server that fits on
        none of them is left to the scheduler (with a warning). From microversion 2.29 the scheduler still
        validates the host, and "no valid host" there is retried once with the scheduler choosing.
      - Default is the scheduler for every server.
    type: list
    elements: str
  takeover:
    description:
      - Take over a run whose heartbeat still looks fresh. A run whose heartbeat is older than its lease is
        taken over without this option; use it only when you know the holder is gone before its lease ends.
    type: bool
    default: false
  run_id:
    description:
      - The recovery run that holds the host (claimed with M(novaha.recovery.os_recovery_run)). The module
        then checks before evacuating that the marker is this run's, renews its heartbeat while it waits, and
        stops at once if another run took the host.
      - Default is a run of its own, claimed before the first evacuation and given back when finished.
    type: str
  lease:
    description:
      - Seconds a run's heartbeat stays valid when the module claims the host itself (without O(run_id)), 10 or
        more.
      - The P(novaha.recovery.host_recovery#role) role sets it from C(host_recovery_lease).
    type: int
    default: 300
  wait_for_run:
    description:
      - Seconds to wait for a live run that holds the host to end (or for its heartbeat to go stale) before
        refusing. The guard C(no_other_run) then passes for a live holder; the wait happens when the module
        claims the host (without O(run_id)), or in the caller's claim (the C(host_recovery) role's).
    type: int
    default: 0
  timeout:
    description:
      - Seconds the whole run may take. Servers still in flight then are reported V(in_progress), servers
        not started V(pending); neither is failed, and running the task again resumes them.
    type: int
    default: 1800
  outage_timeout:
    description:
      - Seconds the run rides out a compute API (or Keystone) that fails transiently (no answer, HTTP 500, 502,
        503, 504). Meanwhile reads are sent again with backoff, no new evacuation starts, and an action whose
        answer was lost is never sent again before Nova's evacuation records say it was not accepted.
      - A longer outage ends the run, reported V(INTERRUPTED); servers in flight stay V(in_progress), the others
        V(pending), none is failed; running the task again resumes them.
    type: int
    default: 120
  poll_interval:
    description:
      - The longest wait, in seconds, between two polls (one server listing and one migrations listing for
        the whole host). A poll comes 1 second after an evacuation was requested or a poll saw a change, but
        at least 2 seconds after the poll before it started, and the wait doubles while nothing changes, up to
        this. So servers are seen recovered, and the window refilled, one or two seconds after Nova finished
        them.
    type: int
    default: 5
  retries:
    description:
      - How many more evacuations to try for a server after one fails, as in
        M(novaha.recovery.os_instance_evacuate).
    type: int
    default: 1
  lock:
    description:
      - "Lock each server while it is moved (reason C(novaha.recovery: evacuating from HOST (was STATUS))) and
        unlock it afterwards. Servers already locked by their users stay locked and are not unlocked."
      - A cloud below microversion 2.73 (where a lock carries no reason) gets no lock at all, with one warning in
        the plan, as in M(novaha.recovery.os_instance_evacuate).
      - A server that carries no lock of this module (locked by its user, or O(lock=false)) and that must be
        started after Nova stopped it at the destination (microversion 2.95 and later) gets the instance
        metadata C(novaha.recovery:expected_status=ACTIVE) while it is moved, so that a run killed in between
        is finished by the next one; it is removed once the server is recovered.
    type: bool
    default: true
  reset_state:
    description:
      - Opt-in. Reset stuck task states and V(PAUSED), V(SUSPENDED) or V(RESCUE) servers before evacuating
        them (C(os-resetState)). Without it they are refused and reported with the reason.
    type: bool
    default: false
  on_shared_storage:
    description:
      - Whether every instance directory of O(host) is on shared storage (NFS, Ceph RBD for ephemeral disks).
        Nova's API does not say so; the server's storage kind in the plan, the data-loss warning and, below
        microversion 2.14, the C(onSharedStorage) Nova is sent follow it. From 2.14 on Nova finds the disk
        itself.
      - V(false) or unset, with no O(shared_storage) criteria, means image-booted servers have local disks.
    type: bool
  shared_storage:
    description:
      - The servers whose instance directory is on shared storage when only some are (for example a flavor
        extra spec or an aggregate that names the storage class). Same criteria and matching as O(include);
        a server matching every criterion given counts as on shared storage.
    type: dict
    suboptions: *criteria
  local_ephemeral:
    description:
      - What to do with the servers whose disks are local to the failed host (image-booted, not on shared
        storage). Nova rebuilds them from their image on the new host and what was written to their root,
        ephemeral and swap disks is lost; attached data volumes are kept.
      - V(evacuate) evacuates them (the plan warns first, with their number). V(skip) leaves them alone;
        they are listed in RV(skipped) with the reason and the command that evacuates one anyway.
    type: str
    choices: [evacuate, skip]
    default: evacuate
  recovered_by_services:
    description:
      - The servers that a service recovers by itself, left alone by this run. Each is listed in RV(skipped) with
        C(kind=recovered_by_service), the service, the reason and the command that evacuates it anyway.
      - "The default leaves alone Octavia's amphorae: Octavia names each one C(amphora-) and its UUID, and its
        health manager replaces a dead amphora on another host (failover); evacuating it as well would race that
        failover. Add C(project_ids) (Octavia's service project) to the match to make it stricter, for example when
        C([nova] random_amphora_name_length) is set in Octavia's configuration."
      - V([]) evacuates every selected server, amphorae included.
      - A server is matched by the first entry whose C(match) it matches (every criterion given, as O(include)).
        O(include), O(exclude) and O(query) select first; then matched servers are left alone, except a server
        named exactly (without glob characters) in O(include.names), and a server whose evacuation an earlier run
        started, which is finished.
      - An entry without C(service), or whose C(match) gives no criterion, fails the task before anything changes.
    type: list
    elements: dict
    default: [{service: octavia, match: {names: ['amphora-????????-????-????-????-????????????']}}]
    suboptions:
      service:
        description: The service that recovers these servers, named in the reason (for example V(octavia)).
        type: str
        required: true
      match:
        description: The servers it recovers, with the criteria of O(include).
        type: dict
        required: true
        suboptions: *criteria
  microversion:
    description:
      - The compute API microversion of the evacuate requests, as in M(novaha.recovery.os_instance_evacuate).
        Default is V(2.94) (Nova keeps each server's power state; one request per server), lower when the cloud
        offers less. A C(compute_api_version) pinned in C(clouds.yaml) is reported in RV(microversions), never
        used.
    type: str
  fail_on_partial:
    description:
      - Fail the task when a selected server failed, or when some are still in progress or pending at
        O(timeout). With V(false) the task reports them (RV(summary), RV(servers)) without failing.
      - Servers refused because of their state (for example V(PAUSED) without O(reset_state)) are reported
        and warned about, not counted as failed.
    type: bool
    default: true
  progress_interval:
    description:
      - Seconds between two progress lines in the job output at most (a line is also printed when the
        counts change, at most every 2 seconds). Used by the action plugin.
    type: int
    default: 10
  progress_file:
    description:
      - Where the module writes its progress counts after every poll. Set by the action plugin; there is no
        need to set it.
    type: path
  snapshot:
    description:
      - Also return RV(snapshot), the host as it is before anything is planned or changed. The plan is made
        from the same reading of the services, the servers and the migrations, so the two always agree.
      - The role P(novaha.recovery.host_recovery#role) saves it as C(snapshot.json); one module run then does the
        snapshot and the plan.
    type: bool
    default: false
  wait_for_service_down:
    description:
      - Seconds to wait, reading only the host's C(nova-compute) service every 5 seconds, until Nova reports it
        down (its last heartbeat older than C(service_down_time)) or forced down; then the host is read and
        planned once. A service still up after the wait fails the guard C(source_down) as usual.
      - Default is to read and plan at once.
    type: int
    default: 0
  claim:
    description:
      - Plan, then claim the host for the run O(run_id) and stop there, evacuating nothing - the first step of a
        recovery run (the P(novaha.recovery.host_recovery#role) role's preflight), so that one module run reads,
        guards, plans and claims.
      - The claim is the one of M(novaha.recovery.os_recovery_run) with O(novaha.recovery.os_recovery_run#module:state=claimed)
        and O(novaha.recovery.os_recovery_run#module:read_back=false) - a live run that holds the host is waited for
        up to O(wait_for_run) seconds (the plan is then made again), a run that ended or went stale is taken over -
        and RV(claim) carries its C(settled_at) of RV(claim) for the run's next module that writes to Nova.
      - Nothing is claimed when a guard refuses the host, in check mode, or when an earlier run already recovered
        the host (RV(already_recovered)).
      - Requires O(run_id).
    type: bool
    default: false
  isolate:
    description:
      - With O(run_id), once the plan is made and no guard refuses the host, and before anything else is written,
        read back the run's claim (at O(settled_at)) and force the host's C(nova-compute) service down under the
        run's marker, which moves to phase C(isolated) - what M(novaha.recovery.os_recovery_run) does with
        O(novaha.recovery.os_recovery_run#module:state=isolated) - then evacuate. The host must be proven fenced
        before (M(novaha.recovery.os_fence_check)); RV(isolation) says what was done.
      - The P(novaha.recovery.host_recovery#role) role isolates so when servers are to be evacuated, saving a module
        run before the first evacuation.
    type: bool
    default: false
  settled_at:
    description:
      - With O(isolate=true), the C(settled_at) of RV(claim) of the run's claim (made with O(claim=true) or
        M(novaha.recovery.os_recovery_run)) - the claim is read back at that time or later, before anything is
        written; a run that lost its claim to another stops there, having changed nothing.
    type: float
  fail_on_guards:
    description:
      - Fail the task when a guard refuses the host. With V(false) the task ends unchanged with RV(refused)
        set and the reasons in RV(msg), so that a playbook can stop with that message alone.
    type: bool
    default: true
attributes:
  action:
    support: full
    details:
      - The action plugin prints live progress; the work is done by the module.
  async:
    support: full
    details:
      - With C(async) there is no live progress.
  check_mode:
    support: full
    details:
      - Returns the whole plan in RV(plan) (each server with its action, reason, expected target and final
        status, warnings) and every failed guard in RV(preconditions); nothing is sent.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A second run finds the recovered servers off the host and reports V(changed=false).
  platform:
    platforms: all
notes:
  - Needs an account with the admin role (by default policy).
  - The module evacuates; it does not fence. Fence the host and force its service down first with
    M(novaha.recovery.os_fence_check).
  - Two runs racing to write the marker within the same second can both believe they own it; each re-reads
    the marker after writing it and stops if it is not its own.
requirements:
  - jmespath (only for O(query))
seealso:
  - module: novaha.recovery.os_fence_check
  - module: novaha.recovery.os_instance_evacuate
  - name: Nova - evacuate instances
    description: What Nova does when it evacuates, and what it needs from the failed host.
    link: https://docs.openstack.org/nova/latest/admin/evacuate.html
extends_documentation_fragment:
  - novaha.recovery.attributes
  - novaha.recovery.attributes.flow
  - novaha.recovery.attributes.platform
  - novaha.recovery.fencing
  - novaha.recovery.openstack
"""

EXAMPLES = r"""
- name: Evacuate every server of node-28, at most 20 at a time
  novaha.recovery.os_host_evacuate:
    cloud: novaha-admin
    host: node-28
  delegate_to: localhost
  register: node28

- name: Show what happened to each server
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.outcome }} ({{ item.reason }})"
  loop: "{{ node28.servers }}"
  loop_control:
    label: "{{ item.name }}"

- name: Evacuate only HA servers, not the test ones, highest HA_Priority first, to the spare hosts
  novaha.recovery.os_host_evacuate:
    cloud: novaha-admin
    host: node-28
    include:
      metadata:
        HA_Enabled: "True"
    exclude:
      names: ["test-*"]
    target_hosts: [node-spare-1, node-spare-2]
    require_capacity: true
    max_parallel: 2
  delegate_to: localhost

- name: Evacuate the running servers of one project, selected with JMESPath
  novaha.recovery.os_host_evacuate:
    cloud: novaha-admin
    host: node-28
    query: "[?project_id=='6f70656e737461636b20342065766572' && status=='ACTIVE']"
  delegate_to: localhost

- name: Show the plan and every failed guard, changing nothing
  novaha.recovery.os_host_evacuate:
    cloud: novaha-admin
    host: node-28
  check_mode: true
  delegate_to: localhost
  register: node28_plan

- name: Resume a run whose controller died (taken over once its heartbeat is older than its lease)
  novaha.recovery.os_host_evacuate:
    cloud: novaha-admin
    host: node-28
  delegate_to: localhost
"""

RETURN = r"""
msg:
  description: What happened, in one sentence with the counts.
  returned: always
  type: str
  sample: "host node-28 (run 3f2a1c9e0b): 12 of 14 selected servers recovered, 0 failed, 2 refused, 0 in progress; 3 skipped"
run_id:
  description: The id of this run, also written in the service's disabled reason while it runs.
  returned: always
  type: str
  sample: 3f2a1c9e0b
host:
  description: The failed host.
  returned: always
  type: str
summary:
  description: Counts of the run.
  returned: when the host's servers were listed
  type: dict
  contains:
    selected:
      description: Servers selected (including those with an earlier evacuation to finish).
      type: int
    recovered:
      description: Servers recovered by this run.
      type: int
    failed:
      description: Servers whose evacuation failed.
      type: int
    refused:
      description: Selected servers that cannot be evacuated as they are (state); see RV(servers).
      type: int
    nothing_to_do:
      description: Selected servers already recovered (for example by an earlier run).
      type: int
    in_progress:
      description: Servers still being evacuated at O(timeout).
      type: int
    pending:
      description: Servers not started at O(timeout).
      type: int
    planned:
      description: Servers that would be evacuated (check mode).
      type: int
    skipped:
      description: Servers not selected (see RV(skipped)).
      type: int
    seconds:
      description: Duration of the run.
      type: float
    max_in_flight:
      description: The most evacuations seen in flight at one poll.
      type: int
    api_requests:
      description: Compute API requests made by the run.
      type: int
    polls:
      description: Polls made while waiting.
      type: int
    watch_requests_per_poll:
      description: Compute API requests per poll (2, plus paging on very large clouds).
      type: float
    api_outages:
      description:
        - How often the compute API failed transiently during the run (C(outages)), the longest in seconds
          (C(longest_seconds)), whether one is going on at the end (C(ongoing)) and its last error (C(last_error)).
          An outage counts from the first failure that reads did not ride out; C(reads_sent_again) counts the reads
          sent again meanwhile.
      type: dict
    interrupted:
      description: Why the run ended before its servers did (an outage longer than O(outage_timeout)), else null.
      type: str
    end_error:
      description:
        - Why the run could not mark the host V(interrupted) when an outage ended it (the API was still failing),
          else null. Its marker then stays as it was; it is taken over once its heartbeat is older than O(lease).
      type: str
    host_powered_on:
      description:
        - The power reading of the failed host when it read On again during the run; no new evacuation was started
          after it. Null otherwise.
      type: str
    window:
      description:
        - The evacuation window (see O(concurrency)) - C(width) at the end, C(cap) (O(max_parallel)), C(peak),
          C(changes) (how often it changed) and C(last_change) (C(poll), C(from), C(to), C(why)).
      type: dict
  sample: {selected: 14, recovered: 12, failed: 0, refused: 2, nothing_to_do: 0, in_progress: 0, pending: 0,
           planned: 0, skipped: 3, seconds: 84.2, max_in_flight: 5, api_requests: 112, polls: 17,
           watch_requests_per_poll: 2.0}
servers:
  description:
    - The record of every selected server, in evacuation order, as
      RV(novaha.recovery.os_instance_evacuate#module:evacuation) documents it (id, name, action, outcome,
      reason, kind, before, after, migration, attempts, lock, timings, request_ids, warnings, next_command).
  returned: when the host's servers were listed
  type: list
  elements: dict
skipped:
  description:
    - Servers of the host not selected, each with id, name, project_id, status and the reason.
    - Those left alone by O(local_ephemeral=skip) also carry C(kind) (V(local_ephemeral_skipped)), C(storage)
      and C(next_command).
    - Those left alone by O(recovered_by_services) also carry C(kind) (V(recovered_by_service)), C(service) (the
      service that recovers them) and C(next_command) (the command that evacuates one anyway).
  returned: when the host's servers were listed
  type: list
  elements: dict
  sample: [{id: 0b5c0f7e-56c6-4d3c-9bd0-f37f6fd2a8e1, name: test-1, project_id: 6f70656e737461636b20342065766572,
            status: ACTIVE, reason: "excluded: its name matches exclude.names pattern test-*"}]
plan:
  description:
    - Per selected server, what is (or would be) done - order, action, reason, expected_target, expected_status,
      microversion, request, lock, exclusive_groups, warnings, warning_kinds (the kind of each warning) and
      storage.
    - C(storage) is the server's storage - C(kind) (V(boot_from_volume), V(shared_instance_store) or
      V(local_ephemeral)), C(shared), C(volumes), C(root_volume), C(data_volumes), C(lost) (the disks an
      evacuation loses), C(data_loss), C(volume_states) (each volume as Cinder shows it, with the host of each
      attachment) and C(guard) (why a volume stops the evacuation, else null). After a recovery the server's
      record adds C(after) - its volumes and ports as Cinder and Neutron show them on the new host.
  returned: when the host's servers were listed
  type: list
  elements: dict
storage:
  description:
    - How many selected servers have each storage kind (C(kinds)), how many of those evacuated lose data on local
      disks (C(data_loss)) and how many O(local_ephemeral=skip) left alone (C(local_ephemeral_skipped)).
  returned: when the host's servers were listed
  type: dict
  sample: {kinds: {boot_from_volume: 2, shared_instance_store: 1, local_ephemeral: 2}, data_loss: 2,
           local_ephemeral_skipped: 0}
refused:
  description: Whether a guard refused the host (see O(fail_on_guards)); the reasons are in RV(msg).
  returned: when the guards were evaluated
  type: bool
waited_for_service_down:
  description: Seconds waited for Nova to report the service down (see O(wait_for_service_down)).
  returned: when O(wait_for_service_down) is more than 0
  type: float
holder:
  description:
    - Who held the host when it was read - C(kind) (V(free), V(ours), V(ended), V(stale), V(overridden),
      V(live)), C(heartbeat_age) (seconds, on the API's clock), C(marker) (run_id, phase, controller,
      started_at, heartbeat_at, lease, C(was) - the service before the first run) and C(detail) in words.
  returned: when the host has a nova-compute service
  type: dict
  sample: {kind: stale, heartbeat_age: 412.0, detail: "run 3f9a1c0b2e (controller awx-job-41@1a2b3c4d, phase
           evacuating, started 2025-11-22T00:20:01Z, last heartbeat 412s ago, lease 300s)"}
preconditions:
  description: Every guard with its name, V(ok) and detail.
  returned: always
  type: list
  elements: dict
  sample: [{name: source_down, ok: true, detail: "the nova-compute service of node-28 is forced down"},
           {name: down_percent, ok: false, detail: "2 of 3 nova-compute services are down (67%: node-28, node-31); the limit is 50%"}]
capacity:
  description: The capacity pre-check - source, hosts, needed, free, fits, unplaced, warning.
  returned: when servers are to be evacuated and a host can take them
  type: dict
microversions:
  description: The microversion of each kind of request, as in M(novaha.recovery.os_instance_evacuate).
  returned: when the cloud was reached
  type: dict
already_recovered:
  description:
    - The marker of the earlier run that already recovered the host, as M(novaha.recovery.os_recovery_run) returns
      a run - its marker ended C(done), the service is still forced down and disabled, no guard refuses, and every
      selected server is one that run moved off the host with nothing left to finish. The module then changes
      nothing and says so in RV(msg). Null otherwise; a server on the host again makes the run go on as any other.
  returned: when the cloud was read
  type: dict
  sample: {run_id: 3f9a1c0b2e, phase: done, controller: awx-1@1a2b3c4d, started_at: "2025-05-01T10:00:00Z"}
isolation:
  description:
    - With O(isolate=true), the isolation of the host - C(msg), C(changed), C(run) (this run's marker) and
      C(service) (C(before) and C(after)), as M(novaha.recovery.os_recovery_run) returns them.
  returned: with O(isolate=true), once the host was isolated
  type: dict
isolate_in:
  description:
    - With O(claim=true), the phase of the C(novaha.recovery.host_recovery) role that isolates the host - C(evacuate)
      when servers are to be evacuated (this module with O(isolate=true) forces the service down as its first
      write), else C(isolate) (nothing to evacuate, or check mode).
  returned: with O(claim=true), once planned
  type: str
  choices: [evacuate, isolate]
  sample: evacuate
ends_in:
  description:
    - With O(claim=true), the phase of the C(novaha.recovery.host_recovery) role that ends the run's marker and its
      token - C(isolate) for a host with nothing to evacuate (M(novaha.recovery.os_recovery_run) with
      O(novaha.recovery.os_recovery_run#module:end_run=true) ends the run right after the isolation), else C(end)
      (the role's end of the run; check mode too).
  returned: with O(claim=true), once planned
  type: str
  choices: [isolate, end]
  sample: end
claim:
  description:
    - With O(claim=true), the claim of the host for O(run_id) - C(holder) (who held the host before, as the guard
      C(no_other_run) judged it), C(took_over) (the run taken over, or null), C(settled_at) (when the claim may
      be read back, seconds since the epoch on the controller's clock - give it to the run's next module that
      writes to Nova), C(run) (this run's marker), C(service) (C(before) and C(after) the claim) and C(msg).
    - Null when nothing was claimed (a guard refused, the host is already recovered); in check mode C(msg) says
      what would be claimed.
  returned: with O(claim=true)
  type: dict
marker:
  description:
    - With O(claim=true), the run marker the rest of the run concerns, as written in the service's disabled
      reason - this run's once claimed, or that of the earlier run that already recovered the host
      (RV(already_recovered)). Null when nothing was claimed (a guard refused, check mode).
  returned: with O(claim=true)
  type: str
  sample: "novaha.recovery run 3f9a1c0b2e claimed ctl awx-1@1a2b3c4d start 20250501T100000Z beat 20250501T100000Z lease 120; was: enabled"
snapshot:
  description:
    - The host before anything was planned or changed, with the keys M(novaha.recovery.os_host_info) returns -
      C(service) (null when the host has no nova-compute service), C(computes), C(schedulers), C(servers),
      C(tracked), C(migrations) and C(summary).
    - Also returned when the task fails after reading it, for example when a guard refuses the host.
  returned: when O(snapshot=true) and the cloud was read
  type: dict
  sample: {service: {host: node-28, state: down, status: enabled, forced_down: false, heartbeat_age: 75.2},
           summary: {servers: 4, computes: 3, computes_down: 1, computes_down_percent: 33.3, schedulers_up: 1,
                     migrations_unfinished: 0}}
"""

import json
import os
import time

from ansible_collections.novaha.recovery.plugins.module_utils._cloud import (
    NovahaModule,
    bmc_argument_spec,
    build_fence_levels,
)
from ansible_collections.novaha.recovery.plugins.module_utils._concurrency import SENDERS, window_for
from ansible_collections.novaha.recovery.plugins.module_utils._decisions import (
    ACTION_EVACUATE,
    ACTION_RECONCILE,
    WARNING_DISK_RECREATED,
    WARNING_NOT_LOCKED,
    WARNING_ROOT_DISK_LOST,
)
from ansible_collections.novaha.recovery.plugins.module_utils._errors import EvacuationError, NovahaError
from ansible_collections.novaha.recovery.plugins.module_utils._evacuation import Engine
from ansible_collections.novaha.recovery.plugins.module_utils._fencing import PowerWatch
from ansible_collections.novaha.recovery.plugins.module_utils._host_evacuation import (
    DEFAULT_RECOVERED_BY_SERVICES,
    CountingNova,
    HostEvacuation,
    SdkService,
    already_recovered,
    check_recovered_by_services,
    compile_query,
    ending_phase,
    isolating_phase,
    list_host,
    read_host,
    refusal_kind,
    summarize_run,
)
from ansible_collections.novaha.recovery.plugins.module_utils._nova import RetryingReads, SdkNova
from ansible_collections.novaha.recovery.plugins.module_utils._options import at_least, between
from ansible_collections.novaha.recovery.plugins.module_utils._run import LEASE_RULE, PHASE_ISOLATED, RUN_ID_RULE, RunError
from ansible_collections.novaha.recovery.plugins.module_utils._service import service_view

SELECT_SPEC = dict(
    metadata=dict(type='dict'),
    flavor_extra_specs=dict(type='dict'),
    image_properties=dict(type='dict'),
    aggregate_metadata=dict(type='dict'),
    names=dict(type='list', elements='str'),
    project_ids=dict(type='list', elements='str'),
)

RECOVERED_BY_SERVICES_SPEC = dict(
    service=dict(type='str', required=True),
    match=dict(type='dict', required=True, options=SELECT_SPEC),
)

# Per-server warnings the plan tells once: the disks lost (``_storage.loss_warning``), the servers moved unlocked
# (``_decisions.not_locked_warning``).
_ROUTINE = (WARNING_ROOT_DISK_LOST, WARNING_DISK_RECREATED, WARNING_NOT_LOCKED)


class HostEvacuate(NovahaModule):
    argument_spec = dict(
        host=dict(type='str', required=True),
        include=dict(type='dict', options=SELECT_SPEC),
        exclude=dict(type='dict', options=SELECT_SPEC),
        query=dict(type='str'),
        priority_key=dict(type='str', default='HA_Priority', no_log=False),
        max_parallel=dict(type='int'),
        concurrency=dict(type='str', choices=['adaptive', 'fixed'], default='adaptive'),
        sharing=dict(type='int', default=1),
        max_down_percent=dict(type='int', default=50),
        require_capacity=dict(type='bool', default=False),
        target_hosts=dict(type='list', elements='str'),
        takeover=dict(type='bool', default=False),
        timeout=dict(type='int', default=1800),
        outage_timeout=dict(type='int', default=120),
        poll_interval=dict(type='int', default=5),
        retries=dict(type='int', default=1),
        lock=dict(type='bool', default=True),
        reset_state=dict(type='bool', default=False),
        on_shared_storage=dict(type='bool'),
        shared_storage=dict(type='dict', options=SELECT_SPEC),
        local_ephemeral=dict(type='str', choices=['evacuate', 'skip'], default='evacuate'),
        recovered_by_services=dict(type='list', elements='dict', options=RECOVERED_BY_SERVICES_SPEC, default=DEFAULT_RECOVERED_BY_SERVICES),
        microversion=dict(type='str'),
        fail_on_partial=dict(type='bool', default=True),
        progress_interval=dict(type='int', default=10),
        progress_file=dict(type='path'),
        snapshot=dict(type='bool', default=False),
        run_id=dict(type='str'),
        lease=dict(type='int', default=300),
        wait_for_run=dict(type='int', default=0),
        wait_for_service_down=dict(type='int', default=0),
        fail_on_guards=dict(type='bool', default=True),
        claim=dict(type='bool', default=False),
        isolate=dict(type='bool', default=False),
        settled_at=dict(type='float'),
        **bmc_argument_spec(),
    )
    module_kwargs = dict(
        supports_check_mode=True,
        mutually_exclusive=[('bmc', 'fence_levels'), ('claim', 'isolate')],
        required_if=[('claim', True, ('run_id',)), ('isolate', True, ('run_id',))],
    )
    option_rules = dict(
        run_id=RUN_ID_RULE,
        max_parallel=at_least(1, why='at most this many evacuations at once'),
        sharing=at_least(1, why='hosts recovered together'),
        max_down_percent=between(0, 100, 'percent'),
        timeout=at_least(1, 'seconds'),
        outage_timeout=at_least(1, 'seconds'),
        poll_interval=at_least(1, 'seconds'),
        retries=at_least(0),
        progress_interval=at_least(1, 'seconds'),
        lease=LEASE_RULE,
        wait_for_run=at_least(0, 'seconds'),
        wait_for_service_down=at_least(0, 'seconds'),
    )

    def check_inputs(self):
        check_recovered_by_services(self.params['recovered_by_services'])
        if self.params['query']:
            compile_query(self.params['query'])

    def run(self):
        p = self.params
        host = p['host']
        self.results.update(host=host, preconditions=[])
        levels = build_fence_levels(p, host)  # a bad BMC setting fails here, before anything is read or changed
        power_check = PowerWatch(levels) if levels else None

        nova = CountingNova(SdkNova(self.conn))
        engine = Engine(nova, microversion=p['microversion'], senders=SENDERS)
        evacuation = HostEvacuation(
            engine,
            placement=SdkService(self.conn.placement),
            image=SdkService(self.conn.image),
            run_id=p['run_id'],
            joined=p['run_id'] is not None,
            lease=p['lease'],
            volume=self.reader('block-storage', 'volume', engine.clock),
            network=self.reader('network', 'network', engine.clock),
        )
        self.results['run_id'] = evacuation.run_id
        self.results['microversions'] = engine.mv.to_dict()
        if p['wait_for_service_down'] > 0:
            self.results['waited_for_service_down'] = evacuation.wait_for_service_down(host, p['wait_for_service_down'])
        listing = list_host(engine, host) if p['snapshot'] else None
        if listing is not None:
            self.results['snapshot'] = read_host(engine, host, listing=listing)
        plan = self.make_plan(evacuation, host, listing)
        if p['claim']:
            self.results.update(claim=None, marker=None)
            if not self.check_mode and not plan.failed_checks and already_recovered(plan) is None:
                # The run's claim, written once the guards passed; a plan made while another run held the host is
                # made again once the host is ours.
                waited = plan.holder is not None and plan.holder.kind == 'live'
                self.results['claim'] = self.claim_host(evacuation, plan)
                self.results['marker'] = self.results['claim']['service']['after'].get('disabled_reason')
                if waited:
                    plan = self.make_plan(evacuation, host, None)
        elif not self.check_mode and not p['run_id'] and plan.holder is not None and plan.holder.kind == 'live' and not plan.failed_checks:
            # Planned while another run moved servers: wait for it (or its heartbeat to go stale), take the
            # host, and plan again from the servers as they are now.
            evacuation.claim(plan)
            plan = self.make_plan(evacuation, host, None)

        self.results.update(
            preconditions=[c.to_dict() for c in plan.checks],
            skipped=plan.skipped,
            plan=plan.plan_list(),
            capacity=plan.capacity,
            storage=plan.storage_summary(),
            holder=plan.holder.to_dict() if plan.holder is not None else None,
        )
        if p['claim']:
            self.results.update(isolate_in=isolating_phase(plan, self.check_mode), ends_in=ending_phase(plan, self.check_mode))
        self.report(plan, summarize_run(plan))
        for warning in plan.warnings:
            self.warn(warning)

        failed = plan.failed_checks
        self.results['refused'] = bool(failed)
        if failed:
            msg = '%shost %s cannot be evacuated now: %s. Nothing was changed' % (
                'check mode: ' if self.check_mode else '',
                host,
                '; '.join(c.detail for c in failed),
            )
            self.give_back(evacuation, finished=False)
            if p['fail_on_guards']:
                self.fail(msg, kind=refusal_kind(failed))
            self.exit(changed=False, msg=msg)

        previous = already_recovered(plan)
        self.results['already_recovered'] = previous.to_dict() if previous is not None else None
        if previous is not None:
            if p['claim']:
                self.results['marker'] = (plan.source_service or {}).get('disabled_reason')
            self.exit(
                changed=False,
                msg='%shost %s: already recovered by run %s; nothing to do (%s)'
                % ('check mode: ' if self.check_mode else '', host, previous.run_id, self.describe_plan(plan)),
            )
        if p['claim'] and self.check_mode:
            self.results['claim'] = dict(msg='check mode: would claim %s for run %s (%s)' % (host, p['run_id'], plan.holder.describe() if plan.holder else ''))
        if p['isolate'] and not self.check_mode:
            self.results['isolation'] = self.isolate(evacuation, host)
        if p['claim'] and not self.check_mode:
            claim = self.results['claim']
            self.exit(changed=True, msg='host %s: %s; %s' % (host, claim['msg'], self.describe_plan(plan)))
        moving = [e for e in plan.work if e.action in (ACTION_EVACUATE, ACTION_RECONCILE)]
        if self.check_mode:
            self.exit(changed=bool(moving), msg='check mode: host %s: %s' % (host, self.describe_plan(plan)))
        if not plan.work:
            try:
                evacuation.drop_notes(plan)
            except EvacuationError as exc:
                self.warn(exc.msg)
            self.give_back(evacuation, finished=True)
            self.exit(changed=bool(self.results.get('isolation')), msg='host %s: nothing to do; %s' % (host, self.describe_plan(plan)))

        progress = self.progress_writer(host, evacuation.run_id)
        try:
            window = window_for(p['concurrency'], p['max_parallel'], p['sharing'])
            summary = evacuation.execute(
                plan,
                timeout=p['timeout'],
                poll_interval=p['poll_interval'],
                retries=p['retries'],
                max_parallel=window.cap,
                on_progress=progress,
                outage_timeout=p['outage_timeout'],
                power_check=power_check,
                window=window,
            )
        except NovahaError as exc:
            self.report(plan, summarize_run(plan), nova)
            self.fail('host %s (run %s): %s' % (host, evacuation.run_id, exc.msg), **exc.result())
        self.report(plan, summary, nova)
        took_over = evacuation.run.took_over if evacuation.run is not None else None
        if took_over is not None and took_over.kind == 'stale' and plan.holder.kind != 'stale':
            self.warn('taking over %s: its heartbeat went stale while this run waited' % took_over.describe())
        records = self.results['servers']
        self.warn_records(records)

        changed = any(r['changed'] for r in records) or bool(self.results.get('isolation'))
        msg = 'host %s (run %s): %d of %d selected servers recovered, %d failed, %d refused, %d already done, %d in progress, %d pending; %d skipped; %ss' % (
            host,
            evacuation.run_id,
            summary['recovered'],
            summary['selected'],
            summary['failed'],
            summary['refused'],
            summary['nothing_to_do'],
            summary['in_progress'],
            summary['pending'],
            summary['skipped'],
            summary['seconds'],
        )
        unfinished = summary['in_progress'] + summary['pending']
        for warning in sorted(set(evacuation.engine.power_warnings)):  # once each, however many batches
            self.warn(warning)
        if summary.get('host_powered_on'):
            msg += (
                '; STOPPED: the failed host reads %s again, %d servers were not evacuated: power it off, prove it '
                '(os_fence_check) and run the task again' % (summary['host_powered_on'], summary['pending'])
            )
        elif summary.get('interrupted'):
            msg += '; INTERRUPTED: %s; %d servers are not finished: run the task again once the API answers to resume them' % (
                summary['interrupted'],
                unfinished,
            )
            if summary.get('end_error'):
                msg += '; the run could not mark the host interrupted (%s): it is taken over once its heartbeat is older than the lease (%ss)' % (
                    summary['end_error'],
                    p['lease'],
                )
        elif unfinished:
            msg += '; %d servers are not finished after the timeout of %ss: run the task again to resume them' % (unfinished, p['timeout'])
        if (summary['failed'] or unfinished) and p['fail_on_partial']:
            failures = ['%s: %s' % (r['name'], r['reason']) for r in records if r['outcome'] == 'failed']
            self.fail('%s%s' % (msg, '. Failed: %s' % ' | '.join(failures) if failures else ''), changed=changed)
        self.exit(changed=changed, msg=msg)

    def claim_host(self, evacuation, plan):
        """Claim the host for the run ``run_id`` (written, not read back: the run's next write to Nova proves it
        first, see ``HostRun.prove_claim``). Returns what the claim found and wrote, as os_recovery_run's
        state=claimed returns it."""
        holder = evacuation.claim(plan, read_back=False)
        run = evacuation.run
        msg, warning = run.claim_words(read_back=False)
        took_over = run.took_over.to_dict() if run.took_over is not None else None
        if warning:
            self.warn(warning)
        return dict(
            holder=holder.to_dict(),
            took_over=took_over,
            settled_at=run.settled_at,
            run=run.marker.to_dict() if run.marker is not None else None,
            service=dict(before=service_view(run.first_read) if run.first_read else None, after=service_view(run.service) if run.service else None),
            msg=msg,
        )

    def isolate(self, evacuation, host):
        """The run's claim read back (at ``settled_at``), then the service forced down under its marker, phase
        isolated: before anything else is written. Returns what was done, as os_recovery_run's state=isolated."""
        run = evacuation.host_run(host)
        before, msg = run.move_to(PHASE_ISOLATED, self.params['settled_at'])
        return dict(
            changed=True,
            msg=msg,
            run=run.marker.to_dict() if run.marker is not None else None,
            service=dict(before=service_view(before) if before else None, after=service_view(run.service) if run.service else None),
        )

    def give_back(self, evacuation, finished):
        """A host this module claimed (waiting for another run) and then has nothing to do on: the end of its run."""
        if evacuation.joined or evacuation.run is None or evacuation.run.marker is None:
            return
        try:
            evacuation.end(finished)
        except RunError as exc:
            self.warn(exc.msg)

    def make_plan(self, evacuation, host, listing):
        p = self.params
        return evacuation.prepare(
            host,
            include=p['include'],
            exclude=p['exclude'],
            query=p['query'],
            priority_key=p['priority_key'],
            max_down_percent=p['max_down_percent'],
            target_hosts=p['target_hosts'],
            takeover=p['takeover'],
            reset_state=p['reset_state'],
            lock=p['lock'],
            on_shared_storage=p['on_shared_storage'],
            shared_storage=p['shared_storage'],
            local_ephemeral=p['local_ephemeral'],
            recovered_by_services=p['recovered_by_services'],
            require_capacity=p['require_capacity'],
            listing=listing,
            wait_for_run=p['wait_for_run'],
        )

    def reader(self, service_type, attribute, clock):
        """A read adapter for another service of the cloud (reads ride out a short outage), or None when the
        catalog has no such service: its checks are then left out."""
        try:
            if not self.conn.has_service(service_type):
                return None
        except Exception:  # pylint: disable=broad-except  # a catalog we cannot read: the checks are left out
            return None
        return RetryingReads(SdkService(getattr(self.conn, attribute)), clock)

    def report(self, plan, summary, nova=None):
        if nova is not None:
            summary.update(
                api_requests=nova.requests, polls=nova.polls, watch_requests_per_poll=round(float(nova.watch_requests) / nova.polls, 2) if nova.polls else None
            )
        self.results.update(summary=summary, servers=[e.record() for e in plan.evacuations], plan=plan.plan_list())

    @staticmethod
    def describe_plan(plan):
        counts = {}  # type: dict
        for e in plan.evacuations:
            counts[e.action] = counts.get(e.action, 0) + 1
        parts = ['%d to %s' % (n, action) for action, n in sorted(counts.items())]
        return '%d servers selected (%s), %d skipped' % (len(plan.evacuations), ', '.join(parts) or 'none', len(plan.skipped))

    def warn_records(self, records):
        for record in records:
            for warning, kind in zip(record['warnings'], record['warning_kinds']):
                if kind not in _ROUTINE:  # the disks lost were told once, in the plan, before anything was evacuated
                    self.warn(warning)
            if record['outcome'] == 'refused':
                self.warn('not evacuated: %s' % record['reason'])

    def progress_writer(self, host, run_id):
        path = self.params['progress_file']
        if not path:
            return None
        started = time.time()

        def write(counts):
            data = dict(counts, host=host, run_id=run_id, time=time.time(), elapsed=counts.get('elapsed', time.time() - started))
            try:
                with open(path + '.tmp', 'w') as handle:
                    json.dump(data, handle)
                os.replace(path + '.tmp', path)
            except (IOError, OSError):
                pass  # progress is a courtesy; the run does not depend on it

        return write


def main():
    HostEvacuate()()


if __name__ == '__main__':
    main()
