#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: os_instance_evacuate
short_description: Evacuate one server off a failed compute host and prove it recovered
version_added: 0.1.0
description:
  - Rebuilds one server of a failed, fenced compute host on another host with Nova's evacuate action, waits
    for it and verifies the result. The evacuation migration record is V(done) or V(completed), the server
    is on another host with no task in progress, in its expected status, with the same id, ports and
    attached volumes as before.
  - Before acting it snapshots the server (status, vm and task state, host, lock and lock reason, power
    state, flavor, image or boot from volume, volumes, ports and addresses, availability zone, server
    groups) and refuses, changing nothing, when Nova could not or should not evacuate it.
  - Evacuable are servers that are V(ACTIVE), V(SHUTOFF), or V(ERROR) with no task in progress. A
    V(PAUSED), V(SUSPENDED) or V(RESCUE) server, or one with a task left behind by its failed host, is only
    evacuated with O(reset_state=true). V(SHELVED), V(SHELVED_OFFLOADED), V(VERIFY_RESIZE) and V(BUILD)
    servers are always refused, with the reason.
  - The expected final status is the server's status before the evacuation. An V(ACTIVE) server ends
    V(ACTIVE), a V(SHUTOFF) server ends V(SHUTOFF), at every microversion. A server in V(ERROR) ends
    V(ACTIVE) - Nova rebuilds and boots it whatever the microversion. A server reset from V(PAUSED),
    V(SUSPENDED) or V(RESCUE) boots fresh and ends V(ACTIVE).
  - The source host must be fenced and its C(nova-compute) service down (forced down with
    M(novaha.recovery.os_fence_check)); otherwise the task fails with "host X is not fenced/forced down"
    and changes nothing.
  - Idempotent. A server that is no longer on O(expected_source_host) (or that an earlier evacuation
    moved to a host that is up) and is V(ACTIVE) or V(SHUTOFF) is left alone, not changed, with the
    reason. When an evacuation of the server is already in flight, the task waits for it and issues none.
author:
  - novaha.recovery maintainers (@novaha)
