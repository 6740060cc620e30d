from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.mgmt.recoveryservicessiterecovery.models import Job

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred
from site_recovery.exceptions import AsrJobError, AsrJobFailed
from site_recovery.hooks.asr import arm_settings
from site_recovery.links import AsrJobLink
from site_recovery.records import JobSummary
from site_recovery.sensors.asr import AsrJobSensor
from site_recovery.triggers.asr import AsrJobTrigger

JOB = "866dd326-7b1c-4bf9-9c6d-1b1a5b2f0a11"
SUB = "00000000-0000-0000-0000-00000000000a"
TENANT = "00000000-0000-0000-0000-00000000000b"
SECRET = "s3cr3t-value-never-in-xcom"


def make_job(state, *, errors=(), description=None) -> Job:
    return Job(
        {
            "name": JOB,
            "properties": {
                "scenarioName": "EnableDr",
                "friendlyName": "Enable replication",
                "targetObjectName": "VM1",
                "state": state,
                "stateDescription": description or state,
                "startTime": "2030-01-01T00:00:00Z",
                "endTime": "2030-01-01T00:01:40Z",
                "tasks": [{"name": "EnableProtectionTask", "friendlyName": "Enable protection", "state": state}],
                "errors": list(errors),
            },
        }
    )


def make_sensor(*jobs, **kwargs) -> AsrJobSensor:
    sensor = AsrJobSensor(
        task_id="wait_for_enable_replication",
        job_name=JOB,
        resource_group_name="rg1",
        vault_name="vault1",
        azure_conn_id="azure_asr",
        **kwargs,
    )
    hook = mock.Mock()
    hook.settings = arm_settings("azure_asr", "client", SECRET, {"tenantId": TENANT, "subscriptionId": SUB})
    hook.get_job.side_effect = list(jobs)
    sensor.hook = hook
    sensor._log = mock.MagicMock()
    return sensor


@pytest.fixture
def context():
    return {"ti": mock.Mock()}


def pushed(context) -> dict:
    return {call.kwargs["key"]: call.kwargs["value"] for call in context["ti"].xcom_push.call_args_list}


@pytest.mark.parametrize("setting", ["True", "False"])
def test_deferrable_follows_the_airflow_setting(monkeypatch, setting):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", setting)
    sensor = AsrJobSensor(task_id="w", job_name=JOB, resource_group_name="rg1", vault_name="vault1")
    assert sensor.deferrable is (setting == "True")
    assert AsrJobSensor(task_id="x", job_name=JOB, resource_group_name="rg1", vault_name="vault1",
                        deferrable=setting != "True").deferrable is (setting != "True")


def test_defaults_and_template_fields():
    sensor = AsrJobSensor(task_id="w", job_name=JOB, resource_group_name="rg1", vault_name="vault1")

    assert sensor.poke_interval == 30
    assert sensor.timeout == 6 * 60 * 60
    assert sensor.azure_conn_id == "azure_default"
    assert {"job_name", "resource_group_name", "vault_name", "azure_conn_id"} <= set(sensor.template_fields)
    assert any(isinstance(link, AsrJobLink) for link in sensor.operator_extra_links)


def test_deferrable_defers_a_running_job_with_the_right_trigger_and_timeout(context):
    sensor = make_sensor(make_job("InProgress"), timeout=1800, poke_interval=15, wait_on_suspended=True)

    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)

    assert isinstance(deferred.value.trigger, AsrJobTrigger)
    assert deferred.value.method_name == "execute_complete"
    # The trigger's own deadline (end_time) comes first, with a message saying where the job stood.
    assert deferred.value.timeout == timedelta(seconds=1800 + 60)
    _, kwargs = deferred.value.trigger.serialize()
    end_time = kwargs.pop("end_time")
    assert before + 1800 <= end_time <= time.time() + 1800
    assert kwargs == {
        "azure_conn_id": "azure_asr",
        "resource_group_name": "rg1",
        "vault_name": "vault1",
        "job_name": JOB,
        "poll_interval": 15,
        "fail_on_partial_success": True,
        "wait_on_suspended": True,
        "first_poll_delay": 15,  # the sensor has just read the job: the trigger does not read it again at once
        "cancel_on_kill": False,
        "suspend_at": None,
        "until_group": None,
    }


def test_a_wait_for_a_manual_action_hands_the_action_to_its_trigger(context):
    sensor = make_sensor(make_job("InProgress"), suspend_at="Confirm licence server")

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)

    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["suspend_at"] == "Confirm licence server"
    assert type(deferred.value.trigger)(**kwargs).suspend_at == "Confirm licence server"


