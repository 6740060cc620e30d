"""Ending a drill's running job when someone else cancels it first, against the lab through the hook and the SDK.

When a user marks a deferred wait failed, its trigger's ``on_kill`` cancels the ASR job while the
drill's cleanup may be reading the same job to cancel it: ASR refuses the second cancel. Cleanup
must take that refusal for what it is, the job ending, and go on to clean up.
"""

from __future__ import annotations

import pytest

from site_recovery.hooks.asr import AzureSiteRecoveryHook, summarize_job
from site_recovery.site import load_site_named
from site_recovery.tasks.drill import _end_job
from site_recovery.vocabulary import AsrJobState
from tests.labflows import Runbook, asr_client, vault_client

pytestmark = pytest.mark.lab


class CancelledBehindItsBack(AzureSiteRecoveryHook):
    """The real hook, except that another client cancels the job right after this hook's first read of it."""

    def __init__(self, runbook: Runbook, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runbook, self.reads = runbook, 0

    def get_job(self, resource_group_name: str, vault_name: str, job_name: str):
        job = super().get_job(resource_group_name, vault_name, job_name)
        self.reads += 1
        if self.reads == 1:
            self.runbook.asr.replication_jobs.begin_cancel(resource_group_name, vault_name, job_name).result()
        return job


def test_a_job_cancelled_by_someone_else_between_the_read_and_the_cancel_counts_as_ended(lab, lab_connection):
    book = Runbook(lab, asr_client(lab), vault_client(lab))
    book.create_vault()
    book.register()
    lab.add_job_fault("AddProtectionProfile", "Stuck")
    _, job = book.create_policy()
    site = load_site_named("lab")
    hook = CancelledBehindItsBack(book, azure_conn_id=site.azure.conn_id)

    _end_job(hook, site, job, "policy creation")  # raised ASR's refusal of the second cancel before

    assert hook.reads >= 2  # it looked again after the refusal instead of giving up
    assert summarize_job(book.job(job)).state == AsrJobState.CANCELLED
    cancels = [r for r in lab.requests(method="POST") if r["path"].lower().endswith(f"/{job.lower()}/cancel")]
    assert len(cancels) == 2, cancels  # the other client's, then the refused one
