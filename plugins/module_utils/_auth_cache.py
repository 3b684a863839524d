# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The token caches of runs (auth_cache files): what one holds, and whether its run is gone.

No Ansible imports. A run of the host_recovery role keeps an admin-scoped Keystone token in
``~/.ansible/tmp/novaha-recovery-RUN_ID.token`` (``_cloud.save_auth_state`` writes it, mode 0600). The run
revokes it when it ends; a run that was killed cannot, so the next run removes the caches of runs that are gone.
One function per decision:

- the run a cache file belongs to ........................... ``cache_run_id``
- the tokens a cache holds, and when each expires ........... ``cache_tokens``
- which runs hold a host now (a live heartbeat) ............. ``live_runs``
- whether a cache's run is gone, and what to revoke ......... ``judge_cache``
- ending this run's cache and pruning those of runs gone ..... ``TokenCaches``

A run is gone when every token of its cache has expired, or when its run id is in no live run marker (a marker
in a phase that holds the host, with a heartbeat younger than its lease) and no module of it used the file for
``IDLE_SECONDS`` (every module that uses the file touches it): a run still in its preflight holds no marker
yet, and may wait up to the role's host_recovery_wait_for_run (480 s) before it claims its host.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re
import time

from ansible_collections.novaha.recovery.plugins.module_utils._errors import NovahaError
from ansible_collections.novaha.recovery.plugins.module_utils._run import judge_holder, parse_marker

CACHE_PREFIX = 'novaha-recovery-'
CACHE_SUFFIX = '.token'
CACHE_GLOB = CACHE_PREFIX + '*' + CACHE_SUFFIX
IDLE_SECONDS = 900
_CACHE_NAME = re.compile(r'^%s(?P<run_id>[0-9A-Za-z_-]{1,32})%s$' % (re.escape(CACHE_PREFIX), re.escape(CACHE_SUFFIX)))


class CachedToken(object):
    """One token of a cache: the key of its credentials (keystoneauth's cache id), the token, its expiry."""

    def __init__(self, key, token, expires_at):
        self.key = key
        self.token = token
        self.expires_at = expires_at


class Verdict(object):
    """What to do with one cache file: ``remove`` it, after revoking ``revoke`` (tokens); ``reason`` in words."""

    def __init__(self, remove, reason, revoke=()):
        self.remove = remove
        self.reason = reason
        self.revoke = list(revoke)


def cache_run_id(path):
    """The run id in a cache file's name (``novaha-recovery-RUN_ID.token``), None for any other file."""
    found = _CACHE_NAME.match(os.path.basename(path))
    return found.group('run_id') if found else None


def _expiry(text):
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.strptime(text[:19], '%Y-%m-%dT%H:%M:%S')
    except ValueError:
        return None
    return moment.replace(tzinfo=datetime.timezone.utc)


def cache_tokens(text):
    """[CachedToken] of a cache file's text ({credentials key: keystoneauth auth state}). Raises ValueError when
    it is not such a file."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError('not a JSON object')
    tokens = []
    for key, state in data.items():
        state = json.loads(state) if isinstance(state, str) else state
        if not isinstance(state, dict) or not state.get('auth_token'):
            continue
        body = state.get('body') or {}
        token = body.get('token') if isinstance(body, dict) else None
        expires = (token or {}).get('expires_at') if isinstance(token, dict) else None
        if expires is None and isinstance(body, dict):
            expires = ((body.get('access') or {}).get('token') or {}).get('expires')  # Keystone v2
        tokens.append(CachedToken(key, state['auth_token'], _expiry(expires)))
    return tokens


def live_runs(services, now):
    """The run ids that hold a host now: their marker is in a holding phase with a heartbeat within its lease,
    judged on the API's clock ``now``."""
    live = set()
    for service in services:
        marker = parse_marker(service.get('disabled_reason'))
        if marker is not None and judge_holder(marker, None, now).kind == 'live':
            live.add(marker.run_id)
    return live


def judge_cache(run_id, tokens, idle, now, live, key, idle_limit=IDLE_SECONDS):
    """The Verdict on the cache of ``run_id`` (another run's) holding ``tokens``, last used ``idle`` seconds
    ago; ``live``: the run ids that hold a host now; ``key``: this module's credentials (only tokens of the same
    credentials are revoked: a token of other credentials is of another cloud, whose markers this run cannot
    read, and is left until it expires)."""
    unexpired = [t for t in tokens if t.expires_at is None or t.expires_at > now]
    if not unexpired:
        return Verdict(True, 'its run %s is gone: %s' % (run_id, 'every token in it has expired' if tokens else 'it holds no token'))
    if run_id in live:
        return Verdict(False, 'run %s holds a host (its heartbeat is live)' % run_id)
    if idle < idle_limit:
        return Verdict(
            False,
            'run %s used it %ds ago (a run that has not claimed its host yet holds no marker; it is judged after %ds unused)' % (run_id, idle, idle_limit),
        )
    if any(t.key != key for t in unexpired):
        return Verdict(False, 'it holds a token of other credentials (another cloud): left until it expires')
    return Verdict(True, 'its run %s is gone: it holds no host and was last used %ds ago' % (run_id, idle), revoke=[t.token for t in unexpired])


