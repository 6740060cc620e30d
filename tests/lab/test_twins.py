"""The script twins, in-process against the estate, the ARM backend and the on-premises state.

No network: each twin is called as the WinRM layer calls it, ``twin(parameters, context)``,
and its one output document is read by the product's own contract (``SCRIPTS``), so these tests
also hold the twins to the models. Vault credentials come from the product's builder
(``issue_vault_credentials``) through a stand-in for the Recovery Services SDK client that
answers from the same in-process backend.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from asr_lab.arm.models import ArmBackend
from asr_lab.clock import ManualClock
from asr_lab.estate import load_estate
from asr_lab.onprem import OnPremState
from asr_lab.twins import WindowsServerContext, build_twins
from asr_lab.winrm.scripts import TwinResult
from site_recovery.hooks.asr import AzureSiteRecoveryHook
from site_recovery.scripts import SCRIPTS
from site_recovery.vault_credentials import issue_vault_credentials
from tests.lab.test_arm_world import BASE_URL, RESOURCE_GROUP, VAULT, World

PRIMARY_VMM = "vmm-ams-01.corp.meridianpack.nl"
RECOVERY_VMM = "vmm-rtm-01.corp.meridianpack.nl"
RECOVERY_HOST = "hv-rtm-01.corp.meridianpack.nl"
PROVIDER_INSTALLER = r"\\fs01.corp.meridianpack.nl\software\ASR\AzureSiteRecoveryProvider.exe"
TWINS = build_twins()


class TwinLab:
    """What the twins use of the running lab (``asr_lab.app.Lab``), built in-process.

    A fresh estate on a clock at time scale 0 (installers take no time), or the estate, clock
    and backend of a :class:`World` when a test needs replication set up.
    """

    def __init__(self, world: World | None = None) -> None:
        self.estate = world.estate if world else load_estate()
        self.clock = world.clock if world else ManualClock(scale=0)
        self.backend = world.backend if world else ArmBackend(self.estate, self.clock, BASE_URL)
        self.onprem = OnPremState.initial(self.estate)
        self.saves = 0

    def save_soon(self) -> None:
        self.saves += 1

    def server(self, fqdn: str) -> WindowsServerContext:
        role = "vmm" if self.estate.site_of_vmm(fqdn) else "host"
        return WindowsServerContext(fqdn=fqdn, role=role, lab=self)

    def run(self, script: str, fqdn: str, **parameters: Any) -> TwinResult:
        return asyncio.run(TWINS.get(script)(parameters, self.server(fqdn)))

    def document(self, script: str, fqdn: str, **parameters: Any):
        """Run ``script`` and read its output with the product's contract; fail on any error record."""
        result = self.run(script, fqdn, **parameters)
        assert result.terminating_error is None, result.terminating_error.message
        assert not result.errors
        return SCRIPTS[script].parse_output(result.output, f"{script} on {fqdn}")

    def failure(self, script: str, fqdn: str, **parameters: Any) -> str:
        result = self.run(script, fqdn, **parameters)
        assert result.terminating_error is not None and not result.output
        return result.terminating_error.message

    # -- vault credentials, built by the product --------------------------------------------

    def create_vault(self, name: str = VAULT):
        vault, _ = self.backend.create_or_update_vault(self.estate.subscription_id, RESOURCE_GROUP, name,
                                                       {"location": "westeurope"})
        return vault

    def vault_credentials(self, name: str = VAULT) -> str:
        """The XML ``issue_vault_credentials`` builds for vault ``name``, valid from the lab's now."""
        # The product's hook, its Recovery Services client swapped for the in-process stand-in.
        hook = AzureSiteRecoveryHook(azure_conn_id="twins")
        hook.vault_client = _VaultClient(self.backend, self.estate.subscription_id)
        hook.settings = SimpleNamespace(subscription_id=self.estate.subscription_id,
                                        authority="https://login.microsoftonline.com/",
                                        tenant_id=self.estate.tenant_id, resource_manager_endpoint=BASE_URL)
        return issue_vault_credentials(hook, RESOURCE_GROUP, name, now=self.clock.now()).xml


