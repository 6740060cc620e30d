"""Tasks of the test failover drill (step 10): leftovers, gate, failover, verify, cleanup, report.

Every ASR client a drill task builds carries :func:`~site_recovery.drill.drill_may_send` as its
request guard, so a drill can never send a planned or unplanned failover, a commit or a
reprotect, whatever a bug upstream asks of it: the request is refused before it leaves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout
from site_recovery.operators.deploy_common import DeploymentCheckFailed, load_site_named, sort_errors, table
from site_recovery.operators.protect import VmOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)
GATE_TASK = "readiness_gate"


class DrillFailed(AirflowFailException):
    """The drill did not prove the site can recover: its verdict is FAIL (the report says why)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def drill_hook(site):
    """An ASR hook that may only read, run test failovers, clean them up and cancel its own jobs."""
    from site_recovery.drill import drill_may_send
    from site_recovery.hooks.asr import AzureSiteRecoveryHook

    return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id, request_guard=drill_may_send)


def _vmm(site):
    from site_recovery.hooks.vmm import VmmScriptHook

    return VmmScriptHook(site.recovery.vmm.psrp_conn_id)


def _items(hook, site) -> list[tuple[dict, dict]]:
    """(cloud, protected item summary) of every in-scope protected VM of the site's paired clouds."""
    from site_recovery.hooks.asr import summarize_protected_item
    from site_recovery.operators.protect import paired_clouds

    az, found = site.azure, []
    for cloud in paired_clouds(hook, site):
        for item in hook.list_protected_items(az.resource_group, az.vault_name, cloud["fabric"], cloud["container"]):
            summary = summarize_protected_item(item)
            if site.scope.covers(cloud["cloud"], summary["vm"] or ""):
                found.append((cloud, summary))
    return found


def _run_label(context) -> str:
    return f"{context['dag'].dag_id} run {context['run_id']}"


def _start_cleanup(hook, site, cloud: dict, item: dict, comment: str) -> str | None:
    return hook.test_failover_cleanup(site.azure.resource_group, site.azure.vault_name, cloud["fabric"],
                                      cloud["container"], item["name"], {"properties": {"comments": comment[:1024]}})


# -------------------------------------------------------------------------------- leftovers
@task
@sort_errors
def clean_leftovers(site_name: str) -> list[str]:
    """Clean up test failovers an interrupted drill left behind, before anything else; return their jobs."""
    from site_recovery.drill import has_leftover_test_failover

    context = get_current_context()
    site = load_site_named(site_name)
    hook = drill_hook(site)
    leftovers, jobs = [], []
    for cloud, item in _items(hook, site):
        if not has_leftover_test_failover(item):
            continue
        job = _start_cleanup(hook, site, cloud, item, f"Leftover of an earlier drill, cleaned up by "
                                                      f"{_run_label(context)}")
        detail = (f"test failover left {item['test_failover_state']} by an earlier drill; cleaned up first"
                  + (f" (job {job})" if job else ""))
        log.warning("VM %r: %s.", item["vm"], detail)
        leftovers.append({"vm": item["vm"], "detail": detail, "job": job})
        jobs += [job] if job else []
    if not leftovers:
        log.info("No test failover left behind by an earlier drill.")
    context["ti"].xcom_push(key="leftovers", value=leftovers)
    return jobs


