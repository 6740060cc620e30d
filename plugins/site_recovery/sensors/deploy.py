"""Sensors of the deployment DAG: an ASR job wait that is a no-op without a job, and the fabric wait."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout
from site_recovery.sensors.asr import AsrJobSensor

if TYPE_CHECKING:
    from airflow.sdk import Context


class OptionalAsrJobSensor(AsrJobSensor):
    """:class:`AsrJobSensor` that succeeds at once when its start task started no job (nothing changed)."""

    def execute(self, context: Context) -> Any:
        if not self.job_name or self.job_name == "None":
            self.log.info("Nothing was started, so there is no ASR job to wait for.")
            return None
        return super().execute(context)


class FabricConnectedSensor(BaseSensorOperator):
    """
    Wait until the vault shows the fabric of a VMM server with a connected ASR Provider (step 6).

    Reads the vault once per check; between checks it defers on a timer, so no worker is held.

    :param site_name: The site whose ``primary`` or ``recovery`` VMM server to look for.
    :param side: ``primary`` or ``recovery``.
    """

    template_fields = ("site_name", "side")

    def __init__(self, *, site_name: str, side: str, poke_interval: float = 30, timeout: float = 1800,
                 **kwargs: Any) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.site_name, self.side = site_name, side

    def _connected(self) -> tuple[bool, str]:
        from site_recovery.hooks.asr import AzureSiteRecoveryHook
        from site_recovery.operators.deploy_common import load_site_named
        from site_recovery.operators.deploy_vault import read_vault

        site = load_site_named(self.site_name)
        server = (site.primary if self.side == "primary" else site.recovery).vmm
        view = read_vault(AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id), site, details=False)
        fabric = view.fabric_for(server) if view.exists else None
        if fabric is None:
            return False, f"vault {site.azure.vault_name} shows no fabric for {server.fqdn} yet"
        if not fabric.connected:
            return False, f"fabric {fabric.friendly_name} is there, its provider is not connected yet"
        return True, f"fabric {fabric.friendly_name} ({fabric.name}) has a connected provider"

    def poke(self, context: Context) -> bool:
        from site_recovery.operators.deploy_common import selected

        if not selected(context, "source_and_target"):
            self.log.info("Step source_and_target not selected; not waiting.")
            return True
        done, message = self._connected()
        self.log.info("%s.", message[0].upper() + message[1:])
        return done

    def execute(self, context: Context, event: Any = None) -> None:
        deadline = (event or {}).get("deadline") if isinstance(event, dict) else None
        deadline = deadline or time.time() + self.timeout
        if self.poke(context):
            return
        if time.time() >= deadline:
            raise AirflowSensorTimeout(f"The {self.side} VMM server's fabric was not connected within "
                                       f"{self.timeout:.0f} s.")
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.poke_interval)), method_name="resume",
                   kwargs={"deadline": deadline}, timeout=timedelta(seconds=max(deadline - time.time(), 1) + 60))

    def resume(self, context: Context, event: Any = None, deadline: float | None = None) -> None:
        self.execute(context, {"deadline": deadline})
