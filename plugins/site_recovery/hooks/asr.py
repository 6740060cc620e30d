"""Hook for Azure Site Recovery (ASR) and Recovery Services vaults over Azure Resource Manager."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import Any, TypeVar

import azure.identity
import azure.identity.aio
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservices.aio import RecoveryServicesClient as AsyncRecoveryServicesClient
from azure.mgmt.recoveryservicessiterecovery import SiteRecoveryManagementClient
from azure.mgmt.recoveryservicessiterecovery.aio import (
    SiteRecoveryManagementClient as AsyncSiteRecoveryManagementClient,
)
from azure.mgmt.recoveryservicessiterecovery.models import Job

from pydantic import ValidationError

from airflow.sdk import BaseHook
from site_recovery.exceptions import MalformedAsrAnswer
from site_recovery.records import (
    AsrError,
    FailoverItem,
    JobSummary,
    JobTask,
    PlanActionSummary,
    PlanGroupSummary,
    ProtectableVm,
    ProtectedItemSummary,
    Record,
    RecoveryPlanSummary,
)
from site_recovery.vocabulary import ProtectionState

_R = TypeVar("_R", bound=Record)
_T = TypeVar("_T")

# azure-core's HttpLoggingPolicy writes every request and response at INFO; in a task log
# that buries what a DR engineer needs. [logging] namespace_levels does not reach the task
# runner's loggers, so quieten it where the clients are built. Set the logger's level back
# to INFO (or DEBUG) to see the wire again.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


@dataclass(frozen=True)
class _Cloud:
    resource_manager: str
    authority: str
    portal: str


_AUTHORITIES = azure.identity.AzureAuthorityHosts
_CLOUDS = {
    "AzurePublicCloud": _Cloud(
        "https://management.azure.com", _AUTHORITIES.AZURE_PUBLIC_CLOUD, "https://portal.azure.com"
    ),
    "AzureUSGovernment": _Cloud(
        "https://management.usgovcloudapi.net", _AUTHORITIES.AZURE_GOVERNMENT, "https://portal.azure.us"
    ),
    "AzureChinaCloud": _Cloud(
        "https://management.chinacloudapi.cn", _AUTHORITIES.AZURE_CHINA, "https://portal.azure.cn"
    ),
}


@dataclass(frozen=True)
class ArmConnectionSettings:
    """Everything an ``azure`` connection says about reaching ARM; the secret never shows in ``repr``."""

    subscription_id: str
    resource_manager_endpoint: str
    credential_scopes: tuple[str, ...]
    authority: str
    custom_authority: bool
    portal_url: str
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    managed_identity_client_id: str | None = None
    workload_identity_tenant_id: str | None = None
    ca_bundle: str | None = None

    @property
    def transport_kwargs(self) -> dict[str, Any]:
        """azure-core transport options shared by the credential and the clients."""
        return {"connection_verify": self.ca_bundle} if self.ca_bundle else {}

    @property
    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a management client: endpoint, token scopes and CA bundle."""
        return {
            "base_url": self.resource_manager_endpoint,
            "credential_scopes": list(self.credential_scopes),
            **self.transport_kwargs,
        }


#: Extras of AzureBaseHook's key-file authentication, which this hook does not support.
UNSUPPORTED_EXTRAS = ("key_path", "key_json")

#: The characters of a job comment (resume, cleanup) ASR keeps.
ASR_COMMENT_LIMIT = 1024


def refuse_key_files(conn_id: str, extras: Mapping[str, Any]) -> None:
    """
    Refuse a connection that authenticates with an AzureBaseHook key file (``key_path``/``key_json``).

    Ignoring them would fall through to ``DefaultAzureCredential`` and sign in as someone else
    (or fail later with a message about a credential the connection never named).

    :raise ValueError: The connection sets one of :data:`UNSUPPORTED_EXTRAS` (the value is never shown).
    """
    found = [name for name in UNSUPPORTED_EXTRAS
             if any(extras.get(key) not in (None, "") for key in (name, f"extra__azure__{name}"))]
    if found:
        raise ValueError(
            f"Connection {conn_id!r} sets {' and '.join(found)}: AzureBaseHook's key_path/key_json "
            "authentication files are not supported by the Azure Site Recovery hook. Use a client secret "
            "(login, password and the tenantId extra), a workload or managed identity, or "
            "DefaultAzureCredential (no credentials in the connection), and remove "
            f"{' and '.join(found)} from the connection."
        )


def arm_settings(
    conn_id: str, login: str | None, password: str | None, extras: Mapping[str, Any]
) -> ArmConnectionSettings:
    """
    Read an ``azure`` connection's fields into :class:`ArmConnectionSettings`.

    :param conn_id: Connection id, only used in error messages.
    :param login: Service principal client id, if any.
    :param password: Service principal secret, if any.
    :param extras: The connection's parsed extras.
    :raise ValueError: The connection is incomplete, names an unknown cloud or uses a key file
        (:func:`refuse_key_files`).
    """
    refuse_key_files(conn_id, extras)
    extras = {key: value for key, value in extras.items() if value not in (None, "")}
    cloud_name = extras.get("cloud_environment", "AzurePublicCloud")
    if cloud_name not in _CLOUDS:
        raise ValueError(f"Connection {conn_id!r}: cloud_environment must be one of {sorted(_CLOUDS)}.")
    cloud = _CLOUDS[cloud_name]
    subscription_id = extras.get("subscriptionId")
    if not subscription_id:
        raise ValueError(f"Connection {conn_id!r} has no subscriptionId extra.")
    if login and password and not extras.get("tenantId"):
        raise ValueError(f"Connection {conn_id!r}: a client id and secret need the tenantId extra.")
    endpoint = str(extras.get("resource_manager_endpoint", cloud.resource_manager)).rstrip("/")
    scope = extras.get("credential_scope", f"{endpoint}/.default")
    return ArmConnectionSettings(
        subscription_id=subscription_id,
        resource_manager_endpoint=endpoint,
        credential_scopes=(scope,) if isinstance(scope, str) else tuple(scope),
        authority=extras.get("authority_host", cloud.authority),
        custom_authority="authority_host" in extras,
        portal_url=str(extras.get("portal_url", cloud.portal)).rstrip("/"),
        tenant_id=extras.get("tenantId"),
        client_id=login or None,
        client_secret=password or None,
        managed_identity_client_id=extras.get("managed_identity_client_id"),
        workload_identity_tenant_id=extras.get("workload_identity_tenant_id"),
        ca_bundle=extras.get("ca_bundle"),
    )


