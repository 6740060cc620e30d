"""Every DAG file imports cleanly, carries what operators need, and does no I/O at parse time."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


class NetworkAtParseTime(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise NetworkAtParseTime(f"network I/O while parsing DAGs: {args!r}")

    class GuardedSocket(socket.socket):
        def connect(self, address):
            refuse(address)

        def connect_ex(self, address):
            refuse(address)

    monkeypatch.setattr(socket, "socket", GuardedSocket)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def dagbag(no_network):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    files = {Path(dag.fileloc).name for dag in dagbag.dags.values()}
    assert files == {p.name for p in DAGS.glob("*.py")}, "a DAG file defines no DAG"


def test_every_dag_has_tags_owner_and_retries(dagbag):
    assert dagbag.dags, "no DAGs found"
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_the_network_guard_would_catch_a_dag_that_calls_out(tmp_path, no_network):
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "calls_out.py").write_text(
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9/', timeout=1)\n"
        "from airflow.sdk import DAG\nDAG(dag_id='calls_out', schedule=None)\n"
    )
    bag = DagBag(dag_folder=str(tmp_path))
    assert "network I/O while parsing DAGs" in next(iter(bag.import_errors.values()))


def test_the_job_watch_waits_as_long_as_the_run_asks_on_the_default_connection(dagbag):
    dag = dagbag.dags["asr_watch_job"]
    assert dag.params["azure_conn_id"] == "azure_default"  # the hook's default, not the lab's connection
    task = dag.get_task("wait_for_job")
    assert task.timeout == 6 * 3600  # the form's default, until a run says otherwise
    # ``timeout`` is no template field: the sensor's pre_execute hook takes it from the run's params.
    task._pre_execute_hook({"task": task, "params": {"timeout_hours": 0.5}})
    assert task.timeout == 1800
