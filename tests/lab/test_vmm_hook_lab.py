"""VmmScriptHook against one emulated Windows server, through the real PsrpHook and pypsrp.

The scripts, their twins and their models are this test's own (written to a temporary
include folder), so the hook is tested apart from the product's real scripts. The server
speaks HTTPS with a certificate from a CA made for the test; the client verifies it.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from types import SimpleNamespace

import pytest
import structlog
from pydantic import BaseModel

from airflow.sdk.exceptions import AirflowFailException
from asr_lab.pki import ensure_pki
from asr_lab.winrm import ScriptTwins, TwinError, TwinResult, WinRMControls, build_winrm_app
from asr_lab.winrm.testing import running_winrm_server
from site_recovery.exceptions import (
    VmmAuthenticationError,
    VmmScriptError,
    VmmScriptInterrupted,
    VmmScriptOutputError,
    VmmTransportError,
)
from site_recovery.hooks.vmm import VmmScriptHook
from site_recovery.script_contract import INCLUDE_DIR_ENV, ScriptContract

USER, PASSWORD = "LAB\\svc-asr", "Pa55w0rd!"
CONN_ID = "vmm_hook_lab"
SECRET_MARKER = "VAULT-KEY-5c1d7e0a93"
VAULT_CREDENTIALS = f'<VaultCredentials><Key>{SECRET_MARKER}</Key><Vault>rsv-dr</Vault></VaultCredentials>'


class Inventory(BaseModel):
    cloud: str
    vms: list[str]

    def summary(self) -> str:
        return f"{len(self.vms)} VMs in cloud {self.cloud}"


class Registration(BaseModel):
    server: str
    registered: bool


INVENTORY = ScriptContract("Get-TestInventory", Inventory, safe_to_retry=True)
REGISTER = ScriptContract("Register-TestProvider", Registration, secret_parameters={"VaultCredentials"})
FAILING_INSTALL = ScriptContract("Install-TestProvider", Registration, secret_parameters={"VaultCredentials"})
THROWING = ScriptContract("Test-Throw", Inventory)
MISSING_COMMAND = ScriptContract("Get-NotOnThisServer", Inventory)
ECHO_SECRET = ScriptContract("Show-TestSecret", Registration, secret_parameters={"VaultCredentials"})
STOP_ANSWERING = ScriptContract("Stop-TestAnswering", Inventory)
STOP_ANSWERING_SAFE = ScriptContract("Stop-TestAnswering", Inventory, safe_to_retry=True)
MALFORMED = {
    "not-json": ScriptContract("Write-NotJson", Inventory),
    "wrong-shape": ScriptContract("Write-WrongShape", Inventory),
    "two-documents": ScriptContract("Write-TwoDocuments", Inventory),
    "nothing": ScriptContract("Write-Nothing", Inventory),
}
ALL_CONTRACTS = [INVENTORY, REGISTER, FAILING_INSTALL, THROWING, MISSING_COMMAND, ECHO_SECRET, STOP_ANSWERING,
                 *MALFORMED.values()]


def make_twins() -> ScriptTwins:
    twins = ScriptTwins()
    inventory_json = json.dumps({"cloud": "Gold", "vms": ["web01", "web02"]})

    @twins.register("Get-TestInventory")
    def inventory(parameters, context):
        return TwinResult(output=[inventory_json], verbose=[f"Reading cloud {parameters['Cloud']}"],
                          information=["Inventory of 2 VMs taken"], warning=["VM web02 has no replica"],
                          debug=["Get-SCVirtualMachine returned 2 objects"])

    @twins.register("Register-TestProvider")
    def register(parameters, context):
        arrived = SECRET_MARKER in parameters["VaultCredentials"]  # a SecureString, decrypted by the server
        return TwinResult(output=[json.dumps({"server": parameters["Server"], "registered": arrived})],
                          verbose=["Registering the ASR provider with vault rsv-dr"])

    twins.register("Install-TestProvider", lambda p, c: TwinResult(errors=[TwinError(
        "The vault credentials have expired.", "InvalidOperation", "VaultCredentialsExpired",
        position="at Install-TestProvider, <No file>: line 42\nat <ScriptBlock>, <No file>: line 60")]))
    twins.register("Test-Throw", lambda p, c: TwinResult(terminating_error=TwinError.thrown(
        "Cloud Gold has no host group", position="at <ScriptBlock>, <No file>: line 7")))
    twins.register("Show-TestSecret", lambda p, c: TwinResult(
        output=[json.dumps({"server": p["VaultCredentials"], "registered": True})]))
    twins.register("Write-NotJson", lambda p, c: TwinResult(output=["Inventory: web01, web02"]))
    twins.register("Write-WrongShape", lambda p, c: TwinResult(output=[json.dumps({"cloud": "Gold", "vms": 2})]))
    twins.register("Write-TwoDocuments", lambda p, c: TwinResult(output=[inventory_json, inventory_json]))
    twins.register("Write-Nothing", lambda p, c: TwinResult())

    @twins.register("Stop-TestAnswering")
    def stop_answering(parameters, context):
        context.controls.stop_answering()
        return TwinResult(output=[inventory_json])

    return twins


@pytest.fixture(scope="module")
def vmm(tmp_path_factory):
    ca, cert, key = ensure_pki(tmp_path_factory.mktemp("vmm-hook-pki"))
    controls = WinRMControls()
    app = build_winrm_app("vmm01", {USER: PASSWORD}, make_twins(), SimpleNamespace(controls=controls),
                          controls=controls)
    with running_winrm_server(app, certfile=cert, keyfile=key) as server:
        yield SimpleNamespace(server=server, ca=str(ca), controls=controls, service=app.state.winrm)
        controls.resume_answering()


@pytest.fixture(autouse=True)
def scripts(tmp_path, monkeypatch):
    """This test's scripts in a temporary include folder, each naming its twin."""
    folder = tmp_path / "powershell"
    folder.mkdir()
    for contract in ALL_CONTRACTS:
        (folder / f"{contract.name}.ps1").write_text(
            f"<# Test script {contract.name}. #>\n# asr-lab-twin: {contract.name}\n"
            "param([string]$Cloud, [string]$Server, [securestring]$VaultCredentials)\n"
            "$ErrorActionPreference = 'Stop'\n", encoding="utf-8")
    monkeypatch.setenv(INCLUDE_DIR_ENV, str(tmp_path))


