# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# What each attribute means, written once. A module names the fragments of the attributes it
# documents and gives, for each, only its own `support` and `details`; ansible-core merges the two.


class ModuleDocFragment(object):
    # Every module of the collection.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
"""

    # Modules with an action plugin of the same name.
    FLOW = r"""
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
  async:
    description: Supports being used with the C(async) keyword.
"""

    # Modules that say where they run.
    PLATFORM = r"""
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
"""
