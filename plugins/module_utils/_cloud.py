# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared plumbing of the collection's modules: one argument spec, one way to connect, one way to fail.

The options carry openstack.cloud's names so clouds.yaml, OS_* variables and module_defaults carry over.
Every OpenStack error reaches the operator through ``describe_api_error``: what was being done, the cause,
the HTTP status and the request id an operator greps for in the Nova logs.
"""

import contextlib
import importlib.util
import json
import logging
import os
import re
import socket
import ssl
import sys
import time
import traceback
from urllib.error import HTTPError, URLError
from urllib.parse import urljoin, urlsplit

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError, open_url

from ansible_collections.novaha.recovery.plugins.module_utils._auth_cache import IDLE_SECONDS, TokenCaches, live_runs
from ansible_collections.novaha.recovery.plugins.module_utils._errors import (
    KIND_API,
    KIND_CONFIGURATION,
    KIND_FORBIDDEN,
    KIND_NOT_FOUND,
    KIND_UNAUTHORIZED,
    KIND_UNREACHABLE,
    MissingLibraryError,
    NovahaError,
)
from ansible_collections.novaha.recovery.plugins.module_utils._fencing import (
    CAUSE_CONFIG,
    FenceAgent,
    IpmiBmc,
    RedfishBmc,
    TransportError,
    level_options,
    validate_level,
)
from ansible_collections.novaha.recovery.plugins.module_utils._nova import SdkNova, backoff
from ansible_collections.novaha.recovery.plugins.module_utils._options import (
    at_least,
    check_options,
    conflict_error,
    option_error,
)
from ansible_collections.novaha.recovery.plugins.module_utils._saved_connection import (
    SavedConnection,
    describe,
    find_profile,
    profile_key,
)
from ansible_collections.novaha.recovery.plugins.module_utils._service import compute_services

# openstacksdk is imported when a module first needs it (``sdk()``): a later module of a run that connects from the
# profile its first module saved (``_saved_connection``) does without it.
try:
    import keystoneauth1.exceptions as ksa_exc

    if importlib.util.find_spec('openstack') is None:
        raise ImportError('No module named openstack')
except ImportError:
    HAS_OPENSTACKSDK = False
    OPENSTACKSDK_IMPORT_ERROR = traceback.format_exc()  # type: str | None
else:
    HAS_OPENSTACKSDK = True
    OPENSTACKSDK_IMPORT_ERROR = None


def sdk():
    """openstacksdk (with its config, connection and exceptions modules), imported on first use; MissingLibraryError
    when it cannot be."""
    try:
        import openstack
        import openstack.config
        import openstack.connection
        import openstack.exceptions
    except ImportError:
        raise MissingLibraryError('openstacksdk', 'connecting to the cloud', traceback.format_exc())
    return openstack


APP_NAME = 'novaha.recovery'

# Keys whose values are secrets wherever they appear in a cloud configuration.
_SECRET_KEY = re.compile(r'(password|secret|token|passcode|client_key|^key$)', re.IGNORECASE)


def cloud_argument_spec():
    """The shared options, named as in openstack.cloud (documented in doc_fragments/openstack.py)."""
    return dict(
        cloud=dict(type='raw'),
        auth=dict(type='dict', no_log=True),
        auth_type=dict(type='str'),
        region_name=dict(type='str'),
        interface=dict(type='str', default='public', choices=['public', 'internal', 'admin'], aliases=['endpoint_type']),
        validate_certs=dict(type='bool', aliases=['verify']),
        ca_cert=dict(type='str', aliases=['cacert']),
        client_cert=dict(type='str', aliases=['cert']),
        client_key=dict(type='str', no_log=True, aliases=['key']),
        api_timeout=dict(type='int'),
        auth_retry_timeout=dict(type='int', default=60),
        sdk_log_path=dict(type='str'),
        sdk_log_level=dict(type='str', default='INFO', choices=['INFO', 'DEBUG']),
        auth_cache=dict(type='path'),
    )


# ---------------------------------------------------------------------------------------------------------
# Secrets


def collect_secrets(value, found=None):
    """Every secret-looking string inside a (nested) cloud configuration, so results can mask them."""
    found = set() if found is None else found
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                collect_secrets(item, found)
            elif item not in (None, '') and _SECRET_KEY.search(str(key)):
                found.add(str(item))
    elif isinstance(value, list):
        for item in value:
            collect_secrets(item, found)
    return found


# A JSON member whose key names a secret ("adminPass", "password", "application_credential_secret", "token"
# ...) and whose value is a string, as keystoneauth logs request and response bodies.
_SECRET_MEMBER = re.compile(r'("[A-Za-z_-]*(?:pass|secret|token)[A-Za-z_-]*"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
REDACTED = '********'


def redact(text, secrets):
    """``text`` with every value of ``secrets`` and every secret JSON member replaced by ``********``."""
    for secret in sorted((s for s in secrets if isinstance(s, str) and s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _SECRET_MEMBER.sub(r'\1"%s"' % REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter for the SDK log file: every record is written with ``redact`` applied. ``secrets`` is
    read at each record (the module adds the cloud's passwords and the token once it has them)."""

    def __init__(self, secrets):
        super(RedactingFilter, self).__init__()
        self.secrets = secrets

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # pylint: disable=broad-except
            message = str(record.msg)
        record.msg, record.args = redact(message, self.secrets), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


