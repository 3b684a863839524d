"""The local cloud's life cycle: up, down, status, reset, fail-host, revive-host, boot."""

import json
import os
import secrets as pysecrets
import shutil
import signal
import time

from . import bmcs, config, infra, instancestore, proc, services

SERVICE_ORDER = (
    "mariadb",
    "rabbitmq",
    "keystone",
    "placement",
    "stubs",
    "glance-api",
    "cinder-api",
    "cinder-scheduler",
    "cinder-volume",
    "nova-api",
    "nova-conductor",
    "nova-scheduler",
    "faultproxy",
    "masakari-api",
    "masakari-engine",
)
COMPUTE_MICROVERSION = "2.95"


def _state_file(name):
    return config.STATE / name


def load_info():
    try:
        return json.loads(_state_file("cloud.json").read_text())
    except (OSError, ValueError):
        raise proc.CloudError(f"no local cloud in {config.STATE}: run 'localcloud up' first") from None


def load_secrets():
    return json.loads(_state_file("secrets.json").read_text())


def _new_secrets():
    def token():
        return pysecrets.token_urlsafe(12)

    values = {name: token() for name in ("admin", "nova", "placement", "glance", "cinder", "demo")}
    values["bmc"] = token()[:16]  # IPMI passwords are at most 20 bytes
    return values


def _check_hosts(info, hosts):
    unknown = [h for h in hosts if h not in info["computes"]]
    if unknown:
        raise proc.CloudError(f"unknown compute host {', '.join(unknown)}; this cloud has {', '.join(info['computes'])}")


# --- up -----------------------------------------------------------------------------------


def up(computes=config.DEFAULT_COMPUTES, spawn_delay=0.0, shared_store=None, log=print):
    """`shared_store`: the hosts whose instance store is one common directory (instancestore.py);
    None for the default, every compute but the last."""
    computes = list(computes)
    if len(set(computes)) != len(computes) or not computes:
        raise proc.CloudError("give one or more distinct compute host names")
    if shared_store is None:
        shared_store = instancestore.default_shared_hosts(computes)
    _check_hosts({"computes": computes}, shared_store)
    if any(proc.running(name) for name in proc.known_services()):
        raise proc.CloudError(f"the local cloud in {config.STATE} is already up (run 'localcloud down' first, or 'localcloud reset')")
    ports = _all_ports(len(computes))
    proc.check_ports_outside_ephemeral(ports)
    proc.check_ports_free(ports)
    started = time.monotonic()
    try:
        _up(computes, spawn_delay, shared_store, log)
    except BaseException:
        log("start-up failed; stopping what was started")
        down(log=lambda *a: None)
        raise
    log(f"local cloud up in {time.monotonic() - started:.1f}s ({', '.join(computes)}; shared instance store: {', '.join(shared_store) or 'none'})")


