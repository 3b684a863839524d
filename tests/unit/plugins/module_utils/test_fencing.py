"""Unit tests of the fencing engine: fake Redfish HTTP, fake ipmitool, fake clock. No network."""

import json

import pytest

from ansible_collections.novaha.recovery.plugins.module_utils import _fencing as f

SYSTEM = "/redfish/v1/Systems/abc"
RESET_TARGET = SYSTEM + "/Actions/ComputerSystem.Reset"


class FakeClock:
    """Time that only moves when the code under test sleeps (or a BMC call takes time)."""

    def __init__(self, start=1_700_000_000.0):
        self.now = start
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds > 0, "the engine must never sleep zero or negative seconds"
        self.sleeps.append(seconds)
        self.now += seconds


class FakeRedfish:
    """A Redfish service: one system whose power goes Off ``delay`` seconds after ForceOff."""

    def __init__(self, clock, power="On", delay=2.0, stuck=False, allowed=("On", "ForceOff"), systems=(SYSTEM,), password="secret", action_info=False):
        self.clock = clock
        self.power = power
        self.delay = delay
        self.stuck = stuck
        self.allowed = allowed
        self.systems = list(systems)
        self.password = password
        self.action_info = action_info
        self.off_at = None
        self.calls = []

    def state(self):
        if self.off_at is not None and self.clock() >= self.off_at:
            self.power, self.off_at = "Off", None
        return self.power

    def __call__(self, method, url, headers=None, body=None, timeout=10, auth=None):
        path = url.split("://", 1)[1].split("/", 1)[1]
        path = "/" + path
        self.calls.append((method, path, body))
        if auth != ("admin", self.password):
            return 401, json.dumps({"error": {"message": "Unauthorized"}})
        if method == "GET" and path == "/redfish/v1/Systems":
            return 200, json.dumps({"Members": [{"@odata.id": s} for s in self.systems]})
        if method == "GET" and path in self.systems:
            action = {"target": RESET_TARGET}
            if self.action_info:
                action["@Redfish.ActionInfo"] = SYSTEM + "/ResetActionInfo"
            elif self.allowed is not None:
                action["ResetType@Redfish.AllowableValues"] = list(self.allowed)
            return 200, json.dumps({"@odata.id": path, "PowerState": self.state(), "Actions": {"#ComputerSystem.Reset": action}})
        if method == "GET" and path == SYSTEM + "/ResetActionInfo":
            return 200, json.dumps({"Parameters": [{"Name": "ResetType", "AllowableValues": list(self.allowed)}]})
        if method == "POST" and path == RESET_TARGET:
            if json.loads(body)["ResetType"] != "ForceOff":
                return 400, "{}"
            if not self.stuck and self.state() != "Off":
                self.off_at = self.clock() + self.delay
            return 204, ""
        return 404, json.dumps({"error": {"message": "no such resource"}})


def redfish(fake, clock, **kwargs):
    return f.RedfishBmc("https://127.0.0.1:8443", fake, username="admin", password=kwargs.pop("password", "secret"), clock=clock, **kwargs)


class FakeIpmitool:
    """A runner standing in for ipmitool; records argv and env of every call."""

    def __init__(self, clock, power="on", delay=2.0, stuck=False, password="secret", fail=None):
        self.clock = clock
        self.power = power
        self.delay = delay
        self.stuck = stuck
        self.password = password
        self.fail = fail
        self.off_at = None
        self.calls = []

    def __call__(self, argv, env, timeout):
        self.calls.append((list(argv), dict(env), timeout))
        if self.fail == "timeout":
            self.clock.now += timeout
            raise f.TransportError("ipmitool did not finish within %s s" % timeout, timed_out=True)
        if self.fail == "unreachable":
            return 1, "", ("Error: Unable to establish IPMI v2 / RMCP+ session\n")
        if env.get("IPMI_PASSWORD") != self.password:
            return 1, "", ("> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n")
        if self.off_at is not None and self.clock() >= self.off_at:
            self.power, self.off_at = "off", None
        command = argv[-3:]
        if command == ["chassis", "power", "status"]:
            return 0, "Chassis Power is %s\n" % self.power, ""
        if command == ["chassis", "power", "off"]:
            if not self.stuck and self.power != "off":
                self.off_at = self.clock() + self.delay
            return 0, "Chassis Power Control: Down/Off\n", ""
        return 1, "", "Invalid command"


def ipmi(runner, clock, **kwargs):
    return f.IpmiBmc("127.0.0.1", "admin", kwargs.pop("password", "secret"), port=6230, runner=runner, clock=clock, environ={"PATH": "/usr/bin"}, **kwargs)


