"""Hyper-V Replica replication policies (step 5): validation, normalisation, CRUD jobs.

Input and output differ on the wire and the lab keeps that asymmetry (recorded in
TestCreatePolicy): the client sends ``compression: "Disable"`` and ``replicaDeletion:
"Required"``; the service answers ``compression: "Disabled"`` and ``replicaDeletionOption:
"SecondaryVMOnRecoveryCloud"``, and omits an empty online start time.

A request whose *shape* is wrong (no providerSpecificInput, a policy type that is not
VMM-to-VMM) is refused at once. A request whose *values* are wrong is accepted and its
AddProtectionProfile job fails at the prerequisites check with 150261, which is how the
service reports policy problems; the allowed values are those of the
New-AzRecoveryServicesAsrPolicy cmdlet that produced the recorded traffic and of Hyper-V
Replica itself.
"""

from __future__ import annotations

import re
from typing import Any

from .base import BackendCore, effects
from .errors import AsrError, AsrErrors, ResourceNotFound
from .jobs import Job
from .naming import derived_guid
from .state import Policy, Vault

POLICY_TYPE = "Microsoft.RecoveryServices/vaults/replicationPolicies"
HYPERV_REPLICA_TYPES = ("HyperVReplica2012R2", "HyperVReplica2012")
REPLICATION_FREQUENCIES = (30, 300, 900)
MAX_RECOVERY_POINTS = {"HyperVReplica2012R2": 24, "HyperVReplica2012": 15}
_TIMESPAN = re.compile(r"^(\d+\.)?\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")

COMPRESSION_OUT = {"Enable": "Enabled", "Disable": "Disabled"}
#: "Required" is recorded; the output for "NotRequired" is inferred.
REPLICA_DELETION_OUT = {"Required": "SecondaryVMOnRecoveryCloud", "NotRequired": "None"}


def _int(settings: dict, key: str, low: int, high: int, problems: list[str], *, required: bool = False,
         default: int | None = None) -> None:
    value = settings.get(key)
    if value is None:
        value = settings[key] = default
    if value is None:
        if required:
            problems.append(f"The value of {key} is missing.")
        return
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"The value '{value}' of {key} isn't a whole number.")
    elif not low <= value <= high:
        problems.append(f"The value {value} of {key} is out of range; it must be between {low} and {high}.")
    settings[key] = value


def _choice(settings: dict, key: str, allowed: tuple, problems: list[str], default: Any) -> None:
    value = settings.get(key)
    if value is None:
        value = default
    if value not in allowed:
        problems.append(f"The value '{value}' of {key} isn't valid. Valid values: {', '.join(map(str, allowed))}.")
    settings[key] = value


