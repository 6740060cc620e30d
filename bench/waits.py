"""Waits at once (issue 13's first goal): a thousand VMs waited on by one triggerer-like process.

Half the VMs wait on a test failover job (``AsrJobTrigger``), half on their initial replication
(``InitialReplicationTrigger``), all on one event loop in one process, as a triggerer runs them,
against the lab with ARM's throttling on (its default). The estate is generated (bench/estate_200.py),
deployed through the deployment DAG under ``airflow standalone``; the waits themselves run in a
process of their own so that its memory and CPU are theirs alone.

Figures: ARM reads per minute (the lab's request log, over the time the waits ran), 429s, token
requests to Entra, the waiting process's RSS per wait and CPU seconds per minute, the event loop's
worst lag, and how long after ASR ended a job (or finished a VM's initial replication) its wait
ended (median, p90, max). Goals: <= 250 reads/min, zero 429s, <= 50 KB per wait, <= 2 s CPU/min,
every completion noticed within 10 s (median <= 5 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SITE = "waits"
CONN_ID = "azure_asr_lab"


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _wait_all(spec: dict) -> dict:
    from site_recovery.hooks.shared import SHARED_HOOKS
    from site_recovery.triggers.asr import AsrJobTrigger
    from site_recovery.triggers.protection import InitialReplicationTrigger

    rg, vault, poll = spec["resource_group"], spec["vault"], spec["poll_interval"]
    end_time = time.time() + spec["timeout"]
    ended: dict[str, float] = {}
    reasons: dict[str, str] = {}
    lag = {"max": 0.0, "rss_peak_kb": 0}

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.25)
            lag["max"] = max(lag["max"], time.perf_counter() - before - 0.25)
            lag["rss_peak_kb"] = max(lag["rss_peak_kb"], _rss_kb())

    async def one(key: str, trigger) -> None:
        async for event in trigger.run():
            ended[key] = time.time()
            reasons[key] = event.payload["reason"]

    rss_before = _rss_kb()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.time()
    triggers = [(f"job:{name}", AsrJobTrigger(azure_conn_id=CONN_ID, resource_group_name=rg, vault_name=vault,
                                              job_name=name, poll_interval=poll, end_time=end_time))
                for name in spec["jobs"]]
    triggers += [(f"item:{item['vm']}", InitialReplicationTrigger(
        azure_conn_id=CONN_ID, resource_group_name=rg, vault_name=vault, fabric_name=item["fabric"],
        container_name=item["container"], item_name=item["item"], vm_name=item["vm"], poll_interval=poll,
        end_time=end_time)) for item in spec["items"]]
    tick = asyncio.ensure_future(ticker())
    await asyncio.gather(*(one(key, trigger) for key, trigger in triggers))
    wall = time.time() - started
    tick.cancel()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    await SHARED_HOOKS.aclose()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"started": started, "wall_seconds": wall, "ended": ended, "reasons": reasons,
            "cpu_seconds": cpu, "rss_before_kb": rss_before, "rss_peak_kb": lag["rss_peak_kb"],
            "loop_lag_max_seconds": lag["max"], "waits": len(triggers)}


def child_main(spec_file: str, out_file: str) -> int:
    """The waiting process: ``python -m bench.waits SPEC OUT``."""
    spec = json.loads(Path(spec_file).read_text())
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(spec["connection"])
    Path(out_file).write_text(json.dumps(asyncio.run(_wait_all(spec))))
    return 0


def _spread(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {"count": len(ordered), "median": round(statistics.median(ordered), 2),
            "p90": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], 2), "max": round(ordered[-1], 2)}


def _ts(value) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def run_bench(workdir: Path, vms: int = 1000, poll_interval: float = 5.0, timeout: float = 1800) -> dict:
    """Deploy a generated estate of ``vms`` protectable VMs, protect half of them at time scale 0, enable the
    other half at time scale 0.1 (initial replications of about 1.5 to 7 minutes), start the first half's
    test failovers at time scale 1 (2 min 37 s each), then wait on all of them at once in one process.
    ARM's throttling is off for the set-up and back on, its buckets full, when the waits start."""
    from bench.drill import enable_with_sdk
    from bench.estate_200 import write
    from bench.stack import Stack
    from tests.labflows import asr_client

    estate_file, include, _ = write(workdir / "estate", vms, {SITE: {"max_concurrent": min(vms, 64),
                                                                     "poll_interval": f"{poll_interval:g}s"}})
    site_file = include / "sites" / f"{SITE}.yaml"
    site = yaml.safe_load(site_file.read_text())
    rg, vault = site["azure"]["resource_group"], site["azure"]["vault_name"]
    conditions = {"vms": vms, "poll_interval_seconds": poll_interval, "cpus": os.cpu_count(),
                  "lab_throttling": "ARM's (reads 250 / 25 per s, writes 200 / 10 per s)",
                  "waits_process": "one asyncio loop, as a triggerer runs its triggers"}
    names = sorted(vm["name"] for vm in estate_vms(workdir))
    protected_first, replicating = set(names[: len(names) // 2]), set(names[len(names) // 2:])
    with Stack(workdir, estate_file, include, 0) as stack:
        lab = stack.lab
        lab.set_throttle(enabled=False)  # the set-up's burst of writes is not what is measured
        _, state, deploy_s = stack.run_dag(f"asr_deploy__{SITE}", timeout=900)
        if state != "success":
            raise RuntimeError(f"asr_deploy__{SITE} {state}; see {stack.airflow_home / 'logs'}")
        print(f"  deployed in {deploy_s:.0f}s", flush=True)
        asr = asr_client(lab)
        enabled = enable_with_sdk(lab, site_file, timeout=1200, vms=protected_first)
        print(f"  {enabled['vms_protected']} VMs protected in {enabled['seconds']:.0f}s", flush=True)
        lab.set_time_scale(0.1)  # initial replications of about 1.5 to 7 minutes
        enable_with_sdk(lab, site_file, vms=replicating, wait=False)
        _until_replicating(asr, rg, vault, replicating)  # their windows open at 0.1 and keep it
        lab.set_time_scale(1)  # a test failover of 2 min 37 s
        items = {i.properties.friendly_name: i for i in asr.replication_protected_items.list(rg, vault)}
        jobs = _start_test_failovers(asr, rg, vault, [items[vm] for vm in sorted(protected_first) if vm in items],
                                     _test_network(asr, rg, vault, site))
        replicating_items = [items[vm] for vm in sorted(replicating) if vm in items]
        print(f"  {len(jobs)} test failovers started, {len(replicating_items)} initial replications running",
              flush=True)
        spec = {"resource_group": rg, "vault": vault, "poll_interval": poll_interval, "timeout": timeout,
                "connection": lab.azure_connection(), "jobs": jobs,
                "items": [{"vm": i.properties.friendly_name, "fabric": _part(i.id, "replicationFabrics"),
                           "container": _part(i.id, "replicationProtectionContainers"), "item": i.name}
                          for i in replicating_items]}
        (workdir / "spec.json").write_text(json.dumps(spec))
        client_id = lab["client_id"].lower()
        tokens_before = lab.identity()["token_requests"].get(client_id, 0)
        seq = lab.last_request_seq()
        lab.set_throttle(enabled=True)  # ARM's buckets, full, as the waits start
        throttled_before = lab.throttle()["throttled"]
        subprocess.run([sys.executable, "-m", "bench.waits", str(workdir / "spec.json"), str(workdir / "out.json")],
                       cwd=REPO, check=True, timeout=timeout + 300)
        out = json.loads((workdir / "out.json").read_text())
        requests = [r for r in lab.requests(since=seq) if r["service"] == "arm"]
        tokens = lab.identity()["token_requests"].get(client_id, 0) - tokens_before
        throttled_after = lab.throttle()["throttled"]
        job_ends = {j.name: _ts(j.properties.end_time) for j in asr.replication_jobs.list(rg, vault)
                    if j.name in set(jobs) and j.properties.end_time}
        ir_ends = _initial_replication_ends(asr, rg, vault, {i["vm"] for i in spec["items"]})
    minutes = out["wall_seconds"] / 60
    reads = [r for r in requests if r["method"] == "GET"]
    notice = [out["ended"][f"job:{name}"] - end for name, end in job_ends.items() if f"job:{name}" in out["ended"]]
    notice_ir = [out["ended"][f"item:{vm}"] - end for vm, end in ir_ends.items() if f"item:{vm}" in out["ended"]]
    reasons: dict[str, int] = {}
    for reason in out["reasons"].values():
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "conditions": conditions,
        "waits": out["waits"], "job_waits": len(jobs), "initial_replication_waits": len(spec["items"]),
        "outcomes": reasons,
        "wall_seconds": round(out["wall_seconds"], 1),
        "arm_reads_per_minute": round(len(reads) / minutes, 1),
        "arm_requests": len(requests),
        "responses_429": sum(1 for r in requests if r["status"] == 429),
        "throttled_by_class": {k: throttled_after[k] - throttled_before.get(k, 0) for k in throttled_after},
        "token_requests": tokens,
        "rss_per_wait_kb": round((out["rss_peak_kb"] - out["rss_before_kb"]) / out["waits"], 1),
        "cpu_seconds_per_minute": round(out["cpu_seconds"] / minutes, 2),
        "loop_lag_max_seconds": round(out["loop_lag_max_seconds"], 3),
        "job_end_to_wait_end": _spread(notice),
        "replication_done_to_wait_end": _spread(notice_ir),
        "goals": {"arm_reads_per_minute": 250, "responses_429": 0, "rss_per_wait_kb": 50,
                  "cpu_seconds_per_minute": 2, "notice_max_seconds": 10, "notice_median_seconds": 5},
    }


def _until_replicating(asr, rg: str, vault: str, vms: set[str], timeout: float = 600) -> None:
    """Wait until no VM of ``vms`` is still in its EnableDr job: a VM's initial replication window opens
    when that job ends, at the time scale of that moment, and keeps its length when the scale changes."""
    from site_recovery.hooks.asr import summarize_protected_item
    from site_recovery.vocabulary import Scenario

    deadline = time.time() + timeout
    while True:
        items = [summarize_protected_item(i) for i in asr.replication_protected_items.list(rg, vault)]
        listed = {i.vm for i in items}
        enabling = sorted(vms - listed) + [i.vm for i in items if i.vm in vms
                                           and i.scenario == Scenario.ENABLE_PROTECTION]
        if not enabling:
            return
        if time.time() > deadline:
            raise RuntimeError(f"{len(enabling)} VMs still enabling after {timeout:.0f}s: {', '.join(enabling[:5])}")
        time.sleep(2)


def estate_vms(workdir: Path) -> list[dict]:
    """The protectable VMs of the generated estate's primary site."""
    from bench.estate_200 import is_protectable

    estate = yaml.safe_load((workdir / "estate" / "estate.yaml").read_text())
    primary = next(s for s in estate["sites"] if s["role"] == "primary")
    return [vm for vm in primary["vms"] if is_protectable(vm)]


def _part(arm_id: str, segment: str) -> str:
    parts = arm_id.split("/")
    return parts[[p.lower() for p in parts].index(segment.lower()) + 1]


def _test_network(asr, rg: str, vault: str, site: dict) -> str:
    """The ARM id of the site's drill network on the recovery VMM."""
    wanted = site["drill"]["test_network"]
    for fabric in asr.replication_fabrics.list(rg, vault):
        for network in asr.replication_networks.list_by_replication_fabrics(rg, vault, fabric.name):
            if network.properties.friendly_name == wanted:
                return network.id
    raise RuntimeError(f"no network {wanted!r} in the vault")


def _start_test_failovers(asr, rg: str, vault: str, items, network: str) -> list[str]:
    from tests.labflows import job_name_from

    def one(item) -> str:
        seen: list = []
        body = {"properties": {"failoverDirection": "PrimaryToRecovery", "networkType": "VmNetworkAsInput",
                               "networkId": network,
                               "providerSpecificDetails": {"instanceType": "ProviderSpecificFailoverInput"}}}
        asr.replication_protected_items.begin_test_failover(
            rg, vault, _part(item.id, "replicationFabrics"), _part(item.id, "replicationProtectionContainers"),
            item.name, body, polling=False, raw_response_hook=lambda r: seen.append(r.http_response.headers))
        return job_name_from(seen[-1])  # the last answer: earlier ones may be 429s azure-core retried

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, items))


