"""The site file model and loader: the lab's file, every rule, the policy wire format, load_sites.

The estate is read with PyYAML straight from the lab's data file (not through the lab package),
so these tests stay unit tests and the product never imports the lab.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from site_recovery.site import (
    MAX_FILE_BYTES, ReplicationPolicy, Site, SiteFileError, default_sites_dir, load_site, load_sites,
)

REPO = Path(__file__).resolve().parents[2]
LAB_SITE = REPO / "include" / "sites" / "lab.yaml"
ESTATE = yaml.safe_load((REPO / "include" / "lab" / "asr_lab" / "data" / "estate.yaml").read_text())
LAB = yaml.safe_load(LAB_SITE.read_text())

#: The recorded read-back of the policy PS-REC/TestCreatePolicy created (asr-api-facts.md, step 5).
RECORDED_DETAILS = {
    "instanceType": "HyperVReplica2012R2", "replicationFrequencyInSeconds": 30, "recoveryPoints": 1,
    "applicationConsistentSnapshotFrequencyInHours": 0, "compression": "Disabled",
    "initialReplicationMethod": "OverNetwork", "offlineReplicationImportPath": "", "offlineReplicationExportPath": "",
    "replicationPort": 8083, "allowedAuthenticationType": 1, "replicaDeletionOption": "SecondaryVMOnRecoveryCloud",
}
#: The documented input body of step 5 (the lab site's policy is exactly this one).
DOCUMENTED_INPUT = {
    "instanceType": "HyperVReplica2012R2", "replicationFrequencyInSeconds": 300, "recoveryPoints": 24,
    "applicationConsistentSnapshotFrequencyInHours": 4, "compression": "Enable",
    "initialReplicationMethod": "OverNetwork", "onlineReplicationStartTime": "", "replicationPort": 8083,
    "allowedAuthenticationType": 1, "replicaDeletion": "Required",
}


def site_by_role(role: str) -> dict:
    return next(s for s in ESTATE["sites"] if s["role"] == role)


def field_names(model) -> set[str]:
    """Every field name of ``model`` and of the models nested in it."""
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for arg in [info.annotation, *get_args(info.annotation)]:
            for inner in [arg, *get_args(arg)]:
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    names |= field_names(inner)
    return names


def write(tmp_path: Path, data, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(SiteFileError) as caught:
        load_site(path)
    message = str(caught.value)
    assert all(line.startswith(f"{path}: ") for line in message.splitlines()), message
    return message


def policy(**changes) -> ReplicationPolicy:
    return ReplicationPolicy.model_validate({"name": "p", **changes})


# ------------------------------------------------------------------------------------ lab site
@pytest.fixture(scope="module")
def lab_site() -> Site:
    return load_site(LAB_SITE)


class TestLabSite:

    def test_azure_matches_the_estate(self, lab_site):
        azure = lab_site.azure
        assert azure.conn_id == "azure_asr_lab"
        assert azure.subscription_id == ESTATE["subscription_id"]
        assert azure.resource_group in ESTATE["resource_groups"]
        assert azure.region == ESTATE["location"]

    @pytest.mark.parametrize("role", ["primary", "recovery"])
    def test_servers_match_the_estate_and_the_connection_convention(self, lab_site, role):
        side, estate = getattr(lab_site, role), site_by_role(role)
        assert side.vmm.fqdn == estate["vmm"]["fqdn"]
        assert {h.fqdn for h in side.hyperv_hosts} == {h["fqdn"] for h in estate["hosts"]}
        for server in [side.vmm, *side.hyperv_hosts]:
            assert server.psrp_conn_id == "winrm_" + server.fqdn.split('.')[0].replace('-', '_')

    def test_clouds_pair_every_primary_cloud_with_a_recovery_cloud(self, lab_site):
        pairs = {(c.primary_cloud, c.recovery_cloud) for c in lab_site.clouds}
        assert pairs == {("Gold-Prod", "Gold-DR"), ("Silver-Prod", "Silver-DR")}
        assert {p for p, _ in pairs} == {c["name"] for c in site_by_role("primary")["clouds"]}
        assert {r for _, r in pairs} == {c["name"] for c in site_by_role("recovery")["clouds"]}

    def test_networks_map_production_to_recovery_and_drill_into_the_isolated_network(self, lab_site):
        primary = {n["name"] for n in site_by_role("primary")["networks"]}
        recovery = {n["name"]: n["purpose"] for n in site_by_role("recovery")["networks"]}
        mappings = lab_site.network_mappings
        assert {m.primary_network for m in mappings} == primary
        assert all(recovery[m.recovery_network] == "production" for m in mappings)
        assert recovery[lab_site.drill.test_network] == "drill"

    def test_scope_drill_and_policy(self, lab_site):
        vms = {vm["name"]: vm["cloud"] for vm in site_by_role("primary")["vms"]}
        in_scope = {name for name, cloud in vms.items() if lab_site.scope.covers(cloud, name)}
        assert in_scope == set(vms) - {"JUMP-01"}
        assert {p.vm for p in lab_site.drill.probes} <= set(vms)
        assert lab_site.name == "lab" and lab_site.dag_id("asr_deploy") == "asr_deploy__lab"
        assert lab_site.drill.schedule == "0 2 * * 6" and lab_site.drill.timezone == "Europe/Amsterdam"
        assert lab_site.replication_policy.to_provider_input() == DOCUMENTED_INPUT
        assert not lab_site.recovery_services_agent.install

    def test_the_example_shows_every_field(self, lab_site):
        """lab.yaml is the documentation by example: every field of the model appears in it (maybe commented)."""
        text = LAB_SITE.read_text()
        assert {name for name in field_names(Site) if not re.search(rf"\b{name}:", text)} == set()

    def test_the_default_folder_is_include_sites(self, lab_site):
        assert default_sites_dir() == LAB_SITE.parent
        sites, errors = load_sites()
        assert "lab" in sites and not errors

    def test_the_model_is_immutable(self, lab_site):
        with pytest.raises(ValidationError):
            lab_site.azure.vault_name = "other"


# ------------------------------------------------------------------------------------- rules
def mutate(*changes):
    """A copy of the lab file with ``(dotted.path, value)`` changes; value ``...`` deletes the key."""
    data = copy.deepcopy(LAB)
    for path, value in changes:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is ...:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return data


RULES = [
    ("60 s copies", [("replication_policy.copy_frequency_seconds", 60)],
     ["replication_policy.copy_frequency_seconds: 60 is not allowed; allowed: 30, 300, 900"]),
    ("2012 with 30 s", [("replication_policy.provider", "HyperVReplica2012"),
                        ("replication_policy.copy_frequency_seconds", 30)],
     ["replication_policy.copy_frequency_seconds: 30 is not allowed with HyperVReplica2012", "allowed: 300"]),
    ("2012 keeps at most 15 points", [("replication_policy.provider", "HyperVReplica2012")],
     ["replication_policy.recovery_points: 24 is out of range for HyperVReplica2012; allowed: 0 to 15"]),
    ("25 recovery points", [("replication_policy.recovery_points", 25)],
     ["replication_policy.recovery_points: 25 is out of range; allowed: 0 to 24"]),
    ("snapshots without points", [("replication_policy.recovery_points", 0)],
     ["replication_policy.app_consistent_snapshot_frequency_hours: 4 is more than recovery_points (0)",
      "allowed: 0 to 0"]),
    ("13 h snapshots", [("replication_policy.app_consistent_snapshot_frequency_hours", 13)],
     ["app_consistent_snapshot_frequency_hours: 13 is out of range; allowed: 0 to 12"]),
    ("port 0", [("replication_policy.replication_port", 0)],
     ["replication_port: 0 is out of range; allowed: 1 to 65535"]),
    ("auth", [("replication_policy.authentication", "ntlm")],
     ["replication_policy.authentication: 'ntlm' is not allowed; allowed: kerberos, certificate"]),
    ("compression spelled as on the wire", [("replication_policy.compression", "Enable")],
     ["replication_policy.compression: expected true or false, got 'Enable'"]),
    ("primary cloud paired twice",
     [("clouds", LAB["clouds"] + [{"primary_cloud": "gold-prod", "recovery_cloud": "X"}])],
     ["clouds[2].primary_cloud: 'gold-prod' is paired twice", "(first at clouds[0])"]),
    ("recovery cloud paired twice", [("clouds", LAB["clouds"] + [{"primary_cloud": "X", "recovery_cloud": "Gold-DR"}])],
     ["clouds[2].recovery_cloud: 'Gold-DR' is paired twice"]),
    ("no clouds", [("clouds", [])], ["clouds: needs at least 1 entry"]),
    ("network mapped twice", [("network_mappings", LAB["network_mappings"] + [
        {"primary_network": "Prod-App", "recovery_network": "DR-Data"}])],
     ["network_mappings[3].primary_network: 'Prod-App' is mapped twice (first at network_mappings[0])"]),
    ("mapping into the primary side", [("network_mappings.0.recovery_network", "Prod-Data")],
     ["network_mappings[0].recovery_network: 'Prod-Data' is a primary (production) network in network_mappings[1]"]),
    ("mapping into the drill network", [("network_mappings.2.recovery_network", "DR-Drill-Isolated")],
     ["network_mappings[2].recovery_network: 'DR-Drill-Isolated' is the drill's test network (drill.test_network)"]),
    ("drill network is a production target", [("drill.test_network", "dr-app")],
     ["network_mappings[0].recovery_network: 'DR-App' is the drill's test network"]),
    ("offline without paths", [("replication_policy.initial_replication.method", "offline")],
     ["replication_policy.initial_replication.offline_export_path: is required when method is offline",
      "replication_policy.initial_replication.offline_import_path: is required when method is offline"]),
    ("paths without offline", [("replication_policy.initial_replication.offline_import_path", "D:\\Import")],
     ["initial_replication.offline_import_path: is only used when method is offline"]),
    ("unquoted start time", [("replication_policy.initial_replication.start", 1320)],
     ["initial_replication.start: YAML read the unquoted time as the number 1320; write it in quotes"]),
    ("start at 25:00", [("replication_policy.initial_replication.start", "25:00")],
     ["initial_replication.start: '25:00' is not allowed; allowed: immediately, or a time of day HH:MM"]),
    ("unknown key at the top", [("vault", "rsv")],
     ["vault: unknown key; allowed keys here: name, description, azure, primary, recovery, clouds"]),
    ("unknown key nested", [("azure.vualt_name", "rsv")],
     ["azure.vualt_name: unknown key (did you mean vault_name?); allowed keys here: conn_id, subscription_id, "
      "resource_group, vault_name, region"]),
    ("unknown key in a list item", [("drill.probes.0", {"kind": "tcp", "port": 1, "host": "x"})],
     ["drill.probes[0].host: unknown key; allowed keys here: kind, port, path, vm"]),
    ("missing section", [("azure", ...)], ["azure: is required"]),
    ("bad time zone", [("drill.timezone", "Europe/Atlantis")],
     ["drill.timezone: 'Europe/Atlantis' is not a known time zone; use an IANA name such as Europe/Amsterdam"]),
    ("path as time zone", [("drill.timezone", "../../etc/passwd")],
     ["drill.timezone: '../../etc/passwd' is not a known"]),
    ("bad cron", [("drill.schedule", "61 2 * * *")],
     ["drill.schedule: '61 2 * * *' is not a cron schedule; write 5 fields"]),
    ("cron with 4 fields", [("drill.schedule", "0 2 * *")], ["drill.schedule: '0 2 * *' is not a cron schedule"]),
    ("airflow-only preset", [("drill.schedule", "@once")], ["drill.schedule: '@once' is not a cron schedule"]),
    ("bad duration", [("scope.initial_replication_timeout", "12 hours")],
     ["scope.initial_replication_timeout: '12 hours' is not a duration; write a duration like 90s, 15m, 12h, 2d",
      "ISO 8601 like PT15M"]),
    ("bare number as duration", [("drill.verify_timeout", 600)], ["drill.verify_timeout: 600 is not a duration"]),
    ("zero duration", [("drill.rto_target", "0s")], ["drill.rto_target: '0s' is out of range; allowed: 1s to 30d"]),
    ("RPO below the copy frequency", [("drill.rpo_target", "1m")],
     ["drill.rpo_target: 1m can never be met: the replication policy copies every 5m; allowed: at least 5m"]),
    ("scope of an unpaired cloud", [("scope.vms.0.cloud", "Bronze-Prod")],
     ["scope.vms[0].cloud: 'Bronze-Prod' is not a primary cloud in clouds; allowed: Gold-Prod, Silver-Prod"]),
    ("scope twice", [("scope.vms.1.cloud", "Gold-Prod")], ["scope.vms[1].cloud: 'Gold-Prod' has two scope entries"]),
    ("same VMM twice", [("recovery.vmm.fqdn", "VMM-AMS-01.corp.meridianpack.nl")],
     ["recovery.vmm.fqdn: vmm-ams-01.corp.meridianpack.nl is also the primary VMM server"]),
    ("host on both sides", [("recovery.hyperv_hosts.0.fqdn", "hv-ams-01.corp.meridianpack.nl")],
     ["recovery.hyperv_hosts[0].fqdn: hv-ams-01.corp.meridianpack.nl is already listed at primary.hyperv_hosts[0]"]),
    ("no recovery hosts", [("recovery.hyperv_hosts", [])], ["recovery.hyperv_hosts: needs at least 1 host"]),
    ("agent without installer", [("recovery_services_agent.install", True)],
     ["recovery_services_agent.installer_path: is required when install is true"]),
    ("short host name", [("primary.vmm.fqdn", "vmm-ams-01")],
     ["primary.vmm.fqdn: 'vmm-ams-01' is not allowed; expected a fully qualified host name"]),
    ("vault name", [("azure.vault_name", "1-vault")],
     ["azure.vault_name: '1-vault' is not allowed; expected 2-50 letters, digits and hyphens, starting with a letter"]),
    ("subscription", [("azure.subscription_id", "meridian")], ["azure.subscription_id: 'meridian' is not allowed"]),
    ("http installer", [("primary.vmm.provider_installer", "http://example.com/p.exe")],
     ["primary.vmm.provider_installer: 'http://example.com/p.exe' is not allowed"]),
    ("number as a cloud name", [("clouds.0.primary_cloud", 2024)],
     ["clouds[0].primary_cloud: expected text, got 2024 (put it in quotes)"]),
    ("unsafe site name", [("name", "Lab Site")], ["name: 'Lab Site' is not allowed; expected lower-case letters"]),
    ("probe path on tcp", [("drill.probes.0.path", "/")], ["drill.probes[0].path: is only used by http probes"]),
    ("webhook without connection", [("drill.notifier", {"kind": "webhook"})],
     ["drill.notifier.conn_id: is required when kind is webhook"]),
    ("notifier without class", [("drill.notifier", {"kind": "airflow_notifier", "conn_id": "x"})],
     ["drill.notifier.classpath: is required when kind is airflow_notifier",
      "drill.notifier.conn_id: is not used when kind is airflow_notifier"]),
    ("gate failure as a YAML boolean", [("drill.on_gate_failure", False)],
     ["drill.on_gate_failure: false is not allowed; allowed: skip, fail"]),
    # recovery plans: ASR's rules and the estate's, each at its plan, group and field
    ("plan of 8 groups", [("recovery_plans.1.groups", [{"group": n, "vms": [f"VM-{n}"]} for n in range(1, 9)])],
     ["recovery_plans[1].groups[7].group: 8 is out of range; allowed: 1 to 7"]),
    ("plan of 101 VMs", [("recovery_plans.1.groups.0.vms", [f"VM-{n:03}" for n in range(100)])],
     ["recovery_plans[1].groups: holds 102 VMs; ASR allows at most 100 per plan"]),
    ("group numbers with a gap", [("recovery_plans.0.groups.2.group", 4)],
     ["recovery_plans[0].groups[2].group: is 4 but this is group 3 in order: number the groups 1, 2, 3... "
      "without gaps"]),
    ("VM in two plans", [("recovery_plans.1.groups.0.vms", ["FS-PRD-01", "sql-prd-01"])],
     ["recovery_plans[1].groups[0].vms[1]: 'sql-prd-01' is already in plan order-portal "
      "(recovery_plans[0].groups[0].vms[0]); a VM belongs to at most one plan"]),
    ("VM twice in a plan", [("recovery_plans.0.groups.2.vms", ["WEB-PORTAL-01", "APP-ERP-01"])],
     ["recovery_plans[0].groups[2].vms[1]: 'APP-ERP-01' is already in this plan at groups[1].vms[0]"]),
    ("VM out of scope", [("scope.vms.0.include", ["SQL-*", "APP-*", "WEB-*", "FS-*"]),
                         ("recovery_plans.1.groups.1.vms", ["PRINT-01", "JUMP-01"])],
     ["recovery_plans[1].groups[1].vms[1]: 'JUMP-01' is not in the scope of any paired cloud"]),
    ("two plans with one name", [("recovery_plans.1.name", "Order-Portal")],
     ["recovery_plans[1].name: 'Order-Portal' names two plans (first at recovery_plans[0])"]),
    ("plan name with a space", [("recovery_plans.0.name", "order portal")],
     ["recovery_plans[0].name: 'order portal' is not allowed; expected 1-64 letters, digits and hyphens"]),
    ("script longer than ASR allows", [("recovery_plans.0.groups.0.post.1.timeout", "11m")],
     ["recovery_plans[0].groups[0].post[1].timeout: 11m is longer than ASR lets a recovery plan script run; "
      "allowed: at most 10m"]),
    ("script outside the library", [("recovery_plans.0.groups.0.post.1.path", "C:\\Scripts\\x.ps1")],
     ["recovery_plans[0].groups[0].post[1].path: 'C:\\Scripts\\x.ps1' is not allowed; expected a .ps1 path "
      "relative to the VMM library share"]),
    ("script without side", [("recovery_plans.0.groups.0.post.1.side", ...)],
     ["recovery_plans[0].groups[0].post[1].side: is required when kind is script"]),
    ("manual action with a path", [("recovery_plans.0.groups.1.pre.0.path", "\\x.ps1")],
     ["recovery_plans[0].groups[1].pre[0].path: is not used when kind is manual"]),
    ("manual action without instructions", [("recovery_plans.0.groups.1.pre.0.instructions", ...)],
     ["recovery_plans[0].groups[1].pre[0].instructions: is required when kind is manual"]),
    ("check of a VM not yet up", [("recovery_plans.0.groups.0.post.0.probe.vm", "WEB-PORTAL-01")],
     ["recovery_plans[0].groups[0].post[0].probe.vm: 'WEB-PORTAL-01' names no VM that is up at this point "
      "of the plan (groups 1 to 1)"]),
    ("check of several VMs", [("recovery_plans.0.groups.2.post.0", {"kind": "check", "name": "ERP answers",
                                                                    "probe": {"kind": "tcp", "port": 8080,
                                                                              "vm": "APP-ERP-*"}})],
     ["recovery_plans[0].groups[2].post[0].probe.vm: 'APP-ERP-*' matches 2 VMs of the plan; a check probes one "
      "VM: name it"]),
    ("action names twice", [("recovery_plans.0.groups.2.post.0.name", "Repoint ERP SQL alias")],
     ["recovery_plans[0].groups[2].post[0].name: 'Repoint ERP SQL alias' is already an action of this plan at "
      "groups[0].post[1]"]),
    ("unknown failover type", [("recovery_plans.0.groups.1.pre.0.failover_types", ["test", "drill"])],
     ["recovery_plans[0].groups[1].pre[0].failover_types[1]: 'drill' is not allowed; allowed: test, planned, "
      "unplanned"]),
    ("unattended as a boolean", [("recovery_plans.0.unattended", True)],
     ["recovery_plans[0].unattended: true is not allowed; allowed: auto_confirm, skip"]),
]


@pytest.mark.parametrize("changes, expected", [pytest.param(c, e, id=i) for i, c, e in RULES])
def test_a_rule_is_broken(tmp_path, changes, expected):
    message = problems_of(write(tmp_path, mutate(*changes)))
    for fragment in expected:
        assert fragment in message, message


def test_every_problem_is_listed_in_one_message(tmp_path):
    path = write(tmp_path, mutate(("replication_policy.copy_frequency_seconds", 60), ("drill.timezone", "Nowhere"),
                                  ("azure.region", "West Europe")))
    lines = problems_of(path).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "azure.region", "replication_policy.copy_frequency_seconds", "drill.timezone"]


@pytest.mark.parametrize("changes", [
    [("replication_policy.provider", "HyperVReplica2012"), ("replication_policy.recovery_points", 15)],
    [("replication_policy.initial_replication", {"method": "offline", "offline_export_path": "D:\\HVR-Export",
                                                 "offline_import_path": "\\\\fs-rtm-01\\hvr\\import"})],
    [("replication_policy.initial_replication.start", "2:30")],
    [("drill.schedule", None), ("drill.test_network", None), ("drill.probes", ...), ("drill.notifier", ...)],
    [("drill.schedule", "@weekly"), ("drill.timezone", "UTC")],
    [("drill.notifier", {"kind": "webhook", "conn_id": "http_dr_alerts"})],
    [("drill.notifier", {"kind": "airflow_notifier",
                         "classpath": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
                         "kwargs": {"to": "dr-team@meridianpack.nl", "smtp_conn_id": "smtp_default"}})],
    [("recovery_services_agent", {"install": True, "installer_path": "https://aka.ms/downloadmars"})],
    [("name", ...)],
    [("scope", ...), ("drill", ...), ("timeouts", ...), ("network_mappings", ...), ("recovery_services_agent", ...),
     ("recovery_plans", ...)],
    [("recovery_plans.0.groups.0.post.1.timeout", ...), ("recovery_plans.0.groups.1.pre.0.approvers", []),
     ("recovery_plans.0.groups.0.post.1.failover_types", ["test"])],
])
def test_valid_variations_load(tmp_path, changes):
    assert isinstance(load_site(write(tmp_path, mutate(*changes))), Site)


@pytest.mark.parametrize(("failover_types", "directions", "test_drill_meets_it"), [
    (["test", "planned", "unplanned"], ["primary_to_recovery"], True),
    (["planned", "unplanned"], ["primary_to_recovery", "recovery_to_primary"], False),
    (["test"], ["recovery_to_primary"], False),
])
def test_a_test_drill_meets_only_the_manual_actions_for_its_type_and_direction(tmp_path, failover_types, directions,
                                                                               test_drill_meets_it):
    """The drill's gate (skip or auto-confirm when unattended) and its required actions count only these."""
    site = load_site(write(tmp_path, mutate(("recovery_plans.0.groups.1.pre.0.failover_types", failover_types),
                                            ("recovery_plans.0.groups.1.pre.0.directions", directions))))
    portal = site.plan_named("order-portal")
    assert [a.name for a in portal.manual_actions("test", "primary_to_recovery")] == (
        ["Confirm licence server"] if test_drill_meets_it else [])
    expected = ["ERP database answers", *(["Confirm licence server"] if test_drill_meets_it else [])]
    assert [a.name for a in portal.pauses()] == expected
    assert [a.name for a in portal.manual_actions("planned", "primary_to_recovery")] == (
        ["Confirm licence server"] if "planned" in failover_types and "primary_to_recovery" in directions else [])


