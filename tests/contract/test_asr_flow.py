"""The VMM-to-VMM runbook with the real SDK clients: every step returns the models and jobs
the real service would, through the SDK's own polling and paging.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.recoveryservices import models as rs_models
from azure.mgmt.recoveryservicessiterecovery import models
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.labflows import POLICY, Runbook

pytestmark = pytest.mark.lab


def _self_signed_der() -> bytes:
    """What Windows PowerShell uploads: a short-lived self-signed certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Windows Azure Tools")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + timedelta(days=5)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


class TestVault:
    def test_create_get_and_list(self, runbook: Runbook):
        vault = runbook.create_vault()
        assert isinstance(vault, rs_models.Vault)
        assert vault.properties.provisioning_state == "Succeeded"
        assert (vault.location, vault.sku.name, vault.type) == ("westeurope", "RS0", "Microsoft.RecoveryServices/vaults")
        assert vault.id.startswith("/subscriptions/") and vault.id.endswith("/vaults/rsv-dr-weu-01")
        assert runbook.rsv.vaults.get(runbook.rg, runbook.vault_name).id == vault.id
        assert [v.name for v in runbook.rsv.vaults.list_by_resource_group(runbook.rg)] == ["rsv-dr-weu-01"]
        again = runbook.create_vault()  # PUT is idempotent
        assert again.id == vault.id

    def test_vault_credentials_certificate_and_integrity_key(self, runbook: Runbook):
        runbook.create_vault()
        der = _self_signed_der()
        name = f"{runbook.vault_name}{runbook.lab['subscription_id']}-11-25-2026-vaultcredentials"
        response = runbook.rsv.vault_certificates.create(
            runbook.rg, runbook.vault_name, name,
            {"properties": {"authType": "AAD", "certificate": base64.b64encode(der).decode()}})
        assert isinstance(response, rs_models.VaultCertificateResponse)
        details = response.properties
        assert isinstance(details, rs_models.ResourceCertificateAndAadDetails)
        assert details.auth_type == "AzureActiveDirectory"
        assert details.thumbprint == hashlib.sha1(der).hexdigest().upper()
        assert details.aad_tenant_id == runbook.lab["tenant_id"] and details.resource_id > 0
        assert details.certificate == der
        assert details.valid_to - details.valid_from <= timedelta(days=5, minutes=10)

        with pytest.raises(ResourceNotFoundError):
            runbook.rsv.vault_extended_info.get(runbook.rg, runbook.vault_name)
        created = runbook.rsv.vault_extended_info.create_or_update(
            runbook.rg, runbook.vault_name, {"properties": {"integrityKey": "J99wzS27fmJ+Wjot7xO5wA==",
                                                            "algorithm": "None"}})
        assert (created.properties.algorithm, created.name) == ("None", "vaultExtendedInfo")
        read = runbook.rsv.vault_extended_info.get(runbook.rg, runbook.vault_name)
        assert read.properties.integrity_key == "J99wzS27fmJ+Wjot7xO5wA=="

    def test_a_certificate_is_issued_when_none_is_uploaded(self, runbook: Runbook):
        runbook.create_vault()
        response = runbook.rsv.vault_certificates.create(runbook.rg, runbook.vault_name, "core", {"properties": {}})
        assert response.properties.certificate and len(response.properties.thumbprint) == 40


class TestRegisteredServers:
    def test_fabrics_providers_clouds_and_networks(self, runbook: Runbook):
        runbook.create_vault()
        runbook.register()
        asr, rg, name = runbook.asr, runbook.rg, runbook.vault_name
        fabrics = {f.properties.friendly_name: f for f in asr.replication_fabrics.list(rg, name)}
        assert set(fabrics) == {"vmm-ams-01.corp.meridianpack.nl", "vmm-rtm-01.corp.meridianpack.nl"}
        primary = fabrics["vmm-ams-01.corp.meridianpack.nl"]
        assert isinstance(primary.properties.custom_details, models.VmmDetails)
        assert len(primary.name) == 64 and primary.id.startswith("/Subscriptions/")
        [provider] = asr.replication_recovery_services_providers.list_by_replication_fabrics(rg, name, primary.name)
        assert provider.name == primary.properties.internal_identifier
        assert (provider.properties.connection_status, provider.properties.fabric_type) == ("Connected", "VMM")
        assert provider.properties.server_version == "4.1.3324.0"
        clouds = asr.replication_protection_containers.list_by_replication_fabrics(rg, name, primary.name)
        assert {(c.properties.friendly_name, c.properties.pairing_status) for c in clouds} == {
            ("Gold-Prod", "NotPaired"), ("Silver-Prod", "NotPaired")}
        assert len(list(asr.replication_protection_containers.list(rg, name))) == 4
        drill = runbook.network(runbook.recovery, "DR-Drill-Isolated")
        assert drill.properties.subnets[0].address_list == ["192.168.250.0/24"]
        assert asr.replication_fabrics.get(rg, name, primary.name).name == primary.name