class TokenCaches(object):
    """Ending token caches: those of runs that are gone beside ``path`` (``prune``), then this run's own (``end``).

    Every outside effect is injected: ``revoke(token)`` asks Keystone to revoke a token and returns None, or why
    it is still valid; ``own_token()`` is the token the connection uses now (the cached one, unless it had
    expired; keystoneauth saves a new one in the file); ``read_live()`` returns (the run ids that hold a host, this
    connection's credentials key), or (None, None) when the markers cannot be read; ``warn(msg)``. ``removed`` and
    ``kept`` are what the modules return. ``check_mode``: say what would be removed, revoke and remove nothing."""

    def __init__(self, path, revoke, own_token, read_live, warn, check_mode=False, idle_timeout=IDLE_SECONDS, clock=time.time):
        self.path = os.path.abspath(path)
        self.revoke_one = revoke
        self.own_token = own_token
        self.read_live = read_live
        self.warn = warn
        self.check_mode = check_mode
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.removed = []
        self.kept = []

    def end(self):
        """Prune, then revoke every token of this run's cache (its own token last: revoking it ends the connection)
        and remove the file. Returns what was done, in words. A token that cannot be revoked is a warning (the file is
        removed anyway, so the token is nowhere on disk until it expires); a file that cannot be removed raises
        NovahaError."""
        pruned = self.prune()
        path = self.path
        if not os.path.exists(path):
            return 'no token cache at %s; %s' % (path, pruned)
        tokens = self.read(path)
        if self.check_mode:
            self.removed.append(dict(path=path, run_id=cache_run_id(path), revoked=0, reason='this run ends'))
            return 'check mode: would revoke %d tokens and remove %s; %s' % (len(tokens), path, pruned)
        revoked = 0
        if tokens:
            own = self.own_token()
            tokens = self.read(path)  # a token keystoneauth just got is in the file too
            for token in sorted(set(t.token for t in tokens), key=lambda t: t == own):
                revoked += self.revoke(token, path)
        self.remove(path)
        self.removed.append(dict(path=path, run_id=cache_run_id(path), revoked=revoked, reason='this run ends'))
        return 'revoked %d Keystone tokens and removed the token cache %s; %s' % (revoked, path, pruned)

    def prune(self):
        """Remove the caches of runs that are gone beside this one (``judge_cache``); returns what was done, in
        words. This run's own cache is kept."""
        others = sorted(p for p in glob.glob(os.path.join(os.path.dirname(self.path), CACHE_GLOB)) if p != self.path)
        now = datetime.datetime.now(datetime.timezone.utc)
        found = []
        for path in others:
            try:
                found.append((path, self.read(path, strict=True), self.clock() - os.stat(path).st_mtime))
            except (IOError, OSError, ValueError) as exc:
                self.kept.append(dict(path=path, run_id=cache_run_id(path), reason='cannot be read: %s' % exc))
        # The markers are read only when a cache's run may be gone while its tokens are still valid.
        needed = [f for f in found if f[2] >= self.idle_timeout and any(t.expires_at is None or t.expires_at > now for t in f[1])]
        live, key = self.read_live() if needed else (set(), None)
        for path, tokens, idle in found:
            verdict = judge_cache(cache_run_id(path), tokens, int(idle), now, live, key, self.idle_timeout)
            if live is None and verdict.revoke:
                verdict.remove, verdict.reason = False, 'the run markers could not be read'
            entry = dict(path=path, run_id=cache_run_id(path), reason=verdict.reason)
            if not verdict.remove:
                self.kept.append(entry)
                continue
            entry['revoked'] = 0
            if not self.check_mode:
                entry['revoked'] = sum(self.revoke(token, path) for token in verdict.revoke)
                self.remove(path)
            self.removed.append(entry)
        return '%s%d token caches of runs that are gone removed (%d tokens revoked), %d kept' % (
            'check mode: ' if self.check_mode else '',
            len(self.removed),
            sum(r.get('revoked', 0) for r in self.removed),
            len(self.kept),
        )

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
        problem = self.revoke_one(token)
        if problem:
            self.warn('a token of %s was not revoked (%s); it stays valid until it expires, its file is removed' % (path, problem))
            return 0
        return 1

    @staticmethod
    def remove(path):
        try:
            os.unlink(path)
        except OSError as exc:
            if os.path.exists(path):
                raise NovahaError('removing the token cache %s failed: %s' % (path, exc))
