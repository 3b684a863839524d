"""Test tooling: a fault-injecting HTTP proxy between the collection and the local cloud.

Which traffic goes through it (decided here, once):

- The collection's way in: ``clouds.yaml``'s ``auth_url`` and the Keystone catalog's ``public``
  endpoints of identity, compute, placement, image (Glance) and block-storage (Cinder) are the
  proxy's ports; so is each inventory host's ``bmc_address`` (and ``cloud.json``'s Redfish URL), a
  TLS listener with the BMC's own certificate. A client with ``interface: public`` (the collection's
  default) goes through the proxy for every request.
- The cloud's own traffic goes direct: the services authenticate at Keystone's direct URL and use
  the ``internal`` endpoints (keystonemiddleware's and Nova's ``[placement]`` default interface;
  Nova's ``[glance]`` and Cinder's Glance are set to them), and the local cloud's
  own tooling (``localcloud boot``, ``reset``, the tests' ``LocalCloud.connect(internal=True)``)
  does too. So a fault meant for the collection never reaches nova-conductor, nova-scheduler,
  nova-compute, cinder-volume or a test's set-up.
- Nova's requests to Cinder (attachment create, update, complete, delete) go through a service of their
  own, ``cinder-for-nova`` (Nova's ``[cinder] endpoint_template``): no rule on ``cinder`` touches them, and
  a test that fails Cinder for Nova names that service.
- Not proxied: IPMI (UDP), the Neutron stub (only Nova talks to it).

The proxy is transparent: it forwards the request as it came (the ``Host`` header too, so that the
links the services build point back at the proxy), opens one upstream connection per request (it
never re-sends a request), streams bodies both ways (``Content-Length``, chunked, or read to the
end), and keeps the client's connection alive. An upstream it cannot reach resets the client's
connection, as the service's own closed port would.

Faults are rules (see faultrules.py), added and removed at runtime through the control API on
127.0.0.1 (``localcloud.faultclient.FaultClient``, ``python -m localcloud fault ...``)::

    GET    /services          the proxied services: listen and upstream addresses
    GET    /rules             the rules with their counters
    POST   /rules             add a rule (JSON object); answers it with its id
    DELETE /rules[/<id>]      remove every rule, or one
    GET    /log?service=&since=   the requests seen (see `Proxy.handle`'s record)
    DELETE /log               forget them

Run as ``python -m localcloud.faultproxy --config STATE/faultproxy.json`` (cloud.py starts it).
"""

import argparse
import http.client
import json
import select
import socket
import ssl
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, urlsplit

from localcloud.faultrules import RequestLog, RuleError, RuleSet, error_body

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "expect",
}
CHUNK = 64 * 1024
UPSTREAM_CONNECT_TIMEOUT = 10.0
UPSTREAM_READ_TIMEOUT = 300.0  # longer than any client's: the client decides when to give up
IDLE_CLIENT_TIMEOUT = 300.0


class ClientGone(Exception):
    """The client closed its connection (or it broke) while the proxy worked on its request."""


class UpstreamDown(Exception):
    """The real service could not be reached."""


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, tls_context=None):
        self.tls_context = tls_context
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        # TLS handshakes in the connection's own thread, so a slow client never blocks accept().
        if self.tls_context is not None:
            request.settimeout(30)
            try:
                request = self.tls_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                request.close()
                return
            request.settimeout(None)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        pass  # a client that went away is not news; faults are logged through the request log


class Service:
    """One proxied service: where the proxy listens, where the real service is."""

    def __init__(self, name, listen_port, upstream_port, host="127.0.0.1", tls=None):
        self.name = name
        self.host = host
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.tls = tls  # {"cert", "key", "ca"} for a TLS service (the BMCs), else None

    def describe(self):
        scheme = "https" if self.tls else "http"
        return {"listen": f"{scheme}://{self.host}:{self.listen_port}", "upstream": f"{scheme}://{self.host}:{self.upstream_port}"}

    def server_context(self):
        if not self.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls["cert"], self.tls["key"])
        return context

    def connect(self):
        """A new connection to the real service (an http.client connection, not yet open)."""
        if self.tls:
            context = ssl.create_default_context(cafile=self.tls["ca"])
            return http.client.HTTPSConnection(self.host, self.upstream_port, context=context, timeout=UPSTREAM_CONNECT_TIMEOUT)
        return http.client.HTTPConnection(self.host, self.upstream_port, timeout=UPSTREAM_CONNECT_TIMEOUT)


class Proxy:
    """The proxied services, the rules and the request log of one proxy process."""

    def __init__(self, services, rules=None, log=None):
        self.services = {s.name: s for s in services}
        self.rules = rules or RuleSet()
        self.log = log or RequestLog()


