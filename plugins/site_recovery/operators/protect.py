"""The operator of step 9: enable replication of one VM, when a slot on the WAN link is free."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from site_recovery.exceptions import DeploymentCheckFailed
from site_recovery.operators.vm import VmOperator
from site_recovery.site import load_site_named
from site_recovery.tasks.common import sort_errors

if TYPE_CHECKING:
    from airflow.sdk import Context
    from site_recovery.records import ProtectedItemSummary

#: The provider-specific part of an enable request for VMM-to-VMM (Hyper-V Replica) protection.
ENABLE_BODY_PROVIDER = {"instanceType": "EnableProtectionProviderSpecificInput"}
PLAN_TASK = "plan_protection"


class EnableProtectionOperator(VmOperator):
    """
    Enable replication of one VM with its pairing's policy, when a slot on the WAN link is free.

    Re-runs resume from ASR: a VM already protected is left alone; a VM whose enabling is under
    way returns the running EnableDr job to wait on (found through the item's current
    scenario). A new enable starts only while fewer than the site's
    ``scope.max_concurrent_initial_replications`` VMs are enabling or initially replicating
    (counted in ASR); otherwise the task defers until one finishes. Run it with
    ``max_active_tis_per_dagrun=1`` so two VMs never take the last slot at once.

    Returns the EnableDr job name to wait on, or None.
    """

    def execute(self, context: Context) -> str | None:
        return self._admit(context, deadline=None)

    def resume(self, context: Context, event: dict[str, Any] | None = None,
               deadline: float | None = None) -> str | None:
        from site_recovery.records import WaitEvent

        if not event:
            raise DeploymentCheckFailed("No event from the wait for a free slot.")
        slot = WaitEvent.from_event(event)
        if not slot.succeeded:
            raise DeploymentCheckFailed(slot.message)
        self.log.info("%s", slot.message)
        return self._admit(context, deadline=deadline)

    @sort_errors
    def _admit(self, context: Context, deadline: float | None) -> str | None:
        from site_recovery.deployment import running_job
        from site_recovery.hooks.asr import summarize_job
        from site_recovery.protection import enabling_vms, running_enable_jobs_filter
        from site_recovery.vocabulary import Scenario

        site = load_site_named(self.site_name)
        hook, az, t = self._hook(site), site.azure, self.vm_target
        item = self._item(hook, site)
        if item is not None:
            if not item.is_enabling:
                self.log.info("VM %r is already enabled: %s. Nothing to start.", t.vm, item.describe())
                return None
            job = item.scenario_job if item.scenario == Scenario.ENABLE_PROTECTION else None
            job = job or running_job(hook, site, Scenario.ENABLE_PROTECTION, target_name=t.vm)
            self.log.info("Enabling VM %r is already under way (%s)%s.", t.vm, item.describe(),
                          f"; waiting on its EnableDr job {job}" if job else "")
            return job
        limit = site.scope.max_concurrent_initial_replications
        fabrics = sorted({fabric for fabric, _ in self._clouds(context)})
        busy = enabling_vms(summarize_job(job) for fabric in fabrics for job in hook.list_jobs(
            az.resource_group, az.vault_name, filter=running_enable_jobs_filter(fabric)))
        if len(busy) >= limit:
            self.log.info("VM %r waits for a free slot: %d of %d initial replications running (%s).", t.vm,
                          len(busy), limit, ", ".join(busy))
            self._wait_for_slot(site, fabrics, limit,
                                deadline or time.time() + site.scope.initial_replication_timeout.total_seconds())
        body = {"properties": {"policyId": t.policy_id, "protectableItemId": t.protectable_item_id,
                               "providerSpecificDetails": ENABLE_BODY_PROVIDER}}
        self.log.info("Enabling replication of VM %r (%s) with policy %s; %d of %d initial replications running.",
                      t.vm, t.cloud, site.replication_policy.name, len(busy), limit)
        return hook.enable_protection(az.resource_group, az.vault_name, t.fabric, t.container, t.item_name, body)

    @staticmethod
    def _hook(site):
        from site_recovery.hooks.asr import AzureSiteRecoveryHook

        return AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id)

    def _item(self, hook, site) -> ProtectedItemSummary | None:
        from site_recovery.hooks.asr import summarize_protected_item

        t = self.vm_target
        item = hook.get_protected_item_or_none(site.azure.resource_group, site.azure.vault_name, t.fabric,
                                               t.container, t.item_name)
        return None if item is None else summarize_protected_item(item)

    @staticmethod
    def _clouds(context: Context) -> list[list[str]]:
        """(fabric, container) of every paired primary cloud of the site, as the plan found them."""
        clouds = context["ti"].xcom_pull(task_ids=PLAN_TASK, key="clouds")
        if not clouds:
            raise DeploymentCheckFailed("The plan_protection task left no list of clouds; clear it and run it again.")
        return [list(c) for c in clouds]

    def _wait_for_slot(self, site, fabrics: list[str], limit: int, deadline: float) -> None:
        from site_recovery.triggers.protection import ReplicationSlotTrigger

        az = site.azure
        if time.time() >= deadline:
            raise DeploymentCheckFailed(f"No initial replication slot freed up for VM {self.vm_target.vm!r} within "
                                        f"{site.scope.initial_replication_timeout} "
                                        "(scope.initial_replication_timeout).")
        self.defer(
            trigger=ReplicationSlotTrigger(
                azure_conn_id=az.conn_id, resource_group_name=az.resource_group, vault_name=az.vault_name,
                fabrics=fabrics, limit=limit, poll_interval=site.timeouts.poll_interval.total_seconds(),
                end_time=deadline),
            method_name="resume", kwargs={"deadline": deadline},
            timeout=timedelta(seconds=max(deadline - time.time(), 1) + 60))