@pytest.fixture
def connection(vmm, monkeypatch):
    """Set the ``psrp`` connection (port in the connection itself); returns a function to change it."""
    def configure(password: str = PASSWORD, port: int | None = None, **extra) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
            "conn_type": "psrp", "host": vmm.server.host, "port": port or vmm.server.port,
            "login": USER, "password": password,
            "extra": {"auth": "basic", "cert_validation": vmm.ca, **extra},
        }))
        return CONN_ID

    configure()
    return configure


def events(logs: list[dict]) -> list[tuple[str, str]]:
    return [(entry["log_level"], entry["event"]) for entry in logs]


def messages(exc: BaseException) -> str:
    """The texts of an exception and everything it was raised from."""
    texts = []
    while exc is not None:
        texts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def test_output_is_parsed_and_streams_reach_the_task_log(connection):
    with structlog.testing.capture_logs() as logs:
        inventory = VmmScriptHook(CONN_ID).run_script(INVENTORY, {"Cloud": "Gold"})

    assert inventory == Inventory(cloud="Gold", vms=["web01", "web02"])
    logged = events(logs)
    assert ("info", "Running Get-TestInventory on 127.0.0.1 with parameters: Cloud=Gold") in logged
    assert ("info", "Reading cloud Gold") in logged
    assert ("info", f"vmm01 ({USER}): Inventory of 2 VMs taken") in logged
    assert ("warning", "VM web02 has no replica") in logged
    assert not [event for _, event in logged if "Get-SCVirtualMachine returned" in event]  # Write-Debug stays out
    (finished,) = [event for level, event in logged if event.startswith("Get-TestInventory on 127.0.0.1 finished")]
    assert finished.endswith(": 2 VMs in cloud Gold")


def test_secret_parameter_travels_as_securestring_and_is_never_shown(vmm, connection, caplog):
    caplog.set_level(logging.DEBUG)  # pypsrp logs every WSMan message it sends at DEBUG
    with structlog.testing.capture_logs() as logs:
        registration = VmmScriptHook(CONN_ID).run_script(
            REGISTER, {"Server": "vmm01", "VaultCredentials": VAULT_CREDENTIALS})

    assert registration == Registration(server="vmm01", registered=True)
    assert ("info", "Running Register-TestProvider on 127.0.0.1 with parameters: Server=vmm01, "
                    "VaultCredentials=***") in events(logs)
    assert SECRET_MARKER not in repr(logs) and SECRET_MARKER not in registration.model_dump_json()
    assert "Sending message" in caplog.text and SECRET_MARKER not in caplog.text  # encrypted on the wire
    (invocation,) = [i for i in vmm.service.invocations if "Register-TestProvider" in repr(i)]
    assert SECRET_MARKER not in repr(invocation)  # the lab logs SecureStrings masked: it was sent as one


def test_secret_echoed_in_output_is_refused_without_showing_it(connection):
    with structlog.testing.capture_logs() as logs, pytest.raises(VmmScriptOutputError) as failure:
        VmmScriptHook(CONN_ID).run_script(ECHO_SECRET, {"VaultCredentials": VAULT_CREDENTIALS})

    assert "wrote the value of a secret parameter" in str(failure.value)
    assert SECRET_MARKER not in messages(failure.value) and SECRET_MARKER not in repr(logs)


