"""Each PowerShell script keeps its contract (principle 4), checked without Windows.

For every script in include/powershell: it parses as PowerShell (tree-sitter's PowerShell
grammar, compiled into the tree-sitter-powershell wheel, so nothing is fetched at test time);
it carries the lab's marker line; it is an advanced script whose parameters are validated;
it stops on errors and ends each path with one ``ConvertTo-Json -Depth <n> -Compress``. Its
lab twin declares the same parameters with the same validation, and writes documents the
script's model accepts; the model refuses malformed ones.

The grammar (tree-sitter-powershell 0.26.4) rejects two valid PowerShell forms, which the
scripts therefore avoid: numeric multiplier suffixes (``1GB``: use ``[math]::Pow(2, 30)``) and
unquoted argument lists with hyphenated words (``-Name Hyper-V, NetSecurity``: quote them).
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from functools import cache

import pytest

from asr_lab.winrm.scripts import twin_name_in_script
from site_recovery.exceptions import VmmScriptOutputError
from site_recovery.script_contract import POWERSHELL_FOLDER, include_dir
from site_recovery.scripts import SCRIPTS
from tests.lab.test_twins import PRIMARY_VMM, PROVIDER_INSTALLER, RECOVERY_HOST, RECOVERY_VMM, TWINS, TwinLab

SCRIPT_NAMES = sorted(SCRIPTS)
#: Cmdlets that write to the output stream (or around it) and so would break the one-document rule.
OUTPUT_WRITERS = re.compile(r"(?<![\w-])(Write-Output|Write-Host|Out-Host|Out-Default|echo)(?![\w-])", re.I)
CONVERT = re.compile(r"ConvertTo-Json\b[^\n]*", re.I)
ONE_DOCUMENT = re.compile(r"ConvertTo-Json -Depth \d+ -Compress$")


@cache
def parser():
    try:
        import tree_sitter
        import tree_sitter_powershell
    except ImportError as exc:  # a missing dev dependency must fail here, not skip
        pytest.fail(f"The PowerShell parser is missing ({exc}); install requirements-dev.txt "
                    "(tree-sitter-powershell[core]).")
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def syntax_problems(source: bytes) -> list[str]:
    """ERROR and MISSING nodes of the parse tree, as 'line L: ... near <text>'."""
    problems = []

    def walk(node) -> None:
        if node.is_error or node.is_missing:
            kind = f"missing {node.type}" if node.is_missing else "syntax error"
            problems.append(f"line {node.start_point.row + 1}: {kind} near {node.text[:40]!r}")
        for child in node.children:
            walk(child)

    walk(parser().parse(source).root_node)
    return problems


@dataclass
class ScriptParameter:
    name: str
    type: str | None = None
    mandatory: bool = False
    in_parameter_set: bool = False
    aliases: tuple[str, ...] = ()
    validate_set: tuple[str, ...] | None = None
    validate_pattern: str | None = None
    validations: list[str] = field(default_factory=list)


@dataclass
class Script:
    name: str
    text: str
    tree: object

    @property
    def param_block(self):
        return next((c for c in self.tree.root_node.children if c.type == "param_block"), None)

    @property
    def code(self) -> str:
        """The text with every comment blanked out (lines kept), so help text is not taken for code."""
        source = bytearray(self.text.encode())
        for comment in _descendants(self.tree.root_node, "comment"):
            for i in range(comment.start_byte, comment.end_byte):
                if source[i] not in b"\r\n":
                    source[i] = ord(" ")
        return source.decode()

    def parameters(self) -> list[ScriptParameter]:
        found = []
        for node in _descendants(self.param_block, "script_parameter"):
            variable = next(c for c in node.named_children if c.type == "variable")
            param = ScriptParameter(variable.text.decode().lstrip("$"))
            for attribute in _descendants(node, "attribute"):
                text = attribute.text.decode()
                literal = re.fullmatch(r"\[([\w.]+(?:\[\])?)\]", text)
                quoted = tuple(re.findall(r"'([^']*)'", text))
                if literal:
                    param.type = literal.group(1)
                elif text.startswith("[Parameter("):
                    param.mandatory = bool(re.search(r"Mandatory(\s*=\s*\$true)?\s*[,)]", text, re.I))
                    param.in_parameter_set = "ParameterSetName" in text
                elif text.startswith("[Alias("):
                    param.aliases = quoted
                elif text.startswith("[Validate"):
                    param.validations.append(text)
                    if text.startswith("[ValidateSet("):
                        param.validate_set = quoted
                    elif text.startswith("[ValidatePattern("):
                        param.validate_pattern = quoted[0]
            found.append(param)
        return found


def _descendants(node, kind: str):
    for child in node.named_children:
        if child.type == kind:
            yield child
        else:
            yield from _descendants(child, kind)


@cache
def script(name: str) -> Script:
    text = SCRIPTS[name].read_script()
    return Script(name, text, parser().parse(text.encode()))


def test_every_script_has_a_contract_and_every_contract_a_script():
    on_disk = {path.stem for path in (include_dir() / POWERSHELL_FOLDER).glob("*.ps1")}
    assert on_disk == set(SCRIPTS)
    for name, contract in SCRIPTS.items():
        assert contract.name == name and contract.path.is_file()
        assert name in TWINS, f"the lab has no twin of {name}"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
class TestEachScript:
    def test_it_parses_as_powershell(self, name: str):
        assert syntax_problems(script(name).text.encode()) == []

    def test_it_names_its_twin_near_the_top(self, name: str):
        text = script(name).text
        assert twin_name_in_script(text) == name
        marker_line = next(i for i, line in enumerate(text.splitlines()) if "asr-lab-twin:" in line)
        help_end = next(i for i, line in enumerate(text.splitlines()) if line.strip() == "#>")
        assert marker_line == help_end + 1

    def test_it_is_an_advanced_script_with_validated_parameters(self, name: str):
        block = script(name).param_block
        assert block is not None, "no param() block"
        assert re.match(r"\[CmdletBinding\(", block.text.decode())
        parameters = script(name).parameters()
        assert parameters and any(p.validations for p in parameters)
        for param in parameters:
            assert param.type, f"parameter {param.name} has no type"
            assert param.validations or param.type in ("switch",), f"parameter {param.name} is not validated"

    def test_it_stops_on_errors_before_doing_anything(self, name: str):
        statements = next(c for c in script(name).tree.root_node.children if c.type == "statement_list")
        assert statements.named_children[0].text.decode() == "$ErrorActionPreference = 'Stop'"

    def test_every_path_ends_with_one_compressed_json_document(self, name: str):
        text = script(name).code
        conversions = CONVERT.findall(text)
        assert conversions and all(ONE_DOCUMENT.search(c.strip()) for c in conversions), conversions
        lines = text.rstrip().splitlines()
        for i, line in enumerate(lines):
            if CONVERT.search(line):
                rest = [candidate.strip() for candidate in lines[i + 1:] if candidate.strip()]
                assert not rest or rest[0] == "return", f"{name} goes on after writing its document (line {i + 1})"
        assert not OUTPUT_WRITERS.findall(text), "only the document may reach the output stream"

    def test_its_help_documents_every_parameter(self, name: str):
        text = script(name).text
        assert ".SYNOPSIS" in text and ".DESCRIPTION" in text
        for param in script(name).parameters():
            assert f".PARAMETER {param.name}\n" in text, f"no .PARAMETER {param.name}"

    def test_secret_parameters_are_secure_strings(self, name: str):
        types = {p.name.casefold(): p.type for p in script(name).parameters()}
        for secret in SCRIPTS[name].secret_parameters:
            assert types[secret.casefold()] in ("System.Security.SecureString", "SecureString")

    def test_its_twin_declares_the_same_parameters(self, name: str):
        declared = {p.name: p for p in importlib.import_module(TWINS.get(name).__module__).PARAMETERS}
        in_script = {p.name: p for p in script(name).parameters()}
        assert set(declared) == set(in_script)
        for param_name, twin_param in declared.items():
            ps = in_script[param_name]
            assert twin_param.mandatory == (ps.mandatory and not ps.in_parameter_set), param_name
            assert twin_param.choices == ps.validate_set, param_name
            assert twin_param.pattern == ps.validate_pattern, param_name
            assert set(twin_param.aliases) == set(ps.aliases), param_name
            assert twin_param.secret == SCRIPTS[name].is_secret(param_name), param_name
            assert twin_param.kind is {"string[]": list, "int": int, "switch": bool}.get(ps.type, str), param_name


@pytest.mark.parametrize("broken", [
    lambda text: text.replace("[CmdletBinding()]\nparam(", "[CmdletBinding()]\nparam(\n    [int]$Oops =", 1),
    lambda text: text[:text.rindex("}")],
    lambda text: text.replace("ConvertTo-Json -Depth", "ConvertTo-Json -Depth (", 1),
])
def test_the_parser_catches_a_broken_script(broken):
    assert syntax_problems(broken(script("Get-VmmInventory").text).encode())


# -- the twins' documents against the models ---------------------------------------------------

REALISTIC_RUNS = [
    ("Get-VmmInventory", PRIMARY_VMM, {}),
    ("Get-VmmInventory", RECOVERY_VMM, {"CloudName": ["Gold-DR"]}),
    ("Test-AsrPrerequisites", RECOVERY_VMM, {"ReplicationPort": 8083, "Authentication": "Kerberos"}),
    ("Test-AsrPrerequisites", PRIMARY_VMM, {"Authentication": "Certificate", "VaultName": "rsv-dr-weu-01"}),
    ("Initialize-HyperVReplicaHost", RECOVERY_HOST, {"StoragePath": "C:\\ClusterStorage\\Replica01"}),
    ("Install-RecoveryServicesAgent", RECOVERY_HOST, {"InstallerPath": "C:\\Install\\MARSAgentInstaller.exe"}),
    ("Get-TestVmStatus", RECOVERY_VMM, {"ProtectedItemName": "APP-ERP-01"}),
    ("Test-TestVmEndpoint", RECOVERY_VMM, {"VmName": "SQL-PRD-01 - Test", "Kind": "tcp", "Port": 1433}),
    ("Test-TestVmEndpoint", PRIMARY_VMM, {"VmName": "WEB-PORTAL-01", "Kind": "http", "Port": "80",
                                          "Path": "/health", "TimeoutSeconds": 5}),
]


def realistic_document(name: str) -> str:
    """The JSON a twin writes for ``name`` with realistic parameters."""
    lab = TwinLab()
    if name == "Install-AsrProvider":
        lab.create_vault()
        result = lab.run(name, PRIMARY_VMM, VaultCredentials=lab.vault_credentials(), InstallerPath=PROVIDER_INSTALLER)
    else:
        script_name, fqdn, parameters = next(run for run in REALISTIC_RUNS if run[0] == name)
        result = lab.run(script_name, fqdn, **parameters)
    assert result.terminating_error is None and len(result.output) == 1
    return result.output[0]


@pytest.mark.parametrize(("name", "fqdn", "parameters"), REALISTIC_RUNS)
def test_twin_documents_validate_against_the_model(name: str, fqdn: str, parameters: dict):
    result = TwinLab().run(name, fqdn, **parameters)
    document = SCRIPTS[name].parse_output(result.output, f"{name} on {fqdn}")
    assert isinstance(document, SCRIPTS[name].model) and document.summary()


def test_the_provider_twins_document_validates_against_the_model():
    document = SCRIPTS["Install-AsrProvider"].parse_output([realistic_document("Install-AsrProvider")], "install")
    assert document.registered and "registered" in document.summary()


def _malformed(document: dict) -> list[tuple[str, dict]]:
    first = next(iter(document))
    return [
        ("an unknown field", {**document, "unexpected": 1}),
        ("a missing field", {k: v for k, v in document.items() if k != first}),
        ("a field of the wrong type", {**document, first: {"not": "a scalar"}}),
    ]


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_the_model_refuses_malformed_documents(name: str):
    contract = SCRIPTS[name]
    valid = realistic_document(name)
    for what, document in _malformed(json.loads(valid)):
        with pytest.raises(VmmScriptOutputError, match=f"not a valid {contract.model.__name__} document"):
            contract.parse_output([json.dumps(document)], what)
    for outputs in ([], [valid, valid], [valid[:-1]], [json.loads(valid)]):
        with pytest.raises(VmmScriptOutputError):
            contract.parse_output(outputs, name)
