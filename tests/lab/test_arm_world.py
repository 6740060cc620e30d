"""The estate, provider registration, and ``World``: the in-process set-up the ARM tests share.

``World`` drives ``ArmBackend`` the way the SDK would (verbs with request bodies) on a
``ManualClock``, so state-model tests read as the DR runbook: vault, register, policy,
pair, map, enable, drill. Nothing sleeps; ``finish()`` jumps the clock from one due
instant to the next.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asr_lab.arm.errors import ArmError
from asr_lab.arm.jobs import Job
from asr_lab.arm.models import ArmBackend
from asr_lab.arm.state import ProtectedItem
from asr_lab.clock import ManualClock
from asr_lab.estate import DEFAULT_ESTATE, load_estate

BASE_URL = "https://127.0.0.1:8443"
RESOURCE_GROUP = "rg-dr-weu"
VAULT = "rsv-dr-weu-01"
POLICY = "Gold-5min"

#: the policy body New-AzRecoveryServicesAsrPolicy -VmmToVmm sends (values as in the docs)
POLICY_INPUT = {
    "instanceType": "HyperVReplica2012R2", "replicationFrequencyInSeconds": 300, "recoveryPoints": 24,
    "applicationConsistentSnapshotFrequencyInHours": 4, "compression": "Enable",
    "initialReplicationMethod": "OverNetwork", "onlineReplicationStartTime": "", "replicationPort": 8083,
    "allowedAuthenticationType": 1, "replicaDeletion": "Required",
}


class World:
    """An estate with a vault and both VMM servers registered, on a manual clock."""

    def __init__(self, scale: float = 1.0) -> None:
        self.estate = load_estate()
        self.clock = ManualClock(scale=scale)
        self.backend = ArmBackend(self.estate, self.clock, BASE_URL)
        self.vault, _ = self.backend.create_or_update_vault(
            self.estate.subscription_id, RESOURCE_GROUP, VAULT, {"location": "westeurope"})
        self.primary = self.backend.register_provider(self.vault.id, self.estate.primary.vmm.fqdn)["fabric"]
        self.recovery = self.backend.register_provider(self.vault.id, self.estate.recovery.vmm.fqdn)["fabric"]

    # -- time -------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.backend.settle()

    def finish(self, limit: int = 1000) -> None:
        """Jump from due instant to due instant until no job is scheduled."""
        for _ in range(limit):
            due = self.backend.runner.next_due()
            if due is None:
                return
            wait = max(0.0, due - self.clock.now().timestamp())
            self.advance(wait)
        raise AssertionError("jobs kept being scheduled")

    # -- estate names -----------------------------------------------------------------------
    def cloud(self, name: str) -> str:
        for site in self.estate.sites:
            for cloud in site.clouds:
                if cloud.name == name:
                    return cloud.id
        raise KeyError(name)

    def network(self, name: str) -> str:
        for site in self.estate.sites:
            for network in site.networks:
                if network.name == name:
                    return network.id
        raise KeyError(name)

    def vm(self, name: str):
        return next(vm for vm in self.estate.primary.vms if vm.name == name)

    def asr_id(self, path: str) -> str:
        return self.backend.asr_id(self.vault, path)

    # -- the runbook, one step each -----------------------------------------------------------
    def create_policy(self, name: str = POLICY, **overrides) -> Job:
        body = {"properties": {"providerSpecificInput": {**POLICY_INPUT, **overrides}}}
        return self.backend.create_policy(self.vault, name, body)

    def pair(self, cloud: str = "Gold-Prod", recovery_cloud: str = "Gold-DR", policy: str = POLICY,
             name: str = "gold-prod-to-gold-dr"):
        target = self.asr_id(f"replicationFabrics/{self.recovery}/replicationProtectionContainers/"
                             f"{self.cloud(recovery_cloud)}")
        body = {"properties": {"targetProtectionContainerId": target,
                               "policyId": self.asr_id(f"replicationPolicies/{policy}"),
                               "providerSpecificInput": {"instanceType": "ReplicationProviderSpecificContainerMappingInput"}}}
        return self.backend.create_container_mapping(self.vault, self.primary, self.cloud(cloud), name, body)

    def map_network(self, network: str = "Prod-App", recovery_network: str = "DR-App", name: str = "prod-app-to-dr-app"):
        body = {"properties": {
            "recoveryFabricName": self.recovery,
            "recoveryNetworkId": self.asr_id(f"replicationFabrics/{self.recovery}/replicationNetworks/"
                                             f"{self.network(recovery_network)}"),
            "fabricSpecificDetails": {"instanceType": "VmmToVmm"}}}
        return self.backend.create_network_mapping(self.vault, self.primary, self.network(network), name, body)

    def enable(self, vm_name: str, cloud: str = "Gold-Prod", policy: str = POLICY) -> Job:
        vm = self.vm(vm_name)
        container = self.cloud(cloud)
        body = {"properties": {
            "policyId": self.asr_id(f"replicationPolicies/{policy}"),
            "protectableItemId": self.asr_id(f"replicationFabrics/{self.primary}/replicationProtectionContainers/"
                                             f"{container}/replicationProtectableItems/{vm.id}"),
            "providerSpecificDetails": {"instanceType": "EnableProtectionProviderSpecificInput"}}}
        return self.backend.enable_protection(self.vault, self.primary, container, vm.id, body)

    def item(self, vm_name: str, cloud: str = "Gold-Prod") -> ProtectedItem:
        return self.backend.get_protected_item(self.vault, self.primary, self.cloud(cloud), self.vm(vm_name).id)

    def item_args(self, vm_name: str, cloud: str = "Gold-Prod") -> tuple[str, str, str]:
        return self.primary, self.cloud(cloud), self.vm(vm_name).id

    def configured(self) -> World:
        """Policy, Gold pairing and the Prod-App network mapping, all finished."""
        self.create_policy()
        self.finish()
        self.pair()
        self.finish()
        self.map_network()
        self.finish()
        return self

    def protected(self, vm_name: str = "APP-ERP-01") -> ProtectedItem:
        self.enable(vm_name)
        self.finish()
        return self.item(vm_name)

    def test_failover_body(self, network: str | None = "DR-Drill-Isolated") -> dict:
        props = {"failoverDirection": "PrimaryToRecovery", "networkType": "NoNetworkAttachAsInput",
                 "providerSpecificDetails": {"instanceType": "ProviderSpecificFailoverInput"}}
        if network:
            props.update(networkType="VmNetworkAsInput",
                         networkId=self.asr_id(f"replicationFabrics/{self.recovery}/replicationNetworks/"
                                               f"{self.network(network)}"))
        return {"properties": props}


@pytest.fixture
def world() -> World:
    return World()


class TestEstate:
    def test_packaged_estate_describes_two_vmm_sites(self):
        estate = load_estate()
        assert estate.primary.name == "Amsterdam DC" and estate.recovery.name == "Rotterdam DC"
        assert [c.name for c in estate.primary.clouds] == ["Gold-Prod", "Silver-Prod"]
        assert [c.name for c in estate.recovery.clouds] == ["Gold-DR", "Silver-DR"]
        assert len(estate.primary.vms) >= 12 and not estate.recovery.vms
        assert any(n.purpose == "drill" for n in estate.recovery.networks)
        assert "rg-dr-weu" in estate.resource_groups

    def test_some_vms_cannot_be_replicated_for_hyper_v_reasons(self):
        blocked = {vm.name: vm.readiness_errors() for vm in load_estate().primary.vms if vm.readiness_errors()}
        assert set(blocked) == {"SQL-FCI-01", "SQL-FCI-02", "MES-HIST-01", "BACKUP-MEDIA-01"}
        assert "shared" in blocked["SQL-FCI-01"][0] and "pass-through" in blocked["MES-HIST-01"][0]
        assert "Fibre Channel" in blocked["BACKUP-MEDIA-01"][0]

    def test_vms_list_what_their_guests_listen_on(self):
        vms = {vm.name: vm for vm in load_estate().primary.vms}
        assert [(s.port, s.kind, s.status) for s in vms["SQL-PRD-01"].services] == [(1433, "tcp", None)]
        assert [(s.port, s.kind, s.status) for s in vms["WEB-PORTAL-01"].services] == [
            (80, "http", 200), (443, "tcp", None)]
        assert vms["APP-ERP-02"].service(8080).status == 503 and vms["SQL-PRD-01"].service(80) is None
        assert vms["BACKUP-MEDIA-01"].services == []  # optional

    @pytest.mark.parametrize(("services", "message"), [
        ([{"port": 80, "kind": "http"}], None),  # an http service answers 200 unless told otherwise
        ([{"port": 1433}, {"port": 1433, "kind": "http"}], "services.1.port: port 1433 is listed twice"),
        ([{"port": 1433, "kind": "tcp", "status": 200}], "only http services answer with a status"),
        ([{"port": 0}], "greater than or equal to 1"),
        ([{"port": 80, "kind": "udp"}], "Input should be 'tcp' or 'http'"),
        ([{"port": 80, "kind": "http", "status": 700}], "less than or equal to 599"),
    ])
    def test_services_are_validated(self, tmp_path: Path, services, message):
        raw = yaml.safe_load(DEFAULT_ESTATE.read_text())
        raw["sites"][0]["vms"][3]["services"] = services
        path = tmp_path / "estate.yaml"
        path.write_text(yaml.safe_dump(raw))
        if message is None:
            assert load_estate(path).primary.vms[3].service(80).status == 200
            return
        with pytest.raises(ValueError, match=r"sites\.0\.vms\.3") as failure:
            load_estate(path)
        assert message in str(failure.value)

    @pytest.mark.parametrize(("edit", "field"), [
        (lambda raw: raw["sites"][0]["vms"][0].update(cloud="Platinum"), "sites.0: vms.0.cloud"),
        (lambda raw: raw.update(subscription_id="not-a-guid"), "subscription_id"),
        (lambda raw: raw["sites"][1]["clouds"][0].update(id=raw["sites"][0]["clouds"][0]["id"]),
         "sites.1.clouds.0.id"),
        (lambda raw: raw["sites"][0]["hosts"][0].update(fqdn="hv ams 01"), "sites.0.hosts.0.fqdn"),
        (lambda raw: raw.pop("tenant_id"), "tenant_id"),
    ])
    def test_a_bad_estate_file_names_the_field(self, tmp_path: Path, edit, field):
        raw = yaml.safe_load(DEFAULT_ESTATE.read_text())
        edit(raw)
        path = tmp_path / "estate.yaml"
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            load_estate(path)

    def test_an_unreadable_file_is_a_value_error(self, tmp_path: Path):
        with pytest.raises(ValueError, match="cannot read estate"):
            load_estate(tmp_path / "missing.yaml")


class TestProviderRegistration:
    def test_registration_makes_the_vmm_server_a_fabric(self, world: World):
        fabric = world.backend.get_fabric(world.vault, world.primary)
        assert len(fabric.name) == 64 and int(fabric.name, 16) >= 0
        assert fabric.vmm_fqdn == "vmm-ams-01.corp.meridianpack.nl"
        clouds = [c.cloud.name for c in world.backend.list_containers(world.vault, world.primary)]
        assert clouds == ["Gold-Prod", "Silver-Prod"]
        assert [n.network.name for n in world.backend.list_networks(world.vault, world.recovery)] == [
            "DR-App", "DR-Data", "DR-DMZ", "DR-Drill-Isolated"]

    def test_registration_runs_a_register_dra_job_against_the_server(self, world: World):
        jobs = world.backend.list_jobs(world.vault, {"jobname": "RegisterDra"})
        assert {j.target_object_name for j in jobs} == {"vmm-ams-01.corp.meridianpack.nl",
                                                        "vmm-rtm-01.corp.meridianpack.nl"}
        assert all(j.target_instance_type == "Server" for j in jobs)
        world.finish()
        assert all(j.state == "Succeeded" for j in jobs)

    def test_registering_again_returns_the_fabric_without_a_new_job(self, world: World):
        before = len(world.vault.jobs)
        again = world.backend.register_provider(world.vault.id.upper(), "VMM-AMS-01.corp.meridianpack.nl")
        assert again["fabric"] == world.primary and again["created"] is False and again["job"] is None
        assert len(world.vault.jobs) == before

    def test_unknown_server_or_vault_is_refused(self, world: World):
        with pytest.raises(ArmError) as unknown_server:
            world.backend.register_provider(world.vault.id, "vmm-lon-01.corp.meridianpack.nl")
        assert unknown_server.value.status == 404
        with pytest.raises(ArmError) as unknown_vault:
            world.backend.register_provider(world.vault.id + "x", world.estate.primary.vmm.fqdn)
        assert unknown_vault.value.code == "ResourceNotFound"