options:
  server:
    description:
      - The server's id, or its exact name in any project.
      - A name that several servers share fails the task, listing them; give the id then.
    type: str
    required: true
  target_host:
    description:
      - The compute host to rebuild the server on. Default is the host Nova's scheduler chooses.
      - From microversion 2.29 on the scheduler still checks that the host fits the server; when it finds no
        valid host there, the evacuation is retried once with the scheduler choosing the host.
      - Below microversion 2.29 a target host bypasses the scheduler entirely, capacity and filters
        included; the task then warns.
    type: str
  expected_source_host:
    description:
      - The failed host the server is expected on. A server found on another host is not evacuated; it is
        V(nothing to do) when it is V(ACTIVE) or V(SHUTOFF) there, else the task fails with the reason.
      - Default is the host the server is on now.
    type: str
  admin_password:
    description:
      - A new administrator password for the rebuilt server. Default is the one Nova generates.
      - Never shown in results, plans or errors.
    type: str
  on_shared_storage:
    description:
      - Whether the server's instance directory is on storage shared between the compute hosts.
      - Only sent to Nova below microversion 2.14 (as C(onSharedStorage); V(false) when omitted). From 2.14 on
        Nova detects shared storage itself and this only tells the task whether to warn that the data on an
        image-backed root disk, ephemeral and swap disks is lost.
    type: bool
  wait:
    description:
      - Wait until the server is recovered (or failed), returning it to its expected status.
      - With V(false) the task returns after Nova accepted the evacuation, without taking a lock and
        without verifying; at microversion 2.95 and later an originally V(ACTIVE) server is then left
        V(SHUTOFF) by Nova until something starts it (a later run with O(wait=true) does).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the recovery when O(wait=true). A server still being evacuated then fails the
        task as in progress; running the task again resumes waiting without issuing another evacuation.
    type: int
    default: 600
  poll_interval:
    description:
      - The longest wait, in seconds, between two looks at the server and its migration record. The first
        look comes 1 second after a request or a change seen, and the wait doubles while nothing changes, up
        to this.
    type: int
    default: 5
  retries:
    description:
      - How many more evacuations to try after one fails (migration V(error) or V(failed), or the server
        goes V(ERROR)). Every attempt is recorded in RV(evacuation.attempts).
      - The single retry with the scheduler choosing after "no valid host" at O(target_host) is not counted.
      - Refusals (state, host not fenced, permissions, changed ports or volumes) are never retried.
    type: int
    default: 1
  lock:
    description:
      - "Lock the server while it is moved, with the reason C(novaha.recovery: evacuating from HOST (was
        STATUS)), and unlock it afterwards."
      - The reason is what tells a lock of this module from anyone else's, and Nova takes one from microversion
        2.73. A cloud that offers less gets no lock at all - the server is moved unlocked, with a warning of kind
        V(not_locked) - because a lock without it, left behind by a killed run, could not be told from its
        user's lock by any later run.
      - A server that was already locked (by its user, or by anyone) is neither locked again nor unlocked.
      - A lock with this reason found on a server that is no longer on the source host is treated as left
        by an interrupted run; the task returns the server to the status in the reason and removes the lock.
    type: bool
    default: true
  reset_state:
    description:
      - Opt-in. Reset a stuck state before evacuating (C(os-resetState)) - a task state left behind by the
        failed host, or a V(PAUSED), V(SUSPENDED) or V(RESCUE) server whose guest state died with the host.
      - Without it such servers are refused with an explanation and nothing changes.
    type: bool
    default: false
  microversion:
    description:
      - The compute API microversion of the evacuate request, for example V(2.94).
      - Default is V(2.94), the newest at which Nova gives the evacuated server back its power state itself
        (one request per server), or lower when the cloud offers less. V(2.95) and later (Nova leaves the server
        stopped) only when asked for here; the module then starts an originally V(ACTIVE) server itself.
      - A C(compute_api_version) pinned in C(clouds.yaml) is not used for any request of this module (it is
        reported in C(client_pin) of RV(microversions)); only this option sets the evacuate microversion. Taken for
        these requests, a pin such as V(2.1) would send C(onSharedStorage=false) (below 2.14), let a target host
        bypass the scheduler (below 2.29) and lock without a reason (below 2.73).
      - Other requests (reading servers and migrations, locking) use the microversion they need, independent
        of this option. Details in R(the microversions guide, ansible_collections.novaha.recovery.docsite.microversions).
    type: str
attributes:
  check_mode:
    support: full
    details:
      - Reads the server, its migrations and the source service, and returns the whole plan in RV(plan)
        (request, microversion, expected status, warnings) without sending anything.
  diff_mode:
    support: none
    details:
      - RV(evacuation.before) and RV(evacuation.after) show where and how the server was and is.
  idempotent:
    support: full
notes:
  - Evacuating needs an account with the admin role (by default policy); other accounts get a clear
    permission error.
  - Microversions, deliberately.
    Below 2.14 C(onSharedStorage) is sent (O(on_shared_storage)); from 2.14 on it never is.
    C(force) is never sent (2.29 to 2.67 would let it bypass the scheduler; 2.68 and later reject it).
    From 2.95 on Nova leaves an evacuated server stopped (except one in ERROR); this module then starts an
    originally V(ACTIVE) server, so the final status is the same at every microversion.
  - The server is watched with one server listing and one migrations listing per poll (C(changes-since),
    all projects), the same requests the host-level module makes for any number of servers.
  - A read that gets no answer is sent again; a look that still gets no answer fails nothing, polling goes
    on until O(timeout). An evacuate request that got no answer is checked against the server's migration
    records before any new attempt, so it is never issued twice.
  - An image-backed root disk, and ephemeral and swap disks, are rebuilt empty on the new host unless the
    instance directory is on shared storage; the task warns about it.
seealso:
  - module: novaha.recovery.os_fence_check
  - name: Nova - evacuate instances
    description: What Nova does when it evacuates, and what it needs from the failed host.
    link: https://docs.openstack.org/nova/latest/admin/evacuate.html
  - name: Compute API - evacuate server
    description: The evacuate action and its microversions.
    link: https://docs.openstack.org/api-ref/compute/#evacuate-server-evacuate-action
extends_documentation_fragment:
  - novaha.recovery.attributes
  - novaha.recovery.openstack
