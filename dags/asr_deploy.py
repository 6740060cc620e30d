"""Deploy Azure Site Recovery for each site file: steps 1-8, from an empty vault to paired clouds, and its plans.

One DAG ``asr_deploy__<site>`` per file in include/sites. Every step ensures: it reads what is
there, changes only what differs, and the summary says what changed. Re-run it at any time to
check or repair a site. A site file with recovery plans gets a last step that creates or updates
them (once their VMs are protected). Wiring only: the steps live in site_recovery.tasks.deploy,
site_recovery.tasks.deploy_onprem and site_recovery.tasks.deploy_plans.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, TriggerRule, chain

from site_recovery.deployment import STEPS
from site_recovery.sensors.asr import AsrJobsSensor
from site_recovery.sensors.deploy import FabricConnectedSensor, OptionalAsrJobSensor
from site_recovery.site_dags import form_param, publish, slug
from site_recovery.tasks import deploy as az
from site_recovery.tasks import deploy_onprem as onprem
from site_recovery.tasks import deploy_plans

DEFAULT_ARGS = {"owner": "dr-engineering", "retries": 3, "retry_delay": timedelta(seconds=30),
                "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=10)}
TAGS = ["asr", "deploy"]
PARAMS = {
    "plan_only": form_param(False, type="boolean", title="Plan only",
                            description="Only show the plan (step 1): what exists in the vault and what a full run "
                                        "would change. Nothing is changed."),
    "steps": form_param(list(STEPS), type="array", title="Steps to run", items={"type": "string", "enum": list(STEPS)},
                        examples=list(STEPS), values_display=STEPS,
                        description="Steps to carry out (default: all). A step left out is skipped and reported; "
                                    "later steps still check what they need."),
}


def _job_wait(task_id: str, start_task_id: str, site, timeout: timedelta) -> OptionalAsrJobSensor:
    return OptionalAsrJobSensor(
        task_id=task_id, azure_conn_id=site.azure.conn_id, resource_group_name=site.azure.resource_group,
        vault_name=site.azure.vault_name, poke_interval=15, timeout=timeout.total_seconds(),
        # The start task's record (a dict or a StepRecord: Jinja's [] falls back to the attribute), or none.
        job_name="{{ (ti.xcom_pull(task_ids='%s') or {'job_name': ''})['job_name'] or '' }}" % start_task_id)


def _waits(site) -> dict:
    """What every ASR job wait of the site needs: the connection, the vault, how often and how long."""
    return {"azure_conn_id": site.azure.conn_id, "resource_group_name": site.azure.resource_group,
            "vault_name": site.azure.vault_name, "poke_interval": 15,
            "timeout": site.timeouts.asr_job.total_seconds()}


def build(site) -> DAG:
    name = site.name
    with DAG(dag_id=site.dag_id("asr_deploy"), schedule=None, catchup=False, max_active_runs=1, tags=TAGS,
             default_args=DEFAULT_ARGS, params=PARAMS, description=f"Deploy ASR for site {name}",
             doc_md=f"{__doc__}\n\n**Site {name}**: {site.description or ''}") as dag:
        with TaskGroup("review_architecture") as g1:
            plan = az.review_plan(name)
            go = az.continue_after_plan()
            plan >> go
        with TaskGroup("prerequisites") as g2:
            azure = az.check_azure(name)
            vmm = {side: onprem.vmm_prerequisites.override(task_id=f"vmm_{side}")(name, side)
                   for side in ("primary", "recovery")}
        with TaskGroup("plan_networking") as g3:
            networking = onprem.check_networking(name)
        with TaskGroup("prepare_vmm_and_hyperv") as g4:
            host_plan = onprem.plan_hosts(name, vmm["recovery"])
            hosts = [{"fqdn": h.fqdn, "psrp_conn_id": h.psrp_conn_id} for h in site.recovery.hyperv_hosts]
            prepared = onprem.prepare_host.partial(site_name=name, plan=host_plan).expand(host=hosts)
        with TaskGroup("vault") as g5:
            vault = az.ensure_vault(name)
        with TaskGroup("source_and_target") as g6:
            waits, installs = [], []
            for side in ("primary", "recovery"):
                install = onprem.install_provider.override(task_id=f"install_provider_{side}")(name, side)
                installs.append(install)
                waits.append(install >> FabricConnectedSensor(
                    task_id=f"wait_fabric_{side}", site_name=name, side=side, poke_interval=15,
                    timeout=site.timeouts.provider_registration.total_seconds()))
            agents = onprem.install_agents(name)
            waits >> agents
            # One server at a time: each install issues vault credentials, and the vault's first
            # channel integrity key must exist before the second server's credentials are built.
            installs[0] >> installs[1]
        with TaskGroup("network_mapping") as g7:
            mapping_starts = []
            for i, m in enumerate(site.network_mappings):
                key = slug(m.primary_network)
                start = az.ensure_network_mapping.override(task_id=f"ensure_{key}")(name, i)
                mapping_starts.append(start)
                start >> _job_wait(f"wait_{key}", start.operator.task_id, site, site.timeouts.asr_job)
        with TaskGroup("replication_policy_and_pairing") as g8:
            policy = az.ensure_policy(name)
            policy_wait = _job_wait("wait_policy", policy.operator.task_id, site, site.timeouts.asr_job)
            policy >> policy_wait
            pairing_starts = []
            for i, c in enumerate(site.clouds):
                key = slug(c.primary_cloud)
                start = az.ensure_pairing.override(task_id=f"pair_{key}")(name, i)
                pairing_starts.append(start)
                policy_wait >> start >> _job_wait(f"wait_pair_{key}", start.operator.task_id, site,
                                                  site.timeouts.asr_job)
        steps = [g1, g2, g3, g4, g5, g6, g7, g8]
        plan_reporters = []
        if site.recovery_plans:
            with TaskGroup("recovery_plans") as g9:
                ensure_plans = deploy_plans.ensure_recovery_plans(name)
                ensure_plans >> AsrJobsSensor(task_id="wait_plans", job_names=ensure_plans["job_names"],
                                              **_waits(site))
            steps.append(g9)
            plan_reporters.append(ensure_plans)
        # The summary reads the record of every task that reports one; taken from the tasks themselves
        # so a step added above cannot be left out of it.
        reporters = [plan, azure, *vmm.values(), networking, prepared, vault, *installs, agents, *mapping_starts,
                     policy, *pairing_starts, *plan_reporters]
        done = az.summary(name, [reporter.operator.task_id for reporter in reporters])
        # The summary runs whatever happened; this leaf keeps a failed step from passing as a successful run.
        complete = EmptyOperator(task_id="deployment_complete", trigger_rule=TriggerRule.NONE_FAILED)
        chain(*steps, [done, complete])
        # A step the run leaves out shows skipped, and the steps after it still run (each checks what it
        # needs): a step's first tasks wait for the step before to end without failing, not to succeed.
        for step in steps[1:]:
            for first in step.roots:
                first.trigger_rule = TriggerRule.NONE_FAILED
        plan >> done
    return dag


publish(globals(), "asr_deploy", build, what="deployment", tags=TAGS, default_args=DEFAULT_ARGS)
