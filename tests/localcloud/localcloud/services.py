"""Keystone, Placement, Nova, Glance and Cinder, unmodified from PyPI, configured for 127.0.0.1.

Keystone, Placement, nova-api, glance-api and cinder-api run under gunicorn (WSGI, one worker);
nova-conductor, nova-scheduler, cinder-scheduler, cinder-volume and one nova-compute per host run
as their own processes. The computes use Nova's fake virt driver; cinder-volume uses a test driver
shipped with Cinder (cinder_test_driver.py); Glance stores images as files under the state dir.
The services talk to each other directly (Keystone's URL, the catalog's internal endpoints);
clients of the public endpoints go through the fault proxy (see faultproxy.py).
"""

import configparser
import json
import os

from . import config, instancestore, proc


def _etc(service):
    path = config.STATE / "etc" / service
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_conf(path, sections):
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # keep option case
    for section, options in sections.items():
        if section != "DEFAULT":
            parser.add_section(section)
        for key, value in options.items():
            parser.set(section, key, str(value))
    with open(path, "w") as handle:
        parser.write(handle)


def _bin(name):
    return str(config.VENV_BIN / name)


def _gunicorn(name, app, port, env, threads=8, app_args=()):
    env = dict(env, PYTHONPATH=str(config.PACKAGE_DIR.parent))
    proc.start(
        name,
        [
            config.PYTHON,
            "-m",
            "localcloud.wsgi_server",
            app,
            "--bind",
            f"{config.HOST}:{port}",
            "--threads",
            str(threads),
            "--access-log",
            str(proc.log_dir() / f"{name}-access.log"),
            *(f"--app-arg={arg}" for arg in app_args),
        ],
        env=env,
    )


def _auth_section(user, password, secrets):
    return {
        "auth_type": "password",
        "auth_url": config.keystone_url(),
        "project_name": "service",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "username": user,
        "password": secrets[user],
        "region_name": config.REGION,
    }


# --- Keystone -----------------------------------------------------------------------------


def keystone_env():
    return {"OS_KEYSTONE_CONFIG_FILES": str(_etc("keystone") / "keystone.conf")}


