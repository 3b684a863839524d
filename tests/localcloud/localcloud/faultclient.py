"""Test tooling: drive the local cloud's fault proxy from a test or a shell (standard library only).

    faults = FaultClient.for_cloud(state_dir)     # or FaultClient("http://127.0.0.1:<control port>")
    faults.error("nova", status=503, method="GET", path=r"^/v2\\.1/servers", window=3)
    faults.reset("keystone", count=1)
    faults.hang("bmc-node-28", method="POST")
    faults.delay("placement", 2.0, rate=0.5, seed=7)
    mark = faults.mark()
    ...
    posts = faults.requests("nova", method="POST", path="/action", since=mark)
    assert len([p for p in posts if p["forwarded"]]) == 1   # Nova saw the POST exactly once
    faults.clear()

Each request the proxy saw is a dict: seq, time, service, method, path, status (what the client got;
None after a reset or a hang), upstream_status, forwarded (the real service received the request),
fault ({rule, action, phase} or None), request_id, duration. The rule fields are described in
faultrules.py.
"""

import json
import re
import urllib.error
import urllib.request
from pathlib import Path


class FaultProxyError(Exception):
    """The control API refused a call (a bad rule) or could not be reached."""


class FaultClient:
    def __init__(self, control_url, timeout=10.0):
        self.url = control_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def for_cloud(cls, state_dir):
        """The client of the fault proxy of the local cloud whose state is in `state_dir`."""
        info = json.loads((Path(state_dir) / "cloud.json").read_text())
        return cls(info["faultproxy"]["control"])

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error")
            except ValueError:
                message = exc.reason
            raise FaultProxyError(f"fault proxy: {method} {path}: {exc.code} {message}") from None
        except OSError as exc:
            raise FaultProxyError(f"fault proxy at {self.url} did not answer: {exc}") from None

    # --- rules ------------------------------------------------------------------------------

    def add(self, service, action, **rule):
        """Add a rule; return it as the proxy holds it (with its id)."""
        rule = {k: v for k, v in rule.items() if v is not None}
        return self._call("POST", "/rules", dict(rule, service=service, action=action))

    def error(self, service, status=503, **rule):
        return self.add(service, "error", status=status, **rule)

    def reset(self, service, **rule):
        return self.add(service, "reset", **rule)

    def hang(self, service, **rule):
        return self.add(service, "hang", **rule)

    def delay(self, service, seconds, **rule):
        return self.add(service, "delay", delay=seconds, **rule)

    def rules(self):
        return self._call("GET", "/rules")["rules"]

    def rule(self, rule_id):
        return next(r for r in self.rules() if r["id"] == rule_id)

    def clear(self, rule_id=None):
        """Remove one rule or every rule (a hang they caused ends); return how many."""
        return self._call("DELETE", "/rules" if rule_id is None else f"/rules/{rule_id}")["removed"]

    def services(self):
        return self._call("GET", "/services")

    # --- the record of requests -----------------------------------------------------------------

    def log(self, service=None, since=0):
        query = f"?since={int(since)}" + (f"&service={urllib.request.quote(service)}" if service else "")
        return self._call("GET", "/log" + query)["entries"]

    def mark(self):
        """The sequence number of the last request seen: pass it as `since` to see only later ones."""
        return self._call("GET", "/log?since=999999999999")["last"]

    def requests(self, service=None, method=None, path=None, since=0):
        """Requests seen, filtered by service pattern, method and a regular expression on the path."""
        return [e for e in self.log(service, since) if (method is None or e["method"] == method.upper()) and (path is None or re.search(path, e["path"]))]

    def clear_log(self):
        self._call("DELETE", "/log")
