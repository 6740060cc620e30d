"""A restarted lab keeps its port, its secrets, what exists and every in-flight job."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from asr_lab.client import LabClient
from tests.labflows import asr_client, create_vault, register_primary_vmm, start_policy_job

pytestmark = pytest.mark.lab


def serve(state_dir: Path, time_scale: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "asr-lab"), "serve", "--state-dir", str(state_dir),
         "--time-scale", time_scale],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def wait_ready(state_dir: Path) -> LabClient:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (state_dir / "endpoints.json").exists():
            client = LabClient.from_state_dir(state_dir)
            try:
                if client.health():
                    return client
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError("lab did not come up")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=15)


def test_restart_continues_in_flight_jobs_with_the_same_endpoints(tmp_path):
    # Scale 0.25: the policy job (about 8 s in a real vault) takes about 2 s here.
    proc = serve(tmp_path, "0.25")
    try:
        lab = wait_ready(tmp_path)
        before = dict(lab.endpoints)
        vault = create_vault(lab)
        register_primary_vmm(lab, vault)
        job = start_policy_job(lab, vault)
        state = asr_client(lab).replication_jobs.get(vault.resource_group, vault.name, job).properties.state
        assert state == "InProgress"
    finally:
        stop(proc)
    assert not (tmp_path / "endpoints.json").exists(), "a stopped lab must not advertise endpoints"

    proc = serve(tmp_path, "0.25")
    try:
        lab = wait_ready(tmp_path)
        assert lab["arm_url"] == before["arm_url"]
        assert lab["client_secret"] == before["client_secret"]
        client = asr_client(lab)
        deadline = time.monotonic() + 30
        while (job_state := client.replication_jobs.get(vault.resource_group, vault.name, job).properties.state) == "InProgress":
            assert time.monotonic() < deadline, "the job never finished after the restart"
            time.sleep(0.2)
        assert job_state == "Succeeded"
        policy = client.replication_policies.get(vault.resource_group, vault.name, "policy-gold-5min")
        assert policy.properties.provider_specific_details.instance_type == "HyperVReplica2012R2"
    finally:
        stop(proc)