def run(host, bmc, clock, **kwargs):
    return f.check_fence(host, bmc, clock=clock, sleep=clock.sleep, **kwargs)


# --- judge_fenced: the one decision -----------------------------------------------------------------


def reading(state, at=100.0, method="redfish"):
    return f.PowerReading(state, state.capitalize(), at, method)


def test_only_an_off_reading_counts():
    assert f.judge_fenced(reading("off"), attested=False).fenced
    assert not f.judge_fenced(reading("on"), attested=False).fenced
    assert not f.judge_fenced(reading("unknown"), attested=False).fenced
    assert not f.judge_fenced(None, attested=False).fenced


def test_an_off_reading_older_than_the_power_command_does_not_count():
    verdict = f.judge_fenced(reading("off", at=99.0), attested=False, not_before=100.0)
    assert not verdict.fenced
    assert "predates" in verdict.reason


def test_attestation_counts_without_a_reading_but_not_against_an_on_reading():
    assert f.judge_fenced(None, attested=True).fenced
    assert f.judge_fenced(None, attested=True).method == "attestation"
    verdict = f.judge_fenced(reading("on"), attested=True)
    assert not verdict.fenced
    assert "attested" in verdict.reason


# --- Redfish --------------------------------------------------------------------------------------------


def test_redfish_on_is_fenced_by_force_off_and_a_fresh_off_reading():
    clock = FakeClock()
    fake = FakeRedfish(clock, delay=2.5)
    result = run("node-28", redfish(fake, clock), clock, fence=True, power_timeout=10)
    assert result["fenced"] is True
    assert result["power_changed"] is True
    assert result["error"] is None
    ev = result["evidence"]
    assert (ev["method"], ev["power_state_before"], ev["power_state"]) == ("redfish", "on", "off")
    assert ev["action"] == "ComputerSystem.Reset ForceOff"
    assert 2.5 <= ev["fence_seconds"] <= 3.5
    posts = [c for c in fake.calls if c[0] == "POST"]
    assert posts == [("POST", RESET_TARGET, json.dumps({"ResetType": "ForceOff"}))]
    # the Off verdict comes from a GET after the POST, not from the POST being accepted
    assert fake.calls[-1][0] == "GET"


def test_redfish_already_off_sends_nothing():
    clock = FakeClock()
    fake = FakeRedfish(clock, power="Off")
    result = run("node-28", redfish(fake, clock), clock, fence=True)
    assert result["fenced"] is True
    assert result["power_changed"] is False
    assert not [c for c in fake.calls if c[0] == "POST"]


def test_redfish_on_without_fence_is_not_fenced_and_says_why():
    clock = FakeClock()
    fake = FakeRedfish(clock)
    result = run("node-28", redfish(fake, clock), clock, fence=False)
    assert result["fenced"] is False
    assert "node-28" in result["error"] and "On" in result["error"]
    assert "https://127.0.0.1:8443" in result["error"]
    assert not [c for c in fake.calls if c[0] == "POST"]


def test_redfish_stuck_fails_after_power_timeout_naming_host_bmc_and_cause():
    clock = FakeClock()
    start = clock()
    fake = FakeRedfish(clock, stuck=True)
    result = run("node-28", redfish(fake, clock), clock, fence=True, power_timeout=7)
    assert result["fenced"] is False
    assert result["power_changed"] is True
    assert result["evidence"]["error_cause"] == f.CAUSE_STUCK
    assert 7 <= clock() - start <= 8
    msg = result["error"]
    assert "node-28" in msg and "Redfish BMC https://127.0.0.1:8443" in msg and "stayed on" in msg
    assert "7 s" in msg


def test_redfish_stuck_is_not_rescued_by_attestation():
    clock = FakeClock()
    fake = FakeRedfish(clock, stuck=True)
    result = run("node-28", redfish(fake, clock), clock, fence=True, attested=True, power_timeout=3)
    assert result["fenced"] is False


def test_redfish_wrong_password_is_a_credentials_error():
    clock = FakeClock()
    fake = FakeRedfish(clock)
    result = run("node-28", redfish(fake, clock, password="wrong"), clock, fence=True)
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == f.CAUSE_CREDENTIALS
    assert "credentials rejected" in result["error"] and "401" in result["error"]
    assert "wrong" not in result["error"]


@pytest.mark.parametrize("timed_out,cause", [(False, f.CAUSE_UNREACHABLE), (True, f.CAUSE_TIMEOUT)])
def test_redfish_unreachable(timed_out, cause):
    clock = FakeClock()

    def http(*args, **kwargs):
        raise f.TransportError("[Errno 111] Connection refused", timed_out=timed_out)

    result = run("node-28", redfish(http, clock), clock, fence=True)
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == cause
    assert "node-28" in result["error"] and "127.0.0.1:8443" in result["error"]