class AsrJobsSensor(BaseSensorOperator):
    """Wait, in the triggerer, until every ASR job of ``job_names`` has ended; an empty list is done at once."""

    template_fields: Sequence[str] = ("job_names",)
    ui_color = "#0078d4"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, job_names: Any, azure_conn_id: str, resource_group_name: str, vault_name: str,
                 fail_on_error: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_names = job_names
        self.azure_conn_id = azure_conn_id
        self.resource_group_name = resource_group_name
        self.vault_name = vault_name
        self.fail_on_error = fail_on_error

    def execute(self, context: Context) -> Any:
        from site_recovery.triggers.asr import AsrJobsTrigger

        names = [n for n in (self.job_names or []) if n]
        if not names:
            self.log.info("No ASR job to wait for.")
            return {}
        self.defer(trigger=AsrJobsTrigger(
            azure_conn_id=self.azure_conn_id, resource_group_name=self.resource_group_name,
            vault_name=self.vault_name, job_names=names, poll_interval=self.poke_interval,
            end_time=time.time() + self.timeout), method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 60))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = event or {"status": "error", "message": "No event from the trigger.", "jobs": {}}
        jobs = {name: e.get("job") for name, e in (event.get("jobs") or {}).items()}
        context["ti"].xcom_push(key="jobs", value=jobs)
        if event["status"] != "success" and self.fail_on_error:
            if "Timeout" in event["message"]:
                raise AirflowSensorTimeout(event["message"])
            raise DrillFailed(event["message"])
        self.log.info("%s", event["message"])
        return jobs


# ------------------------------------------------------------------------------------- gate
def _test_network(hook, site, params: dict) -> tuple[str | None, str | None]:
    """(network ARM id, name) the test VMs join, or (None, None); refuses a network production maps to."""
    from site_recovery.operators.deploy_vault import read_vault

    name = (params.get("test_network") or "").strip() or site.drill.test_network
    if not name:
        return None, None
    view = read_vault(hook, site)
    recovery = view.fabric_for(site.recovery.vmm) if view.exists else None
    network = recovery.networks.get(name.casefold()) if recovery else None
    if network is None:
        known = ", ".join(sorted(n.properties.friendly_name for n in recovery.networks.values())) if recovery else ""
        raise DeploymentCheckFailed(f"Test network {name!r} is not a VM network of {site.recovery.vmm.fqdn}; "
                                    f"it has: {known or 'none'}.")
    mapped = [m for m in hook.connection.replication_network_mappings.list(site.azure.resource_group,
                                                                          site.azure.vault_name)
              if (m.properties.recovery_network_id or "").casefold() == network.id.casefold()]
    if mapped and not params.get("allow_production_network"):
        sources = ", ".join(m.properties.primary_network_friendly_name or m.name for m in mapped)
        raise DeploymentCheckFailed(
            f"Refusing to drill into {name!r}: it is the recovery network of production network(s) {sources}, so "
            "test VMs would come up next to the real DR copies with production addresses. Use the isolated "
            "drill network (drill.test_network), or set the run parameter allow_production_network to override.")
    return network.id, network.properties.friendly_name


@task
@sort_errors
def readiness_gate(site_name: str) -> list[dict[str, Any]]:
    """Check every in-scope VM (health, TestFailover allowed, recovery point age, nothing running).

    Returns the ready VMs to drill; pushes ``gate`` (for the report) and ``targets``. With
    ``drill.on_gate_failure: fail`` any VM that is not ready fails the run before any failover.
    """
    from site_recovery.drill import gate_reasons

    context = get_current_context()
    params = context.get("params") or {}
    site = load_site_named(site_name)
    hook = drill_hook(site)
    drill, now = site.drill, utc_now()
    wanted = {v.strip().casefold() for v in params.get("vms") or [] if v and v.strip()}
    items = _items(hook, site)
    unknown = sorted(wanted - {(i["vm"] or "").casefold() for _, i in items})
    if unknown:
        raise DeploymentCheckFailed(f"The run's vms parameter names VMs that are not protected in scope: "
                                    f"{', '.join(unknown)}. Protected in scope: "
                                    f"{', '.join(sorted(i['vm'] for _, i in items)) or 'none'}.")
    network_id, network_name = _test_network(hook, site, params)
    ready, skipped, rows = [], [], []
    for cloud, item in items:
        if wanted and item["vm"].casefold() not in wanted:
            continue
        reasons = gate_reasons(item, allow_warning=drill.allow_warning_health,
                               max_age_seconds=drill.recovery_point_age_limit.total_seconds(), now=now)
        rows.append([item["vm"], cloud["cloud"], "ready" if not reasons else "NOT READY", "; ".join(reasons)])
        if reasons:
            skipped.append({"vm": item["vm"], "reason": "; ".join(reasons)})
        else:
            ready.append({"vm": item["vm"], "cloud": cloud["cloud"], "fabric": cloud["fabric"],
                          "container": cloud["container"], "item_name": item["name"],
                          "network_id": network_id, "network": network_name})
    leftovers = context["ti"].xcom_pull(task_ids="clean_leftovers", key="leftovers") or []
    gate = {"checked": len(rows), "passed": len(ready), "skipped": skipped, "leftovers_cleaned": leftovers,
            "test_network": network_name, "started_at": now.isoformat(), "targets": ready}
    context["ti"].xcom_push(key="gate", value=gate)
    log.info("Readiness gate, site %s (test network: %s):\n%s", site.name, network_name or "none (isolated VMs)",
             table(["VM", "Cloud", "Gate", "Why not"], rows) if rows else "  (no protected VM in scope)")
    if skipped and drill.on_gate_failure == "fail":
        raise DrillFailed(f"{len(skipped)} VM(s) failed the readiness gate and drill.on_gate_failure is fail: "
                          + "; ".join(f"{s['vm']}: {s['reason']}" for s in skipped))
    if skipped:
        log.warning("%d VM(s) are skipped (drill.on_gate_failure: skip) and reported.", len(skipped))
    if not ready:
        raise DrillFailed("No VM passed the readiness gate: there is nothing to drill.")
    return ready