def _up(computes, spawn_delay, shared_store, log):
    if config.STATE.exists():
        shutil.rmtree(config.STATE)
    config.STATE.mkdir(parents=True)
    secrets = _new_secrets()
    secrets_path = _state_file("secrets.json")
    secrets_path.write_text(json.dumps(secrets))
    secrets_path.chmod(0o600)

    log("starting MariaDB and RabbitMQ")
    infra.start_rabbitmq_async()
    infra.start_mariadb()
    infra.create_databases()
    services.write_keystone_conf()
    services.write_placement_conf(secrets)
    services.write_nova_conf(secrets, spawn_delay=spawn_delay)
    services.write_glance_conf(secrets)
    services.write_cinder_conf(secrets)
    if infra.schema_snapshot().exists():
        log("restoring the database schemas from the snapshot")
        infra.restore_schemas()
    else:
        log("first start: creating the database schemas (taking a snapshot for later starts)")
        services.sync_keystone_schema()
        services.sync_placement_schema()
        services.sync_glance_schema()
        services.sync_cinder_schema()
        infra.wait_rabbitmq()  # create_cell checks the transport URL
        services.sync_nova_schema()
        infra.dump_schemas()

    log("starting Keystone")
    services.start_keystone(secrets)
    write_clouds_yaml(secrets)
    from . import identity

    identity.register(secrets)

    log("starting Glance, Cinder, Placement, the Neutron stub, BMCs and Nova")
    services.start_glance()
    services.start_placement()
    proc.start("stubs", [config.PYTHON, "-m", "localcloud.stubs"], env={"PYTHONPATH": str(config.PACKAGE_DIR.parent)})
    bmc_info = bmcs.start_all(computes, secrets["bmc"])
    log("starting the fault proxy (the public endpoints and the BMCs' addresses)")
    proxy_info = services.start_faultproxy(computes, bmcs.certs())
    for host in computes:
        redfish = bmc_info[host]["redfish"]
        redfish["direct_url"] = redfish["url"]
        redfish["url"] = proxy_info["services"][f"bmc-{host}"]["listen"]
    infra.wait_rabbitmq()
    services.start_nova_control()
    stores = instancestore.layout(config.STATE, computes, shared_store)
    instancestore.create(config.STATE, stores)
    for host in computes:
        services.start_compute(host)
    # After the computes: their start-up is the longest wait of `up`, and the two cores are shared.
    services.start_cinder()
    proc.wait_port("stubs", config.PORTS["neutron-stub"])
    proc.wait_port("placement", config.PORTS["placement"])
    services.wait_glance()
    services.wait_cinder()

    kinds = ("identity", "compute", "placement", "image", "block-storage", "network")
    info = {
        "computes": computes,
        "spawn_delay": spawn_delay,
        "bmcs": bmc_info,
        "shared_store": list(shared_store),
        "instance_stores": stores,
        "endpoints": {s: config.endpoint(s, public=True) for s in kinds},
        "internal_endpoints": {s: config.endpoint(s) for s in kinds},
        "faultproxy": proxy_info,
        "image_id": config.IMAGE_ID,
        "clouds": {"admin": "novaha-admin", "member": "novaha-member"},
    }
    _state_file("cloud.json").write_text(json.dumps(info, indent=2))
    write_inventory(info)

    conn = connect()
    from . import images, nova, volumes

    images.upload_image(conn)
    nova.create_flavors(conn)
    log("waiting for every compute to report up and be schedulable, and for cinder-volume")
    nova.wait_schedulable(conn, computes, timeout=120)
    if volumes.wait_backend(conn, timeout=120, restart_scheduler=services.restart_cinder_scheduler):
        log("cinder-scheduler restarted once: it had missed cinder-volume's pool")
    bmcs.wait_all(computes, secrets["bmc"])