def test_defaults_a_dr_engineer_can_rely_on(tmp_path):
    site = load_site(write(tmp_path, mutate(("scope", ...), ("drill", ...), ("timeouts", ...), ("name", ...),
                                            ("recovery_plans", ...)),
                           name="ams-rtm.yaml"))
    assert site.name == "ams-rtm"
    assert site.scope.vms == [] and not site.scope.covers("Gold-Prod", "SQL-PRD-01")
    assert site.scope.max_concurrent_initial_replications == 4
    assert site.scope.initial_replication_timeout == timedelta(hours=12)
    assert site.drill.schedule is None and site.drill.test_network is None and site.drill.notifier is None
    assert site.drill.recovery_point_age_limit == site.drill.rpo_target == timedelta(hours=1)
    assert site.timeouts.asr_job == timedelta(hours=1)
    assert site.timeouts.watch_seconds == 5  # waits on jobs notice an end within seconds; their reads are shared
    assert policy().to_provider_input()["compression"] == "Enable"


@pytest.mark.parametrize(("timeouts", "expected"), [
    ({"poll_interval": "30s", "watch_interval": "5s"}, 5), ({"poll_interval": "1s", "watch_interval": "5s"}, 1),
    ({"poll_interval": "30s", "watch_interval": "20s"}, 20), ({"poll_interval": "2s", "watch_interval": ...}, 2),
])
def test_waits_on_jobs_look_every_watch_interval_or_poll_interval_if_shorter(tmp_path, timeouts, expected):
    site = load_site(write(tmp_path, mutate(*((f"timeouts.{k}", v) for k, v in timeouts.items()))))
    assert site.timeouts.watch_seconds == expected