def test_error_record_fails_with_the_scripts_message_and_position(connection):
    with structlog.testing.capture_logs() as logs, pytest.raises(VmmScriptError) as failure:
        VmmScriptHook(CONN_ID).run_script(FAILING_INSTALL, {"VaultCredentials": VAULT_CREDENTIALS})

    assert str(failure.value) == (
        "Install-TestProvider on 127.0.0.1: The vault credentials have expired. (at line 42)")
    assert isinstance(failure.value, AirflowFailException)
    (error,) = failure.value.errors
    assert error.error_id == "VaultCredentialsExpired"
    assert error.category.startswith("InvalidOperation:")
    assert ("info", "at Install-TestProvider, <No file>: line 42") in events(logs)  # PsrpHook logs the trace
    assert SECRET_MARKER not in messages(failure.value) and SECRET_MARKER not in repr(logs)


@pytest.mark.parametrize(("contract", "expected"), [
    (THROWING, "Test-Throw on 127.0.0.1: Cloud Gold has no host group (at line 7)"),
    (MISSING_COMMAND, "Get-NotOnThisServer on 127.0.0.1: The term 'Get-NotOnThisServer' is not recognized as "
                      "the name of a cmdlet"),
], ids=["throw", "unknown-command"])
def test_failing_script_raises_a_final_script_error(connection, contract, expected):
    with pytest.raises(VmmScriptError) as failure:
        VmmScriptHook(CONN_ID).run_script(contract)
    assert str(failure.value).startswith(expected)


@pytest.mark.parametrize(("case", "expected"), [
    ("not-json", "is not a valid Inventory document: not JSON"),
    ("wrong-shape", "is not a valid Inventory document: vms: Input should be a valid array"),
    ("two-documents", "wrote 2 objects to its output stream (first: "),
    ("nothing", "wrote nothing to its output stream"),
], ids=list(MALFORMED))
def test_output_that_breaks_the_contract(connection, case, expected):
    contract = MALFORMED[case]
    with pytest.raises(VmmScriptOutputError) as failure:
        VmmScriptHook(CONN_ID).run_script(contract)
    assert str(failure.value).startswith(f"{contract.name} on 127.0.0.1 ")
    assert expected in str(failure.value)
    assert isinstance(failure.value, AirflowFailException)


def test_wrong_password_is_a_final_authentication_error(connection):
    connection(password="not-the-password")
    with pytest.raises(VmmAuthenticationError) as failure:
        VmmScriptHook(CONN_ID).run_script(INVENTORY, {"Cloud": "Gold"})

    assert str(failure.value).startswith(f"WinRM authentication to 127.0.0.1 as {USER} failed (basic)")
    assert isinstance(failure.value, AirflowFailException)
    assert "not-the-password" not in messages(failure.value)


def test_nothing_listening_is_a_retryable_transport_error(connection):
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    connection(port=free_port)
    with pytest.raises(VmmTransportError) as failure:
        VmmScriptHook(CONN_ID).run_script(INVENTORY, {"Cloud": "Gold"})

    assert "could not be reached" in str(failure.value)
    assert "did not start, so retrying is safe" in str(failure.value)
    assert not isinstance(failure.value, AirflowFailException)


@pytest.mark.parametrize(("contract", "error", "retryable"), [
    (STOP_ANSWERING, VmmScriptInterrupted, False),
    (STOP_ANSWERING_SAFE, VmmTransportError, True),
], ids=["may-have-partly-run", "safe-to-retry"])
def test_server_that_stops_answering_mid_run_times_out(vmm, connection, contract, error, retryable):
    hook = VmmScriptHook(CONN_ID, operation_timeout=0.25, read_timeout=0.5,
                         wsman_options={"reconnection_backoff": 0})
    started = time.monotonic()
    try:
        with pytest.raises(error) as failure:
            hook.run_script(contract)
    finally:
        vmm.controls.resume_answering()

    assert time.monotonic() - started < 10  # pypsrp polls 6 times at most, the shell is not closed
    assert str(failure.value).startswith("Stop-TestAnswering on 127.0.0.1 did not answer within 0.5 s")
    assert isinstance(failure.value, AirflowFailException) is not retryable


def test_server_silent_before_the_script_starts_is_retryable(vmm, connection):
    hook = VmmScriptHook(CONN_ID, operation_timeout=0.25, read_timeout=0.5)
    runs_before = len(vmm.service.invocations)
    vmm.controls.stop_answering()
    try:
        with pytest.raises(VmmTransportError) as failure:
            hook.run_script(STOP_ANSWERING, {"Cloud": "Gold"})
    finally:
        vmm.controls.resume_answering()

    assert str(failure.value) == ("WinRM on 127.0.0.1 did not answer within 0.5 s. "
                                  "Stop-TestAnswering did not start, so retrying is safe.")
    assert len(vmm.service.invocations) == runs_before  # the server never saw the script