def _initial_replication_ends(asr, rg: str, vault: str, vms: set[str]) -> dict[str, float]:
    """When each VM's initial replication finished, as ASR's jobs record it (the last IR job's end)."""
    ends: dict[str, float] = {}
    for job in asr.replication_jobs.list(rg, vault):
        props = job.properties
        if props.target_object_name in vms and "IrCompletion" in (props.scenario_name or "") and props.end_time:
            ends[props.target_object_name] = max(ends.get(props.target_object_name, 0), _ts(props.end_time))
    return ends


def summary(figures: dict) -> str:
    goals = figures["goals"]
    lines = [f"waits at once, {figures['waits']} ({figures['job_waits']} test failover jobs, "
             f"{figures['initial_replication_waits']} initial replications), poll "
             f"{figures['conditions']['poll_interval_seconds']:g} s, {figures['wall_seconds']:.0f} s: "
             f"{figures['outcomes']}",
             f"  ARM reads/min {figures['arm_reads_per_minute']} (goal <= {goals['arm_reads_per_minute']}), "
             f"429s {figures['responses_429']} (goal 0), token requests {figures['token_requests']}",
             f"  RSS per wait {figures['rss_per_wait_kb']} KB (goal <= {goals['rss_per_wait_kb']}), CPU "
             f"{figures['cpu_seconds_per_minute']} s/min (goal <= {goals['cpu_seconds_per_minute']}), loop lag max "
             f"{figures['loop_lag_max_seconds']} s",
             f"  job end -> wait end {figures['job_end_to_wait_end']}; replication done -> wait end "
             f"{figures['replication_done_to_wait_end']} (goal median <= 5 s, max <= 10 s)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1], sys.argv[2]))
