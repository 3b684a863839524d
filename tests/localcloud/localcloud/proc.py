"""Background processes of the local cloud: start, find, stop, wait for ports.

Each service is one process group, its pid in run/<name>.pid and its output in
logs/<name>.log, so `down` finds everything even after the CLI that started it is gone.
"""

import os
import signal
import socket
import subprocess
import time

from . import config


class CloudError(Exception):
    """A clear, operator-facing failure of the local cloud CLI."""


def run_dir():
    return config.STATE / "run"


def log_dir():
    return config.STATE / "logs"


def pid_file(name):
    return run_dir() / f"{name}.pid"


def start(name, argv, env=None, cwd=None):
    """Start a service in its own process group; return its pid."""
    run_dir().mkdir(parents=True, exist_ok=True)
    log_dir().mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_dir() / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd or str(config.STATE), start_new_session=True
        )
    pid_file(name).write_text(str(proc.pid))
    return proc.pid


def rename(old, new):
    """A running service takes another name (its pid file moves; its log stays where it is)."""
    pid_file(old).rename(pid_file(new))


def pid_of(name):
    try:
        return int(pid_file(name).read_text())
    except (OSError, ValueError):
        return None


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def running(name):
    return alive(pid_of(name))


def known_services():
    if not run_dir().exists():
        return []
    return sorted(p.stem for p in run_dir().glob("*.pid"))


def signal_group(name, sig):
    pid = pid_of(name)
    if not alive(pid):
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop(name, timeout=10.0):
    """SIGTERM the service's process group, SIGKILL what is left after `timeout`."""
    pid = pid_of(name)
    if alive(pid):
        try:
            os.killpg(pid, signal.SIGCONT)  # a frozen ("unreachable") BMC must be able to die
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            kill(name)
    _reap_group(pid)
    pid_file(name).unlink(missing_ok=True)


def kill(name):
    """SIGKILL the whole process group at once: the way a host dies."""
    pid = pid_of(name)
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _reap_group(pid)


def _reap_group(pgid):
    """Kill stragglers of a group (workers forked by gunicorn, Erlang helpers)."""
    if not pgid:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) == pgid:
                os.kill(int(entry), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def port_open(port, host=config.HOST):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def ephemeral_range(path="/proc/sys/net/ipv4/ip_local_port_range"):
    """(low, high) of the ports the kernel hands to outgoing connections."""
    try:
        with open(path) as handle:
            low, high = handle.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def check_ports_outside_ephemeral(ports):
    """Refuse ports the kernel may give any outgoing connection as its local port.

    A service that binds such a port fails at random, when a client socket took it first.
    """
    low, high = ephemeral_range()
    inside = [p for p in ports if low <= p <= high]
    if inside:
        raise CloudError(
            f"port(s) {', '.join(map(str, inside))} are in this machine's ephemeral "
            f"range {low}-{high}, where any outgoing connection may take them; "
            f"choose a smaller NOVAHA_LOCALCLOUD_PORT_OFFSET"
        )


def check_ports_free(ports):
    taken = [p for p in ports if port_open(p)]
    if taken:
        raise CloudError(
            f"port(s) already in use on {config.HOST}: {', '.join(map(str, taken))}; "
            f"another local cloud or service is running (try 'localcloud down' "
            f"or free the port)"
        )


def wait_port(name, port, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if not running(name):
            raise CloudError(f"{name} exited during start-up; see {log_dir() / (name + '.log')}:\n" + tail_log(name))
        time.sleep(0.1)
    raise CloudError(f"{name} did not listen on port {port} within {timeout:.0f}s; see {log_dir() / (name + '.log')}")


def wait_for(what, check, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise CloudError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def tail_log(name, lines=20):
    try:
        text = (log_dir() / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run(argv, env=None, what=None, timeout=300):
    """Run a set-up command to completion; a failure raises CloudError with its output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=str(config.STATE), check=False)
    if proc.returncode != 0:
        raise CloudError(f"{what or argv[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout
