"""The wire layer in process: paths, api-versions, LRO headers, async status, paging, errors."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from asr_lab.arm.routes import LRO_API_VERSION, dispatch, parse_filter
from tests.lab.test_arm_world import BASE_URL, POLICY_INPUT, World

ASR = "api-version=2025-08-01"
VAULTS = "api-version=2026-11-01"


@pytest.fixture
def world() -> World:
    return World(scale=1)


@pytest.fixture
def http(world: World) -> TestClient:
    async def arm(request: Request):
        return await dispatch(request, world.backend)

    app = Starlette(routes=[Route("/{path:path}", arm, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])])
    return TestClient(app)


def vault_path(world: World) -> str:
    return f"/subscriptions/{world.estate.subscription_id}/resourceGroups/rg-dr-weu/providers/" \
           f"Microsoft.RecoveryServices/vaults/rsv-dr-weu-01"


def local(url: str) -> str:
    """An absolute lab URL as a path + query for the test client."""
    assert url.startswith(BASE_URL)
    return url[len(BASE_URL):]


def put_policy(http: TestClient, world: World, name: str = "Gold-5min", **overrides):
    body = {"properties": {"providerSpecificInput": {**POLICY_INPUT, **overrides}}}
    return http.put(f"{vault_path(world)}/replicationPolicies/{name}?{ASR}", json=body,
                    headers={"x-ms-client-request-id": "3f1a8c2e-0000-4000-8000-000000000001"})


class TestMutations:
    def test_a_mutation_answers_202_with_the_recorded_headers(self, http: TestClient, world: World):
        response = put_policy(http, world)
        assert response.status_code == 202 and response.content == b""
        job = response.headers["location"].split("/operationresults/")[1].split("?")[0]
        prefix = f"{BASE_URL}/Subscriptions/{world.estate.subscription_id}/resourceGroups/rg-dr-weu/providers/" \
                 f"Microsoft.RecoveryServices/vaults/rsv-dr-weu-01"
        assert response.headers["location"] == (
            f"{prefix}/replicationPolicies/Gold-5min/operationresults/{job}?api-version={LRO_API_VERSION}")
        assert response.headers["azure-asyncoperation"] == (
            f"{prefix}/replicationOperationStatus/{job}?api-version={LRO_API_VERSION}")
        assert response.headers["retry-after"] == "0"
        assert response.headers["x-ms-request-id"] == f"/Subscriptions/{prefix.split('/Subscriptions/')[1]}/replicationJobs/{job}"
        assert response.headers["x-ms-client-request-id"] == "3f1a8c2e-0000-4000-8000-000000000001"
        assert response.headers["x-ms-correlation-request-id"]

    def test_retry_after_is_what_the_backend_says(self, http: TestClient, world: World):
        world.backend.retry_after = 30
        assert put_policy(http, world).headers["retry-after"] == "30"

    def test_async_status_and_operation_result_follow_the_job(self, http: TestClient, world: World):
        response = put_policy(http, world)
        status_url, result_url = local(response.headers["azure-asyncoperation"]), local(response.headers["location"])
        running = http.get(status_url).json()
        assert running["status"] == "InProgress" and running["error"] is None
        assert running["name"] in status_url and running["endTime"] is None
        assert http.get(result_url).status_code == 202
        world.advance(60)
        done = http.get(status_url).json()
        assert done["status"] == "Succeeded" and done["endTime"]
        result = http.get(result_url)
        assert result.status_code == 200 and result.json()["name"] == "Gold-5min"
        assert result.json()["properties"]["providerSpecificDetails"]["compression"] == "Enabled"

    def test_a_failed_job_reports_failed_with_its_asr_error(self, http: TestClient, world: World):
        response = put_policy(http, world, replicationFrequencyInSeconds=45)
        world.advance(60)
        status = http.get(local(response.headers["azure-asyncoperation"])).json()
        assert status["status"] == "Failed"
        assert status["error"]["code"] == "150261" and status["error"]["message"] == "Replication policy creation failed."
        result = http.get(local(response.headers["location"]))
        assert result.status_code == 400 and result.json()["error"]["code"] == "150261"
        assert "retry-after" not in result.headers

    def test_a_cancelled_job_is_canceled_for_arm(self, http: TestClient, world: World):
        world.backend.add_job_fault({"scenario": "AddProtectionProfile", "outcome": "Stuck"})
        response = put_policy(http, world)
        job = response.headers["location"].split("/operationresults/")[1].split("?")[0]
        cancel = http.post(f"{vault_path(world)}/replicationJobs/{job}/cancel?{ASR}")
        assert cancel.status_code == 202
        assert http.get(local(cancel.headers["azure-asyncoperation"])).json()["status"] == "Succeeded"
        final = http.get(local(cancel.headers["location"]))
        assert final.status_code == 200 and final.json()["properties"]["state"] == "Cancelled"
        status = http.get(local(response.headers["azure-asyncoperation"])).json()
        assert status["status"] == "Canceled"  # never "Cancelled" here
        assert http.get(f"{vault_path(world)}/replicationJobs/{job}?{ASR}").json()["properties"]["state"] == "Cancelled"

    def test_removals_answer_204_when_done(self, http: TestClient, world: World):
        put_policy(http, world)
        world.advance(60)
        response = http.delete(f"{vault_path(world)}/replicationPolicies/Gold-5min?{ASR}")
        assert response.status_code == 202
        world.advance(60)
        assert http.get(local(response.headers["location"])).status_code == 204


class TestReads:
    def test_a_job_get_has_the_recorded_shape(self, http: TestClient, world: World):
        response = put_policy(http, world)
        job = response.headers["location"].split("/operationresults/")[1].split("?")[0]
        body = http.get(f"{vault_path(world)}/replicationJobs/{job}?{ASR}")
        assert body.headers["x-ms-request-id"].endswith(f"/replicationJobs/{job}")
        props = body.json()["properties"]
        assert (props["state"], props["allowedActions"], "endTime" in props) == ("InProgress", ["Cancel"], False)
        waiting = props["tasks"][1]
        assert waiting["startTime"] == waiting["endTime"] == "0001-01-01T00:00:00"
        assert waiting["customDetails"] == {"instanceType": "TaskDetails"} and waiting["taskType"] == "TaskDetails"
        assert props["customDetails"]["instanceType"] == "AsrJobDetails"
        world.advance(60)
        props = http.get(f"{vault_path(world)}/replicationJobs/{job}?{ASR}").json()["properties"]
        assert props["endTime"].endswith("Z") and "." not in props["endTime"]

    def test_job_list_filters_and_leaves_tasks_out(self, http: TestClient, world: World):
        put_policy(http, world)
        put_policy(http, world, "Bad", replicationPort=0)
        world.advance(60)
        jobs = http.get(f"{vault_path(world)}/replicationJobs",
                        params={"api-version": "2025-08-01",
                                "$filter": "JobStatus eq 'Failed' and jobName eq 'AddProtectionProfile'"}).json()
        assert [j["properties"]["targetObjectName"] for j in jobs["value"]] == ["Bad"]
        assert jobs["value"][0]["properties"]["tasks"] == [] and jobs["nextLink"] is None

    def test_protectable_items_are_paged_with_a_skip_token(self, http: TestClient, world: World):
        gold = world.cloud("Gold-Prod")
        path = f"{vault_path(world)}/replicationFabrics/{world.primary}/replicationProtectionContainers/{gold}/" \
               f"replicationProtectableItems"
        first = http.get(f"{path}?{ASR}").json()
        assert len(first["value"]) == 5 and first["nextLink"]
        next_link = urlsplit(first["nextLink"])
        assert parse_qs(next_link.query)["api-version"] == [LRO_API_VERSION] and "$skipToken" in next_link.query
        second = http.get(local(first["nextLink"])).json()
        assert len(second["value"]) == 3 and second["nextLink"] is None
        names = {i["properties"]["friendlyName"] for i in first["value"] + second["value"]}
        assert len(names) == 8
        fci = next(i for i in first["value"] + second["value"] if i["properties"]["friendlyName"] == "SQL-FCI-01")
        assert fci["properties"]["customDetails"]["hasSharedVhd"] == "Present"
        assert fci["properties"]["protectionReadinessErrors"]

    def test_the_next_link_keeps_the_filter(self, http: TestClient, world: World):
        gold = world.cloud("Gold-Prod")
        path = f"{vault_path(world)}/replicationFabrics/{world.primary}/replicationProtectionContainers/{gold}/" \
               f"replicationProtectableItems"
        page = http.get(path, params={"api-version": "2025-08-01", "$filter": "state eq 'Unprotected'",
                                      "$take": "2"}).json()
        assert parse_qs(urlsplit(page["nextLink"]).query)["$filter"] == ["state eq 'Unprotected'"]

    def test_paths_match_whatever_the_casing(self, http: TestClient, world: World):
        path = vault_path(world).replace("/subscriptions/", "/Subscriptions/").replace("resourceGroups", "resourcegroups")
        response = http.get(f"{path.upper().replace('SUBSCRIPTIONS', 'Subscriptions')}/REPLICATIONFABRICS?{ASR}")
        assert response.status_code == 200 and len(response.json()["value"]) == 2

    def test_the_resource_provider_is_registered(self, http: TestClient, world: World):
        body = http.get(f"/subscriptions/{world.estate.subscription_id}/providers/Microsoft.RecoveryServices"
                        f"?api-version=2025-04-01").json()
        assert (body["namespace"], body["registrationState"]) == ("Microsoft.RecoveryServices", "Registered")


class TestErrors:
    @pytest.mark.parametrize(("query", "status", "code"), [
        ("", 400, "MissingApiVersionParameter"),
        ("?api-version=2019-01-01", 400, "NoRegisteredProviderFound"),
        (f"?api-version={LRO_API_VERSION}", 200, None),
        ("?api-version=2025-08-01", 200, None),
    ])
    def test_api_versions(self, http: TestClient, world: World, query, status, code):
        response = http.get(f"{vault_path(world)}/replicationFabrics{query}")
        assert response.status_code == status
        if code:
            assert response.json()["error"]["code"] == code

    def test_the_vault_api_version_is_checked_for_vaults(self, http: TestClient, world: World):
        assert http.get(f"{vault_path(world)}?{VAULTS}").status_code == 200
        assert http.get(f"{vault_path(world)}?{ASR}").json()["error"]["code"] == "NoRegisteredProviderFound"

    @pytest.mark.parametrize(("path", "code"), [
        ("/replicationJobs/6a1f1f52-0000-4000-8000-000000000000", "ResourceNotFound"),
        ("/replicationPolicies/nothing", "ResourceNotFound"),
        ("/replicationFabrics/0000/replicationProtectionContainers", "ResourceNotFound"),
    ])
    def test_unknown_resources_are_404_envelopes_without_retry_after(self, http: TestClient, world: World, path, code):
        response = http.get(f"{vault_path(world)}{path}?{ASR}")
        assert response.status_code == 404 and response.json()["error"]["code"] == code
        assert "retry-after" not in response.headers and response.headers["content-type"] == "application/json"

    def test_unknown_scopes(self, http: TestClient, world: World):
        other_rg = vault_path(world).replace("rg-dr-weu", "rg-nowhere")
        assert http.get(f"{other_rg}?{VAULTS}").json()["error"]["code"] == "ResourceGroupNotFound"
        other_sub = vault_path(world).replace(world.estate.subscription_id, "00000000-0000-0000-0000-000000000001")
        assert http.get(f"{other_sub}?{VAULTS}").json()["error"]["code"] == "SubscriptionNotFound"
        assert http.get(f"{vault_path(world)}/replicationStuff?{ASR}").status_code == 404

    def test_a_body_that_is_not_json_is_refused(self, http: TestClient, world: World):
        response = http.put(f"{vault_path(world)}/replicationPolicies/x?{ASR}", content=b"{nope",
                            headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "InvalidRequestContent"


class TestFilterGrammar:
    def test_terms_joined_by_and_with_case_insensitive_fields(self):
        assert parse_filter("StartTime eq '2026-11-25T08:00:00Z' and jobStatus eq 'Failed'") == {
            "starttime": "2026-11-25T08:00:00Z", "jobstatus": "Failed"}

    def test_quotes_are_unescaped_and_unknown_syntax_ignored(self):
        assert parse_filter("RecoveryPlanName eq 'O''Brien plan' and x gt 3") == {"recoveryplanname": "O'Brien plan"}
        assert parse_filter(None) == {} and parse_filter("garbage") == {}
