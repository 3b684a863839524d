"""Where the local cloud lives: paths, ports, names. One place, read by every part."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STATE = Path(os.environ.get("NOVAHA_LOCALCLOUD_DIR", ROOT / ".localcloud")).resolve()
CACHE = Path(os.environ.get("NOVAHA_LOCALCLOUD_CACHE", ROOT / ".localcloud-cache")).resolve()
VENV_BIN = Path(sys.executable).parent
PYTHON = sys.executable
PACKAGE_DIR = Path(__file__).resolve().parent

HOST = "127.0.0.1"
REGION = "RegionOne"

# Non-default ports, one block, so nothing collides with a real service on this machine.
# The block stays below Linux's ephemeral range (32768-60999): a port in that range may be the
# local port of any outgoing connection, and a service binding it then fails at random.
# NOVAHA_LOCALCLOUD_PORT_OFFSET shifts the block, so that several clouds (each with its own
# NOVAHA_LOCALCLOUD_DIR) can run side by side; the block spans about 520 ports, so offsets
# of 1000 apart never overlap ('up' refuses an offset that reaches the ephemeral range).
PORT_OFFSET = int(os.environ.get("NOVAHA_LOCALCLOUD_PORT_OFFSET", "0"))
PORTS = {
    name: port + PORT_OFFSET
    for name, port in {
        "mariadb": 21306,
        "rabbitmq": 21672,
        "rabbitmq-dist": 21673,
        "epmd": 21369,
        "keystone": 21500,
        "placement": 21778,
        "nova-api": 21774,
        "glance-api": 21292,
        "cinder-api": 21776,
        "neutron-stub": 21696,
        "masakari-api": 21515,  # only while `localcloud masakari start` has it running (masakari.py)
        # The fault proxy (test tooling, faultproxy.py): the public endpoints and its control API.
        "keystone-public": 21501,
        "placement-public": 21779,
        "nova-api-public": 21775,
        "glance-api-public": 21293,
        "cinder-api-public": 21777,
        "cinder-api-for-nova": 21772,  # Nova's own way to Cinder, proxied apart so a test can fault it alone
        "faultproxy-control": 21590,
    }.items()
}
REDFISH_BASE_PORT = 21800 + PORT_OFFSET
REDFISH_PUBLIC_BASE_PORT = 21850 + PORT_OFFSET  # the fault proxy's listener for each Redfish BMC
IPMI_BASE_PORT = 21620 + PORT_OFFSET

DEFAULT_COMPUTES = ("node-27", "node-28", "node-31")

# Plumbing credentials inside the loopback-only cloud (MariaDB, RabbitMQ): fixed so that the
# schema snapshot stays valid. Keystone and BMC passwords are random per `up`.
DB_USER = "novaha"
DB_PASSWORD = "novaha-db"
RABBIT_USER = "guest"
RABBIT_PASSWORD = "guest"

DATABASES = ("keystone", "placement", "nova_api", "nova", "nova_cell0", "glance", "cinder")

# The image every server boots from: a small raw file uploaded to Glance at `up`, always with this ID.
IMAGE_ID = "6b3e5a52-2c33-4b8e-9d5e-6b1f5a0c0f01"
IMAGE_NAME = "cirros-stub"
IMAGE_SIZE = 1024 * 1024
# Cinder's one backend (cinder-volume's host is `cinder@fake`), and the volume type that selects it.
VOLUME_BACKEND = "fake"
FLAVORS = (  # name, vcpus, ram MB, root disk GB
    ("m1.tiny", 1, 512, 1),
    ("m1.small", 1, 2048, 20),
    ("m1.medium", 2, 4096, 40),
)


def db_url(name):
    return f"mysql+pymysql://{DB_USER}:{DB_PASSWORD}@{HOST}:{PORTS['mariadb']}/{name}?charset=utf8"


def transport_url():
    return f"rabbit://{RABBIT_USER}:{RABBIT_PASSWORD}@{HOST}:{PORTS['rabbitmq']}/"


def keystone_url(public=False):
    """Keystone's URL: direct (the cloud's own services), or public, through the fault proxy."""
    return f"http://{HOST}:{PORTS['keystone-public' if public else 'keystone']}/v3"


def endpoint(service, public=False):
    """A service's catalog URL: `internal` (direct) or `public` (through the fault proxy, for
    identity, compute, placement, image and block-storage; see faultproxy.py)."""
    suffix = "-public" if public else ""
    return {
        "compute": f"http://{HOST}:{PORTS['nova-api' + suffix]}/v2.1",
        "placement": f"http://{HOST}:{PORTS['placement' + suffix]}",
        "image": f"http://{HOST}:{PORTS['glance-api' + suffix]}",
        # Without the project in the path: Cinder takes it from the token (API 3.67 and later).
        "block-storage": f"http://{HOST}:{PORTS['cinder-api' + suffix]}/v3",
        "network": f"http://{HOST}:{PORTS['neutron-stub']}",
        "identity": keystone_url(public),
    }[service]


def compute_ports(index):
    """Redfish and IPMI ports of the compute at position `index`."""
    return REDFISH_BASE_PORT + index, IPMI_BASE_PORT + index


def redfish_public_port(index):
    """The fault proxy's port in front of the Redfish BMC of the compute at position `index`."""
    return REDFISH_PUBLIC_BASE_PORT + index