def test_a_file_name_that_is_not_a_safe_name_needs_name(tmp_path):
    message = problems_of(write(tmp_path, mutate(("name", ...)), name="Ams RTM.yaml"))
    assert "name: is not set, and the file name gives 'ams rtm', which is not a safe name" in message


@pytest.mark.parametrize("text, expected", [
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("12h", timedelta(hours=12)),
    ("2d", timedelta(days=2)), ("1h30m", timedelta(minutes=90)), ("PT15M", timedelta(minutes=15)),
    ("P1DT2H", timedelta(hours=26)), (" 45m ", timedelta(minutes=45)), ("30d", timedelta(days=30)),
])
def test_durations(tmp_path, text, expected):
    assert load_site(write(tmp_path, mutate(("drill.verify_timeout", text)))).drill.verify_timeout == expected


@pytest.mark.parametrize("text", ["", "15", "15 m", "15M", "1.5h", "-5m", "PT", "P", "1w", "31d", "P1Y", "m15"])
def test_bad_durations(tmp_path, text):
    assert "drill.verify_timeout: " in problems_of(write(tmp_path, mutate(("drill.verify_timeout", text))))


@pytest.mark.parametrize("cron", ["0 2 * * 6", "*/15 * * * *", "0 22 * * MON-FRI", "0 0 1 */3 *", "@daily"])
def test_cron_schedules(tmp_path, cron):
    assert load_site(write(tmp_path, mutate(("drill.schedule", cron)))).drill.schedule == cron


