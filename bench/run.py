"""`make bench`: performance figures for the lab and the product.

DAG files (bench/dag_parse.py): each file of dags/ parsed the way the dag-processor parses it
(a fork of a parent with Airflow pre-imported, ``_parse_file``: DagBag plus serialization), median
seconds and the ratio to a minimal one-task DAG file parsed the same way (goal: every ratio <= 1.5).
A DAG file with an import error fails the run.

Lab: job GETs per second through the real async SDK client with 50 concurrent pollers,
p50/p99 latency, and the lab's own CPU time per request (goal: >= 500/s on this machine, so
1,000-VM scenarios are limited by the product, not the lab). The clients run in their own
processes on the same two cores, so the lab's capacity per core is reported too.

Enable replication, 200 VMs (bench/enable_replication.py): the enable-replication DAG under a
real scheduler, triggerer and LocalExecutor against a generated 200-VM estate; wall time,
ARM requests per VM, worker slots held while VMs wait, ARM reads per VM per waiting minute.

Drill, 200 VMs, time scale 0 (bench/drill.py): the test failover drill DAG on the same estate, all
VMs protected first; wall time, ARM requests and WinRM invocations per VM, and how long after ASR
ended a job the DAG noticed it (last job, and per VM its test failover).

Plan drill, 200 VMs (bench/plan_drill.py): the same estate in 2 recovery plans of 100 VMs, drilled
as plans and then one by one (twice: every test VM kept up until all are verified, then each
cleaned up once verified, ``drill.cleanup_when``), at lab time scale 1 (a VM's test failover takes
minutes, as in ASR); wall time, task instances, ARM requests, and wall time over the critical path
(what ASR's own jobs took; goal: <= 1.1) with the overhead per VM in seconds.

Drill, 200 VMs, distributed (bench/drill.py ``run_side_by_side``): the same drill on ``airflow
standalone`` (SQLite, LocalExecutor) and on the distributed stack (``make stack``: PostgreSQL,
Redis, two Celery workers, two triggerers, reports in Azurite), in one run at the same time scale:
wall time, task throughput and the delay from a job ending to its wait ending, with the ratios
distributed / standalone.

Waits at once, 1,000 VMs (bench/waits.py): half waiting on a test failover job, half on their
initial replication, all in one process on one event loop as a triggerer runs them, against the
lab with ARM's throttling on: ARM reads per minute, 429s, token requests, RSS per wait, CPU per
minute, and how long after a job ended its wait ended (goals: <= 250 reads/min, no 429, <= 50 KB
per wait, <= 2 s CPU per minute, noticed within 10 s, median <= 5 s).

Figures are printed and written to bench/results/latest.json; ``--only PART`` runs one part
and updates only its figures there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def lab_job_gets(lab, pollers: int, seconds: float, processes: int) -> dict:
    """Poll one job with ``pollers`` concurrent async SDK pollers spread over client processes.

    The Python SDK client costs more CPU per request than the lab does to answer it, so one
    client process would measure the client; the pollers are spread over ``processes``.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tests.labflows import create_vault, register_primary_vmm, start_policy_job

    vault_ref = create_vault(lab)
    register_primary_vmm(lab, vault_ref)
    job = start_policy_job(lab, vault_ref)
    shares = [pollers // processes + (1 if i < pollers % processes else 0) for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        parts = list(pool.map(_poll_in_process, [lab.endpoints] * processes, [vault_ref.resource_group] * processes,
                              [vault_ref.name] * processes, [job] * processes, shares, [seconds] * processes))
    latencies = sorted(latency for part, _ in parts for latency in part)
    elapsed = max(elapsed for _, elapsed in parts)
    return {
        "pollers": pollers,
        "client_processes": processes,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "gets_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "goal_gets_per_second": 500,
    }


def _poll_in_process(endpoints: dict, resource_group: str, vault: str, job: str, pollers: int,
                     seconds: float) -> tuple[list[float], float]:
    return asyncio.run(_poll(endpoints, resource_group, vault, job, pollers, seconds))