def test_redfish_unreachable_with_attestation_is_fenced_by_attestation():
    clock = FakeClock()

    def http(*args, **kwargs):
        raise f.TransportError("no route to host")

    result = run("node-28", redfish(http, clock), clock, attested=True)
    assert result["fenced"] is True
    assert result["evidence"]["method"] == "attestation"
    assert "no route to host" in result["bmc_error"]


def test_redfish_force_off_not_allowed_is_refused_before_posting():
    clock = FakeClock()
    fake = FakeRedfish(clock, allowed=("On", "GracefulShutdown"))
    result = run("node-28", redfish(fake, clock), clock, fence=True)
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == f.CAUSE_UNSUPPORTED
    assert "GracefulShutdown" in result["error"]
    assert not [c for c in fake.calls if c[0] == "POST"]


def test_redfish_allowed_reset_types_from_action_info():
    clock = FakeClock()
    fake = FakeRedfish(clock, action_info=True)
    result = run("node-28", redfish(fake, clock), clock, fence=True)
    assert result["fenced"] is True
    assert ("GET", SYSTEM + "/ResetActionInfo", None) in fake.calls


def test_redfish_discovers_the_only_system_and_refuses_to_guess_among_several():
    clock = FakeClock()
    fake = FakeRedfish(clock, power="Off")
    assert run("h", redfish(fake, clock), clock)["fenced"] is True
    assert fake.calls[0][:2] == ("GET", "/redfish/v1/Systems")

    fake = FakeRedfish(clock, systems=(SYSTEM, "/redfish/v1/Systems/other"))
    result = run("h", redfish(fake, clock), clock)
    assert result["fenced"] is False
    assert "system_id" in result["error"] and "2 systems" in result["error"]


def test_redfish_explicit_system_id_skips_discovery():
    clock = FakeClock()
    fake = FakeRedfish(clock, power="Off")
    result = run("h", redfish(fake, clock, system_id="abc"), clock)
    assert result["fenced"] is True
    assert [c[1] for c in fake.calls] == [SYSTEM]


def test_check_mode_reads_but_does_not_power_off():
    clock = FakeClock()
    fake = FakeRedfish(clock)
    result = run("node-28", redfish(fake, clock), clock, fence=True, check_mode=True)
    assert result["would_power_off"] is True
    assert result["fenced"] is False
    assert result["power_changed"] is False
    assert result["error"] is None
    assert not [c for c in fake.calls if c[0] == "POST"]
    assert fake.power == "On"


@pytest.mark.parametrize(
    "address,port,base",
    [
        ("10.0.0.5", None, "https://10.0.0.5"),
        ("10.0.0.5", 8443, "https://10.0.0.5:8443"),
        ("https://bmc.example:8000/", None, "https://bmc.example:8000"),
        ("https://bmc.example:8000", 9000, "https://bmc.example:9000"),
        ("http://[fd00::5]", None, "http://[fd00::5]"),
    ],
)
def test_redfish_base_url(address, port, base):
    assert f.redfish_base_url(address, port) == base


@pytest.mark.parametrize("raw,state", [("On", "on"), ("Off", "off"), ("PoweringOff", "on"), ("PoweringOn", "on"), (None, "unknown")])
def test_powering_off_is_not_off(raw, state):
    assert f.redfish_power_state(raw) == state


# --- IPMI -----------------------------------------------------------------------------------------------


def test_ipmi_password_only_in_environment_and_cipher_suite_passed():
    clock = FakeClock()
    tool = FakeIpmitool(clock, power="off")
    result = run("node-31", ipmi(tool, clock, cipher_suite=3, timeout=7), clock)
    assert result["fenced"] is True
    argv, env, timeout = tool.calls[0]
    assert "secret" not in " ".join(argv)
    assert env["IPMI_PASSWORD"] == "secret"
    assert argv[:11] == ["ipmitool", "-v", "-I", "lanplus", "-H", "127.0.0.1", "-p", "6230", "-U", "admin", "-E"]
    assert argv[11:13] == ["-C", "3"]
    assert argv[-3:] == ["chassis", "power", "status"]
    assert timeout == 7


def test_ipmi_without_cipher_suite_leaves_ipmitools_default():
    clock = FakeClock()
    tool = FakeIpmitool(clock, power="off")
    run("node-31", ipmi(tool, clock), clock)
    assert "-C" not in tool.calls[0][0]


