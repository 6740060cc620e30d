from __future__ import annotations

import base64
import io
import json
import time
from unittest import mock

import azure.identity
import azure.identity.aio
import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.utils import CaseInsensitiveDict
from azure.identity import CredentialUnavailableError
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicessiterecovery import SiteRecoveryManagementClient
from azure.mgmt.recoveryservicessiterecovery.aio import (
    SiteRecoveryManagementClient as AsyncSiteRecoveryManagementClient,
)
from azure.mgmt.recoveryservicessiterecovery.models import Job
from requests.adapters import BaseAdapter

from airflow.sdk import Connection
from site_recovery.hooks import asr
from site_recovery.hooks.asr import (
    AzureSiteRecoveryHook,
    arm_settings,
    credential_spec,
    is_azure_error,
    is_not_found,
    is_transient,
    job_name_from_headers,
    retry_after_seconds,
    summarize_job,
)
from site_recovery.vocabulary import AsrJobState

CONN_ID = "asr_unit"
SUB = "00000000-0000-0000-0000-00000000000a"
TENANT = "00000000-0000-0000-0000-00000000000b"
SECRET = "s3cr3t-value-never-logged"
JOB = "866dd326-7b1c-4bf9-9c6d-1b1a5b2f0a11"
VAULT_PATH = f"/Subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.RecoveryServices/vaults/vault1"
ARM = "https://westus.management.azure.com"


class FakeResponse:
    def __init__(self, status: int, headers: dict | None = None):
        self.status_code, self.reason, self.headers, self.request = status, "reason", headers or {}, None

    def text(self, encoding=None):
        return '{"error": {"code": "Code", "message": "Message"}}'


def http_error(status: int, headers: dict | None = None, cls=HttpResponseError):
    return cls(response=FakeResponse(status, headers))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {
                "Location": f"{ARM}{VAULT_PATH}/replicationPolicies/E2EPolicy1/operationresults/{JOB}"
                "?api-version=2021-06-01",
                "Azure-AsyncOperation": f"{ARM}{VAULT_PATH}/replicationOperationStatus/{JOB}?api-version=2021-06-01",
                "Retry-After": "30",
                "x-ms-request-id": f"{VAULT_PATH}/replicationJobs/{JOB}",
            },
            JOB,
            id="real-202",
        ),
        pytest.param(
            {"Azure-AsyncOperation": f"{ARM}{VAULT_PATH}/replicationOperationStatus/{JOB}?api-version=2025-08-01"},
            JOB,
            id="async-operation-only",
        ),
        pytest.param(
            {"Azure-AsyncOperation": f"{ARM}{VAULT_PATH}/replicationJobs/{JOB}?api-version=2017-07-10"},
            JOB,
            id="async-operation-2017",
        ),
        pytest.param(
            {"x-ms-request-id": f"{VAULT_PATH}/replicationJobs/{JOB}, {VAULT_PATH}/replicationJobs/{JOB}"},
            JOB,
            id="request-id-twice",
        ),
        pytest.param(
            {"location": f"{ARM}{VAULT_PATH}/replicationJobs/other/operationResults/{JOB}?api-version=x"},
            JOB,
            id="lowercase-name-and-job-action",
        ),
        pytest.param(
            CaseInsensitiveDict({"LOCATION": f"{ARM}{VAULT_PATH}/replicationPolicies/p/operationresults/{JOB}"}),
            JOB,
            id="azure-core-headers",
        ),
        pytest.param({}, None, id="no-headers"),
        pytest.param({"x-ms-request-id": JOB, "Retry-After": "30"}, None, id="plain-request-id"),
        pytest.param({"Location": f"{ARM}{VAULT_PATH}/replicationPolicies/p"}, None, id="no-job-in-location"),
    ],
)
def test_job_name_from_headers(headers, expected):
    assert job_name_from_headers(headers) == expected


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (http_error(429), True),
        (http_error(408), True),
        (http_error(500), True),
        (http_error(503), True),
        (http_error(400), False),
        (http_error(409), False),
        (http_error(401, cls=ClientAuthenticationError), False),
        (http_error(403), False),
        (http_error(404, cls=ResourceNotFoundError), False),
        (ServiceRequestError("connection refused"), True),
        (ServiceResponseError("connection reset"), True),
        (CredentialUnavailableError("no identity"), False),
        (ValueError("bad input"), False),
    ],
)
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({"Retry-After": "soon"}, None), ({}, None)],
)
def test_retry_after_seconds(headers, expected):
    assert retry_after_seconds(http_error(429, headers)) == expected


def test_retry_after_seconds_http_date_and_plain_exception():
    future = "Wed, 21 Oct 2099 07:28:00 GMT"
    assert retry_after_seconds(http_error(503, {"Retry-After": future})) > 0
    assert retry_after_seconds(ServiceRequestError("x")) is None


