"""The task that writes a drill's or a recovery's report: a PythonOperator with a link to the stored page."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.python import PythonOperator
from site_recovery.links import StoredReportLink

#: A store that cannot be reached (Blob storage restarting, a network blip) is tried again this many
#: times, this far apart, before the task fails naming the store. Each try already spends about two
#: minutes in the Azure SDK's own retries (ExponentialRetry, 15 s, 18 s, 24 s, per request), so the
#: three tries ride out about seven minutes of outage (measured: tests/stack, Azurite stopped).
REPORT_RETRIES = 2
REPORT_RETRY_DELAY = timedelta(seconds=30)


class ReportOperator(PythonOperator):
    """Run the report callable; its ``Report`` button opens the page it stored (see StoredReportLink)."""

    operator_extra_links = (StoredReportLink(),)

    def __init__(self, *, retries: int = REPORT_RETRIES, retry_delay: timedelta = REPORT_RETRY_DELAY, **kwargs) -> None:
        super().__init__(retries=retries, retry_delay=retry_delay, **kwargs)
