# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Is a compute host fenced? Read its power through its fence levels, power it off on request.

A fence level is one way to read and cut the host's power: its BMC over Redfish or IPMI, or an operator's
fence agent (the ClusterLabs fence-agents API: a PDU, a storage fence). Levels are tried in order, as
pacemaker's fencing topology does; the operator's attestation is the last level.

No Ansible imports: HTTP, the ipmitool and fence agent runners, the clock and sleep are passed in, so unit
tests run with fakes. The decisions:

- does this host count as fenced (the one decision) ..................... ``judge_fenced``
- is a level's input usable (names the bad option, acts on nothing) ...... ``validate_level``
- is the Redfish system the BMC answers for another compute host ......... ``identity_problem``
- which level is asked next, and when to stop ............................ ``check_fence``
- does the failed host read On again during an evacuation ............... ``PowerWatch``
"""

import datetime
import ipaddress
import json
import os
import re
import subprocess
import time
from urllib.parse import quote, urlsplit

from ansible_collections.novaha.recovery.plugins.module_utils._errors import KIND_CONFIGURATION, NovahaError

POWER_ON = 'on'
POWER_OFF = 'off'
POWER_UNKNOWN = 'unknown'

# Kinds of the errors below (FenceError: a BMC did not prove the host off; TransportError: no HTTP answer).
KIND_NOT_PROVEN = 'not_proven_fenced'
KIND_TRANSPORT = 'transport'

# Why a BMC could not give a fresh Off reading; the module returns it as ``evidence.error_cause``.
CAUSE_UNREACHABLE = 'unreachable'
CAUSE_TIMEOUT = 'timeout'
CAUSE_CREDENTIALS = 'credentials rejected'
CAUSE_FORBIDDEN = 'forbidden'
CAUSE_STUCK = 'stayed on'
CAUSE_UNSUPPORTED = 'unsupported'
CAUSE_CONFIG = 'configuration'
CAUSE_PROTOCOL = 'unexpected answer'

REDFISH_RESET = '#ComputerSystem.Reset'
REDFISH_FORCE_OFF = 'ForceOff'
IPMI_DEFAULT_PORT = 623


LEVEL_TYPES = ('redfish', 'ipmi', 'fence_agent')
# fence-agents API: the exit code of action=status.
AGENT_STATUS_ON = 0
AGENT_STATUS_OFF = 2


class TransportError(NovahaError):
    """Raised by an injected HTTP function when no usable HTTP answer came back. ``cause`` (a CAUSE_*)
    when it is not plain unreachability, for example a redirect that was not followed."""

    def __init__(self, reason, timed_out=False, cause=None):
        super(TransportError, self).__init__(reason, kind=KIND_TRANSPORT, timed_out=timed_out)
        self.reason = reason
        self.timed_out = timed_out
        self.cause = cause


class BmcConfigError(NovahaError):
    """An option of a BMC / fence level that cannot be used; raised before anything is asked or changed."""

    def __init__(self, option, problem):
        super(BmcConfigError, self).__init__('%s %s; nothing was asked of the BMC or changed' % (option, problem), kind=KIND_CONFIGURATION, option=option)
        self.option = option


class FenceError(NovahaError):
    """A BMC could not prove the host is off. ``cause`` is one of the CAUSE_* words."""

    def __init__(self, cause, detail, bmc=None):
        super(FenceError, self).__init__('%s: %s' % (bmc, detail) if bmc else detail, kind=KIND_NOT_PROVEN, cause=cause, bmc=bmc)
        self.cause = cause
        self.detail = detail
        self.bmc = bmc

    def message(self, host):
        where = ' (%s)' % self.bmc if self.bmc else ''
        return 'host %s is not proven fenced%s: %s: %s' % (host, where, self.cause, self.detail)


class PowerReading(object):
    """One power reading taken from a BMC now (never a cached or assumed value)."""

    def __init__(self, state, raw, read_at, method, display=None):
        self.state = state
        self.raw = raw
        self.read_at = read_at
        self.method = method
        # Operators read one vocabulary whatever the BMC: power On / Off, the raw answer beside it.
        self.display = display or ('power %s (%r)' % (state.capitalize(), raw) if state != POWER_UNKNOWN else raw)

    def __repr__(self):
        return 'PowerReading(%r, %r, %r, %r)' % (self.state, self.raw, self.read_at, self.method)


def iso(timestamp):
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.isoformat(timespec='milliseconds').replace('+00:00', 'Z')


# ---------------------------------------------------------------------------------------------------------
# Redfish


def redfish_power_state(raw):
    """Redfish PowerState -> on/off/unknown. PoweringOff is not Off: the host may still write to disks."""
    if raw == 'Off':
        return POWER_OFF
    if raw in ('On', 'PoweringOn', 'PoweringOff', 'Paused'):
        return POWER_ON
    return POWER_UNKNOWN


def redfish_base_url(address, port=None):
    """``address`` is a host name / IP or a URL; plain hosts get https://. ``port`` overrides the URL's."""
    text = address.strip().rstrip('/')
    if '://' not in text:
        text = 'https://' + text
    parts = urlsplit(text)
    host = parts.hostname or ''
    if ':' in host:
        host = '[%s]' % host
    if port is None:
        port = parts.port
    netloc = '%s:%d' % (host, port) if port else host
    return '%s://%s' % (parts.scheme, netloc)


