"""The lab as a server: its endpoints contract, Entra ID stand-in, ARM auth, admin API, restarts."""

from __future__ import annotations

import ssl
import subprocess
import time
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential

from asr_lab.client import LabClient

ENDPOINT_KEYS = {"arm_url", "authority_url", "ca_cert", "tenant_id", "subscription_id", "client_id",
                 "client_secret", "admin_url", "admin_token", "winrm"}


def credential(lab: LabClient, secret: str | None = None) -> ClientSecretCredential:
    return ClientSecretCredential(
        lab["tenant_id"], lab["client_id"], secret or lab["client_secret"],
        authority=lab["authority_url"], connection_verify=lab["ca_cert"], disable_instance_discovery=True,
    )


def arm_get(lab: LabClient, path: str, token: str | None = None, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params.setdefault("api-version", "2025-08-01")
    return requests.get(f"{lab['arm_url']}{path}", headers=headers, params=params, verify=lab["ca_cert"], timeout=10)


@pytest.fixture
def token(lab) -> str:
    return credential(lab).get_token(lab["credential_scope"]).token


def jobs_path(lab) -> str:
    return (f"/subscriptions/{lab['subscription_id']}/resourceGroups/rg-missing/providers/"
            "Microsoft.RecoveryServices/vaults/no-such-vault/replicationJobs")


class TestEndpointsContract:
    def test_endpoints_file_names_everything_a_client_needs(self, lab):
        assert ENDPOINT_KEYS <= lab.endpoints.keys()
        assert lab["arm_url"].startswith("https://127.0.0.1:")
        assert Path(lab["ca_cert"]).read_text().startswith("-----BEGIN CERTIFICATE-----")

    def test_tls_is_verified_against_the_lab_ca_and_nothing_else(self, lab):
        with pytest.raises(urllib.error.URLError) as excinfo:
            urllib.request.urlopen(f"{lab['admin_url']}/health", context=ssl.create_default_context(), timeout=5)
        assert "CERTIFICATE_VERIFY_FAILED" in str(excinfo.value)
        ours = ssl.create_default_context(cafile=lab["ca_cert"])
        assert urllib.request.urlopen(f"{lab['admin_url']}/health", context=ours, timeout=5).status == 200

    def test_plain_http_is_not_served(self, lab):
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(lab["arm_url"].replace("https://", "http://") + "/_lab/health", timeout=5)


class TestIdentity:
    def test_client_secret_credential_gets_a_token_for_the_lab(self, lab):
        access = credential(lab).get_token(lab["credential_scope"])
        assert access.token and access.expires_on > 0

    def test_public_arm_scope_is_honoured_too(self, lab):
        token = credential(lab).get_token("https://management.azure.com/.default").token
        assert arm_get(lab, jobs_path(lab), token).status_code == 404  # authenticated, vault missing

    def test_wrong_secret_fails_like_entra_id(self, lab):
        with pytest.raises(ClientAuthenticationError) as excinfo:
            credential(lab, secret="not-the-secret").get_token(lab["credential_scope"])
        assert "AADSTS7000215" in str(excinfo.value)
        assert lab["client_secret"] not in str(excinfo.value)


class TestArmAuthentication:
    def test_missing_token_is_401_with_arm_envelope(self, lab):
        response = arm_get(lab, jobs_path(lab))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "AuthenticationFailed"
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")

    def test_forged_token_is_refused(self, lab, token):
        body, _, mac = token.partition(".")
        response = arm_get(lab, jobs_path(lab), body + "." + "0" * len(mac))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"

    def test_valid_token_reaches_arm(self, lab, token):
        response = arm_get(lab, jobs_path(lab), token)
        assert response.status_code == 404
        assert response.json()["error"]["code"]


class TestHttpFaultsAndRequestLog:
    def test_fault_answers_the_next_n_matching_requests_then_stops(self, lab, token):
        fault = lab.add_http_fault(503, method="GET", path="/replicationJobs$", count=2)
        statuses = [arm_get(lab, jobs_path(lab), token).status_code for _ in range(3)]
        assert statuses == [503, 503, 404]
        logged = lab.requests(path="/replicationJobs$")
        assert [r["status"] for r in logged] == [503, 503, 404]
        assert [r["fault_id"] for r in logged] == [fault["id"], fault["id"], None]
        assert lab.http_faults()[0]["exhausted"] is True

    def test_throttling_fault_carries_retry_after(self, lab, token):
        lab.add_http_fault(429, path="/replicationJobs$", retry_after=7)
        response = arm_get(lab, jobs_path(lab), token)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json()["error"]["code"] == "TooManyRequests"

    def test_fault_on_another_method_does_not_fire(self, lab, token):
        lab.add_http_fault(500, method="PUT", path=".*")
        assert arm_get(lab, jobs_path(lab), token).status_code == 404

    @pytest.mark.parametrize(
        "spec, message",
        [({"path": "x"}, "needs either 'status'"), ({"status": 200}, "HTTP error"),
         ({"status": 503, "answer_after": 2}, "not both"), ({"answer_after": 0}, "seconds in (0, 3600]"),
         ({"status": 503, "path": "("}, "regular expression"),
         ({"status": 503, "colour": "red"}, "unknown fault field")],
    )
    def test_bad_fault_specs_are_refused_with_a_reason(self, lab, spec, message):
        response = requests.post(f"{lab['admin_url']}/faults/http", json=spec, verify=lab["ca_cert"],
                                 headers={"Authorization": f"Bearer {lab['admin_token']}"}, timeout=10)
        assert response.status_code == 400
        assert message in response.json()["error"]

    def test_a_held_answer_is_served_at_once_and_answered_late(self, lab, token):
        lab.hold_answers(1.5, method="GET", path="/replicationJobs$")
        started = time.monotonic()
        response = arm_get(lab, jobs_path(lab), token)
        assert time.monotonic() - started >= 1.5
        assert response.status_code == 404  # the real answer, late (no vault in a fresh lab)
        (logged,) = lab.requests(path="/replicationJobs$")
        assert logged["status"] == 404 and logged["fault_id"] and logged["duration_ms"] >= 1500
        started = time.monotonic()
        arm_get(lab, jobs_path(lab), token)  # one request only: the next is answered at once
        assert time.monotonic() - started < 1.5

    def test_request_log_filters_mutating_requests_and_pages_by_seq(self, lab, token):
        arm_get(lab, jobs_path(lab), token)
        first = lab.last_request_seq()
        arm_get(lab, jobs_path(lab), token)
        later = lab.requests(since=first)
        assert len(later) == 1 and later[0]["method"] == "GET" and later[0]["mutating"] is False
        assert lab.requests(mutating=True) == []

    def test_admin_api_needs_its_token(self, lab):
        response = requests.get(f"{lab['admin_url']}/requests", verify=lab["ca_cert"], timeout=10)
        assert response.status_code == 401

    def test_admin_calls_are_not_in_the_request_log(self, lab):
        lab.state()
        lab.http_faults()
        assert lab.requests() == []


def test_lab_refuses_a_broken_estate_file_with_one_clear_line(tmp_path):
    estate = tmp_path / "estate.yaml"
    estate.write_text("tenant_id: 42\nsites: nope\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "asr-lab"), "serve", "--state-dir", str(tmp_path / "s"),
         "--estate", str(estate)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("asr-lab: ")
    assert "Traceback" not in result.stderr
