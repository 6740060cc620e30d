"""Steps through the lab with the real SDK clients, shared by tests and benchmarks.

Each helper does what a DR engineer (or a later DAG) would do against Azure, so tests of
one piece can start from a realistic state without re-implementing the flow.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.identity import ClientSecretCredential
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicessiterecovery import SiteRecoveryManagementClient

from asr_lab.estate import load_estate

RESOURCE_GROUP = "rg-dr-weu"
VAULT = "rsv-dr-weu-01"
PRIMARY_VMM = "vmm-ams-01.corp.meridianpack.nl"
POLICY = "policy-gold-5min"
POLICY_INPUT = {
    "instanceType": "HyperVReplica2012R2", "replicationFrequencyInSeconds": 300, "recoveryPoints": 24,
    "applicationConsistentSnapshotFrequencyInHours": 4, "compression": "Enable",
    "initialReplicationMethod": "OverNetwork", "onlineReplicationStartTime": "", "replicationPort": 8083,
    "allowedAuthenticationType": 1, "replicaDeletion": "Required",
}


def job_name_from(headers) -> str:
    """The ASR job GUID of a 202, as Azure PowerShell reads it (from Location)."""
    return headers["Location"].split("/operationresults/")[1].split("?")[0]


@dataclass
class Vault:
    resource_group: str
    name: str
    id: str


def credential(lab) -> ClientSecretCredential:
    return ClientSecretCredential(
        lab["tenant_id"], lab["client_id"], lab["client_secret"], authority=lab["authority_url"],
        connection_verify=lab["ca_cert"], disable_instance_discovery=True,
    )


def client_kwargs(lab) -> dict:
    return {"base_url": lab["arm_url"], "credential_scopes": [lab["credential_scope"]],
            "connection_verify": lab["ca_cert"], "polling_interval": 0}


def asr_client(lab) -> SiteRecoveryManagementClient:
    return SiteRecoveryManagementClient(credential(lab), lab["subscription_id"], **client_kwargs(lab))


def vault_client(lab) -> RecoveryServicesClient:
    return RecoveryServicesClient(credential(lab), lab["subscription_id"], **client_kwargs(lab))


def create_vault(lab, resource_group: str = RESOURCE_GROUP, name: str = VAULT) -> Vault:
    vault = vault_client(lab).vaults.begin_create_or_update(
        resource_group, name,
        {"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"publicNetworkAccess": "Enabled"}},
    ).result()
    return Vault(resource_group, name, vault.id)


def register_primary_vmm(lab, vault: Vault, vmm_server: str = PRIMARY_VMM) -> dict:
    return lab.register_provider(vault.id, vmm_server)


def start_policy_job(lab, vault: Vault, policy: str = POLICY, asr: SiteRecoveryManagementClient | None = None) -> str:
    """Create a Hyper-V Replica policy and return the ASR job name from the 202's headers (with ``asr``, or
    a client of its own)."""
    responses: list = []

    def capture(response) -> None:
        responses.append(response.http_response)

    (asr or asr_client(lab)).replication_policies.begin_create(
        vault.resource_group, vault.name, policy,
        {"properties": {"providerSpecificInput": POLICY_INPUT}},
        polling=False, raw_response_hook=capture,
    )
    return job_name_from(responses[-1].headers)


# ---------------------------------------------------------------------------------------
# The runbook: the DR steps done with the SDK, as the contract tests walk them.
# ---------------------------------------------------------------------------------------

class Runbook:
    """Steps 1-12 of the VMM-to-VMM runbook through the real SDK clients.

    ``begin(operation, *args)`` starts an LRO and also returns the ASR job name, captured
    from the 202 with ``raw_response_hook`` (the SDK keeps no job id on its models).
    """

    def __init__(self, lab, asr: SiteRecoveryManagementClient, rsv: RecoveryServicesClient) -> None:
        self.lab, self.asr, self.rsv = lab, asr, rsv
        self.rg, self.vault_name = RESOURCE_GROUP, VAULT
        self.vault = None
        self.primary = self.recovery = None

    def begin(self, operation, *args, **kwargs):
        captured: list = []

        def hook(response) -> None:
            if not captured:
                captured.append(response.http_response.headers)  # case-insensitive mapping

        poller = operation(self.rg, self.vault_name, *args, raw_response_hook=hook, **kwargs)
        return poller, job_name_from(captured[0])

    def job(self, name: str):
        return self.asr.replication_jobs.get(self.rg, self.vault_name, name)

    # step 1 and 3
    def create_vault(self):
        self.vault = self.rsv.vaults.begin_create_or_update(
            self.rg, self.vault_name,
            {"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"publicNetworkAccess": "Enabled"}},
        ).result()
        return self.vault

    def register(self) -> None:
        estate = load_estate()
        self.primary = self.lab.register_provider(self.vault.id, estate.primary.vmm.fqdn)["fabric"]
        self.recovery = self.lab.register_provider(self.vault.id, estate.recovery.vmm.fqdn)["fabric"]

    def container(self, fabric: str, cloud: str):
        containers = self.asr.replication_protection_containers.list_by_replication_fabrics(
            self.rg, self.vault_name, fabric)
        return next(c for c in containers if c.properties.friendly_name == cloud)

    def network(self, fabric: str, name: str):
        networks = self.asr.replication_networks.list_by_replication_fabrics(self.rg, self.vault_name, fabric)
        return next(n for n in networks if n.properties.friendly_name == name)

    # steps 5-8
    def create_policy(self, name: str = POLICY, **overrides):
        body = {"properties": {"providerSpecificInput": {**POLICY_INPUT, **overrides}}}
        return self.begin(self.asr.replication_policies.begin_create, name, body)

    def pair(self, cloud: str = "Gold-Prod", recovery_cloud: str = "Gold-DR", policy: str = POLICY):
        source, target = self.container(self.primary, cloud), self.container(self.recovery, recovery_cloud)
        policy_id = self.asr.replication_policies.get(self.rg, self.vault_name, policy).id
        body = {"properties": {"targetProtectionContainerId": target.id, "policyId": policy_id,
                               "providerSpecificInput": {"instanceType": "ReplicationProviderSpecificContainerMappingInput"}}}
        return self.begin(self.asr.replication_protection_container_mappings.begin_create, self.primary, source.name,
                          f"{cloud}-to-{recovery_cloud}".lower(), body)

    def map_network(self, network: str = "Prod-App", recovery_network: str = "DR-App"):
        primary, recovery = self.network(self.primary, network), self.network(self.recovery, recovery_network)
        body = {"properties": {"recoveryFabricName": self.recovery, "recoveryNetworkId": recovery.id,
                               "fabricSpecificDetails": {"instanceType": "VmmToVmm"}}}
        return self.begin(self.asr.replication_network_mappings.begin_create, self.primary, primary.name,
                          f"{network}-to-{recovery_network}".lower(), body)

    def configured(self) -> Runbook:
        self.create_vault()
        self.register()
        self.create_policy()[0].result()
        self.pair()[0].result()
        self.map_network()[0].result()
        return self

    # steps 9-12
    def protectable(self, vm: str, cloud: str = "Gold-Prod"):
        container = self.container(self.primary, cloud)
        items = self.asr.replication_protectable_items.list_by_replication_protection_containers(
            self.rg, self.vault_name, self.primary, container.name)
        return container, next(i for i in items if i.properties.friendly_name == vm)

    def enable(self, vm: str, cloud: str = "Gold-Prod", policy: str = POLICY):
        container, item = self.protectable(vm, cloud)
        policy_id = self.asr.replication_policies.get(self.rg, self.vault_name, policy).id
        body = {"properties": {"policyId": policy_id, "protectableItemId": item.id,
                               "providerSpecificDetails": {"instanceType": "EnableProtectionProviderSpecificInput"}}}
        return self.begin(self.asr.replication_protected_items.begin_create, self.primary, container.name, item.name,
                          body)

    def item_args(self, vm: str, cloud: str = "Gold-Prod") -> tuple[str, str, str]:
        container, item = self.protectable(vm, cloud)
        return self.primary, container.name, item.name

    def test_failover_input(self, network: str | None = "DR-Drill-Isolated") -> dict:
        props = {"failoverDirection": "PrimaryToRecovery", "networkType": "NoNetworkAttachAsInput",
                 "providerSpecificDetails": {"instanceType": "ProviderSpecificFailoverInput"}}
        if network:
            props.update(networkType="VmNetworkAsInput", networkId=self.network(self.recovery, network).id)
        return {"properties": props}
