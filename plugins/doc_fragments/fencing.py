# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# How to read and cut a host's power: the bmc and fence_levels options, written once for every module that
# needs them (argument spec: module_utils/_cloud.py bmc_argument_spec). docs/docsite/rst/fencing.rst has the details.


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  bmc:
    description:
      - How to reach the host's baseboard management controller - one fence level.
      - Omit it (or set O(bmc.type=none)) for a host without a usable BMC.
      - Every setting is checked before anything is asked of the BMC; a bad one fails the task naming it
        (for example C(bmc.address)) and the cause, and nothing is powered off or changed.
    type: dict
    suboptions: &level
      type:
        description:
          - V(redfish) talks HTTPS to the Redfish service (C(ComputerSystem.Reset) with C(ForceOff)).
          - V(ipmi) runs C(ipmitool -I lanplus) on the controller (C(chassis power status), C(chassis power off)).
          - V(fence_agent) runs an operator's fence agent (a PDU, a storage fence) that follows the ClusterLabs
            fence-agents API, see O(bmc.agent).
          - V(none) means there is no BMC to ask (O(bmc) only).
        type: str
        choices: [redfish, ipmi, fence_agent, none]
        required: true
      address:
        description:
          - Redfish - a host name, an IPv4 address or an IPv6 address (with or without brackets), optionally
            with C(:port), or a base URL such as V(https://10.0.0.27:8443) or V(https://[fd00::27]). Plain
            addresses are reached over HTTPS. A URL must not carry a path, a query or credentials.
          - IPMI - the host name or IP address of the BMC (an IPv6 address with or without brackets).
          - Fence agent - passed to the agent as C(ip=); optional.
          - Required for V(redfish) and V(ipmi).
        type: str
      port:
        description:
          - TCP port (Redfish; overrides the port of a URL in O(bmc.address)) or UDP port (IPMI, default V(623)),
            from 1 to 65535. Fence agent - passed as C(ipport=).
        type: int
      username:
        description:
          - BMC user name. Required for V(ipmi). Fence agent - passed as C(username=).
        type: str
      password:
        description:
          - BMC password. Never shown in results or errors. For IPMI it is handed to ipmitool in the
            E(IPMI_PASSWORD) environment variable (C(-E)), for a fence agent on its standard input
            (C(password=)), never on a command line.
        type: str
      system_id:
        description:
          - Redfish only. The id (or C(@odata.id) path) of the computer system of this host.
          - Default is the only member of C(/redfish/v1/Systems); the task fails when there are several.
          - A system that says it is another compute host of the cloud (its C(HostName), or a C(Name) that is
            another compute host's name) is refused as the BMC of another host.
        type: str
      validate_certs:
        description:
          - Redfish only. Whether to verify the BMC's TLS certificate.
        type: bool
        default: true
      ca_path:
        description:
          - Redfish only. A CA certificate bundle used to verify the BMC's TLS certificate.
        type: path
      timeout:
        description:
          - Seconds one BMC request (one HTTP request, or one ipmitool or fence agent run, which is then killed)
            may take.
        type: int
        default: 10
      cipher_suite:
        description:
          - IPMI only. The RMCP+ cipher suite (0 to 17) passed to ipmitool with C(-C). Default is ipmitool's own
            (V(17) for ipmitool 1.8.19 and later, V(3) before).
          - Set it when the BMC rejects ipmitool's default, for example V(3) for older BMCs.
        type: int
      agent:
        description:
          - Fence agent only. The absolute path of an executable that follows the ClusterLabs fence-agents API,
            for example C(/usr/sbin/fence_apc_snmp) for a PDU outlet or C(/usr/sbin/fence_scsi) for a storage
            fence, or an operator's own script.
          - "The contract: the options arrive on standard input, one C(name=value) a line - C(action)
            (C(status) or C(off)), C(ip), C(ipport), C(username), C(password) from the settings above, C(nodename)
            (the host), then O(bmc.options). For C(action=status) it exits 0 when the host is on, 2 when it is off, anything else
            when it cannot tell (standard error says why). For C(action=off) it exits 0 once the power is cut.
            It is killed after O(bmc.timeout) seconds."
        type: path
      options:
        description:
          - Fence agent only. More C(name=value) options for the agent, for example C(plug=12) (the outlet) or
            C(devices=/dev/sdb) given as a dictionary. C(action) and C(password) cannot be set here.
        type: dict
  fence_levels:
    description:
      - Several ways to read and cut the host's power, tried in order as pacemaker's fencing topology does,
        for example the Redfish BMC, then IPMI, then a PDU's fence agent. Each entry takes the suboptions of
        O(bmc) (V(none) excepted). The operator's attestation, where a module has one, is the last level.
      - A level that cannot give a fresh Off reading (unreachable, credentials rejected, an unknown state, or
        still On after its power-off command) hands over to the next. A level that reads On when the task
        may not power off ends the search - the host runs. The result says which level proved the host off
        and what each level asked before it said.
      - Mutually exclusive with O(bmc); O(bmc) is the one-level case.
    type: list
    elements: dict
    suboptions: *level
"""
