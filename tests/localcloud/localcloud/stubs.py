"""A STUB of Neutron: just enough of its API for Nova to boot and evacuate.

This is not an OpenStack service. It is an in-memory store of networks, subnets and ports with the
query filters Nova uses, so that a server booted on a pre-created port can be checked to keep that
port across evacuation. It records what Nova writes to a port (``binding:host_id`` when Nova binds
the port to a host, at boot and again on the destination of an evacuation) and answers it back, so
"ports bound to the new host" can be checked. No token is checked. Glance is real (services.py).
Run as ``python -m localcloud.stubs``.
"""

import argparse
import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import config

NETWORK_ID = "3f4c9a7e-0d1b-4c55-9a61-2f1a5b7e9c01"
SUBNET_ID = "8a2d6c1e-5b3f-4e77-8c90-1d2e3f4a5b01"


class Store:
    """Neutron resources by collection, thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.data = {
            "networks": {
                NETWORK_ID: {
                    "id": NETWORK_ID,
                    "name": "stub-net",
                    "status": "ACTIVE",
                    "admin_state_up": True,
                    "shared": True,
                    "subnets": [SUBNET_ID],
                    "tenant_id": "",
                    "project_id": "",
                    "mtu": 1450,
                    "port_security_enabled": False,
                    "router:external": False,
                    "provider:network_type": "flat",
                    "provider:physical_network": "stub",
                    "provider:segmentation_id": None,
                    "tags": [],
                }
            },
            "subnets": {
                SUBNET_ID: {
                    "id": SUBNET_ID,
                    "name": "stub-subnet",
                    "network_id": NETWORK_ID,
                    "ip_version": 4,
                    "cidr": "10.99.0.0/16",
                    "gateway_ip": "10.99.0.1",
                    "enable_dhcp": False,
                    "dns_nameservers": [],
                    "host_routes": [],
                    "tenant_id": "",
                    "project_id": "",
                    "ipv6_address_mode": None,
                    "ipv6_ra_mode": None,
                    "subnetpool_id": None,
                }
            },
            "ports": {},
            "floatingips": {},
            "security-groups": {},
            "trunks": {},
            "qos/policies": {},
        }
        self.next_ip = 10

    def allocate_ip(self):
        self.next_ip += 1
        return f"10.99.{self.next_ip // 250}.{self.next_ip % 250 + 2}"

    def new_port(self, body):
        port = {
            "id": str(uuid.uuid4()),
            "name": "",
            "network_id": NETWORK_ID,
            "admin_state_up": True,
            "status": "DOWN",
            "device_id": "",
            "device_owner": "",
            "binding:host_id": "",
            "binding:vif_type": "unbound",
            "binding:vnic_type": "normal",
            "binding:profile": {},
            "binding:vif_details": {},
            "mac_address": "fa:16:3e:%02x:%02x:%02x" % tuple(uuid.uuid4().bytes[:3]),
            "security_groups": [],
            "tenant_id": "",
            "project_id": "",
            "port_security_enabled": False,
            "allowed_address_pairs": [],
            "extra_dhcp_opts": [],
            "dns_name": "",
            "tags": [],
            "resource_request": None,
        }
        port.update(body)
        if not port.get("fixed_ips"):
            port["fixed_ips"] = [{"subnet_id": SUBNET_ID, "ip_address": self.allocate_ip()}]
        return port


def matches(item, filters):
    for key, wanted in filters.items():
        if key in ("fields", "limit", "marker", "sort_key", "sort_dir"):
            continue
        value = item.get(key)
        if key == "fixed_ips":
            continue
        if isinstance(value, bool):
            value = str(value)
        if str(value) not in wanted and not (value is None and "" in wanted):
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "novaha-stub"

    def log_message(self, fmt, *args):  # quiet: one line per request in the log is enough
        self.server.log.write(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")
        self.server.log.flush()

    def reply(self, status, body=None):
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-openstack-request-id", "req-" + str(uuid.uuid4()))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        parts = [p for p in url.path.split("/") if p]
        try:
            self.server.kind_handler(self, method, parts, query)
        except Exception as exc:  # a stub must answer, not hang the caller
            self.reply(500, {"error": str(exc)})


def neutron(handler, method, parts, query):
    store = handler.server.store
    base = f"http://{config.HOST}:{handler.server.server_port}"
    if not parts:
        return handler.reply(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{base}/v2.0/"}]}]})
    if parts[0] != "v2.0":
        return handler.reply(404, {"NeutronError": {"message": "unknown version"}})
    parts = parts[1:]
    if not parts:
        return handler.reply(200, {"resources": []})
    if parts[0] == "extensions":
        return handler.reply(200, {"extensions": []})
    collection = parts[0]
    if collection == "qos" and len(parts) > 1:
        collection, parts = "qos/policies", ["qos/policies"] + parts[2:]
    if collection == "quotas":
        return handler.reply(200, {"quota": {"port": -1, "network": -1, "subnet": -1}})
    singular = {
        "networks": "network",
        "subnets": "subnet",
        "ports": "port",
        "floatingips": "floatingip",
        "security-groups": "security_group",
        "trunks": "trunk",
        "qos/policies": "policy",
    }.get(collection)
    if singular is None:
        return handler.reply(404, {"NeutronError": {"message": f"{collection} not in the Neutron stub"}})
    items = store.data[collection]
    key = collection.replace("-", "_").split("/")[-1]
    with store.lock:
        if len(parts) == 1 and method == "GET":
            return handler.reply(200, {key: [i for i in items.values() if matches(i, query)]})
        if len(parts) == 1 and method == "POST":
            body = handler.body()
            if collection != "ports":
                return handler.reply(403, {"NeutronError": {"message": "read-only in the stub"}})
            new = [store.new_port(b) for b in body["ports"]] if "ports" in body else [store.new_port(body["port"])]
            for port in new:
                items[port["id"]] = port
            return handler.reply(201, {"ports": new} if "ports" in body else {"port": new[0]})
        item = items.get(parts[1])
        if item is None:
            return handler.reply(404, {"NeutronError": {"type": f"{singular.title()}NotFound", "message": f"{singular} {parts[1]} not found"}})
        if method == "GET":
            return handler.reply(200, {singular: item})
        if method == "PUT":
            item.update(handler.body().get(singular, {}))
            if item.get("binding:host_id") and collection == "ports":
                item["binding:vif_type"] = "ovs"
                item["status"] = "ACTIVE"
            return handler.reply(200, {singular: item})
        if method == "DELETE":
            del items[parts[1]]
            return handler.reply(204)
    return handler.reply(405, {"NeutronError": {"message": "method not allowed"}})


def serve(port, log_path):
    server = ThreadingHTTPServer((config.HOST, port), Handler)
    server.daemon_threads = True
    server.kind_handler = neutron
    server.store = Store()
    server.log = open(log_path, "a")  # pylint: disable=consider-using-with
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--neutron-port", type=int, default=config.PORTS["neutron-stub"])
    parser.add_argument("--log-dir", default=str(config.STATE / "logs"))
    args = parser.parse_args()
    serve(args.neutron_port, f"{args.log_dir}/neutron-stub-requests.log").serve_forever()


if __name__ == "__main__":
    main()