def _drain_body(body):
    for _piece in body:
        pass


def _reason(status):
    try:
        return http.client.responses[status]
    except KeyError:
        return "Error"


class ProxyHandler(BaseHTTPRequestHandler):
    """One client connection to one proxied service (the class is made per service)."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_CLIENT_TIMEOUT
    # Headers and body go out in separate writes: with Nagle's algorithm the body would wait for the
    # client's delayed ACK, 40 ms per answer.
    disable_nagle_algorithm = True
    proxy = None  # set per service by handler_for()
    service = None

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass  # the request log is the record

    def _dispatch(self):
        started = time.monotonic()
        # The entry is in the log from the start and filled in as the request goes (a test sees a
        # request that hangs, and whether it was forwarded, while it is in progress).
        entry = self.proxy.log.record(
            service=self.service.name,
            method=self.command,
            path=self.path,
            status=None,
            upstream_status=None,
            forwarded=False,
            fault=None,
            request_id=None,
            microversion=self._microversion(),
        )
        outcome = {}
        try:
            self.handle_request(entry)
        except ClientGone:
            self.close_connection = True
            outcome["client_gone"] = True
        except (OSError, http.client.HTTPException) as exc:
            # the client's connection broke (a write to it failed), or the service broke mid-answer
            self.close_connection = True
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            self.proxy.log.finish(entry, duration=round(time.monotonic() - started, 4), **outcome)

    def _microversion(self):
        """The microversion the client asked for ("compute 2.94" -> "2.94"), or None: what tests check was sent."""
        value = self.headers.get("OpenStack-API-Version") or ""
        parts = value.split()
        if len(parts) == 2:
            return parts[1]
        return self.headers.get("X-OpenStack-Nova-API-Version") or value or None

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    # --- one request ------------------------------------------------------------------------

    def handle_request(self, entry):
        rule = self.proxy.rules.decide(self.service.name, self.command, self.path)
        if rule is not None:
            entry["fault"] = {"rule": rule.id, "action": rule.action, "phase": rule.phase}
        body = self._request_body()
        if rule is not None and rule.phase == "request":
            if rule.action == "delay":
                time.sleep(rule.delay)
            else:
                _drain_body(body)  # the request is read to its end, as a service would, then faulted
                self._apply(rule, entry)
                return
            rule = None
        try:
            upstream, response = self._forward(body, entry)
        except UpstreamDown as exc:
            entry["upstream_error"] = str(exc)
            self._reset()
            return
        entry["upstream_status"] = response.status
        entry["request_id"] = response.getheader("x-openstack-request-id")
        try:
            if rule is not None and rule.action != "delay":
                self._drain(response)  # the real service finished; its answer is lost
                self._apply(rule, entry)
                return
            if rule is not None:
                time.sleep(rule.delay)
            entry["status"] = response.status
            self._relay(response)
        finally:
            upstream.close()

    def _apply(self, rule, entry):
        if rule.action == "error":
            request_id = f"req-{uuid.uuid4()}"
            entry["status"] = rule.status
            entry["request_id"] = request_id
            self._send_error(rule, request_id)
        elif rule.action == "reset":
            self._reset()
        elif rule.action == "hang":
            self._hang(rule)

    def _send_error(self, rule, request_id):
        reason = _reason(rule.status)
        body = rule.body if rule.body is not None else error_body(self.service.name, rule.status, reason, request_id)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response_only(rule.status, reason)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-openstack-request-id", request_id)
        if self.service.name == "nova":
            self.send_header("x-compute-request-id", request_id)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _reset(self):
        """Close the client's connection with a TCP RST (SO_LINGER 0), no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _hang(self, rule):
        """No answer until the client leaves, the rule is removed or ends, or hang_max; then close."""
        self.close_connection = True
        deadline = rule.hang_deadline(time.monotonic())
        while not rule.cleared.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable = select.select([self.connection], [], [], min(left, 0.2))[0]
            if readable:
                raise ClientGone()  # a waiting client sends nothing more: it closed the connection

    # --- forwarding ---------------------------------------------------------------------------

    def _request_body(self):
        """The request's body as a generator of pieces (read from the client as it is sent)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self._read_exactly(length)

    def _read_exactly(self, length):
        while length > 0:
            data = self.rfile.read(min(CHUNK, length))
            if not data:
                raise ClientGone()
            length -= len(data)
            yield data

    def _read_chunked(self):
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ClientGone()
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers, dropped
                return
            yield from self._read_exactly(size)
            self.rfile.readline(65537)  # the CRLF after the chunk

    def _forward(self, body, entry):
        """Send the request to the real service; return (connection, response).

        UpstreamDown if it cannot be reached or breaks before its answer's headers
        (entry["forwarded"] says whether the whole request was sent).
        """
        upstream = self.service.connect()
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            upstream.connect()
        except OSError as exc:
            upstream.close()
            _drain_body(body)
            raise UpstreamDown(f"cannot connect: {exc}") from None
        upstream.sock.settimeout(UPSTREAM_READ_TIMEOUT)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    upstream.putheader(name, value)
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            upstream.putheader("Connection", "close")
            upstream.endheaders()
            for piece in body:
                upstream.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                upstream.send(b"0\r\n\r\n")
            entry["forwarded"] = True
            return upstream, upstream.getresponse()
        except ClientGone:
            upstream.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            upstream.close()
            raise UpstreamDown(f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _drain(response):
        while response.read(CHUNK):
            pass

    def _relay(self, response):
        """The real service's answer to the client, streamed as it comes."""
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        rechunk = not no_body and length is None
        if rechunk:
            if self.request_version == "HTTP/1.1":
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.close_connection = True  # the end of the body is the end of the connection
                rechunk = False
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if no_body:
            self.wfile.flush()
            return
        try:
            while True:
                data = response.read1(CHUNK)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if rechunk else data)
            if rechunk:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ClientGone() from exc


