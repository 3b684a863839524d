#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: os_fence_check
short_description: Prove that a failed compute host is fenced, fence it on request
version_added: 0.1.0
description:
  - The safety gate before evacuating a compute host. Evacuating instances from a host that still runs
    can corrupt shared storage and leave two copies of a server alive.
  - Looks up the C(nova-compute) service of O(host), reads the host's power state through its BMC
    (Redfish or IPMI) and, with O(fence=true), powers the host off and polls fresh readings until the
    BMC reads Off or O(power_timeout) passes.
  - Only a power reading of Off taken by this task (after any power-off command), or the operator's
    explicit O(attest_powered_off), counts as fenced. An accepted power-off command does not.
  - Once the host is fenced, optionally marks the Nova service forced down (O(force_down)) and disabled
    (O(disable)), so that Nova accepts evacuations at once instead of after C(service_down_time).
  - A BMC that is unreachable, rejects the credentials or keeps reading On past the timeout leaves the host
    unfenced; the task then fails naming the host, the BMC and the cause, unless O(fail_on_unfenced=false).
  - With O(fence_levels), several ways to read and cut the power (Redfish, IPMI, an operator's fence agent for
    a PDU or a storage fence) are tried in order, as pacemaker's fencing topology does, and the operator's
    O(attest_powered_off) is the last level. RV(evidence.level) says which level proved the host off and
    RV(evidence.levels) what each level said.
author:
  - novaha.recovery maintainers (@novaha)
options:
  host:
    description:
      - The host name of the C(nova-compute) service, exactly as C(openstack compute service list) shows it.
      - When no service matches exactly, the task fails and lists similar host names.
    type: str
    required: true
  fence:
    description:
      - When the BMC does not read Off, power the host off (Redfish C(ForceOff) if the BMC allows that
        reset type; IPMI C(chassis power off)) and poll fresh readings until Off.
      - With V(false) the task only reads and judges.
    type: bool
    default: false
  power_timeout:
    description:
      - Seconds to wait, after the power-off command, for the BMC to read Off.
    type: int
    default: 60
  force_down:
    description:
      - After fencing is proven, mark the C(nova-compute) service forced down (compute API microversion
        2.11 or later) so that Nova accepts evacuations at once.
      - V(false) leaves the flag as it is; it never clears it.
    type: bool
    default: false
  disable:
    description:
      - After fencing is proven, disable the C(nova-compute) service so that nothing is scheduled to it.
      - V(false) leaves the service status as it is; it never enables it.
    type: bool
    default: false
  disabled_reason:
    description:
      - The reason recorded when O(disable=true). An already disabled service gets this reason if it
        differs; when omitted, an already disabled service keeps its reason and a newly disabled one gets
        V(fenced by novaha.recovery.os_fence_check).
    type: str
  attest_powered_off:
    description:
      - An explicit operator statement that the host is powered off, for hosts whose BMC is missing or
        unreachable. Recorded as the evidence (RV(evidence.method=attestation)), never assumed.
      - A BMC that answers and reads On overrules it; the host is then not fenced.
      - It is the last fence level, asked only when no level of O(bmc) or O(fence_levels) read the power.
    type: bool
    default: false
  fail_on_unfenced:
    description:
      - Fail the task when the host is not proven fenced.
      - With V(false) the task returns RV(fenced=false) and the reason instead, and changes nothing in Nova.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - Reads the BMC and the Nova service, returns the plan in RV(plan), powers nothing off and changes
        nothing in Nova. RV(fenced) is what the BMC reads now.
  diff_mode:
    support: none
    details:
      - RV(service.before) and RV(service.after) show the change of the Nova service.
  idempotent:
    support: full
