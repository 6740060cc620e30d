"""Lab admin controls: the time scale of a running lab, and one VM's stalled replication.

Most tests drive the running lab (``POST /_lab/clock``, ``POST /_lab/replication/{vm}``)
and read the result through the real SDK; the last ones check the state model in process
on a manual clock (persistence, lazy health, no time going back on a scale change).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from azure.mgmt.recoveryservicessiterecovery import models

from asr_lab.arm import views
from asr_lab.arm.models import ArmBackend
from asr_lab.arm.protection import CRITICAL_LAG_SECONDS, ReplicationControlError
from tests.labflows import (POLICY_INPUT, Runbook, asr_client, create_vault, job_name_from, register_primary_vmm,
                            vault_client)
from tests.lab.test_arm_world import BASE_URL, World

pytestmark = pytest.mark.lab

VM = "APP-ERP-01"


def admin_post(lab, path: str, body) -> requests.Response:
    """A raw admin call, to see the status and message the lab answers with."""
    return requests.post(f"{lab['admin_url']}{path}", json=body, timeout=30, verify=lab["ca_cert"],
                         headers={"Authorization": f"Bearer {lab['admin_token']}"})


def start_policy(lab, vault, name: str) -> tuple[str, str]:
    """Create a policy without polling; return the ASR job name and the 202's Retry-After."""
    responses: list = []
    asr_client(lab).replication_policies.begin_create(
        vault.resource_group, vault.name, name, {"properties": {"providerSpecificInput": POLICY_INPUT}},
        polling=False, raw_response_hook=lambda r: responses.append(r.http_response))
    headers = responses[-1].headers
    return job_name_from(headers), headers["Retry-After"]


def job_state(lab, vault, job: str) -> str:
    return asr_client(lab).replication_jobs.get(vault.resource_group, vault.name, job).properties.state


def endpoints_scale(lab_process) -> float:
    _, state_dir, _ = lab_process
    return json.loads((state_dir / "endpoints.json").read_text())["time_scale"]


class TestTimeScale:
    def test_a_new_scale_applies_to_jobs_started_afterwards(self, lab, lab_process):
        assert lab.time_scale() == 0
        vault = create_vault(lab)
        register_primary_vmm(lab, vault)
        job, retry_after = start_policy(lab, vault, "policy-at-zero")
        assert (job_state(lab, vault, job), retry_after) == ("Succeeded", "0")

        assert lab.set_time_scale(1) == 1.0
        assert lab.time_scale() == 1.0 and lab["time_scale"] == 1.0
        assert endpoints_scale(lab_process) == 1.0
        job, retry_after = start_policy(lab, vault, "policy-at-one")
        assert (job_state(lab, vault, job), retry_after) == ("InProgress", "30")  # about 8 s of tasks

    def test_reset_restores_the_scale_the_lab_was_started_with(self, lab, lab_process):
        lab.set_time_scale(2.5)
        assert endpoints_scale(lab_process) == 2.5
        lab.reset()
        assert lab.time_scale() == 0 and lab["time_scale"] == 0
        assert endpoints_scale(lab_process) == 0
        vault = create_vault(lab)
        register_primary_vmm(lab, vault)
        job, retry_after = start_policy(lab, vault, "policy-after-reset")
        assert (job_state(lab, vault, job), retry_after) == ("Succeeded", "0")

    @pytest.mark.parametrize(("body", "message"), [
        ({"time_scale": -1}, "time_scale must be >= 0, got -1"),
        ({"time_scale": "fast"}, "time_scale must be a number, got 'fast' (str)"),
        ({"time_scale": True}, "time_scale must be a number, got True (bool)"),
        ({"time_scale": None}, "time_scale must be a number, got None"),
        ({}, "missing field 'time_scale'"),
        ({"time_scale": 1, "speed": 2}, "unknown field(s) ['speed']"),
        ([1], "request body must be a JSON object"),
    ])
    def test_bad_input_is_refused_with_a_message_naming_the_problem(self, lab, body, message):
        response = admin_post(lab, "/clock", body)
        assert response.status_code == 400
        assert message in response.json()["error"]
        assert lab.time_scale() == 0

    def test_a_non_finite_scale_is_refused(self, lab):
        response = requests.post(f"{lab['admin_url']}/clock", data='{"time_scale": Infinity}', timeout=30,
                                 verify=lab["ca_cert"], headers={"Authorization": f"Bearer {lab['admin_token']}"})
        assert response.status_code == 400 and "finite" in response.json()["error"]

    def test_the_clock_needs_the_admin_token(self, lab):
        response = requests.get(f"{lab['admin_url']}/clock", timeout=30, verify=lab["ca_cert"])
        assert response.status_code == 401


