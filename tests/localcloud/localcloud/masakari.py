"""OpenStack Masakari on the local cloud, on demand: the benchmark's real peer (tests/bench/run.py).

masakari-api and masakari-engine from PyPI (.venv/masakari, tests/localcloud/requirements-masakari.txt),
run unmodified on the cloud's MariaDB (database `masakari`, also taskflow's persistence) and RabbitMQ, with a
Keystone service user `masakari` and the `instance-ha` endpoint. Never started by `up`: `localcloud masakari
start` starts it on a running cloud (the first time it also creates the database and the Keystone entries),
`localcloud masakari stop` stops it, `down` stops it with the rest.

Two configurations (`--config`):
  defaults  masakari.conf holds only what Masakari needs to reach the cloud (database, bus, Keystone, its
            listen address): every recovery option keeps the value Masakari ships.
  tuned     the same, plus TUNED: what an operator sets for speed (each option says why).
"""

import json

from . import config, proc, services

API = "masakari-api"
ENGINE = "masakari-engine"
NAMES = (API, ENGINE)
DATABASE = "masakari"
PROFILES = ("defaults", "tuned")
VENV = config.ROOT / ".venv" / "masakari"

# What an operator tunes for speed, all of it in masakari.conf's [DEFAULT] (masakari/conf/engine.py and
# masakari/conf/api.py of masakari 22.0.0; the shipped default in each comment).
TUNED = {
    # 180: the host-failure flow sleeps this long after disabling the compute service, "until nova
    # recognizes the node down". Here the failed host is already forced down in Nova (as a fencing
    # that calls Nova's force-down does, and as the benchmark prepares it for every contender), so
    # Nova already takes evacuations: no wait is needed.
    "wait_period_after_service_update": 0,
    # 3: evacuations (each with its own confirmation poll) in flight at once. 20: as many as the
    # benchmark's comparable contenders keep in flight (the collection's default cap is 20).
    "host_failure_recovery_threads": 20,
    # 5: masakari-api sleeps a random 0-5 s before it records a notification when no coordination
    # backend is configured (against duplicates from several API workers). With one API worker there
    # is nothing to race: off, and one worker.
    "notification_delay_max": 0,
    "masakari_api_workers": 1,
    # 90: seconds one evacuation may take until its confirmation gives up and the server counts as
    # failed. Larger, so that a slow, busy Nova (20 evacuations at once on two cores, up to 60 s
    # rebuilds) does not turn a late recovery into a failed one: it never shortens a recovery.
    "wait_period_after_evacuation": 600,
    # verify_interval (1 s, the confirmation poll) is already the smallest value the option takes (an
    # integer); duplicate_notification_detection_interval and the periodic intervals do not touch a
    # first notification; evacuate_all_instances is already True.
}


def venv_bin(name):
    return str(VENV / "bin" / name)


def _etc():
    path = config.STATE / "etc" / "masakari"
    path.mkdir(parents=True, exist_ok=True)
    return path


def conf_path():
    return _etc() / "masakari.conf"


def api_url():
    return f"http://{config.HOST}:{config.PORTS['masakari-api']}/v1"


def conf_sections(profile, password, lock_path, api_paste):
    """masakari.conf for `profile` (defaults or tuned), as {section: {option: value}}."""
    if profile not in PROFILES:
        raise proc.CloudError(f"--config must be one of {', '.join(PROFILES)}, not {profile!r}")
    default = {
        "debug": "false",
        "use_stderr": "true",
        "transport_url": config.transport_url(),
        "masakari_api_listen": config.HOST,
        "masakari_api_listen_port": config.PORTS["masakari-api"],
        # The account masakari-engine calls Nova with (compute:nova:publicURL from the catalog, Masakari's default).
        "os_privileged_user_name": "masakari",
        "os_privileged_user_password": password,
        "os_privileged_user_tenant": "service",
        "os_privileged_user_auth_url": config.keystone_url(),
    }
    if profile == "tuned":
        default.update(TUNED)
    authtoken = dict(services._auth_section("masakari", "masakari", {"masakari": password}))  # pylint: disable=protected-access
    authtoken.update(
        {
            "www_authenticate_uri": config.keystone_url(public=True),
            # As for every other service of the local cloud (services.TOKEN_CACHE_SECONDS).
            "token_cache_time": services.TOKEN_CACHE_SECONDS,
        }
    )
    return {
        "DEFAULT": default,
        "database": {"connection": config.db_url(DATABASE)},
        # The taskflow driver (Masakari's default) refuses to start without a persistence backend.
        "taskflow": {"connection": config.db_url(DATABASE)},
        "keystone_authtoken": authtoken,
        "wsgi": {"api_paste_config": api_paste},
        "oslo_concurrency": {"lock_path": lock_path},
    }


