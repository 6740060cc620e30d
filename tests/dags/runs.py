"""Running a DAG of dags/ with ``dag.test`` and reading what its tasks did."""

from __future__ import annotations


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
