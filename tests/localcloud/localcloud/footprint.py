"""Memory of the local cloud: every process of every service's process group.

RSS counts pages shared between a forking parent and its workers twice; PSS (proportional
set size) shares them out, so the PSS total is what the cloud really takes from the machine.
"""

import os

from . import proc


def _memory(pid):
    """(rss, pss) of one process, in bytes."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    return rss, pss


def memory_by_service():
    """{service: (rss, pss)} in bytes, summed over each service's whole process group."""
    groups = {proc.pid_of(name): name for name in proc.known_services() if proc.running(name)}
    totals = {name: (0, 0) for name in groups.values()}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            pgid = os.getpgid(int(entry))
            if pgid not in groups:
                continue
            rss, pss = _memory(entry)
        except OSError:
            continue
        old = totals[groups[pgid]]
        totals[groups[pgid]] = (old[0] + rss, old[1] + pss)
    return totals