def test_ipmi_on_is_fenced_by_power_off_and_a_fresh_off_reading():
    clock = FakeClock()
    tool = FakeIpmitool(clock, delay=3)
    result = run("node-31", ipmi(tool, clock), clock, fence=True, power_timeout=10)
    assert result["fenced"] is True and result["power_changed"] is True
    assert result["evidence"]["action"] == "chassis power off"
    assert result["evidence"]["power_state_raw"] == "Chassis Power is off"
    commands = [c[0][-1] for c in tool.calls]
    assert commands[0] == "status" and commands[1] == "off" and commands[-1] == "status"
    assert commands.count("off") == 1


def test_ipmi_already_off_is_unchanged():
    clock = FakeClock()
    tool = FakeIpmitool(clock, power="off")
    result = run("node-31", ipmi(tool, clock), clock, fence=True)
    assert result["fenced"] is True and result["power_changed"] is False
    assert [c[0][-1] for c in tool.calls] == ["status"]


def test_ipmi_stuck_fails_within_power_timeout():
    clock = FakeClock()
    start = clock()
    tool = FakeIpmitool(clock, stuck=True)
    result = run("node-31", ipmi(tool, clock), clock, fence=True, power_timeout=5)
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == f.CAUSE_STUCK
    assert clock() - start <= 6
    assert "IPMI BMC 127.0.0.1:6230" in result["error"] and "node-31" in result["error"]


def test_ipmi_wrong_password():
    clock = FakeClock()
    tool = FakeIpmitool(clock)
    result = run("node-31", ipmi(tool, clock, password="nope"), clock, fence=True)
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == f.CAUSE_CREDENTIALS
    assert "HMAC is invalid" in result["error"]
    assert "nope" not in result["error"]


@pytest.mark.parametrize("fail,cause", [("unreachable", f.CAUSE_UNREACHABLE), ("timeout", f.CAUSE_TIMEOUT)])
def test_ipmi_unreachable(fail, cause):
    clock = FakeClock()
    tool = FakeIpmitool(clock, fail=fail)
    result = run("node-31", ipmi(tool, clock, timeout=4), clock, fence=True)
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == cause
    assert "node-31" in result["error"] and "127.0.0.1:6230" in result["error"]


def test_ipmitool_missing_is_a_configuration_error():
    clock = FakeClock()

    def runner(argv, env, timeout):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    result = run("node-31", ipmi(runner, clock), clock)
    assert result["evidence"]["error_cause"] == f.CAUSE_CONFIG
    assert "install ipmitool" in result["error"]


@pytest.mark.parametrize(
    "stderr,cause",
    [
        ("Error in open session response message : no matching cipher suite", f.CAUSE_UNSUPPORTED),
        ("Error in open session response message : invalid role\n", f.CAUSE_UNREACHABLE),
        ("RAKP 2 message indicates an error : unauthorized name", f.CAUSE_CREDENTIALS),
        ("Error: Unable to establish IPMI v2 / RMCP+ session", f.CAUSE_UNREACHABLE),
        ("Set Chassis Power Control to Down/Off failed: Insufficient privilege level", f.CAUSE_FORBIDDEN),
    ],
)
def test_classify_ipmitool_errors(stderr, cause):
    assert f.classify_ipmitool_error(stderr) == cause


def test_real_runner_enforces_the_hard_timeout(tmp_path):
    slow = tmp_path / "slow-ipmitool"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    bmc = f.IpmiBmc("127.0.0.1", "admin", "secret", timeout=1, ipmitool=str(slow))
    with pytest.raises(f.FenceError) as err:
        bmc.read_power()
    assert err.value.cause == f.CAUSE_TIMEOUT


# --- no BMC ---------------------------------------------------------------------------------------------


def test_no_bmc_needs_attestation():
    clock = FakeClock()
    result = run("node-27", None, clock)
    assert result["fenced"] is False and "no power reading and no attestation" in result["error"]
    result = run("node-27", None, clock, attested=True)
    assert result["fenced"] is True and result["evidence"]["method"] == "attestation"


# --- bad BMC input: each names the option and the cause, before anything is asked ----------------------


def level(**spec):
    base = dict(
        type="redfish",
        address="https://10.0.0.5",
        port=None,
        username="admin",
        password="secret",
        system_id=None,
        validate_certs=True,
        ca_path=None,
        timeout=10,
        cipher_suite=None,
        agent=None,
        options=None,
    )
    base.update(spec)
    return base


