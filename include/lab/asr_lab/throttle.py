"""ARM's request throttling, as Azure Resource Manager applies it since 2024.

A token bucket per subscription, service principal and operation class (reads, writes, deletes):
a request takes one token; tokens come back at a steady rate up to the bucket's size. The
subscription as a whole has buckets 15 times larger, shared by every principal. A request that
finds either bucket empty is refused with 429 and a ``Retry-After`` (whole seconds until a token
is back); it takes no token. Every answer carries what is left, as ARM's headers
``x-ms-ratelimit-remaining-subscription-<class>`` and ``...-global-<class>`` do
(../shared/reference/dr-landscape.md §3).

The state here is plain data and a clock reading passed in: nothing sleeps and nothing reads the
time by itself, so a test drives the buckets with made-up instants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

#: The subscription's buckets are this many times a principal's (ARM's documented ratio).
GLOBAL_FACTOR = 15


class OperationClass(StrEnum):
    """ARM's operation classes, named as its ``x-ms-ratelimit-remaining-subscription-*`` headers name them."""

    READS = "reads"
    WRITES = "writes"
    DELETES = "deletes"

    @classmethod
    def of(cls, method: str) -> "OperationClass":
        """GET and HEAD read; DELETE deletes; PUT, PATCH and POST (actions included) write."""
        method = method.upper()
        if method in ("GET", "HEAD"):
            return cls.READS
        if method == "DELETE":
            return cls.DELETES
        return cls.WRITES


@dataclass(frozen=True)
class BucketLimit:
    """A bucket's size and how many tokens come back per second."""

    burst: int
    per_second: float

    def __post_init__(self) -> None:
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be a whole number of requests, 1 or more; got {self.burst!r}")
        if (isinstance(self.per_second, bool) or not isinstance(self.per_second, (int, float))
                or not math.isfinite(self.per_second) or self.per_second <= 0):
            raise ValueError(f"per_second must be a number above 0; got {self.per_second!r}")

    def scaled(self, factor: int) -> "BucketLimit":
        return BucketLimit(self.burst * factor, self.per_second * factor)

    def as_dict(self) -> dict:
        return {"burst": self.burst, "per_second": self.per_second}


#: ARM's per-principal limits (learn.microsoft.com, request-limits-and-throttling, 2024).
ARM_LIMITS: dict[OperationClass, BucketLimit] = {
    OperationClass.READS: BucketLimit(250, 25),
    OperationClass.WRITES: BucketLimit(200, 10),
    OperationClass.DELETES: BucketLimit(200, 10),
}


@dataclass
class TokenBucket:
    """Tokens left as of ``updated`` (seconds on the caller's clock); refilled lazily when read."""

    limit: BucketLimit
    tokens: float
    updated: float

    @classmethod
    def full(cls, limit: BucketLimit, now: float) -> "TokenBucket":
        return cls(limit, float(limit.burst), now)

    def level(self, now: float) -> float:
        """Tokens at ``now`` (a clock that went backwards refills nothing)."""
        elapsed = max(0.0, now - self.updated)
        return min(float(self.limit.burst), self.tokens + elapsed * self.limit.per_second)

    def refill(self, now: float) -> None:
        self.tokens, self.updated = self.level(now), max(now, self.updated)

    def wait_for_token(self, now: float) -> int:
        """Whole seconds until one token is back (0 when one is there), as ``Retry-After`` says it."""
        missing = 1.0 - self.level(now)
        return 0 if missing <= 0 else max(1, math.ceil(missing / self.limit.per_second))


@dataclass(frozen=True)
class Admission:
    """The throttle's answer to one request: let through or not, what is left, how long to wait."""

    admitted: bool
    operation: OperationClass
    remaining: int
    remaining_global: int
    retry_after: int = 0

    def headers(self) -> dict[str, str]:
        """ARM's ``x-ms-ratelimit-remaining-*`` headers (and ``Retry-After`` on a refusal)."""
        headers = {f"x-ms-ratelimit-remaining-subscription-{self.operation}": str(self.remaining),
                   f"x-ms-ratelimit-remaining-subscription-global-{self.operation}": str(self.remaining_global)}
        if not self.admitted:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@dataclass