"""

EXAMPLES = r"""
- name: Fence node-28 and force its compute service down first
  novaha.recovery.os_fence_check:
    cloud: novaha-admin
    host: node-28
    bmc: "{{ node28_bmc }}"
    fence: true
    force_down: true

- name: Evacuate web-3 off node-28, wherever the scheduler puts it
  novaha.recovery.os_instance_evacuate:
    cloud: novaha-admin
    server: web-3
    expected_source_host: node-28
  register: web3

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ web3.evacuation.name }} is {{ web3.evacuation.after.status }} on {{ web3.evacuation.after.host }}"

- name: Evacuate a server to a reserved host with Nova's 2.95 behaviour (stopped there, then started), resetting a stuck task
  novaha.recovery.os_instance_evacuate:
    cloud: novaha-admin
    server: 9168b536-cd40-4630-b43f-b259807c6e87
    target_host: node-spare-1
    microversion: "2.95"
    reset_state: true
    timeout: 900

- name: Show what would be sent, without sending it
  novaha.recovery.os_instance_evacuate:
    cloud: novaha-admin
    server: db-1
    admin_password: "{{ vault_db1_password }}"
  check_mode: true
  register: db1_plan
"""

RETURN = r"""
msg:
  description: What happened, or why nothing happened, in one sentence naming the server and the hosts.
  returned: always
  type: str
  sample: server web-3 (9168b536-cd40-4630-b43f-b259807c6e87) was evacuated from node-28 and is ACTIVE on node-27 (migration 41 done)