async def _poll(lab: dict, resource_group: str, vault: str, job: str, pollers: int,
                seconds: float) -> tuple[list[float], float]:
    from azure.identity.aio import ClientSecretCredential
    from azure.mgmt.recoveryservicessiterecovery.aio import SiteRecoveryManagementClient

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
    return latencies, elapsed


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PARTS = ("lab", "dag-parse", "enable-replication", "drill", "plan-drill", "drill-distributed", "waits")


def enable_replication(args) -> dict:
    """The enable-replication DAG on 200 VMs with a real scheduler, triggerer and LocalExecutor."""
    from bench.enable_replication import run_bench, summary

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asr-bench-enable-") as tmp:
        figures = run_bench(Path(tmp), vms=args.enable_vms, max_concurrent=args.enable_max_concurrent,
                            scaled_vms=args.enable_scaled_vms, time_scale=args.enable_time_scale,
                            skip_scaled=args.enable_skip_scaled)
    figures["bench_seconds"] = round(time.monotonic() - started, 1)
    print(summary(figures), flush=True)
    return figures


def drill(args) -> dict:
    """The drill DAG on 200 protected VMs, time scale 0, with a real scheduler, triggerer and LocalExecutor."""
    from bench.drill import run_bench, summary

    return _kept_on_failure("drill", lambda tmp: run_bench(
        tmp, vms=args.drill_vms, poll_interval=args.drill_poll_interval, enable_with=args.drill_enable_with), summary)


def plan_drill(args) -> dict:
    """200 VMs drilled in 2 recovery plans, then one by one, at lab time scale 1 (bench/plan_drill.py)."""
    from bench.plan_drill import run_bench, summary

    return _kept_on_failure("plan-drill", lambda tmp: run_bench(
        tmp, vms=args.drill_vms, poll_interval=args.plan_drill_poll_interval, time_scale=args.plan_drill_time_scale,
        one_by_one=not args.plan_drill_plans_only, drill_plans=not args.plan_drill_vms_only,
        cleanup_modes=tuple(args.plan_drill_cleanup_when or ("all_verified", "vm_verified"))),
        summary)


def drill_distributed(args) -> dict:
    """The same drill on airflow standalone and on the distributed stack (make stack's layout), in one run."""
    from bench.drill import run_side_by_side, side_by_side_summary

    return _kept_on_failure("drill-distributed", lambda tmp: run_side_by_side(
        tmp, vms=args.drill_vms, poll_interval=args.drill_poll_interval), side_by_side_summary)


def waits(args) -> dict:
    """A thousand VMs waited on at once by one triggerer-like process, lab throttling on (bench/waits.py)."""
    from bench.waits import run_bench, summary

    return _kept_on_failure("waits", lambda tmp: run_bench(tmp, vms=args.waits_vms,
                                                           poll_interval=args.waits_poll_interval), summary)


