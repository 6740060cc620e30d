"""Replication policies: validated like the service, normalised on read like the service."""

from __future__ import annotations

import pytest

from asr_lab.arm import views
from asr_lab.arm.errors import AsrError
from tests.lab.test_arm_world import World


@pytest.fixture
def world() -> World:
    return World()


def details(world: World, name: str = "Gold-5min") -> dict:
    policy = world.backend.get_policy(world.vault, name)
    return views.policy_json(world.backend, world.vault, policy)["properties"]["providerSpecificDetails"]


class TestNormalisation:
    def test_the_recorded_policy_reads_back_as_recorded(self, world: World):
        # TestCreatePolicy: input 30 s / 1 point / 0 h / Disable / Required ...
        job = world.create_policy("E2EPolicy1", replicationFrequencyInSeconds=30, recoveryPoints=1,
                                  applicationConsistentSnapshotFrequencyInHours=0, compression="Disable",
                                  replicaDeletion="Required")
        assert [t.task_id for t in job.tasks] == ["AddProtectionProfilePreflightsCheckTask", "AddProtectionProfileTask"]
        assert (job.scenario_name, job.friendly_name, job.target_instance_type) == (
            "AddProtectionProfile", "Create replication policy", "ProtectionProfile")
        world.finish()
        # ... and the service answered exactly this.
        assert details(world, "E2EPolicy1") == {
            "instanceType": "HyperVReplica2012R2", "replicationFrequencyInSeconds": 30, "recoveryPoints": 1,
            "applicationConsistentSnapshotFrequencyInHours": 0, "compression": "Disabled",
            "initialReplicationMethod": "OverNetwork", "offlineReplicationImportPath": "",
            "offlineReplicationExportPath": "", "replicationPort": 8083, "allowedAuthenticationType": 1,
            "replicaDeletionOption": "SecondaryVMOnRecoveryCloud",
        }

    def test_enable_compression_not_required_deletion_and_a_start_time(self, world: World):
        world.create_policy(compression="Enable", replicaDeletion="NotRequired", onlineReplicationStartTime="22:30:00")
        world.finish()
        out = details(world)
        assert (out["compression"], out["replicaDeletionOption"]) == ("Enabled", "None")
        assert out["onlineReplicationStartTime"] == "22:30:00"
        assert "replicaDeletion" not in out

    def test_defaults_fill_what_the_input_leaves_out(self, world: World):
        body = {"properties": {"providerSpecificInput": {
            "instanceType": "HyperVReplica2012R2", "replicationFrequencyInSeconds": 900, "replicationPort": 8083}}}
        world.backend.create_policy(world.vault, "minimal", body)
        world.finish()
        out = details(world, "minimal")
        assert (out["recoveryPoints"], out["compression"], out["allowedAuthenticationType"],
                out["replicaDeletionOption"]) == (0, "Disabled", 1, "None")

    def test_a_2012_policy_has_no_replication_frequency(self, world: World):
        world.create_policy("legacy", instanceType="HyperVReplica2012", recoveryPoints=15,
                            applicationConsistentSnapshotFrequencyInHours=1)
        world.finish()
        out = details(world, "legacy")
        assert out["instanceType"] == "HyperVReplica2012" and "replicationFrequencyInSeconds" not in out


class TestValidation:
    @pytest.mark.parametrize(("overrides", "cause"), [
        ({"replicationFrequencyInSeconds": 60}, "replication frequency 60 seconds"),
        ({"replicationFrequencyInSeconds": None}, "replicationFrequencyInSeconds is missing"),
        ({"replicationPort": None}, "replicationPort is missing"),
        ({"replicationPort": 70000}, "replicationPort is out of range"),
        ({"recoveryPoints": 25}, "recoveryPoints is out of range"),
        ({"applicationConsistentSnapshotFrequencyInHours": 13}, "applicationConsistentSnapshotFrequencyInHours"),
        ({"recoveryPoints": 2, "applicationConsistentSnapshotFrequencyInHours": 4}, "can't be greater"),
        ({"compression": "Enabled"}, "compression"),
        ({"initialReplicationMethod": "Offline"}, "Offline initial replication"),
        ({"allowedAuthenticationType": 3}, "allowedAuthenticationType"),
        ({"replicaDeletion": "Yes"}, "replicaDeletion"),
        ({"onlineReplicationStartTime": "tonight"}, "time span"),
    ])
    def test_bad_values_fail_the_job_at_its_prerequisites_check(self, world: World, overrides, cause):
        job = world.create_policy(**overrides)
        world.finish()
        assert job.state == "Failed" and job.tasks[0].state == "Failed"
        assert job.tasks[1].state_description == "Skipped"
        service = job.errors[0]["serviceErrorDetails"]
        assert (service["code"], service["message"]) == ("150261", "Replication policy creation failed.")
        assert cause in service["possibleCauses"]
        assert not world.vault.policies

    @pytest.mark.parametrize("body", [
        {},
        {"properties": {}},
        {"properties": {"providerSpecificInput": {"instanceType": "HyperVReplicaAzure"}}},
        {"properties": {"providerSpecificInput": "HyperVReplica2012R2"}},
    ])
    def test_a_malformed_request_is_refused_at_once(self, world: World, body):
        with pytest.raises(AsrError) as refused:
            world.backend.create_policy(world.vault, "bad", body)
        assert refused.value.status == 400 and refused.value.code == "506"
        assert not world.vault.jobs or all(j.scenario_name == "RegisterDra" for j in world.vault.jobs.values())


class TestUpdateAndDelete:
    def test_patch_changes_only_what_it_names(self, world: World):
        world.create_policy()
        world.finish()
        body = {"properties": {"replicationProviderSettings": {"instanceType": "HyperVReplica2012R2",
                                                              "replicationFrequencyInSeconds": 30}}}
        job = world.backend.update_policy(world.vault, "Gold-5min", body)
        assert job.scenario_name == "UpdateProtectionProfile"
        world.finish()
        out = details(world)
        assert (out["replicationFrequencyInSeconds"], out["recoveryPoints"]) == (30, 24)

    def test_the_replication_provider_of_a_policy_cannot_change(self, world: World):
        world.create_policy()
        world.finish()
        body = {"properties": {"replicationProviderSettings": {"instanceType": "HyperVReplica2012"}}}
        with pytest.raises(AsrError, match="invalid parameter instanceType"):
            world.backend.update_policy(world.vault, "Gold-5min", body)

    def test_a_policy_in_use_cannot_be_deleted(self, world: World):
        world.create_policy()
        world.finish()
        world.pair()
        world.finish()
        with pytest.raises(AsrError) as refused:
            world.backend.delete_policy(world.vault, "Gold-5min")
        assert refused.value.code == "28052" and "Gold-Prod" in refused.value.rendered["possibleCauses"]

    def test_delete_removes_the_policy_when_its_job_succeeds(self, world: World):
        world.create_policy()
        world.finish()
        job = world.backend.delete_policy(world.vault, "GOLD-5MIN")
        assert job.result == "none" and world.vault.policies
        world.finish()
        assert not world.vault.policies
