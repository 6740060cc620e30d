"""One shell's PSRP state machine, driven in memory by psrpcore's own client.

The client and the shell exchange PSRP bytes directly (what WSMan would carry base64 in
Create, Command, Send and Receive), so the protocol is tested without HTTP.
"""

from __future__ import annotations

import json

import pytest
from psrpcore import (
    ClientPowerShell,
    ClientRunspacePool,
    ErrorRecordEvent,
    InformationRecordEvent,
    PipelineOutputEvent,
    PipelineStateEvent,
    PSRPPayload,
    RunspacePoolStateEvent,
    StreamType,
    VerboseRecordEvent,
    WarningRecordEvent,
)
from psrpcore import PSRemotingCrypto
from psrpcore.types import PSInvocationState, PSSecureString, RunspacePoolState, serialize

from asr_lab.winrm import records
from asr_lab.winrm.scripts import SecureStringValue, TwinError, TwinResult
from asr_lab.winrm.shell import PowerShellShell, ProtocolError, UnknownCommand

BIG = 1 << 20


def to_shell(client: ClientRunspacePool) -> bytes:
    payload = client.data_to_send()
    return payload.data if payload else b""


def pump(shell: PowerShellShell, client: ClientRunspacePool, command_id: str | None = None,
         max_bytes: int = BIG) -> list:
    """Receive what the shell has for the pool or a pipeline; feed it to the client; its events."""
    events = []
    while (output := shell.receive(command_id, max_bytes)) is not None and output.payloads:
        for data in output.payloads:
            client.receive_data(PSRPPayload(data, StreamType.default, None))
            while (event := client.next_event()) is not None:
                events.append(event)
    return events


@pytest.fixture
def pair() -> tuple[ClientRunspacePool, PowerShellShell]:
    client = ClientRunspacePool()
    client.open()
    shell = PowerShellShell(str(client.runspace_pool_id).upper(), "http://schemas.microsoft.com/powershell/"
                            "Microsoft.PowerShell", "lab\\admin", to_shell(client), "vmm01",
                            {"PSVersionTable": {"PSEdition": "Desktop"}})
    pump(shell, client)
    return client, shell


def start(client: ClientRunspacePool, shell: PowerShellShell, build) -> tuple[str, list]:
    ps = ClientPowerShell(client)
    build(ps)
    ps.start()
    command_id = str(ps.pipeline_id).upper()
    return command_id, shell.command(command_id, to_shell(client))


def test_pool_opens_with_the_handshake(pair):
    client, shell = pair
    assert client.state == RunspacePoolState.Opened and shell.pool.state == RunspacePoolState.Opened
    assert client.application_private_data["PSVersionTable"]["PSEdition"] == "Desktop"


def test_session_key_exchange_lets_secure_strings_through(pair):
    client, shell = pair
    client.exchange_key()
    shell.feed(None, to_shell(client))
    events = pump(shell, client)
    assert [type(e).__name__ for e in events] == ["EncryptedSessionKeyEvent"]

    _, ready = start(client, shell, lambda ps: ps.add_command("Set-Secret").add_parameter(
        "Password", PSSecureString("hunter2")))
    password = ready[0].statements[0][0].parameters["Password"]
    assert isinstance(password, SecureStringValue) and password == "hunter2"


def test_pipeline_request_carries_commands_and_parameters(pair):
    client, shell = pair
    command_id, ready = start(client, shell, lambda ps: (
        ps.add_script("# asr-lab-twin: Get-VmmInventory\n").add_parameters(Cloud="Gold", Force=None)
        .add_command("ConvertTo-Json").add_statement().add_command("Get-Date").add_argument(3)))
    assert len(ready) == 1 and ready[0].command_id == command_id
    (script, to_json), (get_date,) = ready[0].statements
    assert script.is_script and script.name == "Get-VmmInventory"
    assert script.parameters == {"Cloud": "Gold", "Force": True}
    assert (to_json.name, get_date.name, get_date.arguments) == ("ConvertTo-Json", "Get-Date", [3])


def test_result_reaches_the_client_in_every_stream(pair):
    client, shell = pair
    command_id, _ = start(client, shell, lambda ps: ps.add_command("Get-VmmInventory"))
    assert [e.state for e in pump(shell, client, command_id)] == [PSInvocationState.Running]
    assert shell.receive(command_id, BIG) is None  # running, nothing more to say yet

    shell.finish(command_id, TwinResult(output=[json.dumps({"vms": 2})], verbose=["found 2"], warning=["slow"],
                                        information=["hello"], errors=[TwinError("vm1 is off")]), "lab\\admin")
    events = pump(shell, client, command_id)

    by_type = {type(e): e for e in events}
    assert by_type[PipelineOutputEvent].data == '{"vms": 2}'
    assert by_type[VerboseRecordEvent].record.Message == "found 2"
    assert by_type[WarningRecordEvent].record.Message == "slow"
    info = by_type[InformationRecordEvent].record
    assert (info.MessageData, info.Computer, info.User) == ("hello", "vmm01", "lab\\admin")
    error = by_type[ErrorRecordEvent].record
    assert str(error.Exception.Message) == "vm1 is off" and error.FullyQualifiedErrorId == "WriteErrorException"
    assert events[-1].state == PSInvocationState.Completed
    assert shell.receive(command_id, BIG).done