def _kept_on_failure(part: str, run, summary) -> dict:
    """Run a part in a temporary folder, removed once it succeeded and kept (lab and Airflow logs) when it failed."""
    import shutil

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix=f"asr-bench-{part}-")
    try:
        figures = run(Path(tmp))
    except BaseException:
        print(f"{part} bench failed; its lab and Airflow logs are kept in {tmp}", flush=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    figures["bench_seconds"] = round(time.monotonic() - started, 1)
    print(summary(figures), flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run only this part (repeatable); the others keep their figures in latest.json")
    parser.add_argument("--dag-parse-repeats", type=int, default=15, help="forks per DAG file (median kept)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--enable-vms", type=int, default=200, help="protectable VMs in the generated estate")
    parser.add_argument("--enable-max-concurrent", type=int, default=20,
                        help="scope.max_concurrent_initial_replications of the generated site file")
    parser.add_argument("--enable-scaled-vms", type=int, default=24,
                        help="VMs protected in the second run (time scale > 0, 30 s poll interval)")
    parser.add_argument("--enable-time-scale", type=float, default=0.04, help="lab time scale of the second run")
    parser.add_argument("--enable-skip-scaled", action="store_true", help="only the time scale 0 run")
    parser.add_argument("--drill-vms", type=int, default=200, help="protectable VMs in the drill's estate")
    parser.add_argument("--drill-poll-interval", default="30s",
                        help="timeouts.poll_interval of the drill's site file (production: 30s)")
    parser.add_argument("--drill-enable-with", choices=("sdk", "dag"), default="sdk",
                        help="protect the VMs before the drill with the SDK (about a second) or the "
                             "enable-replication DAG (about ten minutes for 200 VMs)")
    parser.add_argument("--plan-drill-poll-interval", default="30s",
                        help="timeouts.poll_interval of the plan drill's site files (production: 30s)")
    parser.add_argument("--plan-drill-time-scale", type=float, default=1.0,
                        help="lab time scale of the two drills (1: a VM's test failover takes 2 min 37 s)")
    parser.add_argument("--plan-drill-plans-only", action="store_true",
                        help="drill the plans only, not the same VMs one by one (half the time)")
    parser.add_argument("--plan-drill-vms-only", action="store_true",
                        help="drill the VMs one by one only, not in plans")
    parser.add_argument("--plan-drill-cleanup-when", choices=("all_verified", "vm_verified"), action="append",
                        help="drill.cleanup_when of the one-by-one drill; repeat for both (default: both, one "
                             "drill each)")
    parser.add_argument("--waits-vms", type=int, default=1000, help="VMs waited on at once (half jobs, half "
                                                                     "initial replications)")
    parser.add_argument("--waits-poll-interval", type=float, default=5.0, help="the waits' poll interval (s)")
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    sys.path.insert(0, str(REPO))
    from asr_lab.client import LabClient

    latest = RESULTS / "latest.json"
    results: dict = {}
    if args.only and latest.exists():
        try:
            results = json.loads(latest.read_text())
        except ValueError:
            results = {}
    before = dict(results)
    if "lab" in parts:
        results["lab_job_gets"] = lab_figures(args, LabClient)
    if "dag-parse" in parts:
        from bench.dag_parse import dag_parse_times, summary

        results["dag_parse"] = dag_parse_times(args.dag_parse_repeats)
        print(summary(results["dag_parse"]), flush=True)
    if "enable-replication" in parts:
        print(f"enable replication, {args.enable_vms} VMs: two runs under airflow standalone, about 14 minutes ...",
              flush=True)
        results["enable_replication"] = enable_replication(args)
    if "drill" in parts:
        print(f"drill, {args.drill_vms} VMs: one run under airflow standalone, about 10 minutes ...", flush=True)
        results["drill"] = drill(args)
    if "plan-drill" in parts:
        print(f"plan drill, {args.drill_vms} VMs in 2 plans then one by one, at lab time scale "
              f"{args.plan_drill_time_scale:g}: two runs under airflow standalone, about 30 minutes ...", flush=True)
        results["plan_drill"] = plan_drill(args)
    if "drill-distributed" in parts:
        print(f"drill, {args.drill_vms} VMs, distributed: the same drill under airflow standalone and on the "
              f"distributed stack, about 25 minutes ...", flush=True)
        results["drill_distributed"] = drill_distributed(args)
    if "waits" in parts:
        print(f"waits at once, {args.waits_vms} VMs: one process waiting as a triggerer does, about 15 minutes ...",
              flush=True)
        results["waits"] = waits(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.only and latest.exists():
        # A long part may have run while another bench updated latest.json: keep its figures.
        try:
            computed = {key: results[key] for key in results if key not in before or results[key] is not before[key]}
            results = {**json.loads(latest.read_text()), **computed}
        except ValueError:
            pass
    latest.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


def lab_figures(args, LabClient) -> dict:
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp:
        proc = start_lab(Path(tmp))
        try:
            lab = LabClient.from_state_dir(tmp, wait_seconds=60)
            cpu_before = _cpu_seconds(proc.pid)
            figures = lab_job_gets(lab, args.pollers, args.seconds, args.client_processes)
            lab_cpu = _cpu_seconds(proc.pid) - cpu_before
            # What the lab itself spends per request (the clients share the same 2 cores):
            figures["lab_cpu_ms_per_request"] = round(lab_cpu / figures["requests"] * 1000, 3)
            figures["lab_capacity_per_core"] = round(figures["requests"] / lab_cpu, 1) if lab_cpu else None
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return figures


if __name__ == "__main__":
    sys.exit(main())