plan:
  description: What would be (or was) sent. Returned in check mode and when something was planned.
  returned: when the server is to be evacuated, waited for or finished
  type: dict
  contains:
    action:
      description: V(evacuate), V(wait) (an evacuation already in flight), V(reconcile) (finish an interrupted run).
      type: str
    microversion:
      description: Microversion of the evacuate request.
      type: str
    request:
      description: The evacuate action body, C(adminPass) replaced by C(<hidden>).
      type: dict
      sample: {"evacuate": {"host": "node-27"}}
    expected_status:
      description: The status the server must end in.
      type: str
    reset_state_to:
      description: The state C(os-resetState) sets first (O(reset_state)), or null.
      type: str
    lock:
      description: Whether the server would be locked during the move.
      type: bool
    warnings:
      description: Warnings about the evacuation (data lost on local disks, scheduler bypass, ...).
      type: list
      elements: str
  sample:
    action: evacuate
    microversion: "2.94"
    request: {"evacuate": {}}
    expected_status: ACTIVE
    reset_state_to: null
    lock: true
    warnings: ["server web-3 (9168b536-cd40-4630-b43f-b259807c6e87) boots from image 70a599e0-31e7-49b7-b260-868f441e862b:
                unless its instance directory is on shared storage, Nova rebuilds the root disk from the image on
                the new host and data written to the root disk is lost"]
evacuation:
  description:
    - The record of the server, the same in every module of the collection that evacuates.
  returned: when the server was found
  type: dict
  contains:
    id:
      description: Server id.
      type: str
    name:
      description: Server name.
      type: str
    action:
      description: V(evacuate), V(wait), V(reconcile), V(none) or V(refuse).
      type: str
    outcome:
      description: >-
        V(recovered), V(failed), V(in_progress) (timed out or O(wait=false)), V(nothing_to_do), V(refused)
        or V(planned) (check mode).
      type: str
    reason:
      description: Why, in words.
      type: str
    kind:
      description: >-
        Class of failure or refusal, for example V(state), V(not_fenced), V(no_valid_host),
        V(evacuation_failed), V(identity_changed), V(forbidden), V(timeout).
      type: str
    source_host:
      description: The failed host.
      type: str
    target_host:
      description: The requested target host, or null for the scheduler.
      type: str
    expected_status:
      description: The status the server must end in.
      type: str
    microversion:
      description: Microversion of the evacuate request.
      type: str
    before:
      description: Host, status, vm_state, task_state, power_state, locked, locked_reason and updated (Nova's last change of it) before.
      type: dict
    after:
      description: The same fields after, or null when nothing was done.
      type: dict
    snapshot:
      description: >-
        The full snapshot taken before acting - flavor, image_id, boot_from_volume, volumes, ports,
        availability_zone, server_groups, metadata, fault, and the fields of RV(evacuation.before).
      type: dict
    migration:
      description: The evacuation migration record (id, uuid, status, source_compute, dest_compute, times).
      type: dict
    attempts:
      description: >-
        One entry per evacuate request - number, target_host, microversion, scheduler_fallback,
        requested_at, finished_at, request_id, migration_id, migration_status, outcome, kind, error.
      type: list
      elements: dict
    power_actions:
      description: V(start) or V(stop) sent after the evacuation to reach the expected status.
      type: list
      elements: str
    lock:
      description: user_locked (left alone), locked_by_us, unlocked.
      type: dict
    timings:
      description: requested_at, finished_at (UTC, ISO 8601) and seconds.
      type: dict
    request_ids:
      description: Nova request id of every action sent (lock, reset_state, evacuate, start, stop, unlock).
      type: list
      elements: dict
    warnings:
      description: Warnings, also shown as task warnings.
      type: list
      elements: str
    warning_kinds:
      description:
        - The kind of each warning, in the same order - V(root_disk_lost) (image-booted without shared storage),
          V(disk_recreated) (an ephemeral or swap disk recreated empty) or V(other) - so that a playbook decides
          on the kind, never on the words.
      type: list
      elements: str
    storage:
      description:
        - The server's storage - C(kind) (V(boot_from_volume), V(shared_instance_store) when O(on_shared_storage)
          is true, else V(local_ephemeral)), C(volumes), C(data_volumes) and C(lost) (the disks the evacuation
          loses). M(novaha.recovery.os_host_evacuate) also reads each volume in Cinder and verifies where its
          attachments and the ports end up.
      type: dict
    next_command:
      description: The command an operator runs next when the server was not recovered.
      type: str
  sample:
    id: 9168b536-cd40-4630-b43f-b259807c6e87
    name: web-3
    action: evacuate
    outcome: recovered
    changed: true
    reason: server web-3 (9168b536-cd40-4630-b43f-b259807c6e87) was evacuated from node-28 and is ACTIVE on node-27 (migration 41 done)
    kind: null
    source_host: node-28
    target_host: null
    expected_status: ACTIVE
    microversion: "2.94"
    before: {host: node-28, status: ACTIVE, vm_state: active, task_state: null, power_state: RUNNING,
             locked: false, locked_reason: null, updated: "2025-11-21T11:58:02Z"}
    after: {host: node-27, status: ACTIVE, vm_state: active, task_state: null, power_state: RUNNING,
            locked: false, locked_reason: null, updated: "2025-11-21T12:00:31Z"}
    migration: {id: 41, uuid: 42341d4b-346a-40d0-83c6-5f4f6892b650, status: done, source_compute: node-28,
                dest_compute: node-27}
    attempts:
      - {number: 1, target_host: null, microversion: "2.94", request_id: req-0c4e0d6c-5a2f-4a52-9d0e-6e1c2d8b7a10,
         migration_id: 41, migration_status: done, outcome: recovered}
    power_actions: []
    lock: {user_locked: false, locked_by_us: true, unlocked: true}
    timings: {requested_at: "2025-11-21T12:00:00Z", finished_at: "2025-11-21T12:00:41Z", seconds: 41.0}
    next_command: null
microversions:
  description:
    - The microversion of each kind of request and what follows from the evacuate one.
    - C(lock) is null on a cloud below 2.73, where no lock is taken.
    - C(client_pin) is the C(compute_api_version) of C(clouds.yaml) as written (null when none), and
      C(client_pin_ignored) says that it was there and not used for any request.
  returned: when the cloud was reached
  type: dict
  sample:
    evacuate: "2.94"
    read: "2.96"
    lock: "2.73"
    migrations: "2.59"
    services: "2.53"
    cloud_max: "2.104"
    negotiated: true
    client_pin: "2.1"
    client_pin_ignored: true
    evacuate_stops_server: false
    sends_on_shared_storage: false
    target_host_checked_by_scheduler: true
request_id:
  description: Nova request id of the failed request (evacuate, or the API call that failed).
  returned: on failure, when known
  type: str
  sample: req-4f1c2b7e-9a0e-4a57-8d2b-d3a4a2a1b0c9
next_command:
  description: The command an operator runs next, on failure.
  returned: on failure, when one applies
  type: str
  sample: openstack server event show 9168b536-cd40-4630-b43f-b259807c6e87 req-4f1c2b7e-9a0e-4a57-8d2b-d3a4a2a1b0c9
"""

from ansible_collections.novaha.recovery.plugins.module_utils._cloud import NovahaModule
from ansible_collections.novaha.recovery.plugins.module_utils._decisions import (
    ACTION_NONE,
    ACTION_REFUSE,
    ACTION_WAIT,
    OUTCOME_IN_PROGRESS,
    OUTCOME_RECOVERED,
)
from ansible_collections.novaha.recovery.plugins.module_utils._evacuation import Engine
from ansible_collections.novaha.recovery.plugins.module_utils._nova import SdkNova
from ansible_collections.novaha.recovery.plugins.module_utils._options import at_least, conflict_error


class InstanceEvacuate(NovahaModule):
    argument_spec = dict(
        server=dict(type='str', required=True),
        target_host=dict(type='str'),
        expected_source_host=dict(type='str'),
        admin_password=dict(type='str', no_log=True),
        on_shared_storage=dict(type='bool'),
        wait=dict(type='bool', default=True),
        timeout=dict(type='int', default=600),
        poll_interval=dict(type='int', default=5),
        retries=dict(type='int', default=1),
        lock=dict(type='bool', default=True),
        reset_state=dict(type='bool', default=False),
        microversion=dict(type='str'),
    )
    module_kwargs = dict(supports_check_mode=True)
    option_rules = dict(
        timeout=at_least(1, 'seconds'),
        poll_interval=at_least(1, 'seconds'),
        retries=at_least(0),
    )

    def check_inputs(self):
        p = self.params
        if p['target_host'] is not None and p['target_host'] == p['expected_source_host']:
            raise conflict_error(
                'target_host',
                'expected_source_host',
                'both are %s; a server is evacuated away from its failed host, never to it' % p['target_host'],
                value=p['target_host'],
            )

    def run(self):
        p = self.params

        engine = Engine(SdkNova(self.conn), microversion=p['microversion'])
        self.results['microversions'] = engine.mv.to_dict()
        evac = engine.plan(
            p['server'],
            expected_source_host=p['expected_source_host'],
            target_host=p['target_host'],
            admin_password=p['admin_password'],
            on_shared_storage=p['on_shared_storage'],
            reset_state=p['reset_state'],
            lock=p['lock'],
        )

        record = evac.record()
        self.results['evacuation'] = record
        if evac.action == ACTION_REFUSE:
            self.fail(record['reason'], next_command=record['next_command'])
        if evac.action == ACTION_NONE:
            self.exit(changed=False, msg=record['reason'])

        self.results['plan'] = evac.plan()
        if self.check_mode:
            self.exit(changed=evac.action != ACTION_WAIT, msg='check mode: %s' % record['reason'])

        engine.run([evac], wait=p['wait'], timeout=p['timeout'], poll_interval=p['poll_interval'], retries=p['retries'])
        record = evac.record()
        self.results.update(evacuation=record, changed=record['changed'])
        for warning in record['warnings']:
            self.warn(warning)

        if record['outcome'] == OUTCOME_RECOVERED:
            self.exit(msg=record['reason'])
        if record['outcome'] == OUTCOME_IN_PROGRESS and not p['wait']:
            self.exit(
                msg='evacuation of %s (%s) from %s accepted by Nova (request id %s); not waited for'
                % (record['name'], record['id'], record['source_host'], last_request_id(record))
            )
        request_id = last_request_id(record)
        msg = record['reason']
        if request_id and request_id not in msg:
            msg = '%s (request id %s)' % (msg, request_id)
        self.fail(msg, request_id=request_id, next_command=record['next_command'])


def last_request_id(record):
    for attempt in reversed(record['attempts']):
        if attempt.get('request_id'):
            return attempt['request_id']
    for entry in reversed(record['request_ids']):
        if entry.get('request_id'):
            return entry['request_id']
    return None


def main():
    InstanceEvacuate()()


if __name__ == '__main__':
    main()