# ---------------------------------------------------------------------------------------------------------
# Errors


def _response_request_id(response):
    if response is None or getattr(response, 'headers', None) is None:
        return None
    headers = response.headers
    return headers.get('x-compute-request-id') or headers.get('x-openstack-request-id')


def _http_facts(exc):
    """(status, request_id, server_message) of the first exception in the chain that came from HTTP."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        status = getattr(exc, 'status_code', None) or getattr(exc, 'http_status', None)
        response = getattr(exc, 'response', None)
        if status is None and response is not None:
            status = getattr(response, 'status_code', None)
        if status is not None:
            request_id = _response_request_id(response) or getattr(exc, 'request_id', None)
            detail = getattr(exc, 'details', None) or getattr(exc, 'message', None) or str(exc)
            return int(status), request_id, str(detail).strip()
        exc = exc.__cause__ or exc.__context__
    return None, None, None


def _exception_kind(exc):
    names = set()  # type: set
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names.update(cls.__name__ for cls in type(exc).__mro__)
        exc = exc.__cause__ or exc.__context__
    return names


def describe_api_error(exc, doing):
    """Turn an openstacksdk / keystoneauth exception into (msg, details) for fail_json.

    ``doing`` names the object and the action, for example
    "forcing down the nova-compute service of node-28". The message says what failed and why; details
    carry ``http_status``, ``request_id`` (Nova's x-compute-request-id when present) and ``kind``.
    """
    status, request_id, detail = _http_facts(exc)
    kinds = _exception_kind(exc)
    text = detail or str(exc) or type(exc).__name__

    kind = KIND_API
    if status == 401 or 'Unauthorized' in kinds:
        cause = 'the cloud rejected the credentials (check auth / the clouds.yaml entry, the password and the project and domain names): %s' % text
        kind = KIND_UNAUTHORIZED
    elif status == 403:
        cause = 'forbidden; this needs an account with the admin role: %s' % text
        kind = KIND_FORBIDDEN
    elif status == 404:
        cause = 'not found: %s' % text
        kind = KIND_NOT_FOUND
    elif status is not None:
        cause = text
    elif kinds & {'ConnectTimeout'}:
        cause = 'the API did not answer in time (unreachable or overloaded): %s' % text
        kind = KIND_UNREACHABLE
    elif kinds & {'SSLError'}:
        cause = 'TLS verification failed (see validate_certs / ca_cert): %s' % text
        kind = KIND_CONFIGURATION
    elif kinds & {'ConnectFailure', 'ConnectionError', 'UnknownConnectionError'}:
        cause = 'the API is unreachable: %s' % text
        kind = KIND_UNREACHABLE
    elif kinds & {'EndpointNotFound', 'CatalogException'}:
        cause = 'no matching endpoint in the service catalog (check region_name and interface): %s' % text
        kind = KIND_CONFIGURATION
    elif kinds & {'MissingRequiredOptions', 'MissingAuthPlugin', 'ConfigException', 'OpenStackConfigException', 'NoMatchingPlugin'}:
        cause = 'the cloud configuration is incomplete or invalid: %s' % text
        kind = KIND_CONFIGURATION
    else:
        cause = text

    msg = '%s failed: %s' % (doing, cause)
    facts = []
    if status is not None:
        facts.append('HTTP %s' % status)
    if request_id:
        facts.append('request id %s' % request_id)
    if facts:
        msg += ' (%s)' % ', '.join(facts)
    return msg, dict(http_status=status, request_id=request_id, kind=kind)


def _api_exceptions():
    if not HAS_OPENSTACKSDK:
        return ()
    # openstacksdk's exceptions only once it was imported: before, none of them can have been raised.
    sdk_exceptions = sys.modules.get('openstack.exceptions')
    if sdk_exceptions is None:
        return (ksa_exc.ClientException,)
    return (sdk_exceptions.SDKException, ksa_exc.ClientException)


# ---------------------------------------------------------------------------------------------------------
# Connection


def connection_kwargs(params):
    """openstacksdk keyword arguments from the shared options (raises NovahaError on contradictions)."""
    cloud = params.get('cloud')
    if isinstance(cloud, dict):
        clashing = [
            name
            for name in ('auth', 'auth_type', 'region_name', 'validate_certs', 'ca_cert', 'client_cert', 'client_key', 'api_timeout')
            if params.get(name) is not None
        ]
        if params.get('interface') not in (None, 'public'):
            clashing.append('interface')
        if clashing:
            raise conflict_error(
                clashing[0], 'cloud', 'cloud is a complete cloud configuration (a dictionary), so %s must not also be given' % ', '.join(clashing)
            )
        return dict(cloud)
    if cloud is not None and not isinstance(cloud, str):
        raise option_error('cloud', None, 'must be the name of a cloud in clouds.yaml or a dictionary', shown='a %s' % type(cloud).__name__)
    kwargs = dict(
        cloud=cloud,
        auth_type=params.get('auth_type'),
        auth=params.get('auth'),
        region_name=params.get('region_name'),
        interface=params.get('interface'),
        verify=params.get('validate_certs'),
        cacert=params.get('ca_cert'),
        cert=params.get('client_cert'),
        key=params.get('client_key'),
        api_timeout=params.get('api_timeout'),
    )
    return dict((k, v) for k, v in kwargs.items() if v is not None)


def clouds_yaml_files():
    """The files openstacksdk reads named clouds from, in its order (E(OS_CLIENT_CONFIG_FILE) first)."""
    files = list(getattr(sdk().config.loader, 'CONFIG_FILES', []))
    if os.environ.get('OS_CLIENT_CONFIG_FILE'):
        files.insert(0, os.environ['OS_CLIENT_CONFIG_FILE'])
    return files


def config_files():
    """Every file openstacksdk reads a cloud's configuration from (clouds, secure, vendor files; those named by
    E(OS_CLIENT_CONFIG_FILE) and E(OS_CLIENT_SECURE_FILE)), existing or not: a saved connection profile is used only
    while none of them changed."""
    loader = sdk().config.loader
    files = clouds_yaml_files()
    for name in ('SECURE_FILES', 'VENDOR_FILES'):
        files.extend(getattr(loader, name, []))
    if os.environ.get('OS_CLIENT_SECURE_FILE'):
        files.append(os.environ['OS_CLIENT_SECURE_FILE'])
    return sorted(set(files))


def cloud_name_error(cloud, files=None, region_name=None):
    """Why the cloud named ``cloud`` (in ``region_name``) cannot be used, as a NovahaError naming the option and
    the file; None when the first clouds.yaml openstacksdk reads has it (the error is then elsewhere).

    openstacksdk skips a clouds.yaml it cannot parse and then says only that the cloud was not found."""
    import yaml  # openstacksdk's own dependency

    files = clouds_yaml_files() if files is None else files
    existing = [f for f in files if os.path.exists(f)]
    if not existing:
        return NovahaError(
            "cloud '%s' cannot be found: there is no clouds.yaml (looked for %s). Nothing was changed" % (cloud, ', '.join(files[:4])),
            kind=KIND_CONFIGURATION,
            option='cloud',
        )
    path = existing[0]
    try:
        with open(path) as handle:
            data = json.load(handle) if path.endswith('.json') else yaml.safe_load(handle)
    except (IOError, OSError) as exc:
        return NovahaError(
            "cloud '%s': the clouds.yaml %s cannot be read: %s. Nothing was changed" % (cloud, path, exc.strerror or exc),
            kind=KIND_CONFIGURATION,
            option='cloud',
        )
    except (ValueError, yaml.YAMLError) as exc:
        return NovahaError(
            "cloud '%s': the clouds.yaml %s is not valid YAML: %s. Nothing was changed" % (cloud, path, ' '.join(str(exc).split())),
            kind=KIND_CONFIGURATION,
            option='cloud',
        )
    clouds = data.get('clouds') if isinstance(data, dict) else None
    if not isinstance(clouds, dict):
        return NovahaError(
            "cloud '%s': the clouds.yaml %s has no clouds: mapping. Nothing was changed" % (cloud, path), kind=KIND_CONFIGURATION, option='cloud'
        )
    if cloud not in clouds:
        return NovahaError(
            "cloud '%s' is not in the clouds.yaml %s (its clouds: %s). Nothing was changed"
            % (cloud, path, ', '.join(sorted(str(c) for c in clouds)) or 'none'),
            kind=KIND_CONFIGURATION,
            option='cloud',
        )
    entry = clouds[cloud] if isinstance(clouds[cloud], dict) else {}
    regions = [r.get('name') if isinstance(r, dict) else r for r in entry.get('regions') or []]  # type: list
    regions = [str(r) for r in regions or [entry.get('region_name')] if r]
    if region_name and regions and region_name not in regions:
        return NovahaError(
            "region_name is '%s': cloud '%s' has the regions %s (names are case sensitive). Nothing was changed" % (region_name, cloud, ', '.join(regions)),
            kind=KIND_CONFIGURATION,
            option='region_name',
            value=region_name,
        )
    return None


def cloud_region(params, secrets=None):
    """openstacksdk's CloudRegion for the connection options (clouds.yaml found as openstacksdk does,
    E(OS_CLIENT_CONFIG_FILE) first); ``secrets`` (a set) receives the passwords of the configuration. Raises
    NovahaError with a readable cause."""
    openstack = sdk()
    kwargs = connection_kwargs(params)
    cloud = kwargs.pop('cloud', None)
    try:
        region = openstack.config.get_cloud_region(cloud=cloud, app_name=APP_NAME, **kwargs)
    except _api_exceptions() as exc:
        named = (
            cloud_name_error(cloud, region_name=kwargs.get('region_name'))
            if isinstance(cloud, str) and isinstance(exc, openstack.exceptions.ConfigException)
            else None
        )
        if named is not None:
            raise named
        msg, details = describe_api_error(exc, 'connecting to %s' % _where(params))
        raise NovahaError(msg, option=_credentials(params), **details)
    if secrets is not None:
        secrets.update(collect_secrets(region.config))
    return region


def _where(params):
    cloud = params.get('cloud')
    return "cloud '%s'" % cloud if isinstance(cloud, str) else 'the cloud'


def _credentials(params):
    return 'auth' if params.get('auth') else 'cloud'


def connect(params, warn=None, secrets=None):
    """An authenticated connection: an openstack.connection.Connection, or a ``SavedConnection`` (see below).
    Raises NovahaError with a readable cause.

    With ``auth_cache``, the token an earlier module of the run saved there is used while it is valid
    (keystoneauth authenticates again when it has expired, or when the API refuses it), and a new one is saved.
    When that module also saved the profile of its connection (``save_profile``) for the same options,
    environment and configuration files, the connection is made from it without loading openstacksdk
    (``_saved_connection``); not when ``sdk_log_path`` asks for openstacksdk's log.
    ``secrets`` (a set) receives the passwords of the cloud configuration and the token, for redaction.
    """
    connection_kwargs(params)  # contradicting options fail before anything else
    secrets = set() if secrets is None else secrets
    cache = params.get('auth_cache')
    if cache and not params.get('sdk_log_path'):
        conn = _saved_connect(params, cache, secrets)
        if conn is not None:
            return conn
    region = cloud_region(params, secrets)
    try:
        conn = sdk().connection.Connection(config=region)
        loaded = load_auth_state(cache, conn.session.auth) if cache else None
        # Authenticate now so a bad password fails here, named as such, not inside the first API call.
        token = authenticate(conn.session, params.get('auth_retry_timeout'))
    except _api_exceptions() as exc:
        raise _connect_error(params, exc)
    if token:
        secrets.add(token)
    if cache:
        problem = save_auth_state(cache, conn.session.auth, loaded)
        if problem and warn is not None:
            warn('auth_cache %s not used: %s' % (cache, problem))
    return conn


def _connect_error(params, exc):
    where, credentials = _where(params), _credentials(params)
    msg, details = describe_api_error(exc, 'connecting to %s' % where)
    if details['http_status'] == 404:
        # Keystone answers 404 to a token it no longer knows (expired, revoked) given as the credentials.
        msg, details['kind'] = (
            'connecting to %s failed: Keystone refused the authentication as not found: '
            'an expired or revoked token, an unknown project, or an auth_url that is not '
            "Keystone's (check %s) (HTTP 404%s)"
            % (
                where,
                credentials if credentials == 'auth' else 'the clouds.yaml entry',
                ', request id %s' % details['request_id'] if details['request_id'] else '',
            ),
            KIND_UNAUTHORIZED,
        )
    return NovahaError(msg, option=credentials, **details)


def _saved_connect(params, cache, secrets):
    """A SavedConnection from the profile and the token in ``cache``, or None (no usable profile: the module
    connects through openstacksdk)."""
    saved = _read_cache(cache)
    profile = find_profile(saved, profile_key(params)) if saved else None
    state = saved.get(profile['auth_key']) if profile else None
    if not isinstance(state, str):
        return None
    made = {}

    def region():
        if 'region' not in made:
            made['region'] = cloud_region(params, secrets)
        return made['region']

    def renew(session):
        # The cached token expired or was refused: a new one with the credentials of the configuration.
        if 'auth' not in made:
            made['auth'] = region().get_auth()
        return made['auth'].get_auth_ref(session)

    def full(state):
        conn = sdk().connection.Connection(config=region())
        conn.session.auth.set_auth_state(state)
        return conn

    try:
        conn = SavedConnection(profile, state, APP_NAME, full, renew)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    try:
        token = authenticate(conn.session, params.get('auth_retry_timeout'))
    except _api_exceptions() as exc:
        raise _connect_error(params, exc)
    if token:
        secrets.add(token)
    try:
        os.utime(cache)  # its modification time says when a module of its run last used it
    except OSError:
        pass
    return conn


def save_profile(path, params, conn):
    """Save the profile of ``conn`` (an openstacksdk Connection that made its proxies) in ``path``, for the run's
    later modules (``_saved_connect``). Returns None, or why nothing was saved."""
    if isinstance(conn, SavedConnection):
        return None
    profile = describe(conn, auth_cache_key(conn.session.auth), config_files())
    if profile is None:
        return 'the connection cannot be described'
    key = profile_key(params)
    saved = _read_cache(path)
    if saved is None or saved.get(key) == profile:
        return None if saved is not None else 'no token was saved in it'
    return _write_cache(path, key, profile)


# Keystone that fails transiently (no answer, 500, 502, 503, 504) is asked again for this long, with backoff, before
# a module gives up connecting: a recovery launched during a short control-plane outage waits it out.
CONNECT_RETRY_SECONDS = 60.0


def _keystone_transient(exc):
    if isinstance(exc, ksa_exc.ConnectionError):
        return True
    return getattr(exc, 'http_status', None) in (500, 502, 503, 504)


def authenticate(session, budget=None, clock=time.monotonic, sleep=time.sleep):
    """Get a token (the cached one when valid), asking Keystone again while it fails transiently, at most
    ``budget`` seconds (CONNECT_RETRY_SECONDS); a refusal (wrong password, no such project) fails at once."""
    budget = CONNECT_RETRY_SECONDS if budget is None else budget
    start = clock()
    failures = 0
    while True:
        try:
            return session.get_token()
        except ksa_exc.ClientException as exc:
            delay = backoff(failures, cap=8.0)
            if not _keystone_transient(exc) or clock() + delay - start > budget:
                raise
        sleep(delay)
        failures += 1


# ---------------------------------------------------------------------------------------------------------
# One Keystone token for the modules of a run (auth_cache)


def auth_cache_key(auth):
    """keystoneauth's hash of the credentials, so a token is never used for other credentials; None when the
    auth plugin cannot say."""
    try:
        return auth.get_cache_id()
    except (AttributeError, NotImplementedError):
        return None


def revoke_token(conn, token):
    """Revoke ``token`` with Keystone (DELETE /v3/auth/tokens) through ``conn``'s session. Returns None when
    Keystone no longer accepts it (revoked now, or expired or revoked before), else why it is still valid."""
    try:
        resp = conn.identity.delete('/auth/tokens', headers={'X-Subject-Token': token}, raise_exc=False)
    except _api_exceptions() as exc:
        return describe_api_error(exc, 'revoking the token')[0]
    if resp.status_code in (200, 204, 404):
        return None
    return 'Keystone answered HTTP %s%s' % (resp.status_code, ' (request id %s)' % _response_request_id(resp) if _response_request_id(resp) else '')


def _private_dir_problem(path):
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return 'cannot read directory %s: %s' % (path, exc)
    if mode & 0o077:
        return 'directory %s is open to other users (mode %o); a token is kept only in a private one' % (path, mode & 0o777)
    return None


def _read_cache(path):
    """The data of a cache file ({key: state or profile}), or None: no file, unreadable, or in a directory open to
    other users."""
    if _private_dir_problem(os.path.dirname(path) or '.'):
        return None
    try:
        with open(path) as handle:
            saved = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def _write_cache(path, key, value):
    """Set ``key`` to ``value`` in the cache file ``path`` (mode 0600, its directory 0700 when created; written
    whole, then renamed). Returns None, or why nothing was saved."""
    parent = os.path.dirname(path) or '.'
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        problem = _private_dir_problem(parent)
        if problem:
            return problem
        try:
            with open(path) as handle:
                saved = json.load(handle)
            saved = saved if isinstance(saved, dict) else {}
        except (IOError, OSError, ValueError):
            saved = {}
        saved[key] = value
        partial = '%s.%d' % (path, os.getpid())
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as handle:
            json.dump(saved, handle)
        os.replace(partial, path)
    except (IOError, OSError) as exc:
        return str(exc)
    return None


def load_auth_state(path, auth):
    """Give ``auth`` the state (token and catalog) saved in ``path`` for the same credentials. Returns the
    state given, or None (no file, other credentials, unreadable: the module authenticates as usual).
    A file used is touched: its modification time says when a module of its run last used it."""
    key = auth_cache_key(auth)
    saved = _read_cache(path) if key else None
    state = saved.get(key) if saved else None
    if not state:
        return None
    try:
        auth.set_auth_state(state)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    try:
        os.utime(path)
    except OSError:
        pass
    return state


def save_auth_state(path, auth, loaded=None):
    """Save the state of ``auth`` in ``path`` unless it is the one loaded. Returns None, or why nothing was saved."""
    key = auth_cache_key(auth)
    if not key:
        return 'this auth type cannot share its token'
    state = auth.get_auth_state()
    if not state or state == loaded:
        return None
    return _write_cache(path, key, state)


# ---------------------------------------------------------------------------------------------------------
# Microversions and the compute API


# ---------------------------------------------------------------------------------------------------------
# HTTP for BMCs (Redfish) on ansible.module_utils.urls: no extra dependency on the controller


MAX_BMC_REDIRECTS = 5


def _origin(url):
    parts = urlsplit(url)
    default = {'https': 443, 'http': 80}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or '').lower(), parts.port or default)


def bmc_http(validate_certs=True, ca_path=None):
    """An ``http(method, url, headers, body, timeout, auth)`` function for _fencing.RedfishBmc.

    Returns (status, body text) for every HTTP answer; raises TransportError when none came back.
    BMCs sit on management networks: proxy variables and ~/.netrc are deliberately not used.
    Redirects are followed here, not by urllib (which would carry the Authorization header anywhere): only
    for GET and HEAD, only to the same scheme, host and port; a redirect elsewhere is refused, so the basic
    auth credentials never reach another host (or go out over plain http).
    """

    def once(method, url, headers, body, timeout, auth):
        username, password = auth if auth else (None, None)
        try:
            response = open_url(
                url,
                data=body,
                headers=headers,
                method=method,
                timeout=timeout,
                validate_certs=validate_certs,
                ca_path=ca_path,
                url_username=username,
                url_password=password,
                force_basic_auth=bool(username),
                use_proxy=False,
                use_netrc=False,
                follow_redirects='none',
                http_agent=APP_NAME,
            )
            return response.getcode(), to_text(response.read(), errors='surrogate_or_replace'), None
        except HTTPError as exc:
            location = None
            if 300 <= exc.code < 400:
                location = (exc.headers.get('Location') if exc.headers is not None else None) or exc.filename
            try:
                payload = to_text(exc.read(), errors='surrogate_or_replace')
            except Exception:  # the body of an error answer is optional
                payload = ''
            return exc.code, payload, location
        except (socket.timeout, TimeoutError) as exc:
            raise TransportError(to_text(exc) or 'timed out', timed_out=True)
        except URLError as exc:
            reason = exc.reason
            timed_out = isinstance(reason, (socket.timeout, TimeoutError))
            if isinstance(reason, ssl.SSLError):
                reason = 'TLS: %s (see bmc.validate_certs / bmc.ca_path)' % reason
            raise TransportError(to_text(reason), timed_out=timed_out)
        except (UrlsConnectionError, ssl.SSLError, OSError) as exc:
            raise TransportError(to_text(exc))

    def http(method, url, headers=None, body=None, timeout=10, auth=None):
        for _hop in range(MAX_BMC_REDIRECTS + 1):
            status, payload, location = once(method, url, headers, body, timeout, auth)
            if not location:
                return status, payload
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                scheme, host, port = _origin(target)
                raise TransportError(
                    'the BMC redirected to %s://%s:%s, another host or scheme; not followed, so '
                    'the credentials were not sent there (give the BMC\'s own address in '
                    'bmc.address)' % (scheme, host, port),
                    cause=CAUSE_CONFIG,
                )
            if method not in ('GET', 'HEAD'):
                return status, payload
            url = target
        raise TransportError('the BMC redirected more than %d times' % MAX_BMC_REDIRECTS, cause=CAUSE_CONFIG)

    return http


# ---------------------------------------------------------------------------------------------------------
# Fence levels: the options, written once for every module that reads a host's power


def bmc_argument_spec():
    """The ``bmc`` and ``fence_levels`` options (documented in doc_fragments/fencing.py)."""
    level = dict(
        type=dict(type='str', required=True, choices=['redfish', 'ipmi', 'fence_agent', 'none']),
        address=dict(type='str'),
        port=dict(type='int'),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        system_id=dict(type='str'),
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        timeout=dict(type='int', default=10),
        cipher_suite=dict(type='int'),
        agent=dict(type='path'),
        options=dict(type='dict'),
    )
    return dict(
        bmc=dict(type='dict', options=level),
        fence_levels=dict(type='list', elements='dict', options=level),
    )


def build_fence_levels(params, host=None, compute_hosts=()):
    """The fence levels of ``params`` (``fence_levels``, else ``bmc``), each checked (BmcConfigError names the
    bad option before anything is asked) and built: RedfishBmc, IpmiBmc or FenceAgent."""
    built = []  # type: list
    for option, spec in level_options(params):
        settings = validate_level(spec, option)
        kind = settings['type']
        if kind == 'redfish':
            built.append(
                RedfishBmc(
                    settings['address'],
                    bmc_http(settings['validate_certs'], settings['ca_path']),
                    username=settings['username'],
                    password=settings['password'],
                    system_id=settings['system_id'],
                    timeout=settings['timeout'],
                    host=host,
                    compute_hosts=compute_hosts,
                )
            )
        elif kind == 'ipmi':
            built.append(
                IpmiBmc(
                    settings['address'],
                    settings['username'],
                    settings['password'],
                    port=settings['port'],
                    cipher_suite=settings['cipher_suite'],
                    timeout=settings['timeout'],
                )
            )
        else:
            built.append(
                FenceAgent(
                    settings['agent'],
                    options=settings['options'],
                    address=settings['address'],
                    port=settings['port'],
                    username=settings['username'],
                    password=settings['password'],
                    timeout=settings['timeout'],
                    host=host,
                )
            )
    return built


# ---------------------------------------------------------------------------------------------------------
# The module base class


class _ConfiguredModule(AnsibleModule):
    """AnsibleModule whose own validation failures (a wrong type, an unknown or missing option) carry
    ``kind: configuration`` like the collection's other option errors."""

    validating = True

    def fail_json(self, msg, **kwargs):
        if self.validating:
            kwargs.setdefault('kind', KIND_CONFIGURATION)
        super(_ConfiguredModule, self).fail_json(msg, **kwargs)


