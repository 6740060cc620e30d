"""Errors the emulated Resource Manager and Site Recovery service answer with.

Two families, because the real control plane has two:

* ARM's own refusals (missing or unknown api-version, unknown subscription, resource group
  or resource, unreadable body). They carry a word code (``ResourceNotFound``) and are
  answered before the resource provider sees the request.
* Site Recovery's refusals. ASR reports them with a numeric code as a string ("532",
  "150261") plus ``possibleCauses`` and ``recommendedAction``. The same catalogue feeds
  synchronous 400s and the ``errors`` of failed jobs, because the real service uses the
  same vocabulary for both.

Only 532 (recorded: "An operation ... is in progress"), 150261 (policy creation failed,
terraform-provider-azurerm#7479), 45005 (protection couldn't be enabled,
terraform-provider-azurerm#31927) and 70094 (Hyper-V failed to enable replication) come
from observed traffic; the other numbers are representative and marked so below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ArmError(Exception):
    """An error answered as the ARM error envelope ``{"error": {"code", "message", ...}}``.

    ``retry_after`` is only for retryable conditions: azure-core retries any >= 400
    response that carries Retry-After (up to 10 times), so a non-retryable error must
    never set it.
    """

    status: int = 400
    code: str = "BadRequest"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_after: int | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details
        self.retry_after = retry_after
        self.target = target

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class MissingApiVersion(ArmError):
    code = "MissingApiVersionParameter"

    def __init__(self) -> None:
        super().__init__("The api-version query parameter (?api-version=) is required for all requests.")


class UnsupportedApiVersion(ArmError):
    """ARM's answer to an api-version the resource type does not support."""

    code = "NoRegisteredProviderFound"

    def __init__(self, version: str, resource_type: str, supported: list[str], location: str) -> None:
        super().__init__(
            f"No registered resource provider found for location '{location}' and API version "
            f"'{version}' for type '{resource_type}'. The supported api-versions are "
            f"'{', '.join(supported)}'. The supported locations are '{location}'."
        )


class SubscriptionNotFound(ArmError):
    status = 404
    code = "SubscriptionNotFound"

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"The subscription '{subscription_id}' could not be found.")


class ResourceGroupNotFound(ArmError):
    status = 404
    code = "ResourceGroupNotFound"

    def __init__(self, resource_group: str) -> None:
        super().__init__(f"Resource group '{resource_group}' could not be found.")


class ResourceNotFound(ArmError):
    status = 404
    code = "ResourceNotFound"

    def __init__(self, resource_type: str, name: str, resource_group: str | None = None) -> None:
        where = f" under resource group '{resource_group}'" if resource_group else ""
        super().__init__(f"The Resource '{resource_type}/{name}'{where} was not found.")


class UnknownRoute(ArmError):
    """A path or verb the lab does not serve. The lab refuses rather than fakes success."""

    status = 404
    code = "NotFound"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"The lab does not serve {method} {path}.")


class InvalidRequestContent(ArmError):
    code = "InvalidRequestContent"


@dataclass(frozen=True)
class AsrErrorSpec:
    """One entry of Site Recovery's error catalogue; texts are templates for ``format``."""

    code: str
    message: str
    possible_causes: str
    recommended_action: str

    def render(self, **values: Any) -> dict[str, str]:
        return {
            "code": self.code,
            "message": self.message.format(**values),
            "possibleCauses": self.possible_causes.format(**values),
            "recommendedAction": self.recommended_action.format(**values),
        }


