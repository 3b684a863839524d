#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: os_host_info
short_description: Snapshot a compute host - its Nova service, its servers, its evacuations
version_added: 0.1.0
description:
  - Reads, in a handful of requests, what a recovery needs to know about one compute host and changes nothing.
  - The C(nova-compute) service of O(host) with the age of its last heartbeat (measured against the clock of
    the compute API, so a skewed controller clock does not matter), every C(nova-compute) and
    C(nova-scheduler) service of the cloud, every server on O(host) in every project (the same snapshot
    M(novaha.recovery.os_host_evacuate) takes), and the evacuation migrations whose source is O(host).
  - With O(servers), also where each of those servers is now and in which state, wherever it is; the
    recovery role watches evacuated servers with it, with O(list_host_servers=false).
author:
  - novaha.recovery maintainers (@novaha)
options:
  host:
    description:
      - The host name of the C(nova-compute) service, exactly as C(openstack compute service list) shows it.
      - When no service matches exactly, the task fails and lists similar host names.
    type: str
    required: true
  servers:
    description:
      - Ids of servers to report in RV(tracked), wherever they are now.
    type: list
    elements: str
    default: []
  list_host_servers:
    description:
      - List the servers on O(host) (RV(servers)).
      - V(false) - a watch over O(servers) only - RV(servers) is empty, and each server of O(servers) is read
        by its id instead of from a listing of every server of every project. The services and the evacuation
        migrations of O(host) are read either way.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - Needs an account with the admin role (services, servers of all projects, migrations).
seealso:
  - module: novaha.recovery.os_host_evacuate
  - module: novaha.recovery.os_compute_service
extends_documentation_fragment:
  - novaha.recovery.attributes
  - novaha.recovery.openstack
"""

EXAMPLES = r"""
- name: Snapshot node-28 before recovering it
  novaha.recovery.os_host_info:
    cloud: novaha-admin
    host: node-28
  register: node28

- name: Say what is on it
  ansible.builtin.debug:
    msg: >-
      nova-compute on node-28 is {{ node28.service.state }} (heartbeat {{ node28.service.heartbeat_age }} s ago),
      {{ node28.servers | length }} servers on it

- name: Where are the servers that were on node-28 now?
  novaha.recovery.os_host_info:
    cloud: novaha-admin
    host: node-28
    servers: "{{ node28.servers | map(attribute='id') | list }}"
  register: now

- name: Only the servers evacuated from node-28 (a watch that repeats this task)
  novaha.recovery.os_host_info:
    cloud: novaha-admin
    host: node-28
    servers: "{{ node28.servers | map(attribute='id') | list }}"
    list_host_servers: false
  register: now
"""

RETURN = r"""
service:
  description: The C(nova-compute) service of O(host).
  returned: always
  type: dict
  contains:
    id:
      description: Service id (a UUID from microversion 2.53 on).
      type: str
    host:
      description: Host name.
      type: str
    state:
      description: V(up) or V(down) as Nova reports it (a forced down service is always V(down)).
      type: str
    status:
      description: V(enabled) or V(disabled).
      type: str
    forced_down:
      description: Whether the service is forced down.
      type: bool
    disabled_reason:
      description: Why it is disabled, or null.
      type: str
    updated_at:
      description: Last heartbeat as Nova stores it (UTC, no zone).
      type: str
    heartbeat_age:
      description: Seconds between the last heartbeat and the compute API's clock; null when unknown.
      type: float
  sample: {id: 5f0e9d5e-0b1c-4c47-9f5a-1b8c3c0d2e11, host: node-28, binary: nova-compute, zone: nova, state: down,
           status: enabled, forced_down: false, disabled_reason: null, updated_at: "2025-11-21T23:58:40.000000",
           heartbeat_age: 41.0}
computes:
  description: Every C(nova-compute) service of the cloud, with the same keys as RV(service).
  returned: always
  type: list
  elements: dict
schedulers:
  description: Every C(nova-scheduler) service, with the same keys as RV(service).
  returned: always
  type: list
  elements: dict
servers:
  description:
    - Every server whose host is O(host), in every project, as M(novaha.recovery.os_host_evacuate) reads it (id, name,
      project_id, status, vm_state, task_state, power_state, host, locked, locked_reason, flavor, image_id,
      volumes, ports, server_groups, metadata, fault ...), sorted by name.
  returned: always
  type: list
  elements: dict
tracked:
  description:
    - One snapshot per id in O(servers), in the same order; a server that no longer exists is reported
      with its V(id) and V(deleted=true).
  returned: always
  type: list
  elements: dict
migrations:
  description:
    - The evacuation migrations whose source is O(host), oldest first (id, uuid, instance_uuid, status,
      source_compute, dest_compute, created_at, updated_at).
  returned: always
  type: list
  elements: dict
summary:
  description: Counts of what was found.
  returned: always
  type: dict
  sample: {servers: 4, computes: 3, computes_down: 1, computes_down_percent: 33.3, schedulers_up: 1,
           migrations_unfinished: 0}
"""

from ansible_collections.novaha.recovery.plugins.module_utils._cloud import NovahaModule
from ansible_collections.novaha.recovery.plugins.module_utils._evacuation import Engine
from ansible_collections.novaha.recovery.plugins.module_utils._host_evacuation import read_host, read_tracked
from ansible_collections.novaha.recovery.plugins.module_utils._nova import RetryingReads, SdkNova, SystemClock
from ansible_collections.novaha.recovery.plugins.module_utils._service import find_compute_service


class HostInfo(NovahaModule):
    argument_spec = dict(
        host=dict(type='str', required=True),
        servers=dict(type='list', elements='str', default=[]),
        list_host_servers=dict(type='bool', default=True),
    )
    module_kwargs = dict(supports_check_mode=True)

    def run(self):
        host = self.params['host']
        # Fails with close matches when the host has no nova-compute service.
        nova = RetryingReads(SdkNova(self.conn), SystemClock())  # reads ride out a short outage, as the engine's do
        find_compute_service(nova, host)
        engine = Engine(nova)
        if self.params['list_host_servers']:
            self.results.update(read_host(engine, host, self.params['servers']))
        else:
            self.results.update(read_tracked(engine, host, self.params['servers']))
        self.exit(changed=False)


def main():
    HostInfo()()


if __name__ == '__main__':
    main()
