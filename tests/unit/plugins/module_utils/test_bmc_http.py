"""bmc_http (the Redfish transport) against two tiny HTTP servers on the loopback interface: basic auth is
sent to the BMC and to a redirect on the same BMC, never to a redirect target on another host."""

import base64
import http.server
import json
import threading

import pytest

from ansible_collections.novaha.recovery.plugins.module_utils import _cloud, _fencing as f

AUTH = ("root", "bmc-Secret-42")
TOKEN = "Basic " + base64.b64encode(("%s:%s" % AUTH).encode()).decode()


class Server:
    """One HTTP server on ``address``; ``routes`` maps a path to (status, headers, body); every request's
    path and Authorization header is recorded."""

    def __init__(self, address, routes):
        self.routes = routes
        self.seen = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.seen.append((self.command, self.path, self.headers.get("Authorization")))
                status, headers, body = owner.routes.get(self.path, (404, {}, "{}"))
                data = body.encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value.format(other=owner.other_url))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.url = "http://%s:%d" % (address, self.httpd.server_address[1])
        self.other_url = None
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    system = json.dumps({"PowerState": "Off", "Id": "1", "Name": "node-28"})
    other = Server("127.0.0.2", {"/redfish/v1/Systems/1": (200, {}, system)})
    bmc = Server(
        "127.0.0.1",
        {
            "/redfish/v1/Systems/1": (200, {}, system),
            "/redfish/v1/Systems/moved": (302, {"Location": "/redfish/v1/Systems/1"}, ""),
            "/redfish/v1/Systems/away": (301, {"Location": "{other}/redfish/v1/Systems/1"}, ""),
            "/redfish/v1/Systems/loop": (302, {"Location": "/redfish/v1/Systems/loop"}, ""),
        },
    )
    bmc.other_url = other.url
    yield bmc, other
    bmc.close()
    other.close()


def test_auth_is_sent_to_the_bmc_and_follows_a_redirect_on_the_same_bmc(servers):
    bmc, _other = servers
    http = _cloud.bmc_http()
    status, body = http("GET", bmc.url + "/redfish/v1/Systems/moved", headers={}, timeout=5, auth=AUTH)
    assert status == 200 and json.loads(body)["PowerState"] == "Off"
    assert [(p, a) for _m, p, a in bmc.seen] == [("/redfish/v1/Systems/moved", TOKEN), ("/redfish/v1/Systems/1", TOKEN)]


def test_auth_is_never_sent_to_a_redirect_target_on_another_host(servers):
    bmc, other = servers
    http = _cloud.bmc_http()
    with pytest.raises(f.TransportError) as err:
        http("GET", bmc.url + "/redfish/v1/Systems/away", headers={}, timeout=5, auth=AUTH)
    assert err.value.cause == f.CAUSE_CONFIG
    assert "127.0.0.2" in err.value.reason and "credentials were not sent" in err.value.reason
    assert other.seen == [], "the other host was not contacted at all"
    assert AUTH[1] not in err.value.reason


def test_the_fence_check_names_the_refused_redirect_and_powers_nothing(servers):
    bmc, other = servers
    redfish = f.RedfishBmc(bmc.url, _cloud.bmc_http(), username=AUTH[0], password=AUTH[1], system_id="away", timeout=5)
    result = f.check_fence("node-28", redfish, fence=True)
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == f.CAUSE_CONFIG
    assert "redirected to http://127.0.0.2" in result["error"] and "node-28" in result["error"]
    assert [m for m, _p, _a in bmc.seen] == ["GET"] and other.seen == []


def test_a_redirect_loop_ends(servers):
    bmc, _other = servers
    with pytest.raises(f.TransportError) as err:
        _cloud.bmc_http()("GET", bmc.url + "/redfish/v1/Systems/loop", headers={}, timeout=5, auth=AUTH)
    assert "more than %d times" % _cloud.MAX_BMC_REDIRECTS in err.value.reason
    assert len(bmc.seen) == _cloud.MAX_BMC_REDIRECTS + 1


@pytest.mark.parametrize(
    "a,b,same",
    [
        ("https://10.0.0.5/x", "https://10.0.0.5:443/y", True),
        ("https://10.0.0.5/x", "http://10.0.0.5/y", False),
        ("https://10.0.0.5/x", "https://10.0.0.6/x", False),
        ("https://10.0.0.5:8443/x", "https://10.0.0.5/x", False),
        ("https://BMC.example/x", "https://bmc.example/x", True),
    ],
)
def test_same_origin(a, b, same):
    assert (_cloud._origin(a) == _cloud._origin(b)) is same
