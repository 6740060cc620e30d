"""Azure portal links for Azure Site Recovery jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey
    from site_recovery.hooks.asr import ArmConnectionSettings

#: XCom key under which a task publishes the ASR job it started or waits for.
XCOM_JOB_NAME_KEY = "asr_job_name"
#: XCom key of the non-secret facts the link needs besides the job name (see :func:`job_link_context`).
XCOM_JOB_LINK_KEY = "asr_job_link"


def asr_job_portal_url(
    *,
    portal_url: str,
    tenant_id: str | None,
    subscription_id: str,
    resource_group_name: str,
    vault_name: str,
    job_name: str,
) -> str:
    """
    Build the Azure portal URL of an ASR job (the portal's generic ``#@tenant/resource{id}`` route).

    :param portal_url: Portal base URL, e.g. ``https://portal.azure.com``.
    :param tenant_id: Directory to open the portal in; omitted from the URL when None.
    :param subscription_id: Subscription of the vault.
    :param resource_group_name: Resource group of the vault.
    :param vault_name: Recovery Services vault name.
    :param job_name: ASR job name.
    """
    resource_id = (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group_name}"
        f"/providers/Microsoft.RecoveryServices/vaults/{vault_name}/replicationJobs/{job_name}"
    )
    directory = f"@{tenant_id}" if tenant_id else ""
    return f"{portal_url.rstrip('/')}/#{directory}/resource{quote(resource_id, safe='/')}"


def job_link_context(
    settings: ArmConnectionSettings, resource_group_name: str, vault_name: str
) -> dict[str, Any]:
    """Return what :class:`AsrJobLink` needs besides the job name; nothing in it is secret."""
    return {
        "portal_url": settings.portal_url,
        "tenant_id": settings.tenant_id or settings.workload_identity_tenant_id,
        "subscription_id": settings.subscription_id,
        "resource_group_name": resource_group_name,
        "vault_name": vault_name,
    }


class AsrJobLink(BaseOperatorLink):
    """
    Link a task to its ASR job in the Azure portal.

    The task pushes the job name under ``asr_job_name`` and :func:`job_link_context` under
    ``asr_job_link``; the link is empty until both exist.
    """

    name = "ASR job (Azure portal)"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        job_name = XCom.get_value(key=XCOM_JOB_NAME_KEY, ti_key=ti_key)
        context = XCom.get_value(key=XCOM_JOB_LINK_KEY, ti_key=ti_key)
        if not job_name or not context:
            return ""
        return asr_job_portal_url(job_name=job_name, **context)


#: Where the plugin's FastAPI app is mounted in the API server (see site_recovery.plugin).
PLUGIN_URL_PREFIX = "/site-recovery"


def stored_report_url(location: str, *, root: str, base_url: str = "") -> str:
    """The API server's address of a stored report page: ``<base_url>/site-recovery/reports/<key>``.

    :param location: Where the report was written (a local path or the object's URL, as
        :func:`site_recovery.drill_report.write_report` returns it).
    :param root: The reports store's root, described the same way.
    :param base_url: Airflow's ``[api] base_url``; empty: a link relative to the UI's own host.
    :return: "" when ``location`` is not inside ``root`` (a report written to another store).
    """
    root = root.rstrip("/") + "/"
    if not location.startswith(root):
        return ""
    key = location[len(root):]
    return f"{base_url.rstrip('/')}{PLUGIN_URL_PREFIX}/reports/{quote(key, safe='/')}"


class StoredReportLink(BaseOperatorLink):
    """Open the report a report task wrote, served from the reports store by the plugin (behind Airflow's login).

    The task returns its report's locations (``html``) as its XCom value; the link is empty until it has.
    """

    name = "Report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.configuration import conf
        from site_recovery.report_store import describe, reports_root

        written = XCom.get_value(key="return_value", ti_key=ti_key)
        html = getattr(written, "html", None) or (written.get("html") if isinstance(written, dict) else None)
        if not html:
            return ""
        return stored_report_url(html, root=describe(reports_root()),
                                 base_url=conf.get("api", "base_url", fallback="") or "")
