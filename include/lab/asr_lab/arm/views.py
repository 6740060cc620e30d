"""How each resource looks on the wire: state objects in, JSON-ready dicts out.

Shapes follow the recorded VMM-to-VMM traffic field for field (order included, since
humans read these bodies in logs): ``/Subscriptions/`` ids, ``"0001-01-01T00:00:00"`` for
unset task times, the ``None`` current-scenario sentinel, job end times in whole seconds.
Values that follow from the clock (replication progress, last replicated time, provider
heartbeat) are computed here from stored instants, never stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from .fabrics import FabricCloud, FabricNetwork
from .jobs import NOT_SET, Job
from .naming import derived_guid, iso, iso_seconds
from .policies import normalised_details
from .state import (Certificate, ContainerMapping, ExtendedInfo, Fabric, NetworkMapping, Operation, Policy,
                    ProtectedItem, RecoveryPlan, Vault)

if TYPE_CHECKING:
    from ..estate import VirtualMachine
    from .models import ArmBackend

NO_SCENARIO_START = "1753-01-01T01:01:01Z"
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
PROVIDER_VERSION = "5.1.7870.0"


def _t(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


# -- vault and step 2 ---------------------------------------------------------------------

def vault_json(b: ArmBackend, vault: Vault) -> dict[str, Any]:
    body: dict[str, Any] = {
        "location": vault.location, "name": vault.name, "etag": vault.etag,
        "properties": {"provisioningState": "Succeeded", "privateEndpointStateForBackup": "None",
                       "privateEndpointStateForSiteRecovery": "None", **vault.properties},
        "id": vault.id, "type": "Microsoft.RecoveryServices/vaults",
        "sku": dict(vault.sku), "tags": dict(vault.tags),
    }
    if vault.identity_type:
        body["identity"] = {"type": vault.identity_type, "principalId": vault.principal_id,
                            "tenantId": b.estate.tenant_id}
    return body


def certificate_json(b: ArmBackend, vault: Vault, cert: Certificate) -> dict[str, Any]:
    return {
        "name": cert.name, "type": "Microsoft.RecoveryServices/vaults/certificates",
        "id": b.asr_id(vault, f"certificates/{cert.name}"),
        "properties": {
            "authType": "AzureActiveDirectory", "certificate": cert.certificate, "friendlyName": "",
            "issuer": cert.issuer, "resourceId": cert.resource_id, "subject": cert.subject,
            "thumbprint": cert.thumbprint, "validFrom": cert.valid_from.isoformat(),
            "validTo": cert.valid_to.isoformat(), "aadAuthority": "https://login.windows.net",
            "aadTenantId": b.estate.tenant_id, "servicePrincipalClientId": cert.client_id,
            "servicePrincipalObjectId": cert.object_id,
            "azureManagementEndpointAudience": f"https://{vault.location}-id1.{vault.location}.backup.windowsazure.com/restapi/",
            "aadAudience": f"api://{b.estate.tenant_id}/RecoveryServiceVault/{vault.location}/{vault.name}/{cert.resource_id}",
        },
    }


def extended_info_json(b: ArmBackend, vault: Vault, info: ExtendedInfo) -> dict[str, Any]:
    props = {k: v for k, v in (("integrityKey", info.integrity_key), ("algorithm", info.algorithm),
                               ("encryptionKey", info.encryption_key),
                               ("encryptionKeyThumbprint", info.encryption_key_thumbprint)) if v is not None}
    return {"name": "vaultExtendedInfo", "type": "Microsoft.RecoveryServices/vaults/extendedInformation",
            "etag": info.etag, "id": f"{vault.id}/extendedInformation/vaultExtendedInfo", "properties": props}


def resource_provider_json(b: ArmBackend, subscription: str, api_versions: dict[str, list[str]]) -> dict[str, Any]:
    location = b.estate.location
    types = [{"resourceType": t, "locations": [location], "apiVersions": versions}
             for t, versions in api_versions.items()]
    return {"id": f"/subscriptions/{subscription}/providers/Microsoft.RecoveryServices",
            "namespace": "Microsoft.RecoveryServices", "registrationState": "Registered",
            "registrationPolicy": "RegistrationRequired", "resourceTypes": types}


# -- fabric side --------------------------------------------------------------------------

def fabric_json(b: ArmBackend, vault: Vault, fabric: Fabric) -> dict[str, Any]:
    return {
        "name": fabric.name, "type": "Microsoft.RecoveryServices/vaults/replicationFabrics",
        "id": b.asr_id(vault, f"replicationFabrics/{fabric.name}"),
        "properties": {
            "friendlyName": fabric.vmm_fqdn,
            "encryptionDetails": {"kekState": "Enabled", "kekCertThumbprint": fabric.kek_thumbprint,
                                  "kekCertExpiryDate": iso_seconds(fabric.kek_expiry)},
            "rolloverEncryptionDetails": {"kekState": "Enabled", "kekCertThumbprint": None},
            "internalIdentifier": fabric.vmm_id, "bcdrState": "Valid", "customDetails": {"instanceType": "VMM"},
            "healthErrorDetails": [], "health": "Normal",
        },
    }


def provider_json(b: ArmBackend, vault: Vault, fabric: Fabric, now: datetime) -> dict[str, Any]:
    site = b.site_of(fabric)
    heartbeat = b.last_heartbeat(fabric, now)
    expiry = fabric.registered + timedelta(days=365)
    count = sum(1 for i in vault.protected_items.values() if fabric.name in (i.fabric, i.recovery_fabric))
    return {
        "name": fabric.vmm_id,
        "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationRecoveryServicesProviders",
        "id": b.asr_id(vault, f"replicationFabrics/{fabric.name}/replicationRecoveryServicesProviders/{fabric.vmm_id}"),
        "properties": {
            "fabricType": "VMM", "friendlyName": fabric.vmm_fqdn, "providerVersion": PROVIDER_VERSION,
            "serverVersion": site.vmm.version, "providerVersionState": "Latest",
            "providerVersionExpiryDate": iso_seconds(expiry), "fabricFriendlyName": fabric.vmm_fqdn,
            "lastHeartBeat": iso(heartbeat), "connectionStatus": "Connected", "protectedItemCount": count,
            "allowedScenarios": ["Refresh"], "healthErrorDetails": [], "draIdentifier": fabric.vmm_id,
            "machineId": site.vmm.id, "machineName": fabric.vmm_fqdn,
            "biosId": derived_guid(site.vmm.id, "bios").upper(),
            "authenticationIdentityDetails": None, "resourceAccessIdentityDetails": None,
            "dataPlaneAuthenticationIdentityDetails": None,
            "providerVersionDetails": {"version": PROVIDER_VERSION, "expiryDate": iso_seconds(expiry),
                                       "status": "Supported"},
        },
    }


def container_json(b: ArmBackend, vault: Vault, where: FabricCloud) -> dict[str, Any]:
    pairing, role = b.container_role(vault, where.fabric.name, where.cloud.id)
    count = len(b.items_in_container(vault, where.fabric.name, where.cloud.id))
    return {
        "id": b.asr_id(vault, f"replicationFabrics/{where.fabric.name}/replicationProtectionContainers/{where.cloud.id}"),
        "name": where.cloud.id,
        "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationProtectionContainers",
        "properties": {"fabricFriendlyName": where.fabric.vmm_fqdn, "friendlyName": where.cloud.name,
                       "fabricType": "VMM", "protectedItemCount": count, "pairingStatus": pairing, "role": role,
                       "fabricSpecificDetails": None},
    }


def network_json(b: ArmBackend, vault: Vault, where: FabricNetwork) -> dict[str, Any]:
    n = where.network
    return {
        "id": b.asr_id(vault, f"replicationFabrics/{where.fabric.name}/replicationNetworks/{n.id}"),
        "name": n.id, "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationNetworks",
        "properties": {"fabricType": "VMM", "friendlyName": n.name, "networkType": n.isolation,
                       "subnets": [{"name": s.name, "friendlyName": s.name, "addressList": [s.address_prefix]}
                                   for s in n.subnets]},
    }


def _presence(flag: bool) -> str:
    return "Present" if flag else "NotPresent"


def protectable_item_json(b: ArmBackend, vault: Vault, fabric: str, container: str,
                          vm: VirtualMachine) -> dict[str, Any]:
    item = b.protected_item_of_vm(vault, vm.id)
    site = b.estate.cloud(container)
    host = next((h for h in site[0].hosts if h.fqdn == vm.host), None) if site else None
    base = f"replicationFabrics/{fabric}/replicationProtectionContainers/{container}"
    return {
        "id": b.asr_id(vault, f"{base}/replicationProtectableItems/{vm.id}"), "name": vm.id,
        "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationProtectionContainers/"
                "replicationProtectableItems",
        "properties": {
            "friendlyName": vm.name, "protectionStatus": "Protected" if item else "Unprotected",
            "replicationProtectedItemId": b.asr_id(vault, f"{base}/replicationProtectedItems/{item.name}")
            if item else None,
            "recoveryServicesProviderId": b.asr_id(
                vault, f"replicationFabrics/{fabric}/replicationRecoveryServicesProviders/{site[0].vmm.id if site else ''}"),
            "protectionReadinessErrors": vm.readiness_errors(),
            "supportedReplicationProviders": b.supported_providers(vm),
            "customDetails": {
                "instanceType": "HyperVVirtualMachine", "sourceItemId": derived_guid(vm.id, "hyperv-vm"),
                "generation": str(vm.generation), "osDetails": None,
                "diskDetails": [_disk(d, with_name=True) for d in vm.disks],
                "hasPhysicalDisk": _presence(vm.has_physical_disk),
                "hasFibreChannelAdapter": _presence(vm.fibre_channel_adapter),
                "hasSharedVhd": _presence(vm.has_shared_vhd), "hyperVHostId": host.id if host else None,
            },
        },
    }


def _disk(disk, *, with_name: bool) -> dict[str, Any]:
    return {"maxSizeMB": disk.size_gb * 1024, "vhdType": disk.role, "vhdId": disk.id,
            "vhdName": PurePosixPath(disk.file).stem if with_name else None}


# -- replication configuration ------------------------------------------------------------

def policy_json(b: ArmBackend, vault: Vault, policy: Policy) -> dict[str, Any]:
    return {"id": b.asr_id(vault, f"replicationPolicies/{policy.name}"), "name": policy.name,
            "type": "Microsoft.RecoveryServices/vaults/replicationPolicies",
            "properties": {"friendlyName": policy.name, "providerSpecificDetails": normalised_details(policy)}}


def recovery_plan_json(b: ArmBackend, vault: Vault, plan: RecoveryPlan) -> dict[str, Any]:
    """A recovery plan as the service reads it back: normalised groups, fabrics named, scenario state."""
    primary, recovery = vault.fabrics.get(plan.primary_fabric), vault.fabrics.get(plan.recovery_fabric)
    running = b.running_job(vault, plan.scenario_job)
    props: dict[str, Any] = {
        "friendlyName": plan.name,
        "primaryFabricId": b.asr_id(vault, f"replicationFabrics/{plan.primary_fabric}"),
        "primaryFabricFriendlyName": primary.vmm_fqdn if primary else "",
        "recoveryFabricId": b.asr_id(vault, f"replicationFabrics/{plan.recovery_fabric}"),
        "recoveryFabricFriendlyName": recovery.vmm_fqdn if recovery else "",
        "failoverDeploymentModel": plan.failover_deployment_model,
        "replicationProviders": ["HyperVReplica2012R2"],
        "allowedOperations": b.plan_allowed_operations(vault, plan),
        "currentScenario": {"scenarioName": running.scenario_name, "jobId": b.asr_id(vault, f"replicationJobs/"
                                                                                             f"{running.name}"),
                            "startTime": iso(running.start_time)} if running else None,
        "currentScenarioStatus": running.state if running else None,
        "currentScenarioStatusDescription": running.state_description if running else None,
        "groups": [dict(g) for g in plan.groups],
        "providerSpecificDetails": [],
    }
    if plan.last_test_failover is not None:
        props["lastTestFailoverTime"] = iso(plan.last_test_failover)
    return {"id": b.asr_id(vault, f"replicationRecoveryPlans/{plan.name}"), "name": plan.name,
            "type": "Microsoft.RecoveryServices/vaults/replicationRecoveryPlans", "location": None,
            "properties": props}


def container_mapping_json(b: ArmBackend, vault: Vault, m: ContainerMapping) -> dict[str, Any]:
    source, target = b.estate.cloud(m.container), b.estate.cloud(m.target_container)
    policy = vault.policies.get(m.policy)
    return {
        "id": b.asr_id(vault, f"replicationFabrics/{m.fabric}/replicationProtectionContainers/{m.container}/"
                              f"replicationProtectionContainerMappings/{m.name}"),
        "name": m.name,
        "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationProtectionContainers/"
                "replicationProtectionContainerMappings",
        "properties": {
            "targetProtectionContainerId": b.asr_id(
                vault, f"replicationFabrics/{m.target_fabric}/replicationProtectionContainers/{m.target_container}"),
            "targetProtectionContainerFriendlyName": target[1].name if target else "",
            "providerSpecificDetails": None, "health": "Normal", "healthErrorDetails": [],
            "policyId": b.asr_id(vault, f"replicationPolicies/{policy.name if policy else m.policy}"),
            "state": "Paired",
            "sourceProtectionContainerFriendlyName": source[1].name if source else "",
            "sourceFabricFriendlyName": source[0].vmm.fqdn if source else "",
            "targetFabricFriendlyName": target[0].vmm.fqdn if target else "",
            "policyFriendlyName": policy.name if policy else m.policy,
        },
    }


def network_mapping_json(b: ArmBackend, vault: Vault, m: NetworkMapping) -> dict[str, Any]:
    primary, recovery = b.estate.network(m.network), b.estate.network(m.recovery_network)
    return {
        "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationNetworks/replicationNetworkMappings",
        "id": b.asr_id(vault, f"replicationFabrics/{m.fabric}/replicationNetworks/{m.network}/"
                              f"replicationNetworkMappings/{m.name}"),
        "name": m.name,
        "properties": {
            "state": "Paired", "primaryNetworkFriendlyName": primary[1].name if primary else "",
            "primaryNetworkId": b.asr_id(vault, f"replicationFabrics/{m.fabric}/replicationNetworks/{m.network}"),
            "primaryFabricFriendlyName": primary[0].vmm.fqdn if primary else "",
            "recoveryNetworkFriendlyName": recovery[1].name if recovery else "",
            "recoveryNetworkId": b.asr_id(
                vault, f"replicationFabrics/{m.recovery_fabric}/replicationNetworks/{m.recovery_network}"),
            "recoveryFabricArmId": b.asr_id(vault, f"replicationFabrics/{m.recovery_fabric}"),
            "recoveryFabricFriendlyName": recovery[0].vmm.fqdn if recovery else "",
            "fabricSpecificSettings": {"instanceType": "VmmToVmm"},
        },
    }


# -- replicated VMs -----------------------------------------------------------------------

def _progress(item: ProtectedItem, now: datetime) -> str:
    """Initial replication progress, computed from the IR window when read.

    Once the VM is protected the recorded service shows "0" again; so does the lab.
    """
    if item.ir_start is None or item.ir_end is None or item.protection_state != "UnprotectedStatesBegin":
        return "0"
    total = (item.ir_end - item.ir_start).total_seconds()
    if total <= 0:
        return "100"
    done = (now - item.ir_start).total_seconds() / total
    return str(max(0, min(100, int(done * 100))))


def protected_item_json(b: ArmBackend, vault: Vault, item: ProtectedItem, now: datetime) -> dict[str, Any]:
    site_vm = b.estate.vm(item.vm_id)
    vm = site_vm[1] if site_vm else None
    primary, recovery = b.estate.cloud(item.container), b.estate.cloud(item.recovery_container)
    policy = vault.policies.get(item.policy)
    base = f"replicationFabrics/{item.fabric}/replicationProtectionContainers/{item.container}"
    replicated = b.last_replicated(vault, item, now)
    health, health_errors = b.replication_health_of(vault, item, now)
    scenario_job = b.asr_id(vault, f"replicationJobs/{item.scenario_job or 'None'}")
    props: dict[str, Any] = {
        "friendlyName": item.vm_name, "protectedItemType": "HyperVVirtualMachine",
        "protectableItemId": b.asr_id(vault, f"{base}/replicationProtectableItems/{item.vm_id}"),
        "recoveryServicesProviderId": b.asr_id(
            vault, f"replicationFabrics/{item.fabric}/replicationRecoveryServicesProviders/"
                   f"{primary[0].vmm.id if primary else ''}"),
        "primaryFabricFriendlyName": primary[0].vmm.fqdn if primary else "",
        "primaryFabricProvider": "VmmFabric",  # recorded (issue 11: the service's answers)
        "recoveryFabricFriendlyName": recovery[0].vmm.fqdn if recovery else "",
        "recoveryFabricId": b.asr_id(vault, f"replicationFabrics/{item.recovery_fabric}"),
        "primaryProtectionContainerFriendlyName": primary[1].name if primary else "",
        "recoveryProtectionContainerFriendlyName": recovery[1].name if recovery else "",
        "protectionState": item.protection_state,
        "protectionStateDescription": item.protection_state_description,
        "activeLocation": item.active_location,
        "testFailoverState": item.test_failover_state,
        "testFailoverStateDescription": item.test_failover_state_description,
        "allowedOperations": list(item.allowed_operations),
        "replicationHealth": health, "failoverHealth": "Normal",
        "healthErrors": health_errors,
        "policyId": b.asr_id(vault, f"replicationPolicies/{policy.name if policy else item.policy}"),
        "policyFriendlyName": policy.name if policy else item.policy,
    }
    if item.last_failover is not None:
        props["lastSuccessfulFailoverTime"] = iso(item.last_failover)
    if item.last_test_failover is not None:
        props["lastSuccessfulTestFailoverTime"] = iso(item.last_test_failover)
    props["currentScenario"] = {
        "scenarioName": item.scenario, "jobId": scenario_job,
        "startTime": iso(item.scenario_start) if item.scenario_start else NO_SCENARIO_START,
    }
    props["failoverRecoveryPointId"] = ""
    props["providerSpecificDetails"] = {
        "instanceType": policy.instance_type if policy else "HyperVReplica2012R2",
        "lastReplicatedTime": iso_seconds(replicated) if replicated else None,
        "vmNics": [_nic(b, vault, item, nic) for nic in (vm.nics if vm else [])],
        "vmId": item.vm_id,
        "vmProtectionState": item.protection_state,
        "vmProtectionStateDescription": item.protection_state_description,
        "initialReplicationDetails": {
            "initialReplicationType": policy.settings["initialReplicationMethod"] if policy else "OverNetwork",
            "initialReplicationProgressPercentage": _progress(item, now),
        },
        "vMDiskDetails": [_disk(d, with_name=False) for d in (vm.disks if vm else [])],
    }
    props["recoveryContainerId"] = b.asr_id(
        vault, f"replicationFabrics/{item.recovery_fabric}/replicationProtectionContainers/{item.recovery_container}")
    return {"id": b.asr_id(vault, f"{base}/replicationProtectedItems/{item.name}"), "name": item.name,
            "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationProtectionContainers/"
                    "replicationProtectedItems",
            "properties": props}


def _nic(b: ArmBackend, vault: Vault, item: ProtectedItem, nic) -> dict[str, Any]:
    """A NIC as recorded for VMM-to-VMM; unmapped networks show the empty GUID as recovery network."""
    site = b.site_of(b.get_fabric(vault, item.fabric))
    network = next((n for n in site.networks if n.name == nic.network), None)
    recovery_network = b.recovery_network_for(vault, item.fabric, network.id) if network else None
    return {
        "nicId": nic.id, "replicaNicId": b.replica_nic_id(item.vm_id, nic.id), "sourceNicArmId": None,
        "vMSubnetName": None, "vMNetworkName": nic.network,
        "recoveryVMNetworkId": recovery_network or EMPTY_GUID, "recoveryVMSubnetName": None,
        "ipAddressType": "Static" if nic.static else "Dynamic",
        "primaryNicStaticIPAddress": nic.ip_address, "replicaNicStaticIPAddress": None,
        "selectionType": "NotSelected",
    }


# -- jobs and async operations ------------------------------------------------------------

#: what the lab keeps on a plan's action task for itself, never on the wire
_INTERNAL_TASK_DETAILS = frozenset({"vmm", "timeoutSeconds", "group"})


def _child_task_json(parent, child: dict[str, Any]) -> dict[str, Any]:
    """A VM's task inside a recovery plan group: it runs in parallel with its siblings, as long as the group."""
    return {
        "taskId": derived_guid(parent.task_id, child["item"]), "name": parent.name,
        "startTime": iso(parent.start_time) if parent.start_time else NOT_SET,
        "endTime": iso(parent.end_time) if parent.end_time else NOT_SET,
        "allowedActions": [], "friendlyName": child["name"], "state": parent.state,
        "stateDescription": parent.state_description, "taskType": "TaskDetails",
        "customDetails": {"instanceType": "VirtualMachineTaskDetails", "skippedReason": None,
                          "skippedReasonString": None, "jobTask": {"jobId": None, "jobFriendlyName": None},
                          "virtualMachineId": child["vmId"]},
        "groupTaskCustomDetails": None, "errors": [],
    }