def test_cron_without_croniter_checks_the_shape(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "croniter", None)  # import croniter -> ImportError
    assert load_site(write(tmp_path, mutate(("drill.schedule", "0 2 * * 6")))).drill.schedule == "0 2 * * 6"
    assert "drill.schedule" in problems_of(write(tmp_path, mutate(("drill.schedule", "0 2 * *"))))


# ----------------------------------------------------------------------------------- secrets
@pytest.mark.parametrize("changes, where", [
    ([("azure.client_secret", "s3cr3t-VALUE")], "azure.client_secret"),
    ([("primary.vmm.password", "s3cr3t-VALUE")], "primary.vmm.password"),
    ([("drill.notifier", {"kind": "airflow_notifier", "classpath": "a.B", "kwargs": {"api_key": "s3cr3t-VALUE"}})],
     "drill.notifier.kwargs.api_key"),
    ([("drill.notifier", {"kind": "airflow_notifier", "classpath": "a.B", "kwargs": {"routingKey": "s3cr3t-VALUE"}})],
     "drill.notifier.kwargs.routingKey"),
    ([("primary.vmm.provider_installer", "https://st.blob.core.windows.net/p.exe?sv=2024&sig=s3cr3t-VALUE")],
     "primary.vmm.provider_installer"),
    ([("recovery_services_agent", {"install": True, "installer_path": "https://admin:s3cr3t-VALUE@fs/m.exe"})],
     "recovery_services_agent.installer_path"),
    ([("description", "-----BEGIN RSA PRIVATE KEY----- s3cr3t-VALUE")], "description"),
])
def test_secrets_are_refused_and_never_echoed(tmp_path, changes, where):
    message = problems_of(write(tmp_path, mutate(*changes)))
    assert f"{where}: " in message and "secrets belong in an Airflow connection" in message
    assert "s3cr3t-VALUE" not in message
    assert "unknown key" not in message  # the secret message replaces the generic one


