"""Cloud pairing and VM network mapping: the recorded jobs, the results, the refusals."""

from __future__ import annotations

import pytest

from asr_lab.arm import views
from asr_lab.arm.errors import AsrError
from asr_lab.arm.state import ContainerMapping
from tests.lab.test_arm_world import World


@pytest.fixture
def world() -> World:
    w = World()
    w.create_policy()
    w.finish()
    return w


def container_view(world: World, fabric: str, cloud: str) -> dict:
    found = world.backend.get_container(world.vault, fabric, world.cloud(cloud))
    return views.container_json(world.backend, world.vault, found)["properties"]


class TestCloudPairing:
    def test_pairing_runs_the_recorded_associate_job(self, world: World):
        job = world.pair()
        assert (job.scenario_name, job.friendly_name, job.target_object_name) == (
            "AssociateProtectionProfile", "Associate replication policy", "Gold-5min")
        assert [t.task_id for t in job.tasks] == [
            "CloudPairingWfPreflightChecksTask", "CloudPairingWfPrepareSiteTask",
            "CloudPairingWfPrepareCloudForPairingTask", "CloudPairingWfPairCloudsTask"]
        assert [t.friendly_name for t in job.tasks] == [
            "Check protection prerequisites", "Prepare the server", "Prepare for configuring protection",
            "Configure the protection settings"]
        assert job.affected["primaryCloudName"] == "Gold-Prod" and job.affected["recoveryCloudName"] == "Gold-DR"
        assert job.affected["primaryFabricProviderId"] == job.affected["recoveryFabricProviderId"] == "VMM"
        assert not world.vault.container_mappings  # it exists once the job succeeds
        world.finish()
        [mapping] = world.backend.list_container_mappings(world.vault)
        body = views.container_mapping_json(world.backend, world.vault, mapping)["properties"]
        assert (body["state"], body["policyFriendlyName"], body["targetProtectionContainerFriendlyName"]) == (
            "Paired", "Gold-5min", "Gold-DR")
        assert container_view(world, world.primary, "Gold-Prod")["role"] == "Primary"
        assert container_view(world, world.recovery, "Gold-DR")["role"] == "Recovery"
        assert container_view(world, world.primary, "Silver-Prod")["pairingStatus"] == "NotPaired"

    def test_repeating_the_same_pairing_answers_the_mapping(self, world: World):
        world.pair()
        world.finish()
        jobs = len(world.vault.jobs)
        assert isinstance(world.pair(), ContainerMapping) and len(world.vault.jobs) == jobs

    def test_a_missing_policy_is_refused(self, world: World):
        with pytest.raises(AsrError) as refused:
            world.pair(policy="Silver-15min")
        assert refused.value.code == "28050" and "Silver-15min" in refused.value.message

    def test_a_cloud_cannot_be_its_own_recovery_cloud(self, world: World):
        gold = world.cloud("Gold-Prod")
        body = {"properties": {
            "targetProtectionContainerId": world.asr_id(
                f"replicationFabrics/{world.primary}/replicationProtectionContainers/{gold}"),
            "policyId": world.asr_id("replicationPolicies/Gold-5min")}}
        with pytest.raises(AsrError) as refused:
            world.backend.create_container_mapping(world.vault, world.primary, gold, "self", body)
        assert refused.value.code == "25044"

    def test_a_cloud_pairs_once(self, world: World):
        world.pair()
        with pytest.raises(AsrError) as pending:  # the first pairing is still running
            world.pair(recovery_cloud="Silver-DR", name="second")
        assert pending.value.code == "25042"
        world.finish()
        with pytest.raises(AsrError) as paired:
            world.pair(recovery_cloud="Silver-DR", name="second")
        assert "Gold-DR" in paired.value.rendered["possibleCauses"]
        with pytest.raises(AsrError) as taken:
            world.pair(cloud="Silver-Prod", recovery_cloud="Gold-DR", name="third")
        assert taken.value.code == "25044"

    def test_an_unknown_recovery_cloud_is_refused(self, world: World):
        body = {"properties": {"targetProtectionContainerId": "/Subscriptions/x/replicationFabrics/f/"
                                                              "replicationProtectionContainers/c",
                               "policyId": world.asr_id("replicationPolicies/Gold-5min")}}
        with pytest.raises(AsrError) as refused:
            world.backend.create_container_mapping(world.vault, world.primary, world.cloud("Gold-Prod"), "m", body)
        assert refused.value.code == "25043"

    def test_a_pairing_in_use_cannot_be_removed_but_can_be_purged(self, world: World):
        world.pair()
        world.finish()
        world.protected("APP-ERP-01")
        args = (world.vault, world.primary, world.cloud("Gold-Prod"), "gold-prod-to-gold-dr")
        with pytest.raises(AsrError) as refused:
            world.backend.remove_container_mapping(*args)
        assert refused.value.code == "25048"
        job = world.backend.remove_container_mapping(*args, purge=True)
        assert job.scenario_name == "DissociateProtectionProfile" and job.result == "none"
        world.finish()
        assert not world.vault.container_mappings


class TestNetworkMapping:
    def test_mapping_runs_the_recorded_network_pairing_job(self, world: World):
        job = world.map_network()
        assert (job.scenario_name, job.friendly_name, job.target_instance_type, job.target_object_name) == (
            "NetworkPairing", "Map Networks", "Network", "Prod-App")
        world.finish()
        assert [(t.name, t.state, t.state_description) for t in job.tasks] == [
            ("ModifyVMNetworksPairingStatusTask", "Succeeded", "Completed"),
            ("VMNetworksUpdateVMNicsTask", "Other", "Skipped")]
        assert job.tasks[1].task_type == "GroupTaskDetails"
        [mapping] = world.backend.list_network_mappings(world.vault)
        body = views.network_mapping_json(world.backend, world.vault, mapping)["properties"]
        assert body["state"] == "Paired" and body["fabricSpecificSettings"] == {"instanceType": "VmmToVmm"}
        assert (body["primaryNetworkFriendlyName"], body["recoveryNetworkFriendlyName"]) == ("Prod-App", "DR-App")

    def test_a_network_maps_to_one_recovery_network(self, world: World):
        world.map_network()
        world.finish()
        with pytest.raises(AsrError) as refused:
            world.map_network(recovery_network="DR-Data", name="other")
        assert refused.value.code == "23003"

    def test_only_vmm_to_vmm_mappings_to_known_networks(self, world: World):
        recovery = world.asr_id(f"replicationFabrics/{world.recovery}/replicationNetworks/{world.network('DR-App')}")
        bodies = [
            {"properties": {"recoveryNetworkId": recovery, "fabricSpecificDetails": {"instanceType": "VmmToAzure"}}},
            {"properties": {"recoveryNetworkId": recovery.replace(world.network("DR-App"), world.network("Prod-DMZ"))}},
            {"properties": {}},
        ]
        codes = []
        for body in bodies:
            with pytest.raises(AsrError) as refused:
                world.backend.create_network_mapping(world.vault, world.primary, world.network("Prod-App"), "m", body)
            codes.append(refused.value.code)
        assert codes == ["506", "23001", "506"]

    def test_deleting_a_mapping(self, world: World):
        world.map_network()
        world.finish()
        job = world.backend.delete_network_mapping(world.vault, world.primary, world.network("Prod-App"),
                                                   "prod-app-to-dr-app")
        assert job.result == "none"
        world.finish()
        assert not world.vault.network_mappings
