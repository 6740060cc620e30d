"""Unit tests of the script contract and of VmmScriptHook's pure parts (no server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import requests
from pydantic import BaseModel
from pypsrp.complex_objects import ErrorRecord
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError

from airflow.sdk.exceptions import AirflowFailException
from site_recovery.exceptions import (
    VmmAuthenticationError,
    VmmConnectionError,
    VmmScriptError,
    VmmScriptInterrupted,
    VmmScriptNotFound,
    VmmScriptOutputError,
    VmmTransportError,
)
from site_recovery.hooks.vmm import (
    ScriptErrorRecord,
    VmmScriptHook,
    bind_parameters,
    is_transient_transport_error,
    script_error_message,
)
from site_recovery.script_contract import INCLUDE_DIR_ENV, ScriptContract, include_dir

REPO = Path(__file__).resolve().parents[2]
SECRET = "VAULT-KEY-unit-9b2f4c"
VAULT_CREDENTIALS = f"<VaultCredentials><Key>{SECRET}</Key></VaultCredentials>"
WHERE = "Get-TestInventory on vmm01"
INVENTORY_JSON = json.dumps({"cloud": "Gold", "vms": ["web01"]})


class Inventory(BaseModel):
    cloud: str
    vms: list[str]


CONTRACT = ScriptContract("Get-TestInventory", Inventory, secret_parameters={"VaultCredentials"})


class TestIsTransientTransportError:
    @pytest.mark.parametrize(("exc", "expected"), [
        (requests.exceptions.ConnectionError("Connection refused"), True),
        (requests.exceptions.ConnectTimeout(), True),
        (requests.exceptions.ReadTimeout(), True),
        (requests.exceptions.RetryError("too many 503 error responses"), True),
        (ConnectionResetError(), True),
        (WinRMTransportError("http", 503, ""), True),
        (WinRMTransportError("http", 500, "no XML"), True),
        (WinRMTransportError("http", 429, ""), True),
        (WSManFaultError(2150859174, "vmm01", "Too many shells for this user.", None, None, None), True),
        (requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"), False),
        (AuthenticationError("Failed to authenticate the user LAB\\svc-asr with basic"), False),
        (WinRMTransportError("http", 400, "bad request"), False),
        (WSManFaultError(5, "vmm01", "Access is denied.", None, None, None), False),
        (WSManFaultError("5", "vmm01", "Access is denied.", None, None, None), False),
        (ValueError("not a transport error"), False),
    ], ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value))
    def test_classification(self, exc, expected):
        assert is_transient_transport_error(exc) is expected


class TestParseOutput:
    def test_one_json_document_is_read_by_the_model(self):
        assert CONTRACT.parse_output([INVENTORY_JSON], WHERE) == Inventory(cloud="Gold", vms=["web01"])

    @pytest.mark.parametrize(("outputs", "expected"), [
        ([], "wrote nothing to its output stream"),
        ([INVENTORY_JSON, INVENTORY_JSON], "wrote 2 objects to its output stream (first: '{\"cloud\""),
        (["Inventory: web01"], "is not a valid Inventory document: not JSON (Invalid JSON"),
        (['{"cloud": "Gold"}'], "is not a valid Inventory document: vms: Field required"),
        (['{"vms": "web01"}'], "cloud: Field required; vms: Input should be a valid array"),
        ([{"cloud": "Gold"}], "wrote a dict object, not a JSON string"),
    ], ids=["no-output", "two-outputs", "not-json", "missing-field", "wrong-shape", "not-a-string"])
    def test_output_that_breaks_the_contract(self, outputs, expected):
        with pytest.raises(VmmScriptOutputError) as failure:
            CONTRACT.parse_output(outputs, WHERE)
        assert str(failure.value).startswith(f"{WHERE} ")
        assert expected in str(failure.value)
        assert isinstance(failure.value, AirflowFailException)
        assert failure.value.__cause__ is None  # pydantic's text would quote the whole output

    def test_long_output_is_quoted_only_in_part(self):
        with pytest.raises(VmmScriptOutputError) as failure:
            CONTRACT.parse_output(["x" * 5000], WHERE)
        assert "'" + "x" * 200 + "...'" in str(failure.value)
        assert "x" * 201 not in str(failure.value)

    @pytest.mark.parametrize("outputs", [
        [json.dumps({"cloud": VAULT_CREDENTIALS, "vms": []})],
        [f"Using {VAULT_CREDENTIALS}"],
    ], ids=["valid-document", "not-json"])
    def test_output_echoing_a_secret_is_refused_without_quoting_it(self, outputs):
        with pytest.raises(VmmScriptOutputError, match="wrote the value of a secret parameter") as failure:
            CONTRACT.parse_output(outputs, WHERE, secrets=(VAULT_CREDENTIALS,))
        assert SECRET not in str(failure.value)

    def test_quoted_output_has_secrets_redacted(self):
        with pytest.raises(VmmScriptOutputError) as failure:
            CONTRACT.parse_output([f"key {SECRET}", "second"], WHERE, secrets=(SECRET,))
        assert "'key ***'" in str(failure.value)
        assert SECRET not in str(failure.value)


class TestBindParameters:
    def test_secrets_are_masked_sent_as_securestring_and_never_described(self):
        with mock.patch("site_recovery.hooks.vmm.mask_secret") as mask_secret:
            bound = bind_parameters(CONTRACT, {"Cloud": "Gold", "VaultCredentials": VAULT_CREDENTIALS, "Vm": None})

        mask_secret.assert_called_once_with(VAULT_CREDENTIALS)
        assert bound.values["Cloud"] == "Gold" and "Vm" not in bound.values
        secure = bound.values["VaultCredentials"]
        assert (secure.tag, secure.value) == ("SS", VAULT_CREDENTIALS)
        assert bound.secrets == (VAULT_CREDENTIALS,)

    def test_secret_names_match_case_insensitively(self):
        with mock.patch("site_recovery.hooks.vmm.mask_secret") as mask_secret:
            bound = bind_parameters(CONTRACT, {"vaultcredentials": VAULT_CREDENTIALS})
        mask_secret.assert_called_once_with(VAULT_CREDENTIALS)
        assert bound.secrets == (VAULT_CREDENTIALS,)

    def test_masked_secret_is_redacted_by_airflows_masker(self):
        from airflow.sdk.log import redact  # the task log's redaction

        bind_parameters(CONTRACT, {"VaultCredentials": VAULT_CREDENTIALS})
        assert SECRET not in str(redact(f"read {VAULT_CREDENTIALS}"))

    def test_secret_that_is_not_a_string_is_rejected_without_showing_it(self):
        with pytest.raises(TypeError, match="VaultCredentials of Get-TestInventory must be a string") as failure:
            bind_parameters(CONTRACT, {"VaultCredentials": {"key": SECRET}})
        assert SECRET not in str(failure.value)

    def test_log_description_hides_secrets_and_shortens_values(self):
        parameters = {"Vms": ["web01", "web02"], "Note": "n" * 100, "Force": True, "Vm": None,
                      "vaultCredentials": VAULT_CREDENTIALS}
        assert CONTRACT.describe_parameters(parameters) == (
            f'Vms=["web01", "web02"], Note={"n" * 80}..., Force=true, vaultCredentials=***')
        assert CONTRACT.describe_parameters({}) == "(none)"


def error_record(message: str, stack_trace: str | None = None, position_message: str | None = None) -> ErrorRecord:
    """An ErrorRecord as pypsrp deserialises it (it sets the extended properties one by one)."""
    record = ErrorRecord(fq_error="VaultCredentialsExpired",
                         message="InvalidOperation: (:) [Write-Error], WriteErrorException")
    record._to_string = message
    record.script_stacktrace = stack_trace
    record.invocation_position_message = position_message
    return record


class TestScriptErrors:
    @pytest.mark.parametrize(("stack_trace", "position_message", "expected"), [
        ("at Install-AsrProvider, <No file>: line 42\nat <ScriptBlock>, <No file>: line 80", None, "line 42"),
        (None, "At line:17 char:5\n+     throw 'x'\n+     ~~~~~~~~~", "line 17"),
        ("at <ScriptBlock>", None, "at <ScriptBlock>"),
        (None, None, None),
    ], ids=["stack-trace", "position-message", "no-line-number", "no-position"])
    def test_position(self, stack_trace, position_message, expected):
        error = ScriptErrorRecord.from_pypsrp(error_record("The vault credentials have expired.", stack_trace,
                                                           position_message))
        assert error.position == expected
        assert error.error_id == "VaultCredentialsExpired"
        assert error.category == "InvalidOperation: (:) [Write-Error], WriteErrorException"

    def test_message_names_script_server_error_and_line(self):
        errors = [ScriptErrorRecord.from_pypsrp(error_record("The vault credentials have expired.",
                                                             "at <ScriptBlock>, <No file>: line 42"))]
        assert script_error_message("Install-AsrProvider", "vmm-ams-01.corp", errors) == (
            "Install-AsrProvider on vmm-ams-01.corp: The vault credentials have expired. (at line 42)")

    def test_message_counts_further_errors_and_hides_secrets(self):
        errors = [ScriptErrorRecord(f"Cannot read {VAULT_CREDENTIALS}", None, None, None),
                  ScriptErrorRecord("second", None, None, None)]
        text = script_error_message("Install-AsrProvider", "vmm01", errors, secrets=(VAULT_CREDENTIALS,))
        assert text == "Install-AsrProvider on vmm01: Cannot read *** (and 1 more error record(s) in the task log)"

    def test_record_pypsrp_cannot_render(self):
        class Unrenderable(ErrorRecord):
            def __str__(self):
                raise ValueError("bad CLIXML")

        assert ScriptErrorRecord.from_pypsrp(Unrenderable()).message == "Unknown error"


class TestScriptContract:
    def test_include_dir_defaults_to_the_folder_beside_plugins(self, monkeypatch):
        monkeypatch.delenv(INCLUDE_DIR_ENV, raising=False)
        assert include_dir() == REPO / "include"
        assert CONTRACT.path == REPO / "include" / "powershell" / "Get-TestInventory.ps1"

    def test_script_is_read_from_the_configured_folder_at_call_time(self, tmp_path, monkeypatch):
        contract = ScriptContract("Get-TestInventory", Inventory, file_name="inventory.ps1")
        monkeypatch.setenv(INCLUDE_DIR_ENV, str(tmp_path))
        (tmp_path / "powershell").mkdir()
        (tmp_path / "powershell" / "inventory.ps1").write_text("# asr-lab-twin: Get-TestInventory\n")
        assert contract.read_script() == "# asr-lab-twin: Get-TestInventory\n"

    def test_missing_script_fails_clearly(self, tmp_path, monkeypatch):
        monkeypatch.setenv(INCLUDE_DIR_ENV, str(tmp_path))
        with pytest.raises(VmmScriptNotFound) as failure:
            CONTRACT.read_script()
        assert str(tmp_path / "powershell" / "Get-TestInventory.ps1") in str(failure.value)
        assert INCLUDE_DIR_ENV in str(failure.value)
        assert isinstance(failure.value, AirflowFailException)

    def test_fields_are_checked(self):
        assert ScriptContract("A", Inventory, secret_parameters="Key").secret_parameters == frozenset({"Key"})
        with pytest.raises(TypeError, match="must be a pydantic BaseModel subclass"):
            ScriptContract("A", dict)


class TestVmmScriptHook:
    def test_read_timeout_must_exceed_operation_timeout(self):
        with pytest.raises(ValueError, match="read_timeout"):
            VmmScriptHook("vmm", operation_timeout=30, read_timeout=30)

    def test_connection_port_reaches_pypsrp(self, monkeypatch):
        monkeypatch.setenv("AIRFLOW_CONN_VMM_UNIT", json.dumps(
            {"conn_type": "psrp", "host": "vmm01", "port": 15986, "login": "u", "password": "p"}))
        with mock.patch("site_recovery.hooks.vmm.PsrpHook") as psrp_hook:
            VmmScriptHook("vmm_unit", operation_timeout=10, read_timeout=15,
                          wsman_options={"encryption": "always"}).get_conn()
        psrp_hook.assert_called_once_with(
            "vmm_unit", logging_level=20, runspace_options={},
            wsman_options={"port": 15986, "encryption": "always", "operation_timeout": 10, "read_timeout": 15})

    def test_missing_script_fails_before_connecting(self, tmp_path, monkeypatch):
        monkeypatch.setenv(INCLUDE_DIR_ENV, str(tmp_path))
        with mock.patch("site_recovery.hooks.vmm.PsrpHook") as psrp_hook, pytest.raises(VmmScriptNotFound):
            VmmScriptHook("vmm_unit").run_script(CONTRACT)
        psrp_hook.assert_not_called()

    def test_scripts_are_found_by_name_in_the_registry(self, tmp_path, monkeypatch):
        registry = SimpleNamespace(SCRIPTS={CONTRACT.name: CONTRACT})
        monkeypatch.setitem(sys.modules, "site_recovery.scripts", registry)
        monkeypatch.setenv(INCLUDE_DIR_ENV, str(tmp_path))
        with pytest.raises(VmmScriptNotFound, match="Get-TestInventory.ps1"):  # found, then its file is read
            VmmScriptHook("vmm_unit").run_script("Get-TestInventory")
        with pytest.raises(VmmScriptNotFound, match="No script contract named 'Get-Nothing'; known scripts: Get-"):
            VmmScriptHook("vmm_unit").run_script("Get-Nothing")

    @pytest.mark.parametrize(("error", "final"), [
        (VmmTransportError, False),
        (VmmConnectionError, True),
        (VmmAuthenticationError, True),
        (VmmScriptNotFound, True),
        (VmmScriptError, True),
        (VmmScriptInterrupted, True),
        (VmmScriptOutputError, True),
    ])
    def test_only_transport_errors_are_retried(self, error, final):
        assert isinstance(error("x"), AirflowFailException) is final
