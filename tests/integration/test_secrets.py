"""Secrets on the local cloud: no password or token in what a run shows or writes, and no token left behind.

A run shares one admin-scoped Keystone token through a private cache file. It revokes the token and removes the
file when it ends; a run killed before its end leaves the file, and the next run removes it and revokes its token
once that run is gone (os_auth_cache). Whether a token is revoked is asked of Keystone itself, directly.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import DEV_BIN, run_module

HOST = "node-28"
ADMIN_PASSWORD = "Adm1n-Pa55-for-the-rebuilt-server"
IDLE = 1000  # seconds a killed run's cache is made to look unused (os_auth_cache judges runs after 900)


def token_status(cloud, token):
    """Keystone's answer to validating ``token``: 200 valid, 404 revoked or expired."""
    conn = cloud.connect(internal=True)
    url = cloud.info["internal_endpoints"]["identity"].rstrip("/") + "/auth/tokens"
    return conn.session.get(url, headers={"X-Subject-Token": token}, raise_exc=False).status_code


def cached_tokens(path):
    """The tokens of a cache file (its connection profile, a JSON object beside them, holds none)."""
    return [json.loads(state)["auth_token"] for state in json.loads(Path(path).read_text()).values() if isinstance(state, str)]


def backdate(path, seconds=IDLE):
    past = time.time() - seconds
    os.utime(path, (past, past))


