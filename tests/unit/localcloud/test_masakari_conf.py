"""masakari.conf as the local cloud writes it: the shipped defaults need only the connections; tuned adds exactly TUNED."""

import configparser
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "localcloud"))
from localcloud import config, masakari, proc  # noqa: E402  (test tooling)

CONNECTIONS = {
    "debug",
    "use_stderr",
    "transport_url",
    "masakari_api_listen",
    "masakari_api_listen_port",
    "os_privileged_user_name",
    "os_privileged_user_password",
    "os_privileged_user_tenant",
    "os_privileged_user_auth_url",
}


def sections(profile):
    return masakari.conf_sections(profile, "secret", "/locks", "/api-paste.ini")


def test_defaults_set_no_recovery_option_only_how_to_reach_the_cloud():
    conf = sections("defaults")
    assert set(conf["DEFAULT"]) == CONNECTIONS
    assert not set(masakari.TUNED) & set(conf["DEFAULT"])
    assert conf["DEFAULT"]["masakari_api_listen"] == "127.0.0.1"
    assert conf["DEFAULT"]["masakari_api_listen_port"] == config.PORTS["masakari-api"]
    assert conf["database"]["connection"] == conf["taskflow"]["connection"] == config.db_url("masakari")
    assert conf["keystone_authtoken"]["username"] == "masakari"


def test_tuned_differs_from_defaults_by_exactly_the_tuned_options():
    defaults, tuned = sections("defaults"), sections("tuned")
    assert {k: v for k, v in tuned["DEFAULT"].items() if k not in masakari.TUNED} == defaults["DEFAULT"]
    assert {k: tuned["DEFAULT"][k] for k in masakari.TUNED} == masakari.TUNED
    assert {s: v for s, v in tuned.items() if s != "DEFAULT"} == {s: v for s, v in defaults.items() if s != "DEFAULT"}
    assert masakari.TUNED["wait_period_after_service_update"] == 0
    assert masakari.TUNED["host_failure_recovery_threads"] > 3


def test_an_unknown_configuration_is_refused():
    with pytest.raises(proc.CloudError, match="defaults, tuned"):
        sections("fastest")


def test_the_written_file_reads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "STATE", tmp_path)
    masakari.write_conf("tuned", "secret")
    parser = configparser.RawConfigParser()
    parser.read(tmp_path / "etc" / "masakari" / "masakari.conf")
    assert parser.get("DEFAULT", "wait_period_after_service_update") == "0"
    assert parser.get("DEFAULT", "os_privileged_user_password") == "secret"
    assert parser.get("taskflow", "connection").startswith("mysql+pymysql://")
