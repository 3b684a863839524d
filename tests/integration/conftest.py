"""Fixtures for integration tests on the project's local cloud.

One local cloud serves the whole test run (started on first use, left running if it
was already up); every test that changes it asks for ``clean_cloud``, which resets it.
The collection reaches the cloud through its fault proxy (clouds.yaml, the BMC addresses);
a test that injects faults asks for ``faults``, which removes them after the test.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("NOVAHA_LOCALCLOUD_DIR", ROOT / ".localcloud"))
CLOUD_PYTHON = Path(os.environ.get("NOVAHA_CLOUD_PYTHON", ROOT / ".venv" / "cloud" / "bin" / "python"))
DEV_BIN = Path(sys.executable).parent

sys.path.insert(0, str(ROOT / "tests" / "localcloud"))
from localcloud import instancestore  # noqa: E402  (test tooling, standard library only)
from localcloud.faultclient import FaultClient  # noqa: E402  (test tooling, standard library only)


class LocalCloud:
    """The running local cloud, as the tests see it."""

    def __init__(self, state_dir):
        self.state_dir = Path(state_dir)
        self.info = json.loads((self.state_dir / "cloud.json").read_text())
        self.clouds_yaml = self.state_dir / "clouds.yaml"
        self.inventory = self.state_dir / "inventory.yml"
        self.admin_cloud = "novaha-admin"
        self.member_cloud = "novaha-member"
        self.computes = list(self.info["computes"])

    def cli(self, *args, check=True):
        """Run the local cloud CLI; return its completed process (stdout as text)."""
        env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "localcloud"), NOVAHA_LOCALCLOUD_DIR=str(self.state_dir))
        proc = subprocess.run([str(CLOUD_PYTHON), "-m", "localcloud", *args], env=env, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"localcloud {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def bmc(self, host):
        """BMC settings of one compute host: redfish {url, system_id}, ipmi {address, port},
        username, password, ca_path."""
        return self.info["bmcs"][host]

    def fail_host(self, host, power="on"):
        self.cli("fail-host", host, "--power", power)

    def revive_host(self, host):
        self.cli("revive-host", host)

    def boot(self, host, count=1, status="ACTIVE", **opts):
        """Boot servers on a host; return their records (id, name, host, status) as dicts."""
        args = ["boot", "--host", host, "--count", str(count), "--status", status]
        for key, value in opts.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif isinstance(value, dict):
                for k, v in value.items():
                    args += [flag, f"{k}={v}"]
            elif value not in (None, False):
                args += [flag, str(value)]
        return json.loads(self.cli(*args).stdout)

    def connect(self, cloud=None, internal=False):
        """An openstacksdk connection as clouds.yaml says: through the fault proxy, as the collection
        goes; or with internal=True, direct to Keystone and the internal endpoints, as Nova's own
        services go (no fault of the proxy touches it)."""
        import openstack.config
        import openstack.connection

        if internal:
            settings = json.loads(self.clouds_yaml.read_text())["clouds"][cloud or self.admin_cloud]
            settings = dict(settings, auth=dict(settings["auth"], auth_url=self.info["internal_endpoints"]["identity"]), interface="internal")
            return openstack.connect(load_yaml_config=False, load_envvars=False, **settings)
        region = openstack.config.OpenStackConfig(config_files=[str(self.clouds_yaml)], load_envvars=False).get_one(cloud or self.admin_cloud)
        return openstack.connection.Connection(config=region)

    def instance_store(self, host):
        """The directory where the fake hypervisor of `host` keeps its servers' disks (one directory for
        all the hosts of the shared store, localcloud/instancestore.py)."""
        return self.info["instance_stores"][host]

    def shared_store_hosts(self):
        return list(self.info.get("shared_store", []))  # none in a cloud started before the stores

    def disk_token(self, host, server_id, private=False):
        """The data token of the server's disk as `host` sees it in its store (``private``: the host's own
        store of servers kept off the shared one, metadata novaha_fake:instance_store=local), or None."""
        store = self.instance_store(host)
        if private:
            store = instancestore.private_store(store, host)
        return instancestore.disk_token(store, server_id)

    def faults(self):
        """The client of the cloud's fault proxy (localcloud/faultclient.py)."""
        return FaultClient(self.info["faultproxy"]["control"])

    def env(self):
        """Environment for ansible / openstacksdk processes aimed at this cloud."""
        return dict(
            os.environ,
            OS_CLIENT_CONFIG_FILE=str(self.clouds_yaml),
            ANSIBLE_COLLECTIONS_PATH=str(collections_path()),
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            PATH=f"{DEV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )


def collections_path():
    """A directory holding ansible_collections/novaha/recovery -> this checkout."""
    base = ROOT / "build" / "collections"
    link = base / "ansible_collections" / "novaha" / "recovery"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT, target_is_directory=True)
    return base


def run_module(cloud, module, args, check=False, verbosity=0, extra_env=None):
    """Run one module of this collection on localhost through ansible-playbook.

    Returns (result, output): the module's registered result and the whole job output,
    so tests can assert on both what the module returned and what an operator saw.
    """
    tmp = cloud.state_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    out = tmp / f"result-{os.getpid()}.json"
    playbook = tmp / f"run-{os.getpid()}.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "connection": "local",
                    "vars": {"ansible_python_interpreter": sys.executable},
                    "tasks": [
                        {"name": "Run the module", module: args, "register": "result", "ignore_errors": True},
                        {
                            "name": "Save the result",
                            "ansible.builtin.copy": {"content": "{{ result | to_nice_json }}", "dest": str(out)},
                            "check_mode": False,
                            "no_log": True,
                        },
                    ],
                }
            ]
        )
    )
    cmd = [str(DEV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook)]
    if check:
        cmd.append("--check")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    env = cloud.env()
    env.update(extra_env or {})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    if not out.exists():
        raise AssertionError(f"playbook did not run:\n{output}")
    result = json.loads(out.read_text())
    out.unlink()
    return result, output


@pytest.fixture(scope="session")
def cloud():
    """The local cloud, started for this run unless it is already up."""
    status = subprocess.run(
        [str(CLOUD_PYTHON), "-m", "localcloud", "status", "--quiet"],
        env=dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "localcloud"), NOVAHA_LOCALCLOUD_DIR=str(STATE)),
        capture_output=True,
        text=True,
        check=False,
    )
    started_here = False
    if status.returncode != 0:
        up = subprocess.run(
            [str(CLOUD_PYTHON), "-m", "localcloud", "up"],
            env=dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "localcloud"), NOVAHA_LOCALCLOUD_DIR=str(STATE)),
            capture_output=True,
            text=True,
            check=False,
        )
        if up.returncode != 0:
            pytest.fail(f"local cloud did not start:\n{up.stdout}\n{up.stderr}")
        started_here = True
    yield LocalCloud(STATE)
    if started_here and not os.environ.get("NOVAHA_KEEP_CLOUD"):
        LocalCloud(STATE).cli("down", check=False)


@pytest.fixture
def faults(cloud):
    """The fault proxy's client, with no rule and an empty record of requests; every rule the
    test added is removed after it (a hang it caused ends)."""
    client = cloud.faults()
    client.clear()
    client.clear_log()
    yield client
    client.clear()


@pytest.fixture
def clean_cloud(cloud):
    """The local cloud reset to its first state: no servers, every compute up and enabled."""
    cloud.cli("reset")
    return cloud


def stop_process(proc, grace=10):
    """A child process ended: woken if stopped (SIGCONT), asked to end (SIGTERM), killed after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
