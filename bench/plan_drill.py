"""A drill of 200 VMs in 2 recovery plans against the same 200 VMs drilled one by one.

This part of `make bench` (``bench/run.py --only plan-drill``) starts the lab on the generated
estate (bench/estate_200.py) and ``airflow standalone`` as bench/stack.py does, deploys the site
at lab time scale 0, protects every protectable VM (with the SDK, as bench/drill.py does), runs
the deployment again so it creates the two plans (100 VMs each, in four boot groups by role:
databases, then application servers, then gateways and web front ends, then the rest), then,
at lab time scale 1 (a VM's test failover takes ASR's recorded 2 min 37 s, a four-group plan's
about 6 min), runs:

* ``asr_test_failover_drill__bench-plans`` (the two plans, unattended), then
* ``asr_test_failover_drill__bench-vms`` (the same site without plans: 200 VMs one by one).

For each: wall time (trigger to the end the REST API reports), Airflow task instances, ARM
requests (total, mutating, reads), the ASR jobs it started, and the critical path: what ASR
itself took, which no orchestration can shorten. For the plan drill it is the longest plan's
test failover job plus the longest plan cleanup job (both plans run side by side); for the
per-VM drill the longest VM's test failover job plus the longest cleanup job. The goal is the
plan drill's wall time at most 1.1 x its critical path.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import yaml

from bench.drill import drill_jobs, enable_with_sdk
from bench.stack import Stack, request_figures, ts

ENABLE_SITE, PLAN_SITE, VM_SITE = "bench", "bench-plans", "bench-vms"
#: VM name prefix -> boot group (bench/estate_200.py's roles and the lab's own VMs)
BOOT_GROUPS = {"SQL": 1, "FS": 1, "APP": 2, "MES": 2, "RDS": 2, "LIC": 2, "CAD": 2, "API": 3, "WEB": 3}
PLANS = ("erp-and-shop", "back-office")


def bench_plans(vms: list[dict]) -> list[dict]:
    """Two plans of the protectable VMs, half each, in boot groups by role (groups without VMs left out)."""
    names = sorted(vm["name"] for vm in vms)
    half = (len(names) + 1) // 2
    plans = []
    for plan, members in zip(PLANS, (names[:half], names[half:])):
        groups: dict[int, list[str]] = {}
        for name in members:
            groups.setdefault(BOOT_GROUPS.get(name.split("-")[0], 4), []).append(name)
        plans.append({"name": plan, "description": f"Bench plan: {len(members)} VMs by role",
                      "unattended": "auto_confirm",
                      "groups": [{"group": n + 1, "vms": groups[key]} for n, key in enumerate(sorted(groups))]})
    return plans


def critical_path(jobs: list[dict], per_vm: bool = False) -> dict:
    """What ASR itself took, in seconds: the longest test failover job plus the longest cleanup job (every
    cleanup waits for the slowest VM), or with ``per_vm`` (each VM cleaned up once verified) the longest
    one VM's test failover plus its own cleanup. Both are given; ``seconds`` is the one the drill ran by."""
    longest = {}
    for scenario in ("TestFailover", "TestFailoverCleanup"):
        spans = [j["end"] - j["start"] for j in jobs if j["scenario"] == scenario and j["end"]]
        longest[scenario] = round(max(spans), 1) if spans else None
    after_all = round(sum(v for v in longest.values() if v is not None), 1)
    by_vm: dict[str, float] = {}
    for j in jobs:
        if j["end"] and j.get("vm"):
            by_vm[j["vm"]] = by_vm.get(j["vm"], 0.0) + j["end"] - j["start"]
    one_vm = round(max(by_vm.values()), 1) if by_vm else None
    return {"test_failover_s": longest["TestFailover"], "cleanup_s": longest["TestFailoverCleanup"],
            "after_all_s": after_all, "per_vm_s": one_vm,
            "seconds": one_vm if per_vm and one_vm is not None else after_all}


def task_phases(tis: list[dict], triggered: float) -> dict:
    """Per task (its mapped instances together): how many, first start and last end, seconds after the trigger.

    Read beside ``jobs``, it shows where the wall time beyond the critical path goes.
    """
    phases: dict[str, dict] = {}
    for ti in tis:
        start, end = ts(ti.get("start_date")), ts(ti.get("end_date"))
        phase = phases.setdefault(ti["task_id"], {"count": 0, "first_start": None, "last_end": None})
        phase["count"] += 1
        if start is not None:
            at = round(start - triggered, 1)
            phase["first_start"] = at if phase["first_start"] is None else min(phase["first_start"], at)
        if end is not None:
            at = round(end - triggered, 1)
            phase["last_end"] = at if phase["last_end"] is None else max(phase["last_end"], at)
    return dict(sorted(phases.items(), key=lambda kv: kv[1]["first_start"] if kv[1]["first_start"] is not None
                       else float("inf")))


