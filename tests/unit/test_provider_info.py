"""The distribution's provider metadata: the ``azure_site_recovery`` connection type and its form."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.resources
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema

from site_recovery import provider_info
from site_recovery.provider_info import CONNECTION_TYPE, get_provider_info

REPO = Path(__file__).resolve().parents[2]
HOOK_SOURCE = REPO / "plugins" / "site_recovery" / "hooks" / "asr.py"
DISTRIBUTION = "asr-site-recovery"


def connection_type() -> dict:
    (found,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == CONNECTION_TYPE]
    return found


def extras_read_by_the_hook() -> set[str]:
    """The extra names ``arm_settings`` reads: ``extras.get("name", ...)`` and ``"name" in extras``."""
    tree = ast.parse(HOOK_SOURCE.read_text())
    (function,) = [node for node in ast.walk(tree)
                   if isinstance(node, ast.FunctionDef) and node.name == "arm_settings"]
    names = set()
    for node in ast.walk(function):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "extras"
                and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(node.args[0].value)
        if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
                and any(isinstance(op, ast.In) for op in node.ops)
                and any(isinstance(c, ast.Name) and c.id == "extras" for c in node.comparators)):
            names.add(node.left.value)
    return names


def test_provider_info_follows_airflows_schema_and_names_this_distribution():
    info = get_provider_info()
    schema = json.loads((importlib.resources.files("airflow") / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    assert info["package-name"] == DISTRIBUTION
    assert info["versions"] == [provider_info.__version__] == [importlib.metadata.version(DISTRIBUTION)]


def test_the_connection_form_documents_every_extra_the_hook_reads():
    conn = connection_type()
    assert conn["hook-class-name"] == "site_recovery.hooks.asr.AzureSiteRecoveryHook"
    read = extras_read_by_the_hook()
    assert "subscriptionId" in read and "ca_bundle" in read  # the AST walk still finds them
    assert set(conn["conn-fields"]) == read
    for name, field in conn["conn-fields"].items():
        assert field["label"] and field["description"], name
        assert field["schema"]["type"] == ["string", "null"], name  # as the azure provider declares them
    behaviour = conn["ui-field-behaviour"]
    assert behaviour["hidden-fields"] == ["schema", "port", "host"]
    assert behaviour["relabeling"] == {"login": "Client ID", "password": "Client secret"}
    assert set(behaviour["placeholders"]) == read | {"login", "password"}


def test_provider_info_imports_nothing_heavy(tmp_path):
    code = ("import sys; before = set(sys.modules); import site_recovery.provider_info; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert {"site_recovery", "site_recovery.provider_info"} <= loaded
    assert not {name.split(".")[0] for name in loaded} & {"airflow", "azure", "pydantic", "cryptography"}


# What the API server's connection form reads (metadata only, no hook imported), then the
# providers manager's public properties (these import every provider's hooks).
CONNECTION_FORM = """
import json, sys
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
from airflow.providers_manager import ProvidersManager

pm = ProvidersManager()
provider = pm.providers["asr-site-recovery"]
(meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "azure_site_recovery"]
azure_loaded_by_form = sorted(m for m in sys.modules if m == "azure" or m.startswith("azure."))
widgets = {key: info.field for key, info in pm.connection_form_widgets.items()
           if key.startswith("extra__azure_site_recovery__")}
print(json.dumps({
    "version": provider.version,
    "meta": meta.model_dump(mode="json"),
    "azure_loaded_by_form": azure_loaded_by_form,
    "field_behaviours": pm.field_behaviours.get("azure_site_recovery"),
    "widgets": widgets,
}))
"""


def test_airflow_builds_the_connection_form_from_the_metadata(tmp_path):
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    })
    result = subprocess.run([sys.executable, "-c", CONNECTION_FORM], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    fields = connection_type()["conn-fields"]

    assert found["version"] == provider_info.__version__
    meta = found["meta"]
    assert meta["hook_class_name"] == "site_recovery.hooks.asr.AzureSiteRecoveryHook"
    assert meta["hook_name"] == "Azure Site Recovery"
    standard = meta["standard_fields"]
    assert all(standard[name]["hidden"] for name in ("host", "port", "url_schema"))
    assert standard["login"]["title"] == "Client ID" and standard["password"]["title"] == "Client secret"
    assert list(meta["extra_fields"]) == list(fields)  # the form's order
    for name, field in meta["extra_fields"].items():
        assert field["schema"]["title"] == fields[name]["label"]
        assert field["description"] == fields[name]["description"]
    assert meta["extra_fields"]["cloud_environment"]["schema"]["examples"] == [
        "AzurePublicCloud", "AzureUSGovernment", "AzureChinaCloud"]
    assert found["azure_loaded_by_form"] == []  # the API server's form does not import the hook

    behaviours = found["field_behaviours"]
    assert behaviours["hidden_fields"] == ["schema", "port", "host"]
    assert behaviours["relabeling"] == {"login": "Client ID", "password": "Client secret"}
    assert behaviours["placeholders"]["extra__azure_site_recovery__cloud_environment"].startswith(
        "AzurePublicCloud")
    assert set(found["widgets"]) == {f"extra__azure_site_recovery__{name}" for name in fields}