PLACEHOLDER = "0001-01-01T00:00:00"


def job_dict(state="InProgress", **properties):
    return {
        "id": f"{VAULT_PATH}/replicationJobs/{JOB}",
        "name": JOB,
        "type": "Microsoft.RecoveryServices/vaults/replicationJobs",
        "properties": {
            "scenarioName": "TestFailover",
            "friendlyName": "Test failover",
            "state": state,
            "stateDescription": state,
            "startTime": "2021-03-24T10:00:00Z",
            "endTime": PLACEHOLDER,
            "allowedActions": ["Cancel"],
            "targetObjectId": "vm-guid",
            "targetObjectName": "VM1",
            "tasks": [
                {
                    "name": "VmTfoPrerequisitesCheck",
                    "friendlyName": "Prerequisites check for test failover",
                    "state": "Succeeded",
                    "startTime": "2021-03-24T10:00:01Z",
                    "endTime": "2021-03-24T10:00:31.5Z",
                    "customDetails": {"instanceType": "TaskDetails"},
                },
                {
                    "name": "VmTfoInitiateFailover",
                    "friendlyName": "Create test virtual machine",
                    "state": "NotStarted",
                    "startTime": PLACEHOLDER,
                    "endTime": PLACEHOLDER,
                },
            ],
            "errors": [],
            **properties,
        },
    }


#: what a task that is no recovery plan group or action says beyond its timings
PLAIN_TASK = {"details_type": None, "group_id": None, "vms": [], "output": None, "instructions": None,
              "observation": None}


def test_summarize_running_job_treats_placeholder_times_as_unset():
    summary = summarize_job(Job(job_dict())).to_json()

    assert json.loads(json.dumps(summary)) == summary
    assert summary == {
        "name": JOB,
        "scenario_name": "TestFailover",
        "friendly_name": "Test failover",
        "target": "VM1",
        "state": AsrJobState.IN_PROGRESS,
        "state_description": "InProgress",
        "start_time": "2021-03-24T10:00:00Z",
        "end_time": None,
        "duration_seconds": None,
        "allowed_actions": ["Cancel"],
        "tasks": [
            {
                "name": "VmTfoPrerequisitesCheck",
                "friendly_name": "Prerequisites check for test failover",
                "state": "Succeeded",
                "start_time": "2021-03-24T10:00:01Z",
                "end_time": "2021-03-24T10:00:31.500000Z",
                "duration_seconds": 30.5,
                **PLAIN_TASK, "details_type": "TaskDetails",
            },
            {
                "name": "VmTfoInitiateFailover",
                "friendly_name": "Create test virtual machine",
                "state": "NotStarted",
                "start_time": None,
                "end_time": None,
                "duration_seconds": None,
                **PLAIN_TASK,
            },
        ],
        "errors": [],
        "protected_items": [],  # no customDetails.protectedItemDetails on this job
    }


def test_summarize_failed_job_reads_service_and_provider_error_details():
    service = {
        "code": "150261",
        "message": "Replication policy creation failed.",
        "possibleCauses": "The VMM server is offline.",
        "recommendedAction": "Bring the VMM server online and retry.",
        "activityId": "a",
    }
    provider = {"errorCode": 31349, "errorMessage": "Hyper-V host unreachable.", "possibleCauses": "Network."}
    raw = job_dict(
        "Failed",
        endTime="2021-03-24T10:05:00Z",
        allowedActions=[],
        errors=[{"serviceErrorDetails": service, "errorLevel": "Error"}, {"providerErrorDetails": provider}],
    )
    raw["properties"]["tasks"][0]["errors"] = [{"serviceErrorDetails": service}]

    summary = summarize_job(raw).to_json()

    assert summary["state"] == AsrJobState.FAILED
    assert summary["end_time"] == "2021-03-24T10:05:00Z"
    assert summary["duration_seconds"] == 300.0
    assert summary["allowed_actions"] == []
    assert summary["errors"] == [
        {
            "code": "150261",
            "message": "Replication policy creation failed.",
            "possible_causes": "The VMM server is offline.",
            "recommended_action": "Bring the VMM server online and retry.",
            "level": None,
        },
        {
            "code": "31349",
            "message": "Hyper-V host unreachable.",
            "possible_causes": "Network.",
            "recommended_action": None,
            "level": None,
        },
    ]
    assert json.loads(json.dumps(summary)) == summary


def test_summarize_job_without_properties():
    summary = summarize_job(Job({"name": JOB}))

    assert (summary.name, summary.state, summary.tasks, summary.errors) == (JOB, None, [], [])


def test_summarize_job_keeps_errors_reported_only_on_a_task():
    raw = job_dict("Failed")
    raw["properties"]["tasks"][1]["errors"] = [{"providerErrorDetails": {"errorCode": 70094, "errorMessage": "x"}}]

    assert [error.code for error in summarize_job(raw).errors] == ["70094"]