def job_spans(jobs: list[dict], triggered: float) -> list[dict]:
    """The drill's ASR jobs as seconds after the trigger (start, end), longest first per scenario."""
    spans = [{"scenario": j["scenario"], "state": j["state"], "start": round(j["start"] - triggered, 1),
              "end": round(j["end"] - triggered, 1) if j["end"] else None} for j in jobs]
    return sorted(spans, key=lambda j: (j["scenario"], -((j["end"] or 0) - j["start"])))[:6]


def drill_once(stack: Stack, site_file: Path, dag_id: str, conf: dict, timeout: float, per_vm: bool = False) -> dict:
    lab, api = stack.lab, stack.api
    since_seq, since = lab.last_request_seq(), time.time()
    run_id = api.trigger_when_parsed(dag_id, conf)
    triggered = time.monotonic()
    state = api.wait(dag_id, run_id, timeout=timeout)
    wall = time.monotonic() - triggered
    ended = time.time()
    requests = lab.requests(since=since_seq)
    run = api.dag_run(dag_id, run_id)
    tis = api.task_instances(dag_id, run_id)
    jobs = drill_jobs(lab, site_file, since)
    path = critical_path(jobs, per_vm)
    left = lab.state()
    figures = {
        "state": state, "wall_seconds": round(wall, 1),
        "run_seconds_scheduler": round(ts(run["end_date"]) - ts(run["start_date"]), 1)
        if run.get("start_date") and run.get("end_date") else None,
        "task_instances": len(tis), "task_states": dict(Counter(ti["state"] for ti in tis)),
        "requests": request_figures(requests, 1),
        "asr_jobs": dict(Counter(f"{j['scenario']} {j['state']}" for j in jobs)),
        "critical_path": path,
        "wall_over_critical_path": round(wall / path["seconds"], 2) if path["seconds"] else None,
        "left_behind": {"in_test_failover": len(left["inTestFailover"]), "test_vms": len(left["testVms"])},
        "tasks": task_phases(tis, ended - wall),
        "jobs": job_spans(jobs, ended - wall),
    }
    print(f"  {dag_id}: {state} in {wall:.0f}s, {len(tis)} task instances, critical path {path['seconds']}s "
          f"(x{figures['wall_over_critical_path']})", flush=True)
    return figures


#: drill.cleanup_when -> (site of the one-by-one drill, results key)
ONE_BY_ONE = {"all_verified": (VM_SITE, "one_by_one"), "vm_verified": (f"{VM_SITE}-each", "one_by_one_vm_verified")}


