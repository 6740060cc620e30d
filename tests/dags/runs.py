"""Running a DAG of dags/ with ``dag.test`` and reading what its tasks did."""

from __future__ import annotations

import json


def dag_runner(dag_id: str):
    """``run(**conf)``: one ``dag.test`` run of ``dag_id`` (parsed afresh, so site file edits apply)."""
    from airflow.dag_processing.dagbag import DagBag

    def run(**conf):
        bag = DagBag(dag_folder="dags")
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id].test(run_conf=conf)
    return run


def states(dag_run) -> dict[str, str]:
    return {(ti.task_id.split(".")[-1] + ("" if ti.map_index < 0 else f"[{ti.map_index}]")): ti.state
            for ti in dag_run.get_task_instances()}


#: the lab states kept this session (``kept_state``), by key
_KEPT: set[str] = set()


def kept_state(lab, what: str, changes: dict, build) -> None:
    """Bring the lab to the state ``build`` (deploying and protecting through the DAGs) leaves it in: built by
    the first test that asks, kept in the lab, and restored for every later test with the same site file changes.

    A drill or failover test starts from a protected estate; rebuilding it through two DAG runs costs about half
    a minute per test, restoring it a fraction of a second. The first test of each key still proves the build.
    """
    key = f"{what}:{json.dumps(changes, sort_keys=True)}"
    if key in _KEPT and lab.restore(key):
        return
    build()
    lab.snapshot(key)
    _KEPT.add(key)