@pytest.fixture
def runbook(lab) -> Runbook:
    """A configured vault with APP-ERP-01 protected (scale 0: replication runs at once)."""
    book = Runbook(lab, asr_client(lab), vault_client(lab)).configured()
    book.enable(VM)[0].result()
    return book


def read_item(book: Runbook, vm: str = VM) -> models.ReplicationProtectedItemProperties:
    return book.asr.replication_protected_items.get(book.rg, book.vault_name, *book.item_args(vm)).properties


class TestStalledReplication:
    def test_a_paused_vm_shows_a_frozen_last_replicated_time_and_critical_health(self, lab, runbook):
        assert read_item(runbook).replication_health == "Normal"
        before = datetime.now(timezone.utc)
        answer = lab.set_replication(VM.lower(), paused=True, lag_seconds=7200)
        assert (answer["vm_name"], answer["paused"], answer["lag_seconds"]) == (VM, True, 7200)
        [status] = answer["protected_items"]
        assert (status["vault"], status["paused"], status["replication_health"]) == (
            runbook.vault_name, True, "Critical")

        props = read_item(runbook)
        frozen = props.provider_specific_details.last_replicated_time
        assert before - timedelta(seconds=7202) <= frozen <= datetime.now(timezone.utc) - timedelta(seconds=7199)
        assert props.replication_health == "Critical"
        assert props.protection_state == "Protected"  # a stalled VM is still protected
        [error] = props.health_errors
        assert isinstance(error, models.HealthError)
        assert (error.error_code, error.error_level, error.error_source, error.error_category) == (
            "70004", "Error", "VmmToVmm", "Replication")
        assert VM in error.error_message and error.possible_causes
        assert "Resume-VMReplication" in error.recommended_action
        assert before - timedelta(seconds=1) <= error.creation_time_utc <= datetime.now(timezone.utc)
        assert error.customer_resolvability == "Allowed"

        time.sleep(1.1)  # at scale 0 a replicating VM's lastReplicatedTime is "now"; this one stays put
        assert read_item(runbook).provider_specific_details.last_replicated_time == frozen
        paused = lab.state()["replicationPaused"]
        assert [(p["vm"], p["replicationHealth"]) for p in paused] == [(VM, "Critical")]

    def test_a_short_lag_is_a_warning_and_resuming_restores_normal_replication(self, lab, runbook):
        lab.set_replication(VM, paused=True, lag_seconds=600)
        props = read_item(runbook)
        assert props.replication_health == "Warning"
        assert [e.error_level for e in props.health_errors] == ["Warning"]
        assert datetime.now(timezone.utc) - props.provider_specific_details.last_replicated_time >= timedelta(
            seconds=599)

        resumed_at = datetime.now(timezone.utc).replace(microsecond=0)
        answer = lab.set_replication(VM, paused=False)
        assert answer["paused"] is False and answer["protected_items"][0]["replication_health"] == "Normal"
        props = read_item(runbook)
        assert (props.replication_health, props.health_errors) == ("Normal", [])
        assert props.provider_specific_details.last_replicated_time >= resumed_at
        time.sleep(1.1)
        assert read_item(runbook).provider_specific_details.last_replicated_time > \
            props.provider_specific_details.last_replicated_time  # replicating again
        assert lab.state()["replicationPaused"] == []

    def test_a_drill_of_a_paused_vm_uses_the_stale_recovery_point(self, lab, runbook):
        lab.set_replication(VM, paused=True, lag_seconds=3600)
        frozen = read_item(runbook).provider_specific_details.last_replicated_time
        poller, job_name = runbook.begin(runbook.asr.replication_protected_items.begin_test_failover,
                                         *runbook.item_args(VM), runbook.test_failover_input())
        poller.result()
        [detail] = runbook.job(job_name).properties.custom_details.protected_item_details
        assert abs(detail.recovery_point_time - frozen) < timedelta(seconds=1)  # lastReplicatedTime is whole seconds

    def test_reset_clears_a_pause(self, lab, runbook):
        lab.set_replication(VM, paused=True, lag_seconds=60)
        lab.reset()
        assert lab.state()["replicationPaused"] == []

    def test_unknown_and_unprotected_vms_are_404s_naming_them(self, lab, runbook):
        response = admin_post(lab, "/replication/NO-SUCH-VM", {"paused": True})
        assert response.status_code == 404
        assert response.json()["error"] == "no VM named 'NO-SUCH-VM' in the estate"
        response = admin_post(lab, "/replication/SQL-PRD-01", {"paused": True})
        assert response.status_code == 404
        assert "VM 'SQL-PRD-01' is not protected in any vault" in response.json()["error"]
        with pytest.raises(RuntimeError, match="404"):
            lab.set_replication("SQL-PRD-01", paused=False)

    @pytest.mark.parametrize(("body", "message"), [
        ({}, "missing field 'paused'"),
        ({"paused": "yes"}, "paused must be true or false, got 'yes' (str)"),
        ({"paused": True, "lag_seconds": -5}, "lag_seconds must be >= 0, got -5"),
        ({"paused": True, "lag_seconds": "2h"}, "lag_seconds must be a number"),
        ({"paused": True, "lag_seconds": 10 ** 9}, "lag_seconds must be at most 31536000"),
        ({"paused": False, "lag_seconds": 60}, "lag_seconds applies only when pausing"),
        ({"paused": True, "lag": 60}, "unknown field(s) ['lag']"),
    ])
    def test_bad_input_is_refused_with_a_message_naming_the_problem(self, lab, body, message):
        response = admin_post(lab, f"/replication/{VM}", body)
        assert response.status_code == 400
        assert message in response.json()["error"]


