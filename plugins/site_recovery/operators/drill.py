"""The operator of the test failover drill (step 10): start one VM's test failover.

The drill's other steps are tasks (:mod:`site_recovery.tasks.drill`,
:mod:`site_recovery.tasks.drill_report`) and sensors (:mod:`site_recovery.sensors.drill`,
:class:`~site_recovery.sensors.asr.AsrJobsSensor`). Its ASR client may only read, test fail
over, clean up and cancel its own jobs (:func:`~site_recovery.tasks.drill.drill_hook`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from site_recovery.operators.vm import VmOperator
from site_recovery.tasks.common import sort_errors

if TYPE_CHECKING:
    from airflow.sdk import Context


class StartTestFailoverOperator(VmOperator):
    """Start one VM's test failover into the drill network (or none); return the ASR job to wait on.

    A re-run finds a test failover of this VM already running (its current scenario) and
    returns that job rather than starting another.

    :param site_name: The site file, read again on the worker.
    :param target: The VM as the readiness gate chose it (a :class:`~site_recovery.records.VmTarget`).
    """

    @sort_errors
    def execute(self, context: Context) -> str | None:
        from site_recovery.hooks.asr import summarize_protected_item
        from site_recovery.site import load_site_named
        from site_recovery.tasks.drill import drill_hook

        site = load_site_named(self.site_name)
        hook, az, t = drill_hook(site), site.azure, self.vm_target
        item = summarize_protected_item(hook.get_protected_item(az.resource_group, az.vault_name, t.fabric,
                                                                 t.container, t.item_name))
        if item.running_test_failover_job:
            self.log.info("VM %r: a test failover is already running (job %s); waiting on it.", t.vm,
                          item.running_test_failover_job)
            return item.running_test_failover_job
        props = {"failoverDirection": "PrimaryToRecovery", "networkType": "NoNetworkAttachAsInput",
                 "providerSpecificDetails": {"instanceType": "ProviderSpecificFailoverInput"}}
        if t.network_id:
            props.update(networkType="VmNetworkAsInput", networkId=t.network_id)
        self.log.info("Test failover of VM %r into %s.", t.vm, t.network or "no network (isolated)")
        return hook.test_failover(az.resource_group, az.vault_name, t.fabric, t.container, t.item_name,
                                  {"properties": props})