def _redfish_message(payload):
    """The human text of a Redfish error body, if it has one."""
    try:
        body = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get('error', body)
    if isinstance(error, str):
        return error[:300] or None
    if not isinstance(error, dict):
        return None
    infos = error.get('@Message.ExtendedInfo') or []
    infos = infos if isinstance(infos, list) else []
    texts = [str(i.get('Message')) for i in infos if isinstance(i, dict) and i.get('Message')]
    if error.get('message'):
        texts.insert(0, str(error['message']))
    return '; '.join(texts) or None


def _short_body(payload):
    """An error body that is not Redfish's JSON object, shortened for a message."""
    text = ' '.join(str(payload or '').split())
    return (text[:200] + '...') if len(text) > 200 else (text or 'no body')


class RedfishBmc(object):
    """A Redfish BMC reached through ``http(method, url, headers, body, timeout, auth)``.

    ``http`` returns (status, body text) for every HTTP answer, including 4xx/5xx, and raises
    TransportError when nothing came back (refused, unreachable, TLS failure, timeout).
    """

    kind = 'redfish'

    def __init__(self, address, http, username=None, password=None, port=None, system_id=None, timeout=10, clock=time.time, host=None, compute_hosts=()):
        self.base = redfish_base_url(address, port)
        self.http = http
        self.auth = (username, password) if username else None
        self.system_id = system_id
        self.timeout = timeout
        self.clock = clock
        # The host this BMC is meant to fence and the cloud's compute hosts: a system that says it is
        # another of them is refused (identity_problem).
        self.host = host
        self.compute_hosts = compute_hosts
        self._system_path = None
        self._system = None

    def describe(self):
        text = 'Redfish BMC %s' % self.base
        path = self._system_path or (self.system_id and self._path_for(self.system_id))
        return text + (' system %s' % path if path else '')

    def _path_for(self, system_id):
        if system_id.startswith('/redfish/'):
            return system_id
        return '/redfish/v1/Systems/%s' % quote(system_id, safe='')

    def _call(self, method, path, body=None):
        headers = {'Accept': 'application/json', 'OData-Version': '4.0'}
        data = None
        if body is not None:
            headers['Content-Type'] = 'application/json'
            data = json.dumps(body)
        try:
            status, payload = self.http(method, self.base + path, headers=headers, body=data, timeout=self.timeout, auth=self.auth)
        except TransportError as exc:
            if exc.timed_out:
                raise FenceError(CAUSE_TIMEOUT, 'no answer within %s s to %s %s (%s)' % (self.timeout, method, path, exc.reason), self.describe())
            raise FenceError(exc.cause or CAUSE_UNREACHABLE, '%s %s: %s' % (method, path, exc.reason), self.describe())
        if status == 401:
            raise FenceError(CAUSE_CREDENTIALS, 'the BMC rejected the username/password (HTTP 401)', self.describe())
        if status == 403:
            raise FenceError(
                CAUSE_FORBIDDEN, 'the BMC account may not %s %s (HTTP 403): %s' % (method, path, _redfish_message(payload) or 'forbidden'), self.describe()
            )
        if status == 404:
            raise FenceError(CAUSE_CONFIG, '%s not found on the BMC (HTTP 404)' % path, self.describe())
        if status >= 400:
            raise FenceError(
                CAUSE_PROTOCOL, '%s %s returned HTTP %s: %s' % (method, path, status, _redfish_message(payload) or _short_body(payload)), self.describe()
            )
        if 300 <= status < 400:
            raise FenceError(CAUSE_PROTOCOL, '%s %s returned HTTP %s (a redirect that was not followed)' % (method, path, status), self.describe())
        if not payload or not payload.strip():
            return {}
        try:
            body = json.loads(payload)
        except ValueError:
            raise FenceError(
                CAUSE_PROTOCOL, '%s %s returned HTTP %s with a body that is not JSON: %s' % (method, path, status, _short_body(payload)), self.describe()
            )
        if not isinstance(body, dict):
            raise FenceError(
                CAUSE_PROTOCOL, '%s %s returned HTTP %s with a JSON %s, not a Redfish object' % (method, path, status, type(body).__name__), self.describe()
            )
        return body

    def system_path(self):
        """The system to act on: ``system_id`` when given, else the BMC's only system."""
        if self._system_path:
            return self._system_path
        if self.system_id:
            self._system_path = self._path_for(self.system_id)
            return self._system_path
        members = self._call('GET', '/redfish/v1/Systems').get('Members') or []
        members = members if isinstance(members, list) else []
        paths = [m.get('@odata.id') for m in members if isinstance(m, dict) and isinstance(m.get('@odata.id'), str) and m.get('@odata.id')]  # type: list
        if len(paths) != 1:
            raise FenceError(CAUSE_CONFIG, 'the BMC manages %d systems (%s); set bmc.system_id' % (len(paths), ', '.join(paths) or 'none'), self.describe())
        self._system_path = paths[0]
        return self._system_path

    def read_power(self):
        """A fresh reading: GET the system now."""
        self._system = self._call('GET', self.system_path())
        problem = identity_problem(self._system, self.host, self.compute_hosts)
        if problem:
            raise FenceError(CAUSE_CONFIG, problem, self.describe())
        raw = self._system.get('PowerState')
        raw = raw if isinstance(raw, str) or raw is None else str(raw)
        return PowerReading(redfish_power_state(raw), raw, self.clock(), self.kind, 'PowerState %s' % raw)

    def allowed_reset_types(self, action):
        allowed = action.get('ResetType@Redfish.AllowableValues')
        if allowed is None and isinstance(action.get('@Redfish.ActionInfo'), str):
            info = self._call('GET', action['@Redfish.ActionInfo'])
            parameters = info.get('Parameters')
            for parameter in parameters if isinstance(parameters, list) else []:
                if isinstance(parameter, dict) and parameter.get('Name') == 'ResetType':
                    allowed = parameter.get('AllowableValues')
        if allowed is not None and not isinstance(allowed, list):
            return None  # not a list: as if the BMC did not say; the reading after ForceOff decides
        return allowed

    def power_off(self):
        """Send ComputerSystem.Reset ForceOff; return the command's name. Proves nothing by itself."""
        system = self._system if self._system is not None else self._call('GET', self.system_path())
        actions = system.get('Actions')
        action = (actions.get(REDFISH_RESET) if isinstance(actions, dict) else None) or {}
        action = action if isinstance(action, dict) else {}
        target = action.get('target') if isinstance(action.get('target'), str) else None
        if not target:
            raise FenceError(CAUSE_UNSUPPORTED, 'the system offers no %s action' % REDFISH_RESET, self.describe())
        allowed = self.allowed_reset_types(action)
        # None: the BMC does not list its reset types; then ForceOff is tried and the reading decides.
        if allowed is not None and REDFISH_FORCE_OFF not in allowed:
            raise FenceError(
                CAUSE_UNSUPPORTED, 'ResetType %s is not allowed by the BMC (allowed: %s)' % (REDFISH_FORCE_OFF, ', '.join(allowed) or 'none'), self.describe()
            )
        self._call('POST', target, body={'ResetType': REDFISH_FORCE_OFF})
        return 'ComputerSystem.Reset %s' % REDFISH_FORCE_OFF


