"""Test tooling: the fault rules of the local cloud's fault proxy, and its record of requests.

Pure logic, no network: which fault (if any) a request gets, decided once, in `RuleSet.decide`.
The clock is injected, so unit tests run it without waiting (tests/unit/localcloud/).

A rule says what to do to which requests, and when:

what
  ``action``   ``error``: answer ``status`` (default 503) with an OpenStack-shaped JSON body (or
               ``body``); ``reset``: close the client's connection with a TCP RST; ``hang``: never
               answer (until the client gives up, the rule ends, or ``hang_max`` seconds), then
               close; ``delay``: wait ``delay`` seconds, then answer normally.
  ``phase``    ``request`` (default): the fault replaces forwarding, the real service never sees the
               request. ``response``: the request is forwarded and the real service acts on it; its
               answer is then replaced by the fault (an answer lost on the way back, or a late one).
which
  ``service``  a service name (``keystone``, ``nova``, ``placement``, ``glance``, ``cinder``, ``cinder-for-nova``
               (Nova's own requests to Cinder), ``bmc-<host>``) or a shell
               pattern (``bmc-*``, ``*``).
  ``method``   an HTTP method or a list of them; none: any.
  ``path``     a regular expression searched in the request target (path and query); none: any.
when
  ``window``   seconds from the rule's creation during which it is active; none: until cleared.
  ``skip``     the first ``skip`` matching requests pass untouched.
  ``count``    at most ``count`` faults, then the rule is spent (with ``rate`` 1: the next
               ``count`` matching requests).
  ``rate``     probability that a matching request gets the fault (default 1), drawn from a
               random generator seeded with ``seed`` (default 0): the same rules and the same
               requests give the same faults.

The first active rule (in the order they were added) that fires decides; a request that matches
a rule but is not drawn by its rate goes on to the next rules.
"""

import fnmatch
import random
import re
import threading
import time
from collections import deque

ACTIONS = ("error", "reset", "hang", "delay")
PHASES = ("request", "response")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HANG_MAX = 600.0  # a hang with no window and no hang_max still ends, so no thread waits forever


class RuleError(ValueError):
    """A rule the proxy refuses: names the field and the cause."""


def _number(spec, name, low=None, high=None, integer=False, default=None):
    value = spec.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise RuleError(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}")
    if low is not None and value < low:
        raise RuleError(f"{name} must be at least {low}, not {value!r}")
    if high is not None and value > high:
        raise RuleError(f"{name} must be at most {high}, not {value!r}")
    return value


def _methods(value):
    if value is None:
        return None
    methods = [value] if isinstance(value, str) else value
    if not isinstance(methods, (list, tuple)) or not methods:
        raise RuleError(f"method must be a method name or a list of them, not {value!r}")
    methods = [str(m).upper() for m in methods]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise RuleError(f"method {', '.join(unknown)} is not one of {', '.join(METHODS)}")
    return tuple(methods)


class Rule:
    """One fault rule (see the module's docstring), with its counters."""

    FIELDS = ("service", "action", "status", "body", "delay", "phase", "method", "path", "rate", "seed", "count", "skip", "window", "hang_max")

    def __init__(self, spec, rule_id, now):
        if not isinstance(spec, dict):
            raise RuleError(f"a rule is a JSON object, not {spec!r}")
        unknown = sorted(set(spec) - set(self.FIELDS))
        if unknown:
            raise RuleError(f"unknown field(s) {', '.join(unknown)}; a rule has {', '.join(self.FIELDS)}")
        self.id = rule_id
        self.service = spec.get("service")
        if not isinstance(self.service, str) or not self.service:
            raise RuleError(f"service must name a service or a pattern (keystone, nova, placement, glance, cinder, bmc-<host>, bmc-*, *), not {self.service!r}")
        self.action = spec.get("action")
        if self.action not in ACTIONS:
            raise RuleError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        self.phase = spec.get("phase", "request")
        if self.phase not in PHASES:
            raise RuleError(f"phase must be one of {', '.join(PHASES)}, not {self.phase!r}")
        self.status = _number(spec, "status", 400, 599, integer=True, default=503 if self.action == "error" else None)
        if self.action != "error" and "status" in spec:
            raise RuleError(f"status is for action error, not {self.action}")
        self.body = spec.get("body")
        if self.body is not None and (self.action != "error" or not isinstance(self.body, (str, dict, list))):
            raise RuleError("body is for action error: a string or a JSON value")
        self.delay = _number(spec, "delay", 0)
        if (self.action == "delay") != (self.delay is not None):
            raise RuleError("delay (seconds) is required for action delay, and only for it")
        self.hang_max = _number(spec, "hang_max", 0)
        if self.hang_max is not None and self.action != "hang":
            raise RuleError("hang_max is for action hang")
        self.methods = _methods(spec.get("method"))
        path = spec.get("path")
        try:
            self.path = re.compile(path) if path is not None else None
        except (re.error, TypeError) as exc:
            raise RuleError(f"path must be a regular expression, not {path!r}: {exc}") from None
        self.path_text = path
        self.rate = _number(spec, "rate", 0, 1, default=1.0)
        self.seed = _number(spec, "seed", integer=True, default=0)
        self.count = _number(spec, "count", 1, integer=True)
        self.skip = _number(spec, "skip", 0, integer=True, default=0)
        window = _number(spec, "window", 0)
        self.created = now
        self.ends = now + window if window is not None else None
        self.window = window
        self.random = random.Random(self.seed)
        self.matched = 0  # requests that matched service, method and path while active
        self.applied = 0  # faults applied
        self.cleared = threading.Event()  # set when the rule is removed: a hang it caused ends

    def selects(self, service, method, target):
        return (
            fnmatch.fnmatchcase(service, self.service)
            and (self.methods is None or method.upper() in self.methods)
            and (self.path is None or self.path.search(target) is not None)
        )

    def active(self, now):
        return not self.cleared.is_set() and (self.ends is None or now < self.ends) and (self.count is None or self.applied < self.count)

    def hang_deadline(self, now):
        """Monotonic time at which a hang caused now ends (the client or a clear may end it sooner)."""
        ends = [now + (self.hang_max if self.hang_max is not None else HANG_MAX)]
        if self.ends is not None:
            ends.append(self.ends)
        return min(ends)

    def fires(self, now):
        """Count one matching request; True if it gets the fault. Call under the rule set's lock."""
        self.matched += 1
        if self.matched <= self.skip:
            return False
        if self.rate < 1 and self.random.random() >= self.rate:
            return False
        self.applied += 1
        return True

    def describe(self, now):
        spec = {"id": self.id, "service": self.service, "action": self.action, "phase": self.phase}
        for name, value in (
            ("status", self.status),
            ("body", self.body),
            ("delay", self.delay),
            ("hang_max", self.hang_max),
            ("path", self.path_text),
            ("count", self.count),
            ("window", self.window),
        ):
            if value is not None:
                spec[name] = value
        if self.methods is not None:
            spec["method"] = list(self.methods)
        spec.update(
            rate=self.rate,
            seed=self.seed,
            skip=self.skip,
            matched=self.matched,
            applied=self.applied,
            active=self.active(now),
            remaining=round(self.ends - now, 3) if self.ends is not None else None,
        )
        return spec