def write_conf(profile, password):
    base = config.STATE / "masakari"
    base.mkdir(parents=True, exist_ok=True)
    sections = conf_sections(profile, password, base / "locks", VENV / "etc" / "masakari" / "api-paste.ini")
    services._write_conf(conf_path(), sections)  # pylint: disable=protected-access
    return sections


def _state_file():
    return config.STATE / "masakari.json"


def load_state():
    try:
        return json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return None


def _password():
    from . import cloud

    secrets = cloud.load_secrets()
    if "masakari" not in secrets:
        import secrets as pysecrets

        secrets["masakari"] = pysecrets.token_urlsafe(12)
        path = config.STATE / "secrets.json"
        path.write_text(json.dumps(secrets))
        path.chmod(0o600)
    return secrets["masakari"]


def _register(password):
    """The service user (admin and service in the service project), the instance-ha service and its endpoints."""
    from . import cloud

    conn = cloud.connect()
    ident = conn.identity
    project = ident.find_project("service", domain_id="default")
    user = ident.find_user("masakari", domain_id="default")
    if user is None:
        user = ident.create_user(name="masakari", password=password, domain_id="default")
    for role in ("admin", "service"):
        ident.assign_project_role_to_user(project, user, ident.find_role(role))
    if not list(ident.services(type="instance-ha")):
        service = ident.create_service(name="masakari", type="instance-ha")
        for interface in ("public", "internal", "admin"):
            ident.create_endpoint(service_id=service.id, interface=interface, url=api_url(), region_id=config.REGION)


def _create_database():
    from . import infra

    existing = infra.mariadb_client("SHOW DATABASES")
    if DATABASE in existing.split():
        return
    infra.mariadb_client(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
    proc.run([venv_bin("masakari-manage"), "--config-file", str(conf_path()), "db", "sync"], what="masakari-manage db sync", timeout=600)


def start(profile="defaults", log=print):
    """Masakari up with `profile`'s masakari.conf; a running one is restarted with it."""
    from . import cloud

    cloud.load_info()  # a running cloud
    if not (VENV / "bin" / "masakari-engine").exists():
        raise proc.CloudError(f"no Masakari in {VENV}: run 'bash hack/install.sh masakari'")
    stop()
    password = _password()
    write_conf(profile, password)
    state = load_state() or {}
    if not state.get("registered"):
        log("creating the masakari database and its Keystone user, service and endpoint")
        _create_database()
        _register(password)
    conf = ["--config-file", str(conf_path())]
    proc.check_ports_free([config.PORTS["masakari-api"]])
    engine_log = _log_size(ENGINE)
    proc.start(ENGINE, [venv_bin("masakari-engine"), *conf])
    proc.start(API, [venv_bin("masakari-api"), *conf])
    proc.wait_port(API, config.PORTS["masakari-api"], timeout=90)
    _wait_engine(engine_log)
    _state_file().write_text(json.dumps({"registered": True, "profile": profile, "url": api_url(), "tuned": TUNED if profile == "tuned" else {}}, indent=2))
    log(f"masakari up ({profile}): {api_url()}, {conf_path()}")


def _log_size(name):
    try:
        return (proc.log_dir() / f"{name}.log").stat().st_size
    except OSError:
        return 0


def _wait_engine(since, timeout=90):
    """masakari-engine has no port: it is ready once it logs its start (its RPC server on the bus)."""

    def started():
        if not proc.running(ENGINE):
            raise proc.CloudError(f"{ENGINE} exited during start-up; see {proc.log_dir() / (ENGINE + '.log')}:\n" + proc.tail_log(ENGINE))
        with open(proc.log_dir() / f"{ENGINE}.log", "rb") as handle:
            handle.seek(since)
            return b"Starting ha_engine" in handle.read()

    proc.wait_for("masakari-engine's start", started, timeout, 0.2)


def stop():
    for name in NAMES:
        proc.stop(name)