def process_tree(pid):
    """``pid`` and every process under it (Ansible's workers start sessions of their own, so a process group is
    not the whole tree)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def private_dir(path):
    path.mkdir(mode=0o700, parents=True)
    path.chmod(0o700)
    return path


# ---------------------------------------------------------------------------------------------------------
# os_auth_cache: which caches are removed


def test_the_caches_of_gone_runs_are_removed_and_their_tokens_revoked(cloud, tmp_path):
    caches = private_dir(tmp_path / "tmp")

    def cache_of(run_id):
        path = caches / f"novaha-recovery-{run_id}.token"
        result, output = run_module(cloud, "novaha.recovery.os_host_info", dict(cloud=cloud.admin_cloud, host=HOST, auth_cache=str(path)))
        assert not result.get("failed"), output
        return path, cached_tokens(path)[0]

    gone, gone_token = cache_of("gone01")
    recent, recent_token = cache_of("recent01")
    backdate(gone)
    expired = caches / "novaha-recovery-expired01.token"
    saved = json.loads(recent.read_text())
    (key,) = [k for k, v in saved.items() if isinstance(v, str)]  # the token; beside it, the connection profile
    state = json.loads(saved[key])
    state["body"]["token"]["expires_at"] = "2020-01-01T00:00:00.000000Z"
    expired.write_text(json.dumps({key: json.dumps(state)}))
    expired.chmod(0o600)

    mine = caches / "novaha-recovery-next01.token"
    result, output = run_module(cloud, "novaha.recovery.os_auth_cache", dict(cloud=cloud.admin_cloud, auth_cache=str(mine), state="pruned"))
    assert not result.get("failed"), output
    assert result["changed"] is True
    removed = {r["run_id"]: r for r in result["removed"]}
    assert set(removed) == {"gone01", "expired01"}
    assert removed["gone01"]["revoked"] == 1
    assert "is gone: it holds no host and was last used" in removed["gone01"]["reason"]
    assert "every token in it has expired" in removed["expired01"]["reason"]
    assert [k["run_id"] for k in result["kept"]] == ["recent01"]
    assert not gone.exists() and not expired.exists() and recent.exists() and mine.exists()
    assert token_status(cloud, gone_token) == 404
    assert token_status(cloud, recent_token) == 200

    # A run that ends revokes its own token and removes its file, and in the same call those of runs gone since.
    later, later_token = cache_of("gone02")
    backdate(later)
    my_token = cached_tokens(mine)[0]
    result, output = run_module(cloud, "novaha.recovery.os_auth_cache", dict(cloud=cloud.admin_cloud, auth_cache=str(mine), state="absent"))
    assert not result.get("failed"), output
    assert [(r["run_id"], r["revoked"]) for r in result["removed"]] == [("gone02", 1), ("next01", 1)]
    assert not mine.exists() and not later.exists() and recent.exists()
    assert token_status(cloud, my_token) == 404 and token_status(cloud, later_token) == 404
    for token in (gone_token, recent_token, my_token, later_token):
        assert token not in output and token not in json.dumps(result)

    # The role's end of a run does the same in the module run that ends its marker (os_recovery_run end_auth_cache):
    # a run that holds nothing on the host (here: it never claimed it) changes nothing in Nova and still ends its token.
    last, last_token = cache_of("gone03")
    backdate(last)
    ending = caches / "novaha-recovery-next02.token"
    params = dict(cloud=cloud.admin_cloud, auth_cache=str(ending), host=HOST, run_id="next02", state="ended", end_auth_cache=True)
    result, output = run_module(cloud, "novaha.recovery.os_recovery_run", params)
    assert not result.get("failed"), output
    assert result["phase"] is None and result["changed"] is False and "holds nothing" in result["msg"]
    assert [(r["run_id"], r["revoked"]) for r in result["token_caches"]["removed"]] == [("gone03", 1), ("next02", 1)]
    assert result["token_caches"]["failed"] is None and "revoked 1 Keystone tokens" in result["msg"]
    assert not ending.exists() and not last.exists() and recent.exists()
    assert token_status(cloud, last_token) == 404
    for token in (last_token, recent_token):
        assert token not in output and token not in json.dumps(result)


# ---------------------------------------------------------------------------------------------------------
# A recovery at -vvvv with the SDK's DEBUG log, after a run that was killed


def run_env(cloud, home):
    return dict(cloud.env(), HOME=str(home), ANSIBLE_SHOW_CUSTOM_STATS="1", ANSIBLE_LOCAL_TEMP=str(home / ".ansible" / "tmp"))


def recovery_playbook(cloud, tmp_path, log, keep_server=None):
    """The role on HOST with every module but os_host_evacuate (the role sets its defaults) writing the SDK's
    DEBUG log; then, with keep_server, that server (excluded from the role) evacuated with an admin password."""
    debug = dict(sdk_log_path=str(log), sdk_log_level="DEBUG")
    modules = ["os_auth_cache", "os_fence_check", "os_host_info", "os_compute_service", "os_recovery_run"]
    plays = [
        {
            "name": "Recover",
            "hosts": HOST,
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "module_defaults": dict((f"novaha.recovery.{m}", debug) for m in modules),
            "roles": [
                {
                    "role": "novaha.recovery.host_recovery",
                    "vars": {
                        "host_recovery_host": HOST,
                        "host_recovery_report_root": str(tmp_path / "reports"),
                        "host_recovery_service_down_timeout": 90,
                        "host_recovery_exclude": {"metadata": {"keep": "yes"}},
                    },
                }
            ],
        }
    ]
    if keep_server:
        plays.append(
            {
                "name": "Evacuate the kept server with an admin password",
                "hosts": "localhost",
                "gather_facts": False,
                "connection": "local",
                "vars": {"ansible_python_interpreter": sys.executable},
                "tasks": [
                    {
                        "name": "Evacuate it",
                        "novaha.recovery.os_instance_evacuate": dict(
                            debug, cloud=cloud.admin_cloud, server=keep_server, expected_source_host=HOST, admin_password=ADMIN_PASSWORD
                        ),
                    }
                ],
            }
        )
    path = tmp_path / "recover.yml"
    path.write_text(json.dumps(plays))
    return [str(DEV_BIN / "ansible-playbook"), "-i", str(cloud.inventory), str(path)]


def watch_caches(directory, seen, stop):
    """Collect every token of every cache file that appears in ``directory`` until ``stop`` is set."""
    while not stop.is_set():
        for path in directory.glob("novaha-recovery-*.token"):
            try:
                seen.setdefault(path.name, set()).update(cached_tokens(path))
            except (OSError, ValueError):
                pass
        time.sleep(0.1)


def test_a_recovery_shows_and_writes_no_secret_and_leaves_no_token(clean_cloud, tmp_path):
    cloud = clean_cloud
    home = tmp_path / "home"
    caches = private_dir(home / ".ansible" / "tmp")
    log = tmp_path / "sdk.log"
    cloud.boot(HOST, count=2)
    (kept,) = cloud.boot(HOST, count=1, metadata={"keep": "yes"})

    # A run killed in its preflight (it waits for Nova to report the host down): its token cache stays behind.
    killed = subprocess.Popen(recovery_playbook(cloud, tmp_path, log), env=run_env(cloud, home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(caches.glob("novaha-recovery-*.token")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    for pid in process_tree(killed.pid):  # the controller dies with every module it runs, as a lost AWX pod
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed.wait()
    (left,) = caches.glob("novaha-recovery-*.token")
    killed_tokens = cached_tokens(left)
    assert token_status(cloud, killed_tokens[0]) == 200
    backdate(left)
    log.unlink(missing_ok=True)  # killed in its first module, os_host_evacuate (no SDK log): none may be there

    cloud.fail_host(HOST, power="on")
    seen, stop = {}, threading.Event()
    watcher = threading.Thread(target=watch_caches, args=(caches, seen, stop), daemon=True)
    watcher.start()
    try:
        proc = subprocess.run(
            recovery_playbook(cloud, tmp_path, log, keep_server=kept["id"]) + ["-vvvv"],
            env=run_env(cloud, home),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        stop.set()
        watcher.join()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "CUSTOM STATS" in output and "recovered" in output

    # The killed run's cache was removed by this run and its token revoked; this run revoked its own.
    assert list(caches.glob("novaha-recovery-*.token")) == []
    run_tokens = set().union(*[tokens for name, tokens in seen.items() if name != left.name])
    assert run_tokens
    for token in killed_tokens + sorted(run_tokens):
        assert token_status(cloud, token) == 404, token

    # The SDK's DEBUG log has the requests, the evacuation's body among them, with its secrets redacted.
    text = log.read_text()
    assert "REQ: curl" in text and '"adminPass": "********"' in text

    clouds = json.loads(cloud.clouds_yaml.read_text())["clouds"]
    secrets = [
        ("the admin password given to the rebuilt server", ADMIN_PASSWORD),
        ("the cloud password", clouds[cloud.admin_cloud]["auth"]["password"]),
        ("the BMC password", cloud.bmc(HOST)["password"]),
    ] + [("a Keystone token", token) for token in sorted(run_tokens) + killed_tokens]
    written = [p for p in list(tmp_path.rglob("*")) if p.is_file() and p.name != "recover.yml"]
    assert any(p.name == "report.json" for p in written) and log in written
    for what, secret in secrets:
        assert secret not in output, what
        for path in written:
            assert secret not in path.read_text(errors="replace"), (what, str(path))
