"""Loading plugins, as every Airflow component does at start-up, brings in only the plugin entry.

Each check runs in a fresh interpreter (this process has long imported the whole product): the
venv's python, an empty Airflow home, the repository's plugins folder, and nothing of the
repository on ``sys.path``, so ``site_recovery`` can only come from the installed distribution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "plugins" / "site_recovery"
DISTRIBUTION = "asr-site-recovery"

#: what may be imported of the product once plugins are loaded: the package, the plugin entry, and
#: the provider metadata (Airflow's configuration calls every ``get_provider_info`` on import)
#: and the typed records the plugin registers for XCom (with the vocabulary they are written in)
ALLOWED_PRODUCT_MODULES = {"site_recovery", "site_recovery.plugin", "site_recovery.provider_info",
                           "site_recovery.records", "site_recovery.vocabulary"}
#: what the API server imports besides, when it builds the plugin's FastAPI app (the stored reports' route)
API_SERVER_MODULES = {"site_recovery.report_routes", "site_recovery.links"}

# How the scheduler, API server, triggerer and workers load plugins in 3.3.2: the plugins folder
# (filtered by .airflowignore), then the `airflow.plugins` entry points, once per process.
LOAD_PLUGINS = """
import json, sys
from airflow import plugins_manager

before = set(sys.modules)
plugins_manager.ensure_plugins_loaded()
components = set(sys.modules)  # what the scheduler, triggerer, dag-processor and workers have
plugins_manager.get_fastapi_plugins()  # what the API server builds from them
loaded = set(sys.modules) - before
print(json.dumps({
    "plugins": plugins_manager.get_plugin_info(attrs_to_dump=["source"]),
    "import_errors": plugins_manager.get_import_errors(),
    "loaded": sorted(loaded),
    "components": sorted(components),
    "loaded_by_components": sorted(components - before),
    "modules": {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())},
}, default=str))
"""


def run_fresh(code: str, tmp_path: Path, **extra_env: str) -> dict:
    """Run ``code`` in a new venv interpreter outside the repository; return the JSON it prints."""
    home = tmp_path / "airflow-home"
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW", "PYTHON", "SITE_RECOVERY"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        **extra_env,
    })
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def product_modules(modules: dict[str, str | None]) -> set[str]:
    """The package's modules, and modules loaded from its folder under whatever name."""
    return {name for name, file in modules.items()
            if name.split(".")[0] == "site_recovery"
            or (file and Path(file).resolve().is_relative_to(PACKAGE_DIR))}


@pytest.mark.parametrize("ignore_syntax", ["glob", "regexp"])
def test_loading_plugins_imports_only_the_plugin_entry(tmp_path, ignore_syntax):
    found = run_fresh(LOAD_PLUGINS, tmp_path, AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX=ignore_syntax)

    assert found["import_errors"] == {}
    ours = [plugin for plugin in found["plugins"] if plugin["name"] == "site_recovery"]
    assert len(ours) == 1, found["plugins"]
    # from the distribution's entry point, not from a file of the plugins folder
    assert f"{DISTRIBUTION}==" in ours[0]["source"], ours[0]["source"]

    modules = found["modules"]
    assert not [name for name in modules if name == "azure" or name.startswith("azure.")]
    # cryptography comes with the API server's own JWT handling, which the report route uses; no other component
    assert not [name for name in found["loaded_by_components"] if name.split(".")[0] in ("azure", "cryptography")]
    assert not [name for name in found["loaded"] if name.split(".")[0] == "azure"]
    assert product_modules(modules) <= ALLOWED_PRODUCT_MODULES | API_SERVER_MODULES, sorted(product_modules(modules))
    every_component = {name: modules[name] for name in found["components"] if name in modules}
    assert product_modules(every_component) <= ALLOWED_PRODUCT_MODULES, sorted(product_modules(every_component))
    assert "site_recovery.plugin" in modules
    assert "site_recovery.records" in modules  # on_load registered the records for XCom


def test_site_recovery_is_imported_from_the_installed_distribution(tmp_path):
    found = run_fresh(
        """
import importlib.metadata as md, json, sys
import site_recovery
dist = md.distribution("asr-site-recovery")
print(json.dumps({
    "file": site_recovery.__file__,
    "sys_path": sys.path,
    "version": dist.version,
    "direct_url": dist.read_text("direct_url.json"),
    "installed_init": str(dist.locate_file("site_recovery/__init__.py")),
    "entry_points": sorted([ep.group, ep.name, ep.value] for ep in dist.entry_points),
}))
""",
        tmp_path,
    )
    # neither the repository nor its plugins folder on sys.path: the import went through the
    # distribution (an editable install maps the name with a finder, not a sys.path entry)
    on_path = {Path(tmp_path, p).resolve() for p in found["sys_path"]}
    assert not on_path & {REPO, REPO / "plugins", PACKAGE_DIR}
    editable = json.loads(found["direct_url"] or "{}").get("dir_info", {}).get("editable", False)
    if editable:  # `make setup`: pip install -e plugins/site_recovery
        assert Path(found["file"]).resolve() == PACKAGE_DIR / "__init__.py"
    else:  # the Docker image: a regular install into site-packages
        assert Path(found["file"]).resolve() == Path(found["installed_init"]).resolve()
    assert found["entry_points"] == [
        ["airflow.plugins", "site_recovery", "site_recovery.plugin:SiteRecoveryPlugin"],
        ["apache_airflow_provider", "provider_info", "site_recovery.provider_info:get_provider_info"],
    ]
