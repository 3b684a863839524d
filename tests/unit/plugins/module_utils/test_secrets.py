"""Secrets never reach the SDK log, and a missing or broken clouds.yaml is named as such."""

import json
import logging

from ansible_collections.novaha.recovery.plugins.module_utils import _cloud


def test_redact_hides_known_values_and_secret_json_members():
    body = json.dumps(
        {
            "evacuate": {"host": "node-27", "adminPass": "Xy9-secret"},
            "auth": {"identity": {"password": {"user": {"name": "admin", "password": "p@ss\"w"}}}},
            "application_credential_secret": "appsecret",
            "token": {"expires_at": "2025"},
        }
    )
    text = 'REQ: curl -X POST http://nova/servers/1/action -d \'%s\' token gAAAAAtok' % body
    out = _cloud.redact(text, {"gAAAAAtok"})
    for secret in ("Xy9-secret", 'p@ss\\"w', "appsecret", "gAAAAAtok"):
        assert secret not in out
    assert '"adminPass": "********"' in out
    # A member whose value is an object is structure, not a secret; names and hosts stay readable.
    assert '"token": {"expires_at": "2025"}' in out and "node-27" in out and '"name": "admin"' in out


def test_the_filter_redacts_every_record_of_the_log_file(tmp_path):
    path = tmp_path / "sdk.log"
    secrets = set()
    handler = logging.FileHandler(str(path))
    handler.addFilter(_cloud.RedactingFilter(secrets))
    logger = logging.getLogger("keystoneauth.test-redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        secrets.add("cloud-pa55")  # added once the module knows it, after the filter was installed
        logger.debug("RESP BODY: %s", '{"server": {"adminPass": "generated-one"}}')
        logger.debug("auth with %s", "cloud-pa55")
        try:
            raise ValueError("failed with cloud-pa55")
        except ValueError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert "generated-one" not in text and "cloud-pa55" not in text
    assert text.count("********") >= 3


def test_a_cloud_missing_from_clouds_yaml_names_the_file_and_its_clouds(tmp_path):
    path = tmp_path / "clouds.yaml"
    path.write_text("clouds:\n  novaha-admin: {auth: {auth_url: 'http://x'}}\n  novaha-member: {}\n")
    error = _cloud.cloud_name_error("novaha-admn", [str(path)])
    assert error.msg == ("cloud 'novaha-admn' is not in the clouds.yaml %s (its clouds: novaha-admin, novaha-member). Nothing was changed" % path)
    assert error.result() == dict(kind="configuration", option="cloud")
    assert _cloud.cloud_name_error("novaha-admin", [str(path)]) is None


def test_an_unparsable_clouds_yaml_is_named_not_reported_as_a_missing_cloud(tmp_path):
    path = tmp_path / "clouds.yaml"
    path.write_text("clouds:\n  a: {auth: {auth_url: 'http://x'}\n  b: [\n")
    error = _cloud.cloud_name_error("a", [str(tmp_path / "missing.yaml"), str(path)])
    assert error.msg.startswith("cloud 'a': the clouds.yaml %s is not valid YAML: " % path)
    assert error.kind == "configuration"


def test_no_clouds_yaml_at_all(tmp_path):
    error = _cloud.cloud_name_error("a", [str(tmp_path / "clouds.yaml")])
    assert error.msg.startswith("cloud 'a' cannot be found: there is no clouds.yaml (looked for ")


def test_a_clouds_yaml_without_clouds(tmp_path):
    path = tmp_path / "clouds.yaml"
    path.write_text("- just\n- a list\n")
    assert "has no clouds: mapping" in _cloud.cloud_name_error("a", [str(path)]).msg
