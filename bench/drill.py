"""The test failover drill of about 200 VMs under a real scheduler, triggerer and LocalExecutor.

This part of `make bench` (``bench/run.py --only drill``) starts the lab on the generated estate
(bench/estate_200.py) and ``airflow standalone`` as bench/stack.py does, deploys the site
(``asr_deploy__bench``), protects every protectable VM, then triggers
``asr_test_failover_drill__bench-30s`` once, at lab time scale 0 (every ASR job ends on its
next read), and measures:

* wall time of the drill run (trigger to the end seen through the REST API, and the
  scheduler's own run start/end);
* ARM requests per VM from the lab's request log while the drill ran (total, mutating, reads,
  by kind);
* WinRM invocations per VM (scripts run on the Windows servers while the drill ran, by script);
* how long after ASR ended a job the DAG noticed it: the latest end among the drill's
  TestFailover and TestFailoverCleanup jobs (ASR's jobs list, end of the job's last task for
  sub-second precision) against the end of the task instance waiting on it (``wait_cleanup``,
  or that VM's ``drill_vm.wait_test_failover``), and per VM, its TestFailover job's end against
  its ``wait_test_failover`` end (median, p90, max). Task instance times come from
  ``/api/v2/dags/{dag}/dagRuns/{run}/taskInstances`` (mapped ones included).

Two site files of the same estate and vault: ``bench`` (poll interval 1 s) deploys and enables
replication, ``bench-30s`` (the site file's ``timeouts.poll_interval``, 30 s as in production
unless ``--drill-poll-interval`` says otherwise) runs the drill. Enabling 200 VMs through the
enable-replication DAG takes about ten minutes (its enables run one at a time), so by default
the VMs are protected with the SDK directly (what the DAG's enable task sends: one
``PUT .../replicationProtectedItems/{vm}`` with the site's policy per protectable VM);
``--drill-enable-with dag`` drives ``asr_enable_replication__bench`` instead, as
bench/enable_replication.py does.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bench.stack import DistributedStack, Stack, request_figures, ts

ENABLE_SITE, DRILL_SITE = "bench", "bench-30s"
GROUP = "drill_vm."
WAIT_TFO = f"{GROUP}wait_test_failover"
SCENARIOS = ("TestFailover", "TestFailoverCleanup")


# ------------------------------------------------------------------------------ protecting the VMs
def enable_with_sdk(lab, site_file: Path, workers: int = 8, timeout: float = 300, vms: set[str] | None = None,
                    wait: bool = True) -> dict:
    """Protect every protectable VM of the site's paired primary clouds (or only ``vms``, by name) through
    the SDK; wait until all are (unless ``wait`` is False: their initial replications are left running).

    What ``EnableProtectionOperator`` sends for each VM (one PUT with the pairing's policy), without
    the DAG's one-at-a-time admission: the drill is what is measured here, not enabling.
    """
    from tests.labflows import asr_client

    site = yaml.safe_load(site_file.read_text())
    rg, vault = site["azure"]["resource_group"], site["azure"]["vault_name"]
    primary = site["primary"]["vmm"].get("friendly_name") or site["primary"]["vmm"]["fqdn"]
    clouds = {pair["primary_cloud"] for pair in site["clouds"]}
    asr = asr_client(lab)
    fabric = next(f.name for f in asr.replication_fabrics.list(rg, vault) if f.properties.friendly_name == primary)
    policy = next(p.id for p in asr.replication_policies.list(rg, vault)
                  if p.name == site["replication_policy"]["name"])
    containers = [c.name for c in asr.replication_protection_containers.list_by_replication_fabrics(rg, vault, fabric)
                  if c.properties.friendly_name in clouds]
    todo = []
    for container in containers:
        for item in asr.replication_protectable_items.list_by_replication_protection_containers(
                rg, vault, fabric, container):
            props = item.properties
            if (props.protection_status == "Unprotected" and not props.protection_readiness_errors
                    and (vms is None or props.friendly_name in vms)):
                todo.append((container, item))

    def enable(entry) -> None:
        container, item = entry
        body = {"properties": {"policyId": policy, "protectableItemId": item.id,
                               "providerSpecificDetails": {"instanceType": "EnableProtectionProviderSpecificInput"}}}
        asr.replication_protected_items.begin_create(rg, vault, fabric, container, item.name, body, polling=False)

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(enable, todo))
    if not wait:
        return {"with": "sdk", "vms_enabled": len(todo), "seconds": round(time.monotonic() - started, 1)}
    deadline = time.monotonic() + timeout
    while True:
        items = [i for container in containers
                 for i in asr.replication_protected_items.list_by_replication_protection_containers(
                     rg, vault, fabric, container)]
        protected = [i for i in items if i.properties.protection_state == "Protected"
                     and i.properties.replication_health == "Normal"
                     and (vms is None or i.properties.friendly_name in vms)]
        if len(protected) >= len(todo):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(protected)} of {len(todo)} VMs protected after {timeout:.0f}s")
        time.sleep(2)
    return {"with": "sdk", "vms_protected": len(protected), "seconds": round(time.monotonic() - started, 1)}


def enable_with_dag(stack: Stack) -> dict:
    run_id, state, seconds = stack.run_dag(f"asr_enable_replication__{ENABLE_SITE}", timeout=1500)
    if state != "success":
        raise RuntimeError(f"asr_enable_replication__{ENABLE_SITE} {state}; see {stack.airflow_home / 'logs'}")
    return {"with": f"dag asr_enable_replication__{ENABLE_SITE} (poll 1 s)", "seconds": round(seconds, 1)}


# ------------------------------------------------------------------------------------ the figures
def drill_jobs(lab, site_file: Path, since: float) -> list[dict]:
    """The vault's TestFailover and TestFailoverCleanup jobs started at or after ``since`` (epoch s)."""
    from tests.labflows import asr_client

    site = yaml.safe_load(site_file.read_text())
    jobs = []
    for job in asr_client(lab).replication_jobs.list(site["azure"]["resource_group"], site["azure"]["vault_name"]):
        props = job.properties
        if props.scenario_name not in SCENARIOS or props.start_time.timestamp() < since - 1:
            continue
        # ASR writes a job's endTime in whole seconds; its last task's end has the fraction.
        ends = [t.end_time.timestamp() for t in props.tasks or [] if t.end_time]
        end = max(ends) if ends else (props.end_time.timestamp() if props.end_time else None)
        jobs.append({"name": job.name, "scenario": props.scenario_name, "vm": props.target_object_name,
                     "state": props.state, "start": props.start_time.timestamp(), "end": end})
    return jobs


def _spread(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)
    return {"count": len(values), "median_s": round(statistics.median(values), 2),
            "p90_s": round(values[int(0.9 * (len(values) - 1))], 2), "min_s": round(values[0], 2),
            "max_s": round(values[-1], 2)}


def latency_figures(jobs: list[dict], tis: list[dict]) -> dict:
    """Seconds from ASR ending a job to the end of the task instance waiting on it."""
    waits = {ti["rendered_map_index"]: ti for ti in tis if ti["task_id"] == WAIT_TFO}
    by_id = {ti["task_id"]: ti for ti in tis if ti["map_index"] == -1}
    ended = [j for j in jobs if j["end"] is not None]
    if not ended:
        return {}
    last = max(ended, key=lambda j: j["end"])
    waiter = by_id.get("wait_cleanup") if last["scenario"] == "TestFailoverCleanup" else waits.get(last["vm"])
    last_figures = {"job": last["name"], "scenario": last["scenario"], "vm": last["vm"],
                    "waited_on_by": (waiter or {}).get("task_id")}
    if waiter and waiter.get("end_date"):
        last_figures["latency_s"] = round(ts(waiter["end_date"]) - last["end"], 2)
        last_figures["waiting_task_started_after_job_end_s"] = round(ts(waiter["start_date"]) - last["end"], 2)
    if last["scenario"] == "TestFailoverCleanup" and by_id.get("start_cleanup", {}).get("end_date"):
        last_figures["start_cleanup_ended_after_job_end_s"] = round(
            ts(by_id["start_cleanup"]["end_date"]) - last["end"], 2)
    per_vm, started_after = [], []
    for job in ended:
        ti = waits.get(job["vm"]) if job["scenario"] == "TestFailover" else None
        if ti and ti.get("end_date"):
            per_vm.append(ts(ti["end_date"]) - job["end"])
            started_after.append(ts(ti["start_date"]) - job["end"])
    return {"last_job": last_figures,
            "test_failover_job_end_to_wait_test_failover_end": _spread(per_vm),
            "test_failover_job_end_to_wait_test_failover_start": _spread(started_after)}


def winrm_figures(invocations: list[dict], since: float, vms: int) -> dict:
    mine = [i for i in invocations if i["started"] >= since]
    by_script = Counter(_script(i) for i in mine)
    return {"invocations": len(mine), "per_vm": round(len(mine) / vms, 2),
            "by_script": dict(by_script.most_common()),
            "by_server": dict(Counter(i["server"] for i in mine).most_common())}


def _script(invocation: dict) -> str:
    for command in invocation.get("commands") or []:
        text = command if isinstance(command, str) else str(command.get("name") or command)
        for name in ("Get-TestVmStatus", "Test-TestVmEndpoint", "Get-VmmInventory"):
            if name in text:
                return name
    return "other"


def task_figures(tis: list[dict]) -> dict:
    """Per task: count, states, mean and max seconds from start to end (deferrals included)."""
    out: dict[str, dict] = {}
    for task_id in sorted({ti["task_id"] for ti in tis}):
        mine = [ti for ti in tis if ti["task_id"] == task_id]
        spans = [ts(ti["end_date"]) - ts(ti["start_date"]) for ti in mine
                 if ti.get("start_date") and ti.get("end_date")]
        out[task_id.removeprefix(GROUP)] = {
            "count": len(mine), "states": dict(Counter(ti["state"] for ti in mine)),
            **({"mean_s": round(sum(spans) / len(spans), 2), "max_s": round(max(spans), 2)} if spans else {})}
    return out


# ------------------------------------------------------------------------------------ the bench
def run_bench(workdir: Path, vms: int = 200, poll_interval: str = "30s", enable_with: str = "sdk",
              timeout: float = 1200, distributed: bool = False) -> dict:
    from bench.estate_200 import is_protectable, write

    sites = {ENABLE_SITE: {"max_concurrent": 20, "poll_interval": "1s"},
             DRILL_SITE: {"max_concurrent": 20, "poll_interval": poll_interval}}
    estate_file, include, estate = write(workdir / "estate", vms, sites)
    primary = next(s for s in estate["sites"] if s["role"] == "primary")
    protectable = [vm for vm in primary["vms"] if is_protectable(vm)]
    reports = workdir / "reports"
    drill_dag = f"asr_test_failover_drill__{DRILL_SITE}"
    conditions = {"protectable_vms": len(protectable), "time_scale": 0, "poll_interval": poll_interval,
                  "executor": "LocalExecutor", "database": "sqlite, WAL journal, 60 s busy timeout",
                  "airflow": "airflow standalone (scheduler, dag-processor, triggerer, api-server), default "
                             "parallelism and max_active_tasks", "cpus": os.cpu_count(),
                  "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    if distributed:
        conditions.update({
            "executor": "CeleryExecutor, 2 workers x 16 slots, broker Redis", "database": "PostgreSQL",
            "airflow": "api-server, scheduler, dag-processor, 2 triggerers, 2 Celery workers (make stack's "
                       "layout), reports in Azurite; default parallelism and max_active_tasks"})
    results: dict = {"conditions": conditions}
    if distributed:
        stack_cm = DistributedStack(workdir, estate_file, include, 0, database=f"asr_dr_bench_{os.getpid()}",
                                    redis_db=13)
    else:
        # WAL: with SQLite's default journal, 200 mapped VMs at once kill the scheduler ("database is locked").
        stack_cm = Stack(workdir, estate_file, include, 0,
                         extra_env={"AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER": str(reports)}, sqlite_wal=True)
    with stack_cm as stack:
        lab, api = stack.lab, stack.api
        print(f"  Airflow up on port {stack.port}; lab estate with {len(protectable)} protectable VMs", flush=True)
        _, state, deploy_s = stack.run_dag(f"asr_deploy__{ENABLE_SITE}", timeout=600)
        if state != "success":
            raise RuntimeError(f"asr_deploy__{ENABLE_SITE} {state}; see {stack.airflow_home / 'logs'}")
        print(f"  deployed in {deploy_s:.0f}s", flush=True)
        site_file = include / "sites" / f"{DRILL_SITE}.yaml"
        enabled = enable_with_dag(stack) if enable_with == "dag" else enable_with_sdk(lab, site_file)
        print(f"  replication enabled ({enabled['with']}) in {enabled['seconds']:.0f}s", flush=True)
        results["setup"] = {"deploy_seconds": round(deploy_s, 1), "enable": enabled}
        since_seq, since = lab.last_request_seq(), time.time()
        conditions["load_average_1m_at_drill"] = round(os.getloadavg()[0], 2)
        run_id = api.trigger_when_parsed(drill_dag)
        triggered = time.monotonic()
        state = api.wait(drill_dag, run_id, timeout=timeout)
        wall = time.monotonic() - triggered
        requests = lab.requests(since=since_seq)  # before the jobs list below adds its own reads
        invocations = lab.winrm_invocations()
        run = api.dag_run(drill_dag, run_id)
        tis = api.task_instances(drill_dag, run_id)
        jobs = drill_jobs(lab, site_file, since)
        lab_state = lab.state()
    drilled = sum(1 for ti in tis if ti["task_id"] == WAIT_TFO)
    verified = sum(1 for ti in tis if ti["task_id"] == f"{GROUP}verify_test_vm" and ti["state"] == "success")
    if distributed:
        from site_recovery.drill_report import load_history

        stored = load_history(stack.reports(), DRILL_SITE, limit=1)
        report_verdict = str(stored[-1].verdict) if stored else None
    else:
        report = next(iter(sorted(reports.rglob("*.json"))), None) if reports.exists() else None
        report_verdict = json.loads(report.read_text()).get("verdict") if report else None
    finished = [ti for ti in tis if ti.get("end_date") and ti["state"] in ("success", "failed", "skipped")]
    print(f"  {drill_dag}: {state} in {wall:.0f}s, {verified} of {drilled} VMs verified", flush=True)
    results.update({
        "state": state, "vms_drilled": drilled, "vms_verified": verified,
        "wall_seconds": round(wall, 1),
        "run_seconds_scheduler": round(ts(run["end_date"]) - ts(run["start_date"]), 1)
        if run.get("start_date") and run.get("end_date") else None,
        "requests": request_figures(requests, max(drilled, 1)),
        "winrm": winrm_figures(invocations, since, max(drilled, 1)),
        "job_end_to_dag": latency_figures(jobs, tis),
        "jobs": dict(Counter(f"{j['scenario']} {j['state']}" for j in jobs)),
        "tasks": task_figures(tis),
        "left_behind": {"in_test_failover": len(lab_state["inTestFailover"]), "test_vms": len(lab_state["testVms"])},
        "report_verdict": report_verdict,
        "task_instances_finished": len(finished),
        "task_throughput_per_s": round(len(finished) / wall, 2) if wall else None,
    })
    return results


def run_side_by_side(workdir: Path, vms: int = 200, poll_interval: str = "30s") -> dict:
    """The same drill (estate, site file, lab time scale 0, VMs protected through the SDK) on
    ``airflow standalone`` and then on the distributed stack, in one run; the ratios distributed / standalone."""
    standalone = run_bench(workdir / "standalone", vms=vms, poll_interval=poll_interval)
    distributed = run_bench(workdir / "distributed", vms=vms, poll_interval=poll_interval, distributed=True)

    def ratio(key: str, *path: str) -> float | None:
        values = []
        for figures in (distributed, standalone):
            value = figures
            for part in (key, *path):
                value = (value or {}).get(part)
            values.append(value)
        return round(values[0] / values[1], 2) if values[0] is not None and values[1] else None

    return {"standalone": standalone, "distributed": distributed, "ratio_distributed_over_standalone": {
        "wall_seconds": ratio("wall_seconds"), "task_throughput_per_s": ratio("task_throughput_per_s"),
        "job_end_to_wait_end_median": ratio("job_end_to_dag", "test_failover_job_end_to_wait_test_failover_end",
                                            "median_s"),
        "job_end_to_wait_end_p90": ratio("job_end_to_dag", "test_failover_job_end_to_wait_test_failover_end", "p90_s"),
        "job_end_to_wait_end_max": ratio("job_end_to_dag", "test_failover_job_end_to_wait_test_failover_end", "max_s"),
    }}


def side_by_side_summary(figures: dict) -> str:
    lines = []
    for name in ("standalone", "distributed"):
        f = figures[name]
        per_vm = (f.get("job_end_to_dag") or {}).get("test_failover_job_end_to_wait_test_failover_end") or {}
        lines.append(f"  {name:<11} {f['state']} in {f['wall_seconds']:.0f} s, {f['task_instances_finished']} task "
                     f"instances ({f['task_throughput_per_s']}/s); job end -> wait end median "
                     f"{per_vm.get('median_s')} s,"
                     f" p90 {per_vm.get('p90_s')} s, max {per_vm.get('max_s')} s; report {f['report_verdict']}")
    return "\n".join([f"Drill, {figures['standalone']['vms_drilled']} VMs, distributed vs standalone "
                      f"(time scale 0, poll {figures['standalone']['conditions']['poll_interval']}):", *lines,
                      f"  distributed / standalone: {figures['ratio_distributed_over_standalone']}"])


def summary(figures: dict) -> str:
    c, req, winrm = figures["conditions"], figures["requests"], figures["winrm"]
    lat = figures.get("job_end_to_dag") or {}
    last, per_vm = lat.get("last_job") or {}, lat.get("test_failover_job_end_to_wait_test_failover_end") or {}
    return "\n".join([
        f"Drill, {figures['vms_drilled']} VMs, time scale 0, poll interval {c['poll_interval']} "
        f"(enable: {figures['setup']['enable']['with']}; load {c['load_average_1m_at_drill']} on {c['cpus']} CPUs):",
        f"  {figures['state']} in {figures['wall_seconds']:.0f} s ({figures['vms_verified']} verified; report "
        f"{figures['report_verdict']}; left behind {figures['left_behind']})",
        f"  ARM requests per VM: {req['per_vm']['arm_requests']} ({req['per_vm']['mutating']} mutating, "
        f"{req['per_vm']['reads']} reads); by kind {req['by_kind']}",
        f"  WinRM invocations per VM: {winrm['per_vm']} ({winrm['by_script']})",
        f"  last job ({last.get('scenario')} {last.get('vm')}) ended -> {last.get('waited_on_by')} ended: "
        f"{last.get('latency_s')} s",
        f"  per VM, TestFailover job ended -> wait_test_failover ended: median {per_vm.get('median_s')} s, "
        f"p90 {per_vm.get('p90_s')} s, max {per_vm.get('max_s')} s",
    ])
