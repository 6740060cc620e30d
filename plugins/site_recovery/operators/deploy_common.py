"""Shared pieces of the deployment DAG's steps: the steps, their records, and error sorting.

Every step "ensures" (ARCHITECTURE principle 2): it reads, compares, changes only what
differs and returns small JSON-safe records for the summary::

    {"step": "vault", "item": "rsv-dr-weu-01", "action": "created", "job_name": None, "detail": "..."}

``action`` is one of :data:`ACTIONS`. Nothing here opens a connection at import time, so the
DAG file that imports it parses fast.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

log = logging.getLogger(__name__)

#: The documented steps, in order: (task group id, what a DR engineer reads in the trigger form).
STEPS: dict[str, str] = {
    "review_architecture": "1. Review the architecture: show the plan and what this run would change",
    "prerequisites": "2. Prerequisites: Azure access, resource provider, Test-AsrPrerequisites on both VMM servers",
    "plan_networking": "3. Plan networking: every VM network of in-scope VMs is mapped to an existing DR network",
    "prepare_vmm_and_hyperv": "4. Prepare VMM and Hyper-V: make the recovery hosts Hyper-V Replica servers",
    "vault": "5. Vault: ensure the Recovery Services vault exists in the right region",
    "source_and_target": "6. Source and target: install and register the ASR Provider on both VMM servers",
    "network_mapping": "7. Network mapping: map each production VM network to its DR network",
    "replication_policy_and_pairing": "8. Replication policy and pairing: ensure the policy, pair the clouds",
}
ACTIONS = ("already in place", "created", "updated", "skipped")


class DeploymentCheckFailed(AirflowFailException):
    """A check of the deployment failed (prerequisites, networking, site file vs estate): final, no retry."""


class DeploymentError(AirflowFailException):
    """Azure refused a request for a reason a retry will not fix (validation, authorization): final."""


def record(step: str, item: str, action: str, detail: str = "", job_name: str | None = None) -> dict[str, Any]:
    """One line of the summary; logged as it is made."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
    log.info("[%s] %s: %s%s%s", step, item, action, f" ({detail})" if detail else "",
             f", ASR job {job_name}" if job_name else "")
    return {"step": step, "item": item, "action": action, "job_name": job_name, "detail": detail}


def selected(context: dict[str, Any], step: str) -> bool:
    """True when the run's ``steps`` param includes ``step`` (an empty or missing list means all)."""
    steps = (context.get("params") or {}).get("steps") or list(STEPS)
    return step in steps


def load_site_named(name: str):
    """The site file of ``name``, read again on the worker (the DAG passes names, never objects)."""
    from site_recovery.site import SiteFileError, load_sites

    sites, errors = load_sites()
    if name not in sites:
        problems = "\n".join(errors.values())
        raise SiteFileError(name, f"site {name!r} cannot be loaded any more" + (f":\n{problems}" if problems else ""))
    return sites[name]


def sort_errors(func: Callable) -> Callable:
    """Make permanent Azure errors fail at once; let transient ones (throttling, 5xx, network) retry."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from azure.core.exceptions import AzureError

        from site_recovery.hooks.asr import is_transient
        from site_recovery.site import SiteFileError
        from site_recovery.vault_credentials import VaultCredentialsError

        try:
            return func(*args, **kwargs)
        except AirflowException:
            raise
        except (SiteFileError, VaultCredentialsError) as exc:
            raise DeploymentCheckFailed(str(exc)) from exc
        except AzureError as exc:
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


def summarize(records: list[dict], links: dict[str, str]) -> str:
    """The summary text: what changed (with job links), what was in place, what was skipped."""
    changed = [r for r in records if r["action"] in ("created", "updated")]
    lines = ["No changes: everything the site file describes was already in place." if not changed else
             f"{len(changed)} change(s) made:"]
    for r in changed:
        link = f"\n      job {r['job_name']}: {links.get(r['job_name'], '')}" if r.get("job_name") else ""
        lines.append(f"  - [{r['step']}] {r['item']}: {r['action']} ({r['detail']}){link}")
    for title, action in (("Already in place", "already in place"), ("Skipped", "skipped")):
        some = [r for r in records if r["action"] == action]
        if some:
            lines.append(f"{title}:")
            lines += [f"  - [{r['step']}] {r['item']}: {r['detail']}" for r in some]
    return "\n".join(lines)
