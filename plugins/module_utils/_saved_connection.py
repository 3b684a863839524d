# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The later modules of a run connect from what its first module saved: no openstacksdk configuration loaded.

No Ansible imports. A module of a run with ``auth_cache`` that connected through openstacksdk (``_cloud.connect``)
saves beside its token a *connection profile*: the endpoint each service's proxy used, the session's TLS settings
and timeout, keystoneauth's key of the credentials, and a digest of every file openstacksdk read the configuration
from. A later module with the same connection options, the same ``OS_*`` environment and unchanged files builds a
keystoneauth session and adapters from it and the cached token (``SavedConnection``): importing openstacksdk and
loading its configuration is about a quarter of a module process's start. Keystone (to revoke the token) is found in
the token's catalog. openstacksdk is still loaded when it is needed (``full``): to get a new token (the cached one
expires or is refused), and for another service the first module did not use.

- the key of a profile (options and environment) ............ ``profile_key``
- the digests of the configuration files ....................... ``file_digests``
- the profile of a connection ................................... ``describe``
- a connection from a profile and its token .................... ``SavedConnection``
"""

from __future__ import annotations

import hashlib
import json
import os

PROFILE_PREFIX = 'connection:'

# The options that choose the cloud, the credentials and the endpoints (``_cloud.cloud_argument_spec``).
CONNECTION_OPTIONS = ('cloud', 'auth', 'auth_type', 'region_name', 'interface', 'validate_certs', 'ca_cert', 'client_cert', 'client_key', 'api_timeout')

# The attribute names of an openstacksdk Connection the collection uses, and the service type of each.
SERVICE_TYPES = {
    'compute': 'compute',
    'placement': 'placement',
    'image': 'image',
    'block_storage': 'block-storage',
    'volume': 'block-storage',
    'network': 'network',
    'identity': 'identity',
}

# What an adapter is built with, as the openstacksdk proxy the first module used had it.
_ADAPTER_FIELDS = ('service_type', 'interface', 'region_name', 'default_microversion', 'connect_retries', 'status_code_retries', 'retriable_status_codes')


def profile_key(params, environ=None):
    """The key of the profile for these connection options and the ``OS_*`` variables of the environment (a digest:
    the options may hold passwords, and the cache file never holds them)."""
    environ = os.environ if environ is None else environ
    chosen = dict(
        options=dict((name, params.get(name)) for name in CONNECTION_OPTIONS),
        environment=sorted((k, v) for k, v in environ.items() if k.startswith('OS_')),
    )
    text = json.dumps(chosen, sort_keys=True, default=str)
    return PROFILE_PREFIX + hashlib.sha256(text.encode('utf-8')).hexdigest()


def file_digests(paths):
    """{path: sha256 of its bytes, or None when it cannot be read}: the files the configuration was read from."""
    digests = {}  # type: dict[str, str | None]
    for path in paths:
        try:
            with open(path, 'rb') as handle:
                digests[path] = hashlib.sha256(handle.read()).hexdigest()
        except (IOError, OSError):
            digests[path] = None
    return digests


def describe(conn, cache_id, config_files):
    """The profile of an openstacksdk Connection: its session's settings, one adapter per proxy it made (with the
    endpoint that proxy resolved: a versioned one where openstacksdk discovered it), the credentials' key and the
    digests of ``config_files``. None when the connection cannot be described (nothing saved then)."""
    session = conn.session
    services = {}
    for service_type, proxy in sorted(getattr(conn, '_proxies', {}).items()):
        try:
            endpoint = proxy.get_endpoint()
        except Exception:  # pylint: disable=broad-except  # a proxy whose endpoint is unknown is not saved
            continue
        if not endpoint:
            continue
        adapter = dict((field, getattr(proxy, field, None)) for field in _ADAPTER_FIELDS)
        adapter['retriable_status_codes'] = list(adapter['retriable_status_codes'] or []) or None
        adapter['endpoint'] = endpoint
        services[service_type] = adapter
    verify = getattr(session, 'verify', True)
    cert = getattr(session, 'cert', None)
    if not cache_id or not services or not isinstance(verify, (bool, str)):
        return None
    return dict(
        auth_key=cache_id,
        files=file_digests(config_files),
        session=dict(verify=verify, cert=list(cert) if isinstance(cert, tuple) else cert, timeout=getattr(session, 'timeout', None)),
        services=services,
    )


def find_profile(saved, key):
    """The profile stored under ``key`` in a cache file's data when every file it was read from is unchanged, else
    None."""
    profile = saved.get(key) if isinstance(saved, dict) else None
    if not isinstance(profile, dict) or not profile.get('auth_key') or not isinstance(profile.get('services'), dict):
        return None
    files = profile.get('files') or {}
    if file_digests(files) != files:
        return None
    return profile


class SavedConnection(object):
    """What the modules use of an openstacksdk Connection (``session``, a service's adapter by attribute name,
    ``has_service``), from a profile and the run's token. ``full()`` returns an openstacksdk Connection on the same
    token, made the first time it is needed: for a service the profile does not hold. ``renew(session)`` returns a
    new keystoneauth AccessInfo through openstacksdk's configuration (the token expired or was refused)."""

    def __init__(self, profile, state, app_name, full, renew):
        from keystoneauth1 import session as ksa_session

        self.profile = profile
        settings = profile.get('session') or {}
        cert = settings.get('cert')
        self.auth = saved_auth(profile['auth_key'], state, renew)
        self.session = ksa_session.Session(
            auth=self.auth,
            verify=settings.get('verify', True),
            cert=tuple(cert) if isinstance(cert, list) else cert,
            timeout=settings.get('timeout'),
            app_name=app_name,
        )
        self._full = full
        self._full_conn = None
        self._adapters = {}

    def full(self):
        if self._full_conn is None:
            self._full_conn = self._full(self.auth.get_auth_state())
        return self._full_conn

    def _adapter(self, service_type):
        if service_type not in self._adapters:
            from keystoneauth1 import adapter as ksa_adapter

            saved = dict(self.profile['services'][service_type])
            endpoint = saved.pop('endpoint')
            self._adapters[service_type] = ksa_adapter.Adapter(self.session, endpoint_override=endpoint, **saved)
        return self._adapters[service_type]

    def has_service(self, service_type):
        if service_type in self.profile['services']:
            return True
        return self.full().has_service(service_type)

    def _identity(self):
        """Keystone's v3 API from the token's catalog (as openstacksdk finds it, discovery included), in the
        interface and region of the saved services: the run's last module revokes its token there."""
        if 'identity' not in self._adapters:
            from keystoneauth1 import adapter as ksa_adapter

            some = next(iter(self.profile['services'].values()))
            self._adapters['identity'] = ksa_adapter.Adapter(
                self.session, service_type='identity', interface=some.get('interface'), region_name=some.get('region_name'), version='3'
            )
        return self._adapters['identity']

    def __getattr__(self, name):
        service_type = SERVICE_TYPES.get(name)
        if service_type is None or name.startswith('_'):
            raise AttributeError(name)
        if service_type in self.profile['services']:
            return self._adapter(service_type)
        if service_type == 'identity':
            return self._identity()
        return getattr(self.full(), name)


def saved_auth(cache_id, state, renew):
    """A keystoneauth identity plugin holding the cached token (``state``), keyed as the credentials that got it;
    a new token comes from ``renew(session)``."""
    from keystoneauth1.identity import base

    class SavedAuth(base.BaseIdentityPlugin):
        def __init__(self):
            super(SavedAuth, self).__init__(auth_url=None, reauthenticate=True)

        def get_cache_id(self):
            return cache_id

        def get_auth_ref(self, session, **kwargs):
            return renew(session)

    auth = SavedAuth()
    auth.set_auth_state(state)
    return auth