class ArmThrottle:
    """Every bucket of the lab's ARM, and counts of what it let through and refused."""

    enabled: bool = True
    limits: dict[OperationClass, BucketLimit] = field(default_factory=lambda: dict(ARM_LIMITS))
    _principal: dict[tuple[str, str, OperationClass], TokenBucket] = field(default_factory=dict)
    _subscription: dict[tuple[str, OperationClass], TokenBucket] = field(default_factory=dict)
    admitted: dict[OperationClass, int] = field(default_factory=lambda: dict.fromkeys(OperationClass, 0))
    throttled: dict[OperationClass, int] = field(default_factory=lambda: dict.fromkeys(OperationClass, 0))

    def admit(self, subscription: str, principal: str, method: str, now: float) -> Admission:
        """Take a token from the principal's and the subscription's bucket of ``method``'s class, or
        refuse (taking none) with the wait until both have one."""
        operation = OperationClass.of(method)
        mine = self._bucket(self._principal, (subscription, principal.lower(), operation),
                            self.limits[operation], now)
        shared = self._bucket(self._subscription, (subscription, operation),
                              self.limits[operation].scaled(GLOBAL_FACTOR), now)
        mine.refill(now)
        shared.refill(now)
        if not self.enabled or (mine.tokens >= 1 and shared.tokens >= 1):
            if self.enabled:
                mine.tokens -= 1
                shared.tokens -= 1
            self.admitted[operation] += 1
            return Admission(True, operation, int(mine.tokens), int(shared.tokens))
        self.throttled[operation] += 1
        return Admission(False, operation, int(mine.tokens), int(shared.tokens),
                         retry_after=max(mine.wait_for_token(now), shared.wait_for_token(now)))

    @staticmethod
    def _bucket(buckets: dict, key: tuple, limit: BucketLimit, now: float) -> TokenBucket:
        bucket = buckets.get(key)
        if bucket is None or bucket.limit != limit:
            bucket = buckets[key] = TokenBucket.full(limit, now)
        return bucket

    def configure(self, *, enabled: bool | None = None,
                  limits: dict[OperationClass, BucketLimit] | None = None) -> None:
        """Turn throttling on or off and/or change some classes' limits; every bucket starts full."""
        if enabled is not None:
            self.enabled = enabled
        if limits:
            self.limits = {**self.limits, **limits}
        self._principal.clear()
        self._subscription.clear()

    def status(self) -> dict:
        return {"enabled": self.enabled,
                "limits": {str(op): limit.as_dict() for op, limit in self.limits.items()},
                "global_factor": GLOBAL_FACTOR,
                "admitted": {str(op): n for op, n in self.admitted.items()},
                "throttled": {str(op): n for op, n in self.throttled.items()}}


def parse_limits(body: object) -> dict[OperationClass, BucketLimit]:
    """``{"reads": {"burst": 20, "per_second": 2}, ...}`` from the admin API, every mistake named."""
    if not isinstance(body, dict):
        raise ValueError('limits must be an object such as {"reads": {"burst": 20, "per_second": 2}}')
    limits = {}
    for name, spec in body.items():
        try:
            operation = OperationClass(name)
        except ValueError:
            raise ValueError(f"unknown operation class {name!r}; known: "
                             f"{[str(op) for op in OperationClass]}") from None
        if not isinstance(spec, dict) or set(spec) != {"burst", "per_second"}:
            raise ValueError(f"limits.{name} must be an object with exactly burst and per_second")
        try:
            limits[operation] = BucketLimit(spec["burst"], spec["per_second"])
        except ValueError as exc:
            raise ValueError(f"limits.{name}: {exc}") from None
    return limits
