"""One DAG per site file and family, and what a broken site file's DAG looks like.

Every DAG file of dags/ ends with :func:`publish`: each valid site file gets its DAG, and each
invalid one a DAG with the same id whose only task fails with the validation message, so the
problem shows in the UI where the DAG would be instead of hiding in the dag-processor's log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

if TYPE_CHECKING:
    from site_recovery.site import Site

log = logging.getLogger(__name__)

#: The JSON Schema dialect the trigger forms' params declare (see :func:`form_param`).
FORM_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"


def form_param(default: Any, **schema: Any) -> Param:
    """A trigger-form :class:`~airflow.sdk.Param` whose schema is JSON Schema draft 7.

    Every task carries a copy of its DAG's params, and the dag-processor, serializing a task,
    resolves each of them twice; resolving checks the param's schema against its dialect's
    meta-schema. Against jsonschema's default dialect (2020-12, built on ``$dynamicRef``) a check
    costs about four times what it costs against draft 7: serializing the deployment DAG (28 tasks,
    2 params) takes about 45% less time with draft 7 (``bench/dag_parse.py``). The keywords the
    forms use (type, items, enum, examples, minimum, maximum, minLength) mean the same in both.
    """
    return Param(default, **{"$schema": FORM_SCHEMA_DIALECT}, **schema)


def slug(text: str) -> str:
    """Lower-case letters, digits and '_' only: safe in task and DAG ids."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


def plan_task_group(plan: str) -> str:
    """The drill's task group of a recovery plan; the DAG names its tasks by it and the report reads them by it."""
    return f"drill_plan_{slug(plan)}"


def group_task_ids(group: int) -> tuple[str, str]:
    """A plan's boot group in its drill: the wait for the group's VMs to be up, and their mapped verification."""
    return f"wait_group_{group}", f"verify_group_{group}"


def pause_task_id(kind: str, action: str) -> str:
    """The task, in its plan's group, that answers one pause of the plan's job: ``manual_...`` or ``check_...``."""
    return f"{kind}_{slug(action)}"


def chain_plan_job(start: Any, steps: list, pause: Callable[[Any, Any], Any],
                   boot_group: Callable[[Any], tuple[Any, Any]]) -> tuple[Any, list]:
    """Wire a recovery plan's job as one chain in its order (``plan.job_order``): ``pause(action, previous)``
    returns the task answering a pause, ``boot_group(group)`` the group's wait and its members' verification.

    A link starts once the one before has ended, so one wait reads the job at a time, and a refused manual
    action ends the chain. Each group's members are verified as soon as it is up, beside the chain.
    Returns the chain's last link and the verifications.
    """
    from site_recovery.site import PlanAction

    previous, verifies = start, []
    for step in steps:
        if isinstance(step, PlanAction):
            previous = pause(step, previous)
            continue
        up, verify = boot_group(step)
        previous >> up >> verify
        verifies.append(verify)
        previous = up
    return previous, verifies


def fail_broken_site_file(message: str) -> None:
    """The one task of a broken site file's DAG: fail with the validation message, no retry."""
    from site_recovery.exceptions import DeploymentCheckFailed

    raise DeploymentCheckFailed(f"The site file cannot be used, so nothing was done:\n{message}")


def broken_site_dag(family: str, file_name: str, message: str, *, what: str, tags: list[str],
                    default_args: dict[str, Any]) -> DAG:
    """The stand-in DAG of an invalid site file: ``<family>__<file stem>``, one failing task."""
    stem = slug(Path(file_name).stem) or "sites"
    with DAG(dag_id=f"{family}__{stem}", schedule=None, catchup=False, tags=[*tags, "broken-site-file"],
             default_args=default_args, description=f"Site file {file_name} is invalid",
             doc_md=f"# Site file {file_name} cannot be used\n\nFix it; this DAG then becomes its {what} "
                    f"DAG.\n\n```\n{message}\n```") as dag:
        PythonOperator(task_id="site_file_is_invalid", python_callable=fail_broken_site_file,
                       op_kwargs={"message": message}, retries=1)
    return dag


def publish(namespace: dict[str, Any], family: str, build: Callable[[Site], DAG], *, what: str, tags: list[str],
            default_args: dict[str, Any]) -> None:
    """Put one DAG per site file into ``namespace`` (a DAG file's ``globals()``)."""
    from site_recovery.site import load_sites  # here, so a DAG file without site files never builds the model

    sites, errors = load_sites()
    for site in sites.values():
        namespace[site.dag_id(family)] = build(site)
    for file_name, message in errors.items():
        log.error("Site file %s is invalid, its %s DAG only reports the error:\n%s", file_name, what, message)
        dag = broken_site_dag(family, file_name, message, what=what, tags=tags, default_args=default_args)
        namespace[dag.dag_id] = dag
