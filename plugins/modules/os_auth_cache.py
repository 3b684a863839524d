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

import datetime
import glob
import os
import time

from ansible_collections.novaha.recovery.plugins.module_utils._auth_cache import (
    CACHE_GLOB,
    cache_run_id,
    cache_tokens,
    judge_cache,
    live_runs,
)
from ansible_collections.novaha.recovery.plugins.module_utils._cloud import NovahaModule, auth_cache_key, revoke_token
from ansible_collections.novaha.recovery.plugins.module_utils._errors import NovahaError
from ansible_collections.novaha.recovery.plugins.module_utils._microversions import MV_SERVICES
from ansible_collections.novaha.recovery.plugins.module_utils._nova import SdkNova, query
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
        self.results.update(removed=[], kept=[])
        self.path = os.path.abspath(self.params['auth_cache'])  # type path: already expanded
        pruned = self.prune()
        if self.params['state'] == 'absent':
            self.end_own(pruned)
        self.exit(changed=bool(self.results['removed']), msg=pruned)

    # -- this run's cache ----------------------------------------------------------------------------------

    def end_own(self, pruned):
        """Revoke this run's tokens and remove its file; ``pruned`` says what was done to the other caches before
        (they are pruned first: this connection ends with its own token)."""
        path = self.path
        if not os.path.exists(path):
            self.exit(changed=bool(self.results['removed']), msg='no token cache at %s; %s' % (path, pruned))
        tokens = self.read(path)
        if self.check_mode:
            self.results['removed'].append(dict(path=path, run_id=cache_run_id(path), revoked=0, reason='this run ends'))
            self.exit(changed=True, msg='check mode: would revoke %d tokens and remove %s; %s' % (len(tokens), path, pruned))
        revoked = 0
        if tokens:
            own = self.conn.session.get_token()  # the cached token itself, unless it had expired
            tokens = self.read(path)  # a token keystoneauth just got is in the file too
            # Every other token first: revoking its own token ends this connection.
            for token in sorted(set(t.token for t in tokens), key=lambda t: t == own):
                revoked += self.revoke(token, path)
        self.params['auth_cache'] = None  # nothing saves the token again when the module ends
        self.remove(path)
        self.results['removed'].append(dict(path=path, run_id=cache_run_id(path), revoked=revoked, reason='this run ends'))
        self.exit(changed=True, msg='revoked %d Keystone tokens and removed the token cache %s; %s' % (revoked, path, pruned))

    # -- the caches of other runs ----------------------------------------------------------------------------

    def prune(self):
        """Remove the caches of runs that are gone beside this one (``judge_cache``); returns what was done, in words."""
        others = sorted(p for p in glob.glob(os.path.join(os.path.dirname(self.path), CACHE_GLOB)) if p != self.path)
        now = datetime.datetime.now(datetime.timezone.utc)
        found = []
        for path in others:
            try:
                found.append((path, self.read(path, strict=True), time.time() - os.stat(path).st_mtime))
            except (IOError, OSError, ValueError) as exc:
                self.results['kept'].append(dict(path=path, run_id=cache_run_id(path), reason='cannot be read: %s' % exc))
        live, key = self.live_and_key(found, now)
        for path, tokens, idle in found:
            verdict = judge_cache(cache_run_id(path), tokens, int(idle), now, live, key, self.params['idle_timeout'])
            if live is None and verdict.revoke:
                verdict.remove, verdict.reason = False, 'the run markers could not be read'
            entry = dict(path=path, run_id=cache_run_id(path), reason=verdict.reason)
            if not verdict.remove:
                self.results['kept'].append(entry)
                continue
            entry['revoked'] = 0
            if not self.check_mode:
                entry['revoked'] = sum(self.revoke(token, path) for token in verdict.revoke)
                self.remove(path)
            self.results['removed'].append(entry)
        removed = self.results['removed']
        return '%s%d token caches of runs that are gone removed (%d tokens revoked), %d kept' % (
            'check mode: ' if self.check_mode else '',
            len(removed),
            sum(r.get('revoked', 0) for r in removed),
            len(self.results['kept']),
        )

    def live_and_key(self, found, now):
        """(run ids holding a host, this module's credentials key); (None, None) when not needed or unreadable."""
        needed = [f for f in found if f[2] >= self.params['idle_timeout'] and any(t.expires_at is None or t.expires_at > now for t in f[1])]
        if not needed:
            return set(), None
        nova = SdkNova(self.conn)
        try:
            resp = nova.request('GET', query('/os-services', [('binary', 'nova-compute')]), MV_SERVICES)
        except NovahaError as exc:
            self.warn('the run markers could not be read (%s); only caches whose tokens have all expired are removed' % exc.msg)
            return None, None
        return live_runs((resp.body or {}).get('services') or [], resp.date), auth_cache_key(self.conn.session.auth)

    # -- steps -------------------------------------------------------------------------------------------------

    def read(self, path, strict=False):
        try:
            with open(path) as handle:
                return cache_tokens(handle.read())
        except (IOError, OSError, ValueError) as exc:
            if strict:
                raise
            self.warn('token cache %s cannot be read (%s); it is removed' % (path, exc))
            return []

    def revoke(self, token, path):
        problem = revoke_token(self.conn, token)
        if problem:
            self.warn('a token of %s was not revoked (%s); it stays valid until it expires, its file is removed' % (path, problem))
            return 0
        return 1

    def remove(self, path):
        try:
            os.unlink(path)
        except OSError as exc:
            if os.path.exists(path):
                self.fail('removing the token cache %s failed: %s' % (path, exc))


def main():
    AuthCache()()


if __name__ == '__main__':
    main()