# -- in process, on a manual clock ---------------------------------------------------------------

def wire(world: World, vm: str = VM) -> dict:
    return views.protected_item_json(world.backend, world.vault, world.item(vm), world.clock.now())["properties"]


def restarted(world: World) -> World:
    """The world as a restarted lab sees it: the state through JSON and back."""
    data = json.loads(json.dumps(world.backend.to_dict()))
    world.backend = ArmBackend.from_dict(data, world.estate, world.clock, BASE_URL)
    world.vault = next(iter(world.backend.state.vaults.values()))
    return world


class TestStalledReplicationState:
    def test_a_pause_survives_a_restart_and_turns_critical_as_the_lag_grows(self):
        world = World().configured()
        world.protected(VM)
        world.advance(1000)
        world.backend.set_replication(VM, True, lag_seconds=CRITICAL_LAG_SECONDS - 600)
        frozen = wire(world)["providerSpecificDetails"]["lastReplicatedTime"]
        assert wire(world)["replicationHealth"] == "Warning"

        world = restarted(world)
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] == frozen
        assert (wire(world)["replicationHealth"], len(wire(world)["healthErrors"])) == ("Warning", 1)
        world.advance(600)
        assert wire(world)["replicationHealth"] == "Critical"
        assert wire(world)["healthErrors"][0]["errorLevel"] == "Error"
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] == frozen

        world.backend.set_replication(VM, False)
        resumed = world.clock.now()
        world = restarted(world)
        assert (wire(world)["replicationHealth"], wire(world)["healthErrors"]) == ("Normal", [])
        world.advance(301)  # one policy cycle (300 s at scale 1) after the resume
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] == \
            (resumed + timedelta(seconds=300)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def test_a_failover_of_a_paused_vm_keeps_the_frozen_time(self):
        world = World().configured()
        world.protected(VM)
        world.backend.set_replication(VM, True, lag_seconds=900)
        frozen = wire(world)["providerSpecificDetails"]["lastReplicatedTime"]
        world.backend.planned_failover(world.vault, *world.item_args(VM),
                                       {"properties": {"failoverDirection": "PrimaryToRecovery"}})
        world.finish()
        assert wire(world)["activeLocation"] == "Recovery"
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] == frozen

    def test_only_running_replication_can_be_paused(self):
        world = World().configured()
        world.enable(VM)  # initial replication has not finished
        with pytest.raises(ReplicationControlError) as refused:
            world.backend.set_replication(VM, True)
        assert refused.value.status == 409 and "Enabling protection" in refused.value.message
        assert world.backend.set_replication(VM, False)[0]["paused"] is False  # resuming is harmless