def run_bench(workdir: Path, vms: int = 200, poll_interval: str = "30s", time_scale: float = 1.0,
              timeout: float = 3600, one_by_one: bool = True, drill_plans: bool = True,
              cleanup_modes: tuple[str, ...] = ("all_verified",)) -> dict:
    from bench.estate_200 import build_site, is_protectable, write

    estate_file, include, estate = write(workdir / "estate", vms, {ENABLE_SITE: {"poll_interval": "1s"}})
    primary = next(s for s in estate["sites"] if s["role"] == "primary")
    protectable = [vm for vm in primary["vms"] if is_protectable(vm)]
    plans = bench_plans(protectable)
    sites = {ENABLE_SITE: build_site(ENABLE_SITE, poll_interval="1s", recovery_plans=plans),
             PLAN_SITE: build_site(PLAN_SITE, poll_interval=poll_interval, recovery_plans=plans),
             **{site: build_site(site, poll_interval=poll_interval, cleanup_when=mode)
                for mode, (site, _) in ONE_BY_ONE.items() if mode in cleanup_modes}}
    for name, site in sites.items():
        (include / "sites" / f"{name}.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    conditions = {"protectable_vms": len(protectable), "time_scale": time_scale, "poll_interval": poll_interval,
                  "plan_poll_interval": sites[PLAN_SITE]["timeouts"].get("plan_poll_interval", "10s"),
                  "watch_interval": sites[PLAN_SITE]["timeouts"].get("watch_interval", "5s"),
                  "cleanup_when": list(cleanup_modes),
                  "plans": {p["name"]: [len(g["vms"]) for g in p["groups"]] for p in plans},
                  "executor": "LocalExecutor", "database": "sqlite, WAL journal, 60 s busy timeout",
                  "cpus": os.cpu_count(), "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    results: dict = {"conditions": conditions}
    with Stack(workdir, estate_file, include, 0, sqlite_wal=True,
               extra_env={"AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER": str(workdir / "reports")}) as stack:
        lab = stack.lab
        print(f"  Airflow up on port {stack.port}; {len(protectable)} protectable VMs; plans "
              f"{conditions['plans']}", flush=True)
        deploy = f"asr_deploy__{ENABLE_SITE}"
        _, state, deploy_s = stack.run_dag(deploy, timeout=900)
        if state != "success":
            raise RuntimeError(f"{deploy} {state}; see {stack.airflow_home / 'logs'}")
        enabled = enable_with_sdk(lab, include / "sites" / f"{ENABLE_SITE}.yaml")
        _, state, plans_s = stack.run_dag(deploy, timeout=900)  # the plans, now that every VM is protected
        if state != "success":
            raise RuntimeError(f"{deploy} (plans) {state}; see {stack.airflow_home / 'logs'}")
        print(f"  deployed in {deploy_s:.0f}s, protected in {enabled['seconds']:.0f}s, plans in {plans_s:.0f}s",
              flush=True)
        results["setup"] = {"deploy_seconds": round(deploy_s, 1), "enable": enabled,
                            "plans_seconds": round(plans_s, 1)}
        lab.set_time_scale(time_scale)
        if drill_plans:
            conditions["load_average_1m_at_plan_drill"] = round(os.getloadavg()[0], 2)
            results["plans"] = drill_once(stack, include / "sites" / f"{PLAN_SITE}.yaml",
                                          f"asr_test_failover_drill__{PLAN_SITE}", {"unattended": True}, timeout)
        if not one_by_one:
            return results
        for mode in cleanup_modes:
            site, key = ONE_BY_ONE[mode]
            conditions[f"load_average_1m_at_{key}"] = round(os.getloadavg()[0], 2)
            results[key] = drill_once(stack, include / "sites" / f"{site}.yaml", f"asr_test_failover_drill__{site}",
                                      {}, timeout, per_vm=mode == "vm_verified")
    reports = sorted((workdir / "reports").rglob("*.json"))
    results["report_verdicts"] = {p.parent.name: json.loads(p.read_text()).get("verdict") for p in reports}
    return results


def summary(figures: dict) -> str:
    c, lines = figures["conditions"], []
    lines.append(f"Drill of {c['protectable_vms']} VMs, time scale {c['time_scale']}, poll interval "
                 f"{c['poll_interval']}, watch interval {c.get('watch_interval')} "
                 f"(plan jobs {c.get('plan_poll_interval')}), "
                 f"plans {c['plans']} (load {c.get('load_average_1m_at_plan_drill')} on {c['cpus']} CPUs):")
    for key, label in (("plans", "in 2 plans"), ("one_by_one", "one by one"),
                       ("one_by_one_vm_verified", "one by one, each cleaned up once verified")):
        if key not in figures:
            continue
        f = figures[key]
        lines.append(f"  {label}: {f['state']} in {f['wall_seconds']:.0f} s; critical path "
                     f"{f['critical_path']['seconds']} s (wall x{f['wall_over_critical_path']}); "
                     f"{f['task_instances']} task instances; {f['requests']['arm_requests']} ARM requests "
                     f"({f['requests']['mutating']} mutating); ASR jobs {f['asr_jobs']}")
        lines.append(f"    per VM: wall over critical path x{f['wall_over_critical_path']}, "
                     f"{(f['wall_seconds'] - f['critical_path']['seconds']) / c['protectable_vms']:.2f} s of "
                     f"overhead per VM beyond ASR's own {f['critical_path']['seconds']} s")
    if "plans" not in figures:
        return "\n".join(lines)
    lines.append("  plan drill, seconds after the trigger: " + "; ".join(
        f"{task} x{t['count']} {t['first_start']}-{t['last_end']}" for task, t in figures["plans"]["tasks"].items()))
    lines.append("  its ASR jobs: " + "; ".join(f"{j['scenario']} {j['start']}-{j['end']}"
                                                 for j in figures["plans"]["jobs"]))
    p, v = figures["plans"], figures.get("one_by_one")
    if v and p["wall_seconds"] and v["wall_seconds"]:
        lines.append(f"  plans / one by one: wall {p['wall_seconds'] / v['wall_seconds']:.2f}, task instances "
                     f"{p['task_instances'] / max(v['task_instances'], 1):.2f}, ARM requests "
                     f"{p['requests']['arm_requests'] / max(v['requests']['arm_requests'], 1):.2f}")
    return "\n".join(lines)