def test_output_values_twins_may_return(pair):
    client, shell = pair
    command_id, _ = start(client, shell, lambda ps: ps.add_command("Get-Values"))

    class Vm:
        def __str__(self) -> str:
            return "web01"

    shell.finish(command_id, TwinResult(output=[7, True, None, {"vm": "web01", "disks": [1, 2]}, Vm()]), "u")
    outputs = [e.data for e in pump(shell, client, command_id) if isinstance(e, PipelineOutputEvent)]
    assert outputs[:3] == [7, True, None] and outputs[4] == "web01"
    assert dict(outputs[3]) == {"vm": "web01", "disks": [1, 2]}


def test_terminating_error_fails_the_pipeline_like_powershell(pair):
    client, shell = pair
    command_id, _ = start(client, shell, lambda ps: ps.add_command("Get-Nope"))
    shell.finish(command_id, TwinResult(terminating_error=TwinError.command_not_found("Get-Nope")), "u")
    state = [e for e in pump(shell, client, command_id) if isinstance(e, PipelineStateEvent)][-1]
    assert state.state == PSInvocationState.Failed
    record = state.reason
    assert record.FullyQualifiedErrorId == "CommandNotFoundException"
    exception_type = record.Exception.PSObject.type_names[0]
    assert exception_type == "Deserialized.System.Management.Automation.CommandNotFoundException"
    info = record.CategoryInfo
    assert (info.Category.name, info.Reason, info.TargetName, info.TargetType) == (
        "ObjectNotFound", "CommandNotFoundException", "Get-Nope", "String")


def test_error_records_carry_powershells_category_message():
    """PsrpHook logs ErrorCategory_Message as the error line: it must read as on Windows."""
    element = serialize(records.error_record(TwinError("vm1 is off")), PSRemotingCrypto())
    assert element.findtext("MS/S[@N='ErrorCategory_Message']") == (
        "NotSpecified: (:) [Write-Error], WriteErrorException")
    assert element.findtext("ToString") == "vm1 is off"


def test_stop_reports_stopped_and_ignores_a_late_result(pair):
    client, shell = pair
    command_id, _ = start(client, shell, lambda ps: ps.add_command("Get-Slow"))
    shell.stop(command_id)
    shell.finish(command_id, TwinResult(output=["too late"]), "u")
    events = pump(shell, client, command_id)
    states = [e.state for e in events if isinstance(e, PipelineStateEvent)]
    assert states == [PSInvocationState.Running, PSInvocationState.Stopped]
    assert not any(isinstance(e, PipelineOutputEvent) for e in events)


def test_terminate_forgets_the_command(pair):
    client, shell = pair
    command_id, _ = start(client, shell, lambda ps: ps.add_command("Get-Slow"))
    shell.terminate(command_id)
    with pytest.raises(UnknownCommand):
        shell.receive(command_id, BIG)
    assert shell.running_commands == []


def test_unknown_command_ids(pair):
    _, shell = pair
    for command_id in ("0F0F0F0F-0000-0000-0000-000000000000", "not-a-uuid"):
        with pytest.raises(UnknownCommand):
            shell.receive(command_id, BIG)
        with pytest.raises(UnknownCommand):
            shell.stop(command_id)


def test_large_output_is_split_across_receives(pair):
    client, shell = pair
    command_id, _ = start(client, shell, lambda ps: ps.add_command("Get-Big"))
    big = "x" * 200_000
    shell.finish(command_id, TwinResult(output=[big]), "u")
    first = shell.receive(command_id, 70_000)
    assert first is not None and not first.done and sum(map(len, first.payloads)) <= 70_000
    for data in first.payloads:
        client.receive_data(PSRPPayload(data, StreamType.default, None))
    events = pump(shell, client, command_id, 70_000)
    assert [e.data for e in events if isinstance(e, PipelineOutputEvent)] == [big]


@pytest.mark.parametrize("garbage", [b"\x00" * 40, b"\x00" * 21 + b"junk"], ids=["truncated", "out-of-order"])
def test_garbage_psrp_data_breaks_the_pool_like_powershell(pair, garbage):
    client, shell = pair
    with pytest.raises(ProtocolError):
        shell.feed(None, garbage)
    states = [e.state for e in pump(shell, client) if isinstance(e, RunspacePoolStateEvent)]
    assert states == [RunspacePoolState.Broken]
    with pytest.raises(ProtocolError, match="broken"):
        shell.feed(None, to_shell(client))
