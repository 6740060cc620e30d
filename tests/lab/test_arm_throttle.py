"""ARM's throttling in the running lab, driven by the real SDK: the headers on every answer, 429
with Retry-After once a bucket is empty, the SDK honouring it, a refused write not counted as sent,
and Entra's token endpoint counting token requests."""

from __future__ import annotations

import time

import pytest
import requests
from azure.core.exceptions import HttpResponseError

from tests.labflows import asr_client, create_vault, credential, vault_client

pytestmark = pytest.mark.lab


def admin_post(lab, path: str, body) -> requests.Response:
    return requests.post(f"{lab['admin_url']}{path}", json=body, timeout=30, verify=lab["ca_cert"],
                         headers={"Authorization": f"Bearer {lab['admin_token']}"})


def test_every_answer_carries_what_is_left_of_the_principals_and_the_subscriptions_buckets(lab):
    seen: list[dict] = []
    list(vault_client(lab).vaults.list_by_subscription_id(raw_response_hook=lambda r: seen.append(
        dict(r.http_response.headers))))
    headers = {k.lower(): v for k, v in seen[0].items()}
    assert int(headers["x-ms-ratelimit-remaining-subscription-reads"]) == 249
    assert int(headers["x-ms-ratelimit-remaining-subscription-global-reads"]) == 250 * 15 - 1
    assert lab.throttle()["enabled"] is True  # on unless a test lifts it


def test_an_empty_read_bucket_answers_429_and_the_sdk_waits_as_told(lab):
    vault = create_vault(lab)
    lab.set_throttle(limits={"reads": {"burst": 3, "per_second": 1}})
    since = lab.last_request_seq()
    asr = asr_client(lab)
    for _ in range(6):
        list(asr.replication_fabrics.list(vault.resource_group, vault.name))
    reads = [r for r in lab.requests(since, method="GET") if "replicationFabrics" in r["path"]]
    refused = [r for r in reads if r["status"] == 429]
    assert len([r for r in reads if r["status"] == 200]) == 6 and refused, reads
    assert all(r["throttled"] and not r["mutating"] for r in refused)
    for before, after in zip(reads, reads[1:]):
        if before["status"] == 429:  # Retry-After: 1; the SDK sent nothing sooner
            assert after["started"] - before["ended"] >= 0.95, (before, after)
    assert lab.throttle()["throttled"]["reads"] == len(refused)


def test_a_throttled_write_is_not_served_and_its_retry_is_the_one_request_sent(lab):
    vault = create_vault(lab)
    lab.set_throttle(limits={"writes": {"burst": 1, "per_second": 0.5}})
    rsv = vault_client(lab)
    since = lab.last_request_seq()
    for name in ("vault-a", "vault-b"):  # the second PUT finds the bucket empty; the SDK retries after 2 s
        rsv.vaults.begin_create_or_update(vault.resource_group, name, {
            "location": "westeurope", "sku": {"name": "Standard"}, "properties": {}}).result()
    puts = lab.requests(since, method="PUT")
    assert [(r["path"].rsplit("/", 1)[-1], r["status"], r["throttled"]) for r in puts] == [
        ("vault-a", 201, False), ("vault-b", 429, True), ("vault-b", 201, False)], puts
    assert puts[2]["started"] - puts[1]["ended"] >= 1.95  # Retry-After: 2
    assert [r["path"].rsplit("/", 1)[-1] for r in lab.requests(since, mutating=True)] == ["vault-a", "vault-b"]


def test_a_429_names_arms_error_when_the_caller_stops_retrying(lab):
    vault = create_vault(lab)
    lab.set_throttle(limits={"reads": {"burst": 1, "per_second": 0.1}})
    asr = asr_client(lab)
    list(asr.replication_fabrics.list(vault.resource_group, vault.name))
    with pytest.raises(HttpResponseError) as raised:
        list(asr.replication_fabrics.list(vault.resource_group, vault.name, retry_total=0))
    assert raised.value.status_code == 429 and raised.value.error.code == "SubscriptionRequestsThrottled"
    assert raised.value.response.headers["Retry-After"] == "10"
    assert lab["client_id"] in raised.value.error.message


def test_lifted_throttling_lets_everything_through_and_reset_puts_it_back(lab):
    vault = create_vault(lab)
    lab.set_throttle(enabled=False, limits={"reads": {"burst": 1, "per_second": 0.1}})
    asr = asr_client(lab)
    for _ in range(3):
        list(asr.replication_fabrics.list(vault.resource_group, vault.name, retry_total=0))
    lab.reset()
    status = lab.throttle()
    assert status["enabled"] is True and status["limits"]["reads"] == {"burst": 250, "per_second": 25}


def test_the_token_endpoint_counts_token_requests_per_client(lab):
    before = lab.identity()["token_requests"].get(lab["client_id"].lower(), 0)
    for _ in range(2):  # two credentials, two tokens; one credential reuses its token
        cred = credential(lab)
        cred.get_token(lab["credential_scope"])
        cred.get_token(lab["credential_scope"])
    assert lab.identity()["token_requests"][lab["client_id"].lower()] == before + 2


def test_a_shorter_token_lifetime_applies_to_new_tokens(lab):
    lab.set_token_lifetime(60)
    token = credential(lab).get_token(lab["credential_scope"])
    assert 55 <= token.expires_on - time.time() <= 61
    lab.reset()
    assert lab.identity()["token_lifetime_seconds"] == 3599


@pytest.mark.parametrize("path, body, message", [
    ("/throttle", {"enabled": "yes"}, "enabled must be true or false"),
    ("/throttle", {"limits": {"reads": {"burst": 0, "per_second": 1}}}, "limits.reads: burst must be"),
    ("/throttle", {"limit": {}}, "unknown field"),
    ("/identity", {"token_lifetime_seconds": 0}, "token_lifetime_seconds must be a whole number"),
    ("/identity", {}, "missing field 'token_lifetime_seconds'"),
])
def test_bad_admin_settings_are_refused_naming_the_mistake(lab, path, body, message):
    answer = admin_post(lab, path, body)
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert lab.throttle()["limits"]["reads"]["burst"] == 250  # nothing half-changed
