#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is documentation only: novaha.recovery.report_files is carried out entirely by its action
# plugin, on the controller.

DOCUMENTATION = r"""
module: report_files
short_description: Write the files of a recovery report on the Ansible controller
version_added: 0.1.0
description:
  - Writes each of O(files) into the directory O(path) on the controller, creating the directory first,
    and removes the files listed in O(remove).
  - The role P(novaha.recovery.host_recovery#role) writes its snapshot and its report with it. It runs on the
    controller without starting a module process for each file, unlike M(ansible.builtin.copy) or
    M(ansible.builtin.template).
  - A file whose content is already what is asked is left alone (its modification time stays). Each new
    content is written to a temporary file in the same directory and renamed over the old one, so a
    reader never sees half a report.
author:
  - novaha.recovery maintainers (@novaha)
options:
  path:
    description:
      - The directory on the controller that receives O(files); created with its parents when missing.
    type: path
    required: true
  files:
    description:
      - File name (a plain name, no directory part) to its text content.
    type: dict
    default: {}
  mode:
    description:
      - Permissions of the files written.
    type: raw
    default: '0640'
  directory_mode:
    description:
      - Permissions of the directories created.
    type: raw
    default: '0750'
  remove:
    description:
      - Paths on the controller to remove once the files are written, for example a token file the run no
        longer needs. A path that does not exist is not an error.
    type: list
    elements: path
    default: []
attributes:
  action:
    support: full
  async:
    support: none
  check_mode:
    support: full
    details:
      - Reports what would be written or removed, and changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
  platform:
    details:
      - Always the controller, whatever host the task runs for.
    platforms: posix
notes:
  - The files are written by the user running C(ansible-playbook), on the controller, even when the task runs
    for another host.
seealso:
  - module: ansible.builtin.copy
  - module: ansible.builtin.template
extends_documentation_fragment:
  - novaha.recovery.attributes
  - novaha.recovery.attributes.flow
  - novaha.recovery.attributes.platform
"""

EXAMPLES = r"""
- name: Write the report of node-28
  novaha.recovery.report_files:
    path: /var/lib/novaha-recovery/reports/node-28-20261122T061500Z
    files:
      report.json: "{{ report | to_nice_json }}"
      report.md: "{{ lookup('ansible.builtin.template', 'report.md.j2') }}"
    remove:
      - ~/.ansible/tmp/novaha-recovery-0123456789.token
"""

RETURN = r"""
path:
  description: The directory, absolute.
  returned: always
  type: str
  sample: /var/lib/novaha-recovery/reports/node-28-20261122T061500Z
written:
  description: The files whose content changed (or would change in check mode), absolute paths.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/novaha-recovery/reports/node-28-20261122T061500Z/report.json]
removed:
  description: The paths of O(remove) that existed and were removed (or would be in check mode).
  returned: always
  type: list
  elements: str
  sample: [/root/.ansible/tmp/novaha-recovery-0123456789.token]
"""
