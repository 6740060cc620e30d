"""The base of every operator that works on one VM of a site, mapped over a plan's targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class VmOperator(BaseOperator):
    """A task about one VM of a site: mapped over the plan's targets, labelled with the VM's name.

    :param site_name: The site file, read again on the worker.
    :param target: The VM as the plan or the gate chose it: a :class:`~site_recovery.records.VmTarget`
        (or its JSON form, as a template or an older XCom renders it); read it through :attr:`vm_target`.
    """

    template_fields: Sequence[str] = ("target",)
    ui_color = "#e6f1fb"

    def __init__(self, *, site_name: str, target: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site_name = site_name
        self.target = target

    @property
    def vm_target(self):
        """The rendered target, validated (a malformed one names the missing field)."""
        from site_recovery.records import VmTarget

        return self.target if isinstance(self.target, VmTarget) else VmTarget.model_validate(self.target)
