"""The emulated Azure Resource Manager surface for Recovery Services and Site Recovery.

``models.ArmBackend`` is the state model (verbs, jobs, lazy time, persistence);
``routes.dispatch`` is the wire layer the lab's HTTPS server calls for ``/subscriptions/...``.
"""

from .errors import ArmError
from .models import ArmBackend

__all__ = ["ArmBackend", "ArmError"]