def test_no_field_of_the_model_looks_like_a_secret():
    from site_recovery.site import _secret_key

    assert [name for name in field_names(Site) if _secret_key(name)] == []


def test_connection_ids_are_not_secrets(tmp_path):
    changes = [("drill.notifier", {"kind": "airflow_notifier", "classpath": "a.B",
                                   "kwargs": {"token_conn_id": "pagerduty", "password": None}})]
    assert load_site(write(tmp_path, mutate(*changes))).drill.notifier.kwargs["token_conn_id"] == "pagerduty"


# ------------------------------------------------------------------------------ hostile YAML
@pytest.mark.parametrize("content, expected", [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("- a\n- b\n", "must be a mapping of settings at the top level, not a list"),
    ("just text\n", "must be a mapping of settings at the top level, not 'just text'"),
    ("a: &x [1, 2]\nb: *x\n", "line 1: anchors and aliases (&name, *name) are not allowed"),
    ("a: &a [1]\nb: &b [*a, *a]\nc: &c [*b, *b]\n", "anchors and aliases"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n", "anchors and aliases"),
    ("other:\n  <<: {x: 1}\n", "line 2: merge keys (<<) are not allowed"),
    ("name: a\ndescription: x\nname: b\n", "line 3: duplicate key 'name' (first on line 1)"),
    ("azure:\n\tconn_id: x\n", "line 2, column 1: indented with a tab; YAML needs spaces"),
    ("1: x\n", "line 1: key 1 is not text"),
    ("on: x\n", "line 1: key true is not text; keys must be names (quote it: \"on\")"),
    ("? [a, b]\n: x\n", "line 1: a key is a collection"),
    ("a: 1\n---\nb: 2\n", "not valid YAML: but found another document"),
    ("a: [1, 2\n", "not valid YAML"),
    ("drill:\n  schedule: */5 * * * *\n", "line 2, column 14: not valid YAML: expected alphabetic or numeric "
                                         "character, but found '/' (a value starting with * or & must be quoted)"),
    ("a: !!python/object:os.system {}\n", "not valid YAML: could not determine a constructor"),
    ("a: " + "[" * 100 + "]" * 100 + "\n", "nested more than 20 levels deep"),
    ("a: " + "9" * 5000 + "\n", "holds a number thousands of digits long"),
    ("a: 2024-13-45\n", "not a usable YAML value: month must be in 1..12"),
    ("a: \"\x00\"\n", "not valid YAML text"),
    (b"name: \xff\xfe\n", "byte 6: not UTF-8 text"),
    (b"a: " + b"x" * MAX_FILE_BYTES, "is larger than 256 KiB"),
])
def test_hostile_or_broken_yaml(tmp_path, content, expected):
    assert expected in problems_of(write(tmp_path, content))


def test_a_missing_file(tmp_path):
    assert problems_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: cannot be read: No such file or directory"


def test_a_pipe_or_a_folder_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    assert problems_of(tmp_path / "pipe.yaml").endswith("pipe.yaml: is not a regular file")
    (tmp_path / "folder.yaml").mkdir()
    assert problems_of(tmp_path / "folder.yaml").endswith("folder.yaml: is not a regular file")


def test_a_byte_order_mark_is_fine(tmp_path):
    assert load_site(write(tmp_path, b"\xef\xbb\xbf" + LAB_SITE.read_bytes())).name == "lab"


# ----------------------------------------------------------------------- replication policy
def test_provider_input_for_the_recorded_policy():
    recorded = policy(copy_frequency_seconds=30, recovery_points=1, compression=False, delete_replica_on_disable=True)
    assert recorded.to_provider_input() == {
        "instanceType": "HyperVReplica2012R2", "replicationFrequencyInSeconds": 30, "recoveryPoints": 1,
        "applicationConsistentSnapshotFrequencyInHours": 0, "compression": "Disable",
        "initialReplicationMethod": "OverNetwork", "onlineReplicationStartTime": "", "replicationPort": 8083,
        "allowedAuthenticationType": 1, "replicaDeletion": "Required",
    }


def test_provider_input_for_2012_offline_with_certificates():
    offline = policy(provider="HyperVReplica2012", recovery_points=15, app_consistent_snapshot_frequency_hours=12,
                     authentication="certificate", replication_port=443,
                     initial_replication={"method": "offline", "offline_export_path": "D:\\Export",
                                          "offline_import_path": "\\\\fs\\hvr\\Import"})
    assert offline.to_provider_input() == {
        "instanceType": "HyperVReplica2012", "recoveryPoints": 15, "applicationConsistentSnapshotFrequencyInHours": 12,
        "compression": "Enable", "initialReplicationMethod": "Offline", "onlineReplicationStartTime": "",
        "offlineReplicationImportPath": "\\\\fs\\hvr\\Import", "offlineReplicationExportPath": "D:\\Export",
        "replicationPort": 443, "allowedAuthenticationType": 2, "replicaDeletion": "NotRequired",
    }


def test_provider_input_with_a_start_time():
    scheduled = policy(initial_replication={"start": "2:30"}, copy_frequency_seconds=900)
    assert scheduled.initial_replication.start == "02:30"
    assert scheduled.to_provider_input()["onlineReplicationStartTime"] == "02:30:00"
    assert scheduled.to_provider_input()["replicationFrequencyInSeconds"] == 900


def test_the_recorded_read_back_matches():
    recorded = policy(copy_frequency_seconds=30, recovery_points=1, compression=False, delete_replica_on_disable=True)
    assert recorded.matches_provider_details(RECORDED_DETAILS) == []
    snake = {"instance_type": "HyperVReplica2012R2", "replication_frequency_in_seconds": 30, "recovery_points": 1,
             "application_consistent_snapshot_frequency_in_hours": 0, "compression": "Disabled",
             "initial_replication_method": "OverNetwork", "replication_port": 8083,
             "allowed_authentication_type": 1, "replica_deletion_option": "SecondaryVMOnRecoveryCloud"}
    assert recorded.matches_provider_details(snake) == []


def test_the_lab_policy_matches_its_normalised_read_back():
    details = dict(RECORDED_DETAILS, replicationFrequencyInSeconds=300, recoveryPoints=24,
                   applicationConsistentSnapshotFrequencyInHours=4, compression="Enabled")
    assert load_site(LAB_SITE).replication_policy.matches_provider_details(details) == []


def test_changed_settings_are_named():
    wanted = policy(copy_frequency_seconds=300, recovery_points=1, compression=True, authentication="certificate",
                    initial_replication={"start": "22:00"})
    differences = wanted.matches_provider_details(RECORDED_DETAILS)
    assert differences == [
        "copy_frequency_seconds: the vault has 30, the site file says 300",
        "compression: the vault has 'Disabled', the site file says 'Enabled'",
        "initial_replication.start: the vault has null, the site file says '22:00:00'",
        "authentication: the vault has 1, the site file says 2",
        "delete_replica_on_disable: the vault has 'SecondaryVMOnRecoveryCloud', the site file says 'None'",
    ]


def test_read_back_start_time_and_provider():
    scheduled = policy(initial_replication={"start": "22:00"}, recovery_points=1, compression=False,
                       copy_frequency_seconds=30, delete_replica_on_disable=True)
    assert scheduled.matches_provider_details(dict(RECORDED_DETAILS, onlineReplicationStartTime="22:00:00")) == []
    other = dict(RECORDED_DETAILS, instanceType="HyperVReplica2012", onlineReplicationStartTime="22:00")
    assert scheduled.matches_provider_details(other) == [
        "provider: the vault has 'HyperVReplica2012', the site file says 'HyperVReplica2012R2'"]
    assert "replication_port: the vault has null" in policy().matches_provider_details({})[-3]


# -------------------------------------------------------------------------------- load_sites
def test_one_broken_file_does_not_stop_the_others(tmp_path):
    write(tmp_path, LAB_SITE.read_text(), "lab.yaml")
    write(tmp_path, mutate(("name", ...), ("replication_policy.copy_frequency_seconds", 60)), "broken.yml")
    write(tmp_path, "a: [\n", "garbled.yaml")
    write(tmp_path, "not a site", "README.md")
    write(tmp_path, "a: [", ".hidden.yaml")
    sites, errors = load_sites(tmp_path)
    assert list(sites) == ["lab"]
    assert set(errors) == {"broken.yml", "garbled.yaml"}
    assert errors["broken.yml"] == (f"{tmp_path / 'broken.yml'}: replication_policy.copy_frequency_seconds: "
                                    "60 is not allowed; allowed: 30, 300, 900")


def test_two_files_with_one_name_are_both_refused(tmp_path):
    write(tmp_path, LAB_SITE.read_text(), "lab.yaml")
    write(tmp_path, mutate(("azure.vault_name", "rsv-other")), "copy.yaml")
    write(tmp_path, mutate(("name", "other")), "other.yaml")
    sites, errors = load_sites(tmp_path)
    assert list(sites) == ["other"]
    assert errors["copy.yaml"] == (f"{tmp_path / 'copy.yaml'}: name: 'lab' is also the site name of lab.yaml; "
                                   "each site needs its own name (it is part of the DAG ids)")
    assert "also the site name of copy.yaml" in errors["lab.yaml"]


def test_a_missing_folder_is_one_error(tmp_path):
    sites, errors = load_sites(tmp_path / "nope")
    assert sites == {} and list(errors) == [str(tmp_path / "nope")]


def test_an_unexpected_failure_stays_with_its_file(tmp_path, monkeypatch):
    import site_recovery.site as module

    write(tmp_path, LAB_SITE.read_text(), "lab.yaml")
    write(tmp_path, LAB_SITE.read_text().replace("name: lab", "name: boom"), "boom.yaml")
    real = module.load_site

    def flaky(path):
        if Path(path).name == "boom.yaml":
            raise RuntimeError("a bug")
        return real(path)
    monkeypatch.setattr(module, "load_site", flaky)
    sites, errors = load_sites(tmp_path)
    assert list(sites) == ["lab"] and "could not be loaded (RuntimeError: a bug)" in errors["boom.yaml"]


def test_importing_the_model_is_cheap():
    """DAG files import it at parse time: no Airflow, no Azure SDK, no lab, no PowerShell client."""
    code = ("import sys; import site_recovery.site; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'azure', 'asr_lab', 'pypsrp', "
            "'croniter', 'requests'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "plugins")})
    assert out.stdout.strip() == "[]"


def test_the_documentation_covers_every_field_and_shows_the_lab_file():
    """docs/site-file.md (or the README section it became) must not drift from the model or the example."""
    doc = next(p for p in (REPO / "docs" / "site-file.md", REPO / "README.md") if p.exists()).read_text()
    assert LAB_SITE.read_text() in doc

    documented = re.findall(r"`([\w.\[\]]+)`", doc)
    names = {part.strip("[]") for item in documented for part in item.split(".")}
    assert field_names(Site) - names == set()
