"""Sensors of the deployment DAG: the fabric wait of step 6, and the ASR job wait that is a no-op without a job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException
from site_recovery.sensors.asr import OptionalAsrJobSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["FabricConnectedSensor", "OptionalAsrJobSensor"]


class FabricConnectedSensor(BaseSensorOperator):
    """
    Wait until the vault shows the fabric of a VMM server with a connected ASR Provider (step 6).

    Each poke reads the vault once. It is an ordinary Airflow sensor: in the default
    ``reschedule`` mode no worker is held between pokes, and ``timeout`` (fails with
    ``AirflowSensorTimeout``), ``soft_fail``, ``exponential_backoff`` and ``max_wait`` work as for
    any sensor. A transient Azure error (throttling, 5xx, network) counts as "not yet"; any other
    error fails the poke. When the run leaves step 6 out, the first poke succeeds.

    :param site_name: The site whose ``primary`` or ``recovery`` VMM server to look for.
    :param side: ``primary`` or ``recovery``.
    """

    template_fields: Sequence[str] = ("site_name", "side")
    ui_color = "#0078d4"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, site_name: str, side: str, poke_interval: float = 30, timeout: float = 1800,
                 mode: str = "reschedule", **kwargs: Any) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, mode=mode, **kwargs)
        self.site_name = site_name
        self.side = side

    def poke(self, context: Context) -> bool:
        from site_recovery.deployment import fabric_status, read_vault, selected, site_side
        from site_recovery.hooks.asr import AzureSiteRecoveryHook, is_transient
        from site_recovery.site import load_site_named

        if not selected(context, "source_and_target"):
            raise AirflowSkipException("Step source_and_target is not in this run's steps: not waiting.")
        site = load_site_named(self.site_name)
        server = site_side(site, self.side).vmm
        try:
            view = read_vault(AzureSiteRecoveryHook(azure_conn_id=site.azure.conn_id), site, details=False)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.log.warning("Transient error reading vault %s, will read it again: %s", site.azure.vault_name, exc)
            return False
        done, message = fabric_status(view, site, server)
        self.log.info("%s.", message[0].upper() + message[1:])
        return done