class _VaultClient:
    """The three operations of RecoveryServicesClient the credentials builder calls."""

    def __init__(self, backend: ArmBackend, subscription: str) -> None:
        vault = lambda rg, name: backend.vault_for(subscription, rg, name)  # noqa: E731

        def upload(rg, name, certificate_name, body):
            record = backend.upload_certificate(vault(rg, name), certificate_name, body)
            return SimpleNamespace(properties=SimpleNamespace(
                resource_id=record.resource_id, certificate=base64.b64decode(record.certificate),
                thumbprint=record.thumbprint, valid_to=record.valid_to))

        def extended_info(rg, name):
            info = vault(rg, name).extended_info
            if info is None:
                raise ResourceNotFoundError("vaultExtendedInfo not found")
            return SimpleNamespace(properties=SimpleNamespace(integrity_key=info.integrity_key,
                                                              algorithm=info.algorithm))

        self.vaults = SimpleNamespace(get=lambda rg, name: SimpleNamespace(id=vault(rg, name).id,
                                                                           location=vault(rg, name).location))
        self.vault_certificates = SimpleNamespace(create=upload)
        self.vault_extended_info = SimpleNamespace(
            get=extended_info,
            create_or_update=lambda rg, name, body: backend.put_extended_info(vault(rg, name), body))


@pytest.fixture
def lab() -> TwinLab:
    return TwinLab()


def all_records(result: TwinResult) -> str:
    errors = [e.message for e in [*result.errors, result.terminating_error] if e is not None]
    return "\n".join(map(str, [*result.output, *result.verbose, *result.information, *result.warning, *errors]))


class TestInventory:
    def test_the_primary_vmm_server_reports_its_clouds_hosts_vms_and_networks(self, lab: TwinLab):
        inventory = lab.document("Get-VmmInventory", PRIMARY_VMM)
        assert (inventory.server, inventory.vmm_version) == (PRIMARY_VMM, "4.1.3324.0")
        assert [c.name for c in inventory.clouds] == ["Gold-Prod", "Silver-Prod"]
        assert inventory.clouds[0].host_groups == ["All Hosts\\Amsterdam\\CL-AMS-GOLD"]
        assert len(inventory.hosts) == 4 and all(h.hyperv_role and h.replica for h in inventory.hosts)
        assert len(inventory.vms_in("Gold-Prod")) == 8 and len(inventory.vms_in("Silver-Prod")) == 5
        sql = next(vm for vm in inventory.vms if vm.name == "SQL-PRD-01")
        assert (sql.generation, sql.state, len(sql.disks)) == (2, "Running", 3)
        assert sql.nics[0].vm_network == "Prod-Data" and sql.nics[0].ip_addresses == ["10.10.30.11"]
        fci = next(vm for vm in inventory.vms if vm.name == "SQL-FCI-01")
        assert any(d.shared for d in fci.disks)
        assert {n.logical_network for n in inventory.vm_networks} == {"Amsterdam Datacenter"}
        assert inventory.summary() == (f"VMM 4.1.3324.0 on {PRIMARY_VMM}: Gold-Prod (8 VMs), Silver-Prod (5 VMs); "
                                       "4 Hyper-V hosts, 3 VM networks")

    def test_a_cloud_filter_keeps_its_hosts_and_vms_and_warns_about_unknown_names(self, lab: TwinLab):
        result = lab.run("Get-VmmInventory", PRIMARY_VMM, CloudNames=["gold-prod", "Platinum"])
        inventory = SCRIPTS["Get-VmmInventory"].parse_output(result.output, "inventory")
        assert [c.name for c in inventory.clouds] == ["Gold-Prod"] and len(inventory.hosts) == 2
        assert {vm.cloud for vm in inventory.vms} == {"Gold-Prod"}
        assert result.warning == [f"No cloud named 'Platinum' on {PRIMARY_VMM}."]

    def test_on_a_hyper_v_host_the_vmm_module_is_missing(self, lab: TwinLab):
        message = lab.failure("Get-VmmInventory", RECOVERY_HOST)
        assert message.startswith("The specified module 'virtualmachinemanager' was not loaded")

    def test_replica_settings_follow_what_initialize_changed(self, lab: TwinLab):
        lab.document("Initialize-HyperVReplicaHost", RECOVERY_HOST, StoragePath="D:\\Replica\\")
        inventory = lab.document("Get-VmmInventory", RECOVERY_VMM)
        host = next(h for h in inventory.hosts if h.fqdn == RECOVERY_HOST)
        assert host.replica.storage_path == "D:\\Replica"
        assert inventory.vms == [] and [n.name for n in inventory.logical_networks] == [
            "Rotterdam Datacenter", "Rotterdam Provider Address"]


