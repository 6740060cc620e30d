"""The base of every operator that works on one VM of a site, and who answered a required action."""

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


def answered_by(answer: dict[str, Any]) -> str:
    """Who answered a required action (an HITL operator's ``execute_complete`` answer), as reports name them."""
    user = answer.get("responded_by_user") or {}
    return user.get("name") or user.get("id") or "unknown user"