def _task_json(task) -> dict[str, Any]:
    group = task.task_type == "GroupTaskDetails"
    if group:
        return {
            "taskId": task.task_id, "name": task.name,
            "startTime": iso(task.start_time) if task.start_time else NOT_SET,
            "endTime": iso(task.end_time) if task.end_time else NOT_SET,
            "allowedActions": [], "friendlyName": task.friendly_name, "state": task.state,
            "stateDescription": task.state_description, "taskType": task.task_type, "customDetails": None,
            "groupTaskCustomDetails": {"instanceType": "GroupTaskDetails", **task.details,
                                       "childTasks": [_child_task_json(task, c) for c in task.children]},
            "errors": list(task.errors),
        }
    details = {k: v for k, v in task.details.items() if k not in _INTERNAL_TASK_DETAILS}
    return {
        "taskId": task.task_id, "name": task.name,
        "startTime": iso(task.start_time) if task.start_time else NOT_SET,
        "endTime": iso(task.end_time) if task.end_time else NOT_SET,
        "allowedActions": [], "friendlyName": task.friendly_name, "state": task.state,
        "stateDescription": task.state_description, "taskType": task.task_type,
        "customDetails": details or {"instanceType": "TaskDetails"},
        "groupTaskCustomDetails": None,
        "errors": list(task.errors),
    }