@pytest.mark.parametrize(
    "spec,option,words",
    [
        (dict(address=""), "bmc.address", "is empty"),
        (dict(address="   "), "bmc.address", "is empty"),
        (dict(address="https://fd00::5/"), "bmc.address", "IPv6 address without brackets"),
        (dict(address="https://[fd00::5"), "bmc.address", "unclosed ["),
        (dict(address="[not-an-ip]"), "bmc.address", "not an IPv6 address"),
        (dict(address="fd00::zz::1"), "bmc.address", "neither a host name"),
        (dict(address="https://10.0.0.5:99999"), "bmc.address (its port)", "between 1 and 65535"),
        (dict(address="https://10.0.0.5:https"), "bmc.address", "port that is not a number"),
        (dict(address="10.0.0.5", port=0), "bmc.port", "between 1 and 65535, not 0"),
        (dict(address="10.0.0.5", port=70000), "bmc.port", "between 1 and 65535, not 70000"),
        (dict(address="https://10.0.0.5/redfish/v1/Systems/1"), "bmc.address", "without a path"),
        (dict(address="https://10.0.0.5/?x=1"), "bmc.address", "without a path or query"),
        (dict(address="https://admin:Sup3rSecret@10.0.0.5"), "bmc.address", "must not carry credentials"),
        (dict(address="ftp://10.0.0.5"), "bmc.address", "scheme ftp"),
        (dict(address="bmc host.example"), "bmc.address", "not a host name"),
        (dict(type="pdu"), "bmc.type", "one of redfish, ipmi, fence_agent"),
        (dict(timeout=0), "bmc.timeout", "more than 0"),
        (dict(password=None), "bmc.password", "is missing"),
        (dict(ca_path="/nonexistent/ca.pem"), "bmc.ca_path", "not a readable file"),
        (dict(type="ipmi", address="https://10.0.0.5"), "bmc.address", "not a URL"),
        (dict(type="ipmi", address=""), "bmc.address", "is empty"),
        (dict(type="ipmi", address="10.0.0.5", password=""), "bmc.password", "required for ipmi"),
        (dict(type="ipmi", address="10.0.0.5", cipher_suite=42), "bmc.cipher_suite", "0 to 17"),
        (dict(type="fence_agent", address=None, agent=None), "bmc.agent", "is required"),
        (dict(type="fence_agent", address=None, agent="fence_apc_snmp"), "bmc.agent", "not an executable file"),
        (dict(type="fence_agent", address=None, agent="/bin/true", options={"action": "on"}), "bmc.options", "must not set action"),
        (dict(type="fence_agent", address=None, agent="/bin/true", options={"bad key": "1"}), "bmc.options", "name=value"),
    ],
)
def test_bad_bmc_settings_name_the_option_and_the_cause(spec, option, words):
    with pytest.raises(f.BmcConfigError) as err:
        f.validate_level(level(**spec), "bmc")
    assert err.value.option == option
    assert err.value.msg.startswith(option + " ")
    assert words in err.value.msg
    assert "nothing was asked of the BMC or changed" in err.value.msg
    assert err.value.kind == "configuration"
    assert "Sup3rSecret" not in err.value.msg


def test_a_level_option_is_named_by_its_position():
    with pytest.raises(f.BmcConfigError) as err:
        f.level_options(dict(fence_levels=[level(), level(type="none")]))
    assert err.value.option == "fence_levels[2].type"
    with pytest.raises(f.BmcConfigError) as err:
        f.validate_level(level(port=-1), "fence_levels[3]")
    assert err.value.option == "fence_levels[3].port"


@pytest.mark.parametrize(
    "address,port,base",
    [
        ("fd00::5", None, "https://[fd00::5]"),
        ("[fd00::5]", 8443, "https://[fd00::5]:8443"),
        ("https://[fd00::5]:8000/", None, "https://[fd00::5]:8000"),
        ("10.0.0.5:8443", None, "https://10.0.0.5:8443"),
        ("bmc-28.mgmt.example", None, "https://bmc-28.mgmt.example"),
        ("HTTP://10.0.0.5", None, "http://10.0.0.5"),
    ],
)
def test_good_redfish_addresses_including_ipv6_literals(address, port, base):
    assert f.validate_level(level(address=address, port=port), "bmc")["address"] == base


@pytest.mark.parametrize("address,bare", [("fd00::31", "fd00::31"), ("[fd00::31]", "fd00::31"), ("10.0.0.31", "10.0.0.31")])
def test_ipmi_takes_ipv6_literals_with_or_without_brackets(address, bare):
    assert f.validate_level(level(type="ipmi", address=address), "bmc")["address"] == bare


# --- Redfish answers that are not what Redfish promises -------------------------------------------------