# --------------------------------------------------------------------------- test failover
class StartTestFailoverOperator(VmOperator):
    """Start one VM's test failover into the drill network (or none); return the ASR job to wait on.

    A re-run finds a test failover of this VM already running (its current scenario) and
    returns that job rather than starting another.
    """

    @sort_errors
    def execute(self, context: Context) -> str | None:
        from site_recovery.hooks.asr import summarize_protected_item

        site = load_site_named(self.site_name)
        hook, az, t = drill_hook(site), site.azure, self.target
        item = summarize_protected_item(hook.get_protected_item(az.resource_group, az.vault_name, t["fabric"],
                                                                 t["container"], t["item_name"]))
        if item["scenario"] == "TestFailover" and item["scenario_job"]:
            self.log.info("VM %r: a test failover is already running (job %s); waiting on it.", t["vm"],
                          item["scenario_job"])
            return item["scenario_job"]
        props = {"failoverDirection": "PrimaryToRecovery", "networkType": "NoNetworkAttachAsInput",
                 "providerSpecificDetails": {"instanceType": "ProviderSpecificFailoverInput"}}
        if t.get("network_id"):
            props.update(networkType="VmNetworkAsInput", networkId=t["network_id"])
        self.log.info("Test failover of VM %r into %s.", t["vm"], t.get("network") or "no network (isolated)")
        return hook.test_failover(az.resource_group, az.vault_name, t["fabric"], t["container"], t["item_name"],
                                  {"properties": props})


