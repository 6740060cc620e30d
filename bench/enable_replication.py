"""Enable replication of about 200 VMs under a real scheduler, triggerer and LocalExecutor.

`dag.test` runs triggers inline, so it cannot show what matters here: how many worker slots
the DAG holds while VMs wait for ASR. This part of `make bench` starts the lab on a generated
estate (bench/estate_200.py) and ``airflow standalone`` (scheduler, dag-processor, triggerer,
api-server, LocalExecutor; SQLite in a temporary AIRFLOW_HOME) with the lab handed over as
``AIRFLOW_CONN_*`` variables, deploys the site (``asr_deploy__bench``), then triggers
``asr_enable_replication__bench`` and samples every 0.5 s, straight from the metadata DB, the
state of every task instance of the run.

Two runs:

* **time scale 0** (every ASR job ends on its next read): wall time of the run and ARM
  requests per VM (the lab's request log: total, mutating, reads);
* **time scale > 0** (EnableDr takes seconds, initial replication one to three minutes) with
  the realistic 30 s poll interval, on fewer VMs so that it stays short: ARM reads per VM per
  minute of waiting, and worker slots held while waiting.

What is counted as "waiting on a worker": a task instance in state ``running`` whose task is
``wait_enable_job`` or ``wait_initial_replication`` (their first read before deferring, and
the resume after the trigger fired), or an ``enable`` that was resumed after waiting for a
free initial-replication slot (``next_method`` set). Deferred task instances wait in the
triggerer and hold no worker slot. Besides the peaks, the time-weighted mean is reported, so
brief pokes show as what they are.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from bench.stack import Stack, request_figures, request_kind, task_durations, task_instances

FAST_SITE, SLOW_SITE = "bench", "bench-30s"  # the same site file, with a 1 s and a 30 s poll interval
GROUP = "protect_vm."
WAITS = (f"{GROUP}wait_enable_job", f"{GROUP}wait_initial_replication")
ENABLE = f"{GROUP}enable"
SAMPLE_SECONDS = 0.5


# ------------------------------------------------------------------------------------ sampling
class Sampler(threading.Thread):
    """Every 0.5 s: the run's task instances by (task_id, state, resumed), read-only from the metadata DB."""

    QUERY = ("SELECT task_id, state, next_method IS NOT NULL, count(*) FROM task_instance "
             "WHERE dag_id = ? AND run_id = ? GROUP BY 1, 2, 3")

    def __init__(self, db: Path, dag_id: str, run_id: str) -> None:
        super().__init__(daemon=True)
        self.db, self.dag_id, self.run_id = db, dag_id, run_id
        self.samples: list[tuple[float, list[tuple[str, str, int, int]]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            while not self._halt.is_set():
                started = time.time()
                try:
                    rows = conn.execute(self.QUERY, (self.dag_id, self.run_id)).fetchall()
                    self.samples.append((started, [(t, s or "none", int(r), n) for t, s, r, n in rows]))
                except sqlite3.OperationalError:
                    pass  # locked for a moment: the next sample comes in 0.5 s
                self._halt.wait(max(0.0, SAMPLE_SECONDS - (time.time() - started)))
        finally:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def figures(self) -> dict:
        """Peaks and time-weighted means of worker slots held, split into waiting and working."""
        def classify(rows):
            c = Counter()
            for task_id, state, resumed, n in rows:
                c[state] += n
                if state == "running":
                    if task_id in WAITS or (task_id == ENABLE and resumed):
                        c["running_waiting"] += n
                        c[f"running:{task_id.removeprefix(GROUP)}{'(resumed)' if task_id == ENABLE else ''}"] += n
                    else:
                        c["running_working"] += n
                if state == "deferred":
                    c[f"deferred:{task_id.removeprefix(GROUP)}"] += n
            return c

        series = [(t, classify(rows)) for t, rows in self.samples]
        if not series:
            return {"samples": 0}
        keys = sorted({k for _, c in series for k in c})
        peaks = {k: max(c[k] for _, c in series) for k in keys}
        span = series[-1][0] - series[0][0]
        means = {}
        if span > 0:
            for k in ("running", "running_waiting", "running_working", "deferred", "queued"):
                area = sum(c[k] * (series[i + 1][0] - t) for i, (t, c) in enumerate(series[:-1]))
                means[k] = round(area / span, 3)
        waits_slot_seconds = sum(c["running_waiting"] * (series[i + 1][0] - t) for i, (t, c) in enumerate(series[:-1]))
        return {
            "samples": len(series), "sample_interval_s": SAMPLE_SECONDS, "seconds_sampled": round(span, 1),
            "peak": {k: v for k, v in peaks.items() if v},
            "time_weighted_mean": means,
            "worker_slot_seconds_held_by_waits": round(waits_slot_seconds, 1),
        }


# ------------------------------------------------------------------------------------ run facts
def enable_jobs(db: Path, dag_id: str, run_id: str) -> dict[int, str]:
    """map_index -> the EnableDr job name each enable task returned (XCom)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT map_index, value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? "
                            "AND key = 'return_value'", (dag_id, run_id, ENABLE)).fetchall()
    finally:
        conn.close()
    jobs = {}
    for map_index, value in rows:
        try:
            value = json.loads(value)
        except (TypeError, ValueError):
            pass
        if isinstance(value, str):
            jobs[map_index] = value.lower()
    return jobs


def waiting_figures(tis: list[dict], requests: list[dict], vm_ids: dict[str, str], jobs: dict[int, str]) -> dict:
    """ARM reads per VM per minute of waiting.

    A VM waits from the start of its ``wait_enable_job`` to the end of its
    ``wait_initial_replication``. Its own reads are the GETs of its EnableDr job and of its
    protected item within that window (the item's path carries the VM's GUID, the job's name is
    the enable task's XCom); shared reads are the protected-item list calls in the same period
    (each enable counting busy slots, and the slot trigger), spread over all waiting VMs.
    """
    per_vm: dict[str, dict] = {}
    for ti in tis:
        if ti["task_id"] in (*WAITS, ENABLE) and ti.get("vm"):
            per_vm.setdefault(ti["vm"], {})[ti["task_id"]] = ti
    arm_gets = [r for r in requests if r["service"] == "arm" and r["method"] == "GET"]
    own_reads, minutes, ir_reads, ir_minutes, windows, example = 0, 0.0, 0, 0.0, [], None
    for vm, tasks in per_vm.items():
        job_ti, ir_ti, enable_ti = tasks.get(WAITS[0]), tasks.get(WAITS[1]), tasks.get(ENABLE)
        if not (job_ti and ir_ti and job_ti["start"] and ir_ti["start"] and ir_ti["end"]):
            continue
        start, end = job_ti["start"], ir_ti["end"]
        windows.append((start, end))
        item = (vm_ids.get(vm) or "?").lower()
        job = jobs.get(enable_ti["map_index"]) if enable_ti else None
        mine = [r for r in arm_gets if start <= r["started"] <= end and (
            r["path"].lower().endswith(f"/replicationprotecteditems/{item}")
            or (job and r["path"].lower().endswith(f"/replicationjobs/{job}")))]
        own_reads += len(mine)
        minutes += (end - start) / 60
        ir_reads += sum(1 for r in mine if ir_ti["start"] <= r["started"] and "/replicationprotecteditems/" in r["path"].lower())
        ir_minutes += (end - ir_ti["start"]) / 60
        if example is None or len(mine) > len(example["reads"]):  # the VM that waited longest, as evidence
            example = {"vm": vm, "t0": "start of wait_enable_job",
                       "wait_enable_job_s": [0, round(job_ti["end"] - start, 1)],
                       "wait_initial_replication_s": [round(ir_ti["start"] - start, 1), round(end - start, 1)],
                       "reads": [[round(r["started"] - start, 1), request_kind(r)] for r in mine]}
    if not windows:
        return {}
    first, last = min(w[0] for w in windows), max(w[1] for w in windows)
    shared = [r for r in arm_gets if first <= r["started"] <= last and request_kind(r) == "GET protected item list"]
    in_window = [r for r in arm_gets if first <= r["started"] <= last]
    return {
        "vms_waited": len(windows), "window_s": round(last - first, 1),
        "vm_waiting_minutes": round(minutes, 2), "mean_wait_per_vm_s": round(minutes * 60 / len(windows), 1),
        "mean_initial_replication_wait_s": round(ir_minutes * 60 / len(windows), 1),
        "own_reads": own_reads, "shared_list_reads": len(shared),
        "all_reads_in_window": len(in_window), "reads_in_window_by_kind": dict(Counter(map(request_kind, in_window)).most_common()),
        "reads_per_vm_per_waiting_minute": {
            "own": round(own_reads / minutes, 3) if minutes else None,
            "own_plus_shared": round((own_reads + len(shared)) / minutes, 3) if minutes else None,
            "everything_in_window": round(len(in_window) / minutes, 3) if minutes else None,
            "initial_replication_wait_only": round(ir_reads / ir_minutes, 3) if ir_minutes else None,
        },
        "goal_reads_per_vm_per_waiting_minute": 2,
        "example_vm": example,
    }


def enable_chain(tis: list[dict]) -> dict:
    """The enables run one at a time (max_active_tis_per_dagrun=1): their busy time and the gaps between them."""
    enables = sorted((t for t in tis if t["task_id"] == ENABLE and t["start"] and t["end"]), key=lambda t: t["start"])
    if len(enables) < 2:
        return {}
    gaps = [max(0.0, b["start"] - a["end"]) for a, b in zip(enables, enables[1:])]
    return {"enables": len(enables), "first_start_to_last_end_s": round(enables[-1]["end"] - enables[0]["start"], 1),
            "sum_of_enable_task_s": round(sum(t["end"] - t["start"] for t in enables), 1),
            "mean_gap_between_enables_s": round(sum(gaps) / len(gaps), 2)}


# ------------------------------------------------------------------------------------ the bench
def one_run(stack: Stack, site: str, label: str, conf: dict, vms: int, timeout: float, time_scale: float,
            vm_ids: dict[str, str]) -> dict:
    lab, api = stack.lab, stack.api
    deploy_dag, enable_dag = f"asr_deploy__{site}", f"asr_enable_replication__{site}"
    lab.set_time_scale(0)
    t0 = time.monotonic()
    deploy = api.trigger_when_parsed(deploy_dag)
    state = api.wait(deploy_dag, deploy, timeout=600)
    deploy_s = time.monotonic() - t0
    if state != "success":
        raise RuntimeError(f"{deploy_dag} {state}; see {stack.airflow_home / 'logs'}")
    print(f"  [{label}] {deploy_dag}: {state} in {deploy_s:.0f}s", flush=True)
    lab.set_time_scale(time_scale)
    since = lab.last_request_seq()
    run_id = api.trigger_when_parsed(enable_dag, conf)
    sampler = Sampler(stack.db, enable_dag, run_id)
    sampler.start()
    started = time.monotonic()
    try:
        state = api.wait(enable_dag, run_id, timeout=timeout)
    finally:
        sampler.stop()
    wall = time.monotonic() - started
    requests = lab.requests(since=since)
    tis = task_instances(stack.db, enable_dag, run_id)
    run = next(t for t in tis if t["task_id"] == "__run__")
    tis = [t for t in tis if t["task_id"] != "__run__"]
    waiting = waiting_figures(tis, requests, vm_ids, enable_jobs(stack.db, enable_dag, run_id))
    slots = sampler.figures()
    if waiting.get("vms_waited"):
        slots["worker_slot_seconds_per_vm_by_waits"] = round(
            slots.get("worker_slot_seconds_held_by_waits", 0) / waiting["vms_waited"], 2)
    vms_done = sum(1 for t in tis if t["task_id"] == WAITS[1] and t["state"] == "success")
    print(f"  [{label}] {enable_dag}: {state} in {wall:.0f}s, {vms_done} of {vms} VMs protected", flush=True)
    return {
        "time_scale": time_scale, "state": state, "vms": vms, "vms_protected": vms_done,
        "deploy_seconds": round(deploy_s, 1),
        "wall_seconds": round(wall, 1),
        "run_seconds_scheduler": round(run["end"] - run["start"], 1) if run["start"] and run["end"] else None,
        "requests": request_figures(requests, vms),
        "worker_slots": slots,
        "waiting": waiting,
        "tasks": task_durations(tis, GROUP),
        "enable_chain": enable_chain(tis),
    }


def run_bench(workdir: Path, vms: int = 200, max_concurrent: int = 20, scaled_vms: int = 24,
              time_scale: float = 0.04, poll_interval: str = "30s", fast_poll_interval: str = "1s",
              skip_scaled: bool = False) -> dict:
    """Both runs, on one lab and one Airflow; the lab is reset and the site deployed again between them."""
    from bench.estate_200 import is_protectable, write

    sites = {FAST_SITE: {"max_concurrent": max_concurrent, "poll_interval": fast_poll_interval},
             SLOW_SITE: {"max_concurrent": max_concurrent, "poll_interval": poll_interval}}
    estate_file, include, estate = write(workdir / "estate", vms, sites)
    primary = next(s for s in estate["sites"] if s["role"] == "primary")
    protectable = [vm for vm in primary["vms"] if is_protectable(vm)]
    vm_ids = {vm["name"]: vm["id"] for vm in protectable}
    conditions = {"protectable_vms": len(protectable), "vms_in_estate": len(primary["vms"]),
                  "max_concurrent_initial_replications": max_concurrent, "executor": "LocalExecutor",
                  "database": "sqlite", "airflow": "airflow standalone (scheduler, dag-processor, triggerer, "
                  "api-server), default parallelism and max_active_tasks", "cpus": os.cpu_count(),
                  "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    results: dict = {"conditions": conditions}
    with Stack(workdir, estate_file, include, 0) as stack:
        print(f"  Airflow up on port {stack.port}; lab estate with {len(protectable)} protectable VMs", flush=True)
        first = one_run(stack, FAST_SITE, "time scale 0", {}, len(protectable), timeout=1500, time_scale=0,
                        vm_ids=vm_ids)
        first["poll_interval"] = fast_poll_interval
        results["scale_0"] = first
        if not skip_scaled:
            # Second run: a fresh lab, the realistic poll interval, a time scale at which initial
            # replication of the chosen VMs takes one to three minutes.
            chosen = _scaled_choice(protectable, scaled_vms, time_scale)
            stack.lab.reset()
            run = one_run(stack, SLOW_SITE, f"time scale {time_scale}", {"vms": [vm["name"] for vm in chosen]},
                          len(chosen), timeout=1200, time_scale=time_scale, vm_ids=vm_ids)
            run["poll_interval"] = poll_interval
            sizes = [sum(d["size_gb"] for d in vm["disks"]) for vm in chosen]
            run["chosen_vms"] = {"count": len(chosen), "total_gb_min": min(sizes), "total_gb_max": max(sizes),
                                 "lab_initial_replication_s_min": round((120 + 8 * min(sizes)) * time_scale, 1),
                                 "lab_initial_replication_s_max": round((120 + 8 * max(sizes)) * time_scale, 1)}
            results[f"scale_{time_scale}"] = run
    return results


def _scaled_choice(protectable: list[dict], count: int, time_scale: float) -> list[dict]:
    """``count`` VMs whose initial replication takes 1 to 2 minutes at ``time_scale`` (120 s + 8 s per GB)."""
    def ir(vm):
        return (120 + 8 * sum(d["size_gb"] for d in vm["disks"])) * time_scale

    return [vm for vm in protectable if 60 <= ir(vm) <= 120][:count]


def summary(figures: dict) -> str:
    """The figures that matter, in a few lines."""
    lines = ["Enable replication (" + ", ".join(f"{k}={v}" for k, v in figures["conditions"].items()) + "):"]
    for key, run in figures.items():
        if not key.startswith("scale_"):
            continue
        req, slots, wait = run["requests"], run["worker_slots"], run.get("waiting") or {}
        peak, mean = slots.get("peak", {}), slots.get("time_weighted_mean", {})
        rates = wait.get("reads_per_vm_per_waiting_minute") or {}
        lines += [
            f"  time scale {run['time_scale']}, poll {run['poll_interval']}, {run['vms']} VMs: {run['state']} in "
            f"{run['wall_seconds']:.0f} s ({run['vms_protected']} protected; deploy before it {run['deploy_seconds']:.0f} s)",
            f"    ARM requests per VM: {req['per_vm']['arm_requests']} ({req['per_vm']['mutating']} mutating, "
            f"{req['per_vm']['reads']} reads); token requests {req['token_requests']}; by kind {req['by_kind']}",
            f"    worker slots: peak running {peak.get('running', 0)} (waiting {peak.get('running_waiting', 0)}, "
            f"working {peak.get('running_working', 0)}), peak deferred {peak.get('deferred', 0)}; mean running "
            f"{mean.get('running')} (waiting {mean.get('running_waiting')}) vs deferred {mean.get('deferred')}; "
            f"{slots.get('worker_slot_seconds_per_vm_by_waits')} worker-slot seconds per VM held by waits",
        ]
        if run.get("enable_chain"):
            lines.append(f"    enables, one at a time: {run['enable_chain']}")
        if rates:
            lines.append(f"    ARM reads per VM per waiting minute: {rates} (goal <= 2; mean wait "
                         f"{wait['mean_wait_per_vm_s']} s per VM)")
    return "\n".join(lines)
