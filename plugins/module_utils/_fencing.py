# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Is a compute host fenced? Read its power through the BMC (Redfish or IPMI), power it off on request.

No Ansible imports: HTTP, the ipmitool runner, the clock and sleep are passed in, so unit tests run
with fakes. The one decision "does this host count as fenced" is ``judge_fenced``.
"""

import datetime
import json
import os
import re
import subprocess
import time

from urllib.parse import quote, urlsplit

from ansible_collections.novaha.recovery.plugins.module_utils._errors import NovahaError

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


class TransportError(NovahaError):
    """Raised by an injected HTTP function when no HTTP answer came back at all."""

    def __init__(self, reason, timed_out=False):
        super(TransportError, self).__init__(reason, kind=KIND_TRANSPORT, timed_out=timed_out)
        self.reason = reason
        self.timed_out = timed_out


class FenceError(NovahaError):
    """A BMC could not prove the host is off. ``cause`` is one of the CAUSE_* words."""

    def __init__(self, cause, detail, bmc=None):
        super(FenceError, self).__init__('%s: %s' % (bmc, detail) if bmc else detail, kind=KIND_NOT_PROVEN,
                                         cause=cause, bmc=bmc)
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
    infos = error.get('@Message.ExtendedInfo') or []
    texts = [i.get('Message') for i in infos if isinstance(i, dict) and i.get('Message')]
    if error.get('message'):
        texts.insert(0, error['message'])
    return '; '.join(texts) or None


class RedfishBmc(object):
    """A Redfish BMC reached through ``http(method, url, headers, body, timeout, auth)``.

    ``http`` returns (status, body text) for every HTTP answer, including 4xx/5xx, and raises
    TransportError when nothing came back (refused, unreachable, TLS failure, timeout).
    """

    kind = 'redfish'

    def __init__(self, address, http, username=None, password=None, port=None, system_id=None,
                 timeout=10, clock=time.time):
        self.base = redfish_base_url(address, port)
        self.http = http
        self.auth = (username, password) if username else None
        self.system_id = system_id
        self.timeout = timeout
        self.clock = clock
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
            status, payload = self.http(method, self.base + path, headers=headers, body=data,
                                        timeout=self.timeout, auth=self.auth)
        except TransportError as exc:
            if exc.timed_out:
                raise FenceError(CAUSE_TIMEOUT, 'no answer within %s s to %s %s (%s)'
                                 % (self.timeout, method, path, exc.reason), self.describe())
            raise FenceError(CAUSE_UNREACHABLE, '%s %s: %s' % (method, path, exc.reason), self.describe())
        if status == 401:
            raise FenceError(CAUSE_CREDENTIALS, 'the BMC rejected the username/password (HTTP 401)',
                             self.describe())
        if status == 403:
            raise FenceError(CAUSE_FORBIDDEN, 'the BMC account may not %s %s (HTTP 403): %s'
                             % (method, path, _redfish_message(payload) or 'forbidden'), self.describe())
        if status == 404:
            raise FenceError(CAUSE_CONFIG, '%s not found on the BMC (HTTP 404)' % path, self.describe())
        if status >= 400:
            raise FenceError(CAUSE_PROTOCOL, '%s %s returned HTTP %s: %s'
                             % (method, path, status, _redfish_message(payload) or payload), self.describe())
        if not payload:
            return {}
        try:
            return json.loads(payload)
        except ValueError:
            raise FenceError(CAUSE_PROTOCOL, '%s %s returned HTTP %s with a body that is not JSON'
                             % (method, path, status), self.describe())

    def system_path(self):
        """The system to act on: ``system_id`` when given, else the BMC's only system."""
        if self._system_path:
            return self._system_path
        if self.system_id:
            self._system_path = self._path_for(self.system_id)
            return self._system_path
        members = self._call('GET', '/redfish/v1/Systems').get('Members') or []
        paths = [m.get('@odata.id') for m in members if isinstance(m, dict) and m.get('@odata.id')]
        if len(paths) != 1:
            raise FenceError(CAUSE_CONFIG, 'the BMC manages %d systems (%s); set bmc.system_id'
                             % (len(paths), ', '.join(paths) or 'none'), self.describe())
        self._system_path = paths[0]
        return self._system_path

    def read_power(self):
        """A fresh reading: GET the system now."""
        self._system = self._call('GET', self.system_path())
        raw = self._system.get('PowerState')
        return PowerReading(redfish_power_state(raw), raw, self.clock(), self.kind,
                            'PowerState %s' % raw)

    def allowed_reset_types(self, action):
        allowed = action.get('ResetType@Redfish.AllowableValues')
        if allowed is None and action.get('@Redfish.ActionInfo'):
            info = self._call('GET', action['@Redfish.ActionInfo'])
            for parameter in info.get('Parameters') or []:
                if parameter.get('Name') == 'ResetType':
                    allowed = parameter.get('AllowableValues')
        return allowed

    def power_off(self):
        """Send ComputerSystem.Reset ForceOff; return the command's name. Proves nothing by itself."""
        system = self._system if self._system is not None else self._call('GET', self.system_path())
        action = (system.get('Actions') or {}).get(REDFISH_RESET) or {}
        target = action.get('target')
        if not target:
            raise FenceError(CAUSE_UNSUPPORTED, 'the system offers no %s action' % REDFISH_RESET,
                             self.describe())
        allowed = self.allowed_reset_types(action)
        # None: the BMC does not list its reset types; then ForceOff is tried and the reading decides.
        if allowed is not None and REDFISH_FORCE_OFF not in allowed:
            raise FenceError(CAUSE_UNSUPPORTED, 'ResetType %s is not allowed by the BMC (allowed: %s)'
                             % (REDFISH_FORCE_OFF, ', '.join(allowed) or 'none'), self.describe())
        self._call('POST', target, body={'ResetType': REDFISH_FORCE_OFF})
        return 'ComputerSystem.Reset %s' % REDFISH_FORCE_OFF


