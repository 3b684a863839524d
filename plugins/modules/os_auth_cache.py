#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: os_auth_cache
short_description: End a run's shared Keystone token - revoke it and remove its file, or those of runs that are gone
version_added: 0.1.0
description:
  - The modules of a run share one Keystone token through O(auth_cache), a private file that holds an admin-scoped
    bearer token until it expires (an hour by default). This module ends such tokens.
  - O(state=absent) revokes every token in O(auth_cache) with Keystone (C(DELETE /v3/auth/tokens)) and removes
    the file, after pruning as O(state=pruned) does. The host_recovery role does it when a run ends, whatever its
    outcome, so that one module call ends its own token and those of the runs that are gone.
  - O(state=pruned) looks at the other token caches beside O(auth_cache) (C(novaha-recovery-RUN_ID.token)) and
    removes those of runs that are gone, revoking their tokens first; a run killed before it could end its own
    leaves one.
  - A run is gone when every token in its cache has expired, or when its run id is in no live run marker (a
    C(nova-compute) service disabled by that run, in a phase that holds the host, with a heartbeat younger than
    its lease) and no module used the file for O(idle_timeout) seconds. A cache holding a token of other
    credentials (another cloud) is left until its tokens expire.
  - A token that cannot be revoked (Keystone unreachable) is reported in a warning; its file is removed anyway,
    so the token is nowhere on disk until it expires.
author:
  - novaha.recovery maintainers (@novaha)
options:
  state:
    description:
      - V(absent) - remove the caches of runs that are gone as V(pruned) does, then revoke the tokens of
        O(auth_cache) and remove the file.
      - V(pruned) - remove the caches of runs that are gone beside O(auth_cache), revoking their tokens; O(auth_cache)
        itself is kept (its run goes on, this module authenticates with it).
    type: str
    choices: [absent, pruned]
    default: absent
  idle_timeout:
    description:
      - Seconds another run's cache must have been unused (every module that uses it touches it) before
        its run can be judged gone. A run in its preflight holds no marker yet and may wait for another run before
        it claims its host (the role's C(host_recovery_wait_for_run), 480 s by default).
    type: int
    default: 900
attributes:
  check_mode:
    support: full
    details:
      - Says which files would be removed and how many tokens revoked; nothing is revoked or removed.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - O(auth_cache) is required. With O(state=pruned) the run markers are read from the C(nova-compute) services
    (admin); when they cannot be read only caches whose tokens have all expired are removed, with a warning.
seealso:
  - module: novaha.recovery.os_recovery_run
extends_documentation_fragment:
  - novaha.recovery.attributes
  - novaha.recovery.openstack
"""

EXAMPLES = r"""
- name: Remove the token caches of recovery runs that are gone
  novaha.recovery.os_auth_cache:
    cloud: novaha-admin
    auth_cache: ~/.ansible/tmp/novaha-recovery-4f2a9c01de.token
    state: pruned

- name: End the run - revoke its Keystone token and remove the file
  novaha.recovery.os_auth_cache:
    cloud: novaha-admin
    auth_cache: ~/.ansible/tmp/novaha-recovery-4f2a9c01de.token
    state: absent
"""

RETURN = r"""
removed:
  description: The cache files removed (or, in check mode, that would be), each with its run id, why, and how many
    of its tokens Keystone revoked.
  returned: always
  type: list
  elements: dict
  sample: [{path: /home/ops/.ansible/tmp/novaha-recovery-4f2a9c01de.token, run_id: 4f2a9c01de, revoked: 1,
            reason: "its run 4f2a9c01de is gone: it holds no host and was last used 1210s ago"}]
kept:
  description: The other cache files left, each with its run id and why.
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.novaha.recovery.plugins.module_utils._cloud import NovahaModule
from ansible_collections.novaha.recovery.plugins.module_utils._options import at_least, option_error


class AuthCache(NovahaModule):
    argument_spec = dict(
        state=dict(type='str', default='absent', choices=['absent', 'pruned']),
        idle_timeout=dict(type='int', default=900),
    )
    module_kwargs = dict(supports_check_mode=True)
    option_rules = dict(idle_timeout=at_least(0, 'seconds'))

    def check_inputs(self):
        if not self.params['auth_cache']:
            raise option_error('auth_cache', None, 'is needed: the token cache of this run', shown='not given')

    def run(self):
        caches = self.token_caches(self.check_mode, self.params['idle_timeout'])
        self.results.update(removed=caches.removed, kept=caches.kept)  # on failure too: what was done before it
        # The other caches are pruned first: ending this run's own ends this connection.
        msg = self.end_token_cache(caches) if self.params['state'] == 'absent' else caches.prune()
        self.exit(changed=bool(caches.removed), msg=msg)


def main():
    AuthCache()()


if __name__ == '__main__':
    main()
