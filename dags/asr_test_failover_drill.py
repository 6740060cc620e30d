"""Scheduled DR drill for each site file: step 10, a test failover that always cleans up and proves it.

One DAG ``asr_test_failover_drill__<site>`` per file in include/sites, on the site file's
``drill.schedule`` (none: manual only). It cleans up what an interrupted drill left, checks each VM
at a readiness gate, runs a test failover per VM into the isolated drill network, verifies each test
VM on the recovery VMM (heartbeat, then the site's probes), then cleans up every test failover (a
teardown: it runs when anything failed or the run was stopped) and proves nothing is left; with
``drill.cleanup_when: vm_verified`` each VM's cleanup starts as soon as its own verification ends,
and the teardown cleans up whatever is left. A site file's recovery plans are drilled as a whole:
one test failover per plan (its groups boot in order in one ASR job); where the job pauses, a manual
action becomes an Airflow required action (confirm resumes the job; an unattended drill follows the
plan's ``unattended`` setting) and a check runs its probe and resumes the job when it passes; each
boot group's members are verified as soon as the group is up, while the next groups boot; the plan
is cleaned up as one. VMs in no plan are drilled one by one. The report (JSON + HTML, published as
an Asset) gives the verdict, RTO and RPO per VM, a section per plan and the cleanup proof. A drill
can never fail over, commit or reprotect: its ASR client refuses it. Wiring only: the steps live in
site_recovery.tasks.drill, .tasks.drill_report, .operators.drill and .sensors.drill.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, CronTriggerTimetable, Param, TaskGroup, task_group

from site_recovery.notifiers import failure_callbacks
from site_recovery.operators.drill import (
    CleanUpTestVmOperator,
    ManualActionOperator,
    StartPlanTestFailoverOperator,
    StartTestFailoverOperator,
)
from site_recovery.operators.report import ReportOperator
from site_recovery.sensors.asr import AsrJobSensor, AsrJobsSensor
from site_recovery.sensors.drill import PlanCheckSensor, PlanGroupSensor, TestVmVerifiedSensor
from site_recovery.sensors.protection import VmJobSensor
from site_recovery.site_dags import (
    chain_plan_job,
    form_param,
    group_task_ids,
    pause_task_id,
    plan_task_group,
    publish,
    slug,
)
from site_recovery.tasks.drill import clean_leftovers, readiness_gate, start_cleanup, verify_cleanup
from site_recovery.tasks.drill_report import check_verdict, drill_report, report_asset

DEFAULT_ARGS = {"owner": "dr-engineering", "retries": 2, "retry_delay": timedelta(seconds=30),
                "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=5)}
TAGS = ["asr", "dr-drill"]
VM_LABEL = "{{ task.target.vm }}"


def params_for(site) -> dict[str, Param]:
    return {
        "vms": form_param([], type="array", title="VMs", items={"type": "string"},
                          description="Only these protected VMs. Empty: every protected VM in the site file's scope."),
        "test_network": form_param(site.drill.test_network or "", type="string", title="Test network",
                                   description="Recovery-side VM network the test VMs join (default: "
                                               "drill.test_network). Empty: the test VMs get no network."),
        "allow_production_network": form_param(False, type="boolean", title="Allow a production-mapped network",
                                               description="Let the test VMs join a network that production VM "
                                                           "networks are mapped to. Only for a deliberate, "
                                                           "supervised drill."),
        **({
            "plans": form_param([], type="array", title="Recovery plans", items={"type": "string"},
                                examples=[plan.name for plan in site.recovery_plans],
                                description="Only these recovery plans. Empty: every plan, unless VMs are named "
                                            "above (then only those VMs)."),
            "unattended": form_param(False, type="boolean", title="Unattended",
                                     description="Run as a scheduled drill does: each plan's manual actions follow "
                                                 "its unattended setting (confirmed by the drill, or the plan "
                                                 "skipped) instead of waiting for a person."),
        } if site.recovery_plans else {}),
    }


def drill_plan(site, plan, waits: dict):
    """One recovery plan's drill: its test failover; per boot group, a wait until the group is up and the
    verification of its members (while later groups boot); where its job pauses, a required action (manual
    action) or a probe (Airflow-side check) that resumes it; the wait for the job's end.

    Returns the group's first task and its last ones.
    """
    poll = site.timeouts.poll_interval.total_seconds()
    waits = {**waits, "poke_interval": site.timeouts.plan_poll_interval.total_seconds()}  # one reader per plan
    with TaskGroup(plan_task_group(plan.name), tooltip=f"Recovery plan {plan.name}"):
        start = StartPlanTestFailoverOperator(task_id="test_failover", site_name=site.name, plan=plan.name)
        job = start.output["job_name"]

        def pause(action, previous):
            # Stopping a drill mid-failover cancels the plan's job; the teardown then cleans up.
            reached = AsrJobSensor(task_id=f"wait_for_{slug(action.name)}", job_name=job, suspend_at=action.name,
                                   cancel_on_kill=True, **waits)
            if action.kind == "check":
                step = PlanCheckSensor(task_id=pause_task_id(action.kind, action.name), site_name=site.name,
                                       plan=plan.name, check=action.name, vm=plan.check_vm(action), job_name=job,
                                       failover_job=reached.output, poke_interval=poll,
                                       timeout=site.drill.verify_timeout.total_seconds())
            else:
                step = ManualActionOperator(task_id=pause_task_id(action.kind, action.name), site_name=site.name,
                                            plan=plan.name, action=action.name, instructions=action.instructions,
                                            approvers=action.approvers, job_name=job,
                                            response_timeout=action.manual_timeout)
            previous >> reached >> step
            return step

        def boot_group(group):
            wait_id, verify_id = group_task_ids(group.group)
            up = PlanGroupSensor(task_id=wait_id, job_name=job, group=group.group, vms=group.vms,
                                 members=start.output, **waits)
            return up, TestVmVerifiedSensor.partial(
                task_id=verify_id, site_name=site.name, failover_job=up.output["job"], poke_interval=poll,
                timeout=site.drill.verify_timeout.total_seconds(), map_index_template=VM_LABEL,
            ).expand(target=up.output)

        # One chain in the job's order: no wait outlives the drill once a manual action is refused.
        previous, verifies = chain_plan_job(start, plan.job_order(), pause, boot_group)
        # Started once the last group is up, its first look usually finds the job ended.
        wait = AsrJobSensor(task_id="wait_test_failover", job_name=job, cancel_on_kill=True, **waits)
        previous >> wait
    return start, [*verifies, wait]


def build(site) -> DAG:
    az, drill, timeouts = site.azure, site.drill, site.timeouts
    poll = timeouts.poll_interval.total_seconds()
    schedule = CronTriggerTimetable(drill.schedule, timezone=drill.timezone) if drill.schedule else None
    waits = {"azure_conn_id": az.conn_id, "resource_group_name": az.resource_group, "vault_name": az.vault_name,
             "poke_interval": timeouts.watch_seconds, "timeout": timeouts.asr_job.total_seconds()}
    with DAG(dag_id=site.dag_id("asr_test_failover_drill"), schedule=schedule, catchup=False, max_active_runs=1,
             tags=TAGS, default_args=DEFAULT_ARGS, params=params_for(site),
             description=f"DR drill (test failover) of site {site.name}",
             doc_md=f"{__doc__}\n\n**Site {site.name}**: {site.description or ''}") as dag:
        leftovers = clean_leftovers(site.name)
        wait_leftovers = AsrJobsSensor(task_id="wait_leftover_cleanup", job_names=leftovers, fail_on_error=False,
                                       **waits)
        gate = readiness_gate.override(trigger_rule="all_done")(site.name)

        @task_group(group_id="drill_vm")
        def drill_vm(target):
            # weight_rule="upstream": a VM's later steps go before other VMs' failovers (depth first),
            # so a verified VM's RTO is not inflated by the scheduler's queue.
            failover = StartTestFailoverOperator(task_id="test_failover", site_name=site.name, target=target,
                                                 map_index_template=VM_LABEL, weight_rule="upstream")
            # Stopping a drill mid-failover cancels its test failover; the teardown then cleans up.
            wait = VmJobSensor(task_id="wait_test_failover", target=target, map_index_template=VM_LABEL,
                               job_name=failover.output, cancel_on_kill=True, weight_rule="upstream", **waits)
            verify = TestVmVerifiedSensor(task_id="verify_test_vm", site_name=site.name, target=target,
                                          failover_job=wait.output, poke_interval=poll,
                                          timeout=drill.verify_timeout.total_seconds(),
                                          map_index_template=VM_LABEL, weight_rule="upstream")
            failover >> wait >> verify
            if drill.cleanup_when == "vm_verified":
                # Cleaned up once its own verification ends, however that went; the teardown does the rest.
                cleanup_vm = CleanUpTestVmOperator(task_id="clean_up_test_vm", site_name=site.name,
                                                   map_index_template="{{ vm }}", weight_rule="upstream",
                                                   trigger_rule="all_done")
                verify >> cleanup_vm >> VmJobSensor(
                    task_id="wait_test_vm_cleanup", target=target, map_index_template=VM_LABEL,
                    job_name=cleanup_vm.output, weight_rule="upstream", **waits)

        vms = drill_vm.expand(target=gate)
        plans = [drill_plan(site, plan, waits) for plan in site.recovery_plans]
        cleanup = start_cleanup(site.name)
        wait_cleanup = AsrJobsSensor(task_id="wait_cleanup", job_names=cleanup, trigger_rule="all_done",
                                     fail_on_error=False, **waits)
        proof = verify_cleanup(site.name)
        report = ReportOperator(task_id="drill_report", python_callable=drill_report, op_args=[site.name],
                                outlets=[report_asset(site.name)], trigger_rule="all_done")
        verdict = PythonOperator(task_id="check_verdict", python_callable=check_verdict, op_args=[site.name],
                                 trigger_rule="all_done",
                                 on_failure_callback=failure_callbacks(drill.notifier))
        leftovers >> wait_leftovers >> gate >> vms >> cleanup >> wait_cleanup >> proof >> report >> verdict
        for first, last in plans:
            gate >> first
            last >> cleanup
        # The cleanup runs whatever happened to the failovers, once the gate has chosen the VMs.
        cleanup.as_teardown(setups=gate, on_failure_fail_dagrun=True)
    return dag


publish(globals(), "asr_test_failover_drill", build, what="drill", tags=TAGS, default_args=DEFAULT_ARGS)