class VerifyTestVmOperator(VmOperator):
    """Check the test VM on the recovery VMM until it runs with a heartbeat, then run the site's probes.

    Between checks it defers on a timer (no worker held); the wait is bounded by
    ``drill.verify_timeout``. Pushes the result (``verify``) whatever the outcome, for the report.
    """

    template_fields: Sequence[str] = ("target", "failover_job")

    def __init__(self, *, failover_job: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failover_job = failover_job

    def execute(self, context: Context, event: Any = None) -> dict[str, Any]:
        return self._check(context, started=utc_now().isoformat(), deadline=None)

    def resume(self, context: Context, event: Any = None, started: str | None = None,
               deadline: float | None = None) -> dict[str, Any]:
        return self._check(context, started=started, deadline=deadline)

    def _test_vm_name(self) -> str:
        from site_recovery.drill import TEST_VM_SUFFIX

        job = self.failover_job if isinstance(self.failover_job, dict) else {}
        named = [p.get("test_vm_name") for p in job.get("protected_items") or [] if p.get("test_vm_name")]
        return named[0] if named else f"{self.target['vm']}{TEST_VM_SUFFIX}"

    def _check(self, context, started: str | None, deadline: float | None) -> dict[str, Any]:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        from site_recovery.drill import probes_for

        site = load_site_named(self.site_name)
        deadline = deadline or time.time() + site.drill.verify_timeout.total_seconds()
        name = self._test_vm_name()
        vmm = _vmm(site)
        status = vmm.run_script("Get-TestVmStatus", {"VmName": name})
        self.log.info("Test VM: %s.", status.summary())
        result = {"vm_name": name, "state": status.state, "heartbeat": status.heartbeat,
                  "ip_addresses": list(status.ip_addresses), "started_at": started, "verified_at": None,
                  "ended_at": None, "probes": [], "ok": False, "detail": status.summary()}
        if status.healthy:
            probes = []
            for probe in probes_for(self.target["vm"], [p.model_dump() for p in site.drill.probes]):
                answer = vmm.run_script("Test-TestVmEndpoint", {
                    "VmName": name, "Kind": probe["kind"], "Port": probe["port"],
                    **({"Path": probe["path"]} if probe.get("path") else {})})
                self.log.info("Probe %s", answer.summary())
                probes.append({"kind": probe["kind"], "port": probe["port"], "path": probe.get("path"),
                               "ok": answer.ok, "detail": answer.summary()})
            result.update(probes=probes, ended_at=utc_now().isoformat())
            failed = [p["detail"] for p in probes if not p["ok"]]
            if not failed:
                result.update(ok=True, verified_at=result["ended_at"])
                context["ti"].xcom_push(key="verify", value=result)
                self.log.info("VM %r verified: the test VM runs, answers its heartbeat%s.", self.target["vm"],
                              f" and passed {len(probes)} probe(s)" if probes else "")
                return result
            result["detail"] = "probe failed: " + "; ".join(failed)
            context["ti"].xcom_push(key="verify", value=result)
            raise DrillFailed(f"VM {self.target['vm']!r}: the test VM runs but {result['detail']}.")
        if time.time() >= deadline:
            result["ended_at"] = utc_now().isoformat()
            context["ti"].xcom_push(key="verify", value=result)
            raise DrillFailed(f"VM {self.target['vm']!r}: the test VM was not running with a heartbeat within "
                              f"{site.drill.verify_timeout} (drill.verify_timeout); last seen: {status.summary()}.")
        context["ti"].xcom_push(key="verify", value=result)
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=site.timeouts.poll_interval.total_seconds())),
                   method_name="resume", kwargs={"started": started, "deadline": deadline},
                   timeout=timedelta(seconds=max(deadline - time.time(), 1) + 120))


# ---------------------------------------------------------------------------------- cleanup
@task
@sort_errors
def start_cleanup(site_name: str) -> list[str]:
    """Teardown: clean up every test failover of the drilled VMs, whatever happened before; return the jobs.

    A test failover still running (the run was stopped mid-drill) is cancelled and awaited first,
    since ASR allows cleanup only once it has ended.
    """
    from site_recovery.drill import has_leftover_test_failover
    from site_recovery.hooks.asr import summarize_protected_item

    context = get_current_context()
    site = load_site_named(site_name)
    hook, az = drill_hook(site), site.azure
    gate = context["ti"].xcom_pull(task_ids=GATE_TASK, key="gate") or {}
    targets = gate.get("targets") or []
    jobs: dict[str, str] = {}
    for t in targets:
        args = (az.resource_group, az.vault_name, t["fabric"], t["container"], t["item_name"])
        item = summarize_protected_item(hook.get_protected_item(*args))
        # The item keeps TestFailover as its scenario while it waits for cleanup; only a running job matters.
        if item["scenario"] == "TestFailover" and item["scenario_job"]:
            item = _end_running_test_failover(hook, site, args, item)
        if not has_leftover_test_failover(item):
            log.info("VM %r: nothing to clean up (%s).", t["vm"], item["test_failover_state_description"]
                     or item["test_failover_state"] or "no test failover")
            continue
        job = _start_cleanup(hook, site, {"fabric": t["fabric"], "container": t["container"]}, item,
                             f"Drill cleanup by {_run_label(context)}")
        log.info("VM %r: test failover cleanup started (job %s).", t["vm"], job)
        if job:
            jobs[t["vm"]] = job
    context["ti"].xcom_push(key="cleanup_jobs", value=jobs)
    return list(jobs.values())