def job_json(b: ArmBackend, vault: Vault, job: Job, *, with_tasks: bool = True) -> dict[str, Any]:
    """A job; lists leave tasks out, as the service's job list does."""
    props: dict[str, Any] = {
        "activityId": job.activity_id, "scenarioName": job.scenario_name, "friendlyName": job.friendly_name,
        "state": job.state, "stateDescription": job.state_description,
        "tasks": [_task_json(t) for t in job.tasks] if with_tasks else [],
        "errors": list(job.errors), "startTime": iso(job.start_time),
    }
    if job.end_time is not None:
        props["endTime"] = iso_seconds(job.end_time)
    props.update({
        "allowedActions": job.allowed_actions, "targetObjectId": job.target_object_id,
        "targetObjectName": job.target_object_name, "targetInstanceType": job.target_instance_type,
        "customDetails": {"instanceType": job.details_type, **job.details, "affectedObjectDetails": dict(job.affected)},
    })
    return {"id": b.asr_id(vault, f"replicationJobs/{job.name}"), "name": job.name,
            "type": "Microsoft.RecoveryServices/vaults/replicationJobs", "properties": props}


#: ASR job state -> ARM async-operation status (only "Canceled" is terminal for azure-core)
ARM_STATUS = {"NotStarted": "InProgress", "InProgress": "InProgress", "Suspended": "InProgress",
              "Succeeded": "Succeeded", "Failed": "Failed", "Cancelled": "Canceled", "Other": "Failed"}