class RuleSet:
    """The proxy's rules, shared by its threads."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.lock = threading.Lock()
        self.rules = []
        self.next_id = 1

    def add(self, spec):
        with self.lock:
            rule = Rule(spec, self.next_id, self.clock())
            self.next_id += 1
            self.rules.append(rule)
            return rule.describe(self.clock())

    def remove(self, rule_id=None):
        """Remove one rule (by id) or all; return how many were removed."""
        with self.lock:
            gone = [r for r in self.rules if rule_id is None or r.id == rule_id]
            self.rules = [r for r in self.rules if r not in gone]
        for rule in gone:
            rule.cleared.set()
        return len(gone)

    def describe(self):
        with self.lock:
            now = self.clock()
            return [r.describe(now) for r in self.rules]

    def decide(self, service, method, target):
        """The rule whose fault this request gets, or None: the one place that decides."""
        with self.lock:
            now = self.clock()
            for rule in self.rules:
                if rule.active(now) and rule.selects(service, method, target) and rule.fires(now):
                    return rule
        return None


class RequestLog:
    """What the proxy saw: one entry per request, numbered, the newest `size` kept."""

    def __init__(self, size=20000, clock=time.time):
        self.clock = clock
        self.lock = threading.Lock()
        self.entries = deque(maxlen=size)
        self.seq = 0

    def record(self, **entry):
        """Log a request as it arrives (numbered, timed); `finish` completes its entry."""
        with self.lock:
            self.seq += 1
            entry = dict(entry, seq=self.seq, time=round(self.clock(), 6), done=False)
            self.entries.append(entry)
            return entry

    def finish(self, entry, **fields):
        with self.lock:
            entry.update(fields, done=True)

    def read(self, service=None, since=0):
        """Entries after sequence number `since`, of services matching the pattern `service` (copies;
        a request still in progress has done False)."""
        with self.lock:
            return [dict(e) for e in self.entries if e["seq"] > since and (service is None or fnmatch.fnmatchcase(e["service"], service))]

    def last_seq(self):
        with self.lock:
            return self.seq

    def clear(self):
        with self.lock:
            self.entries.clear()


# Nova's fault names per status (nova/api/openstack/wsgi.py, Fault._fault_names); other statuses
# are a computeFault. Cinder answers in the same shape (cinder/api/openstack/wsgi.py, Fault).
_NOVA_FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def error_body(service, status, reason, request_id):
    """The JSON body the real service would send with this status (its own error shape)."""
    message = f"{reason} (injected by the local cloud's fault proxy)"
    if service in ("nova", "cinder", "cinder-for-nova"):
        return {_NOVA_FAULT_NAMES.get(status, "computeFault"): {"code": status, "message": message}}
    if service == "placement":
        return {"errors": [{"status": status, "title": reason, "detail": message, "request_id": request_id}]}
    if service.startswith("bmc-"):
        return {"error": {"code": "Base.1.0.GeneralError", "message": message}}
    return {"error": {"code": status, "title": reason, "message": message}}