@pytest.mark.parametrize(
    "status,body,words",
    [
        (200, "<html>proxy login</html>", "not JSON: <html>proxy login</html>"),
        (200, json.dumps(["On"]), "a JSON list, not a Redfish object"),
        (200, json.dumps("On"), "a JSON str, not a Redfish object"),
        (500, json.dumps(["internal", "error"]), 'HTTP 500: ["internal", "error"]'),
        (500, json.dumps("BMC busy"), 'HTTP 500: "BMC busy"'),
        (500, json.dumps({"error": "BMC busy"}), "HTTP 500: BMC busy"),
        (500, json.dumps({"error": {"@Message.ExtendedInfo": "x"}}), "HTTP 500"),
        (502, "Bad Gateway", "HTTP 502: Bad Gateway"),
        (302, "", "redirect that was not followed"),
    ],
)
def test_redfish_answers_that_are_not_redfish_objects_are_clear_errors(status, body, words):
    clock = FakeClock()
    calls = []

    def http(method, url, **kwargs):
        calls.append(method)
        return status, body

    result = run("node-28", redfish(http, clock, system_id="abc"), clock, fence=True)
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == f.CAUSE_PROTOCOL
    assert words in result["error"] and "node-28" in result["error"]
    assert calls == ["GET"]  # nothing else: no power action


def test_redfish_systems_collection_of_the_wrong_shape():
    clock = FakeClock()

    def http(method, url, **kwargs):
        return 200, json.dumps({"Members": "all of them"})

    result = run("node-28", redfish(http, clock), clock, fence=True)
    assert result["fenced"] is False and "0 systems" in result["error"]


# --- a BMC of another host ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "system,problem",
    [
        ({"Name": "node-27"}, "named node-27, another compute host"),
        ({"Name": "NODE-27.example.org"}, "another compute host"),
        ({"HostName": "node-27.example.org"}, "reports HostName node-27.example.org, not node-28"),
        ({"HostName": "db-4"}, "reports HostName db-4"),
        ({"Name": "System"}, None),
        ({"Name": "node-28"}, None),
        ({"HostName": "node-28.example.org", "Name": "Computer System"}, None),
        ({}, None),
    ],
)
def test_identity_problem(system, problem):
    found = f.identity_problem(system, "node-28", ["node-27", "node-28", "node-31"])
    if problem is None:
        assert found is None
    else:
        assert problem in found and "BMC of another host" in found


def test_a_bmc_of_another_host_is_refused_before_any_power_action():
    clock = FakeClock()
    fake = FakeRedfish(clock)
    bmc = redfish(fake, clock, host="node-31", compute_hosts=["node-27", "node-28", "node-31"])
    fake.name = "node-28"
    original = fake.__call__

    def http(method, url, **kwargs):
        status, body = original(method, url, **kwargs)
        if method == "GET" and url.endswith(SYSTEM):
            body = json.dumps(dict(json.loads(body), Name="node-28"))
        return status, body

    bmc.http = http
    result = run("node-31", bmc, clock, fence=True)
    assert result["fenced"] is False
    assert result["evidence"]["error_cause"] == f.CAUSE_CONFIG
    assert "BMC of another host" in result["error"]
    assert not [c for c in fake.calls if c[0] == "POST"]
    assert fake.power == "On"


# --- fence levels ---------------------------------------------------------------------------------------


class FakeAgent:
    """A fence agent process: options on stdin, exit 0 = on, 2 = off (fence-agents API)."""

    def __init__(self, clock, power="on", delay=1.0, fail=None, password="pdu-secret"):
        self.clock = clock
        self.power = power
        self.delay = delay
        self.fail = fail
        self.password = password
        self.off_at = None
        self.calls = []

    def __call__(self, argv, env, timeout, stdin_text):
        options = dict(line.split("=", 1) for line in stdin_text.splitlines() if line)
        self.calls.append((list(argv), dict(env), options))
        if self.fail == "timeout":
            self.clock.now += timeout
            raise f.TransportError("the fence agent did not finish within %s s" % timeout, timed_out=True)
        if self.fail or options.get("password") != self.password:
            return 1, "", "Failed: Unable to connect/login to fencing device (password %s)" % options.get("password")
        if self.off_at is not None and self.clock() >= self.off_at:
            self.power, self.off_at = "off", None
        if options["action"] == "status":
            return (2 if self.power == "off" else 0), "Status: %s\n" % self.power.upper(), ""
        if options["action"] == "off":
            self.off_at = self.clock() + self.delay
            return 0, "Success: Powered OFF\n", ""
        return 1, "", "unknown action"


