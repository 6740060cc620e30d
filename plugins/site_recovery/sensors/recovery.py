"""The verification of a real recovery: each recovered VM runs, answers its heartbeat and passes the site's probes."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from site_recovery.exceptions import RecoveryFailed
from site_recovery.sensors.drill import TestVmVerifiedSensor
from site_recovery.vocabulary import FailoverDirection

if TYPE_CHECKING:
    from site_recovery.hooks.vmm import VmmScriptHook


class RecoveredVmVerifiedSensor(TestVmVerifiedSensor):
    """
    Wait until a failed-over VM runs with a heartbeat on the VMM server of the site it went to, then run
    the site's probes (``drill.probes``: what a drill proves is what a recovery is verified by).

    The drill's verification (:class:`~site_recovery.sensors.drill.TestVmVerifiedSensor`) looking at
    the VM itself rather than its test VM: the replica on the recovery site after a failover, the
    original on the primary site after a failback. Pushes each look under ``verify`` (the commit
    approval shows it); a failed probe fails at once (:class:`~site_recovery.exceptions.RecoveryFailed`).

    :param direction: The recovery's direction: which site's VMM server is asked.
    :param timeout: Seconds to wait: the site's ``failover.verify_timeout``.
    """

    noun, timeout_setting = "recovered VM", "failover.verify_timeout"
    ui_color = "#17917f"

    def __init__(self, *, direction: FailoverDirection, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direction = FailoverDirection(direction)

    @cached_property
    def vmm(self) -> VmmScriptHook:
        """The VMM server of the site the VM went to."""
        from site_recovery.failover import sides
        from site_recovery.hooks.vmm import VmmScriptHook

        goes_to = sides(self.direction)[1]
        return VmmScriptHook(getattr(self.site, goes_to).vmm.psrp_conn_id)

    def looked_at(self) -> str:
        return self.vm_name

    def failed(self, message: str) -> Exception:
        return RecoveryFailed(message)