def test_execute_pushes_the_job_and_link_facts_first(context):
    sensor = make_sensor(make_job("InProgress"))

    with pytest.raises(TaskDeferred):
        sensor.execute(context)

    xcoms = pushed(context)
    assert xcoms["asr_job_name"] == JOB
    assert xcoms["asr_job_link"] == {
        "portal_url": "https://portal.azure.com",
        "tenant_id": TENANT,
        "subscription_id": SUB,
        "resource_group_name": "rg1",
        "vault_name": "vault1",
    }
    assert SECRET not in repr(xcoms)


def test_deferrable_returns_at_once_when_the_job_already_succeeded(context):
    sensor = make_sensor(make_job("Succeeded", description="Completed"))

    summary = sensor.execute(context)

    assert isinstance(summary, JobSummary)
    assert summary.state == "Succeeded"
    assert summary.duration_seconds == 100.0
    assert summary.tasks[0].friendly_name == "Enable protection"


def test_deferrable_fails_at_once_when_the_job_already_failed(context):
    details = {"code": "70094", "message": "VM is not running.", "recommendedAction": "Start it."}
    sensor = make_sensor(make_job("Failed", errors=[{"serviceErrorDetails": details}]))

    with pytest.raises(AsrJobFailed, match=r"failed: \[70094\] VM is not running\. Recommended action: Start it\."):
        sensor.execute(context)


@pytest.mark.parametrize("job_name", ["", "None"])
def test_execute_refuses_a_missing_job_name(context, job_name):
    sensor = make_sensor()
    sensor.job_name = job_name

    with pytest.raises(AsrJobError, match="No ASR job name"):
        sensor.execute(context)


def test_poke_mode_waits_then_returns_the_summary(context):
    sensor = make_sensor(
        make_job("InProgress"), make_job("Succeeded", description="Completed"), deferrable=False, poke_interval=0
    )

    summary = sensor.execute(context)

    assert summary.state == "Succeeded"
    assert sensor.hook.get_job.call_count == 2
    sensor.hook.get_job.assert_called_with("rg1", "vault1", JOB)


def test_poke_mode_rides_out_a_transient_error_but_not_a_permanent_one(context):
    throttled = HttpResponseError(message="throttled")
    throttled.status_code = 429
    sensor = make_sensor(
        ServiceRequestError("reset"), throttled, make_job("Succeeded"), deferrable=False, poke_interval=0
    )
    assert sensor.execute(context).state == "Succeeded"

    forbidden = HttpResponseError(message="forbidden")
    forbidden.status_code = 403
    with pytest.raises(HttpResponseError):
        make_sensor(forbidden, deferrable=False, poke_interval=0).execute(context)


@pytest.mark.parametrize(
    ("job", "kwargs", "message"),
    [
        (make_job("Cancelled"), {}, "cancelled"),
        (make_job("Succeeded", description="PartiallySucceeded"), {}, "partially succeeded"),
        (make_job("Suspended"), {}, "waiting for a manual action"),
    ],
)
def test_poke_mode_raises_on_error_events(context, job, kwargs, message):
    sensor = make_sensor(job, deferrable=False, poke_interval=0, **kwargs)

    with pytest.raises(AsrJobFailed, match=message):  # final: a retry would find the same job
        sensor.execute(context)


def test_poke_mode_accepts_partial_success_when_allowed(context):
    sensor = make_sensor(
        make_job("Succeeded", description="PartiallySucceeded"),
        deferrable=False,
        poke_interval=0,
        fail_on_partial_success=False,
    )

    assert sensor.execute(context).state_description == "PartiallySucceeded"


def test_execute_complete_returns_the_job_summary(context):
    summary = {"name": JOB, "state": "Succeeded", "tasks": [], "errors": []}
    event = {"status": "success", "reason": "succeeded", "message": "done", "job": summary}

    assert make_sensor().execute_complete(context, event) == JobSummary.model_validate(summary)


@pytest.mark.parametrize(
    ("event", "exception", "message"),
    [
        ({"status": "error", "reason": "failed", "message": "'Enable replication' on VM1 failed: [1] x",
          "job": {"name": JOB, "state": "Failed"}}, AsrJobFailed, "failed"),
        ({"status": "error", "reason": "error", "message": "Could not read ASR job j: boom", "job": {"name": JOB}},
         AsrJobError, "Could not read"),
        ({"status": "error", "reason": "timed_out", "message": "still InProgress at noon", "job": {"name": JOB}},
         AirflowSensorTimeout, "still InProgress"),
        # The reason decides, not the text: an ASR message that starts with "Timeout" is a failed job.
        ({"status": "error", "reason": "failed", "message": "Timeout waiting for the VMM server", "job": {"name": JOB}},
         AsrJobFailed, "Timeout waiting"),
        (None, AsrJobError, "No event"),
    ],
)
def test_execute_complete_raises_on_error(context, event, exception, message):
    with pytest.raises(exception, match=message) as excinfo:
        make_sensor().execute_complete(context, event)
    assert isinstance(excinfo.value, AirflowException)
    assert isinstance(excinfo.value, AirflowFailException) == (exception is AsrJobFailed)
