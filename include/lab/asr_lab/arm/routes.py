"""The wire: ARM paths and verbs in, backend calls, JSON answers with ARM's headers out.

One table maps (verb, path pattern) to a handler. Patterns match case-insensitively and
accept ``/Subscriptions/`` as the real service writes it in its own URLs (clients follow
Location / Azure-AsyncOperation / nextLink verbatim). Every request: route, check the
api-version (the 2021-06-01 the service writes into LRO URLs included), ``settle()`` the
clock, parse the body, call the backend, render. ``ArmError`` becomes the ARM error
envelope; only retryable errors may carry Retry-After.

Mutations answer 202 with an empty body and the recorded headers: ``Location``
(``…/<target>/operationresults/{job}``), ``Azure-AsyncOperation``
(``…/replicationOperationStatus/{job}``), ``Retry-After`` and ``x-ms-request-id`` = the
job's ARM id.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from . import views
from .errors import ArmError, InvalidRequestContent, MissingApiVersion, UnknownRoute, UnsupportedApiVersion
from .jobs import Job
from .models import ArmBackend
from .state import Operation, Vault

#: api-version the service writes into the LRO URLs it returns
LRO_API_VERSION = "2021-06-01"

API_VERSIONS: dict[str, tuple[str, ...]] = {
    # azure-mgmt-recoveryservicessiterecovery 2.0.0 sends 2025-08-01; older ones seen in recordings
    "asr": ("2018-01-10", "2018-07-10", "2021-06-01", "2021-11-01", "2023-08-01", "2024-02-01", "2024-10-01",
            "2025-01-01", "2025-08-01"),
    # azure-mgmt-recoveryservices 4.3.0 sends 2026-11-01
    "vaults": ("2016-06-01", "2023-04-01", "2024-04-01", "2025-02-01", "2026-02-01", "2026-11-01"),
    # ARM's providers API (auto-registration policy uses 2016-02-01, azure-mgmt-resource 2025-04-01)
    "resources": ("2016-02-01", "2019-10-01", "2021-04-01", "2022-09-01", "2024-03-01", "2025-04-01"),
}
_FAMILY_TYPE = {"asr": "vaults/replicationJobs", "vaults": "vaults", "resources": "providers"}

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_V = _SUB + r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.RecoveryServices/vaults/(?P<vault>[^/]+)"
_F = _V + r"/replicationFabrics/(?P<fabric>[^/]+)"
_C = _F + r"/replicationProtectionContainers/(?P<container>[^/]+)"
_RPI = _C + r"/replicationProtectedItems/(?P<item>[^/]+)"
_N = _F + r"/replicationNetworks/(?P<network>[^/]+)"


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    request_id: str | None = None


@dataclass
class Ctx:
    """One request as the handlers see it."""

    backend: ArmBackend
    p: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    path: str

    def vault(self) -> Vault:
        return self.backend.vault_for(self.p["sub"], self.p["rg"], self.p["vault"])

    @property
    def base(self) -> str:
        return self.backend.base_url


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    handler: Callable[[Ctx], Reply]
    family: str


_ROUTES: list[Route] = []


def route(method: str, pattern: str, family: str = "asr") -> Callable:
    def register(handler: Callable[[Ctx], Reply]) -> Callable[[Ctx], Reply]:
        _ROUTES.append(Route(method, re.compile(f"^{pattern}/?$", re.I), handler, family))
        return handler

    return register


# -- answers ------------------------------------------------------------------------------

def ok(body: Any, status: int = 200, request_id: str | None = None) -> Reply:
    return Reply(status, body, request_id=request_id)


def accepted(ctx: Ctx, vault: Vault, job: Job, *, location_target: str | None = None,
             operation_id: str | None = None) -> Reply:
    """202 for a mutation; the job GUID is in Location, Azure-AsyncOperation and x-ms-request-id."""
    b = ctx.backend
    prefix = f"{ctx.base}{b.asr_id(vault, '')[:-1]}"
    target = location_target or job.target_path
    headers = {
        "Location": f"{prefix}/{_quote_path(target)}/operationresults/{job.name}?api-version={LRO_API_VERSION}",
        "Azure-AsyncOperation": f"{prefix}/replicationOperationStatus/{operation_id or job.name}"
                                f"?api-version={LRO_API_VERSION}",
        "Retry-After": str(b.retry_after),
    }
    return Reply(202, None, headers, request_id=b.asr_id(vault, f"replicationJobs/{job.name}"))


def accepted_or_existing(ctx: Ctx, vault: Vault, result: Any, render: Callable) -> Reply:
    if isinstance(result, Job):
        return accepted(ctx, vault, result)
    return ok(render(ctx.backend, vault, result))


def listing(ctx: Ctx, items: list, render: Callable[[Any], dict], *, size: int | None = None) -> Reply:
    """A paged ASR list: ``{"value": [...], "nextLink": url|null}`` with a ``$skipToken``."""
    size = size or ctx.backend.page_size
    token = ctx.query.get("$skiptoken") or ctx.query.get("skiptoken")
    offset = _offset(token)
    chunk, following = views.page(items, offset, size)
    next_link = None
    if following is not None:
        query = f"api-version={LRO_API_VERSION}&$skipToken={quote(f'Lab:{following}')}"
        if "$filter" in ctx.query:
            query += f"&$filter={quote(ctx.query['$filter'])}"
        if "$take" in ctx.query:
            query += f"&$take={quote(ctx.query['$take'])}"
        next_link = f"{ctx.base}{_quote_path(ctx.path)}?{query}"
    return ok({"value": [render(i) for i in chunk], "nextLink": next_link})


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return max(0, int(token.rsplit(":", 1)[-1]))
    except ValueError:
        raise InvalidRequestContent(f"The skip token '{token}' is not valid.") from None


def _quote_path(path: str) -> str:
    return quote(path, safe="/:@")


_FILTER_TERM = re.compile(r"\s*(?P<field>[A-Za-z_][\w.]*)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*", re.I)


def parse_filter(text: str | None) -> dict[str, str]:
    """``<field> eq '<value>'`` terms joined by ``and``; field names lower-cased.

    Anything the grammar does not cover is ignored, as the service ignores unknown fields.
    """
    found: dict[str, str] = {}
    for term in re.split(r"\s+and\s+", text or "", flags=re.I):
        match = _FILTER_TERM.fullmatch(term)
        if match:
            found[match["field"].lower()] = match["value"].replace("''", "'")
    return found


# -- resource provider and vaults ---------------------------------------------------------

@route("GET", _SUB + r"/providers/Microsoft\.RecoveryServices", "resources")
def get_resource_provider(ctx: Ctx) -> Reply:
    ctx.backend.resource_provider(ctx.p["sub"])
    versions = {"vaults": list(API_VERSIONS["vaults"]), "vaults/replicationJobs": list(API_VERSIONS["asr"])}
    return ok(views.resource_provider_json(ctx.backend, ctx.p["sub"], versions))


@route("POST", _SUB + r"/providers/Microsoft\.RecoveryServices/register", "resources")
def register_resource_provider(ctx: Ctx) -> Reply:
    return get_resource_provider(ctx)


@route("GET", _SUB + r"/providers/Microsoft\.RecoveryServices/vaults", "vaults")
def list_vaults_by_subscription(ctx: Ctx) -> Reply:
    vaults = ctx.backend.list_vaults(ctx.p["sub"])
    return ok({"value": [views.vault_json(ctx.backend, v) for v in vaults]})


@route("GET", _SUB + r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.RecoveryServices/vaults", "vaults")
def list_vaults_by_resource_group(ctx: Ctx) -> Reply:
    vaults = ctx.backend.list_vaults(ctx.p["sub"], ctx.p["rg"])
    return ok({"value": [views.vault_json(ctx.backend, v) for v in vaults]})


@route("PUT", _V, "vaults")
def put_vault(ctx: Ctx) -> Reply:
    vault, created = ctx.backend.create_or_update_vault(ctx.p["sub"], ctx.p["rg"], ctx.p["vault"], ctx.body)
    return ok(views.vault_json(ctx.backend, vault), status=201 if created else 200)


@route("GET", _V, "vaults")
def get_vault(ctx: Ctx) -> Reply:
    return ok(views.vault_json(ctx.backend, ctx.vault()))


@route("PUT", _V + r"/certificates/(?P<cert>[^/]+)", "vaults")
def put_certificate(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    cert = ctx.backend.upload_certificate(vault, ctx.p["cert"], ctx.body)
    return ok(views.certificate_json(ctx.backend, vault, cert))


@route("GET", _V + r"/extendedInformation/vaultExtendedInfo", "vaults")
def get_extended_info(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return ok(views.extended_info_json(ctx.backend, vault, ctx.backend.get_extended_info(vault)))


@route("PUT", _V + r"/extendedInformation/vaultExtendedInfo", "vaults")
def put_extended_info(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return ok(views.extended_info_json(ctx.backend, vault, ctx.backend.put_extended_info(vault, ctx.body)))


@route("PATCH", _V + r"/extendedInformation/vaultExtendedInfo", "vaults")
def patch_extended_info(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    info = ctx.backend.put_extended_info(vault, ctx.body, merge=True)
    return ok(views.extended_info_json(ctx.backend, vault, info))


# -- jobs and async operations (hot paths first) -------------------------------------------

@route("GET", _V + r"/replicationJobs/(?P<job>[^/]+)")
def get_job(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    job = ctx.backend.get_job(vault, ctx.p["job"])
    return ok(views.job_json(ctx.backend, vault, job), request_id=ctx.backend.asr_id(vault, f"replicationJobs/{job.name}"))


@route("GET", _V + r"/replicationOperationStatus/(?P<op>[^/]+)")
def get_operation_status(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return ok(views.operation_status_json(ctx.backend, vault, ctx.backend.operation(vault, ctx.p["op"])))


@route("GET", _V + r"/(?P<target>.+)/operationresults/(?P<op>[^/]+)")
def get_operation_result(ctx: Ctx) -> Reply:
    """202 while the job runs; then 200 + the target resource, 204 for removals, or the error."""
    b, vault = ctx.backend, ctx.vault()
    found = b.operation(vault, ctx.p["op"])
    if isinstance(found, Operation):
        return ok(views.job_json(b, vault, b.get_job(vault, found.job)))
    job = found
    if job.running:
        location = f"{ctx.base}{_quote_path(ctx.path)}?api-version={LRO_API_VERSION}"
        return Reply(202, None, {"Location": location, "Retry-After": str(b.retry_after)},
                     request_id=b.asr_id(vault, f"replicationJobs/{job.name}"))
    if ctx.p["target"].lower().startswith("replicationjobs/"):
        return ok(views.job_json(b, vault, job))
    if job.state != "Succeeded":
        status = views.operation_status_json(b, vault, job)["error"] or {}
        raise ArmError(status.get("message", "The operation failed."), code=status.get("code", "OperationFailed"))
    if job.result == "none":
        return Reply(204)
    return ok(_render_target(ctx, vault, job.target_path))


def _render_target(ctx: Ctx, vault: Vault, target: str) -> dict[str, Any]:
    """The resource a finished operation acted on, found by its vault-relative path."""
    b = ctx.backend
    parts = target.split("/")
    kinds = [p.lower() for p in parts[0::2]]
    names = parts[1::2]
    if kinds == ["replicationpolicies"]:
        return views.policy_json(b, vault, b.get_policy(vault, names[0]))
    if kinds == ["replicationfabrics"]:
        return views.fabric_json(b, vault, b.get_fabric(vault, names[0]))
    if kinds == ["replicationfabrics", "replicationprotectioncontainers", "replicationprotectioncontainermappings"]:
        return views.container_mapping_json(b, vault, b.get_container_mapping(vault, *names))
    if kinds == ["replicationfabrics", "replicationnetworks", "replicationnetworkmappings"]:
        return views.network_mapping_json(b, vault, b.get_network_mapping(vault, *names))
    if kinds == ["replicationfabrics", "replicationprotectioncontainers", "replicationprotecteditems"]:
        return views.protected_item_json(b, vault, b.get_protected_item(vault, *names), b.now())
    if kinds == ["replicationrecoveryplans"]:
        return views.recovery_plan_json(b, vault, b.get_recovery_plan(vault, names[0]))
    raise UnknownRoute("GET", target)


@route("GET", _V + r"/replicationJobs")
def list_jobs(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    jobs = ctx.backend.list_jobs(vault, parse_filter(ctx.query.get("$filter")))
    return listing(ctx, jobs, lambda j: views.job_json(ctx.backend, vault, j, with_tasks=False))


@route("POST", _V + r"/replicationJobs/(?P<job>[^/]+)/cancel")
def cancel_job(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    job, op = ctx.backend.cancel_job(vault, ctx.p["job"])
    return accepted(ctx, vault, job, location_target=f"replicationJobs/{job.name}", operation_id=op.id)


@route("POST", _V + r"/replicationJobs/(?P<job>[^/]+)/resume")
def resume_job(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    job, op = ctx.backend.resume_job(vault, ctx.p["job"], ctx.body)
    return accepted(ctx, vault, job, location_target=f"replicationJobs/{job.name}", operation_id=op.id)


@route("POST", _V + r"/replicationJobs/(?P<job>[^/]+)/restart")
def restart_job(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    job = ctx.backend.restart_job(vault, ctx.p["job"])
    return accepted(ctx, vault, job, location_target=f"replicationJobs/{job.name}")


# -- fabrics, providers, clouds, networks, protectable items ------------------------------

@route("GET", _V + r"/replicationFabrics")
def list_fabrics(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return listing(ctx, ctx.backend.list_fabrics(vault), lambda f: views.fabric_json(ctx.backend, vault, f))


@route("GET", _F)
def get_fabric(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return ok(views.fabric_json(ctx.backend, vault, ctx.backend.get_fabric(vault, ctx.p["fabric"])))


@route("GET", _V + r"/replicationRecoveryServicesProviders")
@route("GET", _F + r"/replicationRecoveryServicesProviders")
def list_providers(ctx: Ctx) -> Reply:
    vault, now = ctx.vault(), ctx.backend.now()
    fabrics = ctx.backend.list_providers(vault, ctx.p.get("fabric"))
    return listing(ctx, fabrics, lambda f: views.provider_json(ctx.backend, vault, f, now))


@route("GET", _F + r"/replicationRecoveryServicesProviders/(?P<provider>[^/]+)")
def get_provider(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    fabric = ctx.backend.get_provider(vault, ctx.p["fabric"], ctx.p["provider"])
    return ok(views.provider_json(ctx.backend, vault, fabric, ctx.backend.now()))


@route("GET", _V + r"/replicationProtectionContainers")
@route("GET", _F + r"/replicationProtectionContainers")
def list_containers(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    found = ctx.backend.list_containers(vault, ctx.p.get("fabric"))
    return listing(ctx, found, lambda c: views.container_json(ctx.backend, vault, c))


@route("GET", _C)
def get_container(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    found = ctx.backend.get_container(vault, ctx.p["fabric"], ctx.p["container"])
    return ok(views.container_json(ctx.backend, vault, found))


@route("GET", _V + r"/replicationNetworks")
@route("GET", _F + r"/replicationNetworks")
def list_networks(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    found = ctx.backend.list_networks(vault, ctx.p.get("fabric"))
    return listing(ctx, found, lambda n: views.network_json(ctx.backend, vault, n))


@route("GET", _N)
def get_network(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return ok(views.network_json(ctx.backend, vault, ctx.backend.get_network(vault, ctx.p["fabric"], ctx.p["network"])))


@route("GET", _C + r"/replicationProtectableItems")
def list_protectable_items(ctx: Ctx) -> Reply:
    b, vault = ctx.backend, ctx.vault()
    vms = b.list_protectable_items(vault, ctx.p["fabric"], ctx.p["container"], parse_filter(ctx.query.get("$filter")))
    take = ctx.query.get("$take")
    size = int(take) if take and take.isdigit() and int(take) > 0 else b.protectable_page_size
    where = b.get_container(vault, ctx.p["fabric"], ctx.p["container"])
    return listing(ctx, vms, lambda vm: views.protectable_item_json(b, vault, where.fabric.name, where.cloud.id, vm),
                   size=size)


@route("GET", _C + r"/replicationProtectableItems/(?P<vm>[^/]+)")
def get_protectable_item(ctx: Ctx) -> Reply:
    b, vault = ctx.backend, ctx.vault()
    where = b.get_container(vault, ctx.p["fabric"], ctx.p["container"])
    vm = b.get_protectable_item(vault, ctx.p["fabric"], ctx.p["container"], ctx.p["vm"])
    return ok(views.protectable_item_json(b, vault, where.fabric.name, where.cloud.id, vm))


# -- policies -------------------------------------------------------------------------------

@route("GET", _V + r"/replicationPolicies")
def list_policies(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return listing(ctx, ctx.backend.list_policies(vault), lambda p: views.policy_json(ctx.backend, vault, p))


@route("GET", _V + r"/replicationPolicies/(?P<policy>[^/]+)")
def get_policy(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return ok(views.policy_json(ctx.backend, vault, ctx.backend.get_policy(vault, ctx.p["policy"])))


@route("PUT", _V + r"/replicationPolicies/(?P<policy>[^/]+)")
def put_policy(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.create_policy(vault, ctx.p["policy"], ctx.body))


@route("PATCH", _V + r"/replicationPolicies/(?P<policy>[^/]+)")
def patch_policy(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.update_policy(vault, ctx.p["policy"], ctx.body))


@route("DELETE", _V + r"/replicationPolicies/(?P<policy>[^/]+)")
def delete_policy(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.delete_policy(vault, ctx.p["policy"]))


# -- cloud pairing ----------------------------------------------------------------------------

_CM = _C + r"/replicationProtectionContainerMappings/(?P<mapping>[^/]+)"


@route("GET", _V + r"/replicationProtectionContainerMappings")
@route("GET", _C + r"/replicationProtectionContainerMappings")
def list_container_mappings(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    found = ctx.backend.list_container_mappings(vault, ctx.p.get("fabric"), ctx.p.get("container"))
    return listing(ctx, found, lambda m: views.container_mapping_json(ctx.backend, vault, m))


@route("GET", _CM)
def get_container_mapping(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    m = ctx.backend.get_container_mapping(vault, ctx.p["fabric"], ctx.p["container"], ctx.p["mapping"])
    return ok(views.container_mapping_json(ctx.backend, vault, m))


@route("PUT", _CM)
def put_container_mapping(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    result = ctx.backend.create_container_mapping(vault, ctx.p["fabric"], ctx.p["container"], ctx.p["mapping"],
                                                  ctx.body)
    return accepted_or_existing(ctx, vault, result, views.container_mapping_json)


@route("POST", _CM + r"/remove")
def remove_container_mapping(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.remove_container_mapping(
        vault, ctx.p["fabric"], ctx.p["container"], ctx.p["mapping"]))


@route("DELETE", _CM)
def purge_container_mapping(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.remove_container_mapping(
        vault, ctx.p["fabric"], ctx.p["container"], ctx.p["mapping"], purge=True))


# -- network mapping --------------------------------------------------------------------------

_NM = _N + r"/replicationNetworkMappings/(?P<mapping>[^/]+)"


@route("GET", _V + r"/replicationNetworkMappings")
@route("GET", _N + r"/replicationNetworkMappings")
def list_network_mappings(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    found = ctx.backend.list_network_mappings(vault, ctx.p.get("fabric"), ctx.p.get("network"))
    return listing(ctx, found, lambda m: views.network_mapping_json(ctx.backend, vault, m))


@route("GET", _NM)
def get_network_mapping(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    m = ctx.backend.get_network_mapping(vault, ctx.p["fabric"], ctx.p["network"], ctx.p["mapping"])
    return ok(views.network_mapping_json(ctx.backend, vault, m))


@route("PUT", _NM)
def put_network_mapping(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    result = ctx.backend.create_network_mapping(vault, ctx.p["fabric"], ctx.p["network"], ctx.p["mapping"], ctx.body)
    return accepted_or_existing(ctx, vault, result, views.network_mapping_json)


@route("DELETE", _NM)
def delete_network_mapping(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.delete_network_mapping(
        vault, ctx.p["fabric"], ctx.p["network"], ctx.p["mapping"]))


# -- replicated VMs ---------------------------------------------------------------------------

@route("GET", _V + r"/replicationProtectedItems")
@route("GET", _C + r"/replicationProtectedItems")
def list_protected_items(ctx: Ctx) -> Reply:
    b, vault, now = ctx.backend, ctx.vault(), ctx.backend.now()
    items = b.list_protected_items(vault, ctx.p.get("fabric"), ctx.p.get("container"),
                                   parse_filter(ctx.query.get("$filter")))
    return listing(ctx, items, lambda i: views.protected_item_json(b, vault, i, now))


@route("GET", _RPI)
def get_protected_item(ctx: Ctx) -> Reply:
    b, vault = ctx.backend, ctx.vault()
    item = b.get_protected_item(vault, ctx.p["fabric"], ctx.p["container"], ctx.p["item"])
    return ok(views.protected_item_json(b, vault, item, b.now()))


def _item_args(ctx: Ctx) -> tuple[str, str, str]:
    return ctx.p["fabric"], ctx.p["container"], ctx.p["item"]


@route("PUT", _RPI)
def put_protected_item(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.enable_protection(vault, *_item_args(ctx), ctx.body))


_ITEM_ACTIONS: dict[str, Callable[[ArmBackend, Vault, Ctx], Job]] = {
    "testfailover": lambda b, v, c: b.test_failover(v, *_item_args(c), c.body),
    "testfailovercleanup": lambda b, v, c: b.test_failover_cleanup(v, *_item_args(c), c.body),
    "plannedfailover": lambda b, v, c: b.planned_failover(v, *_item_args(c), c.body),
    "unplannedfailover": lambda b, v, c: b.unplanned_failover(v, *_item_args(c), c.body),
    "failovercommit": lambda b, v, c: b.commit_failover(v, *_item_args(c)),
    "failovercancel": lambda b, v, c: b.cancel_failover(v, *_item_args(c)),
    "reprotect": lambda b, v, c: b.reprotect(v, *_item_args(c), c.body),
    "remove": lambda b, v, c: b.disable_protection(v, *_item_args(c), c.body),
}


@route("POST", _RPI + r"/(?P<action>testFailover|testFailoverCleanup|plannedFailover|unplannedFailover|"
                      r"failoverCommit|failoverCancel|reProtect|remove)")
def protected_item_action(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    job = _ITEM_ACTIONS[ctx.p["action"].lower()](ctx.backend, vault, ctx)
    return accepted(ctx, vault, job)


@route("DELETE", _RPI)
def purge_protected_item(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.purge_protection(vault, *_item_args(ctx)))


# -- recovery plans ------------------------------------------------------------------------

_RP = _V + r"/replicationRecoveryPlans/(?P<plan>[^/]+)"


@route("GET", _V + r"/replicationRecoveryPlans")
def list_recovery_plans(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    plans = ctx.backend.list_recovery_plans(vault)
    return listing(ctx, plans, lambda plan: views.recovery_plan_json(ctx.backend, vault, plan))


@route("GET", _RP)
def get_recovery_plan(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return ok(views.recovery_plan_json(ctx.backend, vault, ctx.backend.get_recovery_plan(vault, ctx.p["plan"])))


@route("PUT", _RP)
def put_recovery_plan(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.create_recovery_plan(vault, ctx.p["plan"], ctx.body))


@route("PATCH", _RP)
def patch_recovery_plan(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.update_recovery_plan(vault, ctx.p["plan"], ctx.body))


@route("DELETE", _RP)
def delete_recovery_plan(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    return accepted(ctx, vault, ctx.backend.delete_recovery_plan(vault, ctx.p["plan"]))


_PLAN_ACTIONS: dict[str, Callable[[ArmBackend, Vault, Ctx], Job]] = {
    "testfailover": lambda b, v, c: b.plan_test_failover(v, c.p["plan"], c.body),
    "testfailovercleanup": lambda b, v, c: b.plan_test_failover_cleanup(v, c.p["plan"], c.body),
    "plannedfailover": lambda b, v, c: b.plan_failover(v, c.p["plan"], c.body, planned=True),
    "unplannedfailover": lambda b, v, c: b.plan_failover(v, c.p["plan"], c.body, planned=False),
    "failovercommit": lambda b, v, c: b.plan_commit(v, c.p["plan"]),
    "reprotect": lambda b, v, c: b.plan_reprotect(v, c.p["plan"], c.body),
}


@route("POST", _RP + r"/(?P<action>testFailover|testFailoverCleanup|plannedFailover|unplannedFailover|"
                     r"failoverCommit|reProtect)")
def recovery_plan_action(ctx: Ctx) -> Reply:
    vault = ctx.vault()
    job = _PLAN_ACTIONS[ctx.p["action"].lower()](ctx.backend, vault, ctx)
    return accepted(ctx, vault, job)


# -- dispatch ---------------------------------------------------------------------------------

def _match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    allowed = False
    for candidate in _ROUTES:
        found = candidate.pattern.match(path)
        if found is None:
            continue
        if candidate.method == method:
            return candidate, {k: v for k, v in found.groupdict().items() if v is not None}
        allowed = True
    if allowed:
        raise ArmError(f"The requested resource does not support http method '{method}'.", status=405,
                       code="MethodNotAllowed")
    raise UnknownRoute(method, path)


def _check_api_version(query: dict[str, str], family: str, location: str) -> None:
    version = query.get("api-version")
    if not version:
        raise MissingApiVersion()
    supported = API_VERSIONS[family]
    if version not in supported:
        raise UnsupportedApiVersion(version, _FAMILY_TYPE[family], list(supported), location)


async def _read_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequestContent(f"The request content was invalid and could not be deserialized: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequestContent("The request content must be a JSON object.")
    return body


async def dispatch(request: Request, backend: ArmBackend) -> Response:
    """Serve one ARM request under ``/subscriptions/...`` (any casing)."""
    method, path = request.method.upper(), request.url.path
    family = "asr"
    try:
        matched, params = _match(method, path)
        family = matched.family
        query = {k.lower(): v for k, v in request.query_params.items()}
        _check_api_version(query, family, backend.estate.location)
        backend.settle()
        body = await _read_body(request) if method in ("PUT", "POST", "PATCH") else {}
        reply = matched.handler(Ctx(backend, params, query, body, path))
    except ArmError as error:
        reply = Reply(error.status, error.envelope())
        if error.retry_after is not None:
            reply.headers["Retry-After"] = str(error.retry_after)
    return _response(request, reply, family)


def _response(request: Request, reply: Reply, family: str) -> Response:
    headers = dict(reply.headers)
    headers["x-ms-request-id"] = reply.request_id or str(uuid.uuid4())
    headers["x-ms-correlation-request-id"] = request.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())
    client_request_id = request.headers.get("x-ms-client-request-id")
    if client_request_id:
        headers["x-ms-client-request-id"] = client_request_id
    # Date comes from the HTTP server (uvicorn adds it to every response); a second one here
    # would make clients see the header twice.
    headers["Cache-Control"] = "no-cache"
    if reply.body is None:
        return Response(status_code=reply.status, headers=headers)
    content = json.dumps(reply.body, separators=(",", ":"), ensure_ascii=False).encode()
    media = "application/json; charset=utf-8" if family == "vaults" else "application/json"
    return Response(content, status_code=reply.status, headers=headers, media_type=media)
