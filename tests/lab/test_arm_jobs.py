"""Jobs: tasks run in order on lab time, read lazily, survive a restart, and bend to faults."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr_lab.arm.errors import AsrError
from asr_lab.arm.models import ArmBackend
from tests.lab.test_arm_world import BASE_URL, World


@pytest.fixture
def world() -> World:
    w = World()
    w.finish()  # the registrations' RegisterDra jobs
    return w


class TestProgression:
    def test_tasks_run_one_after_the_other_with_realistic_durations(self, world: World):
        job = world.create_policy()
        t0 = job.start_time
        assert [t.state for t in job.tasks] == ["InProgress", "NotStarted"]
        assert job.allowed_actions == ["Cancel"]
        world.advance(2)  # the prerequisites check takes 2 s
        assert [t.state for t in job.tasks] == ["Succeeded", "InProgress"]
        assert job.tasks[0].end_time == job.tasks[1].start_time == t0 + timedelta(seconds=2)
        world.advance(6)
        assert (job.state, job.state_description) == ("Succeeded", "Completed")
        assert job.end_time == t0 + timedelta(seconds=8)
        assert job.allowed_actions == []

    def test_a_late_reader_sees_the_same_timeline(self, world: World):
        job = world.create_policy()
        world.advance(3600)
        assert job.state == "Succeeded"
        assert job.tasks[1].end_time - job.start_time == timedelta(seconds=8)

    def test_durations_follow_the_clock_scale(self):
        world = World(scale=0.5)
        job = world.create_policy()
        world.advance(4)
        assert job.state == "Succeeded"

    def test_at_scale_zero_a_job_is_finished_on_the_next_read(self):
        world = World(scale=0)
        job = world.create_policy()
        assert job.state == "InProgress"
        world.backend.settle()
        assert job.state == "Succeeded" and world.backend.get_policy(world.vault, "gold-5min")

    def test_settle_is_cheap_when_nothing_is_due(self, world: World):
        job = world.create_policy()
        version = world.backend.version
        for _ in range(100):
            world.backend.settle()  # same instant: nothing due
        assert world.backend.version == version and job.tasks[0].state == "InProgress"
        world.advance(1)
        assert world.backend.version == version  # still before the first boundary
        world.advance(1)
        assert world.backend.version > version

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.floats(min_value=0, max_value=120), min_size=1, max_size=30))
    def test_the_timeline_does_not_depend_on_when_it_is_read(self, steps):
        """However often (or rarely) the lab is read, a job gets the same task timestamps."""

        def timeline(reads: list[float]) -> list:
            world = World()
            world.configured()
            job = world.enable("APP-ERP-01")
            for step in reads:
                world.advance(step)
            world.advance(100_000)
            return [(t.start_time - job.start_time, t.end_time - job.start_time) for t in job.tasks]

        assert timeline(steps) == timeline([])

    def test_job_listing_is_newest_first_and_filters_on_job_query_fields(self, world: World):
        world.create_policy("a")
        world.advance(60)
        world.create_policy("b", replicationFrequencyInSeconds=45)  # fails its checks
        world.advance(60)
        newest = world.backend.list_jobs(world.vault)[0]
        assert newest.target_object_name == "b"
        failed = world.backend.list_jobs(world.vault, {"jobstatus": "failed", "jobname": "AddProtectionProfile"})
        assert [j.target_object_name for j in failed] == ["b"]
        since = (newest.start_time - timedelta(seconds=1)).isoformat()
        assert len(world.backend.list_jobs(world.vault, {"starttime": since})) == 1
        servers = world.backend.list_jobs(world.vault, {"affectedobjecttypes": "Server", "nonsense": "x"})
        assert {j.scenario_name for j in servers} == {"RegisterDra"}


class TestRestart:
    def test_a_restored_backend_continues_jobs_in_flight(self, world: World):
        world.configured()
        job = world.enable("APP-ERP-01")
        world.advance(10)
        assert job.tasks[1].state == "InProgress"
        saved = json.loads(json.dumps(world.backend.to_dict()))

        restored = ArmBackend.from_dict(saved, world.estate, world.clock, BASE_URL)
        vault = restored.vault_for(world.estate.subscription_id, "rg-dr-weu", "rsv-dr-weu-01")
        world.clock.advance(10_000)
        restored.settle()
        same = restored.get_job(vault, job.name)
        assert same.state == "Succeeded"
        assert same.tasks[1].end_time == same.start_time + timedelta(seconds=17)
        item = restored.get_protected_item(vault, *world.item_args("APP-ERP-01"))
        assert item.protection_state == "Protected"
        assert {j.scenario_name for j in restored.list_jobs(vault, {"jobstatus": "Succeeded"})} >= {
            "EnableDr", "PrimaryIrCompletion", "SecondaryIrCompletion"}

    def test_a_restored_backend_keeps_faults_and_stuck_jobs(self, world: World):
        world.backend.add_job_fault({"scenario": "AddProtectionProfile", "outcome": "Stuck"})
        world.backend.add_job_fault({"scenario": "TestFailover", "outcome": "Failed", "count": 0})
        job = world.create_policy()
        world.advance(600)
        restored = ArmBackend.from_dict(world.backend.to_dict(), world.estate, world.clock, BASE_URL)
        world.clock.advance(600)
        restored.settle()
        vault = restored.vault_by_id(world.vault.id)
        assert restored.get_job(vault, job.name).state == "InProgress"
        assert [f["scenario"] for f in restored.list_job_faults()] == ["TestFailover"]


    def test_a_job_failing_after_a_restart_rolls_its_item_back(self, world: World):
        world.configured()
        world.protected("APP-ERP-01")
        world.backend.add_job_fault({"scenario": "PlannedFailover", "outcome": "Failed", "task": 2})
        world.backend.planned_failover(world.vault, *world.item_args("APP-ERP-01"), {})
        world.advance(5)
        saved = json.loads(json.dumps(world.backend.to_dict()))
        restored = ArmBackend.from_dict(saved, world.estate, world.clock, BASE_URL)
        world.clock.advance(3600)
        restored.settle()
        vault = restored.vault_by_id(world.vault.id)
        item = restored.get_protected_item(vault, *world.item_args("APP-ERP-01"))
        assert (item.protection_state, item.scenario, item.scenario_start) == ("Protected", "None", None)
        assert item.replicating_since.tzinfo is not None


class TestJobActions:
    def test_cancel_stops_the_job_and_answers_an_operation(self, world: World):
        world.backend.add_job_fault({"scenario": "AddProtectionProfile", "outcome": "Stuck"})
        job = world.create_policy()
        world.advance(60)
        assert job.state == "InProgress" and job.tasks[1].state == "InProgress"
        cancelled, operation = world.backend.cancel_job(world.vault, job.name)
        assert cancelled is job and operation.job == job.name
        assert (job.state, job.tasks[1].state) == ("Cancelled", "Cancelled")
        assert job.end_time == world.clock.now()
        assert world.backend.operation(world.vault, operation.id) is operation
        with pytest.raises(AsrError) as again:
            world.backend.cancel_job(world.vault, job.name)
        assert again.value.code == "562"

    def test_restart_replays_the_request_as_a_new_job(self, world: World):
        world.backend.add_job_fault({"scenario": "AddProtectionProfile", "outcome": "Failed"})
        failed = world.create_policy()
        world.finish()
        assert failed.state == "Failed"
        rerun = world.backend.restart_job(world.vault, failed.name)
        assert rerun.name != failed.name and rerun.scenario_name == "AddProtectionProfile"
        world.finish()
        assert rerun.state == "Succeeded" and world.backend.get_policy(world.vault, "Gold-5min")
        with pytest.raises(AsrError):
            world.backend.restart_job(world.vault, rerun.name)

    def test_suspended_job_waits_for_resume(self, world: World):
        world.backend.add_job_fault({"scenario": "AddProtectionProfile", "outcome": "Suspended", "task": 0})
        job = world.create_policy()
        world.advance(3600)
        assert (job.state, job.state_description) == ("Suspended", "WaitingForManualAction")
        assert job.allowed_actions == ["Cancel", "Resume"]
        world.backend.resume_job(world.vault, job.name, {"properties": {"comments": "checked"}})
        assert job.tasks[0].state == "Succeeded" and job.tasks[1].state == "InProgress"
        world.finish()
        assert job.state == "Succeeded"


class TestFaults:
    def test_failed_fault_fails_the_planned_task_with_asr_error_details(self, world: World):
        error = {"code": "150261", "message": "Replication policy creation failed.",
                 "possibleCauses": "The VMM server didn't answer.", "recommendedAction": "Retry.",
                 "providerErrorCode": 31389}
        fault = world.backend.add_job_fault({"scenario": "AddProtectionProfile", "outcome": "Failed", "error": error})
        assert fault["id"] and fault["remaining"] == 1
        job = world.create_policy()
        world.finish()
        assert (job.state, [t.state for t in job.tasks]) == ("Failed", ["Succeeded", "Failed"])
        [detail] = job.errors
        assert detail["serviceErrorDetails"]["code"] == "150261"
        assert detail["serviceErrorDetails"]["possibleCauses"] == "The VMM server didn't answer."
        assert detail["providerErrorDetails"]["errorCode"] == 31389
        assert detail["errorLevel"] == "Error" and detail["taskId"] == job.tasks[1].task_id
        assert "errorCode" not in detail and "errorMessage" not in detail
        assert job.tasks[1].errors == job.errors
        assert world.backend.list_job_faults() == []  # count 1: consumed
        assert not world.vault.policies

    def test_fault_targets_and_counts(self, world: World):
        world.backend.add_job_fault({"scenario": "addprotectionprofile", "target": "silver", "outcome": "Failed",
                                     "count": 0})
        gold, silver, silver2 = world.create_policy("Gold"), world.create_policy("Silver-15m"), world.create_policy("silver-30s")
        world.finish()
        assert [j.state for j in (gold, silver, silver2)] == ["Succeeded", "Failed", "Failed"]
        assert world.backend.list_job_faults()[0]["matched"] == 2

    def test_partially_succeeded_is_a_succeeded_job_with_warnings(self, world: World):
        world.backend.add_job_fault({"scenario": "AddProtectionProfile", "outcome": "PartiallySucceeded"})
        job = world.create_policy()
        world.finish()
        assert (job.state, job.state_description) == ("Succeeded", "PartiallySucceeded")
        assert job.tasks[-1].state_description == "CompletedWithInformation"
        assert job.errors[0]["errorLevel"] == "Warning"
        assert world.backend.get_policy(world.vault, "Gold-5min")  # the effects did happen

    def test_cancelled_fault_ends_the_job_cancelled(self, world: World):
        world.backend.add_job_fault({"scenario": "AddProtectionProfile", "outcome": "Cancelled", "task": 0})
        job = world.create_policy()
        world.finish()
        assert job.state == "Cancelled"
        assert [(t.state, t.state_description) for t in job.tasks] == [("Cancelled", "Cancelled"),
                                                                        ("Other", "Skipped")]
        assert not world.vault.policies

    def test_stuck_job_never_finishes_until_cancelled(self, world: World):
        world.backend.add_job_fault({"scenario": "AddProtectionProfile", "outcome": "Stuck"})
        job = world.create_policy()
        world.advance(30 * 24 * 3600)
        assert job.state == "InProgress" and job.tasks[-1].state == "InProgress"
        assert world.backend.runner.next_due() is None
        summary = world.backend.summary()
        assert [j["scenario"] for j in summary["inFlightJobs"]] == ["AddProtectionProfile"]

    @pytest.mark.parametrize(("spec", "complaint"), [
        ({"outcome": "Failed"}, "scenario"),
        ({"scenario": "TestFailover", "outcome": "Exploded"}, "outcome"),
        ({"scenario": "TestFailover", "count": -1}, "count"),
        ({"scenario": "TestFailover", "error": {"message": "no code"}}, "error"),
        ({"scenario": "TestFailover", "colour": "red"}, "colour"),
    ])
    def test_bad_fault_specs_are_refused_naming_the_key(self, world: World, spec, complaint):
        with pytest.raises(ValueError, match=complaint):
            world.backend.add_job_fault(spec)

    def test_clear_removes_all_faults(self, world: World):
        world.backend.add_job_fault({"scenario": "TestFailover", "outcome": "Failed"})
        world.backend.clear_job_faults()
        assert world.backend.list_job_faults() == []