BASE_EXTRAS = {"tenantId": TENANT, "subscriptionId": SUB}


@pytest.mark.parametrize(
    ("extras", "endpoint", "scopes", "authority", "portal"),
    [
        pytest.param(
            {},
            "https://management.azure.com",
            ("https://management.azure.com/.default",),
            "login.microsoftonline.com",
            "https://portal.azure.com",
            id="public-default",
        ),
        pytest.param(
            {"cloud_environment": "AzureUSGovernment"},
            "https://management.usgovcloudapi.net",
            ("https://management.usgovcloudapi.net/.default",),
            "login.microsoftonline.us",
            "https://portal.azure.us",
            id="us-government",
        ),
        pytest.param(
            {"resource_manager_endpoint": "https://127.0.0.1:8443/", "authority_host": "https://127.0.0.1:8444"},
            "https://127.0.0.1:8443",
            ("https://127.0.0.1:8443/.default",),
            "https://127.0.0.1:8444",
            "https://portal.azure.com",
            id="scope-follows-endpoint",
        ),
        pytest.param(
            {
                "cloud_environment": "AzureChinaCloud",
                "resource_manager_endpoint": "https://arm.lab.test",
                "credential_scope": "https://management.azure.com/.default",
                "portal_url": "https://portal.lab.test/",
            },
            "https://arm.lab.test",
            ("https://management.azure.com/.default",),
            "login.chinacloudapi.cn",
            "https://portal.lab.test",
            id="explicit-scope-wins",
        ),
    ],
)
def test_arm_settings_endpoints(extras, endpoint, scopes, authority, portal):
    settings = arm_settings(CONN_ID, "client", SECRET, BASE_EXTRAS | extras)

    assert settings.resource_manager_endpoint == endpoint
    assert settings.credential_scopes == scopes
    assert settings.authority == authority
    assert settings.portal_url == portal
    assert settings.client_kwargs["base_url"] == endpoint
    assert settings.client_kwargs["credential_scopes"] == list(scopes)


@pytest.mark.parametrize(
    ("login", "password", "extras", "error"),
    [
        (None, None, {"tenantId": TENANT}, "no subscriptionId"),
        ("client", SECRET, {"subscriptionId": SUB}, "need the tenantId"),
        (None, None, {"subscriptionId": SUB, "cloud_environment": "Mars"}, "cloud_environment must be one of"),
    ],
)
def test_arm_settings_rejects_incomplete_connections_without_leaking_the_secret(login, password, extras, error):
    with pytest.raises(ValueError, match=error) as excinfo:
        arm_settings(CONN_ID, login, password, extras)
    assert SECRET not in str(excinfo.value)


def test_arm_settings_repr_hides_the_secret():
    assert SECRET not in repr(arm_settings(CONN_ID, "client", SECRET, BASE_EXTRAS))


KEY_JSON = json.dumps({"clientId": "c", "clientSecret": SECRET, "subscriptionId": SUB, "tenantId": TENANT})


@pytest.mark.parametrize(
    ("extras", "named"),
    [
        pytest.param({"key_path": "/keys/sp.json"}, "key_path", id="key_path"),
        pytest.param({"key_json": KEY_JSON}, "key_json", id="key_json"),
        pytest.param({"extra__azure__key_path": "/keys/sp.json"}, "key_path", id="legacy-prefixed-key_path"),
        pytest.param({"key_path": "/keys/sp.json", "key_json": KEY_JSON}, "key_path and key_json", id="both"),
    ],
)
def test_arm_settings_refuses_key_files_instead_of_falling_back_to_default_credential(extras, named):
    with pytest.raises(ValueError) as excinfo:
        arm_settings(CONN_ID, None, None, BASE_EXTRAS | extras)

    message = str(excinfo.value)
    assert f"Connection {CONN_ID!r} sets {named}" in message
    assert "not supported by the Azure Site Recovery hook" in message
    for way in ("client secret", "managed identity", "DefaultAzureCredential"):
        assert way in message
    assert SECRET not in message and "/keys/sp.json" not in message


@pytest.mark.parametrize("empty", [None, ""])
def test_arm_settings_ignores_empty_key_file_extras(empty):
    """The connection form saves untouched fields empty; that is not a key file."""
    settings = arm_settings(CONN_ID, None, None, BASE_EXTRAS | {"key_path": empty, "key_json": empty})

    assert settings.subscription_id == SUB