notes:
  - Redfish uses HTTPS with basic authentication through Ansible's own URL library; proxy environment
    variables and C(~/.netrc) are not used for BMCs.
  - IPMI needs C(ipmitool) on the host that runs the module (usually the controller).
  - Nova service changes need an account with the admin role.
  - To undo O(force_down) and O(disable) after the host is repaired, use C(openstack compute service set
    --up --enable HOST nova-compute) (or the role's restore playbook).
seealso:
  - name: Nova - evacuate instances
    description: Why a failed host must be fenced and its service forced down before evacuation.
    link: https://docs.openstack.org/nova/latest/admin/evacuate.html
extends_documentation_fragment:
  - novaha.recovery.attributes
  - novaha.recovery.fencing
  - novaha.recovery.openstack
"""

EXAMPLES = r"""
- name: Fence node-28 through Redfish and force its compute service down
  novaha.recovery.os_fence_check:
    cloud: novaha-admin
    host: node-28
    bmc:
      type: redfish
      address: "{{ bmc_redfish_url }}"
      system_id: "{{ bmc_redfish_system_id }}"
      username: "{{ bmc_username }}"
      password: "{{ bmc_password }}"
      ca_path: "{{ bmc_ca_path }}"
    fence: true
    power_timeout: 60
    force_down: true
    disable: true
    disabled_reason: "hardware failure, ticket OPS-1234"
  register: node28_fence

- name: Only check an IPMI host (no power action); report instead of failing
  novaha.recovery.os_fence_check:
    cloud: novaha-admin
    host: node-31
    bmc:
      type: ipmi
      address: 10.20.0.31
      port: 623
      username: "{{ bmc_username }}"
      password: "{{ bmc_password }}"
      cipher_suite: 3
    fail_on_unfenced: false
  register: node31

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ node31.fenced }} - {{ node31.msg }}"

- name: A host without a BMC, switched off by hand in the data centre
  novaha.recovery.os_fence_check:
    cloud: novaha-admin
    host: node-27
    bmc:
      type: none
    attest_powered_off: true
    force_down: true

- name: Use the shared cloud options once for every module of the collection
  module_defaults:
    group/novaha.recovery.openstack:
      cloud: novaha-admin
  block:
    - name: Check node-28
      novaha.recovery.os_fence_check:
        host: node-28
        bmc:
          type: redfish
          address: https://10.20.0.28
          username: "{{ bmc_username }}"
          password: "{{ bmc_password }}"

- name: Fence levels - Redfish, then IPMI, then the PDU outlet through a fence agent
  novaha.recovery.os_fence_check:
    cloud: novaha-admin
    host: node-28
    fence_levels:
      - type: redfish
        address: https://10.20.0.28
        username: "{{ bmc_username }}"
        password: "{{ bmc_password }}"
      - type: ipmi
        address: 10.20.0.28
        username: "{{ bmc_username }}"
        password: "{{ bmc_password }}"
      - type: fence_agent
        agent: /usr/sbin/fence_apc_snmp
        address: pdu-r12.mgmt.example
        username: "{{ pdu_username }}"
        password: "{{ pdu_password }}"
        options:
          plug: 12
    fence: true
    force_down: true
  register: node28_levels

- name: Which level proved it off
  ansible.builtin.debug:
    msg: "level {{ node28_levels.evidence.level }} ({{ node28_levels.evidence.method }})"
"""

RETURN = r"""
fenced:
  description:
    - Whether the host is proven fenced - the BMC read power Off during this task, or the operator
      attested it (and no answering BMC read On).
  returned: always
  type: bool
  sample: true
would_power_off:
  description:
    - In check mode, whether the task would power the host off (O(fence=true) and the BMC reads power On), so
      that a playbook's dry run goes on to show the rest of its plan.
  returned: always
  type: bool
  sample: false
msg:
  description: The verdict in one sentence, or why the task failed.
  returned: always
  type: str
  sample: "host node-28 is fenced: the BMC reads power Off (Off); nova-compute service forced down"
plan:
  description:
    - What the task did (or, in check mode, would do), in order. Empty when nothing needed doing.
  returned: always
  type: list
  elements: str
  sample: ["power off node-28 (Redfish BMC https://10.20.0.28 system /redfish/v1/Systems/1)",
           "force down the nova-compute service of node-28"]