def write_clouds_yaml(secrets):
    def cloud(user, password, project):
        return {
            "auth": {
                "auth_url": config.keystone_url(public=True),
                "username": user,
                "password": password,
                "project_name": project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": config.REGION,
            "interface": "public",
            "identity_api_version": 3,
        }

    data = {
        "clouds": {
            "novaha-admin": cloud("admin", secrets["admin"], "admin"),
            "novaha-member": cloud("demo", secrets["demo"], "demo"),
            "novaha-admin-demo": cloud("admin", secrets["admin"], "demo"),
        }
    }
    path = _state_file("clouds.yaml")
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML
    path.chmod(0o600)


def write_inventory(info):
    """One inventory host per compute, with the BMC settings operators keep as host vars."""
    hosts = {}
    for host in info["computes"]:
        bmc = info["bmcs"][host]
        hosts[host] = {
            "bmc_type": "redfish",
            "bmc_address": bmc["redfish"]["url"],
            "bmc_system_id": bmc["redfish"]["system_id"],
            "bmc_username": bmc["username"],
            "bmc_password": bmc["password"],
            "bmc_ca_path": bmc["ca_path"],
            "bmc_validate_certs": True,
            "bmc_ipmi_address": bmc["ipmi"]["address"],
            "bmc_ipmi_port": bmc["ipmi"]["port"],
            "bmc_ipmi_cipher_suite": bmc["ipmi"]["cipher_suite"],
        }
    inventory = {
        "all": {
            "vars": {"openstack_cloud": "novaha-admin", "openstack_clouds_yaml": str(_state_file("clouds.yaml"))},
            "children": {"compute": {"hosts": hosts}},
        }
    }
    path = _state_file("inventory.yml")
    path.write_text(json.dumps(inventory, indent=2))
    path.chmod(0o600)


def connect(cloud="novaha-admin"):
    """A connection for the local cloud's own tooling: clouds.yaml's account, but Keystone's direct
    URL and the internal endpoints, so that no fault meant for the collection touches a set-up."""
    import openstack

    settings = json.loads(_state_file("clouds.yaml").read_text())["clouds"][cloud]
    settings = dict(settings, auth=dict(settings["auth"], auth_url=config.keystone_url()), interface="internal")
    return openstack.connect(load_yaml_config=False, load_envvars=False, **settings)


# --- down / status --------------------------------------------------------------------------


def down(log=print):
    names = proc.known_services()
    computes = [n for n in names if n.startswith(("compute-", "standby-compute-"))]
    others = [n for n in names if n not in computes]
    # Computes and API services first, the message queue and database last.
    ordered = computes + [n for n in reversed(SERVICE_ORDER) if n in others]
    ordered += [n for n in others if n not in ordered]
    for name in ordered:
        proc.stop(name)
    infra.stop_epmd()
    leftover = [p for p in _all_ports() if proc.port_open(p)]
    if leftover:
        raise proc.CloudError(f"ports still listening after down: {leftover}")
    log("local cloud down")


def _all_ports(count=None):
    ports = list(config.PORTS.values())
    if count is None:
        try:
            count = len(load_info()["computes"])
        except proc.CloudError:
            count = len(config.DEFAULT_COMPUTES)
    for index in range(count):
        ports += [*config.compute_ports(index), config.redfish_public_port(index)]
    return ports


def status():
    """(healthy, lines): every expected process alive and listening."""
    names = proc.known_services()
    if not names:
        return False, ["local cloud is down"]
    lines, healthy = [], True
    for name in names:
        alive = proc.running(name)
        state = "running" if alive else "stopped"
        if name.startswith("standby-"):
            state = "standby (warmed up, waits for revive)" if alive else "stopped"
        elif name.endswith("-bmc") or name.startswith("compute-"):
            pid = proc.pid_of(name)
            if alive and _is_stopped(pid):
                state = "frozen (unreachable)"
        elif not alive:
            healthy = False
        lines.append(f"{name:28} {state}")
    return healthy, lines


def _is_stopped(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "T"
    except OSError:
        return False


# --- failing and reviving hosts ----------------------------------------------------------------


def fail_host(host, power="on"):
    """The host dies: its nova-compute is SIGKILLed; its BMCs then report `power`.

    on: the host hangs but stays powered; off: it lost power; stuck: powered and the BMC
    accepts power-off but nothing happens; unreachable: the BMCs stop answering.
    """
    info = load_info()
    _check_hosts(info, [host])
    if power not in ("on", "off", "stuck", "unreachable"):
        raise proc.CloudError(f"--power must be on, off, stuck or unreachable, not {power!r}")
    bmcs.set_state(host, power)
    proc.kill(f"compute-{host}")
    services.prepare_compute(host)


def revive_host(host, wait=True):
    """The host is repaired: BMCs answer and report On, nova-compute starts again and reports
    in. Its service flags (forced down, disabled) stay as they are."""
    info = load_info()
    _check_hosts(info, [host])
    from . import nova

    bmcs.set_state(host, "revived")
    since = nova.utcnow()
    if not proc.running(f"compute-{host}"):
        services.start_compute(host)
    if wait:
        nova.wait_heartbeat(connect(), host, timeout=90, since=since)


def reset(log=print):
    """Back to the first state: no servers, no volumes, every compute running, up, enabled, schedulable."""
    info = load_info()
    clear_faults(info)
    from . import nova

    conn = connect()
    restarted = {}
    for host in info["computes"]:
        bmcs.set_state(host, "revived")
        if not proc.running(f"compute-{host}"):
            restarted[host] = nova.utcnow()
            services.start_compute(host)
    deleted = nova.delete_all_servers(conn, timeout=120)
    instancestore.clear(instancestore.load(config.STATE))  # disks of servers deleted while their host was down
    from . import volumes

    volumes.delete_all_volumes(conn, timeout=60)
    # A second more per server deleted: the benchmark leaves 200 evacuations behind.
    nova.wait_evacuations_completed(conn, info["computes"], timeout=90 + deleted)
    # Enabled while its nova-compute is up, a service has the API tell the compute, which clears the
    # COMPUTE_STATUS_DISABLED trait in Placement at once; enabled while it still starts, the trait lingers
    # until the compute's periodic task (about 20 s more per reset after a recovery).
    for host, since in restarted.items():
        nova.wait_heartbeat(conn, host, timeout=90, since=since)
    nova.restore_services(conn, info["computes"])
    nova.delete_server_groups(conn)
    nova.wait_schedulable(conn, info["computes"], timeout=90, restarted=restarted)
    log("local cloud reset")


def clear_faults(info=None):
    """No fault rule left, the record of requests emptied (a cloud without a proxy: nothing to do)."""
    info = info or load_info()
    if "faultproxy" not in info or not proc.running("faultproxy"):
        return
    from .faultclient import FaultClient, FaultProxyError

    client = FaultClient(info["faultproxy"]["control"])
    try:
        client.clear()
        client.clear_log()
    except FaultProxyError as exc:
        raise proc.CloudError(str(exc)) from None


def freeze(name, frozen):
    proc.signal_group(name, signal.SIGSTOP if frozen else signal.SIGCONT)


def env_for_tools():
    return dict(os.environ, OS_CLIENT_CONFIG_FILE=str(_state_file("clouds.yaml")))
