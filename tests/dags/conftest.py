"""Fixtures of the DAG end-to-end tests: the lab's connections, a DAG runner, and the run's log."""

from __future__ import annotations

import json
import logging

import pytest

from tests.dags.hitl import airflow_users  # noqa: F401 - the fixture, for every DAG test
from tests.dags.runs import dag_runner, kept_state, states

#: what a drill must never send: a real failover, its commit, a reprotect, a cancel of a failover, a removal
FORBIDDEN = ("/plannedFailover", "/unplannedFailover", "/failoverCommit", "/reProtect", "/failoverCancel", "/remove")


@pytest.fixture
def connections(lab, airflow_db, monkeypatch):
    """Every lab endpoint as the Airflow connections `make demo` defines; the site file names them."""
    from site_recovery.site import load_sites

    site = load_sites()[0]["lab"]
    connections = lab.airflow_connections(site.azure.conn_id)
    for side in (site.primary, site.recovery):
        for server in [side.vmm, *side.hyperv_hosts]:
            assert server.psrp_conn_id in connections, f"lab.yaml names {server.psrp_conn_id}, the lab has no such connection"
    for conn_id, conn in connections.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return site


@pytest.fixture
def deploy(connections):
    return dag_runner("asr_deploy__lab")


@pytest.fixture
def reports(tmp_path, monkeypatch):
    """The drill reports' folder (``[site_recovery] reports_folder``), one per test."""
    folder = tmp_path / "reports"
    monkeypatch.setenv("AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER", str(folder))
    return folder


@pytest.fixture
def protect_for_drill(lab, connections, site_file, deploy, reports):
    """``protect(changes)``: the lab site file with ``changes``, deployed and its VMs protected by the two DAGs
    before a drill; returns the lab. Whatever the drill test did, the lab must end with nothing left of any
    drill, and no drill may have sent a real failover, commit or reprotect."""

    def protect(changes: dict):
        site_file(changes)

        def build() -> None:
            assert deploy().state == "success"
            enabled = dag_runner("asr_enable_replication__lab")()
            assert enabled.state == "success", states(enabled)

        kept_state(lab, "protect_for_drill", changes, build)
        return lab

    yield protect
    state = lab.state()
    assert state["inTestFailover"] == [] and state["testVms"] == [], (state["inTestFailover"], state["testVms"])
    sent = [f"{r['method']} {r['path']}" for r in lab.requests(mutating=True)]
    assert not [r for r in sent if r.endswith(FORBIDDEN)], "a drill must never fail over, commit or reprotect"


@pytest.fixture
def output(capfd, caplog):
    """Everything the run logged so far (task log lines reach caplog or the fds depending on set-up)."""
    caplog.set_level(logging.INFO)

    def read() -> str:
        captured = capfd.readouterr()
        text = caplog.text + captured.out + captured.err
        caplog.clear()
        return text

    return read


@pytest.fixture
def site_file(tmp_path, monkeypatch):
    """``edit({"scope.max_concurrent_initial_replications": 2, ...})``: the lab site file with changes.

    A number in the dotted path indexes a list (``recovery_plans.0.unattended``).

    Writes a copy of include/sites/lab.yaml under a temporary include folder and points the DAGs
    at it (``SITE_RECOVERY_INCLUDE_DIR``), so a test can tighten a timeout without touching the repo.
    """
    from pathlib import Path

    import yaml

    source = Path(__file__).resolve().parents[2] / "include" / "sites" / "lab.yaml"

    def edit(changes: dict) -> Path:
        data = yaml.safe_load(source.read_text())
        for dotted, value in changes.items():
            *parents, leaf = dotted.split(".")
            node = data
            for key in parents:
                node = node[int(key)] if isinstance(node, list) else node[key]
            node[int(leaf) if isinstance(node, list) else leaf] = value
        folder = tmp_path / "include" / "sites"
        folder.mkdir(parents=True, exist_ok=True)
        for entry in source.parents[1].iterdir():  # scripts and the rest of include/ stay the repo's
            link = tmp_path / "include" / entry.name
            if entry.name != "sites" and not link.exists():
                link.symlink_to(entry)
        (folder / "lab.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        monkeypatch.setenv("SITE_RECOVERY_INCLUDE_DIR", str(tmp_path / "include"))
        return folder / "lab.yaml"

    return edit


@pytest.fixture
def deployed(connections, deploy):
    """The lab site deployed by its deployment DAG (steps 1-8), as the enable and drill DAGs expect."""
    from tests.dags.runs import states

    run = deploy()
    assert run.state == "success", states(run)
    return connections
