"""
Provider metadata of the ``asr-site-recovery`` distribution (entry point ``apache_airflow_provider``).

Airflow's ``ProvidersManager`` calls :func:`get_provider_info` in every component to list the
providers and to build the connection form; since 3.2 the form is built from this metadata alone,
without importing the hook. So this module imports nothing (no Airflow, no Azure SDK), and the
version here is the distribution's single source (``pyproject.toml`` reads ``__version__``).

The connection type ``azure_site_recovery`` documents every extra that
:func:`site_recovery.hooks.asr.arm_settings` reads. The extras keep the names the ``azure``
connection type of the Microsoft Azure provider uses (``tenantId``, ``subscriptionId``,
``managed_identity_client_id``, ...), so an existing ``azure`` connection works unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

__version__ = "0.1.0"

CONNECTION_TYPE = "azure_site_recovery"

_CLOUDS = ["AzurePublicCloud", "AzureUSGovernment", "AzureChinaCloud"]


def _text(label: str, description: str, *, examples: list[str] | None = None) -> dict[str, Any]:
    """One optional text extra in the ``conn-fields`` schema of Airflow's provider metadata."""
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if examples:
        schema["examples"] = examples
    return {"label": label, "description": description, "schema": schema}


# extra name -> form field; the order is the form's order
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "subscriptionId": _text(
        "Subscription ID",
        "Required. The Azure subscription that holds the Recovery Services vault.",
    ),
    "tenantId": _text(
        "Tenant ID",
        "Microsoft Entra tenant of the service principal; required with a Client ID and Client "
        "secret. Leave both empty to use a managed identity, workload identity or "
        "DefaultAzureCredential.",
    ),
    "managed_identity_client_id": _text(
        "Managed identity client ID",
        "Client ID of a user-assigned managed identity (used when Client ID and Client secret are "
        "empty). With a workload identity tenant ID it is the workload identity's client ID.",
    ),
    "workload_identity_tenant_id": _text(
        "Workload identity tenant ID",
        "Tenant for workload identity federation; used when AZURE_FEDERATED_TOKEN_FILE is set in "
        "the environment of the worker and triggerer.",
    ),
    "cloud_environment": _text(
        "Cloud environment",
        "National cloud whose Resource Manager, Entra authority and portal are used: "
        + ", ".join(_CLOUDS) + ". Empty means AzurePublicCloud.",
        examples=_CLOUDS,
    ),
    "resource_manager_endpoint": _text(
        "Resource Manager endpoint",
        "Overrides the cloud's Azure Resource Manager URL (an Azure Stack Hub or a test "
        "endpoint such as the lab's).",
    ),
    "credential_scope": _text(
        "Token scope",
        "Overrides the OAuth scope of ARM tokens; empty means <Resource Manager endpoint>/.default.",
    ),
    "authority_host": _text(
        "Authority host",
        "Overrides the cloud's Microsoft Entra authority (token endpoint host).",
    ),
    "portal_url": _text(
        "Portal URL",
        "Base URL of the Azure portal used in the tasks' links to ASR jobs; empty means the "
        "cloud's portal.",
    ),
    "ca_bundle": _text(
        "CA bundle",
        "Path, on workers and the triggerer, to a PEM file of CA certificates that ARM and Entra "
        "TLS certificates are verified against; empty means the system's trust store.",
    ),
}

PLACEHOLDERS: dict[str, str] = {
    "login": "service principal client (application) ID, or empty",
    "password": "service principal client secret, or empty",
    "subscriptionId": "00000000-0000-0000-0000-000000000000",
    "tenantId": "00000000-0000-0000-0000-000000000000",
    "managed_identity_client_id": "client ID of a user-assigned identity",
    "workload_identity_tenant_id": "tenant ID for workload identity federation",
    "cloud_environment": "AzurePublicCloud (default) | AzureUSGovernment | AzureChinaCloud",
    "resource_manager_endpoint": "https://management.azure.com",
    "credential_scope": "https://management.azure.com/.default",
    "authority_host": "login.microsoftonline.com",
    "portal_url": "https://portal.azure.com",
    "ca_bundle": "/etc/ssl/certs/ca-certificates.crt",
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "asr-site-recovery",
        "name": "Azure Site Recovery (Hyper-V/VMM)",
        "description": "Azure Site Recovery for Hyper-V VMs in VMM clouds: hooks, triggers, "
        "sensors and operators for deployment, replication and DR drills.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": "site_recovery.hooks.asr.AzureSiteRecoveryHook",
                "hook-name": "Azure Site Recovery",
                "connection-type": CONNECTION_TYPE,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "host"],
                    "relabeling": {"login": "Client ID", "password": "Client secret"},
                    "placeholders": dict(PLACEHOLDERS),
                },
                # copies: the providers manager keeps, and may edit, what it is given
                "conn-fields": copy.deepcopy(CONN_FIELDS),
            }
        ],
    }