# The options of every module that the argument spec cannot check (see _options).
CLOUD_OPTION_RULES = dict(api_timeout=at_least(1, 'seconds'), auth_retry_timeout=at_least(0, 'seconds'))


class NovahaModule(object):
    """Base of the collection's modules.

    Subclasses set ``argument_spec`` (their own options), ``module_kwargs`` (supports_check_mode,
    required_if, mutually_exclusive ...), ``option_rules`` (ranges and patterns of their options, see
    _options; checked before ``run()``), optionally ``check_inputs()`` (raises a NovahaError for options
    that cannot go together or cannot be used, before connecting), and implement ``run()``; the module file ends with
    ``def main(): MyModule()()``. Inside ``run()``: ``self.conn`` (connects on first use),
    ``self.api(doing)`` as a context manager around SDK calls, ``self.exit(**result)``,
    ``self.fail(msg, **details)``.
    """

    argument_spec = {}  # type: dict
    module_kwargs = {}  # type: dict
    option_rules = {}  # type: dict
    needs_cloud = True

    def __init__(self):
        spec = cloud_argument_spec() if self.needs_cloud else {}
        spec.update(self.argument_spec)
        self.ansible = _ConfiguredModule(argument_spec=spec, **self.module_kwargs)
        self.ansible.validating = False
        self.params = self.ansible.params
        self.check_mode = self.ansible.check_mode
        self.results = dict(changed=False)  # type: dict
        self._conn = None
        self._auth_saved = None
        if self.needs_cloud:
            # auth and client_key are no_log already; a cloud *dictionary* may hold passwords too.
            for secret in collect_secrets({'cloud': self.params.get('cloud'), 'auth': self.params.get('auth')}):
                self.ansible.no_log_values.add(secret)
            if not HAS_OPENSTACKSDK:
                self.ansible.fail_json(msg=missing_required_lib('openstacksdk'), exception=OPENSTACKSDK_IMPORT_ERROR)
            self._setup_sdk_logging()

    def _setup_sdk_logging(self):
        """The SDK log file, with every no_log value, the cloud's passwords, the token and secret JSON members
        (adminPass, password ...) redacted (keystoneauth logs request and response bodies at DEBUG)."""
        path = self.params.get('sdk_log_path')
        if path:
            debug = self.params.get('sdk_log_level') == 'DEBUG'
            try:
                openstack = sdk()
            except MissingLibraryError as exc:
                self.ansible.fail_json(msg=missing_required_lib('openstacksdk'), exception=exc.import_traceback)
            handler = logging.FileHandler(path)
            handler.addFilter(RedactingFilter(self.ansible.no_log_values))
            openstack.enable_logging(debug=debug, http_debug=debug, handlers=[handler])

    # -- options ------------------------------------------------------------------------------------------

    def check_options(self):
        """The option rules of the cloud options and of this module, then its conflicts: NovahaError for the
        first bad option, before anything is read or changed."""
        rules = dict(CLOUD_OPTION_RULES) if self.needs_cloud else {}
        rules.update(self.option_rules)
        check_options(self.params, rules)
        self.check_inputs()

    def check_inputs(self):
        """Raise ``_options.conflict_error`` for options that cannot go together (or another NovahaError of
        kind configuration for a value that cannot be used); nothing by default."""

    # -- connection ---------------------------------------------------------------------------------------

    @property
    def conn(self):
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def connect(self):
        try:
            conn = connect(self.params, warn=self.warn, secrets=self.ansible.no_log_values)
        except NovahaError as exc:
            self.fail_error(exc)
        if self.params.get('auth_cache'):
            self._auth_saved = conn.session.auth.get_auth_state()
        return conn

    def _keep_auth(self):
        """A token keystoneauth got during the run (the cached one expired or was refused) is saved for the
        next module."""
        if self._conn is None or not self.params.get('auth_cache'):
            return
        try:
            save_auth_state(self.params['auth_cache'], self._conn.session.auth, self._auth_saved)
            # The endpoints this module's proxies resolved, for the next modules (``_saved_connection``).
            save_profile(self.params['auth_cache'], self.params, self._conn)
        except Exception:  # pylint: disable=broad-except
            pass  # a cache is a saving, never a reason to fail

    def token_caches(self, check_mode, idle_timeout=IDLE_SECONDS):
        """The token caches beside ``auth_cache`` (``_auth_cache.TokenCaches``), ended through this module's
        connection: revoked with its Keystone, the run markers read from its Nova. End this run's own with
        ``end_token_cache``."""

        def read_live():
            try:
                services, date = compute_services(SdkNova(self.conn), 'reading the run markers (the nova-compute services)')
            except NovahaError as exc:
                self.warn('%s; only caches whose tokens have all expired are removed' % exc.msg)
                return None, None
            return live_runs(services, date), auth_cache_key(self.conn.session.auth)

        def own_token():
            # Only the order of the revocations depends on it (its own last): a token it cannot get is no failure.
            try:
                return self.conn.session.get_token()
            except _api_exceptions():
                return None

        return TokenCaches(
            self.params['auth_cache'],
            revoke=lambda token: revoke_token(self.conn, token),
            own_token=own_token,
            read_live=read_live,
            warn=self.warn,
            check_mode=check_mode,
            idle_timeout=idle_timeout,
        )

    def end_token_cache(self, caches):
        """``caches.end()`` (this run's own token revoked, its file removed); after it nothing saves the token again
        when the module ends, even when it failed halfway."""
        try:
            return caches.end()
        finally:
            if not caches.check_mode:
                self.params['auth_cache'] = None

    # -- results ------------------------------------------------------------------------------------------

    def exit(self, **result):
        merged = dict(self.results)
        merged.update(result)
        self._keep_auth()
        self.ansible.exit_json(**merged)

    def fail(self, msg, **details):
        merged = dict(self.results)
        merged.update(details)
        self._keep_auth()
        self.ansible.fail_json(msg=msg, **merged)

    def warn(self, msg):
        self.ansible.warn(msg)

    def fail_error(self, exc, **details):
        """The single way a NovahaError becomes a failed task: its message, its kind and its facts."""
        if isinstance(exc, MissingLibraryError):
            self._keep_auth()
            self.ansible.fail_json(msg=missing_required_lib(exc.library, reason=exc.reason), exception=exc.import_traceback, **self.results)
        facts = exc.result()
        facts.update(details)
        self.fail(self._whose_account(exc.msg, facts), **facts)

    def fail_api(self, exc, doing, **details):
        """The single way an SDK / keystoneauth exception becomes a failed task."""
        msg, facts = describe_api_error(exc, doing)
        facts.update(details)
        self.fail(self._whose_account(msg, facts), **facts)

    def _whose_account(self, msg, facts):
        """A refusal of the account names the option that chose it (cloud or auth)."""
        if facts.get('kind') not in (KIND_FORBIDDEN, KIND_UNAUTHORIZED) or 'option' in facts:
            return msg
        cloud = self.params.get('cloud')
        facts['option'] = 'auth' if self.params.get('auth') else 'cloud'
        if isinstance(cloud, str) and not self.params.get('auth'):
            return "%s - with the account of cloud '%s'" % (msg, cloud)
        return '%s - with the account given in %s' % (msg, facts['option'])

    @contextlib.contextmanager
    def api(self, doing, **details):
        """``with self.api('forcing down nova-compute on node-28'):`` fails the task readably on error."""
        try:
            yield
        except _api_exceptions() as exc:
            self.fail_api(exc, doing, **details)

    # -- running ------------------------------------------------------------------------------------------

    def run(self):
        raise NotImplementedError

    def __call__(self):
        try:
            self.check_options()
            self.run()
        except NovahaError as exc:
            self.fail_error(exc)
        except _api_exceptions() as exc:
            self.fail_api(exc, 'talking to the cloud')
        # run() is expected to exit; a subclass that returns just reports its results.
        self.exit()