evidence:
  description: How the verdict was reached.
  returned: when the service was found
  type: dict
  contains:
    method:
      description: What proved (or failed to prove) the verdict.
      type: str
      choices: [redfish, ipmi, fence_agent, attestation, none]
      sample: redfish
    level:
      description:
        - The fence level (1 for O(bmc) or the first entry of O(fence_levels)) whose fresh Off reading proved
          the host off; null when none did (for example when the attestation decided).
      type: int
      sample: 1
    levels:
      description:
        - What each level asked said, in order. Levels after the deciding one are not asked and not listed.
      type: list
      elements: dict
      contains:
        level:
          description: The level's number, from 1.
          type: int
        method:
          description: V(redfish), V(ipmi) or V(fence_agent).
          type: str
        bmc:
          description: The BMC or agent asked (never credentials).
          type: str
        result:
          description: What the level gave.
          type: str
          choices: [proved off, reads on, failed, unknown state, would power off]
        power_state:
          description: Its last reading, normalized.
          type: str
        action:
          description: The power-off command it sent, if any.
          type: str
        error_cause:
          description: Why it gave no Off reading, if it did not; the causes of RV(evidence.error_cause).
          type: str
        error:
          description: The cause and the BMC's own words.
          type: str
    bmc:
      description: The BMC that decided (the last one asked), kind and address; never credentials.
      type: str
      sample: "Redfish BMC https://10.20.0.28 system /redfish/v1/Systems/1"
    power_state:
      description: The last power reading, normalized; null when the BMC gave none.
      type: str
      choices: ['on', 'off', unknown]
      sample: 'off'
    power_state_raw:
      description: The last power reading as the BMC put it.
      type: str
      sample: "Off"
    read_at:
      description: When that reading was taken (UTC, ISO 8601).
      type: str
      sample: "2025-11-21T23:59:01.123Z"
    power_state_before:
      description: The first reading of this task, before any power-off command.
      type: str
      sample: 'on'
    action:
      description: The power-off command sent, if any.
      type: str
      sample: "ComputerSystem.Reset ForceOff"
    action_sent_at:
      description: When the power-off command was accepted (UTC, ISO 8601).
      type: str
    fence_seconds:
      description: Seconds from sending the power-off command to the first Off reading.
      type: float
      sample: 3.2
    attested:
      description: Whether O(attest_powered_off) was given.
      type: bool
    error_cause:
      description: Why the BMC gave no Off reading, if it did not.
      type: str
      choices: [unreachable, timeout, credentials rejected, forbidden, stayed on, unsupported,
                configuration, unexpected answer]
service:
  description: The C(nova-compute) service of O(host) before and after the task (predicted in check mode).
  returned: when the service was found
  type: dict
  contains:
    before:
      description: The service as found.
      type: dict
      sample: {id: "5f0e...", host: node-28, binary: nova-compute, zone: nova, state: up, status: enabled,
               forced_down: false, disabled_reason: null, updated_at: "2025-11-21T23:58:40.000000"}
    after:
      description: The service after the task; same keys as RV(service.before).
      type: dict
changed:
  description: Whether the host was powered off or the Nova service was changed (or would be, in check mode).
  returned: always
  type: bool
http_status:
  description: HTTP status of a failed OpenStack API call.
  returned: on OpenStack API failure
  type: int
  sample: 403
