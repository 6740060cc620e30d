"""Script twins: the marker, the registry, and PowerShell's pipeline semantics around them."""

from __future__ import annotations

import asyncio
import json

import pytest

from asr_lab.winrm.scripts import (
    COMMAND_NOT_FOUND_EXCEPTION,
    CommandCall,
    ScriptTwins,
    SecureStringValue,
    TwinError,
    TwinResult,
    first_command_word,
    run_pipeline,
    twin_name_in_script,
)

INVENTORY_SCRIPT = """\
<#
.SYNOPSIS
    Lists the VMs of a VMM cloud.
#>
# asr-lab-twin: Get-VmmInventory
param([string]$Cloud)
Get-SCVirtualMachine | ConvertTo-Json
"""
NOT_RECOGNIZED = ("The term '{}' is not recognized as the name of a cmdlet, function, script file, or operable "
                  "program. Check the spelling of the name, or if a path was included, verify that the path is "
                  "correct and try again.")


def run(statements, twins, context=None) -> TwinResult:
    return asyncio.run(run_pipeline(statements, twins, context))


def script(text: str, **parameters) -> CommandCall:
    return CommandCall(text, True, parameters)


def cmdlet(name: str, *arguments, **parameters) -> CommandCall:
    return CommandCall(name, False, parameters, list(arguments))


@pytest.fixture
def twins() -> ScriptTwins:
    registry = ScriptTwins()

    @registry.register("Get-VmmInventory")
    def inventory(parameters, context):
        return TwinResult(output=[json.dumps({"cloud": parameters.get("Cloud"), "context": context})],
                          verbose=["Found 2 VMs"])

    return registry


class TestMarker:
    def test_marker_names_the_twin(self):
        assert twin_name_in_script(INVENTORY_SCRIPT) == "Get-VmmInventory"

    @pytest.mark.parametrize("line", ["#asr-lab-twin:Get-X", "   # ASR-LAB-TWIN: Get-X  ", "\t#\tasr-lab-twin:\tGet-X"])
    def test_marker_spacing_and_case(self, line):
        assert twin_name_in_script(f"param()\n{line}\nWrite-Output 1") == "Get-X"

    @pytest.mark.parametrize("text", ["Write-Output 1 # asr-lab-twin: Get-X", "# asr-lab-twin:", "# lab-twin: Get-X"])
    def test_no_marker(self, text):
        assert twin_name_in_script(text) is None

    def test_first_command_word_skips_comments(self):
        assert first_command_word("<# help\n Get-Bogus #>\n# note\n\n  & 'Get-Thing' -Name x") == "Get-Thing"
        assert first_command_word("# only a comment") == ""


class TestRegistry:
    def test_lookup_is_case_insensitive_like_powershell(self, twins):
        assert twins.get("get-vmminventory") is twins.get("Get-VmmInventory") is not None
        assert "GET-VMMINVENTORY" in twins and "Get-Other" not in twins
        assert list(twins) == ["Get-VmmInventory"] and len(twins) == 1

    def test_register_directly(self):
        registry = ScriptTwins({"A": lambda p, c: TwinResult()})
        registry.register("B", lambda p, c: TwinResult())
        assert list(registry) == ["A", "B"]


class TestRunPipeline:
    def test_script_with_marker_runs_its_twin_with_bound_parameters(self, twins):
        result = run([[script(INVENTORY_SCRIPT, Cloud="Gold")]], twins, context="ctx")
        assert json.loads(result.output[0]) == {"cloud": "Gold", "context": "ctx"}
        assert result.verbose == ["Found 2 VMs"] and result.terminating_error is None

    def test_positional_arguments_and_switches(self):
        seen = {}
        registry = ScriptTwins({"Get-X": lambda p, c: seen.update(p) or TwinResult()})
        run([[cmdlet("get-x", "one", 2, Force=True)]], registry)
        assert seen == {"Force": True, "$args": ["one", 2]}

    def test_async_twin_is_awaited(self):
        async def slow(parameters, context):
            await asyncio.sleep(0)
            return TwinResult(output=["done"])
        assert run([[cmdlet("Slow")]], ScriptTwins({"Slow": slow})).output == ["done"]

    def test_unknown_cmdlet_fails_the_pipeline_like_powershell(self, twins):
        result = run([[cmdlet("Get-Nope")], [cmdlet("Get-VmmInventory")]], twins)
        error = result.terminating_error
        assert error.message == NOT_RECOGNIZED.format("Get-Nope")
        assert (error.category, error.fully_qualified_error_id, error.exception_type, error.target_object) == (
            "ObjectNotFound", "CommandNotFoundException", COMMAND_NOT_FOUND_EXCEPTION, "Get-Nope")
        assert result.output == []  # the second statement never ran

    def test_unknown_command_inside_a_script_is_a_non_terminating_error(self, twins):
        result = run([[script("Get-Nope -Cloud Gold\n")]], twins)
        assert result.terminating_error is None
        assert [e.message for e in result.errors] == [NOT_RECOGNIZED.format("Get-Nope")]

    def test_script_without_marker_that_starts_with_an_expression(self, twins):
        result = run([[script("$vms = Get-SCVirtualMachine\n$vms")]], twins)
        assert result.terminating_error.fully_qualified_error_id == "AsrLabNoTwin"

    def test_twin_that_raises_becomes_a_thrown_error(self):
        def broken(parameters, context):
            raise KeyError("vm-404")
        result = run([[cmdlet("Get-X")]], ScriptTwins({"Get-X": broken}))
        error = result.terminating_error
        assert error.message == "'vm-404'" and error.fully_qualified_error_id == "'vm-404'"
        assert error.category == "OperationStopped" and error.reason == "RuntimeException"

    def test_twin_returning_the_wrong_type(self):
        result = run([[cmdlet("Get-X")]], ScriptTwins({"Get-X": lambda p, c: "oops"}))
        assert "returned str, not a TwinResult" in result.terminating_error.message

    def test_twin_terminating_error_stops_later_statements(self, twins):
        twins.register("Stop-Here", lambda p, c: TwinResult(terminating_error=TwinError.thrown("halt")))
        result = run([[cmdlet("Stop-Here")], [cmdlet("Get-VmmInventory")]], twins)
        assert result.terminating_error.message == "halt" and result.output == []

    def test_convertto_json_appended_by_psrpoperator(self, twins):
        result = run([[script(INVENTORY_SCRIPT, Cloud="Gold"), cmdlet("ConvertTo-Json")]], twins)
        assert json.loads(json.loads(result.output[0])) == {"cloud": "Gold", "context": None}

    def test_piping_into_a_twin_replaces_the_output(self, twins):
        twins.register("Measure-It", lambda p, c: TwinResult(output=[len(p["InputObject"])]))
        result = run([[script(INVENTORY_SCRIPT), cmdlet("Measure-It"), cmdlet("Out-String")]], twins)
        assert result.output == ["1\n"]

    def test_piping_into_an_unknown_command(self, twins):
        result = run([[script(INVENTORY_SCRIPT), cmdlet("Select-Nothing")]], twins)
        assert result.terminating_error.message == NOT_RECOGNIZED.format("Select-Nothing")


def test_describe_masks_secure_strings():
    call = cmdlet("Set-Secret", SecureStringValue("hunter2"), Password=SecureStringValue("hunter2"), Name="svc")
    assert call.describe() == {"name": "Set-Secret", "parameters": {"Password": "********", "Name": "svc"},
                               "arguments": ["********"]}
    assert "hunter2" not in repr(call.parameters["Password"])