def write_keystone_conf():
    base = config.STATE / "keystone"
    for sub in ("fernet-keys", "credential-keys"):
        (base / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_conf(
        _etc("keystone") / "keystone.conf",
        {
            "DEFAULT": {"use_stderr": "true", "debug": "false"},
            "database": {"connection": config.db_url("keystone")},
            "token": {"provider": "fernet", "expiration": 86400},
            "fernet_tokens": {"key_repository": base / "fernet-keys"},
            "credential": {"key_repository": base / "credential-keys"},
            # Keystone's own cache, in the process (a production Keystone uses memcached): without it each
            # validation of a new token rebuilds the user's roles and the catalog from the database, about
            # 1 s here, which every first request of a module run would pay.
            "cache": {"enabled": "true", "backend": "dogpile.cache.memory"},
        },
    )


def keystone_manage(*args):
    conf = str(_etc("keystone") / "keystone.conf")
    return proc.run([_bin("keystone-manage"), "--config-file", conf, *args], what=f"keystone-manage {args[0]}")


def sync_keystone_schema():
    keystone_manage("db_sync")


def start_keystone(secrets):
    keystone_manage("fernet_setup", "--keystone-user", "root", "--keystone-group", "root")
    keystone_manage("credential_setup", "--keystone-user", "root", "--keystone-group", "root")
    keystone_manage(
        "bootstrap",
        "--bootstrap-password",
        secrets["admin"],
        "--bootstrap-admin-url",
        config.keystone_url(),
        "--bootstrap-public-url",
        config.keystone_url(public=True),
        "--bootstrap-internal-url",
        config.keystone_url(),
        "--bootstrap-region-id",
        config.REGION,
    )
    _gunicorn("keystone", "keystone.wsgi.api:application", config.PORTS["keystone"], keystone_env())
    proc.wait_port("keystone", config.PORTS["keystone"])


# --- Placement ----------------------------------------------------------------------------

# Keystone here is one gunicorn process sharing 2 cores with everything else: a token validation takes
# 0.5-1 s when idle. Nova's and Placement's auth_token middleware cache what they validated for 300 s by
# default, so every 5 minutes the services' tokens expire from those caches together and the next busy
# moment validates them all at once (measured in the benchmark: 8 validations of 11.6 s each in the middle
# of an evacuation). An hour keeps that stall, which has nothing to do with the code under test, out of
# the tests and the benchmark.
TOKEN_CACHE_SECONDS = 3600


def _authtoken(service, secrets):
    section = _auth_section(service, service, secrets)
    section.update({"www_authenticate_uri": config.keystone_url(public=True), "service_token_roles_required": "true", "token_cache_time": TOKEN_CACHE_SECONDS})
    return section


def write_placement_conf(secrets):
    authtoken = _authtoken("placement", secrets)
    _write_conf(
        _etc("placement") / "placement.conf",
        {
            "DEFAULT": {"use_stderr": "true", "debug": "false"},
            "placement_database": {"connection": config.db_url("placement")},
            "api": {"auth_strategy": "keystone"},
            "keystone_authtoken": authtoken,
        },
    )


def sync_placement_schema():
    proc.run([_bin("placement-manage"), "--config-file", str(_etc("placement") / "placement.conf"), "db", "sync"], what="placement-manage db sync")


def start_placement():
    _gunicorn("placement", "placement.wsgi.api:application", config.PORTS["placement"], {"OS_PLACEMENT_CONFIG_DIR": str(_etc("placement"))})
    proc.wait_port("placement", config.PORTS["placement"])


# --- Nova ---------------------------------------------------------------------------------


def nova_conf_path():
    return _etc("nova") / "nova.conf"


def write_nova_conf(secrets, spawn_delay=0.0):
    base = config.STATE / "nova"
    base.mkdir(parents=True, exist_ok=True)
    authtoken = _authtoken("nova", secrets)
    _write_conf(
        nova_conf_path(),
        {
            "DEFAULT": {
                "debug": "false",
                "use_stderr": "true",
                "transport_url": config.transport_url(),
                "compute_driver": "novaha_fake.NovahaFakeDriver",
                "state_path": base,
                "my_ip": config.HOST,
                "report_interval": 5,
                "service_down_time": 20,
                "heal_instance_info_cache_interval": -1,
                "instance_usage_audit": "false",
                "sync_power_state_interval": -1,
                "update_resources_interval": 10,
                "osapi_compute_workers": 1,
                "metadata_workers": 1,
                "graceful_shutdown_timeout": 5,
            },
            "api": {"auth_strategy": "keystone"},
            "wsgi": {"api_paste_config": config.VENV_BIN.parent / "etc" / "nova" / "api-paste.ini"},
            "api_database": {"connection": config.db_url("nova_api"), "max_pool_size": 10},
            "database": {"connection": config.db_url("nova"), "max_pool_size": 10},
            "keystone_authtoken": authtoken,
            "service_user": dict(_auth_section("nova", "nova", secrets), send_service_user_token="true"),
            "placement": _auth_section("placement", "placement", secrets),
            "glance": {"endpoint_override": config.endpoint("image"), "num_retries": 0},
            "neutron": dict(_auth_section("nova", "nova", secrets), endpoint_override=config.endpoint("network"), http_retries=0),
            # The catalog's internal block-storage endpoint (Nova's default is the public one, which goes
            # through the fault proxy); the service user for the calls Nova makes without a user's token.
            # Nova reaches Cinder through the fault proxy's service "cinder-for-nova" (its own port): a test faults
            # Nova's attachment updates there without touching the collection's reads of Cinder, or the reverse.
            "cinder": dict(
                _auth_section("nova", "nova", secrets),
                os_region_name=config.REGION,
                endpoint_template=f"http://{config.HOST}:{config.PORTS['cinder-api-for-nova']}/v3/%(project_id)s",
            ),
            "scheduler": {"discover_hosts_in_cells_interval": 2, "workers": 1},
            "conductor": {"workers": 1},
            "filter_scheduler": {"host_subset_size": 1, "shuffle_best_same_weighed_hosts": "true"},
            "oslo_concurrency": {"lock_path": base / "locks"},
            "oslo_messaging_notifications": {"driver": "noop"},
            "oslo_messaging_rabbit": {"heartbeat_timeout_threshold": 0},
            "notifications": {"notification_format": "unversioned"},
            "novaha_fake": {"spawn_delay": spawn_delay},
            "compute": {"live_migration_wait_for_vif_plug": "false"},
            "vnc": {"enabled": "false"},
            "spice": {"enabled": "false"},
            "serial_console": {"enabled": "false"},
            "os_vif_linux_bridge": {},
        },
    )


def nova_manage(*args):
    return proc.run([_bin("nova-manage"), "--config-file", str(nova_conf_path()), *args], what=f"nova-manage {' '.join(args[:2])}", timeout=600)


def sync_nova_schema():
    nova_manage("api_db", "sync")
    nova_manage("cell_v2", "map_cell0", "--database_connection", config.db_url("nova_cell0"))
    nova_manage("cell_v2", "create_cell", "--name", "cell1", "--verbose")
    nova_manage("db", "sync")


def nova_env():
    return {"OS_NOVA_CONFIG_FILES": f"{config.VENV_BIN.parent / 'etc' / 'nova' / 'api-paste.ini'};{nova_conf_path()}"}


def start_nova_control():
    _gunicorn("nova-api", "nova.wsgi.osapi_compute:application", config.PORTS["nova-api"], nova_env(), threads=16)
    conf = ["--config-file", str(nova_conf_path())]
    proc.start("nova-conductor", [_bin("nova-conductor"), *conf])
    proc.start("nova-scheduler", [_bin("nova-scheduler"), *conf])
    proc.wait_port("nova-api", config.PORTS["nova-api"])


def compute_conf_path(host):
    return _etc("nova") / f"compute-{host}.conf"


def _compute_argv(host):
    state = config.STATE / "nova" / "computes" / host
    state.mkdir(parents=True, exist_ok=True)
    _write_conf(
        compute_conf_path(host),
        {
            "DEFAULT": {"host": host, "state_path": state, "instances_path": instancestore.store_of(config.STATE, host)},
        },
    )
    return [config.PYTHON, "-m", "localcloud.compute_launcher", "--config-file", str(nova_conf_path()), "--config-file", str(compute_conf_path(host))]


def _compute_env():
    pythonpath = [str(config.PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")]
    return {"PYTHONPATH": os.pathsep.join(filter(None, pythonpath))}


def _go_file(host):
    return proc.run_dir() / f"standby-compute-{host}.go"


def start_compute(host):
    """nova-compute for `host` runs (again), its node identity kept in its own state dir.

    A warmed-up standby process (see prepare_compute) is told to go; otherwise a new process
    starts.
    """
    standby = f"standby-compute-{host}"
    if proc.running(standby):
        _go_file(host).touch()
        proc.rename(standby, f"compute-{host}")
        return
    proc.stop(standby)
    proc.start(f"compute-{host}", _compute_argv(host), env=_compute_env())


def prepare_compute(host):
    """Warm up the process that will be `host`'s nova-compute when it is revived."""
    standby = f"standby-compute-{host}"
    if proc.running(standby) or proc.running(f"compute-{host}"):
        return
    _go_file(host).unlink(missing_ok=True)
    proc.start(standby, _compute_argv(host) + ["--standby-file", str(_go_file(host))], env=_compute_env())


# --- Glance ---------------------------------------------------------------------------------


def _glance_dir():
    return config.STATE / "glance"


def write_glance_conf(secrets):
    base = _glance_dir()
    stores = {name: base / name for name in ("images", "staging", "tasks")}
    for path in stores.values():
        path.mkdir(parents=True, exist_ok=True)
    _write_conf(
        _etc("glance") / "glance-api.conf",
        {
            "DEFAULT": {
                "debug": "false",
                "use_stderr": "true",
                "enabled_backends": "file:file",
                "workers": 1,
                "worker_self_reference_url": config.endpoint("image"),
                "show_image_direct_url": "false",
            },
            "database": {"connection": config.db_url("glance"), "max_pool_size": 5},
            "keystone_authtoken": _authtoken("glance", secrets),
            "paste_deploy": {"flavor": "keystone", "config_file": config.VENV_BIN.parent / "etc" / "glance" / "glance-api-paste.ini"},
            "glance_store": {"default_backend": "file"},
            "file": {"filesystem_store_datadir": stores["images"]},
            "os_glance_staging_store": {"filesystem_store_datadir": stores["staging"]},
            "os_glance_tasks_store": {"filesystem_store_datadir": stores["tasks"]},
            "wsgi": {"task_pool_threads": 2},
            "oslo_concurrency": {"lock_path": base / "locks"},
            "oslo_messaging_notifications": {"driver": "noop"},
        },
    )


def sync_glance_schema():
    proc.run([_bin("glance-manage"), "--config-file", str(_etc("glance") / "glance-api.conf"), "db", "sync"], what="glance-manage db sync", timeout=600)


def start_glance():
    """glance-api (the process only; wait_glance waits for its port)."""
    _gunicorn("glance-api", "glance.wsgi.api:application", config.PORTS["glance-api"], {"OS_GLANCE_CONFIG_DIR": str(_etc("glance"))}, threads=4)


def wait_glance():
    proc.wait_port("glance-api", config.PORTS["glance-api"], timeout=90)


# --- Cinder ---------------------------------------------------------------------------------


def cinder_conf_path():
    return _etc("cinder") / "cinder.conf"


def write_cinder_conf(secrets):
    base = config.STATE / "cinder"
    base.mkdir(parents=True, exist_ok=True)
    backend = config.VOLUME_BACKEND
    _write_conf(
        cinder_conf_path(),
        {
            "DEFAULT": {
                "debug": "false",
                "use_stderr": "true",
                "transport_url": config.transport_url(),
                "auth_strategy": "keystone",
                "state_path": base,
                "host": "cinder",  # cinder-volume's service is cinder@fake
                "my_ip": config.HOST,
                "enabled_backends": backend,
                "osapi_volume_workers": 1,
                "api_paste_config": config.VENV_BIN.parent / "etc" / "cinder" / "api-paste.ini",
                "resource_query_filters_file": config.VENV_BIN.parent / "etc" / "cinder" / "resource_filters.json",
                "glance_api_servers": config.endpoint("image"),
                "image_conversion_dir": base / "conversion",
                "report_interval": 5,
                "service_down_time": 20,
                # cinder-scheduler learns cinder-volume's pool from a fanout cast: the volume's at its start,
                # the scheduler's request at its own. When the two processes start together, each can cast
                # before the other listens, and the pool then waits for the volume's periodic publish: 60 s
                # after its start, plus a random delay of up to 60 s by default. No random delay, and the
                # periodic tasks looked at every 5 s, bound that to about a minute after cinder-volume starts.
                "periodic_interval": 5,
                "periodic_fuzzy_delay": 0,
            },
            "database": {"connection": config.db_url("cinder"), "max_pool_size": 5},
            "keystone_authtoken": _authtoken("cinder", secrets),
            "oslo_concurrency": {"lock_path": base / "locks"},
            "oslo_messaging_notifications": {"driver": "noop"},
            "oslo_messaging_rabbit": {"heartbeat_timeout_threshold": 0},
            "coordination": {"backend_url": f"file://{base / 'coordination'}"},
            # A test driver shipped with Cinder (see cinder_test_driver.py): no device, no root.
            backend: {"volume_driver": "localcloud.cinder_test_driver.ImageCloningTestDriver", "volume_backend_name": backend},
        },
    )


def sync_cinder_schema():
    proc.run([_bin("cinder-manage"), "--config-file", str(cinder_conf_path()), "db", "sync"], what="cinder-manage db sync", timeout=600)


def start_cinder():
    """cinder-api, cinder-scheduler and cinder-volume (the processes only; see wait_cinder)."""
    conf = str(cinder_conf_path())
    _gunicorn("cinder-api", "cinder.wsgi.api:application", config.PORTS["cinder-api"], {}, threads=4, app_args=[f"--config-file={conf}"])
    _start_cinder_scheduler()
    proc.start("cinder-volume", [_bin("cinder-volume"), "--config-file", conf], env={"PYTHONPATH": str(config.PACKAGE_DIR.parent)})


def _start_cinder_scheduler():
    proc.start("cinder-scheduler", [_bin("cinder-scheduler"), "--config-file", str(cinder_conf_path())])


def restart_cinder_scheduler():
    """cinder-scheduler again (see volumes.wait_backend): at its start it asks cinder-volume for its pool."""
    proc.stop("cinder-scheduler")
    _start_cinder_scheduler()


def wait_cinder():
    proc.wait_port("cinder-api", config.PORTS["cinder-api"], timeout=90)


# --- the fault proxy (test tooling) ----------------------------------------------------------


def start_faultproxy(computes, certs):
    """The fault proxy in front of Keystone, Nova, Placement, Glance, Cinder and each Redfish BMC
    (faultproxy.py)."""
    proxied = {
        "keystone": (config.PORTS["keystone-public"], config.PORTS["keystone"], None),
        "nova": (config.PORTS["nova-api-public"], config.PORTS["nova-api"], None),
        "placement": (config.PORTS["placement-public"], config.PORTS["placement"], None),
        "glance": (config.PORTS["glance-api-public"], config.PORTS["glance-api"], None),
        "cinder": (config.PORTS["cinder-api-public"], config.PORTS["cinder-api"], None),
        "cinder-for-nova": (config.PORTS["cinder-api-for-nova"], config.PORTS["cinder-api"], None),
    }
    tls = {"cert": str(certs.cert), "key": str(certs.key), "ca": str(certs.ca)}
    for index, host in enumerate(computes):
        proxied[f"bmc-{host}"] = (config.redfish_public_port(index), config.compute_ports(index)[0], tls)
    path = _etc("faultproxy") / "faultproxy.json"
    path.write_text(
        json.dumps(
            {
                "control_port": config.PORTS["faultproxy-control"],
                "services": {name: {"listen_port": listen, "upstream_port": upstream, "tls": tls} for name, (listen, upstream, tls) in proxied.items()},
            },
            indent=2,
        )
    )
    proc.start("faultproxy", [config.PYTHON, "-m", "localcloud.faultproxy", "--config", str(path)], env={"PYTHONPATH": str(config.PACKAGE_DIR.parent)})
    proc.wait_port("faultproxy", config.PORTS["faultproxy-control"])
    return {
        "control": f"http://{config.HOST}:{config.PORTS['faultproxy-control']}",
        "services": {
            name: {"listen": f"{'https' if tls else 'http'}://{config.HOST}:{listen}", "upstream": f"{'https' if tls else 'http'}://{config.HOST}:{upstream}"}
            for name, (listen, upstream, tls) in proxied.items()
        },
    }
