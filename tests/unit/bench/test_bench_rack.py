"""The benchmark's own logic (tests/bench/run.py): the rack's hosts, request counting, ratios and verdicts."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
_spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_a_rack_is_hosts_times_servers():
    assert bench.parse_rack("3x30") == (3, 30)
    assert bench.parse_rack(" 2X5 ") == (2, 5)
    for wrong in ("3", "0x30", "3x0", "x30", "three by thirty"):
        with pytest.raises(ValueError, match="HOSTSxSERVERS"):
            bench.parse_rack(wrong)


def test_the_rack_fails_beside_three_healthy_hosts():
    failed, computes = bench.rack_computes(3)
    assert failed == ["node-28", "node-29", "node-30"]
    assert computes == ["node-27", "node-28", "node-29", "node-30", "node-31", "node-32"]
    # Two healthy hosts at least, whatever the rack.
    failed, computes = bench.rack_computes(1)
    assert failed == ["node-28"] and computes == ["node-27", "node-28", "node-29"]


def test_a_spread_of_rebuild_times_is_the_same_for_every_contender():
    first = bench.spread_delays(90, 5, 60, 1)
    assert first == bench.spread_delays(90, 5, 60, 1)
    assert all(5 <= delay <= 60 for delay in first)
    assert first != bench.spread_delays(90, 5, 60, 2)


def test_servers_are_numbered_in_boot_order():
    names = ["node-28-vm-10", "node-28-vm-2", "node-28-vm-1"]
    assert sorted(names, key=bench.server_number) == ["node-28-vm-1", "node-28-vm-2", "node-28-vm-10"]
    assert bench.server_number("no-number-here") == 0


def access(method, path, status=200, at=1000.0):
    return (method, path, status, at)


def test_requests_per_poll_of_the_hosts_recovered_one_after_another_are_counted_as_the_playbooks():
    lines = [
        access("GET", "/v2.1/servers/detail?host=node-28&all_tenants=True"),
        access("POST", "/v2.1/servers/x/action"),
        access("POST", "/v2.1/servers/y/action"),
        access("GET", "/v2.1/servers/detail?changes-since=2026&all_tenants=True"),
        access("GET", "/v2.1/os-migrations?changes-since=2026"),
        access("GET", "/v2.1/servers/detail?changes-since=2026&all_tenants=True"),
        access("GET", "/v2.1/os-migrations?changes-since=2026"),
    ]
    for key in ("a", "a-serial"):
        counted = bench.count_requests(key, lines, None)
        assert counted["requests"] == 7 and counted["actions"] == 2
        assert counted["polls"] == 2 and counted["poll_requests"] == 4 and counted["requests_per_poll"] == 2.0


def watch_polls(two, one_at_the_end=True):
    """The changes-since requests of ``two`` watch polls (migrations, then servers) and the verification's look
    (servers only)."""
    lines = []
    for _poll in range(two):
        lines += [access("GET", "/v2.1/os-migrations?changes-since=2026"), access("GET", "/v2.1/servers/detail?changes-since=2026&all_tenants=True")]
    if one_at_the_end:
        lines.append(access("GET", "/v2.1/servers/detail?changes-since=2026&all_tenants=True"))
    return lines


def test_requests_per_poll_is_what_a_poll_sends_not_the_average():
    # The idle run of 2026-11-28: 7 requests in 4 polls at N = 10, 21 in 11 at N = 50; each poll but one sends 2.
    at_10 = bench.count_requests("a", watch_polls(3), None)
    at_50 = bench.count_requests("a", watch_polls(10), None)
    assert (at_10["polls"], at_10["poll_requests"], at_10["poll_sizes"]) == (4, 7, [2, 2, 2, 1])
    assert (at_50["polls"], at_50["poll_requests"]) == (11, 21)
    assert at_10["requests_per_poll"] == at_50["requests_per_poll"] == 2
    assert (at_10["requests_per_poll_mean"], at_50["requests_per_poll_mean"]) == (1.75, 1.91)
    results = [run("a", 20.0, 22.0, servers=10), run("a", 50.0, 55.0, servers=50)]
    results[0]["nova"], results[1]["nova"] = at_10, at_50
    verdicts = {name: (met, detail) for name, met, detail in bench.judge(bench.summarize(results, [10, 50], ["a"]), None)}
    assert verdicts["(a) requests per poll independent of N"] == (True, "N=10: 2, N=50: 2")


def test_a_poll_that_lists_more_as_n_grows_misses():
    # A poll that pages its listing (or reads each server) sends more at N = 50: the most common size grows.
    paged = watch_polls(0, one_at_the_end=False)
    for _poll in range(6):
        paged += [access("GET", "/v2.1/os-migrations?changes-since=2026")] + [access("GET", "/v2.1/servers?changes-since=2026&marker=x")] * 2
        paged += [access("GET", "/v2.1/servers/detail?changes-since=2026&all_tenants=True")]
    assert bench.count_requests("a", paged, None)["requests_per_poll"] == 4
    assert bench.poll_size([]) is None and bench.poll_size([1, 2]) == 2 and bench.poll_size([1, 1, 2]) == 1


def test_the_rack_floor_polls_one_listing():
    lines = [access("POST", "/v2.1/servers/x/action")] + [access("GET", "/v2.1/servers/detail?all_tenants=True")] * 3
    counted = bench.count_requests("c-rack", lines, {"polls": 3})
    assert counted["polls"] == 3 and counted["requests_per_poll"] == 1.0 and "script_polls" not in counted


def run(key, done, wall, servers=90, requests=900):
    return {
        "contender": key,
        "servers": servers,
        "rc": 0,
        "wall": wall,
        "done": done,
        "recovered": servers,
        "first_action_s": 3.0,
        "nova": {"requests": requests, "polls": 10, "requests_per_poll": 2.0},
        "peak_rss_tree_mib": 100.0,
        "peak_rss_largest_process_mib": 60.0,
        "dir": f"build/bench/x/{key}",
    }


def test_the_rack_is_judged_against_its_floor_and_against_one_host_after_another():
    results = [run("a", 60.0, 65.0, requests=1000), run("a-serial", 160.0, 170.0, requests=1000), run("c-rack", 55.0, 56.0, requests=400)]
    table = bench.summarize(results, [90], bench.RACK_CONTENDERS)
    assert table[90]["a/c-rack"] == 1.09 and table[90]["a-serial/a"] == 2.67
    verdicts = {name.split(" (")[0]: (met, detail) for name, met, detail in bench.judge(table, None)}
    assert verdicts["rack: the hosts recovered together within 1.2 x the rack floor"][0] is True
    assert verdicts["rack: the hosts recovered together at least 2.5 x faster than one after another"][0] is True
    # 11.11 requests per server against the rack floor's 4.44: more than 3 over.
    met, detail = verdicts["(a) Nova requests per server <= the rack floor's + 3"]
    assert met is False and "11.11 against 4.44" in detail
    # No single-host target is judged on a rack.
    assert not any(name.startswith(("a/c <=", "b/a >=")) for name in verdicts)


def test_a_rack_slower_than_its_floor_or_barely_faster_than_serial_misses():
    results = [run("a", 80.0, 85.0), run("a-serial", 160.0, 170.0), run("c-rack", 55.0, 56.0)]
    verdicts = bench.judge(bench.summarize(results, [90], bench.RACK_CONTENDERS), None)
    assert [met for name, met, _detail in verdicts if name.startswith("rack:")] == [False, False]


def test_a_over_c_is_judged_at_50_and_at_200_servers():
    results = [run("a", 50.0, 55.0, servers=50), run("c", 48.0, 50.0, servers=50), run("b", 300.0, 300.0, servers=50)]
    results += [run("a", 230.0, 240.0, servers=200), run("c", 200.0, 205.0, servers=200)]
    table = bench.summarize(results, [50, 200], ["a", "b", "c"])
    verdicts = {name: met for name, met, _detail in bench.judge(table, {"wall_median": 4.0})}
    assert verdicts["a/c <= 1.1 at N = 50"] is True
    assert verdicts["a/c <= 1.1 at N = 200"] is False  # 1.15
    assert verdicts["b/a >= 5 at N = 50"] is True
    assert verdicts["(a) requests per poll independent of N"] is True
    # N = 200 not run: not judged rather than judged at another N.
    only_50 = bench.summarize(results, [50], ["a", "b", "c"])
    assert {name: met for name, met, _detail in bench.judge(only_50, None)}["a/c <= 1.1 at N = 200"] is None


def test_requests_per_poll_that_grow_with_n_miss():
    results = [run("a", 50.0, 55.0, servers=50), run("a", 200.0, 205.0, servers=200)]
    results[1]["nova"]["requests_per_poll"] = 3.5
    table = bench.summarize(results, [50, 200], ["a"])
    verdicts = {name: (met, detail) for name, met, detail in bench.judge(table, None)}
    assert verdicts["(a) requests per poll independent of N"] == (False, "N=50: 2.0, N=200: 3.5")


def test_the_tasks_of_hosts_recovered_together_count_once():
    records = [
        {"task": "host_recovery : Evacuate - every selected server", "start": 10.0, "end": 30.0},
        {"task": "host_recovery : Evacuate - every selected server", "start": 10.0, "end": 34.0},
        {"task": "host_recovery : Evacuate - every selected server", "start": 10.0, "end": 32.0},
        {"task": "host_recovery : Verify - wait", "start": 34.0, "end": 36.0},
    ]
    spans = bench.task_spans(records)
    assert [(s["task"], s["end"] - s["start"]) for s in spans] == [("Evacuate - every selected server", 24.0), ("Verify - wait", 2.0)]
    # One host after another: the same task at three starts, three spans.
    serial = [dict(r, start=r["start"] + 40 * index, end=r["end"] + 40 * index) for index, r in enumerate(records[:3])]
    assert len(bench.task_spans(serial)) == 3
    profile = bench.profile_of(records, started=9.0, finished=37.0)
    assert profile["phases"] == {"Evacuate": 24.0, "Verify": 2.0} and profile["startup"] == 1.0


def test_masakari_is_judged_beside_the_single_host_targets_and_not_on_a_rack():
    results = [run(key, done, done + 2, servers=50) for key, done in (("a", 50.0), ("c", 48.0), ("d", 250.0), ("e", 40.0))]
    table = bench.summarize(results, [50], ["a", "c", "d", "e"])
    assert table[50]["a/d"] == 0.2 and table[50]["a/e"] == 1.25 and table[50]["a/c"] == 1.04
    verdicts = {name: met for name, met, _detail in bench.judge(table, None)}
    assert verdicts["(a) faster than Masakari, shipped defaults: a/d < 1"] is True
    assert verdicts["(a) faster than Masakari, tuned: a/e < 1"] is False
    assert verdicts["a/c <= 1.1 at N = 50"] is True
    rack = [run("a", 60.0, 65.0), run("a-serial", 160.0, 170.0), run("c-rack", 55.0, 56.0)]
    names = [name for name, _met, _detail in bench.judge(bench.summarize(rack, [90], bench.RACK_CONTENDERS), None)]
    assert not any("Masakari" in name for name in names)
    assert not set(bench.MASAKARI) & set(bench.RACK_CONTENDERS)


def test_masakaris_confirmation_reads_are_its_polls():
    server = "/v2.1/servers/0a1b2c3d-0000-4000-8000-000000000001"
    lines = [access("POST", server + "/action"), access("GET", server), access("GET", server), access("GET", "/v2.1/os-services")]
    for key in ("d", "e"):
        counted = bench.count_requests(key, lines, None)
        assert counted["polls"] == 2 and counted["requests_per_poll"] == 1.0