def credential_spec(
    settings: ArmConnectionSettings, environ: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    """
    Choose the azure-identity credential class (by name, same in sync and ``aio``) and its arguments.

    Order: client secret, workload identity (needs ``AZURE_FEDERATED_TOKEN_FILE``), managed identity
    (user-assigned when a client id is given), then ``DefaultAzureCredential``.
    """
    common = settings.transport_kwargs
    entra = {"authority": settings.authority, **common}
    if settings.custom_authority:
        entra["disable_instance_discovery"] = True
    if settings.client_id and settings.client_secret:
        return "ClientSecretCredential", {
            "tenant_id": settings.tenant_id,
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            **entra,
        }
    token_file = environ.get("AZURE_FEDERATED_TOKEN_FILE")
    if settings.workload_identity_tenant_id and token_file:
        return "WorkloadIdentityCredential", {
            "tenant_id": settings.workload_identity_tenant_id,
            "client_id": settings.managed_identity_client_id or environ.get("AZURE_CLIENT_ID"),
            "token_file_path": token_file,
            **entra,
        }
    if settings.managed_identity_client_id:
        return "ManagedIdentityCredential", {"client_id": settings.managed_identity_client_id, **common}
    return "DefaultAzureCredential", {"authority": settings.authority, **common}


_JOB_IN_URL = re.compile(
    r"/(?:operationresults|replicationOperationStatus|replicationJobs)/([^/?#,\s]+)", re.IGNORECASE
)


def job_name_from_headers(headers: Mapping[str, str]) -> str | None:
    """
    Return the ASR job name that a 202 answer to a mutating call points at, or None.

    Tried in order: ``Location`` (``…/operationresults/{job}?…``), ``Azure-AsyncOperation``
    (``…/replicationOperationStatus/{job}?…``) and ``x-ms-request-id`` (``…/replicationJobs/{job}``).
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    for header in ("location", "azure-asyncoperation", "x-ms-request-id"):
        found = _JOB_IN_URL.findall(lowered.get(header) or "")
        if found:
            return found[-1]
    return None


def is_transient(exc: BaseException) -> bool:
    """Tell whether retrying could help: throttling, server errors and network failures are transient."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        return status in (408, 429) or status >= 500
    return False


def is_azure_error(exc: BaseException) -> bool:
    """Tell whether ``exc`` came from Azure (ARM refused or failed a request, or it could not be reached)."""
    return isinstance(exc, AzureError)


def is_not_found(exc: BaseException) -> bool:
    """Tell whether ``exc`` is ARM's answer that the resource does not exist (404)."""
    return isinstance(exc, ResourceNotFoundError)


def _or_none(read: Callable[..., _T], *args: Any) -> _T | None:
    """Call a read; None when ARM answers that the resource does not exist."""
    try:
        return read(*args)
    except ResourceNotFoundError:
        return None


def retry_after_seconds(exc: BaseException) -> float | None:
    """Return the delay a failed response asked for (``Retry-After`` / ``retry-after-ms``), if any."""
    response = getattr(exc, "response", None)
    headers = {key.lower(): value for key, value in (getattr(response, "headers", None) or {}).items()}
    for header, scale in (("retry-after-ms", 1000), ("x-ms-retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(header)
        if not value:
            continue
        try:
            return max(float(value) / scale, 0.0)
        except ValueError:
            try:
                delay = parsedate_to_datetime(value) - datetime.now(timezone.utc)
                return max(delay.total_seconds(), 0.0)
            except (TypeError, ValueError):
                continue
    return None


def _when(value: datetime | None) -> datetime | None:
    # ASR writes "0001-01-01T00:00:00" for times not reached yet (and 1753-01-01 on some sentinels).
    if value is None or value.year <= 1753:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    # ASR reports a job's endTime in whole seconds but its startTime to the microsecond, so a
    # job that took under a second can "end" before it started.
    return max(0.0, round((end - start).total_seconds(), 3)) if start and end else None


def _errors(details: list | None) -> list[AsrError]:
    errors = []
    for detail in details or []:
        service, provider = detail.service_error_details, detail.provider_error_details
        if service:
            code, message = service.code, service.message
            causes, action = service.possible_causes, service.recommended_action
        elif provider:
            code, message = provider.error_code, provider.error_message
            causes, action = provider.possible_causes, provider.recommended_action
        else:
            continue
        errors.append(AsrError(code=None if code is None else str(code), message=message,
                               possible_causes=causes, recommended_action=action))
    return errors


def _failover_items(details: Any) -> list[FailoverItem]:
    """The VMs of a (test) failover job: test VM, network and the recovery point it used."""
    return [
        FailoverItem(
            name=entry.name, friendly_name=entry.friendly_name, test_vm_name=entry.test_vm_friendly_name,
            network=entry.network_friendly_name, network_status=entry.network_connection_status,
            recovery_point_id=entry.recovery_point_id, recovery_point_time=_when(entry.recovery_point_time),
        )
        for entry in getattr(details, "protected_item_details", None) or []
    ]


def _checked(record: type[_R], what: str, build: Callable[[], _R]) -> _R:
    """Build a record from an SDK model; a malformed answer names the record and the field."""
    try:
        return build()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']} (got {e.get('input')!r})"
                             for e in exc.errors())
        raise MalformedAsrAnswer(f"ASR answered with a malformed {what} ({record.__name__}): {problems}") from None


def _task_details(task: Any) -> dict[str, Any]:
    """What a recovery plan's job task says beyond its timings: its group and VMs, or its action."""
    group = getattr(task, "group_task_custom_details", None)
    if group is not None:
        return {"details_type": group.instance_type, "group_id": getattr(group, "group_id", None),
                "vms": [child.friendly_name for child in getattr(group, "child_tasks", None) or []
                        if child.friendly_name]}
    custom = getattr(task, "custom_details", None)
    if custom is None:
        return {}
    return {"details_type": custom.instance_type, "output": getattr(custom, "output", None),
            "instructions": getattr(custom, "instructions", None),
            "observation": getattr(custom, "observation", None)}


def summarize_job(job: Job | Mapping[str, Any]) -> JobSummary:
    """
    Read an ASR job (SDK model or its wire dict) into a :class:`JobSummary`.

    Errors come from each error's ``serviceErrorDetails``, else its ``providerErrorDetails``
    (job errors have no top-level code); task errors are added when they are not already listed.

    :raise MalformedAsrAnswer: The job has no name or a field ASR never writes (an unknown state).
    """
    job = job if isinstance(job, Job) else Job(job)

    def build() -> JobSummary:
        props = job.properties
        if props is None:
            return JobSummary(name=job.name)
        errors = _errors(props.errors)
        tasks = []
        for task in props.tasks or []:
            start, end = _when(task.start_time), _when(task.end_time)
            tasks.append(JobTask(name=task.name, friendly_name=task.friendly_name, state=task.state,
                                 start_time=start, end_time=end, duration_seconds=_duration(start, end),
                                 **_task_details(task)))
            errors += [error for error in _errors(task.errors) if error not in errors]
        start, end = _when(props.start_time), _when(props.end_time)
        return JobSummary(
            name=job.name, scenario_name=props.scenario_name, friendly_name=props.friendly_name,
            target=props.target_object_name or props.target_object_id, state=props.state,
            state_description=props.state_description, start_time=start, end_time=end,
            duration_seconds=_duration(start, end), allowed_actions=list(props.allowed_actions or []),
            tasks=tasks, errors=errors, protected_items=_failover_items(props.custom_details),
        )

    return _checked(JobSummary, "job", build)


def _health_errors(errors: list | None) -> list[AsrError]:
    return [
        AsrError(code=error.error_code, message=error.error_message or error.summary_message,
                 possible_causes=error.possible_causes, recommended_action=error.recommended_action,
                 level=error.error_level)
        for error in errors or []
    ]


def _job_name_of(job_id: str | None) -> str | None:
    name = (job_id or "").rstrip("/").rsplit("/", 1)[-1]
    return None if name in ("", "None") else name


def _percent(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def summarize_protected_item(item: Any) -> ProtectedItemSummary:
    """
    Read a replication protected item (a protected VM) into a :class:`ProtectedItemSummary`.

    ASR's "None" scenario and sentinel times come back as None.

    :raise MalformedAsrAnswer: The item has no name or no properties.
    """

    def build() -> ProtectedItemSummary:
        props = item.properties
        if props is None:
            raise MalformedAsrAnswer(f"ASR answered with protected item {item.name!r} without its properties.")
        details = getattr(props, "provider_specific_details", None)
        initial = getattr(details, "initial_replication_details", None)
        scenario = getattr(props, "current_scenario", None)
        scenario_name = getattr(scenario, "scenario_name", None)
        idle = scenario_name in (None, "None")
        return ProtectedItemSummary(
            name=item.name, id=item.id, vm=props.friendly_name, protectable_item_id=props.protectable_item_id,
            protection_state=props.protection_state,
            protection_state_description=props.protection_state_description,
            replication_health=props.replication_health, health_errors=_health_errors(props.health_errors),
            initial_replication_percent=_percent(getattr(initial, "initial_replication_progress_percentage", None)),
            last_replicated_time=_when(getattr(details, "last_replicated_time", None)),
            scenario=None if idle else scenario_name,
            scenario_job=None if idle else _job_name_of(getattr(scenario, "job_id", None)),
            allowed_operations=list(props.allowed_operations or []),
            test_failover_state=props.test_failover_state,
            test_failover_state_description=props.test_failover_state_description,
            last_test_failover_time=_when(getattr(props, "last_successful_test_failover_time", None)),
            active_location=props.active_location,
            recovery_cloud=props.recovery_protection_container_friendly_name,
        )

    return _checked(ProtectedItemSummary, "protected item", build)


def summarize_protectable_item(item: Any) -> ProtectableVm:
    """Read a protectable item (a VM of a cloud, protected or not) into a :class:`ProtectableVm`."""

    def build() -> ProtectableVm:
        props = item.properties
        return ProtectableVm(
            name=item.name, id=item.id, vm=props.friendly_name,
            protected=props.protection_status == ProtectionState.PROTECTED,
            readiness_errors=list(props.protection_readiness_errors or []),
            supported_providers=list(props.supported_replication_providers or []),
        )

    return _checked(ProtectableVm, "protectable item", build)


def _plan_action(action: Any) -> PlanActionSummary:
    custom = action.custom_details
    return PlanActionSummary(
        name=action.action_name, kind=getattr(custom, "instance_type", None) or "",
        failover_types=list(action.failover_types or []), directions=list(action.failover_directions or []),
        path=getattr(custom, "path", None), side=getattr(custom, "fabric_location", None),
        timeout=getattr(custom, "timeout", None), instructions=getattr(custom, "description", None))


def summarize_recovery_plan(plan: Any) -> RecoveryPlanSummary:
    """Read a recovery plan into a :class:`RecoveryPlanSummary` (groups in ASR's order, items by ARM id).

    :raise MalformedAsrAnswer: The plan has no name or no properties, or a group or action lacks a field.
    """

    def build() -> RecoveryPlanSummary:
        props = plan.properties
        if props is None:
            raise MalformedAsrAnswer(f"ASR answered with recovery plan {plan.name!r} without its properties.")
        scenario = getattr(props, "current_scenario", None)
        return RecoveryPlanSummary(
            name=plan.name, primary_fabric=props.primary_fabric_id, recovery_fabric=props.recovery_fabric_id,
            groups=[PlanGroupSummary(
                group_type=group.group_type,
                items=[item.id for item in group.replication_protected_items or [] if item.id],
                start_actions=[_plan_action(a) for a in group.start_group_actions or []],
                end_actions=[_plan_action(a) for a in group.end_group_actions or []],
            ) for group in props.groups or []],
            allowed_operations=list(props.allowed_operations or []),
            scenario_job=_job_name_of(getattr(scenario, "job_id", None)) if scenario is not None else None,
            last_test_failover_time=_when(getattr(props, "last_test_failover_time", None)),
        )

    return _checked(RecoveryPlanSummary, "recovery plan", build)


def _json_body(http_request: Any) -> Mapping[str, Any] | None:
    """The JSON object an outgoing request carries, for the request guard (None: no body, or not an object)."""
    raw = getattr(http_request, "body", None)
    if raw is None:
        raw = getattr(http_request, "content", None)
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return body if isinstance(body, Mapping) else None


class AzureSiteRecoveryHook(BaseHook):
    """
    Talk to Azure Site Recovery and Recovery Services vaults with track-2 management clients.

    Builds the clients itself rather than through ``AzureBaseHook.get_conn``, which passes
    ``credentials=`` and so cannot build track-2 clients.

    Its connection type is ``azure_site_recovery`` (the form documents every extra it reads), and
    a connection of the Microsoft Azure provider's type ``azure`` works unchanged: the hook reads
    the extras by name and never checks the type. AzureBaseHook's ``key_path``/``key_json``
    files are refused (:func:`refuse_key_files`).

    Every call to Azure goes through a method of this hook; reads return the SDK's models (or
    None from a ``*_or_none`` read when the resource does not exist), so no other module imports
    the SDK.

    :param azure_conn_id: Id of an ``azure_site_recovery`` (or ``azure``) connection; see
        :func:`arm_settings` for its extras.
    """

    conn_name_attr = "azure_conn_id"
    default_conn_name = "azure_default"
    conn_type = "azure_site_recovery"
    hook_name = "Azure Site Recovery"

    def __init__(self, azure_conn_id: str = default_conn_name,
                 request_guard: Callable[[str, str, Mapping[str, Any] | None], bool] | None = None) -> None:
        super().__init__()
        self.azure_conn_id = azure_conn_id
        #: ``(method, path, JSON body or None) -> bool``; a request it answers False to is refused before it leaves
        self.request_guard = request_guard
        self._async_settings: ArmConnectionSettings | None = None
        self._async_credential: Any = None
        self._async_conn: AsyncSiteRecoveryManagementClient | None = None
        self._async_vault_client: AsyncRecoveryServicesClient | None = None

    # Sync side (workers)

    @cached_property
    def settings(self) -> ArmConnectionSettings:
        """Connection settings, read once (sync: use on workers only)."""
        conn = self.get_connection(self.azure_conn_id)
        return arm_settings(self.azure_conn_id, conn.login, conn.password, conn.extra_dejson)

    def get_credential(self) -> Any:
        """Return a new sync azure-identity credential for this connection."""
        name, kwargs = credential_spec(self.settings, os.environ)
        self.log.info("Authenticating to %s with %s.", self.settings.resource_manager_endpoint, name)
        return getattr(azure.identity, name)(**kwargs)

    @cached_property
    def credential(self) -> Any:
        """Sync credential shared by the sync clients, so they share one token cache."""
        return self.get_credential()

    @cached_property
    def connection(self) -> SiteRecoveryManagementClient:
        """Cached site recovery client."""
        return self.get_conn()

    @cached_property
    def vault_client(self) -> RecoveryServicesClient:
        """Cached Recovery Services client (vaults, vault certificates, extended info)."""
        return self.get_vault_client()

    def _client_kwargs(self, settings: ArmConnectionSettings) -> dict[str, Any]:
        kwargs = settings.client_kwargs
        if self.request_guard is not None:
            kwargs["raw_request_hook"] = self._check_request  # azure-core calls it before every request
        return kwargs

    def _check_request(self, pipeline_request: Any) -> None:
        from urllib.parse import urlsplit

        from site_recovery.exceptions import RequestRefused

        http = pipeline_request.http_request
        path = urlsplit(http.url).path
        if self.request_guard is not None and not self.request_guard(http.method, path, _json_body(http)):
            raise RequestRefused(f"Refused to send {http.method} {path}: this task may not make that call.")

    def get_conn(self) -> SiteRecoveryManagementClient:
        """Return a new site recovery client."""
        settings = self.settings
        return SiteRecoveryManagementClient(self.credential, settings.subscription_id, **self._client_kwargs(settings))

    def get_vault_client(self) -> RecoveryServicesClient:
        """Return a new Recovery Services client."""
        settings = self.settings
        return RecoveryServicesClient(self.credential, settings.subscription_id, **self._client_kwargs(settings))

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection by reading one vault of the subscription."""
        try:
            next(iter(self.vault_client.vaults.list_by_subscription_id()), None)
        except Exception as e:
            return False, str(e)
        return True, "Successfully connected to Azure Recovery Services."

    def get_job(self, resource_group_name: str, vault_name: str, job_name: str) -> Job:
        """Return one ASR job of a vault."""
        return self.connection.replication_jobs.get(resource_group_name, vault_name, job_name)

    def list_jobs(
        self, resource_group_name: str, vault_name: str, *, filter: str | None = None
    ) -> list[Job]:
        """Return the vault's ASR jobs, optionally narrowed by an OData ``filter``."""
        jobs = self.connection.replication_jobs.list(resource_group_name, vault_name, filter=filter)
        return list(jobs)

    def _start(self, begin: Callable[..., Any], *args: Any) -> str | None:
        """Call an SDK ``begin_*`` without polling; return the job name from its 202 headers."""
        seen: dict[str, Any] = {}

        def keep_headers(pipeline_response: Any) -> None:
            # Called once per attempt (after retries too): the last call is the accepted answer.
            seen["headers"] = pipeline_response.http_response.headers

        begin(*args, polling=False, raw_response_hook=keep_headers)
        job_name = job_name_from_headers(seen.get("headers") or {})
        if job_name is None:
            self.log.warning("ARM finished the call at once and named no ASR job to wait for.")
        else:
            self.log.info("Started ASR job %s.", job_name)
        return job_name

    def cancel_job(self, resource_group_name: str, vault_name: str, job_name: str) -> str:
        """Ask ASR to cancel a job; return the job name."""
        begin_cancel = self.connection.replication_jobs.begin_cancel
        return self._start(begin_cancel, resource_group_name, vault_name, job_name) or job_name

    def create_policy(
        self, resource_group_name: str, vault_name: str, policy_name: str, policy_input: Any
    ) -> str | None:
        """Start creating a replication policy; return the ASR job name."""
        ops = self.connection.replication_policies
        return self._start(ops.begin_create, resource_group_name, vault_name, policy_name, policy_input)

    def update_policy(
        self, resource_group_name: str, vault_name: str, policy_name: str, update_input: Any
    ) -> str | None:
        """Start updating a replication policy (PATCH); return the ASR job name."""
        ops = self.connection.replication_policies
        return self._start(ops.begin_update, resource_group_name, vault_name, policy_name, update_input)

    def create_container_mapping(
        self,
        resource_group_name: str,
        vault_name: str,
        fabric_name: str,
        container_name: str,
        mapping_name: str,
        mapping_input: Any,
    ) -> str | None:
        """Start pairing a primary cloud with a recovery cloud; return the ASR job name."""
        ops = self.connection.replication_protection_container_mappings
        return self._start(
            ops.begin_create,
            resource_group_name, vault_name, fabric_name, container_name, mapping_name, mapping_input,
        )

    def create_network_mapping(
        self,
        resource_group_name: str,
        vault_name: str,
        fabric_name: str,
        network_name: str,
        mapping_name: str,
        mapping_input: Any,
    ) -> str | None:
        """Start mapping a primary VM network to a recovery VM network; return the ASR job name."""
        ops = self.connection.replication_network_mappings
        return self._start(
            ops.begin_create,
            resource_group_name, vault_name, fabric_name, network_name, mapping_name, mapping_input,
        )

    def enable_protection(
        self,
        resource_group_name: str,
        vault_name: str,
        fabric_name: str,
        container_name: str,
        item_name: str,
        protection_input: Any,
    ) -> str | None:
        """Start replicating a VM (create its protected item); return the ASR job name."""
        ops = self.connection.replication_protected_items
        return self._start(
            ops.begin_create,
            resource_group_name, vault_name, fabric_name, container_name, item_name, protection_input,
        )

    def test_failover(
        self,
        resource_group_name: str,
        vault_name: str,
        fabric_name: str,
        container_name: str,
        item_name: str,
        failover_input: Any,
    ) -> str | None:
        """Start a test failover of a protected item; return the ASR job name."""
        ops = self.connection.replication_protected_items
        return self._start(
            ops.begin_test_failover,
            resource_group_name, vault_name, fabric_name, container_name, item_name, failover_input,
        )

    def test_failover_cleanup(
        self,
        resource_group_name: str,
        vault_name: str,
        fabric_name: str,
        container_name: str,
        item_name: str,
        cleanup_input: Any,
    ) -> str | None:
        """Start cleaning up a test failover of a protected item; return the ASR job name."""
        ops = self.connection.replication_protected_items
        return self._start(
            ops.begin_test_failover_cleanup,
            resource_group_name, vault_name, fabric_name, container_name, item_name, cleanup_input,
        )

    def failover(self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str,
                 item_name: str, *, planned: bool, failover_input: Any) -> str | None:
        """Start a protected item's planned or unplanned failover; return the ASR job name."""
        ops = self.connection.replication_protected_items
        begin = ops.begin_planned_failover if planned else ops.begin_unplanned_failover
        return self._start(begin, resource_group_name, vault_name, fabric_name, container_name, item_name,
                           failover_input)

    def commit_failover(self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str,
                        item_name: str) -> str | None:
        """Start committing a protected item's failover (its recovery points are discarded); return the job name."""
        ops = self.connection.replication_protected_items
        return self._start(ops.begin_failover_commit, resource_group_name, vault_name, fabric_name, container_name,
                           item_name)

    def cancel_failover(self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str,
                        item_name: str) -> str | None:
        """Start cancelling a protected item's uncommitted failover (back to the site it left); return the job."""
        ops = self.connection.replication_protected_items
        return self._start(ops.begin_failover_cancel, resource_group_name, vault_name, fabric_name, container_name,
                           item_name)

    def reprotect(self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str,
                  item_name: str, reprotect_input: Any) -> str | None:
        """Start a protected item's reverse replication (reprotect); return the ASR job name."""
        ops = self.connection.replication_protected_items
        return self._start(ops.begin_reprotect, resource_group_name, vault_name, fabric_name, container_name,
                           item_name, reprotect_input)

    def list_protectable_items(
        self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str
    ) -> list[Any]:
        """Return the VMs of a cloud (protection container) as ASR sees them, protected or not."""
        ops = self.connection.replication_protectable_items
        return list(ops.list_by_replication_protection_containers(
            resource_group_name, vault_name, fabric_name, container_name))

    def list_protected_items(
        self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str
    ) -> list[Any]:
        """Return the protected items (replicated VMs) of a cloud."""
        ops = self.connection.replication_protected_items
        return list(ops.list_by_replication_protection_containers(
            resource_group_name, vault_name, fabric_name, container_name))

    def get_protected_item(
        self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str, item_name: str
    ) -> Any:
        """Return one protected item; raises ``ResourceNotFoundError`` when the VM is not protected."""
        ops = self.connection.replication_protected_items
        return ops.get(resource_group_name, vault_name, fabric_name, container_name, item_name)

    def get_protected_item_or_none(
        self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str, item_name: str
    ) -> Any | None:
        """Return one protected item, or None when the VM is not protected."""
        return _or_none(self.get_protected_item, resource_group_name, vault_name, fabric_name, container_name,
                        item_name)

    # Recovery plans

    def list_recovery_plans(self, resource_group_name: str, vault_name: str) -> list[RecoveryPlanSummary]:
        """Return the vault's recovery plans."""
        plans = self.connection.replication_recovery_plans.list(resource_group_name, vault_name)
        return [summarize_recovery_plan(plan) for plan in plans]

    def get_recovery_plan_or_none(self, resource_group_name: str, vault_name: str,
                                  plan_name: str) -> RecoveryPlanSummary | None:
        """Return one recovery plan, or None when the vault has no plan of that name."""
        plan = _or_none(self.connection.replication_recovery_plans.get, resource_group_name, vault_name, plan_name)
        return summarize_recovery_plan(plan) if plan is not None else None

    def create_recovery_plan(self, resource_group_name: str, vault_name: str, plan_name: str,
                             plan_input: Any) -> str | None:
        """Start creating a recovery plan (``{"properties": {primaryFabricId, recoveryFabricId, groups}}``)."""
        ops = self.connection.replication_recovery_plans
        return self._start(ops.begin_create, resource_group_name, vault_name, plan_name, plan_input)

    def update_recovery_plan(self, resource_group_name: str, vault_name: str, plan_name: str,
                             update_input: Any) -> str | None:
        """Start replacing a recovery plan's groups (PATCH ``{"properties": {"groups": [...]}}``)."""
        ops = self.connection.replication_recovery_plans
        return self._start(ops.begin_update, resource_group_name, vault_name, plan_name, update_input)

    def recovery_plan_test_failover(self, resource_group_name: str, vault_name: str, plan_name: str,
                                    failover_input: Any) -> str | None:
        """Start a recovery plan's test failover (one job for every group); return the ASR job name."""
        ops = self.connection.replication_recovery_plans
        return self._start(ops.begin_test_failover, resource_group_name, vault_name, plan_name, failover_input)

    def recovery_plan_test_failover_cleanup(self, resource_group_name: str, vault_name: str, plan_name: str,
                                            cleanup_input: Any) -> str | None:
        """Start cleaning up a recovery plan's test failover; return the ASR job name."""
        ops = self.connection.replication_recovery_plans
        return self._start(ops.begin_test_failover_cleanup, resource_group_name, vault_name, plan_name,
                           cleanup_input)

    def recovery_plan_failover(self, resource_group_name: str, vault_name: str, plan_name: str, *, planned: bool,
                               failover_input: Any) -> str | None:
        """Start a recovery plan's planned or unplanned failover (one job, its groups in order); return the job."""
        ops = self.connection.replication_recovery_plans
        begin = ops.begin_planned_failover if planned else ops.begin_unplanned_failover
        return self._start(begin, resource_group_name, vault_name, plan_name, failover_input)

    def recovery_plan_commit(self, resource_group_name: str, vault_name: str, plan_name: str) -> str | None:
        """Start committing a recovery plan's failover; return the ASR job name."""
        ops = self.connection.replication_recovery_plans
        return self._start(ops.begin_failover_commit, resource_group_name, vault_name, plan_name)

    def recovery_plan_cancel_failover(self, resource_group_name: str, vault_name: str, plan_name: str) -> str | None:
        """Start cancelling a recovery plan's uncommitted failover (its members go back); return the ASR job name."""
        ops = self.connection.replication_recovery_plans
        return self._start(ops.begin_failover_cancel, resource_group_name, vault_name, plan_name)

    def recovery_plan_reprotect(self, resource_group_name: str, vault_name: str, plan_name: str) -> str | None:
        """Start a recovery plan's reverse replication; return the ASR job name.

        The SDK's reprotect of a plan takes no body: ASR reverses every member from where it runs.
        """
        ops = self.connection.replication_recovery_plans
        return self._start(ops.begin_reprotect, resource_group_name, vault_name, plan_name)

    def resume_job(self, resource_group_name: str, vault_name: str, job_name: str, comments: str) -> str:
        """Resume a job suspended on a recovery plan's manual action, with a comment; return the job name.

        The comment is cut to the characters ASR keeps.
        """
        ops = self.connection.replication_jobs
        body = {"properties": {"comments": comments[:ASR_COMMENT_LIMIT]}}
        return self._start(ops.begin_resume, resource_group_name, vault_name, job_name, body) or job_name

    # Vault, fabrics and their clouds, networks, mappings and policies (reads and set-up)

    def get_vault(self, resource_group_name: str, vault_name: str) -> Any:
        """Return a Recovery Services vault; raises ``ResourceNotFoundError`` when there is none."""
        return self.vault_client.vaults.get(resource_group_name, vault_name)

    def get_vault_or_none(self, resource_group_name: str, vault_name: str) -> Any | None:
        """Return a Recovery Services vault, or None when it does not exist."""
        return _or_none(self.get_vault, resource_group_name, vault_name)

    def create_vault(self, resource_group_name: str, vault_name: str, vault_input: Any) -> Any:
        """Create (or update) a Recovery Services vault and wait for ARM's answer; return the vault."""
        return self.vault_client.vaults.begin_create_or_update(resource_group_name, vault_name, vault_input).result()

    def get_resource_provider_state(self, subscription_id: str, namespace: str = "Microsoft.RecoveryServices") -> str:
        """Return a resource provider's ``registrationState`` in a subscription (``Unknown`` when ARM names none)."""
        from azure.core.rest import HttpRequest

        request = HttpRequest("GET", f"/subscriptions/{subscription_id}/providers/{namespace}",
                              params={"api-version": "2021-04-01"})
        response = self.vault_client.send_request(request)
        response.raise_for_status()
        return response.json().get("registrationState", "Unknown")

    def list_fabrics(self, resource_group_name: str, vault_name: str) -> list[Any]:
        """Return the vault's fabrics (one per registered VMM server)."""
        return list(self.connection.replication_fabrics.list(resource_group_name, vault_name))

    def list_recovery_services_providers(self, resource_group_name: str, vault_name: str, fabric_name: str) -> list[Any]:
        """Return the ASR Providers registered in a fabric, with their connection state."""
        ops = self.connection.replication_recovery_services_providers
        return list(ops.list_by_replication_fabrics(resource_group_name, vault_name, fabric_name))

    def list_protection_containers(self, resource_group_name: str, vault_name: str, fabric_name: str) -> list[Any]:
        """Return the protection containers (VMM clouds) of a fabric."""
        ops = self.connection.replication_protection_containers
        return list(ops.list_by_replication_fabrics(resource_group_name, vault_name, fabric_name))

    def list_vm_networks(self, resource_group_name: str, vault_name: str, fabric_name: str) -> list[Any]:
        """Return the VM networks of a fabric as ASR sees them."""
        ops = self.connection.replication_networks
        return list(ops.list_by_replication_fabrics(resource_group_name, vault_name, fabric_name))

    def list_policies(self, resource_group_name: str, vault_name: str) -> list[Any]:
        """Return the vault's replication policies."""
        return list(self.connection.replication_policies.list(resource_group_name, vault_name))

    def get_policy(self, resource_group_name: str, vault_name: str, policy_name: str) -> Any:
        """Return a replication policy; raises ``ResourceNotFoundError`` when there is none."""
        return self.connection.replication_policies.get(resource_group_name, vault_name, policy_name)

    def get_policy_or_none(self, resource_group_name: str, vault_name: str, policy_name: str) -> Any | None:
        """Return a replication policy, or None when the vault has none of that name."""
        return _or_none(self.get_policy, resource_group_name, vault_name, policy_name)

    def list_network_mappings(
        self, resource_group_name: str, vault_name: str, fabric_name: str | None = None,
        network_name: str | None = None,
    ) -> list[Any]:
        """Return the vault's network mappings, or those of one primary VM network (fabric and network)."""
        ops = self.connection.replication_network_mappings
        if fabric_name is None and network_name is None:
            return list(ops.list(resource_group_name, vault_name))
        if fabric_name is None or network_name is None:
            raise ValueError("list_network_mappings takes both fabric_name and network_name, or neither.")
        return list(ops.list_by_replication_networks(resource_group_name, vault_name, fabric_name, network_name))

    def get_network_mapping(
        self, resource_group_name: str, vault_name: str, fabric_name: str, network_name: str, mapping_name: str
    ) -> Any:
        """Return one network mapping; raises ``ResourceNotFoundError`` when there is none."""
        return self.connection.replication_network_mappings.get(
            resource_group_name, vault_name, fabric_name, network_name, mapping_name)

    def get_network_mapping_or_none(
        self, resource_group_name: str, vault_name: str, fabric_name: str, network_name: str, mapping_name: str
    ) -> Any | None:
        """Return one network mapping, or None when there is none of that name."""
        return _or_none(self.get_network_mapping, resource_group_name, vault_name, fabric_name, network_name,
                        mapping_name)

    def list_container_mappings(
        self, resource_group_name: str, vault_name: str, fabric_name: str | None = None,
        container_name: str | None = None,
    ) -> list[Any]:
        """Return the vault's cloud pairings (container mappings), or those of one primary cloud."""
        ops = self.connection.replication_protection_container_mappings
        if fabric_name is None and container_name is None:
            return list(ops.list(resource_group_name, vault_name))
        if fabric_name is None or container_name is None:
            raise ValueError("list_container_mappings takes both fabric_name and container_name, or neither.")
        return list(ops.list_by_replication_protection_containers(
            resource_group_name, vault_name, fabric_name, container_name))

    def get_container_mapping(
        self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str, mapping_name: str
    ) -> Any:
        """Return one cloud pairing; raises ``ResourceNotFoundError`` when there is none."""
        return self.connection.replication_protection_container_mappings.get(
            resource_group_name, vault_name, fabric_name, container_name, mapping_name)

    def get_container_mapping_or_none(
        self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str, mapping_name: str
    ) -> Any | None:
        """Return one cloud pairing, or None when there is none of that name."""
        return _or_none(self.get_container_mapping, resource_group_name, vault_name, fabric_name, container_name,
                        mapping_name)

    # Vault credentials (see site_recovery.vault_credentials)

    def upload_vault_certificate(
        self, resource_group_name: str, vault_name: str, certificate_name: str, certificate: bytes
    ) -> Any:
        """Upload a DER certificate to the vault for Microsoft Entra (AAD) authentication; return ARM's answer."""
        body = {"properties": {"authType": "AAD", "certificate": base64.b64encode(certificate).decode()}}
        return self.vault_client.vault_certificates.create(resource_group_name, vault_name, certificate_name, body)

    def get_vault_extended_info(self, resource_group_name: str, vault_name: str) -> Any:
        """Return the vault's extended info (its channel integrity key); raises ``ResourceNotFoundError``."""
        return self.vault_client.vault_extended_info.get(resource_group_name, vault_name)

    def get_vault_extended_info_or_none(self, resource_group_name: str, vault_name: str) -> Any | None:
        """Return the vault's extended info, or None when the vault has none yet."""
        return _or_none(self.get_vault_extended_info, resource_group_name, vault_name)

    def create_or_update_vault_extended_info(self, resource_group_name: str, vault_name: str,
                                             extended_info: Any) -> Any:
        """Write the vault's extended info (e.g. a new integrity key); return ARM's answer."""
        return self.vault_client.vault_extended_info.create_or_update(resource_group_name, vault_name, extended_info)

    # Async side (triggerer)

    async def aget_settings(self) -> ArmConnectionSettings:
        """Connection settings read without blocking the event loop and without ``extra_dejson``."""
        if self._async_settings is None:
            conn = await self.aget_connection(self.azure_conn_id)
            # extra_dejson calls mask_secret, a blocking supervisor call on the triggerer loop.
            extras = json.loads(conn.extra) if conn.extra else {}
            self._async_settings = arm_settings(self.azure_conn_id, conn.login, conn.password, extras)
        return self._async_settings

    async def _aget_credential(self) -> Any:
        if self._async_credential is None:
            settings = await self.aget_settings()
            name, kwargs = credential_spec(settings, os.environ)
            self.log.info("Authenticating to %s with %s.", settings.resource_manager_endpoint, name)
            self._async_credential = getattr(azure.identity.aio, name)(**kwargs)
        return self._async_credential

    async def get_async_conn(self) -> AsyncSiteRecoveryManagementClient:
        """Return the cached async site recovery client."""
        if self._async_conn is None:
            settings = await self.aget_settings()
            credential = await self._aget_credential()
            self._async_conn = AsyncSiteRecoveryManagementClient(
                credential, settings.subscription_id, **self._client_kwargs(settings)
            )
        return self._async_conn

    async def get_async_vault_client(self) -> AsyncRecoveryServicesClient:
        """Return the cached async Recovery Services client."""
        if self._async_vault_client is None:
            settings = await self.aget_settings()
            credential = await self._aget_credential()
            self._async_vault_client = AsyncRecoveryServicesClient(
                credential, settings.subscription_id, **self._client_kwargs(settings)
            )
        return self._async_vault_client

    async def aget_job(self, resource_group_name: str, vault_name: str, job_name: str) -> Job:
        """Return one ASR job of a vault (async)."""
        client = await self.get_async_conn()
        return await client.replication_jobs.get(resource_group_name, vault_name, job_name)

    async def aget_protected_item(
        self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str, item_name: str
    ) -> Any:
        """Return one protected item (async); raises ``ResourceNotFoundError`` when it is not there."""
        client = await self.get_async_conn()
        return await client.replication_protected_items.get(
            resource_group_name, vault_name, fabric_name, container_name, item_name)

    async def aget_protected_item_or_none(
        self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str, item_name: str
    ) -> Any | None:
        """Return one protected item (async), or None when the VM is not protected."""
        try:
            return await self.aget_protected_item(resource_group_name, vault_name, fabric_name, container_name,
                                                  item_name)
        except ResourceNotFoundError:
            return None

    async def alist_protected_items(
        self, resource_group_name: str, vault_name: str, fabric_name: str, container_name: str,
        raw_response_hook: Callable[[Any], None] | None = None,
    ) -> list[Any]:
        """Return the protected items of a cloud (async); ``raw_response_hook`` sees each page's answer."""
        client = await self.get_async_conn()
        options = {"raw_response_hook": raw_response_hook} if raw_response_hook else {}
        pages = client.replication_protected_items.list_by_replication_protection_containers(
            resource_group_name, vault_name, fabric_name, container_name, **options)
        return [item async for item in pages]

    async def alist_jobs(self, resource_group_name: str, vault_name: str, *, filter: str | None = None,
                         raw_response_hook: Callable[[Any], None] | None = None) -> list[Job]:
        """Return the vault's ASR jobs, optionally narrowed by an OData ``filter`` (async); ``raw_response_hook``
        sees each page's answer (its headers: what ARM says is left of the read budget)."""
        client = await self.get_async_conn()
        options = {"raw_response_hook": raw_response_hook} if raw_response_hook else {}
        return [job async for job in client.replication_jobs.list(resource_group_name, vault_name, filter=filter,
                                                                   **options)]

    async def acancel_job(self, resource_group_name: str, vault_name: str, job_name: str) -> str:
        """Ask ASR to cancel a job without waiting for it (async); return the job name."""
        client = await self.get_async_conn()
        seen: dict[str, Any] = {}
        await client.replication_jobs.begin_cancel(
            resource_group_name,
            vault_name,
            job_name,
            polling=False,
            raw_response_hook=lambda response: seen.update(headers=response.http_response.headers),
        )
        return job_name_from_headers(seen.get("headers") or {}) or job_name

    async def close(self) -> None:
        """Close the async clients and their credential."""
        for client in (self._async_conn, self._async_vault_client, self._async_credential):
            if client is not None:
                await client.close()
        self._async_conn = self._async_vault_client = self._async_credential = None

    async def __aenter__(self) -> AzureSiteRecoveryHook:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.close()
