"""Parsing reads only the repository: a DAG's version changes with its site file or code, never with a run.

On a real deployment the dag-processor and the workers share no disk, and every change of a
serialized DAG is a new DAG version (seen once as "v1, v2" on one enable run, when the trigger
form's VM list came from a file the plan task wrote). These tests parse the dags folder twice,
serialize every DAG the way the dag-processor does (``DagSerialization.to_dict``) and compare
the hashes the metadata DB keys DAG versions on (``SerializedDagModel.hash``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


@pytest.fixture
def include_dir(tmp_path, monkeypatch):
    """A copy of include/sites the DAGs read, and the two places workers used to write VM lists to."""
    include = tmp_path / "include"
    shutil.copytree(REPO / "include" / "sites", include / "sites")
    monkeypatch.setenv("SITE_RECOVERY_INCLUDE_DIR", str(include))
    monkeypatch.setenv("SITE_RECOVERY_STATE_DIR", str(tmp_path / "state"))
    return include


def worker_written_files(include: Path) -> list[Path]:
    """What an enable run left behind before: the VM names its plan saw, per site."""
    files = [include / "state" / "lab" / "vms.json", include.parent / "state" / "lab" / "vms.json"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"vms": ["APP-PRD-01", "SQL-PRD-01", "WEB-PORTAL-01"]}))
    return files


def parsed_versions(opened: list[str] | None = None) -> dict[str, str]:
    """Parse dags/ as the dag-processor does; the hash of each serialized DAG, by DAG id."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.serialization.serialized_objects import DagSerialization

    def record(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, Path)):
            opened.append(os.fsdecode(args[0]))

    if opened is not None:
        _listen(record)
    try:
        bag = DagBag(dag_folder=str(DAGS))
    finally:
        _LISTENERS.clear()
    assert bag.import_errors == {}
    return {dag_id: SerializedDagModel.hash(DagSerialization.to_dict(dag)) for dag_id, dag in bag.dags.items()}


# An audit hook cannot be removed once added: one per process, installed on first use, forwarding
# to the listener of the moment.
_LISTENERS: list = []


def _listen(listener) -> None:
    if not hasattr(_listen, "installed"):
        sys.addaudithook(lambda event, args: _LISTENERS and _LISTENERS[0](event, args))
        _listen.installed = True
    _LISTENERS.append(listener)


def test_an_enable_run_leaves_every_dag_version_as_it_was(include_dir):
    before = parsed_versions()
    files = worker_written_files(include_dir)
    opened: list[str] = []
    after = parsed_versions(opened)
    assert after == before
    assert {"asr_deploy__lab", "asr_enable_replication__lab", "asr_test_failover_drill__lab"} <= set(after)
    assert any(path.endswith("lab.yaml") for path in opened), "the audit saw no file opened"
    state_dirs = tuple(str(path.parent.parent) for path in files)
    assert not [path for path in opened if path.startswith(state_dirs)], "parsing read a file workers write"


def test_the_site_file_is_what_changes_a_version(include_dir):
    before = parsed_versions()
    site_file = include_dir / "sites" / "lab.yaml"
    site_file.write_text(site_file.read_text().replace("max_concurrent_initial_replications: 4",
                                                       "max_concurrent_initial_replications: 3"))
    after = parsed_versions()
    assert after["asr_enable_replication__lab"] != before["asr_enable_replication__lab"]  # it is in the DAG's doc
    assert after["asr_watch_job"] == before["asr_watch_job"]  # no site file behind it


def test_the_vms_picker_offers_the_names_the_scope_lists(include_dir):
    """No worker-written list: the form offers the scope's plain names; any other name is checked by the plan."""
    from airflow.dag_processing.dagbag import DagBag

    site_file = include_dir / "sites" / "lab.yaml"
    text = site_file.read_text()
    assert '      include: ["*"]\n      exclude: [JUMP-01]' in text
    site_file.write_text(text.replace('      include: ["*"]\n      exclude: [JUMP-01]',
                                      '      include: [FS-PRD-01, JUMP-01, "APP-*"]\n      exclude: [JUMP-01]'))
    bag = DagBag(dag_folder=str(DAGS / "asr_enable_replication.py"))
    vms = bag.dags["asr_enable_replication__lab"].params.get_param("vms")
    assert vms.value == []
    assert vms.schema["examples"] == ["FS-PRD-01"]  # a wildcard is no choice, an excluded name is none either
    assert "Any name the scope allows may be typed" in vms.description

    site_file.write_text(text)  # the lab's scope: wildcards only, so a free list
    bag = DagBag(dag_folder=str(DAGS / "asr_enable_replication.py"))
    assert "examples" not in bag.dags["asr_enable_replication__lab"].params.get_param("vms").schema


def test_the_dag_files_import_no_azure_sdk_and_read_no_state():
    """A fresh interpreter parses every DAG file: no azure.* module gets imported along the way."""
    import subprocess

    code = ("import sys; from airflow.dag_processing.dagbag import DagBag; "
            f"bag = DagBag(dag_folder={str(DAGS)!r}); assert not bag.import_errors, bag.import_errors; "
            "print(sorted(m for m in sys.modules if m == 'azure' or m.startswith('azure.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_parse_benchmark_measures_every_dag_file_against_both_references():
    """``make bench``'s parse figures come out for every DAG file, with its same-shape reference."""
    sys.path.insert(0, str(REPO))
    try:
        from bench.dag_parse import dag_parse_times
    finally:
        sys.path.remove(str(REPO))
    figures = dag_parse_times(repeats=1)
    assert set(figures["files"]) == {p.name for p in DAGS.glob("*.py") if not p.name.startswith("_")}
    for name, f in figures["files"].items():
        assert f["dags"] >= 1 and f["tasks"] >= 1, name
        assert f["seconds"] > 0 and f["same_shape_seconds"] > 0, name
        assert abs(f["ratio_to_same_shape"] - f["seconds"] / f["same_shape_seconds"]) <= 0.02, name
    assert figures["files"]["asr_deploy.py"]["params"] == 2