request_id:
  description: Request id of a failed OpenStack API call (Nova's C(x-compute-request-id) when present).
  returned: on OpenStack API failure
  type: str
  sample: req-4f1c2b7e-9a0e-4a57-8d2b-d3a4a2a1b0c9
"""

from ansible_collections.novaha.recovery.plugins.module_utils._cloud import (
    NovahaModule,
    bmc_argument_spec,
    build_fence_levels,
)
from ansible_collections.novaha.recovery.plugins.module_utils._fencing import check_fence, level_options
from ansible_collections.novaha.recovery.plugins.module_utils._nova import RetryingReads, SdkNova, SystemClock
from ansible_collections.novaha.recovery.plugins.module_utils._options import at_least
from ansible_collections.novaha.recovery.plugins.module_utils._service import (
    find_compute_service,
    plan_service_update,
    predict_service,
    service_microversion,
    stale_heartbeat,
    update_compute_service,
)


class FenceCheck(NovahaModule):
    argument_spec = dict(
        host=dict(type='str', required=True),
        fence=dict(type='bool', default=False),
        power_timeout=dict(type='int', default=60),
        force_down=dict(type='bool', default=False),
        disable=dict(type='bool', default=False),
        disabled_reason=dict(type='str'),
        attest_powered_off=dict(type='bool', default=False),
        fail_on_unfenced=dict(type='bool', default=True),
        **bmc_argument_spec(),
    )
    module_kwargs = dict(supports_check_mode=True, mutually_exclusive=[('bmc', 'fence_levels')])
    option_rules = dict(power_timeout=at_least(0, 'seconds'))

    def run(self):
        p = self.params
        host = p['host']
        self.results.update(fenced=False, plan=[], would_power_off=False)
        build_fence_levels(p, host)  # every bad BMC setting fails here, before Nova or a BMC is asked

        nova = RetryingReads(SdkNova(self.conn), SystemClock())  # reads ride out a short outage, as the engine's do
        with self.api('looking up the nova-compute service of host %s' % host):
            microversion = service_microversion(nova)
            # One listing: the host's service and, for a Redfish BMC's identity check, every compute host's name.
            before, others = find_compute_service(nova, host, microversion, with_hosts=True)
            if not any(spec.get('type') == 'redfish' for _option, spec in level_options(p)):
                others = ()
        self.results['service'] = dict(before=before, after=before)

        levels = build_fence_levels(p, host, others)
        outcome = check_fence(host, levels, fence=p['fence'], attested=p['attest_powered_off'], power_timeout=p['power_timeout'], check_mode=self.check_mode)
        evidence = outcome['evidence']
        plan = self.results['plan']
        if outcome['power_changed'] or outcome['would_power_off']:
            plan.append('power off %s (%s)' % (host, evidence['bmc']))
        self.results.update(fenced=outcome['fenced'], evidence=evidence, changed=outcome['power_changed'], would_power_off=bool(outcome['would_power_off']))

        if outcome.get('bmc_error'):
            self.warn('%s; relying on the operator attestation' % outcome['bmc_error'])
        elif outcome['fenced'] and outcome['level_errors']:
            for error in outcome['level_errors']:
                self.warn('%s; level %s proved it off' % (error, evidence['level']))
        elif outcome['fenced'] and evidence['method'] == 'attestation':
            self.warn('host %s counts as fenced on the operator attestation alone; no BMC reading' % host)
        if stale_heartbeat(before, outcome):
            self.warn(
                'nova-compute on %s still reports state up although the BMC reads power Off '
                '(stale heartbeat); %s'
                % (
                    host,
                    'it is forced down now'
                    if p['force_down']
                    else 'Nova refuses evacuations until it marks it down (service_down_time) or force_down=true is used',
                )
            )

        if not outcome['fenced'] and not outcome['would_power_off']:
            # Never touch Nova for a host that may still be running.
            if p['fail_on_unfenced']:
                self.fail(outcome['error'])
            self.warn(outcome['error'])
            self.exit(msg=outcome['error'])

        changes = plan_service_update(before, p['force_down'], p['disable'], p['disabled_reason'])
        if changes.get('forced_down'):
            plan.append('force down the nova-compute service of %s' % host)
        if changes.get('disabled'):
            plan.append('disable the nova-compute service of %s (reason: %s)' % (host, changes['disabled_reason']))

        if self.check_mode:
            after = predict_service(before, changes)
            self.results['service']['after'] = after
            if plan:
                self.exit(changed=True, msg='check mode: would %s' % '; then '.join(plan))
            self.exit(changed=False, msg='host %s is fenced: %s; nothing to do' % (host, outcome['verdict']))

        after = before
        if changes:
            self.results['changed'] = True
            with self.api(
                'marking the nova-compute service of host %s %s after fencing'
                % (host, ' and '.join(k.replace('_', ' ') for k in ('forced_down', 'disabled') if k in changes))
            ):
                after = update_compute_service(
                    nova,
                    before,
                    forced_down=changes.get('forced_down'),
                    disabled=changes.get('disabled'),
                    disabled_reason=changes.get('disabled_reason'),
                    microversion=microversion,
                )
            self.results['service']['after'] = after

        done = [outcome['verdict']]
        if after.get('forced_down'):
            done.append('nova-compute service forced down')
        if after.get('status') == 'disabled':
            done.append('nova-compute service disabled')
        if self.results['changed']:
            self.exit(msg='host %s is fenced: %s' % (host, '; '.join(done)))
        self.exit(msg='host %s already fenced: %s; nothing to do' % (host, '; '.join(done)))


def main():
    FenceCheck()()


if __name__ == '__main__':
    main()
