from __future__ import annotations

from unittest import mock

import pytest

from site_recovery import links
from site_recovery.hooks.asr import arm_settings
from site_recovery.links import AsrJobLink, asr_job_portal_url, job_link_context
from site_recovery.plugin import SiteRecoveryPlugin

JOB = "866dd326-7b1c-4bf9-9c6d-1b1a5b2f0a11"
SUB = "00000000-0000-0000-0000-00000000000a"
TENANT = "00000000-0000-0000-0000-00000000000b"
VAULT_ID = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.RecoveryServices/vaults/vault1"
CONTEXT = {
    "portal_url": "https://portal.azure.com",
    "tenant_id": TENANT,
    "subscription_id": SUB,
    "resource_group_name": "rg1",
    "vault_name": "vault1",
}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, f"https://portal.azure.com/#@{TENANT}/resource{VAULT_ID}/replicationJobs/{JOB}"),
        ({"tenant_id": None}, f"https://portal.azure.com/#/resource{VAULT_ID}/replicationJobs/{JOB}"),
        (
            {"portal_url": "https://portal.lab.test/", "resource_group_name": "dr rg(1)"},
            f"https://portal.lab.test/#@{TENANT}/resource/subscriptions/{SUB}/resourceGroups/dr%20rg%281%29"
            f"/providers/Microsoft.RecoveryServices/vaults/vault1/replicationJobs/{JOB}",
        ),
    ],
)
def test_asr_job_portal_url(overrides, expected):
    assert asr_job_portal_url(job_name=JOB, **(CONTEXT | overrides)) == expected


@pytest.mark.parametrize(
    ("extras", "tenant", "portal"),
    [
        ({"tenantId": TENANT}, TENANT, "https://portal.azure.com"),
        (
            {"workload_identity_tenant_id": "wi", "cloud_environment": "AzureUSGovernment"},
            "wi",
            "https://portal.azure.us",
        ),
        ({"portal_url": "https://portal.lab.test"}, None, "https://portal.lab.test"),
    ],
)
def test_job_link_context_holds_no_secret(extras, tenant, portal):
    settings = arm_settings("azure_asr", None, None, {"subscriptionId": SUB} | extras)

    assert job_link_context(settings, "rg1", "vault1") == CONTEXT | {"tenant_id": tenant, "portal_url": portal}


def test_job_link_context_never_carries_the_client_secret():
    settings = arm_settings("azure_asr", "client", "s3cr3t-value", {"subscriptionId": SUB, "tenantId": TENANT})

    assert "s3cr3t-value" not in repr(job_link_context(settings, "rg1", "vault1"))


@pytest.mark.parametrize(
    ("xcoms", "expected"),
    [
        (
            {"asr_job_name": JOB, "asr_job_link": CONTEXT},
            f"https://portal.azure.com/#@{TENANT}/resource{VAULT_ID}/replicationJobs/{JOB}",
        ),
        ({"asr_job_link": CONTEXT}, ""),
        ({"asr_job_name": JOB}, ""),
    ],
)
def test_get_link_reads_xcom(xcoms, expected):
    ti_key = mock.Mock()
    with mock.patch.object(links.XCom, "get_value", side_effect=lambda *, key, ti_key: xcoms.get(key)) as get_value:
        assert AsrJobLink().get_link(mock.Mock(), ti_key=ti_key) == expected
    assert {call.kwargs["ti_key"] for call in get_value.call_args_list} == {ti_key}


def test_link_name_and_xcom_key():
    assert AsrJobLink().name == "ASR job (Azure portal)"
    assert AsrJobLink().xcom_key == "_link_AsrJobLink"


def test_plugin_is_named_and_registers_nothing_heavy():
    assert SiteRecoveryPlugin.name == "site_recovery"
    assert not SiteRecoveryPlugin.operator_extra_links
    assert not SiteRecoveryPlugin.global_operator_extra_links