def _end_running_test_failover(hook, site, args: tuple, item: dict) -> dict:
    """If the item's test failover job still runs (the drill was stopped), cancel it and wait for it to end."""
    from site_recovery.hooks.asr import AsrJobState, summarize_job, summarize_protected_item

    az, job = site.azure, item["scenario_job"]
    summary = summarize_job(hook.get_job(az.resource_group, az.vault_name, job))
    if summary["state"] in AsrJobState.TERMINAL_STATES:
        # Read the item again: the job may have ended (been cancelled by the stopped wait) after
        # the item was read, and only the item as it is now says whether a test VM is left.
        return summarize_protected_item(hook.get_protected_item(*args))
    if AsrJobState.CANCEL_ACTION in summary["allowed_actions"]:
        log.warning("VM %r: the drill was stopped while its test failover ran; cancelling job %s.", item["vm"], job)
        hook.cancel_job(az.resource_group, az.vault_name, job)
    deadline = time.time() + site.timeouts.asr_job.total_seconds()
    while time.time() < deadline:
        summary = summarize_job(hook.get_job(az.resource_group, az.vault_name, job))
        if summary["state"] in AsrJobState.TERMINAL_STATES:
            return summarize_protected_item(hook.get_protected_item(*args))
        time.sleep(min(site.timeouts.poll_interval.total_seconds(), 10))
    raise DrillFailed(f"VM {item['vm']!r}: its test failover job {job} did not end within {site.timeouts.asr_job}; "
                      "clean it up by hand once it has (Cleanup test failover in the vault).")


@task(trigger_rule="all_done")
@sort_errors
def verify_cleanup(site_name: str) -> dict[str, Any]:
    """Prove the cleanup: no drilled VM is left in a test failover, and the recovery VMM holds no test VM."""
    from site_recovery.drill import IDLE_TEST_FAILOVER_STATES, TEST_VM_SUFFIX
    from site_recovery.hooks.asr import summarize_protected_item

    context = get_current_context()
    site = load_site_named(site_name)
    hook, az = drill_hook(site), site.azure
    gate = context["ti"].xcom_pull(task_ids=GATE_TASK, key="gate") or {}
    vmm = _vmm(site)
    in_failover, test_vms, per_vm = [], [], {}
    for t in gate.get("targets") or []:
        item = summarize_protected_item(hook.get_protected_item(az.resource_group, az.vault_name, t["fabric"],
                                                                 t["container"], t["item_name"]))
        status = vmm.run_script("Get-TestVmStatus", {"VmName": f"{t['vm']}{TEST_VM_SUFFIX}"})
        active = item["test_failover_state"] not in IDLE_TEST_FAILOVER_STATES
        if active:
            in_failover.append(t["vm"])
        if status.exists:
            test_vms.append(status.vm_name)
        per_vm[t["vm"]] = {"verified": not active and not status.exists,
                           "detail": "; ".join(filter(None, [
                               f"test failover still {item['test_failover_state']}" if active
                               else "no active test failover",
                               f"test VM {status.summary()} still on {site.recovery.vmm.fqdn}" if status.exists
                               else "no test VM on the recovery VMM"]))}
    proof = {"verified_at": utc_now().isoformat(), "items_in_test_failover": in_failover, "test_vms_left": test_vms,
             "per_vm": per_vm}
    context["ti"].xcom_push(key="proof", value=proof)
    if in_failover or test_vms:
        raise DrillFailed("The drill left things behind: " + "; ".join(filter(None, [
            f"still in a test failover: {', '.join(in_failover)}" if in_failover else "",
            f"test VMs on {site.recovery.vmm.fqdn}: {', '.join(test_vms)}" if test_vms else ""])))
    log.info("Cleanup verified for %d VM(s): no active test failover, no test VM on %s.", len(per_vm),
             site.recovery.vmm.fqdn)
    return proof
