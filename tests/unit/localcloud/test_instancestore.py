"""The fake hypervisor's instance stores: which host shares which directory, and a disk's life."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "localcloud"))
from localcloud import instancestore  # noqa: E402  (test tooling)

SERVER = "7ffbb57f-b489-4b92-9b37-dd5d19c1c0d4"


def test_by_default_every_compute_but_the_last_shares_the_store(tmp_path):
    computes = ["node-27", "node-28", "node-31"]
    stores = instancestore.layout(tmp_path, computes, instancestore.default_shared_hosts(computes))
    assert stores["node-27"] == stores["node-28"] == str(tmp_path / "instance-stores" / "shared")
    assert stores["node-31"] == str(tmp_path / "instance-stores" / "node-31")
    assert instancestore.default_shared_hosts(["solo-1"]) == []


@pytest.mark.parametrize(
    "text, hosts",
    [
        ("node-27,node-31", ["node-27", "node-31"]),
        (" node-27 node-28 ", ["node-27", "node-28"]),
        ("", []),
        ("none", []),
    ],
)
def test_shared_store_hosts_are_read_from_a_list(text, hosts):
    assert instancestore.parse_hosts(text) == hosts


def test_a_disk_is_seen_by_every_host_of_its_store_and_by_no_other(tmp_path):
    stores = instancestore.layout(tmp_path, ["a", "b", "c"], ["a", "b"])
    instancestore.create(tmp_path, stores)
    assert instancestore.load(tmp_path) == stores
    token = instancestore.write_disk(stores["a"], SERVER, "a")
    assert instancestore.disk_token(stores["b"], SERVER) == token
    assert instancestore.disk_token(stores["c"], SERVER) is None
    assert instancestore.read_disk(stores["b"], SERVER)["written_by"] == "a"
    assert instancestore.write_disk(stores["c"], SERVER, "c") != token, "a new disk has new data"

    instancestore.remove_disk(stores["b"], SERVER)
    assert instancestore.disk_token(stores["a"], SERVER) is None
    instancestore.clear(stores)
    assert instancestore.disk_token(stores["c"], SERVER) is None
    assert instancestore.load(tmp_path / "elsewhere") == {}


def test_a_host_the_layout_does_not_name_keeps_a_local_store(tmp_path):
    instancestore.create(tmp_path, instancestore.layout(tmp_path, ["a", "b"], ["a", "b"]))
    assert instancestore.store_of(tmp_path, "b") == str(tmp_path / "instance-stores" / "shared")
    assert instancestore.store_of(tmp_path, "z") == str(tmp_path / "instance-stores" / "z")
    assert instancestore.store_of(tmp_path / "elsewhere", "a") == str(tmp_path / "elsewhere" / "instance-stores" / "a")
