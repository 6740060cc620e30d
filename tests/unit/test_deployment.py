"""The deployment's rules (site_recovery.deployment), its step records and the fabric sensor, without Azure."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from site_recovery import deployment
from site_recovery.deployment import (
    FabricView,
    VaultView,
    both_fabrics,
    fabric_status,
    mapping_name,
    network_mapping_conflict,
    pairing_conflict,
    read_vault,
    running_job,
    selected,
    site_side,
    sort_prerequisites,
    unknown_name,
    vault_provisioned,
    vault_region_problem,
)
from site_recovery.vocabulary import AsrJobState, DeployAction, Scenario

PRIMARY, RECOVERY = "vmm-ams-01.corp.meridianpack.nl", "vmm-rtm-01.corp.meridianpack.nl"


@pytest.fixture(scope="module")
def site():
    from site_recovery.site import load_sites

    return load_sites()[0]["lab"]


def model(name: str, friendly: str | None = None, **properties):
    """An SDK-like resource: ``name``, ``id`` and ``properties.friendly_name`` plus ``properties``."""
    return SimpleNamespace(name=name, id=f"/{name}", properties=SimpleNamespace(friendly_name=friendly, **properties))


def test_selected_means_every_step_when_the_run_names_none():
    assert selected({}, "vault") and selected({"params": {"steps": []}}, "vault")
    assert selected({"params": {"steps": ["vault"]}}, "vault")
    assert not selected({"params": {"steps": ["vault"]}}, "network_mapping")


def test_mapping_names_are_arm_safe():
    assert mapping_name("Prod-App", "DR-App") == "prod-app-to-dr-app"
    assert mapping_name("Gold Prod (AMS)", "Gold_DR") == "gold-prod-ams--to-gold-dr"  # names already in vaults
    assert len(mapping_name("x" * 50, "y" * 50)) == 64


def test_site_side(site):
    assert site_side(site, "primary") is site.primary and site_side(site, "recovery") is site.recovery
    with pytest.raises(ValueError, match="side must be one of"):
        site_side(site, "dr")


def test_fabric_status_and_both_fabrics(site):
    view = VaultView(exists=True, fabrics={PRIMARY: FabricView("f1", PRIMARY, connected=True),
                                           RECOVERY: FabricView("f2", RECOVERY, connected=False)})

    assert fabric_status(view, site, site.primary.vmm) == (True, f"fabric {PRIMARY} (f1) has a connected provider")
    assert fabric_status(view, site, site.recovery.vmm)[0] is False
    assert "shows no fabric" in fabric_status(VaultView(exists=False), site, site.primary.vmm)[1]
    assert both_fabrics(site, view)[2] is None
    _, _, problem = both_fabrics(site, VaultView(exists=True, fabrics={PRIMARY: view.fabrics[PRIMARY]}))
    assert problem == f"Vault {site.azure.vault_name} shows no fabric for {RECOVERY}: run step 6 " \
                      "(source_and_target) first."


def test_unknown_name_lists_what_the_vault_knows():
    assert unknown_name({"prod-app": 1}, "Prod-App", "VM network", PRIMARY) is None
    assert unknown_name({"prod-app": 1, "prod-data": 2}, "Prod-Web", "VM network", PRIMARY) == (
        f"VM network 'Prod-Web' is not known to the vault on {PRIMARY}; it knows: prod-app, prod-data.")


def test_an_existing_mapping_stays_only_when_it_points_where_the_site_file_says():
    target = model("dr-app")
    same = model("m", recovery_network_id="/DR-APP", recovery_network_friendly_name="DR-App")
    other = model("m", recovery_network_id="/dr-web", recovery_network_friendly_name="DR-Web")

    assert network_mapping_conflict(same, target, "Prod-App", "DR-App") is None
    assert network_mapping_conflict(other, target, "Prod-App", "DR-App").startswith(
        "Prod-App is already mapped to DR-Web, not DR-App")


def test_an_existing_pairing_stays_only_with_the_same_target_and_policy():
    target, policy = model("gold-dr"), model("policy1")

    def pairing(target_id, policy_id):
        return model("p", target_protection_container_id=target_id, policy_id=policy_id,
                     target_protection_container_friendly_name="Silver-DR", policy_friendly_name="other")

    assert pairing_conflict(pairing("/GOLD-DR", "/policy1"), target, policy, "Gold-Prod") is None
    assert "already paired with Silver-DR" in pairing_conflict(pairing("/silver-dr", "/policy1"), target, policy,
                                                               "Gold-Prod")
    assert pairing_conflict(pairing("/gold-dr", "/policy2"), target, policy, "Gold-Prod") is not None


def test_vault_region_and_provisioning(site):
    def vault(location, state):
        return SimpleNamespace(location=location, properties=SimpleNamespace(provisioning_state=state))

    assert vault_region_problem(site, vault("West Europe", None)) is None
    assert "a vault cannot move" in vault_region_problem(site, vault("northeurope", None))
    assert vault_provisioned(vault("westeurope", None)) and vault_provisioned(vault("westeurope", "Succeeded"))
    assert not vault_provisioned(vault("westeurope", "Creating"))


class FakeHook:
    """The hook methods the readers call, answering from lists (no Azure)."""

    def __init__(self, vault=True, jobs=()):
        self.vault = SimpleNamespace(location="westeurope", properties=SimpleNamespace(provisioning_state="Succeeded"))
        self.has_vault, self.jobs = vault, list(jobs)
        connected = SimpleNamespace(properties=SimpleNamespace(connection_status="Connected"))
        self.fabrics = {"f1": (model("f1", PRIMARY), [connected]), "f2": (model("f2", None), [])}

    def get_vault_or_none(self, rg, vault):
        return self.vault if self.has_vault else None

    def list_fabrics(self, rg, vault):
        return [fabric for fabric, _ in self.fabrics.values()]

    def list_recovery_services_providers(self, rg, vault, fabric):
        return self.fabrics[fabric][1]

    def list_protection_containers(self, rg, vault, fabric):
        return [model(f"{fabric}-c", "Gold-Prod")]

    def list_vm_networks(self, rg, vault, fabric):
        return [model(f"{fabric}-n", "Prod-App")]

    def get_policy_or_none(self, rg, vault, policy):
        return None

    def list_jobs(self, rg, vault):
        return self.jobs


def test_read_vault_shapes_what_the_hook_returns(site):
    view = read_vault(FakeHook(), site)

    assert view.exists and view.location == "westeurope" and view.policy is None
    assert sorted(view.fabrics) == ["f2", PRIMARY]  # a fabric without a friendly name is known by its name
    primary = view.fabric_for(site.primary.vmm)
    assert primary.connected and not view.fabrics["f2"].connected
    assert primary.containers["gold-prod"].name == "f1-c" and primary.networks["prod-app"].name == "f1-n"
    assert read_vault(FakeHook(), site, details=False).fabric_for(site.primary.vmm).containers == {}
    assert read_vault(FakeHook(vault=False), site) == VaultView(exists=False)


def job(name, scenario, state, target=None, affected=None):
    details = SimpleNamespace(affected_object_details=affected) if affected is not None else None
    return SimpleNamespace(name=name, properties=SimpleNamespace(
        scenario_name=scenario, state=state, target_object_name=target, custom_details=details))


def test_running_job_finds_only_a_running_job_of_the_scenario_on_the_target(site):
    hook = FakeHook(jobs=[
        job("done", Scenario.MAP_NETWORKS, AsrJobState.SUCCEEDED, target="Prod-App"),
        job("other", Scenario.PAIR_CLOUDS, AsrJobState.IN_PROGRESS, target="Prod-App"),
        job("mapping", Scenario.MAP_NETWORKS, AsrJobState.NOT_STARTED, target="prod-app"),
        job("pairing", Scenario.PAIR_CLOUDS, AsrJobState.IN_PROGRESS, affected={"primaryCloudName": "Gold-Prod"}),
        SimpleNamespace(name="no-properties", properties=None),
    ])

    assert running_job(hook, site, Scenario.MAP_NETWORKS, target_name="Prod-App") == "mapping"
    assert running_job(hook, site, Scenario.MAP_NETWORKS, target_name="Prod-Data") is None
    assert running_job(hook, site, Scenario.PAIR_CLOUDS, affected=("PrimaryCloudName", "gold-prod")) == "pairing"
    assert running_job(hook, site, Scenario.PAIR_CLOUDS, affected=("primaryCloudName", "Silver-Prod")) is None


@pytest.mark.parametrize(
    ("side", "step_4_runs", "deferred", "later", "blocking"),
    [
        ("recovery", True, ["ReplicationPort"], [], ["VmmVersion"]),
        ("recovery", False, [], [], ["ReplicationPort", "VmmVersion"]),
        ("primary", True, [], ["ReplicationPort"], ["VmmVersion"]),
    ],
)
def test_sort_prerequisites(side, step_4_runs, deferred, later, blocking):
    from site_recovery.scripts import PrerequisiteCheck, PrerequisiteReport

    report = PrerequisiteReport(server="vmm", passed=False, checks=[
        PrerequisiteCheck(name="ReplicationPort", passed=False, reason="TCP 8083 closed"),
        PrerequisiteCheck(name="VmmVersion", passed=False, reason="too old"),
        PrerequisiteCheck(name="Clouds", passed=True, reason=""),
    ])

    got = sort_prerequisites(report, side, step_4_runs)

    assert [[c.name for c in group] for group in got] == [deferred, later, blocking]


# ---------------------------------------------------------------------------------- step records
def test_record_is_a_step_record_and_refuses_an_unknown_action():
    from site_recovery.records import StepRecord
    from site_recovery.tasks.common import record

    made = record("vault", "rsv-dr-weu-01", "created", "westeurope", "job-1")

    assert made == StepRecord(step="vault", item="rsv-dr-weu-01", action=DeployAction.CREATED,
                              detail="westeurope", job_name="job-1")
    assert made.to_json()["action"] == "created"
    with pytest.raises(ValueError):
        record("vault", "rsv-dr-weu-01", "deleted")


def test_summary_text_and_the_records_it_collects():
    from site_recovery.tasks.common import record, summarize
    from site_recovery.tasks.deploy import _flatten

    plan = record("review_architecture", "plan", DeployAction.SKIPPED, "2 change(s) planned")
    vault = record("vault", "rsv", DeployAction.IN_PLACE, "westeurope, provisioned")
    mapping = record("network_mapping", "Prod-App -> DR-App", DeployAction.CREATED, "mapping started", "job-1")
    xcoms = [[plan], {"records": [vault], "deferred": []}, mapping, [[mapping.model_copy(update={"job_name": None})]],
             None, vault.to_json()]

    records = _flatten(xcoms)

    assert [r.step for r in records] == ["review_architecture", "vault", "network_mapping", "network_mapping",
                                         "vault"]
    text = summarize(records, {"job-1": "https://portal/job-1"})
    assert text.splitlines()[:3] == [
        "2 change(s) made:",
        "  - [network_mapping] Prod-App -> DR-App: created (mapping started)",
        "      job job-1: https://portal/job-1",
    ]
    assert "Already in place:\n  - [vault] rsv: westeurope, provisioned" in text
    assert "Skipped:\n  - [review_architecture] plan: 2 change(s) planned" in text
    assert summarize([vault], {}).startswith("No changes: everything the site file describes was already in place.")


# ---------------------------------------------------------------------------------- fabric sensor
def test_fabric_sensor_is_an_ordinary_sensor_that_gives_its_worker_back():
    from airflow.sdk import BaseSensorOperator

    from site_recovery.sensors.deploy import FabricConnectedSensor

    sensor = FabricConnectedSensor(task_id="wait", site_name="lab", side="primary", soft_fail=True,
                                   exponential_backoff=True)

    assert sensor.mode == "reschedule"
    assert (sensor.soft_fail, sensor.exponential_backoff, sensor.timeout) == (True, True, 1800)
    assert type(sensor).execute is BaseSensorOperator.execute
    assert FabricConnectedSensor(task_id="w", site_name="lab", side="primary", mode="poke").mode == "poke"


def test_fabric_sensor_pokes_the_vault_through_the_readers(site, monkeypatch):
    from site_recovery import site as site_module
    from site_recovery.sensors.deploy import FabricConnectedSensor

    views = iter([VaultView(exists=False),
                  VaultView(exists=True, fabrics={PRIMARY: FabricView("f1", PRIMARY, connected=False)}),
                  VaultView(exists=True, fabrics={PRIMARY: FabricView("f1", PRIMARY, connected=True)})])
    monkeypatch.setattr(site_module, "load_site_named", lambda name: site)
    monkeypatch.setattr(deployment, "read_vault", lambda hook, site, details: next(views))
    sensor = FabricConnectedSensor(task_id="wait", site_name="lab", side="primary")

    assert [sensor.poke({"params": {}}) for _ in range(3)] == [False, False, True]


def test_fabric_sensor_skips_when_step_6_is_left_out(monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException
    from site_recovery import site as site_module
    from site_recovery.sensors.deploy import FabricConnectedSensor

    monkeypatch.setattr(site_module, "load_site_named", pytest.fail)
    sensor = FabricConnectedSensor(task_id="wait", site_name="lab", side="recovery")

    with pytest.raises(AirflowSkipException, match="source_and_target"):
        sensor.poke({"params": {"steps": ["vault"]}})
