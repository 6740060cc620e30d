"""`make bench`: performance figures for the lab and the product.

Lab: job GETs per second through the real async SDK client with 50 concurrent pollers,
and p50/p99 latency (goal: >= 500/s on this machine, so 1,000-VM scenarios are limited by
the product, not the lab). Figures are printed and written to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
API_VAULT = "2026-11-01"


def start_lab(state_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "asr-lab"), "serve", "--state-dir", str(state_dir), "--time-scale", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def lab_job_gets(lab, pollers: int, seconds: float) -> dict:
    from azure.identity.aio import ClientSecretCredential
    from azure.mgmt.recoveryservicessiterecovery.aio import SiteRecoveryManagementClient

    from tests.labflows import create_vault, register_primary_vmm, start_policy_job

    vault_ref = create_vault(lab)
    register_primary_vmm(lab, vault_ref)
    resource_group, vault, job = vault_ref.resource_group, vault_ref.name, start_policy_job(lab, vault_ref)
    credential = ClientSecretCredential(
        lab["tenant_id"], lab["client_id"], lab["client_secret"], authority=lab["authority_url"],
        connection_verify=lab["ca_cert"], disable_instance_discovery=True,
    )
    client = SiteRecoveryManagementClient(
        credential, lab["subscription_id"], base_url=lab["arm_url"],
        credential_scopes=[lab["credential_scope"]], connection_verify=lab["ca_cert"],
    )
    latencies: list[float] = []
    async with client, credential:
        await client.replication_jobs.get(resource_group, vault, job)  # warm: token + connection pool
        deadline = time.perf_counter() + seconds

        async def poller() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await client.replication_jobs.get(resource_group, vault, job)
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(poller() for _ in range(pollers)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "pollers": pollers,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "gets_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "goal_gets_per_second": 500,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pollers", type=int, default=50)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from asr_lab.client import LabClient

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp:
        proc = start_lab(Path(tmp))
        try:
            lab = LabClient.from_state_dir(tmp, wait_seconds=60)
            results["lab_job_gets"] = asyncio.run(lab_job_gets(lab, args.pollers, args.seconds))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
