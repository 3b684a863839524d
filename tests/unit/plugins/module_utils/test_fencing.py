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

    def __init__(self, clock, power="On", delay=2.0, stuck=False, allowed=("On", "ForceOff"),
                 systems=(SYSTEM,), password="secret", action_info=False):
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
            return 200, json.dumps({"@odata.id": path, "PowerState": self.state(),
                                    "Actions": {"#ComputerSystem.Reset": action}})
        if method == "GET" and path == SYSTEM + "/ResetActionInfo":
            return 200, json.dumps({"Parameters": [{"Name": "ResetType",
                                                    "AllowableValues": list(self.allowed)}]})
        if method == "POST" and path == RESET_TARGET:
            if json.loads(body)["ResetType"] != "ForceOff":
                return 400, "{}"
            if not self.stuck and self.state() != "Off":
                self.off_at = self.clock() + self.delay
            return 204, ""
        return 404, json.dumps({"error": {"message": "no such resource"}})


def redfish(fake, clock, **kwargs):
    return f.RedfishBmc("https://127.0.0.1:8443", fake, username="admin", password=kwargs.pop("password", "secret"),
                        clock=clock, **kwargs)


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
            return 1, "", ("> RAKP 2 HMAC is invalid\n"
                           "Error: Unable to establish IPMI v2 / RMCP+ session\n")
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
    return f.IpmiBmc("127.0.0.1", "admin", kwargs.pop("password", "secret"), port=6230, runner=runner,
                     clock=clock, environ={"PATH": "/usr/bin"}, **kwargs)


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


@pytest.mark.parametrize("address,port,base", [
    ("10.0.0.5", None, "https://10.0.0.5"),
    ("10.0.0.5", 8443, "https://10.0.0.5:8443"),
    ("https://bmc.example:8000/", None, "https://bmc.example:8000"),
    ("https://bmc.example:8000", 9000, "https://bmc.example:9000"),
    ("http://[fd00::5]", None, "http://[fd00::5]"),
])
def test_redfish_base_url(address, port, base):
    assert f.redfish_base_url(address, port) == base


@pytest.mark.parametrize("raw,state", [("On", "on"), ("Off", "off"), ("PoweringOff", "on"),
                                       ("PoweringOn", "on"), (None, "unknown")])
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


@pytest.mark.parametrize("stderr,cause", [
    ("Error in open session response message : no matching cipher suite", f.CAUSE_UNSUPPORTED),
    ("Error in open session response message : invalid role\n", f.CAUSE_UNREACHABLE),
    ("RAKP 2 message indicates an error : unauthorized name", f.CAUSE_CREDENTIALS),
    ("Error: Unable to establish IPMI v2 / RMCP+ session", f.CAUSE_UNREACHABLE),
    ("Set Chassis Power Control to Down/Off failed: Insufficient privilege level", f.CAUSE_FORBIDDEN),
])
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
