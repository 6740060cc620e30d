"""The emulated WinRM endpoint as Airflow's PsrpHook (and PsrpOperator) sees it.

The hook is used exactly as the product uses it: a ``psrp`` connection from an
``AIRFLOW_CONN_*`` variable (Basic over HTTPS, TLS verified against the lab CA), the port
through ``wsman_options``, and its default session key exchange. What it logs is captured
with structlog, because Airflow 3 loggers are structlog loggers.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import requests
import structlog
from airflow.providers.common.compat.sdk import AirflowException
from airflow.providers.microsoft.psrp.hooks.psrp import PsrpHook
from airflow.providers.microsoft.psrp.operators.psrp import PsrpOperator
from pypsrp.exceptions import AuthenticationError

from asr_lab.pki import ensure_pki
from asr_lab.winrm import ScriptTwins, TwinError, TwinResult, WinRMControls, build_winrm_app
from asr_lab.winrm.testing import running_winrm_server

USER, PASSWORD = "LAB\\svc-asr", "Pa55w0rd!"
CONN_ID = "vmm_primary"
INVENTORY_SCRIPT = """\
<# Lists the protected VMs of one VMM cloud. #>
# asr-lab-twin: Get-VmmInventory
param([Parameter(Mandatory)][string]$Cloud)
$ErrorActionPreference = 'Stop'
Get-SCVirtualMachine -Cloud (Get-SCCloud -Name $Cloud) | ConvertTo-Json -Depth 5
"""


def make_twins() -> ScriptTwins:
    twins = ScriptTwins()

    @twins.register("Get-VmmInventory")
    def inventory(parameters, context):
        return TwinResult(output=[json.dumps({"cloud": parameters["Cloud"], "vms": ["web01", "web02"]})],
                          verbose=[f"Reading cloud {parameters['Cloud']}"], warning=["VM web02 has no replica"],
                          information=["Inventory of 2 VMs taken"])

    twins.register("Test-Protection", lambda p, c: TwinResult(errors=[TwinError(
        "VM 'web01' is not protected", "ObjectNotFound", "VmNotProtected", target_object="web01",
        position="at <ScriptBlock>, C:\\asr\\Test-Protection.ps1: line 12")]))

    def broken(parameters, context):
        raise RuntimeError("cloud Gold has no host group")

    twins.register("Get-Broken", broken)

    def stop_answering(parameters, context):
        context.controls.stop_answering()
        return TwinResult(output=["going quiet"])

    twins.register("Stop-Answering", stop_answering)
    return twins


@pytest.fixture(scope="module")
def vmm(tmp_path_factory):
    ca, cert, key = ensure_pki(tmp_path_factory.mktemp("winrm-hook-pki"))
    controls = WinRMControls()
    app = build_winrm_app("vmm01", {USER: PASSWORD}, make_twins(), SimpleNamespace(controls=controls),
                          controls=controls)
    with running_winrm_server(app, certfile=cert, keyfile=key) as server:
        yield SimpleNamespace(server=server, ca=str(ca), controls=controls)
        controls.resume_answering()


@pytest.fixture
def connection(vmm, monkeypatch):
    """Set the ``psrp`` connection; returns a function to change its password or extras."""
    def configure(password: str = PASSWORD, **extra) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
            "conn_type": "psrp", "host": vmm.server.host, "login": USER, "password": password,
            "extra": {"auth": "basic", "cert_validation": vmm.ca, "ssl": True, **extra},
        }))
        return CONN_ID

    configure()
    return configure


def hook(vmm, **kwargs) -> PsrpHook:
    return PsrpHook(CONN_ID, wsman_options={"port": vmm.server.port, **kwargs.pop("wsman_options", {})}, **kwargs)


def events(logs: list[dict]) -> list[tuple[str, str]]:
    return [(entry["log_level"], entry["event"]) for entry in logs]


def test_script_output_and_streams_reach_the_hook(vmm, connection):
    outputs: list[str] = []
    with structlog.testing.capture_logs() as logs, hook(vmm, on_output_callback=outputs.append) as psrp:
        with psrp.invoke() as ps:
            ps.add_script(INVENTORY_SCRIPT).add_parameters({"Cloud": "Gold"})

    assert [json.loads(text) for text in outputs] == [{"cloud": "Gold", "vms": ["web01", "web02"]}]
    assert ("info", "Reading cloud Gold") in events(logs)
    assert ("warning", "VM web02 has no replica") in events(logs)
    assert ("info", f"vmm01 ({USER}): Inventory of 2 VMs taken") in events(logs)
    assert ("info", "Invocation state: Completed") in events(logs)


def test_error_record_fails_the_hook_with_windows_log_lines(vmm, connection):
    with structlog.testing.capture_logs() as logs, pytest.raises(AirflowException,
                                                                 match="Process had one or more errors"):
        with hook(vmm) as psrp:
            psrp.invoke_cmdlet("Test-Protection")

    assert ("info", "WriteErrorException: VM 'web01' is not protected") in events(logs)
    assert ("info", "at <ScriptBlock>, C:\\asr\\Test-Protection.ps1: line 12") in events(logs)
    assert ("error", "ObjectNotFound: (web01:String) [Write-Error], WriteErrorException") in events(logs)


@pytest.mark.parametrize(("invoke", "expected"), [
    (lambda psrp: psrp.invoke_cmdlet("Get-VmmInventry", parameters={"Cloud": "Gold"}),
     "CommandNotFoundException: The term 'Get-VmmInventry' is not recognized as the name of a cmdlet, function, "
     "script file, or operable program. Check the spelling of the name, or if a path was included, verify that "
     "the path is correct and try again."),
    (lambda psrp: psrp.invoke_powershell("# asr-lab-twin: Get-Broken\n"),
     "RuntimeException: cloud Gold has no host group"),
], ids=["unknown-command", "twin-raises"])
def test_failing_pipelines_raise_with_the_reason_logged(vmm, connection, invoke, expected):
    with structlog.testing.capture_logs() as logs, pytest.raises(AirflowException):
        with hook(vmm) as psrp:
            invoke(psrp)
    assert ("info", expected) in events(logs)
    assert ("info", "Invocation state: Failed") in events(logs)


def test_wrong_password(vmm, connection):
    connection(password="not-the-password")
    with pytest.raises(AuthenticationError, match="Failed to authenticate the user"):
        with hook(vmm):
            pass


def test_server_that_stops_answering_times_out_the_hook(vmm, connection):
    connection(read_timeout=0.5, reconnection_backoff=0)
    try:
        with pytest.raises(requests.exceptions.ReadTimeout):
            with hook(vmm) as psrp:
                psrp.invoke_cmdlet("Stop-Answering")
    finally:
        vmm.controls.resume_answering()


def test_psrp_operator_pushes_the_scripts_json(vmm, connection):
    operator = PsrpOperator(task_id="inventory", psrp_conn_id=CONN_ID, powershell=INVENTORY_SCRIPT,
                            parameters={"Cloud": "Gold"}, wsman_options={"port": vmm.server.port})
    # As on Windows, ConvertTo-Json of the script's JSON string is a JSON-quoted string.
    (pushed,) = operator.execute(context={})
    assert json.loads(pushed) == {"cloud": "Gold", "vms": ["web01", "web02"]}
