"""A broken site file shows up as its own failing DAG; the other sites' DAGs still load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def include_dir(tmp_path, monkeypatch):
    (tmp_path / "sites").mkdir()
    shutil.copy(REPO / "include" / "sites" / "lab.yaml", tmp_path / "sites" / "lab.yaml")
    broken = (REPO / "include" / "sites" / "lab.yaml").read_text().replace(
        "name: lab", "name: branch").replace("copy_frequency_seconds: 300", "copy_frequency_seconds: 60")
    (tmp_path / "sites" / "branch.yaml").write_text(broken)
    monkeypatch.setenv("SITE_RECOVERY_INCLUDE_DIR", str(tmp_path))
    return tmp_path


def test_broken_file_gets_a_failing_dag_and_the_good_one_still_loads(include_dir):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert "asr_deploy__lab" in bag.dags
    broken = bag.dags["asr_deploy__branch"]
    assert "copy_frequency_seconds" in broken.doc_md and "allowed: 30, 300, 900" in broken.doc_md
    (task,) = broken.tasks
    with pytest.raises(Exception, match="copy_frequency_seconds"):
        task.python_callable(**task.op_kwargs)