def handler_for(proxy, service):
    return type(f"ProxyHandler_{service.name}", (ProxyHandler,), {"proxy": proxy, "service": service})


# --- the control API ----------------------------------------------------------------------------


class ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CLIENT_TIMEOUT
    disable_nagle_algorithm = True
    proxy = None

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass

    def _answer(self, status, data):
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self):
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        return parts, query

    def do_GET(self):  # pylint: disable=invalid-name
        parts, query = self._route()
        if parts == ["services"]:
            self._answer(200, {n: s.describe() for n, s in self.proxy.services.items()})
        elif parts == ["rules"]:
            self._answer(200, {"rules": self.proxy.rules.describe()})
        elif parts == ["log"]:
            try:
                since = int(query.get("since", 0))
            except ValueError:
                self._answer(400, {"error": f"since must be a sequence number, not {query['since']!r}"})
                return
            self._answer(200, {"entries": self.proxy.log.read(query.get("service"), since), "last": self.proxy.log.last_seq()})
        elif parts == ["health"]:
            self._answer(200, {"ok": True})
        else:
            self._answer(404, {"error": f"no such resource {self.path}"})

    def do_POST(self):  # pylint: disable=invalid-name
        parts, _query = self._route()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if parts != ["rules"]:
            self._answer(404, {"error": f"no such resource {self.path}"})
            return
        try:
            spec = json.loads(raw or b"null")
        except ValueError as exc:
            self._answer(400, {"error": f"the rule is not JSON: {exc}"})
            return
        try:
            rule = self.proxy.rules.add(spec)
        except RuleError as exc:
            self._answer(400, {"error": str(exc)})
            return
        self._answer(201, rule)

    def do_DELETE(self):  # pylint: disable=invalid-name
        parts, _query = self._route()
        if parts == ["rules"]:
            self._answer(200, {"removed": self.proxy.rules.remove()})
        elif len(parts) == 2 and parts[0] == "rules" and parts[1].isdigit():
            removed = self.proxy.rules.remove(int(parts[1]))
            self._answer(200 if removed else 404, {"removed": removed} if removed else {"error": f"no rule {parts[1]}"})
        elif parts == ["log"]:
            self.proxy.log.clear()
            self._answer(200, {"cleared": True})
        else:
            self._answer(404, {"error": f"no such resource {self.path}"})


# --- the process ----------------------------------------------------------------------------------


def serve(proxy, control_port, host="127.0.0.1"):
    """Start every listener in its own thread; return the servers (the caller waits)."""
    servers = []
    for service in proxy.services.values():
        server = Server((host, service.listen_port), handler_for(proxy, service), service.server_context())
        servers.append(server)
    control = type("ControlHandlerBound", (ControlHandler,), {"proxy": proxy})
    servers.append(Server((host, control_port), control))
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return servers


def load_config(path):
    with open(path) as handle:
        data = json.load(handle)
    services = [Service(name, s["listen_port"], s["upstream_port"], tls=s.get("tls")) for name, s in data["services"].items()]
    return services, data["control_port"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m localcloud.faultproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="faultproxy.json written by the local cloud")
    args = parser.parse_args(argv)
    services, control_port = load_config(args.config)
    serve(Proxy(services), control_port)
    threading.Event().wait()


if __name__ == "__main__":
    main()