class TestPrerequisites:
    def test_a_fresh_estate_fails_only_the_replication_port(self, lab: TwinLab):
        report = lab.document("Test-AsrPrerequisites", RECOVERY_VMM, CloudNames=["Gold-DR"])
        assert [c.name for c in report.failed()] == ["ReplicationPort"] and not report.passed
        assert "hv-rtm-01" in report.failed()[0].reason and "hv-rtm-03" not in report.failed()[0].reason
        assert report.summary().startswith(f"1 of 7 prerequisites not met on {RECOVERY_VMM}: ReplicationPort:")

    def test_initializing_the_clouds_hosts_makes_every_check_pass(self, lab: TwinLab):
        for host in ("hv-rtm-01.corp.meridianpack.nl", "hv-rtm-02.corp.meridianpack.nl"):
            lab.document("Initialize-HyperVReplicaHost", host, StoragePath="C:\\ClusterStorage\\Replica01")
        report = lab.document("Test-AsrPrerequisites", RECOVERY_VMM, CloudName="Gold-DR", ReplicationPort="8083")
        assert report.passed and report.summary() == f"all 7 prerequisites met on {RECOVERY_VMM}"

    def test_certificate_authentication_needs_a_certificate_on_every_host(self, lab: TwinLab):
        report = lab.document("Test-AsrPrerequisites", RECOVERY_VMM, Authentication="certificate",
                              ReplicationPort=443, CloudNames=["Silver-DR"])
        failed = {c.name: c.reason for c in report.failed()}
        assert set(failed) == {"ReplicationPort", "Authentication"}
        assert failed["Authentication"].startswith("No certificate is set for Hyper-V Replica on hv-rtm-03")

    def test_unknown_clouds_and_a_provider_registered_elsewhere_fail(self, lab: TwinLab):
        lab.onprem.vmm_server(RECOVERY_VMM).registered_vault_id = (
            f"/subscriptions/{lab.estate.subscription_id}/resourceGroups/rg-old/providers/"
            "Microsoft.RecoveryServices/vaults/rsv-old")
        report = lab.document("Test-AsrPrerequisites", RECOVERY_VMM, CloudNames=["Gold-DR", "Bronze-DR"],
                              VaultName=VAULT)
        failed = {c.name: c.reason for c in report.failed()}
        assert failed["CloudsPresent"] == f"No cloud named Bronze-DR on {RECOVERY_VMM}."
        assert failed["ProviderRegistration"] == ("The ASR Provider is registered to another vault, 'rsv-old'; "
                                                  "unregister it first.")

    def test_parameters_are_validated_as_the_param_block_does(self, lab: TwinLab):
        message = lab.failure("Test-AsrPrerequisites", RECOVERY_VMM, Authentication="NTLM")
        assert message == ("Cannot validate argument on parameter 'Authentication'. The argument \"NTLM\" does not "
                           "belong to the set \"Kerberos,Certificate\" specified by the ValidateSet attribute. Supply "
                           "an argument that is in the set and then try the command again.")
        assert "maximum allowed range of 65535" in lab.failure("Test-AsrPrerequisites", RECOVERY_VMM,
                                                               ReplicationPort=70000)
        assert lab.failure("Test-AsrPrerequisites", RECOVERY_VMM, Cloud="Gold-DR") == (
            "A parameter cannot be found that matches parameter name 'Cloud'.")


