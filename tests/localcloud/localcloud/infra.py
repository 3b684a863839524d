"""MariaDB and RabbitMQ from Debian's packages, run as plain processes with their own data dirs."""

import hashlib
import os
import shutil
import subprocess
from importlib import metadata

from . import config, proc

MARIADB_SOCKET = "mariadb/mariadb.sock"


def _mariadb_dir():
    return config.STATE / "mariadb"


def mariadb_client(sql=None, database=None, stdin=None):
    argv = ["mariadb", "--no-defaults", "-uroot", f"--socket={config.STATE / MARIADB_SOCKET}"]
    if database:
        argv.append(database)
    if sql:
        argv += ["-e", sql]
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise proc.CloudError(f"mariadb: {result.stderr.strip()}")
    return result.stdout


def start_mariadb():
    data = _mariadb_dir() / "data"
    if not data.exists():
        data.mkdir(parents=True)
        proc.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root", "--auth-root-authentication-method=socket", "--skip-test-db"],
            what="mariadb-install-db",
        )
    proc.start(
        "mariadb",
        [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={config.STATE / MARIADB_SOCKET}",
            f"--port={config.PORTS['mariadb']}",
            f"--bind-address={config.HOST}",
            f"--pid-file={_mariadb_dir() / 'mariadbd.pid'}",
            "--user=root",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--max-connections=1000",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            "--sync-binlog=0",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--innodb-log-file-size=64M",
        ],
    )
    proc.wait_port("mariadb", config.PORTS["mariadb"], timeout=60)
    proc.wait_for("mariadb socket", (config.STATE / MARIADB_SOCKET).exists, 30, 0.1)


def create_databases():
    statements = [f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4" for db in config.DATABASES]
    statements += [
        f"CREATE USER IF NOT EXISTS '{config.DB_USER}'@'{config.HOST}' IDENTIFIED BY '{config.DB_PASSWORD}'",
        f"GRANT ALL PRIVILEGES ON *.* TO '{config.DB_USER}'@'{config.HOST}'",
        "FLUSH PRIVILEGES",
    ]
    mariadb_client("; ".join(statements))


def schema_key():
    """Identifies a schema snapshot: the versions of the services whose schemas it holds."""
    dists = ("nova", "keystone", "openstack-placement", "glance", "cinder")
    versions = [f"{dist}={metadata.version(dist)}" for dist in dists]
    return hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16]


def schema_snapshot():
    return config.CACHE / f"schema-{schema_key()}.sql"


def dump_schemas():
    config.CACHE.mkdir(parents=True, exist_ok=True)
    target = schema_snapshot()
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w") as out:
        result = subprocess.run(
            [
                "mysqldump",
                "--no-defaults",
                "-uroot",
                f"--socket={config.STATE / MARIADB_SOCKET}",
                "--single-transaction",
                "--skip-dump-date",
                "--databases",
                *config.DATABASES,
            ],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise proc.CloudError(f"mysqldump failed: {result.stderr.strip()}")
    tmp.rename(target)


def restore_schemas():
    with open(schema_snapshot()) as dump:
        mariadb_client(stdin="SET FOREIGN_KEY_CHECKS=0; SET UNIQUE_CHECKS=0;\n" + dump.read())
    # Cell mappings hold full URLs; this cloud's ports may differ from the snapshot's.
    mariadb_client(
        f"UPDATE cell_mappings SET database_connection='{config.db_url('nova_cell0')}' "
        f"WHERE name='cell0'; "
        f"UPDATE cell_mappings SET database_connection='{config.db_url('nova')}', "
        f"transport_url='{config.transport_url()}' WHERE name='cell1'",
        database="nova_api",
    )


# --- RabbitMQ ------------------------------------------------------------------------------


def _rabbit_env():
    base = config.STATE / "rabbitmq"
    return {
        "HOME": str(base),
        "RABBITMQ_NODENAME": f"novaha{config.PORT_OFFSET}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": config.HOST,
        "RABBITMQ_NODE_PORT": str(config.PORTS["rabbitmq"]),
        "RABBITMQ_DIST_PORT": str(config.PORTS["rabbitmq-dist"]),
        "ERL_EPMD_PORT": str(config.PORTS["epmd"]),
        "ERL_EPMD_ADDRESS": config.HOST,
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+S 1:1 +A 4",
    }


def start_rabbitmq_async():
    base = config.STATE / "rabbitmq"
    (base / "log").mkdir(parents=True, exist_ok=True)
    (base / "rabbitmq.conf").write_text(
        "loopback_users = none\n"
        f"listeners.tcp.default = {config.HOST}:{config.PORTS['rabbitmq']}\n"
        "log.console = true\nlog.console.level = warning\n"
        "vm_memory_high_watermark.absolute = 512MiB\n"
    )
    (base / "enabled_plugins").write_text("[].\n")
    proc.start("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=_rabbit_env())


def wait_rabbitmq():
    proc.wait_port("rabbitmq", config.PORTS["rabbitmq"], timeout=90)


def stop_epmd():
    """epmd outlives RabbitMQ by design; ours listens on our port and goes with the cloud."""
    env = dict(os.environ, **_rabbit_env())
    if shutil.which("epmd"):
        subprocess.run(["epmd", "-kill"], env=env, capture_output=True, check=False)