@pytest.mark.parametrize(
    ("login", "password", "extras", "environ", "name", "kwargs"),
    [
        pytest.param(
            "client",
            SECRET,
            {},
            {},
            "ClientSecretCredential",
            {
                "tenant_id": TENANT,
                "client_id": "client",
                "client_secret": SECRET,
                "authority": "login.microsoftonline.com",
            },
            id="client-secret",
        ),
        pytest.param(
            "client",
            SECRET,
            {"authority_host": "https://127.0.0.1:8444", "ca_bundle": "/lab/ca.pem"},
            {},
            "ClientSecretCredential",
            {
                "tenant_id": TENANT,
                "client_id": "client",
                "client_secret": SECRET,
                "authority": "https://127.0.0.1:8444",
                "disable_instance_discovery": True,
                "connection_verify": "/lab/ca.pem",
            },
            id="client-secret-custom-authority-and-ca",
        ),
        pytest.param(
            None,
            None,
            {"managed_identity_client_id": "mi-client"},
            {},
            "ManagedIdentityCredential",
            {"client_id": "mi-client"},
            id="user-assigned-managed-identity",
        ),
        pytest.param(
            None,
            None,
            {"managed_identity_client_id": "app-client", "workload_identity_tenant_id": "wi-tenant"},
            {"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/token"},
            "WorkloadIdentityCredential",
            {
                "tenant_id": "wi-tenant",
                "client_id": "app-client",
                "token_file_path": "/var/run/secrets/token",
                "authority": "login.microsoftonline.com",
            },
            id="workload-identity",
        ),
        pytest.param(
            None,
            None,
            {"workload_identity_tenant_id": "wi-tenant"},
            {"AZURE_FEDERATED_TOKEN_FILE": "/token", "AZURE_CLIENT_ID": "env-client"},
            "WorkloadIdentityCredential",
            {
                "tenant_id": "wi-tenant",
                "client_id": "env-client",
                "token_file_path": "/token",
                "authority": "login.microsoftonline.com",
            },
            id="workload-identity-client-from-env",
        ),
        pytest.param(
            None,
            None,
            {"managed_identity_client_id": "mi-client", "workload_identity_tenant_id": "wi-tenant"},
            {},
            "ManagedIdentityCredential",
            {"client_id": "mi-client"},
            id="no-token-file-means-managed-identity",
        ),
        pytest.param(
            None,
            None,
            {"ca_bundle": "/lab/ca.pem"},
            {},
            "DefaultAzureCredential",
            {"authority": "login.microsoftonline.com", "connection_verify": "/lab/ca.pem"},
            id="default",
        ),
    ],
)
def test_credential_spec(login, password, extras, environ, name, kwargs):
    settings = arm_settings(CONN_ID, login, password, BASE_EXTRAS | extras)

    assert credential_spec(settings, environ) == (name, kwargs)


@pytest.fixture
def azure_conn(monkeypatch):
    """Install the ``azure`` connection CONN_ID (as an env-var connection) with the given extras."""

    def install(login="client", password=SECRET, **extras):
        conn = {"conn_type": "azure", "login": login, "password": password, "extra": BASE_EXTRAS | extras}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        return AzureSiteRecoveryHook(azure_conn_id=CONN_ID)

    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    return install


def test_hook_identity():
    assert AzureSiteRecoveryHook.conn_type == "azure_site_recovery"
    assert AzureSiteRecoveryHook.conn_name_attr == "azure_conn_id"
    assert AzureSiteRecoveryHook.default_conn_name == "azure_default"
    assert AzureSiteRecoveryHook.hook_name == "Azure Site Recovery"


@pytest.mark.parametrize("conn_type", ["azure_site_recovery", "azure"])
def test_hook_reads_connections_of_its_own_type_and_of_the_azure_providers(monkeypatch, conn_type):
    conn = {"conn_type": conn_type, "login": "client", "password": SECRET, "extra": BASE_EXTRAS}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))

    settings = AzureSiteRecoveryHook(azure_conn_id=CONN_ID).settings

    assert (settings.subscription_id, settings.tenant_id, settings.client_id) == (SUB, TENANT, "client")


def test_hook_refuses_a_key_path_connection_on_first_use(azure_conn):
    hook = azure_conn(login=None, password=None, key_path="/keys/sp.json")

    with pytest.raises(ValueError, match=f"Connection '{CONN_ID}' sets key_path"):
        hook.get_credential()


@pytest.mark.asyncio
async def test_async_hook_refuses_a_key_json_connection(monkeypatch):
    conn = Connection(conn_id=CONN_ID, conn_type="azure", extra=json.dumps(BASE_EXTRAS | {"key_json": KEY_JSON}))
    monkeypatch.setattr(AzureSiteRecoveryHook, "aget_connection", mock.AsyncMock(return_value=conn))

    with pytest.raises(ValueError, match="sets key_json") as excinfo:
        await AzureSiteRecoveryHook(azure_conn_id=CONN_ID).aget_settings()
    assert SECRET not in str(excinfo.value)