class TestInitializeReplicaHost:
    def test_first_run_opens_the_port_and_a_second_run_changes_nothing(self, lab: TwinLab):
        first = lab.document("Initialize-HyperVReplicaHost", RECOVERY_HOST, StoragePath="C:\\ClusterStorage\\Replica01",
                             Verbose=True)
        rule = "firewall rule 'Hyper-V Replica HTTP Listener (TCP-In, port 8083)'"
        assert first.changed == [rule] and "Kerberos port 8083" in first.already
        assert first.settings.open_firewall_rules == ["Hyper-V Replica HTTP Listener (TCP-In, port 8083)"]
        saved_version, saves = lab.onprem.version, lab.saves
        assert saved_version > 0 and saves > 0
        second = lab.document("Initialize-HyperVReplicaHost", RECOVERY_HOST,
                              StoragePath="C:\\ClusterStorage\\Replica01")
        assert second.changed == [] and rule in second.already and second.settings == first.settings
        assert (lab.onprem.version, lab.saves) == (saved_version, saves)
        assert "already set up as a replica server" in second.summary()

    def test_a_named_primary_server_gets_an_authorization_entry_instead_of_any_server(self, lab: TwinLab):
        result = lab.document("Initialize-HyperVReplicaHost", RECOVERY_HOST, StoragePath="D:\\Replica",
                              AllowedPrimaryServer="*.corp.meridianpack.nl", ReplicationPort=80)
        assert result.changed == ["Kerberos port 80", "replication allowed from *.corp.meridianpack.nl to D:\\Replica",
                                  "firewall rule 'Hyper-V Replica HTTP Listener (TCP-In)'"]
        assert result.settings.allowed_from_any_server is False
        assert result.settings.allowed_primary_servers == ["*.corp.meridianpack.nl"]

    def test_certificate_authentication_without_a_certificate_fails_clearly(self, lab: TwinLab):
        message = lab.failure("Initialize-HyperVReplicaHost", RECOVERY_HOST, StoragePath="D:\\R",
                              Authentication="Certificate")
        assert message.startswith(f"No certificate for Server Authentication issued to {RECOVERY_HOST}")
        lab.onprem.host(RECOVERY_HOST).certificates.append("AB" * 20)
        result = lab.document("Initialize-HyperVReplicaHost", RECOVERY_HOST, StoragePath="D:\\R",
                              Authentication="Certificate")
        assert result.settings.authentication == "CertificateAndKerberos" and result.settings.certificate_port == 443
        assert f"certificate {'AB' * 20}" in result.changed

    def test_a_storage_path_must_be_local_and_is_mandatory(self, lab: TwinLab):
        assert "does not match" in lab.failure("Initialize-HyperVReplicaHost", RECOVERY_HOST,
                                               StoragePath="\\\\nas\\replica")
        assert lab.failure("Initialize-HyperVReplicaHost", RECOVERY_HOST) == (
            "Cannot process command because of one or more missing mandatory parameters: StoragePath.")
        assert "module 'Hyper-V'" in lab.failure("Initialize-HyperVReplicaHost", RECOVERY_VMM, StoragePath="D:\\R")


