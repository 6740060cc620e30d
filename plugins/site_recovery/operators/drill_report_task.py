"""The drill's last task: gather what every task recorded, decide the verdict, write and publish the report."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from airflow.sdk import get_current_context
from site_recovery.operators.deploy_common import load_site_named
from site_recovery.operators.drill import GATE_TASK, DrillFailed, utc_now

log = logging.getLogger(__name__)
GROUP = "drill_vm"


def reports_folder() -> Path:
    """``[site_recovery] reports_folder`` (env ``AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER``), else
    ``$AIRFLOW_HOME/drill-reports``."""
    from airflow.configuration import conf

    configured = conf.get("site_recovery", "reports_folder", fallback=None)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "drill-reports"


def report_asset_uri(site_name: str) -> str:
    """The Asset each drill of a site updates (other DAGs may schedule on it)."""
    return f"asr://drill-report/{site_name}"


def _mapped(ti, task_id: str, count: int, key: str = "return_value") -> list[Any]:
    if count == 0:
        return []
    pulled = ti.xcom_pull(task_ids=f"{GROUP}.{task_id}", key=key, map_indexes=list(range(count)))
    if not isinstance(pulled, list):
        pulled = [pulled]
    return list(pulled) + [None] * (count - len(pulled))


def _task_timings(ti, context, targets: list[dict]) -> list[dict[str, Any]]:
    """State and duration of every task of the run that has ended, mapped ones labelled by VM."""
    try:
        crumbs = list(ti.get_task_breadcrumbs(context["dag"].dag_id, context["run_id"]))
    except Exception as exc:  # the timings are a courtesy: a report without them beats no report
        log.warning("Could not read the run's task timings: %s", exc)
        return []
    rows = []
    for crumb in crumbs:
        index = crumb.get("map_index")
        label = targets[index]["vm"] if isinstance(index, int) and 0 <= index < len(targets) else None
        rows.append({"task_id": crumb.get("task_id"), "map_index": label, "state": crumb.get("state"),
                     "start": None, "end": None, "duration_seconds": crumb.get("duration")})
    return rows


def build_report(site, context) -> dict[str, Any]:
    from site_recovery.drill import vm_result
    from site_recovery.drill_report import verdict_of

    ti, run = context["ti"], context["dag_run"]
    gate = ti.xcom_pull(task_ids=GATE_TASK, key="gate") or {}
    targets = gate.get("targets") or []
    n = len(targets)
    failovers = _mapped(ti, "wait_test_failover", n)
    failover_jobs = _mapped(ti, "wait_test_failover", n, key="asr_job_name")
    verifies = _mapped(ti, "verify_test_vm", n, key="verify")
    cleanup_names = ti.xcom_pull(task_ids="start_cleanup", key="cleanup_jobs") or {}
    cleanup_jobs = ti.xcom_pull(task_ids="wait_cleanup", key="jobs") or {}
    proof = ti.xcom_pull(task_ids="verify_cleanup", key="proof")
    hook = None
    vms = []
    for i, target in enumerate(targets):
        failover = failovers[i]
        error = None
        if failover is None and failover_jobs[i]:
            # The wait failed, so it returned nothing: read the job to report ASR's own words.
            from site_recovery.hooks.asr import summarize_job
            from site_recovery.operators.drill import drill_hook

            hook = hook or drill_hook(site)
            failover = summarize_job(hook.get_job(site.azure.resource_group, site.azure.vault_name, failover_jobs[i]))
        if failover is None:
            error = "the test failover was not started"
        elif failover.get("state") != "Succeeded" or failover.get("state_description") == "PartiallySucceeded":
            errs = "; ".join(f"[{e.get('code')}] {e.get('message')}" for e in failover.get("errors") or [])
            error = f"TestFailover job {failover.get('state_description') or failover.get('state')}" + (
                f": {errs}" if errs else "")
        elif not (verifies[i] or {}).get("ok"):
            error = f"not verified: {(verifies[i] or {}).get('detail') or 'the verify task did not finish'}"
        cleaned = ((proof or {}).get("per_vm") or {}).get(target["vm"])
        if error is None and not (cleaned or {}).get("verified"):
            error = "cleanup not verified: " + ((cleaned or {}).get("detail") or "verify_cleanup did not run")
        job_name = cleanup_names.get(target["vm"])
        vms.append(vm_result(target, failover_job=failover, verify=verifies[i],
                             cleanup_job=cleanup_jobs.get(job_name) if job_name else None, cleaned=cleaned,
                             error=error, rto_target=site.drill.rto_target.total_seconds(),
                             rpo_target=site.drill.rpo_target.total_seconds()))
    for skipped in gate.get("skipped") or []:
        vms.append({"vm": skipped["vm"], "cloud": None, "outcome": "skipped", "error": skipped["reason"],
                    "jobs": [], "probes": [], "timeline": [], "verify": None, "cleanup": None,
                    "recovery_point_time": None, "rpo_achieved_seconds": None, "rpo_met": None,
                    "rto_seconds": None, "rto_met": None, "test_vm_name": None})
    cleanup_proof = proof or {"verified_at": None, "items_in_test_failover": [], "test_vms_left": [],
                              "incomplete": True}
    verdict, reasons = verdict_of(vms, cleanup_proof, site.drill.on_gate_failure == "fail")
    if not gate:
        verdict, reasons = "FAIL", ["the readiness gate did not run to the end: see its task log"] + reasons
    started = gate.get("started_at") or (run.start_date.isoformat() if getattr(run, "start_date", None) else None)
    tasks = _task_timings(ti, context, targets)
    return {
        "schema": 1, "site": site.name, "dag_id": context["dag"].dag_id, "run_id": context["run_id"],
        "trigger": "scheduled" if str(context["run_id"]).startswith("scheduled") else "manual",
        "started_at": started, "ended_at": utc_now().isoformat(), "verdict": verdict, "reasons": reasons,
        "targets": {"rpo_seconds": site.drill.rpo_target.total_seconds(),
                    "rto_seconds": site.drill.rto_target.total_seconds()},
        "test_network": gate.get("test_network"), "recovery_vmm": site.recovery.vmm.fqdn,
        "gate": {k: gate.get(k) for k in ("checked", "passed", "skipped", "leftovers_cleaned")},
        "vms": vms, "cleanup_proof": {k: v for k, v in cleanup_proof.items() if k != "per_vm"}, "tasks": tasks,
    }


def drill_report(site_name: str) -> dict[str, Any]:
    """Write the JSON and HTML report and publish it as the site's Asset event; return verdict and paths.

    It succeeds whatever the verdict, so the Asset event is published for failed drills too;
    :func:`check_verdict` then fails the run when the verdict is FAIL.
    """
    from site_recovery.drill_report import load_history, write_report

    context = get_current_context()
    site = load_site_named(site_name)
    report = build_report(site, context)
    folder = reports_folder()
    history = load_history(folder, site.name, exclude_run_id=report["run_id"])
    paths = write_report(folder, report, history)
    log.info("Drill report (%s): %s\nJSON: %s", report["verdict"], paths["html"], paths["json"])
    events = context.get("outlet_events")
    if events is not None:
        events[report_asset(site.name)].extra = {
            "verdict": report["verdict"], "html": paths["html"], "json": paths["json"], "run_id": report["run_id"]}
    for vm in report["vms"]:
        log.info("%s: %s%s", vm["vm"], vm["outcome"], f" ({vm['error']})" if vm.get("error") else "")
    return {"verdict": report["verdict"], "reasons": report["reasons"], **paths}


def report_asset(site_name: str):
    from airflow.sdk import Asset

    return Asset(name=f"asr_drill_report__{site_name}", uri=report_asset_uri(site_name))


def check_verdict(site_name: str) -> str:
    """Fail the run when the drill's verdict is FAIL (teardowns and the report never mask it)."""
    outcome = get_current_context()["ti"].xcom_pull(task_ids="drill_report")
    if not outcome:
        raise DrillFailed(f"The drill of site {site_name} wrote no report: see the drill_report task log.")
    if outcome["verdict"] != "PASS":
        raise DrillFailed(f"Drill verdict FAIL for site {site_name}: " + "; ".join(outcome["reasons"])
                          + f". Report: {outcome['html']}")
    log.info("Drill verdict PASS. Report: %s", outcome["html"])
    return outcome["verdict"]