@pytest.mark.parametrize(
    ("login", "password", "extras", "credential_type"),
    [
        ("client", SECRET, {}, azure.identity.ClientSecretCredential),
        (None, None, {"managed_identity_client_id": "mi"}, azure.identity.ManagedIdentityCredential),
        (None, None, {}, azure.identity.DefaultAzureCredential),
    ],
)
def test_sync_credential_types(azure_conn, login, password, extras, credential_type):
    hook = azure_conn(login=login, password=password, **extras)

    assert type(hook.get_credential()) is credential_type


def test_sync_clients_get_endpoint_scope_and_ca_without_logging_the_secret(azure_conn):
    hook = azure_conn(resource_manager_endpoint="https://127.0.0.1:8443", ca_bundle="/lab/ca.pem")
    hook._log = mock.MagicMock()
    expected = {
        "base_url": "https://127.0.0.1:8443",
        "credential_scopes": ["https://127.0.0.1:8443/.default"],
        "connection_verify": "/lab/ca.pem",
    }
    with (
        mock.patch.object(asr, "SiteRecoveryManagementClient") as asr_client,
        mock.patch.object(asr, "RecoveryServicesClient") as vault_client,
    ):
        assert hook.connection is asr_client.return_value
        assert hook.vault_client is vault_client.return_value

    for client in (asr_client, vault_client):
        credential, subscription = client.call_args.args
        assert isinstance(credential, azure.identity.ClientSecretCredential)
        assert subscription == SUB
        assert client.call_args.kwargs == expected
    logged = " ".join(str(call) for call in hook._log.mock_calls)
    assert "ClientSecretCredential" in logged
    assert SECRET not in logged


def test_real_sync_client_is_configured_for_the_endpoint(azure_conn):
    hook = azure_conn(resource_manager_endpoint="https://127.0.0.1:8443", ca_bundle="/lab/ca.pem")

    client = hook.get_conn()

    assert isinstance(client, SiteRecoveryManagementClient)
    assert client._config.base_url == "https://127.0.0.1:8443"
    assert client._config.credential_scopes == ["https://127.0.0.1:8443/.default"]
    assert client._client._pipeline._transport.connection_config.verify == "/lab/ca.pem"


@pytest.fixture
def async_hook(monkeypatch):
    """A hook whose connection comes from ``aget_connection``; ``extra_dejson`` must stay untouched."""
    conn = Connection(
        conn_id=CONN_ID,
        conn_type="azure",
        login="client",
        password=SECRET,
        extra=json.dumps(
            BASE_EXTRAS | {"resource_manager_endpoint": "https://127.0.0.1:8443", "ca_bundle": "/ca.pem"}
        ),
    )
    monkeypatch.setattr(AzureSiteRecoveryHook, "aget_connection", mock.AsyncMock(return_value=conn))
    monkeypatch.setattr(AzureSiteRecoveryHook, "get_connection", mock.Mock(side_effect=AssertionError("sync")))
    monkeypatch.setattr(
        Connection, "extra_dejson", property(mock.Mock(side_effect=AssertionError("extra_dejson masks secrets")))
    )
    return AzureSiteRecoveryHook(azure_conn_id=CONN_ID)


@pytest.mark.asyncio
async def test_async_conn_reads_extras_without_extra_dejson(async_hook):
    async with async_hook as hook:
        client = await hook.get_async_conn()
        vault_client = await hook.get_async_vault_client()

        assert isinstance(client, AsyncSiteRecoveryManagementClient)
        assert await hook.get_async_conn() is client
        assert client._config.base_url == "https://127.0.0.1:8443"
        assert client._config.credential_scopes == ["https://127.0.0.1:8443/.default"]
        assert client._client._pipeline._transport.connection_config.verify == "/ca.pem"
        assert vault_client._config.base_url == "https://127.0.0.1:8443"
        assert isinstance(hook._async_credential, azure.identity.aio.ClientSecretCredential)
        AzureSiteRecoveryHook.aget_connection.assert_awaited_once_with(CONN_ID)
    assert hook._async_conn is None
    assert hook._async_credential is None


@pytest.mark.asyncio
async def test_close_closes_clients_and_credential(async_hook):
    client, credential = mock.AsyncMock(), mock.AsyncMock()
    async_hook._async_conn, async_hook._async_credential = client, credential

    await async_hook.close()

    client.close.assert_awaited_once()
    credential.close.assert_awaited_once()


class FakeArm(BaseAdapter):
    """A requests adapter answering each request with the next canned (status, headers, body)."""

    def __init__(self, *answers):
        super().__init__()
        self.answers, self.requests = list(answers), []

    def send(self, request, **kwargs):
        self.requests.append(request)
        status, headers, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code, response.url, response.request, response.reason = status, request.url, request, "-"
        response.headers.update(headers)
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(body), headers=headers, status=status, preload_content=False
        )
        return response

    def close(self):
        pass