class TestReplicationSetup:
    def test_policy_is_created_by_a_job_and_read_back_normalised(self, runbook: Runbook):
        runbook.create_vault()
        poller, job_name = runbook.create_policy()
        policy = poller.result()
        assert isinstance(policy, models.Policy) and policy.name == POLICY
        details = policy.properties.provider_specific_details
        assert isinstance(details, models.HyperVReplicaBluePolicyDetails)
        assert (details.compression, details.replica_deletion_option, details.replication_frequency_in_seconds) == (
            "Enabled", "SecondaryVMOnRecoveryCloud", 300)
        job = runbook.job(job_name)
        assert isinstance(job, models.Job)
        assert (job.properties.scenario_name, job.properties.state, job.properties.target_object_name) == (
            "AddProtectionProfile", "Succeeded", POLICY)
        assert [t.task_id for t in job.properties.tasks] == [
            "AddProtectionProfilePreflightsCheckTask", "AddProtectionProfileTask"]

    def test_pairing_and_network_mapping(self, runbook: Runbook):
        runbook.create_vault()
        runbook.register()
        runbook.create_policy()[0].result()
        poller, job_name = runbook.pair()
        mapping = poller.result()
        assert isinstance(mapping, models.ProtectionContainerMapping)
        assert (mapping.properties.state, mapping.properties.target_protection_container_friendly_name,
                mapping.properties.policy_friendly_name) == ("Paired", "Gold-DR", POLICY)
        job = runbook.job(job_name)
        assert job.properties.scenario_name == "AssociateProtectionProfile"
        assert [t.friendly_name for t in job.properties.tasks] == [
            "Check protection prerequisites", "Prepare the server", "Prepare for configuring protection",
            "Configure the protection settings"]
        assert job.properties.custom_details.affected_object_details["recoveryCloudName"] == "Gold-DR"
        gold = runbook.container(runbook.primary, "Gold-Prod")
        assert (gold.properties.pairing_status, gold.properties.role) == ("Paired", "Primary")

        poller, job_name = runbook.map_network()
        network_mapping = poller.result()
        assert isinstance(network_mapping, models.NetworkMapping)
        assert network_mapping.properties.state == "Paired"
        assert network_mapping.properties.fabric_specific_settings.instance_type == "VmmToVmm"
        assert runbook.job(job_name).properties.scenario_name == "NetworkPairing"
        assert len(list(runbook.asr.replication_network_mappings.list(runbook.rg, runbook.vault_name))) == 1

    def test_protectable_items_are_paged_and_explain_what_cannot_be_protected(self, runbook: Runbook):
        runbook.configured()
        container = runbook.container(runbook.primary, "Gold-Prod")
        pages = runbook.asr.replication_protectable_items.list_by_replication_protection_containers(
            runbook.rg, runbook.vault_name, runbook.primary, container.name).by_page()
        sizes, items = [], []
        for page in pages:
            chunk = list(page)
            sizes.append(len(chunk))
            items += chunk
        assert sizes == [5, 3]
        blocked = {i.properties.friendly_name: i.properties.protection_readiness_errors for i in items
                   if i.properties.protection_readiness_errors}
        assert set(blocked) == {"SQL-FCI-01", "SQL-FCI-02", "MES-HIST-01"}
        details = next(i for i in items if i.properties.friendly_name == "SQL-FCI-01").properties.custom_details
        assert isinstance(details, models.HyperVVirtualMachineDetails) and details.has_shared_vhd == "Present"


