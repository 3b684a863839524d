#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: os_compute_service
short_description: Set the forced down and enabled flags of a compute host's Nova service
version_added: 0.1.0
description:
  - Sets the C(forced_down) flag, the status (enabled or disabled) and the disabled reason of the
    C(nova-compute) service of O(host) to the given values; options left out stay as they are.
  - The way back after a recovery (the role's rollback and the restore playbook) - it can clear what
    M(novaha.recovery.os_fence_check) sets, which that module by design never does.
  - It does not check that the host is powered off or repaired; the role and the restore playbook do
    that first. Nova itself refuses to clear O(forced_down) while evacuations from the host are not
    cleaned up by its restarted C(nova-compute); the task then fails with Nova's message and request id.
author:
  - novaha.recovery maintainers (@novaha)
options:
  host:
    description:
      - The host name of the C(nova-compute) service, exactly as C(openstack compute service list) shows it.
    type: str
    required: true
  forced_down:
    description:
      - V(true) forces the service down, V(false) lets its heartbeats count again. Omit to leave it.
    type: bool
  enabled:
    description:
      - V(true) enables the service (Nova then clears its disabled reason), V(false) disables it. Omit to leave it.
    type: bool
  disabled_reason:
    description:
      - The reason recorded with O(enabled=false), and only with it (given with any other O(enabled) it is an
        error). A disabled service whose reason differs gets this one.
    type: str
  only_if_disabled_reason:
    description:
      - Change the service only when its disabled reason starts with this text (for example the marker of a
        recovery run), so that a reason an operator set in the meantime is left alone; otherwise the task
        changes nothing and says why in RV(msg).
    type: str
attributes:
  check_mode:
    support: full
    details:
      - Reads the service and returns in RV(service.after) what it would be.
  diff_mode:
    support: none
    details:
      - RV(service.before) and RV(service.after) show the change.
  idempotent:
    support: full
notes:
  - Needs an account with the admin role (by default policy). Forcing a service down needs compute API
    microversion 2.11 or later.
seealso:
  - module: novaha.recovery.os_fence_check
  - module: novaha.recovery.os_host_info
extends_documentation_fragment:
  - novaha.recovery.attributes
  - novaha.recovery.openstack
"""

EXAMPLES = r"""
- name: Return node-28 to service after its repair
  novaha.recovery.os_compute_service:
    cloud: novaha-admin
    host: node-28
    forced_down: false
    enabled: true

- name: Undo only what a recovery run did
  novaha.recovery.os_compute_service:
    cloud: novaha-admin
    host: node-28
    forced_down: false
    enabled: true
    only_if_disabled_reason: "novaha.recovery:"
"""

RETURN = r"""
msg:
  description: What was done, or why nothing was.
  returned: always
  type: str
  sample: "nova-compute on node-28: forced down cleared, enabled"
service:
  description: The service before and after (predicted in check mode).
  returned: always
  type: dict
  contains:
    before:
      description: id, host, binary, zone, state, status, forced_down, disabled_reason, updated_at.
      type: dict
    after:
      description: The same keys after the task.
      type: dict
"""

from ansible_collections.novaha.recovery.plugins.module_utils._cloud import NovahaModule
from ansible_collections.novaha.recovery.plugins.module_utils._nova import RetryingReads, SdkNova, SystemClock
from ansible_collections.novaha.recovery.plugins.module_utils._options import conflict_error
from ansible_collections.novaha.recovery.plugins.module_utils._service import (
    find_compute_service,
    predict_service,
    service_microversion,
    update_compute_service,
)


def plan_changes(before, forced_down=None, enabled=None, disabled_reason=None):
    """The fields to send (forced_down, disabled, disabled_reason) for the wanted flags; {} when none."""
    changes = {}
    if forced_down is not None and bool(before.get('forced_down')) != forced_down:
        changes['forced_down'] = forced_down
    if enabled is True and before.get('status') != 'enabled':
        changes['disabled'] = False
    elif enabled is False and (before.get('status') != 'disabled' or (disabled_reason and before.get('disabled_reason') != disabled_reason)):
        changes['disabled'] = True
        changes['disabled_reason'] = disabled_reason
    return changes


def describe(changes):
    words = []
    if 'forced_down' in changes:
        words.append('forced down' if changes['forced_down'] else 'forced down cleared')
    if changes.get('disabled') is True:
        words.append('disabled (%s)' % changes.get('disabled_reason'))
    elif changes.get('disabled') is False:
        words.append('enabled')
    return ', '.join(words)


class ComputeService(NovahaModule):
    argument_spec = dict(
        host=dict(type='str', required=True),
        forced_down=dict(type='bool'),
        enabled=dict(type='bool'),
        disabled_reason=dict(type='str'),
        only_if_disabled_reason=dict(type='str'),
    )
    module_kwargs = dict(supports_check_mode=True)

    def check_inputs(self):
        p = self.params
        if p['disabled_reason'] is not None and p['enabled'] is not False:
            raise conflict_error('disabled_reason', 'enabled', 'a disabled reason is only set together with enabled=false (enabled is %s)' % p['enabled'])

    def run(self):
        p = self.params
        host = p['host']
        nova = RetryingReads(SdkNova(self.conn), SystemClock())  # reads ride out a short outage, as the engine's do
        with self.api('looking up the nova-compute service of host %s' % host):
            microversion = service_microversion(nova)
            before = find_compute_service(nova, host, microversion)
        self.results['service'] = dict(before=before, after=before)

        guard = p['only_if_disabled_reason']
        if guard is not None and not (before.get('disabled_reason') or '').startswith(guard):
            self.exit(
                changed=False,
                msg='nova-compute on %s left as it is: its disabled reason %r does not start with %r' % (host, before.get('disabled_reason'), guard),
            )

        changes = plan_changes(before, p['forced_down'], p['enabled'], p['disabled_reason'])
        if not changes:
            self.exit(changed=False, msg='nova-compute on %s already has the wanted flags; nothing to do' % host)
        if self.check_mode:
            self.results['service']['after'] = predict_service(before, changes)
            self.exit(changed=True, msg='check mode: nova-compute on %s would be %s' % (host, describe(changes)))
        with self.api('setting the flags of the nova-compute service of host %s (%s)' % (host, describe(changes))):
            after = update_compute_service(
                nova,
                before,
                forced_down=changes.get('forced_down'),
                disabled=changes.get('disabled'),
                disabled_reason=changes.get('disabled_reason'),
                microversion=microversion,
            )
        self.results['service']['after'] = after
        self.exit(changed=True, msg='nova-compute on %s: %s' % (host, describe(changes)))


def main():
    ComputeService()()


if __name__ == '__main__':
    main()