class StaticToken:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("token", int(time.time()) + 3600)


def hook_against(*answers):
    arm = FakeArm(*answers)
    session = requests.Session()
    session.mount("https://", arm)
    hook = AzureSiteRecoveryHook(azure_conn_id=CONN_ID)
    hook.connection = SiteRecoveryManagementClient(
        StaticToken(),
        SUB,
        base_url="https://arm.lab.test",
        credential_scopes=["https://arm.lab.test/.default"],
        transport=RequestsTransport(session=session, session_owner=False),
        retry_backoff_factor=0,
    )
    hook.vault_client = RecoveryServicesClient(
        StaticToken(),
        SUB,
        base_url="https://arm.lab.test",
        credential_scopes=["https://arm.lab.test/.default"],
        transport=RequestsTransport(session=session, session_owner=False),
        retry_backoff_factor=0,
    )
    return hook, arm


ACCEPTED = (
    202,
    {
        "Location": f"https://arm.lab.test{VAULT_PATH}/replicationFabrics/f/replicationProtectionContainers/c"
        f"/replicationProtectedItems/vm/operationresults/{JOB}?api-version=2021-06-01",
        "Retry-After": "0",
    },
    b"",
)


def test_starter_returns_the_job_from_the_202_without_polling():
    hook, arm = hook_against(ACCEPTED)

    body = {"properties": {"failoverDirection": "PrimaryToRecovery"}}

    job_name = hook.test_failover("rg1", "vault1", "f", "c", "vm", body)

    assert job_name == JOB
    assert len(arm.requests) == 1
    request = arm.requests[0]
    assert request.method == "POST"
    assert request.url.startswith(
        f"https://arm.lab.test/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.RecoveryServices"
        "/vaults/vault1/replicationFabrics/f/replicationProtectionContainers/c"
        "/replicationProtectedItems/vm/testFailover?"
    )
    assert json.loads(request.body)["properties"]["failoverDirection"] == "PrimaryToRecovery"


def test_starter_reads_the_accepted_answer_after_a_throttled_attempt():
    throttled = (429, {"Retry-After": "0", "x-ms-request-id": f"{VAULT_PATH}/replicationJobs/not-this-one"}, b"{}")
    hook, arm = hook_against(throttled, ACCEPTED)

    assert hook.create_policy("rg1", "vault1", "policy1", {"properties": {}}) == JOB
    assert len(arm.requests) == 2


def test_starter_returns_none_when_arm_answers_synchronously():
    hook, _ = hook_against((200, {"Content-Type": "application/json"}, b'{"name": "policy1"}'))

    assert hook.create_policy("rg1", "vault1", "policy1", {"properties": {}}) is None


@pytest.mark.parametrize(
    ("method", "operations", "begin"),
    [
        ("create_container_mapping", "replication_protection_container_mappings", "begin_create"),
        ("create_network_mapping", "replication_network_mappings", "begin_create"),
        ("enable_protection", "replication_protected_items", "begin_create"),
        ("test_failover_cleanup", "replication_protected_items", "begin_test_failover_cleanup"),
    ],
)
def test_item_starters_pass_their_path_through(method, operations, begin):
    hook = AzureSiteRecoveryHook(azure_conn_id=CONN_ID)
    hook.connection = mock.MagicMock()

    def accepted(*args, polling, raw_response_hook):
        assert polling is False
        raw_response_hook(mock.Mock(http_response=mock.Mock(headers=ACCEPTED[1])))

    getattr(getattr(hook.connection, operations), begin).side_effect = accepted

    assert getattr(hook, method)("rg1", "vault1", "fabric", "parent", "child", {"properties": {}}) == JOB
    getattr(getattr(hook.connection, operations), begin).assert_called_once_with(
        "rg1", "vault1", "fabric", "parent", "child", {"properties": {}}, polling=False, raw_response_hook=mock.ANY
    )


def test_get_and_list_jobs():
    running = json.dumps(job_dict()).encode()
    listing = json.dumps({"value": [job_dict()], "nextLink": None}).encode()
    hook, arm = hook_against((200, {}, running), (200, {}, listing))

    assert hook.get_job("rg1", "vault1", JOB).properties.state == "InProgress"
    assert [job.name for job in hook.list_jobs("rg1", "vault1", filter="jobStatus eq 'Failed'")] == [JOB]
    assert arm.requests[0].url.split("?")[0].endswith(f"/vaults/vault1/replicationJobs/{JOB}")
    assert "filter=jobStatus" in arm.requests[1].url


