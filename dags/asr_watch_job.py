"""Follow one Azure Site Recovery job to its end, from the Airflow UI.

For the moments a DR engineer started something in the portal or with PowerShell and wants
Airflow to wait on it, log its tasks as they progress and fail loudly if it fails. The
deployment, enable-replication and drill DAGs use the same sensor for their own jobs.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from site_recovery.sensors.asr import AsrJobSensor, timeout_hours_from_params
from site_recovery.site_dags import form_param


with DAG(
    dag_id="asr_watch_job",
    description="Wait for an ASR job to finish, logging each of its tasks",
    schedule=None,
    catchup=False,
    max_active_runs=4,
    tags=["asr", "utility"],
    default_args={"owner": "dr-engineering", "retries": 1, "retry_delay": timedelta(minutes=1)},
    params={
        # The ASR hook's default connection id, as for any Azure hook.
        "azure_conn_id": form_param("azure_default", type="string", minLength=1,
                                    description="Airflow connection (type azure_site_recovery) for the subscription "
                                                "holding the vault."),
        "resource_group_name": form_param("", type="string", minLength=1,
                                          description="Resource group of the Recovery Services vault."),
        "vault_name": form_param("", type="string", minLength=1, description="Recovery Services vault name."),
        "job_name": form_param("", type="string", minLength=1,
                               description="ASR job name (the GUID at the end of the job's ARM id)."),
        "timeout_hours": form_param(6, type="number", minimum=0.01, maximum=72,
                                    description="Give up waiting after this many hours (the job itself is not "
                                                "cancelled)."),
    },
    doc_md=__doc__,
) as dag:
    AsrJobSensor(
        task_id="wait_for_job",
        azure_conn_id="{{ params.azure_conn_id }}",
        resource_group_name="{{ params.resource_group_name }}",
        vault_name="{{ params.vault_name }}",
        job_name="{{ params.job_name }}",
        timeout=timedelta(hours=6).total_seconds(),  # the form's default; the run's timeout_hours replaces it
        pre_execute=timeout_hours_from_params,
    )
