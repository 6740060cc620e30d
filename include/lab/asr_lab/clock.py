"""Lab time: realistic durations multiplied by a scale, read lazily from timestamps.

Nothing in the lab sleeps to make time pass. A job records when each of its tasks is due
to end; whoever reads the job compares those instants with ``Clock.now()``. A scale of 0
makes every duration zero, so anything started is finished on the next read.

The scale may change while the lab runs (``POST /_lab/clock``): durations computed from
then on use the new scale; instants already computed (a task's due time, the end of an
initial replication window) stay as they were.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone


def non_negative_number(value: object, name: str = "time scale") -> float:
    """``value`` as a finite number >= 0 (a time scale, a lag), or a ValueError naming the problem."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


class Clock:
    """Wall-clock time plus the lab's time scale."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = non_negative_number(scale)

    def set_scale(self, scale: float) -> None:
        """Scale durations computed from now on; instants computed earlier do not move."""
        self.scale = non_negative_number(scale)

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def duration(self, realistic_seconds: float) -> timedelta:
        """How long something that takes ``realistic_seconds`` in a real estate takes here."""
        return timedelta(seconds=realistic_seconds * self.scale)

    def after(self, realistic_seconds: float) -> datetime:
        return self.now() + self.duration(realistic_seconds)


class ManualClock(Clock):
    """A clock that moves only when told to; for in-process unit tests of lab state."""

    def __init__(self, scale: float = 1.0, start: datetime | None = None) -> None:
        super().__init__(scale)
        self._now = start or datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