def agent(runner, clock, **kwargs):
    return f.FenceAgent(
        "/usr/sbin/fence_pdu",
        options={"plug": 12},
        address="pdu-1",
        username="apc",
        password=kwargs.pop("password", "pdu-secret"),
        runner=runner,
        clock=clock,
        environ={"PATH": "/usr/bin"},
        **kwargs,
    )


def unreachable_redfish(*args, **kwargs):
    raise f.TransportError("[Errno 113] No route to host")


def test_first_level_unreachable_the_second_proves_the_host_off():
    clock = FakeClock()
    tool = FakeIpmitool(clock, power="off")
    result = run("node-28", [redfish(unreachable_redfish, clock), ipmi(tool, clock)], clock, fence=True)
    assert result["fenced"] is True and result["power_changed"] is False
    ev = result["evidence"]
    assert (ev["level"], ev["method"]) == (2, "ipmi")
    assert [lv["result"] for lv in ev["levels"]] == ["failed", "proved off"]
    assert ev["levels"][0]["error_cause"] == f.CAUSE_UNREACHABLE
    assert "No route to host" in ev["levels"][0]["error"]
    assert "level 2" in result["verdict"]
    assert result["level_errors"] and "level 1" in result["level_errors"][0]


def test_a_level_that_reads_on_without_fence_ends_the_search():
    clock = FakeClock()
    fake = FakeRedfish(clock)
    tool = FakeIpmitool(clock, power="off")
    result = run("node-28", [redfish(fake, clock), ipmi(tool, clock)], clock, fence=False)
    assert result["fenced"] is False
    assert [lv["result"] for lv in result["evidence"]["levels"]] == ["reads on"]
    assert tool.calls == [], "the next level is never asked to contradict an On reading"


def test_a_bmc_stuck_on_is_fenced_by_the_pdu_level():
    clock = FakeClock()
    fake = FakeRedfish(clock, stuck=True)
    pdu = FakeAgent(clock, delay=1.5)
    result = run("node-28", [redfish(fake, clock), agent(pdu, clock)], clock, fence=True, power_timeout=4)
    assert result["fenced"] is True and result["power_changed"] is True
    ev = result["evidence"]
    assert (ev["level"], ev["method"], ev["action"]) == (2, "fence_agent", "fence agent action=off")
    assert [lv["result"] for lv in ev["levels"]] == ["failed", "proved off"]
    assert ev["levels"][0]["error_cause"] == f.CAUSE_STUCK
    assert ev["levels"][0]["action"] == "ComputerSystem.Reset ForceOff"
    assert [c[2]["action"] for c in pdu.calls][:2] == ["status", "off"]
    assert pdu.calls[-1][2]["action"] == "status"


def test_every_level_failing_falls_to_the_attestation_and_says_what_each_said():
    clock = FakeClock()
    pdu = FakeAgent(clock, fail="unreachable")
    levels = [redfish(unreachable_redfish, clock), ipmi(FakeIpmitool(clock, fail="unreachable"), clock), agent(pdu, clock)]
    result = run("node-28", levels, clock, fence=True)
    assert result["fenced"] is False
    assert "any of its 3 fence levels" in result["error"]
    for words in ("level 1", "level 2", "level 3", "No route to host", "Unable to connect"):
        assert words in result["error"]
    assert "pdu-secret" not in result["error"]

    attested = run("node-28", levels, clock, fence=True, attested=True)
    assert attested["fenced"] is True
    assert attested["evidence"]["method"] == "attestation" and attested["evidence"]["level"] is None
    assert [lv["result"] for lv in attested["evidence"]["levels"]] == ["failed"] * 3


def test_a_stuck_level_is_not_rescued_by_the_attestation_when_no_other_level_proves_off():
    clock = FakeClock()
    levels = [redfish(FakeRedfish(clock, stuck=True), clock), ipmi(FakeIpmitool(clock, fail="unreachable"), clock)]
    result = run("node-28", levels, clock, fence=True, attested=True, power_timeout=2)
    assert result["fenced"] is False


def test_check_mode_with_levels_stops_at_the_level_that_would_power_off():
    clock = FakeClock()
    pdu = FakeAgent(clock)
    result = run("node-28", [redfish(unreachable_redfish, clock), agent(pdu, clock)], clock, fence=True, check_mode=True)
    assert result["would_power_off"] is True and result["fenced"] is False
    assert [c[2]["action"] for c in pdu.calls] == ["status"]
    assert result["error"] is None
    assert result["evidence"]["levels"][-1]["result"] == "would power off"