class AsrErrors:
    """The Site Recovery errors the lab produces, in one place."""

    #: Recorded (PS-REC TestPlannedFailover): a second operation on a busy item.
    OPERATION_IN_PROGRESS = AsrErrorSpec(
        "532",
        "The operation couldn't be completed.",
        "An operation {item} ({operation}) is in progress.",
        "Either wait for the operation in progress to complete, or cancel it and then retry the "
        "operation that couldn't complete. For details see http://aka.ms/asr-err-inprogress. ",
    )
    #: Representative code: the operation is not in the item's allowedOperations.
    OPERATION_NOT_ALLOWED = AsrErrorSpec(
        "539",
        "The operation '{operation}' isn't allowed on the replicated item '{item}'.",
        "The replicated item is in the state '{state}'. Allowed operations in this state: {allowed}.",
        "Complete or clean up the pending operation on the item, then retry.",
    )
    #: terraform-provider-azurerm#7479.
    POLICY_CREATION_FAILED = AsrErrorSpec(
        "150261",
        "Replication policy creation failed.",
        "{reason}",
        "Correct the replication policy settings and retry the operation.",
    )
    #: Representative code.
    POLICY_NOT_FOUND = AsrErrorSpec(
        "28050",
        "The replication policy '{policy}' couldn't be found.",
        "The policy was deleted or the policy ID is wrong.",
        "Specify an existing replication policy and retry the operation.",
    )
    #: Representative code.
    POLICY_IN_USE = AsrErrorSpec(
        "28052",
        "The replication policy '{policy}' can't be deleted.",
        "The policy is associated with the cloud '{cloud}'.",
        "Dissociate the policy from all clouds and retry the operation.",
    )
    #: Representative code.
    CLOUD_ALREADY_PAIRED = AsrErrorSpec(
        "25042",
        "Protection couldn't be configured for the cloud '{cloud}'.",
        "The cloud is already paired with the cloud '{paired_with}'.",
        "Remove the existing cloud pairing, or use the existing pairing.",
    )
    #: Representative code.
    CONTAINER_NOT_FOUND = AsrErrorSpec(
        "25043",
        "The cloud '{container}' couldn't be found.",
        "The protection container ID is wrong, or its VMM server isn't registered in the vault.",
        "Specify a protection container of a registered VMM server and retry.",
    )
    #: Representative code.
    INVALID_PAIRING = AsrErrorSpec(
        "25044",
        "Protection couldn't be configured for the cloud '{cloud}'.",
        "{reason}",
        "Choose a recovery cloud that isn't the primary cloud and isn't already protected.",
    )
    #: Representative code.
    MAPPING_IN_USE = AsrErrorSpec(
        "25048",
        "The replication policy can't be dissociated from the cloud '{cloud}'.",
        "{count} virtual machine(s) in the cloud are protected with this policy.",
        "Disable replication for the virtual machines and retry the operation.",
    )
    #: Representative code.
    CLOUD_NOT_PROTECTED = AsrErrorSpec(
        "70091",
        "Protection couldn't be enabled for the virtual machine '{item}'.",
        "The cloud '{cloud}' isn't configured for protection with the replication policy '{policy}'.",
        "Associate the replication policy with the cloud and retry the operation.",
    )
    #: Representative code.
    ITEM_NOT_FOUND = AsrErrorSpec(
        "70092",
        "The virtual machine '{item}' couldn't be found in the cloud '{cloud}'.",
        "The protectable item ID is wrong or the virtual machine was moved to another cloud.",
        "Refresh the VMM server and retry with a protectable item of this cloud.",
    )
    #: Representative code.
    ALREADY_PROTECTED = AsrErrorSpec(
        "70093",
        "Protection couldn't be enabled for the virtual machine '{item}'.",
        "The virtual machine is already protected as '{existing}'.",
        "Use the existing replicated item.",
    )
    #: terraform-provider-azurerm#31927 (message); used for readiness failures of enable.
    ENABLE_PROTECTION_FAILED = AsrErrorSpec(
        "45005",
        "Protection couldn't be enabled for the virtual machine.",
        "{reason}",
        "Resolve the issue on the virtual machine '{item}' and retry the operation.",
    )
    #: Representative code.
    NETWORK_NOT_FOUND = AsrErrorSpec(
        "23001",
        "The VM network '{network}' couldn't be found.",
        "The VM network ID is wrong, or the network belongs to a VMM server that isn't registered.",
        "Specify a VM network of a registered VMM server and retry the operation.",
    )
    #: Representative code.
    NETWORK_ALREADY_MAPPED = AsrErrorSpec(
        "23003",
        "The VM network '{network}' couldn't be mapped.",
        "The VM network is already mapped to the VM network '{mapped_to}'.",
        "Remove the existing network mapping and retry the operation.",
    )
    #: Representative code.
    INVALID_INPUT = AsrErrorSpec(
        "506",
        "An invalid parameter {parameter} was passed.",
        "{reason}",
        "Correct the parameter and retry the operation.",
    )
    #: Representative code: a recovery plan's definition breaks one of ASR's rules.
    INVALID_RECOVERY_PLAN = AsrErrorSpec(
        "25120",
        "The recovery plan '{plan}' couldn't be saved.",
        "{reason}",
        "Correct the recovery plan definition and retry the operation.",
    )
    #: Representative code: an operation the recovery plan does not allow now.
    PLAN_OPERATION_NOT_ALLOWED = AsrErrorSpec(
        "25121",
        "The operation '{operation}' isn't allowed on the recovery plan '{plan}'.",
        "{reason}",
        "Complete or clean up the pending operation on the recovery plan, then retry.",
    )
    #: hyper-v-vmm-recovery-script.md: a script that writes to STDERR, or is missing from a library, fails.
    SCRIPT_FAILED = AsrErrorSpec(
        "28112",
        "The script '{path}' of the recovery plan action '{action}' failed on '{vmm}'.",
        "{reason}",
        "Correct the script in the VMM library of both sites (it must write nothing to STDERR and finish "
        "within the action's timeout), then retry the operation.",
    )
    #: Representative code.
    JOB_ACTION_NOT_ALLOWED = AsrErrorSpec(
        "562",
        "The job '{job}' can't be {action}.",
        "The job is in the state '{state}'.",
        "Retry the action on a job that allows it (see allowedActions).",
    )


class AsrError(ArmError):
    """A synchronous Site Recovery refusal: 400 with a numeric code and ASR's extra fields."""

    def __init__(self, spec: AsrErrorSpec, *, status: int = 400, activity_id: str | None = None,
                 **values: Any) -> None:
        rendered = spec.render(**values)
        detail = dict(rendered)
        detail["activityId"] = activity_id or ""
        super().__init__(rendered["message"], status=status, code=spec.code, details=[detail])
        self.spec = spec
        self.rendered = rendered
