"""What the SDK makes of the lab's refusals, failed jobs and job actions."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.recoveryservicessiterecovery import SiteRecoveryManagementClient, models

from tests.labflows import Runbook, client_kwargs

pytestmark = pytest.mark.lab


@pytest.fixture
def protected(runbook: Runbook) -> Runbook:
    runbook.configured()
    runbook.enable("APP-ERP-01")[0].result()
    return runbook


class TestRefusals:
    def test_a_second_drill_while_one_waits_for_cleanup(self, protected: Runbook):
        args = protected.item_args("APP-ERP-01")
        rpi = protected.asr.replication_protected_items
        rpi.begin_test_failover(protected.rg, protected.vault_name, *args, protected.test_failover_input()).result()
        with pytest.raises(HttpResponseError) as refused:
            rpi.begin_test_failover(protected.rg, protected.vault_name, *args, protected.test_failover_input())
        error = refused.value
        assert error.status_code == 400 and error.error.code == "539"
        assert "TestFailover" in error.message
        assert error.error.details[0].code == "539"
        assert "Cleanup test failover pending" in error.response.json()["error"]["details"][0]["possibleCauses"]

    def test_unknown_vault_and_unknown_item(self, protected: Runbook):
        with pytest.raises(ResourceNotFoundError) as missing:
            protected.asr.replication_fabrics.list(protected.rg, "rsv-nowhere").next()
        assert missing.value.error.code == "ResourceNotFound"
        with pytest.raises(ResourceNotFoundError):
            protected.asr.replication_jobs.get(protected.rg, protected.vault_name, "0f1e2d3c-0000-4000-8000-000000000000")

    def test_an_api_version_the_service_does_not_know(self, lab, credential):
        with SiteRecoveryManagementClient(credential, lab["subscription_id"], api_version="2019-01-01",
                                          **client_kwargs(lab)) as old:
            with pytest.raises(HttpResponseError) as refused:
                list(old.replication_fabrics.list("rg-dr-weu", "rsv-dr-weu-01"))
        assert refused.value.error.code == "NoRegisteredProviderFound"

    def test_enabling_an_unprotectable_vm_fails_its_job(self, protected: Runbook):
        poller, job_name = protected.enable("SQL-FCI-01")
        with pytest.raises(HttpResponseError) as failed:
            poller.result()
        assert "45005" in str(failed.value)
        job = protected.job(job_name)
        assert job.properties.state == "Failed"
        assert "shared virtual hard disks" in job.properties.errors[0].service_error_details.possible_causes


class TestInjectedJobFaults:
    def test_a_failed_test_failover(self, protected: Runbook):
        protected.lab.add_job_fault("TestFailover", "Failed", target="APP-ERP-01", error={
            "code": "70038", "message": "The test failover couldn't be completed.",
            "possibleCauses": "The recovery host ran out of memory.", "recommendedAction": "Free memory and retry.",
            "providerErrorCode": 32088})
        args = protected.item_args("APP-ERP-01")
        poller, job_name = protected.begin(protected.asr.replication_protected_items.begin_test_failover, *args,
                                           protected.test_failover_input())
        with pytest.raises(HttpResponseError) as failed:
            poller.result()
        assert "(70038) The test failover couldn't be completed." in str(failed.value)
        job = protected.job(job_name)
        assert (job.properties.state, job.properties.tasks[-1].state) == ("Failed", "Failed")
        error = job.properties.errors[0]
        assert isinstance(error, models.JobErrorDetails)
        assert error.provider_error_details.error_code == 32088
        assert error.service_error_details.recommended_action == "Free memory and retry."
        item = protected.asr.replication_protected_items.get(protected.rg, protected.vault_name, *args)
        assert item.properties.allowed_operations == ["TestFailoverCleanup"]  # the test VM exists

    def test_partially_succeeded_is_succeeded_for_the_poller(self, protected: Runbook):
        protected.lab.add_job_fault("TestFailover", "PartiallySucceeded")
        args = protected.item_args("APP-ERP-01")
        poller, job_name = protected.begin(protected.asr.replication_protected_items.begin_test_failover, *args,
                                           protected.test_failover_input())
        assert poller.result().properties.test_failover_state == "WaitingForCompletion"
        job = protected.job(job_name)
        assert (job.properties.state, job.properties.state_description) == ("Succeeded", "PartiallySucceeded")
        assert job.properties.errors[0].error_level == "Warning"

    def test_cancel_a_stuck_job(self, protected: Runbook):
        protected.lab.add_job_fault("TestFailover", "Stuck")
        args = protected.item_args("APP-ERP-01")
        _, job_name = protected.begin(protected.asr.replication_protected_items.begin_test_failover, *args,
                                      protected.test_failover_input(), polling=False)
        running = protected.job(job_name)
        assert running.properties.state == "InProgress" and running.properties.allowed_actions == ["Cancel"]
        busy, busy_job = protected.begin(protected.asr.replication_protected_items.begin_test_failover, *args,
                                         protected.test_failover_input())
        with pytest.raises(HttpResponseError) as rejected:
            busy.result()
        assert "(532)" in str(rejected.value)
        cancelled = protected.asr.replication_jobs.begin_cancel(protected.rg, protected.vault_name, job_name).result()
        assert isinstance(cancelled, models.Job)
        assert (cancelled.name, cancelled.properties.state) == (job_name, "Cancelled")
        item = protected.asr.replication_protected_items.get(protected.rg, protected.vault_name, *args)
        assert item.properties.allowed_operations == ["TestFailoverCleanup"]  # it hung booting the test VM

    def test_resume_a_suspended_job_and_restart_a_failed_one(self, protected: Runbook):
        jobs = protected.asr.replication_jobs
        protected.lab.add_job_fault("TestFailover", "Suspended")
        args = protected.item_args("APP-ERP-01")
        _, job_name = protected.begin(protected.asr.replication_protected_items.begin_test_failover, *args,
                                      protected.test_failover_input(), polling=False)
        assert protected.job(job_name).properties.state == "Suspended"
        resumed = jobs.begin_resume(protected.rg, protected.vault_name, job_name,
                                    {"properties": {"comments": "network checked"}}).result()
        assert isinstance(resumed, models.Job) and resumed.name == job_name
        assert protected.job(job_name).properties.state == "Succeeded"

        protected.lab.add_job_fault("TestFailoverCleanup", "Failed", error={"code": "70039", "message": "No."})
        poller, cleanup_job = protected.begin(protected.asr.replication_protected_items.begin_test_failover_cleanup,
                                              *args, {"properties": {"comments": "try 1"}})
        with pytest.raises(HttpResponseError):
            poller.result()
        restarted = jobs.begin_restart(protected.rg, protected.vault_name, cleanup_job).result()
        assert isinstance(restarted, models.Job) and restarted.name != cleanup_job
        assert (restarted.properties.scenario_name, restarted.properties.state) == ("TestFailoverCleanup", "Succeeded")