def operation_status_json(b: ArmBackend, vault: Vault, found: Job | Operation) -> dict[str, Any]:
    """The Azure-AsyncOperation resource: ``{id, name, status, startTime, endTime, error}``."""
    status_id = b.asr_id(vault, f"replicationOperationStatus/{found.name if isinstance(found, Job) else found.id}")
    if isinstance(found, Operation):
        return {"id": status_id, "name": found.id, "status": "Succeeded", "startTime": iso(found.at),
                "endTime": iso(found.at), "error": None}
    status = ARM_STATUS.get(found.state, "InProgress")
    error = None
    if status == "Failed":
        first = (found.errors or [{}])[0].get("serviceErrorDetails") or {}
        error = {"code": first.get("code") or "InternalError",
                 "message": first.get("message") or f"The job '{found.friendly_name}' failed.", "details": None}
    elif status == "Canceled":
        error = {"code": "OperationCanceled", "message": f"The job '{found.friendly_name}' was cancelled.",
                 "details": None}
    return {"id": status_id, "name": found.name, "status": status, "startTime": iso(found.start_time),
            "endTime": iso_seconds(found.end_time) if found.end_time else None, "error": error}


def page(items: list, offset: int, size: int) -> tuple[list, int | None]:
    """One page of a list and the offset of the next page (None when this is the last)."""
    chunk = items[offset:offset + size]
    following = offset + size
    return chunk, (following if following < len(items) else None)