class TestInstallProvider:
    def test_installs_registers_and_the_fabric_appears_on_the_arm_side(self, lab: TwinLab):
        vault = lab.create_vault()
        credentials = lab.vault_credentials()
        result = lab.run("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=credentials,
                         InstallerPath=PROVIDER_INSTALLER, FriendlyName="VMM-AMS-01")
        registration = SCRIPTS["Install-AsrProvider"].parse_output(result.output, "install", [credentials])
        assert (registration.installed, registration.registered, registration.already_registered) == (True, True, False)
        assert registration.vault_id == vault.id and registration.friendly_name == "VMM-AMS-01"
        assert registration.provider_version == "5.1.8400.0"
        assert result.verbose[:3] == [
            f"The vault credentials are for vault '{VAULT}' in resource group '{RESOURCE_GROUP}'.",
            "Extracting the provider (AzureSiteRecoveryProvider.exe /x:<folder> /q)...",
            "Installing the provider (SetupDr.exe /i)..."]
        assert result.verbose[-1] == "Removed the temporary vault credentials file."
        [fabric] = lab.backend.list_fabrics(vault)
        assert fabric.vmm_fqdn == PRIMARY_VMM
        assert [j.scenario_name for j in lab.backend.list_jobs(vault)] == ["RegisterDra"]
        state = lab.onprem.vmm_server(PRIMARY_VMM)
        assert (state.registered_vault_id, state.dr_adapter_key) == (vault.id, True)

    def test_a_second_run_changes_nothing_and_starts_no_job(self, lab: TwinLab):
        vault = lab.create_vault()
        credentials = lab.vault_credentials()
        lab.document("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=credentials, InstallerPath=PROVIDER_INSTALLER)
        version = lab.onprem.version
        again = lab.document("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=lab.vault_credentials(),
                             InstallerPath="C:\\nowhere\\setup.exe")  # not needed: nothing is installed again
        assert (again.installed, again.registered, again.already_registered) == (False, False, True)
        assert len(lab.backend.list_jobs(vault)) == 1 and lab.onprem.version == version
        assert "was already registered to vault" in again.summary()

    def test_expired_credentials_fail_with_drconfigurators_message(self, lab: TwinLab):
        lab.create_vault()
        credentials = lab.vault_credentials()
        lab.clock.advance(6 * 24 * 3600)
        message = lab.failure("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=credentials,
                              InstallerPath=PROVIDER_INSTALLER)
        assert message == (f"DRConfigurator.exe could not register {PRIMARY_VMM} with the vault '{VAULT}' "
                           "(exit code 1): "
                           "The vault credentials file has expired. Download a new vault credentials file from the "
                           "vault and retry.")
        state = lab.onprem.vmm_server(PRIMARY_VMM)
        assert state.provider_installed and state.registered_vault_id is None  # installed, not registered

    @pytest.mark.parametrize("tamper", ["certificate", "integrity key"])
    def test_tampered_credentials_are_refused(self, lab: TwinLab, tamper: str):
        lab.create_vault()
        credentials = lab.vault_credentials()
        key = credentials.split("<ChannelIntegrityKey>")[1].split("<")[0]
        cert = credentials.split("<ManagementCert>")[1].split("<")[0]
        if tamper == "certificate":
            der = base64.b64decode(cert)
            forged = base64.b64encode(der[:-1] + bytes([der[-1] ^ 0xFF])).decode()  # e.g. a re-signed copy
            credentials = credentials.replace(cert, forged)
        else:
            credentials = credentials.replace(key, key[::-1])
        message = lab.failure("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=credentials,
                              InstallerPath=PROVIDER_INSTALLER)
        assert message.endswith("The vault credentials file is invalid or has been tampered with.")

    def test_credentials_of_a_vault_that_does_not_exist_or_that_are_not_xml(self, lab: TwinLab):
        lab.create_vault("rsv-gone")
        credentials = lab.vault_credentials("rsv-gone").replace("rsv-gone", "rsv-missing")
        message = lab.failure("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=credentials,
                              InstallerPath=PROVIDER_INSTALLER)
        assert "The vault 'rsv-missing' in resource group 'rg-dr-weu' was not found" in message
        message = lab.failure("Install-AsrProvider", PRIMARY_VMM, VaultCredentials="<RSVaultAsrCreds><VaultDetails>",
                              InstallerPath=PROVIDER_INSTALLER)
        assert message.startswith("The vault credentials are not a valid vault credentials file (not XML).")

    def test_a_server_registered_to_another_vault_is_refused(self, lab: TwinLab):
        lab.create_vault("rsv-old")
        lab.create_vault()
        lab.document("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=lab.vault_credentials("rsv-old"),
                     InstallerPath=PROVIDER_INSTALLER)
        message = lab.failure("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=lab.vault_credentials(),
                              InstallerPath=PROVIDER_INSTALLER)
        assert message == "This server is already registered to the vault 'rsv-old'. Unregister it first."

    def test_a_missing_installer_and_a_hyper_v_host_fail_as_on_windows(self, lab: TwinLab):
        lab.create_vault()
        credentials = lab.vault_credentials()
        assert lab.failure("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=credentials,
                           InstallerPath="D:\\setup\\provider.exe") == (
            "Cannot find path 'D:\\setup\\provider.exe' because it does not exist.")
        assert "(404) Not Found" in lab.failure("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=credentials,
                                                InstallerPath="https://downloads.example/asr.exe")
        assert lab.failure("Install-AsrProvider", RECOVERY_HOST, VaultCredentials=credentials,
                           InstallerPath=PROVIDER_INSTALLER) == (
            "Cannot find any service with service name 'SCVMMService'.")

    def test_the_credentials_never_appear_in_any_record(self, lab: TwinLab):
        lab.create_vault()
        credentials = lab.vault_credentials()
        secrets = [credentials, credentials.split("<ChannelIntegrityKey>")[1].split("<")[0],
                   credentials.split("<ManagementCert>")[1].split("<")[0]]
        runs = [lab.run("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=credentials, InstallerPath=path)
                for path in (PROVIDER_INSTALLER, PROVIDER_INSTALLER, "x")]
        runs.append(lab.run("Install-AsrProvider", PRIMARY_VMM, VaultCredentials=credentials[:-5],
                            InstallerPath=PROVIDER_INSTALLER))
        for result in runs:
            text = all_records(result)
            assert text and not any(secret in text for secret in secrets)


class TestRecoveryServicesAgent:
    def test_installs_once(self, lab: TwinLab):
        first = lab.document("Install-RecoveryServicesAgent", RECOVERY_HOST,
                             InstallerPath="https://download.microsoft.com/marsagent/MARSAgentInstaller.exe")
        second = lab.document("Install-RecoveryServicesAgent", RECOVERY_HOST,
                              InstallerPath="C:\\x\\MARSAgentInstaller.exe")
        assert (first.installed, first.already_installed, second.installed, second.already_installed) == (
            True, False, False, True)
        assert first.version == second.version == "2.0.9262.0"

    def test_on_a_vmm_server_the_hyper_v_service_is_missing(self, lab: TwinLab):
        message = lab.failure("Install-RecoveryServicesAgent", RECOVERY_VMM,
                              InstallerPath="C:\\x\\MARSAgentInstaller.exe")
        assert message == "Cannot find any service with service name 'vmms'."


class TestTestVmStatus:
    @pytest.fixture
    def drill(self) -> tuple[World, TwinLab]:
        world = World().configured()
        world.protected("APP-ERP-01")
        return world, TwinLab(world)

    def test_no_drill_no_test_vm(self, lab: TwinLab):
        status = lab.document("Get-TestVmStatus", RECOVERY_VMM, ProtectedItemName="APP-ERP-01")
        assert (status.vm_name, status.exists, status.state, status.ip_addresses) == (
            "APP-ERP-01 - Test", False, None, [])
        assert status.summary() == "no VM named 'APP-ERP-01 - Test'"

    def test_a_running_test_vm_answers_with_an_address_on_the_drill_network(self, drill):
        world, lab = drill
        world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        world.advance(41)  # the test VM is created, not yet booted
        booting = lab.document("Get-TestVmStatus", RECOVERY_VMM, VmName="APP-ERP-01 - Test")
        assert (booting.exists, booting.state, booting.heartbeat, booting.ip_addresses) == (
            True, "PowerOff", "NoContact", [])
        world.finish()
        status = lab.document("Get-TestVmStatus", RECOVERY_VMM, ProtectedItemName="APP-ERP-01")
        assert status.healthy and status.host.startswith("hv-rtm-0")
        [address] = status.ip_addresses
        assert ipaddress.ip_address(address) in ipaddress.ip_network("192.168.250.0/24")
        assert not lab.document("Get-TestVmStatus", PRIMARY_VMM, ProtectedItemName="APP-ERP-01").exists
        inventory = lab.document("Get-VmmInventory", RECOVERY_VMM)
        assert {vm.name: vm.state for vm in inventory.vms} == {"APP-ERP-01": "PowerOff", "APP-ERP-01 - Test": "Running"}

        world.backend.test_failover_cleanup(world.vault, *world.item_args("APP-ERP-01"), {"properties": {}})
        world.finish()
        assert not lab.document("Get-TestVmStatus", RECOVERY_VMM, ProtectedItemName="APP-ERP-01").exists

    def test_one_of_the_two_names_is_needed(self, lab: TwinLab):
        assert lab.failure("Get-TestVmStatus", RECOVERY_VMM) == (
            "Cannot process command because of one or more missing mandatory parameters: VmName.")
        assert lab.failure("Get-TestVmStatus", RECOVERY_VMM, VmName="a", ProtectedItemName="b") == (
            "Parameter set cannot be resolved using the specified named parameters.")


class TestTestVmEndpoint:
    @pytest.fixture
    def drill(self) -> tuple[World, TwinLab]:
        """SQL-PRD-01 and APP-ERP-02 replicated, each with a running test VM on the drill network."""
        world = World().configured()
        for vm in ("SQL-PRD-01", "APP-ERP-02"):
            world.protected(vm)
            world.backend.test_failover(world.vault, *world.item_args(vm), world.test_failover_body())
        world.finish()
        return world, TwinLab(world)

    def probe(self, lab: TwinLab, vm: str, kind: str, port: int, fqdn: str = RECOVERY_VMM, **more: Any):
        return lab.document("Test-TestVmEndpoint", fqdn, VmName=vm, Kind=kind, Port=port, **more)

    def test_a_port_the_source_vm_listens_on_is_open_on_its_test_vm(self, drill):
        _, lab = drill
        probe = self.probe(lab, "SQL-PRD-01 - Test", "tcp", 1433)
        assert (probe.ok, probe.status_code, probe.path, probe.detail) == (True, None, None, "connection accepted")
        assert ipaddress.ip_address(probe.address) in ipaddress.ip_network("192.168.250.0/24")
        assert 1 <= probe.elapsed_ms <= 10
        status = lab.document("Get-TestVmStatus", RECOVERY_VMM, VmName="SQL-PRD-01 - Test")
        assert status.ip_addresses == [probe.address]
        assert probe.summary() == f"tcp {probe.address}:1433 on 'SQL-PRD-01 - Test': open in {probe.elapsed_ms} ms"
        assert probe == self.probe(lab, "sql-prd-01 - test", "TCP", 1433)  # the same answer every time

    def test_any_other_port_refuses(self, drill):
        _, lab = drill
        result = lab.run("Test-TestVmEndpoint", RECOVERY_VMM, VmName="SQL-PRD-01 - Test", Kind="tcp", Port=1434)
        probe = SCRIPTS["Test-TestVmEndpoint"].parse_output(result.output, "probe")
        assert not probe.ok and probe.detail.startswith("connection refused")
        assert probe.elapsed_ms is not None and probe.elapsed_ms < 10
        assert "actively refused it" in result.verbose[-1] and not result.errors
        assert "failed after" in probe.summary()

    @pytest.mark.parametrize(("vm", "port", "ok", "status", "detail"), [
        ("APP-ERP-02 - Test", 8080, False, 503, "HTTP 503 Service Unavailable"),  # the standby ERP node
        ("SQL-PRD-01 - Test", 1433, False, None, "no HTTP answer: The underlying connection was closed: "
                                                 "The connection was closed unexpectedly."),
        ("SQL-PRD-01 - Test", 80, False, None, "no HTTP answer: Unable to connect to the remote server"),
    ])
    def test_http_answers_with_the_estates_status_or_not_at_all(self, drill, vm, port, ok, status, detail):
        _, lab = drill
        probe = self.probe(lab, vm, "http", port, Path="/health")
        assert (probe.ok, probe.status_code, probe.detail, probe.path) == (ok, status, detail, "/health")

    def test_http_on_a_listed_http_port_passes_below_400(self):
        lab = TwinLab()  # the production VM, probed from its own VMM server
        probe = self.probe(lab, "WEB-PORTAL-01", "http", 80, fqdn=PRIMARY_VMM)
        assert (probe.ok, probe.status_code, probe.path, probe.address) == (True, 200, "/", "10.10.40.15")
        assert probe.summary() == f"http 10.10.40.15:80/ on 'WEB-PORTAL-01': HTTP 200 in {probe.elapsed_ms} ms"
        assert self.probe(lab, "WEB-PORTAL-01", "tcp", 443, fqdn=PRIMARY_VMM).ok

    def test_a_missing_stopped_or_unaddressed_test_vm_is_an_answer_not_an_error(self, drill):
        world, lab = drill
        missing = self.probe(lab, "APP-ERP-01 - Test", "tcp", 8080)
        assert (missing.ok, missing.address, missing.elapsed_ms) == (False, None, None)
        assert missing.detail == f"no virtual machine named 'APP-ERP-01 - Test' on {RECOVERY_VMM}"
        assert missing.summary() == f"tcp port 8080 on 'APP-ERP-01 - Test': not probed, {missing.detail}"
        assert not self.probe(lab, "SQL-PRD-01 - Test", "tcp", 1433, fqdn=PRIMARY_VMM).address  # the other site

        world.backend.test_failover_cleanup(world.vault, *world.item_args("SQL-PRD-01"), {"properties": {}})
        world.finish()
        assert "no virtual machine" in self.probe(lab, "SQL-PRD-01 - Test", "tcp", 1433).detail

        world.protected("APP-ERP-01")
        world.backend.test_failover(world.vault, *world.item_args("APP-ERP-01"), world.test_failover_body())
        world.advance(41)  # the test VM is created, not yet booted
        off = self.probe(lab, "APP-ERP-01 - Test", "http", 8080)
        assert (off.ok, off.address, off.detail) == (False, None, "'APP-ERP-01 - Test' is PowerOff, not Running")
        world.finish()
        assert self.probe(lab, "APP-ERP-01 - Test", "http", 8080).status_code == 200

    def test_a_test_vm_without_a_network_has_no_address(self):
        world = World().configured()
        world.protected("SQL-PRD-01")
        world.backend.test_failover(world.vault, *world.item_args("SQL-PRD-01"), world.test_failover_body(None))
        world.finish()
        probe = self.probe(TwinLab(world), "SQL-PRD-01 - Test", "tcp", 1433)
        assert (probe.ok, probe.address) == (False, None) and "has no IPv4 address" in probe.detail

    def test_parameters_are_validated_as_the_param_block_does(self, lab: TwinLab):
        def failure(**parameters: Any) -> str:
            return lab.failure("Test-TestVmEndpoint", RECOVERY_VMM, **{"VmName": "X - Test", **parameters})

        assert "does not belong to the set \"tcp,http\"" in failure(Kind="udp", Port=53)
        assert "maximum allowed range of 65535" in failure(Kind="tcp", Port=70000)
        assert "minimum allowed range of 1" in failure(Kind="tcp", Port=1, TimeoutSeconds=0)
        assert "does not match the \"^/\\S*$\" pattern" in failure(Kind="http", Port=80, Path="health")
        assert failure(Kind="tcp") == (
            "Cannot process command because of one or more missing mandatory parameters: Port.")
        assert "module 'virtualmachinemanager'" in lab.failure("Test-TestVmEndpoint", RECOVERY_HOST, VmName="X",
                                                               Kind="tcp", Port=1)

    def test_a_path_on_a_tcp_probe_is_ignored_with_a_warning(self, lab: TwinLab):
        result = lab.run("Test-TestVmEndpoint", PRIMARY_VMM, VmName="SQL-PRD-01", Kind="tcp", Port=1433, Path="/x")
        assert result.warning == ["-Path is for http probes; a tcp probe ignores '/x'."]
        assert SCRIPTS["Test-TestVmEndpoint"].parse_output(result.output, "probe").path is None


class TestOnPremState:
    def test_saved_state_comes_back_and_follows_the_estate(self, lab: TwinLab):
        lab.document("Initialize-HyperVReplicaHost", RECOVERY_HOST, StoragePath="D:\\Replica")
        lab.onprem.vmm_server(PRIMARY_VMM).registered_vault_id = "/subscriptions/x/resourceGroups/y/providers/v/z"
        saved = lab.onprem.to_dict()
        saved["hosts"].append({**saved["hosts"][0], "fqdn": "hv-gone.corp.meridianpack.nl"})
        restored = OnPremState.from_dict(saved, lab.estate)
        assert restored.to_dict() == lab.onprem.to_dict()
        assert restored.host(RECOVERY_HOST).port_open(8083)
        assert restored.registrations() == {PRIMARY_VMM: "/subscriptions/x/resourceGroups/y/providers/v/z"}

    def test_another_schema_is_refused(self, lab: TwinLab):
        with pytest.raises(ValueError, match="schema"):
            OnPremState.from_dict({**lab.onprem.to_dict(), "schema": 99}, lab.estate)