def test_fence_agent_contract_password_only_on_stdin():
    clock = FakeClock()
    pdu = FakeAgent(clock, power="off")
    result = run("node-28", agent(pdu, clock, port=161, timeout=7, host="node-28"), clock)
    assert result["fenced"] is True and result["evidence"]["method"] == "fence_agent"
    argv, env, options = pdu.calls[0]
    assert argv == ["/usr/sbin/fence_pdu"]
    assert options == {"action": "status", "ip": "pdu-1", "ipport": "161", "username": "apc", "password": "pdu-secret", "plug": "12", "nodename": "node-28"}
    assert "pdu-secret" not in " ".join(argv) and "pdu-secret" not in " ".join(env.values())
    assert result["evidence"]["bmc"] == "fence agent fence_pdu pdu-1 plug 12"


def test_fence_agent_wrong_password_is_masked_in_the_error():
    clock = FakeClock()
    pdu = FakeAgent(clock)
    result = run("node-28", agent(pdu, clock, password="Wr0ng-pdu"), clock, fence=True)
    assert result["fenced"] is False
    assert "Wr0ng-pdu" not in result["error"] and "********" in result["error"]


def test_the_real_agent_runner_passes_stdin_and_reads_the_exit_code(tmp_path):
    script = tmp_path / "fence_file"
    state = tmp_path / "power"
    state.write_text("on")
    script.write_text(
        "#!/bin/sh\n"
        "while IFS='=' read -r k v; do [ \"$k\" = action ] && action=$v; done\n"
        "if [ \"$action\" = off ]; then echo off > %s; exit 0; fi\n"
        "grep -q off %s && exit 2; exit 0\n" % (state, state)
    )
    script.chmod(0o755)
    clock = FakeClock()
    bmc = f.FenceAgent(str(script), timeout=5)
    result = run("node-28", bmc, clock, fence=True, power_timeout=5)
    assert result["fenced"] is True and result["power_changed"] is True
    assert state.read_text().strip() == "off"


# --- the power read again during an evacuation ----------------------------------------------------------


def test_power_watch_reads_off_on_and_unreadable():
    clock = FakeClock()
    fake = FakeRedfish(clock, power="Off")
    watch = f.PowerWatch([redfish(fake, clock)])
    assert watch() is None
    fake.power = "On"
    on = watch()
    assert on.startswith("PowerState On from Redfish BMC https://127.0.0.1:8443")
    assert watch.readings == 2

    broken = f.PowerWatch([redfish(unreachable_redfish, clock)])
    with pytest.raises(f.FenceError) as err:
        broken()
    assert "No route to host" in err.value.msg


def test_power_watch_asks_the_next_level_when_one_cannot_read():
    clock = FakeClock()
    tool = FakeIpmitool(clock, power="off")
    watch = f.PowerWatch([redfish(unreachable_redfish, clock), ipmi(tool, clock)])
    assert watch() is None
    tool.power = "on"
    assert "Chassis Power is on" in watch()


# ---------------------------------------------------------------------------------------------------------
# The bmc option from a host's inventory variables (the role's host_recovery_bmc filter)


def test_bmc_settings_types_numbers_and_leaves_out_what_is_empty():
    redfish = f.bmc_settings(
        'redfish',
        address='https://10.0.0.28',
        ipmi_address='10.1.0.28',
        ipmi_port='623',
        username='admin',
        password='pw',
        system_id='',
        ca_path=None,
        validate_certs='True',
        ipmi_cipher_suite='',
        timeout='10',
    )
    assert redfish == dict(type='redfish', address='https://10.0.0.28', username='admin', password='pw', validate_certs=True, timeout=10)
    ipmi = f.bmc_settings(
        'ipmi',
        address='https://10.0.0.28',
        ipmi_address='10.1.0.28',
        ipmi_port='6230',
        username='admin',
        password='pw',
        system_id='sys',
        ipmi_cipher_suite='17',
        timeout=5,
        validate_certs='false',
    )
    assert ipmi == dict(type='ipmi', address='10.1.0.28', port=6230, cipher_suite=17, username='admin', password='pw', validate_certs=False, timeout=5)
    # What a template made of None before ansible-core 2.19: the empty string or "None".
    assert f.bmc_settings('ipmi', ipmi_address='10.1.0.28', ipmi_port='None', ipmi_cipher_suite='') == dict(
        type='ipmi', address='10.1.0.28', validate_certs=True
    )
    assert f.bmc_settings(None) == dict(type='none', validate_certs=True)


def test_bmc_settings_names_a_setting_that_is_not_a_number():
    with pytest.raises(f.NovahaError) as err:
        f.bmc_settings('ipmi', ipmi_address='10.1.0.28', ipmi_port='six')
    assert "bmc_ipmi_port must be a number, not 'six'" in err.value.msg and err.value.kind == 'configuration'
