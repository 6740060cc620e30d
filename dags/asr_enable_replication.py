"""Enable replication for each site file: step 9, from chosen VMs to fully protected ones.

One DAG ``asr_enable_replication__<site>`` per file in include/sites. The plan reads ASR for
the site's paired clouds and the VMs its scope names; each VM to protect gets one mapped task
group, labelled with its name: enable (when a slot on the WAN link is free), wait for the
EnableDr job, wait for initial replication to complete with healthy delta replication.
Waiting happens in the triggerer, so a VM replicating for hours holds no worker slot. The
report at the end says where every VM in scope stands; the site file's recovery plans are then
created or updated, each once all its VMs are protected. Re-run it at any time: it starts
nothing for VMs already protected and waits on enables an earlier run left under way.
Wiring only: the steps live in site_recovery.tasks.protect, .tasks.deploy_plans, .operators.protect
and .sensors.protection.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, task_group

from site_recovery.operators.protect import EnableProtectionOperator
from site_recovery.sensors.asr import AsrJobsSensor
from site_recovery.sensors.protection import InitialReplicationSensor, VmJobSensor
from site_recovery.site import format_duration
from site_recovery.site_dags import form_param, publish
from site_recovery.tasks.deploy_plans import ensure_recovery_plans
from site_recovery.tasks.protect import plan_protection, report_protection

DEFAULT_ARGS = {"owner": "dr-engineering", "retries": 3, "retry_delay": timedelta(seconds=30),
                "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=10)}
TAGS = ["asr", "enable-replication"]
VM_LABEL = "{{ task.target.vm }}"


def params_for(site) -> dict[str, Param]:
    """The trigger form, from the site file alone: nothing a worker wrote, so the DAG changes only with the file."""
    named = [name for rule in site.scope.vms for name in rule.include
             if not any(c in name for c in "*?[") and site.scope.covers(rule.cloud, name)]
    choices = {"examples": named} if named else {}  # the VMs the scope names one by one, offered to pick
    return {
        "vms": form_param([], type="array", title="VMs", items={"type": "string"}, **choices,
                          description="Only these VMs (names as in VMM). Empty: every VM the site file's scope puts in "
                                      "the paired clouds. Any name the scope allows may be typed; the plan checks each "
                                      "when the run starts, and a name the site file does not allow is an error."),
        "dry_run": form_param(False, type="boolean", title="Dry run",
                              description="Only show the plan: which VMs would be enabled, waited on or reported. "
                                          "Nothing is changed."),
    }


def build(site) -> DAG:
    az, scope, timeouts = site.azure, site.scope, site.timeouts
    watch = timeouts.watch_seconds
    with DAG(dag_id=site.dag_id("asr_enable_replication"), schedule=None, catchup=False, max_active_runs=1,
             tags=TAGS, default_args=DEFAULT_ARGS, params=params_for(site),
             description=f"Enable ASR replication for the VMs in scope of site {site.name}",
             doc_md=f"{__doc__}\n\n**Site {site.name}**: {site.description or ''}\n\nAt most "
                    f"{scope.max_concurrent_initial_replications} initial replications at once; each may take "
                    f"{format_duration(scope.initial_replication_timeout)}.") as dag:
        plan = plan_protection(site.name)

        @task_group(group_id="protect_vm")
        def protect_vm(target):
            enable = EnableProtectionOperator(
                task_id="enable", site_name=site.name, target=target, map_index_template=VM_LABEL,
                max_active_tis_per_dagrun=1)
            wait_job = VmJobSensor(
                task_id="wait_enable_job", target=target, map_index_template=VM_LABEL, job_name=enable.output,
                weight_rule="upstream",
                azure_conn_id=az.conn_id, resource_group_name=az.resource_group, vault_name=az.vault_name,
                poke_interval=watch, timeout=scope.enable_job_timeout.total_seconds())
            wait_ir = InitialReplicationSensor(
                task_id="wait_initial_replication", target=target, map_index_template=VM_LABEL, weight_rule="upstream",
                azure_conn_id=az.conn_id, resource_group_name=az.resource_group, vault_name=az.vault_name,
                # One list of the cloud's items per interval serves every VM waiting on it.
                poke_interval=watch, timeout=scope.initial_replication_timeout.total_seconds(),
                timeout_text=format_duration(scope.initial_replication_timeout))
            enable >> wait_job >> wait_ir

        vms = protect_vm.expand(target=plan)
        report = report_protection(site.name)
        # The report runs whatever happened; this leaf keeps a failed VM from passing as a successful run.
        complete = EmptyOperator(task_id="replication_complete")
        plan >> vms >> [report, complete]
        if site.recovery_plans:
            # Plans need their VMs protected: ensured once the VMs are, for every plan whose VMs all are.
            plans = ensure_recovery_plans.override(trigger_rule="all_done")(site.name)
            wait_plans = AsrJobsSensor(task_id="wait_recovery_plans", job_names=plans["job_names"],
                                       azure_conn_id=az.conn_id, resource_group_name=az.resource_group,
                                       vault_name=az.vault_name, poke_interval=watch,
                                       timeout=timeouts.asr_job.total_seconds())
            vms >> plans >> wait_plans >> complete
    return dag


publish(globals(), "asr_enable_replication", build, what="enable-replication", tags=TAGS,
        default_args=DEFAULT_ARGS)