class TestScaleChangeState:
    def test_last_replicated_time_and_heartbeat_never_go_back_when_the_scale_grows(self):
        world = World(scale=0).configured()
        world.protected(VM)
        world.advance(1000)  # at scale 0 replication and heartbeats happen "now"
        now = world.clock.now()
        provider = lambda: views.provider_json(world.backend, world.vault, world.backend.get_fabric(
            world.vault, world.primary), world.clock.now())["properties"]["lastHeartBeat"]
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
        heartbeat = provider()

        world.backend.set_time_scale(1)
        assert world.clock.scale == 1.0
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert provider() == heartbeat
        world.advance(301)
        assert wire(world)["providerSpecificDetails"]["lastReplicatedTime"] == \
            (now + timedelta(seconds=300)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def test_running_tasks_keep_their_due_time_and_later_tasks_take_the_new_scale(self):
        world = World(scale=1).configured()
        job = world.create_policy("Silver-15min")
        due = job.due
        world.backend.set_time_scale(0)
        assert job.due == due and job.state == "InProgress"
        world.advance((due - world.clock.now()).total_seconds())
        assert job.state == "Succeeded"  # the remaining tasks took no time

    def test_a_bad_scale_is_refused_and_changes_nothing(self):
        world = World(scale=1)
        with pytest.raises(ValueError, match="must be >= 0"):
            world.backend.set_time_scale(-0.5)
        assert world.clock.scale == 1.0


class TestSnapshots:
    """A suite deploys and protects once, keeps the lab's state, and starts each test from that copy."""

    def test_a_restore_brings_back_the_state_kept_and_forgets_what_came_after(self, lab, runbook):
        lab.snapshot("protected-app-erp")
        lab.add_job_fault("TestFailover", "Failed")
        runbook.enable("SQL-PRD-01")[0].result()
        lab.set_replication(VM, paused=True, lag_seconds=60)
        assert lab.restore("protected-app-erp") is True
        state = lab.state()
        assert state["replicationPaused"] == [] and lab.job_faults() == [] and lab.requests() == []
        assert read_item(runbook).protection_state == "Protected"  # kept: APP-ERP-01 protected, replicating
        assert read_item(runbook).replication_health == "Normal"
        with pytest.raises(Exception, match="NotFound|not found|ResourceNotFound"):
            read_item(runbook, "SQL-PRD-01")  # enabled after the snapshot: gone
        assert lab.restore("protected-app-erp") is True  # a snapshot serves any number of restores

    def test_restoring_an_unknown_snapshot_only_resets(self, lab, runbook):
        assert lab.restore("never-kept") is False
        assert lab.state()["counts"]["vaults"] == 0
        response = admin_post(lab, "/snapshots", {"name": ""})
        assert (response.status_code, response.json()["error"]) == (400, "name is required (text)")
