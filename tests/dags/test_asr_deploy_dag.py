"""asr_deploy__lab end to end (`dag.test`, deferrable sensors run inline) against a fresh lab."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.dags.runs import states

pytestmark = pytest.mark.lab

READ_SCRIPTS = ("Get-VmmInventory", "Test-AsrPrerequisites")
MUTATING_SCRIPTS = ("Initialize-HyperVReplicaHost", "Install-AsrProvider", "Install-RecoveryServicesAgent")


def vault_state(lab):
    from tests.labflows import RESOURCE_GROUP, VAULT, asr_client

    asr = asr_client(lab)
    fabrics = list(asr.replication_fabrics.list(RESOURCE_GROUP, VAULT))
    providers = [p for f in fabrics for p in asr.replication_recovery_services_providers.list_by_replication_fabrics(
        RESOURCE_GROUP, VAULT, f.name)]
    return {
        "fabrics": sorted(f.properties.friendly_name for f in fabrics),
        "connected": sorted(p.properties.connection_status for p in providers),
        "policies": [p.name for p in asr.replication_policies.list(RESOURCE_GROUP, VAULT)],
        "pairings": sorted(m.name for m in asr.replication_protection_container_mappings.list(RESOURCE_GROUP, VAULT)),
        "network_mappings": sorted(m.name for m in asr.replication_network_mappings.list(RESOURCE_GROUP, VAULT)),
        "jobs": [j.properties.scenario_name for j in asr.replication_jobs.list(RESOURCE_GROUP, VAULT)],
    }


def test_full_run_then_second_run_changes_nothing(lab, deploy, output):
    first = deploy()
    log = output()
    assert first.state == "success", states(first)
    got = vault_state(lab)
    assert got["fabrics"] == ["vmm-ams-01.corp.meridianpack.nl", "vmm-rtm-01.corp.meridianpack.nl"]
    assert got["connected"] == ["Connected", "Connected"]
    assert got["policies"] == ["policy-ams-rtm-5min"]
    assert got["pairings"] == ["gold-prod-to-gold-dr", "silver-prod-to-silver-dr"]
    assert got["network_mappings"] == ["prod-app-to-dr-app", "prod-data-to-dr-data", "prod-dmz-to-dr-dmz"]
    assert "Deployment plan of site lab" in log and "change(s) made" in log
    assert "<RSVaultAsrCreds" not in log and lab["client_secret"] not in log

    since = lab.last_request_seq()
    invocations = len(lab.winrm_invocations())
    second = deploy()
    log = output()
    assert second.state == "success", states(second)
    assert lab.requests(since=since, mutating=True) == []
    first_calls = json.dumps(lab.winrm_invocations()[:invocations])
    second_calls = json.dumps(lab.winrm_invocations()[invocations:])
    assert all(name in first_calls for name in MUTATING_SCRIPTS[:2])  # the log names the scripts
    assert not any(name in second_calls for name in MUTATING_SCRIPTS), second_calls[:2000]
    assert all(name in second_calls for name in READ_SCRIPTS)
    assert "No changes: everything the site file describes was already in place." in log
    assert vault_state(lab)["jobs"] == got["jobs"]


def test_a_step_left_out_shows_skipped_and_the_steps_after_it_still_run(lab, deploy, output):
    assert deploy().state == "success"
    output()
    since = lab.last_request_seq()
    run = deploy(steps=["network_mapping", "replication_policy_and_pairing"])
    log = output()
    got = states(run)
    assert run.state == "success", got
    for left_out in ("check_azure", "vmm_primary", "check_networking", "plan_hosts", "ensure_vault",
                     "install_provider_primary", "wait_fabric_primary", "install_agents"):
        assert got[left_out] == "skipped", (left_out, got)
    assert got["ensure_prod_app"] == got["ensure_policy"] == got["pair_gold_prod"] == "success", got
    assert got["summary"] == got["deployment_complete"] == "success", got
    assert "[vault] rsv-dr-weu-01: step not selected" in log  # the summary still lists what was left out
    assert lab.requests(since=since, mutating=True) == []


def test_plan_only_changes_nothing(lab, deploy, output):
    run = deploy(plan_only=True)
    log = output()
    assert run.state == "success", states(run)
    assert "this run would" in log
    assert lab.requests(mutating=True) == []
    assert states(run)["ensure_vault"] == "skipped"


def test_provider_registration_failure_fails_step_6_with_drconfigurators_message(lab, deploy, output, monkeypatch):
    from site_recovery import vault_credentials

    real = vault_credentials.issue_vault_credentials
    stale = datetime.now(timezone.utc) - timedelta(days=6)  # the worker's clock is six days behind
    monkeypatch.setattr(vault_credentials, "issue_vault_credentials",
                        lambda *a, **k: real(*a, **{**k, "now": stale}))
    run = deploy()
    log = output()
    assert run.state == "failed"
    got = states(run)
    assert got["install_provider_primary"] == "failed"
    assert got["ensure_vault"] == "success" and got["ensure_policy"] != "success"
    assert "DRConfigurator.exe could not register" in log and "The vault credentials file has expired." in log


def test_failing_pairing_fails_step_8_then_a_rerun_completes_without_duplicates(lab, deploy, output):
    lab.add_job_fault("AssociateProtectionProfile", "Failed", target="policy-ams-rtm-5min", error={
        "code": "150241", "message": "Cloud pairing failed: the recovery cloud is not ready.",
        "possibleCauses": "The VMM service on the recovery server restarted.", "recommendedAction": "Retry."})
    run = deploy()
    log = output()
    assert run.state == "failed"
    failed = [t for t, s in states(run).items() if s == "failed"]
    assert failed and all(t.startswith("wait_pair_") for t in failed), states(run)
    assert "Cloud pairing failed: the recovery cloud is not ready." in log and "150241" in log

    lab.clear_faults()
    rerun = deploy()
    assert rerun.state == "success", states(rerun)
    got = vault_state(lab)
    assert got["pairings"] == ["gold-prod-to-gold-dr", "silver-prod-to-silver-dr"]
    for scenario in ("RegisterDra", "AddProtectionProfile"):
        assert got["jobs"].count(scenario) == (2 if scenario == "RegisterDra" else 1), got["jobs"]
    assert got["jobs"].count("AssociateProtectionProfile") == 3  # two first time (one failed), one retried


def test_a_burst_of_throttling_is_ridden_out(lab, deploy):
    lab.add_http_fault(429, path="/replicationFabrics", method="GET", count=4, retry_after=0)
    lab.add_http_fault(429, path="/replicationPolicies", method="PUT", count=2, retry_after=0)
    run = deploy()
    assert run.state == "success", states(run)
    assert [r["status"] for r in lab.requests(path="/replicationFabrics")].count(429) == 4