def check_policy_settings(instance_type: str, given: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Fill defaults and check the values of a Hyper-V Replica policy input.

    :return: (settings in input spelling, problems); no problems means valid.
    """
    settings = {k: v for k, v in given.items() if k != "instanceType"}
    problems: list[str] = []
    if instance_type == "HyperVReplica2012R2":
        value = settings.get("replicationFrequencyInSeconds")
        if value is None:
            problems.append("The value of replicationFrequencyInSeconds is missing.")
        elif value not in REPLICATION_FREQUENCIES:
            problems.append(f"The replication frequency {value} seconds isn't supported. "
                            f"Supported values: 30, 300 and 900 seconds.")
    else:
        settings.pop("replicationFrequencyInSeconds", None)  # Hyper-V 2012 replicates every 5 minutes
    _int(settings, "recoveryPoints", 0, MAX_RECOVERY_POINTS[instance_type], problems, default=0)
    _int(settings, "applicationConsistentSnapshotFrequencyInHours", 0, 12, problems, default=0)
    points = settings.get("recoveryPoints")
    snapshots = settings.get("applicationConsistentSnapshotFrequencyInHours")
    if isinstance(points, int) and isinstance(snapshots, int) and snapshots > points:
        problems.append("The app-consistent snapshot frequency can't be greater than the number of "
                        "recovery points to retain.")
    _choice(settings, "compression", ("Enable", "Disable"), problems, "Disable")
    _choice(settings, "initialReplicationMethod", ("OverNetwork", "Offline"), problems, "OverNetwork")
    start = settings.setdefault("onlineReplicationStartTime", "")
    if start and not (isinstance(start, str) and _TIMESPAN.match(start)):
        problems.append(f"The online replication start time '{start}' isn't a time span (hh:mm:ss).")
    settings.setdefault("offlineReplicationImportPath", "")
    settings.setdefault("offlineReplicationExportPath", "")
    if settings["initialReplicationMethod"] == "Offline" and not (
            settings["offlineReplicationImportPath"] and settings["offlineReplicationExportPath"]):
        problems.append("Offline initial replication needs both offlineReplicationImportPath and "
                        "offlineReplicationExportPath.")
    _int(settings, "replicationPort", 1, 65535, problems, required=True)
    _choice(settings, "allowedAuthenticationType", (1, 2), problems, 1)
    _choice(settings, "replicaDeletion", ("Required", "NotRequired"), problems, "NotRequired")
    return settings, problems


def normalised_details(policy: Policy) -> dict[str, Any]:
    """The policy's providerSpecificDetails as the service answers them."""
    s = policy.settings
    out: dict[str, Any] = {"instanceType": policy.instance_type}
    if policy.instance_type == "HyperVReplica2012R2":
        out["replicationFrequencyInSeconds"] = s["replicationFrequencyInSeconds"]
    out["recoveryPoints"] = s["recoveryPoints"]
    out["applicationConsistentSnapshotFrequencyInHours"] = s["applicationConsistentSnapshotFrequencyInHours"]
    out["compression"] = COMPRESSION_OUT[s["compression"]]
    out["initialReplicationMethod"] = s["initialReplicationMethod"]
    if s.get("onlineReplicationStartTime"):
        out["onlineReplicationStartTime"] = s["onlineReplicationStartTime"]
    out["offlineReplicationImportPath"] = s["offlineReplicationImportPath"]
    out["offlineReplicationExportPath"] = s["offlineReplicationExportPath"]
    out["replicationPort"] = s["replicationPort"]
    out["allowedAuthenticationType"] = s["allowedAuthenticationType"]
    out["replicaDeletionOption"] = REPLICA_DELETION_OUT[s["replicaDeletion"]]
    return out


def _provider_input(body: dict[str, Any], key: str) -> dict[str, Any]:
    props = body.get("properties")
    psi = props.get(key) if isinstance(props, dict) else None
    if not isinstance(psi, dict):
        raise AsrError(AsrErrors.INVALID_INPUT, parameter=key,
                       reason=f"properties.{key} is required and must be an object.")
    kind = psi.get("instanceType")
    if kind not in HYPERV_REPLICA_TYPES:
        raise AsrError(AsrErrors.INVALID_INPUT, parameter="instanceType",
                       reason=f"The replication provider '{kind}' isn't valid for replication between VMM "
                              f"sites. Use HyperVReplica2012R2 or HyperVReplica2012.")
    return psi


class PolicyOperations(BackendCore):
    """create_policy, update_policy, delete_policy, get_policy, list_policies."""

    def list_policies(self, vault: Vault) -> list[Policy]:
        return list(vault.policies.values())

    def get_policy(self, vault: Vault, name: str) -> Policy:
        policy = vault.policies.get(name.lower())
        if policy is None:
            raise ResourceNotFound(POLICY_TYPE, name, vault.resource_group)
        return policy

    def policy_from_id(self, vault: Vault, policy_id: Any) -> Policy:
        """Resolve a ``policyId`` from a request body, or refuse the request."""
        name = policy_id.rstrip("/").rsplit("/", 1)[-1] if isinstance(policy_id, str) else ""
        in_vault = isinstance(policy_id, str) and f"/replicationpolicies/{name.lower()}" in policy_id.lower()
        policy = vault.policies.get(name.lower()) if in_vault else None
        if policy is None:
            raise AsrError(AsrErrors.POLICY_NOT_FOUND, policy=name or policy_id)
        return policy

    def create_policy(self, vault: Vault, name: str, body: dict[str, Any]) -> Job:
        psi = _provider_input(body, "providerSpecificInput")
        settings, problems = check_policy_settings(psi["instanceType"], psi)
        refusal = (AsrErrors.POLICY_CREATION_FAILED.render(reason=" ".join(problems)) if problems else None)
        guid = derived_guid(vault.id, "policy", name)
        return self._start_job(
            vault, "AddProtectionProfile", target_object_id=guid, target_object_name=name,
            target_path=f"replicationPolicies/{name}", result="resource", refusal=refusal,
            affected={"protectionProfileId": guid, "protectionProfileName": name},
            params={"name": name, "guid": guid, "instance_type": psi["instanceType"], "settings": settings},
        )

    def update_policy(self, vault: Vault, name: str, body: dict[str, Any]) -> Job:
        policy = self.get_policy(vault, name)
        psi = _provider_input(body, "replicationProviderSettings")
        if psi["instanceType"] != policy.instance_type:
            raise AsrError(AsrErrors.INVALID_INPUT, parameter="instanceType",
                           reason=f"The policy '{policy.name}' uses {policy.instance_type}; "
                                  f"its replication provider can't be changed.")
        merged = {**policy.settings, **{k: v for k, v in psi.items() if k != "instanceType"}}
        settings, problems = check_policy_settings(policy.instance_type, merged)
        refusal = (AsrErrors.POLICY_CREATION_FAILED.render(reason=" ".join(problems)) if problems else None)
        return self._start_job(
            vault, "UpdateProtectionProfile", target_object_id=policy.guid, target_object_name=policy.name,
            target_path=f"replicationPolicies/{policy.name}", result="resource", refusal=refusal,
            affected={"protectionProfileId": policy.guid, "protectionProfileName": policy.name},
            params={"name": policy.name, "settings": settings},
        )

    def delete_policy(self, vault: Vault, name: str) -> Job:
        policy = self.get_policy(vault, name)
        for mapping in vault.container_mappings.values():
            if mapping.policy == policy.name.lower():
                cloud = self.estate.cloud(mapping.container)
                raise AsrError(AsrErrors.POLICY_IN_USE, policy=policy.name,
                               cloud=cloud[1].name if cloud else mapping.container)
        return self._start_job(
            vault, "RemoveProtectionProfile", target_object_id=policy.guid, target_object_name=policy.name,
            target_path=f"replicationPolicies/{policy.name}", result="none",
            affected={"protectionProfileId": policy.guid, "protectionProfileName": policy.name},
            params={"name": policy.name},
        )

    @effects("AddProtectionProfile", "UpdateProtectionProfile", "RemoveProtectionProfile")
    def _apply_policy_job(self, vault: Vault, job: Job, event: str, index: int | None) -> None:
        if event != "succeeded":
            return
        key = job.params["name"].lower()
        if job.kind == "RemoveProtectionProfile":
            vault.policies.pop(key, None)
        elif job.kind == "UpdateProtectionProfile" and key in vault.policies:
            vault.policies[key].settings = job.params["settings"]
        elif job.kind == "AddProtectionProfile":
            vault.policies[key] = Policy(
                name=job.params["name"], guid=job.params["guid"], instance_type=job.params["instance_type"],
                settings=job.params["settings"], created=job.end_time or self.now(),
            )
