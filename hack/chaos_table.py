"""Render what `make chaos` measured (the JSON lines tests/integration/test_chaos.py appends to
NOVAHA_CHAOS_RESULTS) as the Markdown tables of docs/reliability.md: one row per run, then the totals.

Usage: chaos_table.py RESULTS.jsonl
"""

import json
import sys


def yes(flag):
    return "yes" if flag else "no"


def marker_phase(marker):
    """The phase a run marker names ("novaha.recovery run <id> <phase> ctl ..."), or "none"."""
    words = (marker or "").split()
    return words[3] if len(words) > 3 and marker.startswith("novaha.recovery run ") else "none"


def final_marker(entry, run_id):
    marker = entry.get("marker") or ""
    return bool(run_id) and marker.startswith("novaha.recovery run %s done " % run_id)


def kill_rows(kills):
    lines = [
        "| # | kill point | phase | killed | delay s | killed in task | marker at the kill | then rc | servers recovered "
        "| evacuations (duplicates) | our locks / notes left | forced down, disabled, final marker "
        "| report lists | outcome |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, e in enumerate(kills, 1):
        lines.append(
            "| %d | %s | %s | %s | %s | %s | %s | %s | %d/%d | %d (%d) | %d / %d | %s | %d/%d | %s |"
            % (
                n,
                e["point"],
                e["phase"],
                e["mode"],
                e["delay"],
                (e.get("killed_in") or "-").replace("|", "/"),
                marker_phase(e.get("marker_at_kill")),
                e["rc"],
                e["recovered"],
                e["servers"],
                e["evacuations"],
                e["duplicate_evacuations"],
                e["locks_left"],
                e["notes_left"],
                yes(e["forced_down"] and e["status"] == "disabled" and final_marker(e, e.get("report_run_id"))),
                e["reported"],
                e["servers"],
                e.get("report_outcome"),
            )
        )
    return lines


def fault_rows(runs):
    lines = [
        "| # | seed | Nova requests (faulted) | Keystone requests (faulted) | rc | outcome "
        "| servers recovered | evacuations (duplicates) | report lists | our locks not reported in progress "
        "| then the same command: rc, recovered, duplicates, locks/notes left |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, e in enumerate(runs, 1):
        then = e["then"]
        lines.append(
            "| %d | %s | %d (%d) | %d (%d) | %s | %s | %d/%d | %d (%d) | %d/%d | %d | %s, %d/%d, %d, %d/%d |"
            % (
                n,
                e["seed"],
                e["faults"]["nova"]["requests"],
                e["faults"]["nova"]["faulted"],
                e["faults"]["keystone"]["requests"],
                e["faults"]["keystone"]["faulted"],
                e["rc"],
                e.get("report_outcome"),
                e["recovered"],
                e["servers"],
                e["evacuations"],
                e["duplicate_evacuations"],
                e["reported"],
                e["servers"],
                e["unreported_locks"],
                then["rc"],
                then["recovered"],
                then["servers"],
                then["duplicate_evacuations"],
                then["locks_left"],
                then["notes_left"],
            )
        )
    return lines


def totals(kills, runs):
    lines = [
        "| runs | servers | recovered | duplicate evacuations | servers never evacuated | our locks / notes left "
        "| host not forced down, disabled, final marker | report missing a server |",
        "|---|---|---|---|---|---|---|---|",
    ]
    then = [e["then"] for e in runs]
    for label, group in (
        ("controller killed, then the same command", kills),
        ("under 10 % API faults", runs),
        ("under 10 % API faults, then the same command", then),
    ):
        if not group:
            continue
        lines.append(
            "| %d %s | %d | %d | %d | %d | %d / %d | %d | %d |"
            % (
                len(group),
                label,
                sum(e["servers"] for e in group),
                sum(e["recovered"] for e in group),
                sum(e["duplicate_evacuations"] for e in group),
                sum(e["not_evacuated"] for e in group),
                sum(e["locks_left"] for e in group),
                sum(e["notes_left"] for e in group),
                sum(1 for e in group if not (e["forced_down"] and e["status"] == "disabled" and final_marker(e, e.get("report_run_id")))),
                sum(e["servers"] - e["reported"] for e in group),
            )
        )
    return lines


def main(path):
    entries = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    kills = [e for e in entries if e["test"] == "kill"]
    runs = [e for e in entries if e["test"] == "faults"]
    out = ["### Totals", ""] + totals(kills, runs)
    if kills:
        out += ["", "### The controller killed, then the same command", ""] + kill_rows(kills)
    if runs:
        out += ["", "### 10 % of the requests to Nova and Keystone failing", ""] + fault_rows(runs)
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