@pytest.mark.asyncio
async def test_async_get_and_cancel_job():
    hook = AzureSiteRecoveryHook(azure_conn_id=CONN_ID)
    client = mock.MagicMock()
    client.replication_jobs.get = mock.AsyncMock(return_value=Job(job_dict()))

    async def accepted(*args, polling, raw_response_hook):
        assert polling is False
        raw_response_hook(mock.Mock(http_response=mock.Mock(headers=ACCEPTED[1])))

    client.replication_jobs.begin_cancel = mock.AsyncMock(side_effect=accepted)
    hook._async_conn = client

    assert (await hook.aget_job("rg1", "vault1", JOB)).name == JOB
    assert await hook.acancel_job("rg1", "vault1", JOB) == JOB
    client.replication_jobs.get.assert_awaited_once_with("rg1", "vault1", JOB)
    client.replication_jobs.begin_cancel.assert_awaited_once_with(
        "rg1", "vault1", JOB, polling=False, raw_response_hook=mock.ANY
    )


def test_summarize_job_never_reports_a_negative_duration():
    # ASR truncates a job's endTime to whole seconds but not its startTime.
    job = job_dict("Succeeded", startTime="2021-03-24T06:36:03.4196826Z", endTime="2021-03-24T06:36:03Z")

    assert summarize_job(Job(job)).duration_seconds == 0.0


# ---------------------------------------------------------------------------- reads (vault, fabric, mappings)
NOT_FOUND = (404, {"Content-Type": "application/json"},
             b'{"error": {"code": "ResourceNotFound", "message": "The resource was not found."}}')


def ok(body) -> tuple:
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def page(*items) -> tuple:
    return ok({"value": list(items), "nextLink": None})


def path_of(request) -> str:
    return request.url.split("?")[0].removeprefix(f"https://arm.lab.test/subscriptions/{SUB}/resourceGroups/rg1"
                                                  "/providers/Microsoft.RecoveryServices/vaults/vault1")


def test_or_none_reads_answer_none_when_arm_says_not_found():
    hook, arm = hook_against(NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND)

    assert hook.get_vault_or_none("rg1", "vault1") is None
    assert hook.get_policy_or_none("rg1", "vault1", "policy1") is None
    assert hook.get_protected_item_or_none("rg1", "vault1", "f", "c", "vm") is None
    assert hook.get_vault_extended_info_or_none("rg1", "vault1") is None
    assert hook.get_container_mapping_or_none("rg1", "vault1", "f", "c", "m") is None
    assert [path_of(r) for r in arm.requests] == [
        "", "/replicationPolicies/policy1", "/replicationFabrics/f/replicationProtectionContainers/c"
        "/replicationProtectedItems/vm", "/extendedInformation/vaultExtendedInfo",
        "/replicationFabrics/f/replicationProtectionContainers/c/replicationProtectionContainerMappings/m"]


def test_or_none_reads_still_raise_other_errors():
    hook, _ = hook_against((403, {"Content-Type": "application/json"},
                            b'{"error": {"code": "AuthorizationFailed", "message": "no"}}'))

    with pytest.raises(HttpResponseError) as excinfo:
        hook.get_vault_or_none("rg1", "vault1")
    assert is_azure_error(excinfo.value) and not is_not_found(excinfo.value)


def test_fabric_reads_return_the_sdk_models():
    fabric = {"name": "fabric-guid", "properties": {"friendlyName": "vmm-ams-01"}}
    provider = {"name": "p", "properties": {"connectionStatus": "Connected"}}
    container = {"name": "cloud-guid", "properties": {"friendlyName": "Gold-Prod"}}
    network = {"name": "net-guid", "id": "/net", "properties": {"friendlyName": "Prod-App"}}
    policy = {"name": "policy1", "id": "/policy1", "properties": {"friendlyName": "policy1"}}
    hook, arm = hook_against(page(fabric), page(provider), page(container), page(network), page(policy),
                             ok(policy))

    assert [f.properties.friendly_name for f in hook.list_fabrics("rg1", "vault1")] == ["vmm-ams-01"]
    assert [p.properties.connection_status for p in hook.list_recovery_services_providers("rg1", "vault1", "f")] \
        == ["Connected"]
    assert [c.name for c in hook.list_protection_containers("rg1", "vault1", "f")] == ["cloud-guid"]
    assert [n.id for n in hook.list_vm_networks("rg1", "vault1", "f")] == ["/net"]
    assert [p.name for p in hook.list_policies("rg1", "vault1")] == ["policy1"]
    assert hook.get_policy("rg1", "vault1", "policy1").id == "/policy1"
    assert [path_of(r) for r in arm.requests] == [
        "/replicationFabrics", "/replicationFabrics/f/replicationRecoveryServicesProviders",
        "/replicationFabrics/f/replicationProtectionContainers", "/replicationFabrics/f/replicationNetworks",
        "/replicationPolicies", "/replicationPolicies/policy1"]


