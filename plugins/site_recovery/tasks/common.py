"""Helpers of the DAGs' tasks: the deployment's step records, error sorting and log tables.

Every deployment step "ensures" (ARCHITECTURE principle 2): it reads, compares, changes only
what differs and returns :class:`~site_recovery.records.StepRecord` s for the summary, e.g.
``StepRecord(step="vault", item="rsv-dr-weu-01", action=DeployAction.CREATED, detail="...")``.
Nothing here opens a connection or imports the hook or the records at import time, so the DAG
files that import the tasks parse fast.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk.exceptions import AirflowException, AirflowSkipException
from site_recovery.exceptions import DeploymentCheckFailed, DeploymentError
from site_recovery.vocabulary import DeployAction

if TYPE_CHECKING:
    from site_recovery.records import StepRecord

log = logging.getLogger(__name__)
#: The summary's changes: what a run did to the estate.
CHANGES = frozenset({DeployAction.CREATED, DeployAction.UPDATED})


def record(step: str, item: str, action: DeployAction | str, detail: str = "",
           job_name: str | None = None) -> StepRecord:
    """One line of the deployment summary; logged as it is made.

    :raise ValueError: ``action`` is not a :class:`~site_recovery.vocabulary.DeployAction`.
    """
    from site_recovery.records import StepRecord

    action = DeployAction(action)
    log.info("[%s] %s: %s%s%s", step, item, action, f" ({detail})" if detail else "",
             f", ASR job {job_name}" if job_name else "")
    return StepRecord(step=step, item=item, action=action, detail=detail, job_name=job_name)


#: Why a step's tasks did nothing: the run's ``steps`` param left the step out.
STEP_NOT_SELECTED = "step not selected"


def skip_step(step: str, result: Any) -> NoReturn:
    """End a task whose step the run left out: skipped in the UI, its records kept for the summary.

    ``result`` (the task's usual return value, holding ``SKIPPED`` records) is pushed as the
    task's return value first, so the summary and any task reading it still find it.
    """
    from airflow.sdk import get_current_context

    get_current_context()["ti"].xcom_push(key="return_value", value=result)
    raise AirflowSkipException(f"Step {step} is not in this run's steps: nothing to do.")


def sort_errors(func: Callable) -> Callable:
    """Make permanent Azure errors fail at once; let transient ones (throttling, 5xx, network) retry.

    A broken site file or vault credentials the vault cannot issue fail at once too
    (:class:`~site_recovery.exceptions.DeploymentCheckFailed`); Azure's refusals become
    :class:`~site_recovery.exceptions.DeploymentError`.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from site_recovery.hooks.asr import is_azure_error, is_transient
        from site_recovery.site import SiteFileError
        from site_recovery.vault_credentials import VaultCredentialsError

        try:
            return func(*args, **kwargs)
        except AirflowException:
            raise
        except (SiteFileError, VaultCredentialsError) as exc:
            raise DeploymentCheckFailed(str(exc)) from exc
        except Exception as exc:
            if not is_azure_error(exc):
                raise
            if is_transient(exc):
                log.warning("Transient Azure error, the task will retry: %s", exc)
                raise
            raise DeploymentError(f"Azure refused the request: {exc}") from exc

    return wrapper


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table for the task log."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summarize(records: Iterable[StepRecord], links: dict[str, str]) -> str:
    """The deployment summary's text: what changed (with job links), what was in place, what was skipped."""
    records = list(records)
    changed = [r for r in records if r.action in CHANGES]
    lines = ["No changes: everything the site file describes was already in place." if not changed else
             f"{len(changed)} change(s) made:"]
    for r in changed:
        link = f"\n      job {r.job_name}: {links.get(r.job_name, '')}" if r.job_name else ""
        lines.append(f"  - [{r.step}] {r.item}: {r.action} ({r.detail}){link}")
    for title, action in (("Already in place", DeployAction.IN_PLACE), ("Skipped", DeployAction.SKIPPED)):
        some = [r for r in records if r.action == action]
        if some:
            lines.append(f"{title}:")
            lines += [f"  - [{r.step}] {r.item}: {r.detail}" for r in some]
    return "\n".join(lines)


def mapped_xcoms(ti: Any, task_id: str, count: int, key: str = "return_value") -> list[Any]:
    """One XCom per map index ``0..count-1`` of a mapped task (None where an index pushed nothing)."""
    if count == 0:
        return []
    pulled = ti.xcom_pull(task_ids=task_id, key=key, map_indexes=list(range(count)))
    pulled = pulled if isinstance(pulled, list) else [pulled]
    return list(pulled) + [None] * (count - len(pulled))
