"""The task that writes a drill's or a recovery's report: a PythonOperator with a link to the stored page."""

from __future__ import annotations

from datetime import timedelta

from airflow.configuration import conf
from airflow.exceptions import AirflowConfigException
from airflow.providers.standard.operators.python import PythonOperator
from site_recovery.links import StoredReportLink

#: A store that cannot be reached (Blob storage restarting, a network blip) is tried again this many
#: times, this far apart, before the task fails naming the store. Each try already spends about two
#: minutes in the Azure SDK's own retries (ExponentialRetry, 15 s, 18 s, 24 s, per request), so the
#: three tries ride out about seven minutes of outage (measured: tests/stack, Azurite stopped).
#: ``[site_recovery] report_retries`` and ``report_retry_delay`` (seconds) change them.
REPORT_RETRIES = 2
REPORT_RETRY_DELAY = timedelta(seconds=30)


def report_retry_budget() -> tuple[int, timedelta]:
    """The report tasks' retries and the delay between them, from ``[site_recovery]``; read when the DAG
    is parsed, as every operator argument is. A value that is not a whole number of retries or of
    seconds, or is negative, fails the parse naming the option."""
    return (_non_negative("report_retries", REPORT_RETRIES),
            timedelta(seconds=_non_negative("report_retry_delay", int(REPORT_RETRY_DELAY.total_seconds()))))


def _non_negative(option: str, default: int) -> int:
    raw = (conf.get("site_recovery", option, fallback=None) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise AirflowConfigException(
            f"[site_recovery] {option} must be a whole number, 0 or more; it is {raw!r}")
    return value


class ReportOperator(PythonOperator):
    """Run the report callable; its ``Report`` button opens the page it stored (see StoredReportLink).

    Its retries are the reports store's budget (:func:`report_retry_budget`), whatever the DAG's
    ``default_args`` say: they are about how long a store may be unreachable, not about ASR.
    """

    operator_extra_links = (StoredReportLink(),)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # default_args fill every operator argument they name, so the budget is applied after them
        self.retries, self.retry_delay = report_retry_budget()