def test_mapping_lists_cover_the_vault_or_one_network_or_cloud():
    mapping = {"name": "prod-app-to-dr-app", "properties": {"recoveryNetworkId": "/dr-app"}}
    pairing = {"name": "gold-prod-to-gold-dr", "properties": {"policyId": "/policy1"}}
    hook, arm = hook_against(page(mapping), page(mapping), page(pairing), page(pairing), ok(mapping))

    assert [m.name for m in hook.list_network_mappings("rg1", "vault1")] == ["prod-app-to-dr-app"]
    assert [m.properties.recovery_network_id for m in hook.list_network_mappings("rg1", "vault1", "f", "n")] \
        == ["/dr-app"]
    assert [m.name for m in hook.list_container_mappings("rg1", "vault1")] == ["gold-prod-to-gold-dr"]
    assert [m.properties.policy_id for m in hook.list_container_mappings("rg1", "vault1", "f", "c")] == ["/policy1"]
    assert hook.get_network_mapping("rg1", "vault1", "f", "n", "m").name == "prod-app-to-dr-app"
    assert [path_of(r) for r in arm.requests] == [
        "/replicationNetworkMappings",
        "/replicationFabrics/f/replicationNetworks/n/replicationNetworkMappings",
        "/replicationProtectionContainerMappings",
        "/replicationFabrics/f/replicationProtectionContainers/c/replicationProtectionContainerMappings",
        "/replicationFabrics/f/replicationNetworks/n/replicationNetworkMappings/m"]
    with pytest.raises(ValueError, match="both fabric_name and network_name"):
        hook.list_network_mappings("rg1", "vault1", "f")
    with pytest.raises(ValueError, match="both fabric_name and container_name"):
        hook.list_container_mappings("rg1", "vault1", container_name="c")


def test_resource_provider_state():
    hook, arm = hook_against(ok({"namespace": "Microsoft.RecoveryServices", "registrationState": "Registered"}),
                             ok({"namespace": "Microsoft.RecoveryServices"}))

    assert hook.get_resource_provider_state(SUB) == "Registered"
    assert hook.get_resource_provider_state(SUB) == "Unknown"
    assert arm.requests[0].method == "GET"
    assert arm.requests[0].url == (f"https://arm.lab.test/subscriptions/{SUB}/providers/Microsoft.RecoveryServices"
                                   "?api-version=2021-04-01")


def test_vault_reads_and_creation():
    vault = {"name": "vault1", "id": "/vault1", "location": "westeurope",
             "properties": {"provisioningState": "Succeeded"}}
    hook, arm = hook_against(ok(vault), ok(vault))

    assert hook.get_vault("rg1", "vault1").location == "westeurope"
    created = hook.create_vault("rg1", "vault1", {"location": "westeurope", "sku": {"name": "Standard"}})
    assert created.properties.provisioning_state == "Succeeded"
    assert [r.method for r in arm.requests] == ["GET", "PUT"]
    assert json.loads(arm.requests[1].body)["location"] == "westeurope"


def test_vault_credentials_calls():
    der = b"\x30\x82certificate"
    uploaded = {"name": "cert1", "properties": {"authType": "AAD", "certificate": base64.b64encode(der).decode(),
                                                 "resourceId": 42}}
    info = {"name": "vaultExtendedInfo", "properties": {"integrityKey": "k" * 128, "algorithm": "None"}}
    hook, arm = hook_against(ok(uploaded), ok(info), ok(info))

    assert hook.upload_vault_certificate("rg1", "vault1", "cert1", der).properties.resource_id == 42
    written = hook.create_or_update_vault_extended_info(
        "rg1", "vault1", {"properties": {"integrityKey": "k" * 128, "algorithm": "None"}})
    assert written.properties.integrity_key == "k" * 128
    assert hook.get_vault_extended_info("rg1", "vault1").properties.algorithm == "None"
    put = arm.requests[0]
    assert (put.method, path_of(put)) == ("PUT", "/certificates/cert1")
    assert json.loads(put.body) == {"properties": {"authType": "AAD", "certificate": base64.b64encode(der).decode()}}
    assert [(r.method, path_of(r)) for r in arm.requests[1:]] == [
        ("PUT", "/extendedInformation/vaultExtendedInfo"), ("GET", "/extendedInformation/vaultExtendedInfo")]


@pytest.mark.asyncio
async def test_async_protected_item_or_none():
    hook = AzureSiteRecoveryHook(azure_conn_id=CONN_ID)
    client = mock.MagicMock()
    client.replication_protected_items.get = mock.AsyncMock(
        side_effect=[ResourceNotFoundError(response=FakeResponse(404)), "item"])
    hook._async_conn = client

    assert await hook.aget_protected_item_or_none("rg1", "vault1", "f", "c", "vm") is None
    assert await hook.aget_protected_item_or_none("rg1", "vault1", "f", "c", "vm") == "item"
    client.replication_protected_items.get.assert_awaited_with("rg1", "vault1", "f", "c", "vm")
