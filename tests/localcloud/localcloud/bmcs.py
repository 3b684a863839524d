"""The local cloud's BMCs: one Redfish and one IPMI emulator per compute host (see bmc.py)."""

import base64
import signal
import ssl
import urllib.request

from . import bmc, config, proc

USERNAME = "root"


def certs():
    """The BMCs' CA and server certificate (made on first use)."""
    return bmc.make_certs(config.STATE / "certs")


def _pairs(computes):
    paths = certs()
    password_file = config.STATE / "bmc" / "password"
    pairs = {}
    for index, host in enumerate(computes):
        redfish_port, ipmi_port = config.compute_ports(index)
        pairs[host] = bmc.BmcPair.under(
            config.STATE / "bmc", host, username=USERNAME, password_file=password_file, redfish_port=redfish_port, ipmi_port=ipmi_port, certs=paths
        )
    return pairs


def _pair(host):
    from . import cloud

    return _pairs(cloud.load_info()["computes"])[host]


def start_all(computes, password):
    """Start every BMC (powered On); return cloud.json's `bmcs` section."""
    password_file = config.STATE / "bmc" / "password"
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password_file.write_text(password)
    password_file.chmod(0o600)
    env = {"PYTHONPATH": str(config.PACKAGE_DIR.parent)}
    info = {}
    for host, pair in _pairs(computes).items():
        proc.start(f"{host}-redfish-bmc", bmc.redfish_argv(pair, python=config.PYTHON), env=env)
        proc.start(f"{host}-ipmi-bmc", bmc.ipmi_argv(pair, python=config.PYTHON), env=env)
        info[host] = pair.describe(password)
    return info


def _open_system(pair, password):
    """Read the system once: sushy's fake driver creates its state store on first use."""
    request = urllib.request.Request(pair.redfish_url + pair.system_path)
    token = base64.b64encode(f"{pair.username}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(pair.certs.ca))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        response.read()


def wait_all(computes, password):
    for host, pair in _pairs(computes).items():
        for kind, port, name in ((bmc.REDFISH, pair.redfish_port, "redfish"), (bmc.IPMI, pair.ipmi_port, "ipmi")):
            try:
                bmc.wait_ready(kind, port, ca_path=pair.certs.ca, timeout=30)
            except (TimeoutError, RuntimeError) as exc:
                raise proc.CloudError(f"{name} BMC of {host}: {exc}; see {proc.log_dir() / f'{host}-{name}-bmc.log'}") from None
        _open_system(pair, password)


def set_state(host, state):
    """on | off | stuck | unreachable | revived, applied to both BMCs of `host`."""
    pair = _pair(host)
    frozen = state == "unreachable"
    for kind in bmc.KINDS:
        name = f"{host}-{kind}-bmc"
        proc.signal_group(name, signal.SIGCONT)
        bmc.set_mode(pair.state_dir(kind), bmc.STUCK if state == "stuck" else bmc.NORMAL)
        bmc.set_power(pair.state_dir(kind), kind, bmc.POWER_OFF if state == "off" else bmc.POWER_ON)
        if frozen:
            proc.signal_group(name, signal.SIGSTOP)


def power(host):
    pair = _pair(host)
    return {kind: bmc.get_power(pair.state_dir(kind), kind) for kind in bmc.KINDS}


def frozen(host):
    return any(_stopped(proc.pid_of(f"{host}-{kind}-bmc")) for kind in bmc.KINDS)


def _stopped(pid):
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "T"
    except OSError:
        return False
