"""Who hears about a failed drill: the site file's ``drill.notifier``, built into a failure callback."""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

log = logging.getLogger(__name__)


class WebhookNotifier(BaseNotifier):
    """POST a JSON summary of the failed run to the URL of an Airflow ``http`` connection.

    The URL is ``schema://host[:port]/<extra endpoint>``; a password on the connection is sent
    as a bearer token. The summary names the DAG, run, failed task and the drill's reasons
    and report path when the report got that far; never a secret.
    """

    template_fields = ("conn_id",)

    def __init__(self, conn_id: str) -> None:
        super().__init__()
        self.conn_id = conn_id

    def notify(self, context: dict[str, Any]) -> None:
        import requests

        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.conn_id)
        extra = conn.extra_dejson
        scheme = conn.schema or "https"
        url = f"{scheme}://{conn.host}{f':{conn.port}' if conn.port else ''}/{str(extra.get('endpoint', '')).lstrip('/')}"
        from site_recovery.records import DrillOutcomeSummary
        from site_recovery.vocabulary import DrillVerdict

        ti = context.get("ti")
        pulled = ti.xcom_pull(task_ids="drill_report") if ti is not None else None
        outcome = DrillOutcomeSummary.model_validate(pulled) if pulled else None
        payload = {
            "event": "asr_drill_failed", "dag_id": context["dag"].dag_id, "run_id": context.get("run_id"),
            "task_id": getattr(ti, "task_id", None),
            "verdict": str(outcome.verdict if outcome else DrillVerdict.FAIL),
            "reasons": (outcome.reasons if outcome else []) or [str(context.get("exception") or "")][:1],
            "report": outcome.html if outcome else None,
        }
        headers = {"Content-Type": "application/json"}
        if conn.password:
            headers["Authorization"] = f"Bearer {conn.password}"
        response = requests.post(url, data=json.dumps(payload), headers=headers, timeout=15,
                                 verify=extra.get("verify", True))
        response.raise_for_status()
        log.info("Drill failure sent to %s (HTTP %s).", url, response.status_code)


def failure_callbacks(notifier) -> list:
    """The ``on_failure_callback`` list for a site file's ``drill.notifier`` (empty when there is none)."""
    if notifier is None:
        return []
    if notifier.kind == "webhook":
        return [WebhookNotifier(conn_id=notifier.conn_id)]

    classpath, kwargs = notifier.classpath, dict(notifier.kwargs)

    def notify(context: dict[str, Any]) -> None:
        # Imported when a drill fails, not when the DAG is parsed: a provider missing on the
        # dag-processor must not break the DAG, and its error belongs in the failed task's log.
        import importlib

        module, _, name = classpath.rpartition(".")
        getattr(importlib.import_module(module), name)(**kwargs)(context)

    return [notify]