class TestProtection:
    def test_enable_replication(self, runbook: Runbook):
        runbook.configured()
        poller, job_name = runbook.enable("APP-ERP-01")
        item = poller.result()
        assert isinstance(item, models.ReplicationProtectedItem)
        assert (item.properties.friendly_name, item.properties.protection_state) == ("APP-ERP-01", "Protected")
        assert item.properties.allowed_operations == ["PlannedFailover", "UnplannedFailover", "DisableProtection",
                                                      "TestFailover"]
        details = item.properties.provider_specific_details
        assert isinstance(details, models.HyperVReplicaBlueReplicationDetails)
        assert details.last_replicated_time is not None and details.vm_nics[0].v_m_network_name == "Prod-App"
        job = runbook.job(job_name)
        assert [t.name for t in job.properties.tasks] == [
            "EnableProtectionPrerequisitesCheck", "CreateProtectionTarget", "EnableProtection",
            "VmStartInitialReplication", "UpdateDraState"]
        jobs = runbook.asr.replication_jobs.list(runbook.rg, runbook.vault_name, filter="jobName eq 'SecondaryIrCompletion'")
        assert [j.properties.target_object_name for j in jobs] == ["APP-ERP-01"]
        listed = runbook.asr.replication_protected_items.list(runbook.rg, runbook.vault_name)
        assert [i.properties.friendly_name for i in listed] == ["APP-ERP-01"]

    def test_test_failover_drill_and_cleanup(self, runbook: Runbook):
        runbook.configured()
        runbook.enable("APP-ERP-01")[0].result()
        args = runbook.item_args("APP-ERP-01")
        poller, job_name = runbook.begin(runbook.asr.replication_protected_items.begin_test_failover, *args,
                                         runbook.test_failover_input())
        item = poller.result()
        assert isinstance(item, models.ReplicationProtectedItem)
        assert (item.properties.test_failover_state, item.properties.allowed_operations) == (
            "WaitingForCompletion", ["TestFailoverCleanup"])
        assert item.properties.current_scenario.scenario_name == "TestFailover"
        job = runbook.job(job_name)
        assert job.properties.scenario_name == "TestFailover"
        assert [t.task_id for t in job.properties.tasks] == [
            "TestFailoverPreflightChecksTask", "BeginTestFailoverTask", "PrepareTestProtectedEntitiesTask",
            "BootTestProtectedEntitiesTask"]
        details = job.properties.custom_details
        assert isinstance(details, models.TestFailoverJobDetails)
        assert (details.network_friendly_name, details.protected_item_details[0].test_vm_friendly_name) == (
            "DR-Drill-Isolated", "APP-ERP-01 - Test")
        assert [vm["name"] for vm in runbook.lab.state()["testVms"]] == ["APP-ERP-01 - Test"]

        poller, job_name = runbook.begin(runbook.asr.replication_protected_items.begin_test_failover_cleanup, *args,
                                         {"properties": {"comments": "Quarterly drill: all checks green"}})
        item = poller.result()
        assert item.properties.allowed_operations[-1] == "TestFailover"
        assert item.properties.current_scenario.scenario_name == "None"
        assert item.properties.last_successful_test_failover_time is not None
        cleanup = runbook.job(job_name)
        assert cleanup.properties.scenario_name == "TestFailoverCleanup"
        assert cleanup.properties.custom_details.comments == "Quarterly drill: all checks green"
        assert runbook.lab.state()["testVms"] == []

    def test_planned_failover_commit_reprotect_and_disable(self, runbook: Runbook):
        runbook.configured()
        runbook.enable("APP-ERP-01")[0].result()
        args = runbook.item_args("APP-ERP-01")
        rpi = runbook.asr.replication_protected_items
        poller, job_name = runbook.begin(rpi.begin_planned_failover, *args, {"properties": {
            "failoverDirection": "PrimaryToRecovery", "providerSpecificDetails": {"instanceType": "ProviderSpecificFailoverInput"}}})
        item = poller.result()
        assert (item.properties.active_location, item.properties.protection_state_description) == (
            "Recovery", "Planned failover finished")  # recorded (TestReprotect)
        assert isinstance(runbook.job(job_name).properties.custom_details, models.FailoverJobDetails)

        poller, job_name = runbook.begin(rpi.begin_failover_commit, *args)
        assert poller.result().properties.protection_state_description == "Planned failover committed"
        assert runbook.job(job_name).properties.scenario_name == "CommitFailover"

        poller, job_name = runbook.begin(rpi.begin_reprotect, *args, {"properties": {
            "failoverDirection": "RecoveryToPrimary",
            "providerSpecificDetails": {"instanceType": "ReverseReplicationProviderSpecificInput"}}})
        item = poller.result()
        assert (item.properties.protection_state, item.properties.active_location) == ("Protected", "Recovery")
        assert runbook.job(job_name).properties.scenario_name == "ReverseReplication"

        poller, job_name = runbook.begin(rpi.begin_delete, *args,
                                         {"properties": {"disableProtectionReason": "NotSpecified"}})
        assert poller.result() is None
        assert runbook.job(job_name).properties.scenario_name == "DisableDr"
        with pytest.raises(ResourceNotFoundError):
            rpi.get(runbook.rg, runbook.vault_name, *args)