def _short_name(name):
    return str(name).strip().lower().split('.', 1)[0]


def identity_problem(system, host, compute_hosts):
    """Is the Redfish system another compute host of this cloud? Its ``HostName`` (the name its operating
    system gave itself) must be ``host`` when it has one; its ``Name`` must not be another compute host's name.
    Names compare by their short form (``node-28.example`` is ``node-28``). Returns why, or None.

    Only names of the cloud's own compute hosts count against a ``Name``: a BMC calling its system "System"
    or a model name tells nothing, and is not refused."""
    if not host:
        return None
    own = _short_name(host)
    others = set(_short_name(h) for h in compute_hosts or () if h and _short_name(h) != own)
    host_name = system.get('HostName')
    if isinstance(host_name, str) and host_name.strip() and _short_name(host_name) != own:
        return 'the system reports HostName %s, not %s: the address or system_id given is the BMC of another host' % (host_name.strip(), host)
    name = system.get('Name')
    if isinstance(name, str) and _short_name(name) in others:
        return 'the system is named %s, another compute host of this cloud, not %s: the address or system_id given is the BMC of another host' % (name, host)
    return None


# ---------------------------------------------------------------------------------------------------------
# IPMI (ipmitool)


def run_subprocess(argv, env, timeout):
    """Default ipmitool runner: (rc, stdout, stderr); hard timeout; TransportError when it expires."""
    try:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TransportError('ipmitool did not finish within %s s' % timeout, timed_out=True)
    return (proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace'))


_IPMI_CREDENTIALS = re.compile(
    r'HMAC is invalid|unauthorized name|invalid user ?name|'
    r'password|unauthorized|integrity check',
    re.IGNORECASE,
)
_IPMI_CIPHER = re.compile(r'cipher suite', re.IGNORECASE)
_IPMI_PRIVILEGE = re.compile(r'privilege', re.IGNORECASE)
_IPMI_NOISE = re.compile(
    r'^(Loading IANA PEN Registry|Running Get VSO|Discovered IPMB|'
    r'Invalid completion code received: Invalid command)'
)
_IPMI_POWER = re.compile(r'Chassis Power is (on|off)', re.IGNORECASE)


def classify_ipmitool_error(stderr):
    """ipmitool's stderr -> a CAUSE_*. A wrong password also prints 'Unable to establish', so the
    credential patterns are tested first."""
    if _IPMI_CIPHER.search(stderr):
        return CAUSE_UNSUPPORTED
    if _IPMI_CREDENTIALS.search(stderr):
        return CAUSE_CREDENTIALS
    if _IPMI_PRIVILEGE.search(stderr):
        return CAUSE_FORBIDDEN
    return CAUSE_UNREACHABLE


class IpmiBmc(object):
    """An IPMI v2 BMC driven through ipmitool (lanplus). The password travels only in IPMI_PASSWORD."""

    kind = 'ipmi'

    def __init__(
        self, address, username, password, port=None, cipher_suite=None, timeout=10, runner=run_subprocess, ipmitool='ipmitool', clock=time.time, environ=None
    ):
        self.address = address
        self.port = port or IPMI_DEFAULT_PORT
        self.username = username
        self.password = password
        self.cipher_suite = cipher_suite
        self.timeout = timeout
        self.runner = runner
        self.ipmitool = ipmitool
        self.clock = clock
        self.environ = os.environ if environ is None else environ

    def describe(self):
        text = 'IPMI BMC %s:%s' % (self.address, self.port)
        return text + (' cipher suite %s' % self.cipher_suite if self.cipher_suite is not None else '')

    def argv(self, *command):
        # -v: only then does ipmitool say why a session failed (HMAC invalid, unauthorized name).
        argv = [self.ipmitool, '-v', '-I', 'lanplus', '-H', self.address, '-p', str(self.port), '-U', self.username or '', '-E']
        if self.cipher_suite is not None:
            argv += ['-C', str(self.cipher_suite)]
        return argv + list(command)

    def _run(self, *command):
        env = dict(self.environ)
        env['IPMI_PASSWORD'] = self.password or ''
        env['LC_ALL'] = 'C'
        words = ' '.join(command)
        try:
            rc, out, err = self.runner(self.argv(*command), env, self.timeout)
        except TransportError as exc:
            raise FenceError(CAUSE_TIMEOUT, '%s: %s' % (words, exc.reason), self.describe())
        except OSError as exc:
            raise FenceError(CAUSE_CONFIG, 'cannot run %s (install ipmitool on the controller): %s' % (self.ipmitool, exc), self.describe())
        if rc != 0:
            lines = [line.strip() for line in (err or out or '').splitlines()]
            err = ' '.join(line for line in lines if line and not _IPMI_NOISE.search(line))
            err = err or 'exit code %s' % rc
            cause = classify_ipmitool_error(err)
            if cause == CAUSE_UNSUPPORTED:
                err += ' (set bmc.cipher_suite to one the BMC supports, for example 3 or 17)'
            raise FenceError(cause, '%s: %s' % (words, err), self.describe())
        return out

    def read_power(self):
        out = self._run('chassis', 'power', 'status')
        match = _IPMI_POWER.search(out)
        if not match:
            raise FenceError(CAUSE_PROTOCOL, 'chassis power status printed %r' % out.strip()[:200], self.describe())
        state = POWER_ON if match.group(1).lower() == 'on' else POWER_OFF
        return PowerReading(state, match.group(0), self.clock(), self.kind)

    def power_off(self):
        self._run('chassis', 'power', 'off')
        return 'chassis power off'


# ---------------------------------------------------------------------------------------------------------
# An operator's fence agent (the plug-in point: a PDU, a storage fence)


def run_agent(argv, env, timeout, stdin_text):
    """Default fence agent runner: (rc, stdout, stderr); options on stdin; TransportError on the timeout."""
    try:
        proc = subprocess.run(argv, env=env, input=stdin_text.encode('utf-8'), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TransportError('the fence agent did not finish within %s s' % timeout, timed_out=True)
    return (proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace'))


class FenceAgent(object):
    """A fence agent that follows the ClusterLabs fence-agents API (``fence_apc_snmp``, ``fence_raritan``,
    ``fence_scsi``, ``fence_ipmilan``... or an operator's own executable):

    - options arrive on stdin, one ``name=value`` a line: ``action`` (``status`` or ``off``), then ``ip``,
      ``ipport``, ``username``, ``password`` when the level sets address, port, username, password,
      ``nodename`` (the host, as pacemaker passes it), then the level's ``options`` (for example ``plug=12``); the
      password is never on the command line or in the environment;
    - ``action=status`` exits 0 when the host (outlet, registration) is on, 2 when it is off, anything else
      when it cannot tell (stderr says why);
    - ``action=off`` exits 0 once the power is cut;
    - it is killed after the level's timeout.
    """

    kind = 'fence_agent'

    def __init__(
        self, agent, options=None, address=None, port=None, username=None, password=None, timeout=10, runner=run_agent, clock=time.time, environ=None, host=None
    ):
        self.agent = agent
        self.host = host
        self.options = dict(options or {})
        self.address = address
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self.runner = runner
        self.clock = clock
        self.environ = os.environ if environ is None else environ

    def describe(self):
        where = ' %s' % self.address if self.address else ''
        plug = self.options.get('plug') or self.options.get('port')
        return 'fence agent %s%s%s' % (os.path.basename(self.agent), where, ' plug %s' % plug if plug else '')

    def stdin(self, action):
        lines = ['action=%s' % action]
        for key, value in (
            ('ip', self.address),
            ('ipport', self.port),
            ('username', self.username),
            ('password', self.password),
            ('nodename', None if 'nodename' in self.options else self.host),
        ):
            if value not in (None, ''):
                lines.append('%s=%s' % (key, value))
        for key, value in sorted(self.options.items()):
            if key not in ('action', 'password'):
                lines.append('%s=%s' % (key, value))
        return '\n'.join(lines) + '\n'

    def _run(self, action):
        env = dict(self.environ)
        env['LC_ALL'] = 'C'
        try:
            rc, out, err = self.runner([self.agent], env, self.timeout, self.stdin(action))
        except TransportError as exc:
            raise FenceError(CAUSE_TIMEOUT, 'action=%s: %s' % (action, exc.reason), self.describe())
        except OSError as exc:
            raise FenceError(CAUSE_CONFIG, 'cannot run %s: %s' % (self.agent, exc), self.describe())
        said = ' '.join(line.strip() for line in (err or out or '').splitlines() if line.strip())[:300]
        if self.password:
            said = said.replace(self.password, '********')
        return rc, out, said

    def read_power(self):
        rc, out, said = self._run('status')
        if rc == AGENT_STATUS_OFF:
            return PowerReading(POWER_OFF, 'status exit 2', self.clock(), self.kind, 'power Off (agent exit 2)')
        if rc == AGENT_STATUS_ON:
            return PowerReading(POWER_ON, 'status exit 0', self.clock(), self.kind, 'power On (agent exit 0)')
        raise FenceError(CAUSE_UNREACHABLE, 'action=status exited %s: %s' % (rc, said or 'no message'), self.describe())

    def power_off(self):
        rc, _out, said = self._run('off')
        if rc != 0:
            raise FenceError(CAUSE_UNREACHABLE, 'action=off exited %s: %s' % (rc, said or 'no message'), self.describe())
        return 'fence agent action=off'


# ---------------------------------------------------------------------------------------------------------
# Bad input: each option checked before anything is asked


_HOSTNAME = re.compile(r'^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$')


def _ipv6(text):
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def _host_part(text, option):
    """A host name, an IPv4 address or an IPv6 literal (bracketed or not) -> the bare host; else why not."""
    if text.startswith('['):
        if not text.endswith(']'):
            raise BmcConfigError(option, 'has an unclosed [ in %r' % text)
        host = _ipv6(text[1:-1])
        if host is None:
            raise BmcConfigError(option, 'puts %r in brackets, which is not an IPv6 address' % text[1:-1])
        return host
    if ':' in text:
        host = _ipv6(text)
        if host is None:
            raise BmcConfigError(option, 'is %r: neither a host name, an IPv4 address nor an IPv6 address' % text)
        return host
    if not _HOSTNAME.match(text):
        raise BmcConfigError(option, 'is %r, which is not a host name or an IP address' % text)
    return text


def _check_port(port, option):
    if port is not None and not 1 <= port <= 65535:
        raise BmcConfigError(option, 'must be between 1 and 65535, not %s' % port)


def redfish_address(address, port, option):
    """A Redfish address -> its base URL, or BmcConfigError naming ``option`` (``bmc.address``) and the cause.
    Accepted: a host name or IP address with an optional :port, an IPv6 literal with or without brackets, or
    a base URL (http or https; no path, credentials or query)."""
    text = (address or '').strip()
    if not text:
        raise BmcConfigError(option, 'is empty; give the BMC\'s host name, IP address or base URL')
    if '://' not in text:
        if not text.startswith('[') and text.count(':') > 1 and '/' not in text and '@' not in text:
            text = '[%s]' % _host_part(text, option)  # a bare IPv6 literal
        text = 'https://' + text
    scheme, rest = text.split('://', 1)
    if scheme.lower() not in ('http', 'https'):
        raise BmcConfigError(option, 'has the scheme %s; a Redfish BMC is reached over https (or http)' % scheme)
    authority = re.split(r'[/?#]', rest, maxsplit=1)[0]
    if '@' in authority:
        # The credentials themselves are never repeated: the message names the option only.
        raise BmcConfigError(option, 'must not carry credentials (user:password@); give them in username and password, which are kept out of logs')
    tail = rest[len(authority) :]
    if tail not in ('', '/'):
        raise BmcConfigError(option, 'must be the BMC\'s base URL without a path or query (got %s); the system goes in system_id' % tail[:100])
    if authority.startswith('['):
        close = authority.find(']')
        if close < 0:
            raise BmcConfigError(option, 'has an unclosed [ in %r' % text)
        host_text, port_text = authority[: close + 1], authority[close + 1 :]
    elif authority.count(':') > 1:
        raise BmcConfigError(option, 'has an IPv6 address without brackets in a URL (%r); write it as https://[address]:port' % text)
    else:
        host_text, colon, port_text = authority.partition(':')
        port_text = colon + port_text
    url_port = None
    if port_text:
        if not port_text.startswith(':') or not port_text[1:].isdigit():
            raise BmcConfigError(option, 'has a port that is not a number in %r' % text)
        url_port = int(port_text[1:])
        _check_port(url_port, option + ' (its port)')
    if not host_text:
        raise BmcConfigError(option, 'has no host in %r' % text)
    host = _host_part(host_text, option)
    return redfish_base_url('%s://%s' % (scheme.lower(), '[%s]' % host if ':' in host else host), port if port is not None else url_port)


def bmc_settings(
    bmc_type,
    address=None,
    ipmi_address=None,
    ipmi_port=None,
    username=None,
    password=None,
    system_id=None,
    ca_path=None,
    validate_certs=True,
    ipmi_cipher_suite=None,
    timeout=None,
):
    """The ``bmc`` option of os_fence_check and os_host_evacuate from a host's inventory variables (the role's
    ``host_recovery_bmc_*``): the address of the BMC type, numbers as numbers, and every setting left empty left
    out, so that the module's own default applies. Built here, not in Jinja: before ansible-core 2.19 a ``None``
    or a number made in a template reached a module as a string ("argument 'port' is of type str")."""

    def given(value):
        return value is not None and not (isinstance(value, str) and value.strip() in ('', 'None'))

    def number(value, name):
        try:
            return int(str(value).strip())
        except ValueError:
            raise NovahaError('%s must be a number, not %r. Nothing was changed' % (name, value), kind=KIND_CONFIGURATION)

    bmc_type = str(bmc_type or 'none').strip()
    ipmi = bmc_type == 'ipmi'
    settings = dict(
        type=bmc_type,
        address=ipmi_address if ipmi else address,
        username=username,
        password=password,
        system_id=None if ipmi else system_id,
        ca_path=None if ipmi else ca_path,
    )
    settings = dict((k, str(v)) for k, v in settings.items() if given(v))
    settings['type'] = bmc_type
    if not isinstance(validate_certs, bool):
        validate_certs = str(validate_certs).strip().lower() not in ('false', 'no', '0', 'off')
    settings['validate_certs'] = validate_certs
    if ipmi and given(ipmi_port):
        settings['port'] = number(ipmi_port, 'bmc_ipmi_port')
    if ipmi and given(ipmi_cipher_suite):
        settings['cipher_suite'] = number(ipmi_cipher_suite, 'bmc_ipmi_cipher_suite')
    if given(timeout):
        settings['timeout'] = number(timeout, 'host_recovery_bmc_timeout')
    return settings


def validate_level(spec, option):
    """Check one fence level (the ``bmc`` option or an entry of ``fence_levels``) before anything is asked.

    ``option`` names it in messages (``bmc``, ``fence_levels[2]``). Returns the settings with the address
    normalized (Redfish: its base URL; IPMI: the bare host); raises BmcConfigError naming the bad suboption
    and the cause. Nothing here reaches the network."""
    kind = spec.get('type')
    settings = dict(spec)
    if kind in (None, 'none'):
        return settings
    if kind not in LEVEL_TYPES:
        raise BmcConfigError(option + '.type', 'is %r; one of %s' % (kind, ', '.join(LEVEL_TYPES)))
    timeout = spec.get('timeout')
    if timeout is not None and timeout <= 0:
        raise BmcConfigError(option + '.timeout', 'must be more than 0 seconds, not %s' % timeout)
    _check_port(spec.get('port'), option + '.port')
    username, password = spec.get('username'), spec.get('password')
    if kind == 'redfish':
        settings['address'] = redfish_address(spec.get('address'), spec.get('port'), option + '.address')
        if username and password is None:
            raise BmcConfigError(option + '.password', 'is missing; %s.username is given' % option)
        ca_path = spec.get('ca_path')
        if ca_path and not os.path.isfile(ca_path):
            raise BmcConfigError(option + '.ca_path', 'is %s, which is not a readable file' % ca_path)
    elif kind == 'ipmi':
        address = (spec.get('address') or '').strip()
        if not address:
            raise BmcConfigError(option + '.address', 'is empty; give the BMC\'s host name or IP address')
        if '://' in address or '/' in address or '@' in address:
            raise BmcConfigError(option + '.address', 'must be a host name or IP address for ipmi, not a URL')
        settings['address'] = _host_part(address, option + '.address')
        for name in ('username', 'password'):
            if not spec.get(name):
                raise BmcConfigError('%s.%s' % (option, name), 'is required for ipmi')
        suite = spec.get('cipher_suite')
        if suite is not None and not 0 <= suite <= 17:
            raise BmcConfigError(option + '.cipher_suite', 'must be an RMCP+ cipher suite from 0 to 17, not %s' % suite)
    else:
        agent = (spec.get('agent') or '').strip()
        if not agent:
            raise BmcConfigError(option + '.agent', 'is required for fence_agent: the path of the fence agent')
        if not os.path.isabs(agent) or not os.path.isfile(agent) or not os.access(agent, os.X_OK):
            raise BmcConfigError(option + '.agent', 'is %s, which is not an executable file (an absolute path)' % agent)
        if spec.get('address'):
            settings['address'] = _host_part(spec['address'].strip(), option + '.address')
        for key, value in (spec.get('options') or {}).items():
            if not re.match(r'^[A-Za-z0-9_-]+$', str(key)) or '\n' in str(value):
                raise BmcConfigError(option + '.options', 'has %r, which cannot be passed as a name=value line' % key)
            if key in ('action', 'password', 'passwd'):
                raise BmcConfigError(option + '.options', 'must not set %s (the action is chosen per step; the password goes in %s.password)' % (key, option))
    return settings


def level_options(params):
    """The levels an operator gave: ``fence_levels`` (a list, tried in order), or ``bmc`` (one level).
    Returns [(option name, spec)]; a ``bmc`` of type none gives no level."""
    levels = params.get('fence_levels')
    if levels:
        for index, spec in enumerate(levels, 1):
            if spec.get('type') in (None, 'none'):
                raise BmcConfigError('fence_levels[%d].type' % index, 'is none; leave the level out instead')
        return [('fence_levels[%d]' % index, spec) for index, spec in enumerate(levels, 1)]
    spec = params.get('bmc')
    if not spec or spec.get('type') in (None, 'none'):
        return []
    return [('bmc', spec)]


# ---------------------------------------------------------------------------------------------------------
# Decisions


class Verdict(object):
    def __init__(self, fenced, method, reason):
        self.fenced = fenced
        self.method = method
        self.reason = reason


def judge_fenced(reading, attested, not_before=None):
    """The one place that decides whether a host counts as fenced.

    Only a power reading of Off taken after the last power command (``not_before``), or the operator's
    explicit attestation, counts. A BMC that reads On overrules an attestation: the two contradict and
    the host may be running.
    """
    if reading is not None and reading.state == POWER_OFF:
        if not_before is not None and reading.read_at < not_before:
            return Verdict(False, reading.method, 'the Off reading predates the power-off command')
        return Verdict(True, reading.method, 'the BMC reads %s' % reading.display)
    if reading is not None and reading.state == POWER_ON:
        if attested:
            return Verdict(False, reading.method, 'the operator attested power off, but the BMC reads %s' % reading.display)
        return Verdict(False, reading.method, 'the BMC reads %s' % reading.display)
    if attested:
        return Verdict(True, 'attestation', 'the operator attested that the host is powered off')
    if reading is not None:
        return Verdict(False, reading.method, 'the BMC reports an unknown power state (%s)' % reading.display)
    return Verdict(False, None, 'no power reading and no attestation')


def wait_for_off(bmc, deadline, clock, sleep, interval):
    """Poll fresh readings until Off or the deadline; returns the last reading."""
    while True:
        reading = bmc.read_power()
        if reading.state == POWER_OFF:
            return reading
        remaining = deadline - clock()
        if remaining <= 0:
            return reading
        sleep(min(interval, remaining))


def _level_record(number, bmc):
    return dict(
        level=number,
        method=bmc.kind,
        bmc=bmc.describe(),
        result='not asked',
        power_state=None,
        power_state_raw=None,
        read_at=None,
        action=None,
        error_cause=None,
        error=None,
    )


def _try_level(bmc, record, fence, check_mode, power_timeout, clock, sleep, interval):
    """Ask one level: read, power off when asked and needed, read until Off. Fills ``record``; returns
    (reading or None, the time a power-off command was sent or None, the FenceError or None, would_power_off,
    fence_seconds)."""
    reading = sent_at = failure = fence_seconds = None
    would = False
    try:
        reading = bmc.read_power()
        record['power_state_before'] = reading.state
        if reading.state != POWER_OFF and fence:
            if check_mode:
                would = True
            else:
                started = clock()
                record['action'] = bmc.power_off()
                sent_at = clock()
                record['action_sent_at'] = iso(sent_at)
                reading = wait_for_off(bmc, started + power_timeout, clock, sleep, interval)
                if reading.state == POWER_OFF:
                    fence_seconds = round(reading.read_at - started, 3)
                else:
                    failure = FenceError(
                        CAUSE_STUCK,
                        'accepted "%s" but still reads %s after %s s (power_timeout)' % (record['action'], reading.display, power_timeout),
                        bmc.describe(),
                    )
    except FenceError as exc:
        # The last good reading (if any) stays: an On reading still overrules an attestation.
        failure = exc
    record['bmc'] = bmc.describe()
    if reading is not None:
        record.update(power_state=reading.state, power_state_raw=reading.raw, read_at=iso(reading.read_at))
    if failure is not None:
        record.update(error_cause=failure.cause, error='%s: %s' % (failure.cause, failure.detail))
    return reading, sent_at, failure, would, fence_seconds


def check_fence(host, levels, fence=False, attested=False, power_timeout=60, check_mode=False, clock=time.time, sleep=time.sleep, interval=1.0):
    """Ask the fence levels in order, power the host off when asked and needed, and judge it.

    ``levels``: the BMCs / fence agents, in the operator's order (one object or None is taken as a list of
    it). A level that cannot give a fresh Off reading (unreachable, credentials, stayed on, unknown state) hands
    over to the next; a level that reads On without ``fence`` ends the search (the host runs); an Off reading,
    after any power-off command of any level, proves the host off. The attestation is the last level.

    Returns a dict: fenced, verdict (reason), evidence (reported to the operator; ``level`` is the level that
    proved the host off, ``levels`` what each level asked said), power_changed, would_power_off (check mode),
    error (a message naming host, level, BMC and cause, or None), level_errors (levels that failed before the
    one that decided).
    """
    if levels is None:
        levels = []
    elif not isinstance(levels, (list, tuple)):
        levels = [levels]
    first = levels[0] if levels else None
    evidence = {}  # type: dict
    evidence.update(
        method=first.kind if first is not None else 'none',
        bmc=first.describe() if first is not None else None,
        power_state=None,
        power_state_raw=None,
        read_at=None,
        power_state_before=None,
        action=None,
        action_sent_at=None,
        fence_seconds=None,
        attested=bool(attested),
        error_cause=None,
        level=None,
        levels=[],
    )
    result = dict(fenced=False, verdict=None, evidence=evidence, power_changed=False, would_power_off=False, error=None, level_errors=[])  # type: dict
    latest = None  # the latest reading of any level: the one that is judged
    last_sent = None  # the latest power-off command of any level: an Off reading must follow it
    failures = []
    deciding = None

    for number, bmc in enumerate(levels, 1):
        record = _level_record(number, bmc)
        evidence['levels'].append(record)
        reading, sent_at, failure, would, fence_seconds = _try_level(bmc, record, fence, check_mode, power_timeout, clock, sleep, interval)
        deciding = (record, bmc, failure, fence_seconds)
        if sent_at is not None:
            result['power_changed'] = True
            last_sent = sent_at
        if reading is not None:
            latest = reading
        if failure is not None:
            failures.append((number, bmc, failure))
        if would:
            result['would_power_off'] = True
            record['result'] = 'would power off'
            break
        if reading is not None and judge_fenced(reading, False, not_before=last_sent).fenced:
            record['result'] = 'proved off'
            evidence['level'] = number
            break
        if reading is not None and reading.state == POWER_ON and failure is None:
            record['result'] = 'reads on'
            break  # without fence: the host runs, and no other level can make it off
        record['result'] = 'failed' if failure is not None else 'unknown state'

    if deciding is not None:
        record, bmc, failure, fence_seconds = deciding
        evidence.update(
            method=bmc.kind,
            bmc=record['bmc'],
            power_state_before=record.get('power_state_before'),
            action=record['action'],
            action_sent_at=record.get('action_sent_at'),
            fence_seconds=fence_seconds,
            error_cause=failure.cause if failure is not None else None,
        )
    if latest is not None:
        evidence.update(power_state=latest.state, power_state_raw=latest.raw, read_at=iso(latest.read_at))

    verdict = judge_fenced(latest, attested, not_before=last_sent)
    result['fenced'] = verdict.fenced
    result['verdict'] = verdict.reason
    proved_by = evidence['level']
    if len(levels) > 1 and proved_by is not None:
        result['verdict'] = 'level %s (%s): %s' % (proved_by, evidence['bmc'], verdict.reason)
    result['level_errors'] = [
        'level %d (%s) gave no power reading for host %s: %s: %s' % (n, failure.bmc or b.describe(), host, failure.cause, failure.detail)
        for n, b, failure in failures
        if proved_by is None or n < proved_by
    ]
    if verdict.fenced:
        if proved_by is None:  # the attestation decided
            evidence.update(method=verdict.method, error_cause=failures[-1][2].cause if failures else None)
            if failures:
                result['bmc_error'] = '; '.join(
                    '%s gave no power reading for host %s: %s: %s' % (f.bmc or 'the BMC', host, f.cause, f.detail) for _n, _b, f in failures
                )
    elif result['would_power_off']:
        pass
    elif failures and len(levels) == 1:
        result['error'] = failures[0][2].message(host)
    elif failures and evidence['levels'][-1]['result'] != 'reads on':
        result['error'] = 'host %s is not proven fenced by any of its %d fence levels: %s%s' % (
            host,
            len(levels),
            '; '.join('level %d (%s): %s: %s' % (n, f.bmc or b.describe(), f.cause, f.detail) for n, b, f in failures),
            '; %s' % verdict.reason if latest is not None and latest.state == POWER_ON else '',
        )
    else:
        result['error'] = 'host %s is not proven fenced%s: %s' % (host, ' (%s)' % evidence['bmc'] if evidence['bmc'] else '', verdict.reason)
    return result


# ---------------------------------------------------------------------------------------------------------
# During the evacuation: does the failed host read On again?


class PowerWatch(object):
    """The ``power_check`` of the evacuation engine, built from the fence levels: asks them in order for a
    fresh reading. Returns None while the host reads Off, a short reading (``power On (On) from Redfish BMC
    ...``) when it reads On, and raises FenceError when no level could read it (the engine warns and goes on:
    the host was proven off before the run). ``readings`` counts the power readings asked for."""

    def __init__(self, levels):
        self.levels = list(levels)
        self.readings = 0

    def __call__(self):
        self.readings += 1
        failures = []
        for bmc in self.levels:
            try:
                reading = bmc.read_power()
            except FenceError as exc:
                failures.append('%s: %s: %s' % (exc.bmc or bmc.describe(), exc.cause, exc.detail))
                continue
            if judge_fenced(reading, False).fenced:
                return None
            if reading.state == POWER_ON:
                return '%s from %s' % (reading.display, bmc.describe())
            failures.append('%s: unknown power state %s' % (bmc.describe(), reading.display))
        raise FenceError(CAUSE_UNREACHABLE, '; '.join(failures) or 'no fence level to ask')