# ---------------------------------------------------------------------------------------------------------
# IPMI (ipmitool)


def run_subprocess(argv, env, timeout):
    """Default ipmitool runner: (rc, stdout, stderr); hard timeout; TransportError when it expires."""
    try:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TransportError('ipmitool did not finish within %s s' % timeout, timed_out=True)
    return (proc.returncode, proc.stdout.decode('utf-8', 'replace'),
            proc.stderr.decode('utf-8', 'replace'))


_IPMI_CREDENTIALS = re.compile(r'HMAC is invalid|unauthorized name|invalid user ?name|'
                               r'password|unauthorized|integrity check', re.IGNORECASE)
_IPMI_CIPHER = re.compile(r'cipher suite', re.IGNORECASE)
_IPMI_PRIVILEGE = re.compile(r'privilege', re.IGNORECASE)
_IPMI_NOISE = re.compile(r'^(Loading IANA PEN Registry|Running Get VSO|Discovered IPMB|'
                         r'Invalid completion code received: Invalid command)')
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

    def __init__(self, address, username, password, port=None, cipher_suite=None, timeout=10,
                 runner=run_subprocess, ipmitool='ipmitool', clock=time.time, environ=None):
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
        argv = [self.ipmitool, '-v', '-I', 'lanplus', '-H', self.address, '-p', str(self.port),
                '-U', self.username or '', '-E']
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
            raise FenceError(CAUSE_CONFIG, 'cannot run %s (install ipmitool on the controller): %s'
                             % (self.ipmitool, exc), self.describe())
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
            raise FenceError(CAUSE_PROTOCOL, 'chassis power status printed %r' % out.strip()[:200],
                             self.describe())
        state = POWER_ON if match.group(1).lower() == 'on' else POWER_OFF
        return PowerReading(state, match.group(0), self.clock(), self.kind)

    def power_off(self):
        self._run('chassis', 'power', 'off')
        return 'chassis power off'


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
            return Verdict(False, reading.method, 'the operator attested power off, but the BMC reads %s'
                           % reading.display)
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


def check_fence(host, bmc, fence=False, attested=False, power_timeout=60, check_mode=False,
                clock=time.time, sleep=time.sleep, interval=1.0):
    """Read the host's power, power it off when asked and needed, and judge it.

    Returns a dict: fenced, verdict (reason), evidence (reported to the operator), power_changed,
    would_power_off (check mode), error (a message naming host, BMC and cause, or None).
    """
    evidence = dict(method=bmc.kind if bmc is not None else 'none',
                    bmc=bmc.describe() if bmc is not None else None,
                    power_state=None, power_state_raw=None, read_at=None,
                    power_state_before=None, action=None, action_sent_at=None,
                    fence_seconds=None, attested=bool(attested), error_cause=None)
    result = dict(fenced=False, verdict=None, evidence=evidence, power_changed=False,
                  would_power_off=False, error=None)
    reading = None
    sent_at = None
    failure = None

    if bmc is not None:
        try:
            reading = bmc.read_power()
            evidence['power_state_before'] = reading.state
            if reading.state != POWER_OFF and fence:
                if check_mode:
                    result['would_power_off'] = True
                else:
                    started = clock()
                    evidence['action'] = bmc.power_off()
                    sent_at = clock()
                    evidence['action_sent_at'] = iso(sent_at)
                    reading = wait_for_off(bmc, started + power_timeout, clock, sleep, interval)
                    result['power_changed'] = True
                    if reading.state == POWER_OFF:
                        evidence['fence_seconds'] = round(reading.read_at - started, 3)
                    else:
                        failure = FenceError(CAUSE_STUCK, 'accepted "%s" but still reads %s after %s s '
                                             '(power_timeout)' % (evidence['action'], reading.display,
                                                                  power_timeout), bmc.describe())
        except FenceError as exc:
            # The last good reading (if any) stays: an On reading still overrules an attestation.
            failure = exc
        evidence['bmc'] = bmc.describe()

    if reading is not None:
        evidence.update(power_state=reading.state, power_state_raw=reading.raw, read_at=iso(reading.read_at))
    if failure is not None:
        evidence['error_cause'] = failure.cause

    verdict = judge_fenced(reading, attested, not_before=sent_at)
    result['fenced'] = verdict.fenced
    result['verdict'] = verdict.reason
    if verdict.fenced:
        evidence['method'] = verdict.method
        if failure is not None:
            result['bmc_error'] = '%s gave no power reading for host %s: %s: %s' % (
                failure.bmc or 'the BMC', host, failure.cause, failure.detail)
    elif failure is not None:
        result['error'] = failure.message(host)
    elif not result['would_power_off']:
        result['error'] = 'host %s is not proven fenced%s: %s' % (
            host, ' (%s)' % evidence['bmc'] if evidence['bmc'] else '', verdict.reason)
    return result
