"""What the lab remembers about its traffic: the request log and injected HTTP faults.

Tests assert on what the product did, not on what it printed; the request log is that
record. HTTP faults make the next N matching requests fail the way Azure fails under load
(429 with Retry-After, 503) or refuses a caller (401), without touching the state model, or
answer late: the request is served (a job starts) and its answer held back, as when a caller
dies or the network drops between Azure accepting a request and the caller hearing of it.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field

REQUEST_LOG_CAPACITY = 200_000
MUTATING_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})


@dataclass
class LoggedRequest:
    seq: int
    method: str
    path: str
    query: str
    status: int
    started: float
    ended: float
    client_request_id: str | None
    fault_id: str | None = None
    service: str = "arm"
    #: refused by ARM's throttling (429) before anything was done
    throttled: bool = False

    @property
    def mutating(self) -> bool:
        """A request that may change Azure state (token requests and throttled requests change nothing)."""
        return self.service == "arm" and self.method in MUTATING_METHODS and not self.throttled

    def as_dict(self) -> dict:
        data = asdict(self)
        data["duration_ms"] = round((self.ended - self.started) * 1000, 3)
        data["mutating"] = self.mutating
        return data


class RequestLog:
    """A bounded, append-only log of every request the lab answered (admin calls excluded)."""

    def __init__(self, capacity: int = REQUEST_LOG_CAPACITY) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=capacity)
        self._seq = itertools.count(1)

    def record(self, **fields) -> LoggedRequest:
        entry = LoggedRequest(seq=next(self._seq), **fields)
        self._entries.append(entry)
        return entry

    def query(self, since: int = 0, method: str | None = None, path: str | None = None,
              mutating: bool | None = None) -> list[dict]:
        pattern = re.compile(path, re.IGNORECASE) if path else None
        out = []
        for entry in self._entries:
            if entry.seq <= since:
                continue
            if method and entry.method != method.upper():
                continue
            if pattern and not pattern.search(entry.path):
                continue
            if mutating is not None and entry.mutating != mutating:
                continue
            out.append(entry.as_dict())
        return out

    @property
    def last_seq(self) -> int:
        return self._entries[-1].seq if self._entries else 0

    def clear(self) -> None:
        self._entries.clear()


@dataclass
class HttpFault:
    """Answer the next ``count`` requests matching method and path with ``status``; or, with
    ``answer_after`` instead of a status, serve them and hold each answer back that many seconds
    (wall time, not lab time: the network, not Azure, is slow)."""

    status: int | None = None
    path: str = ".*"
    method: str = "*"
    count: int = 1
    retry_after: int | None = None
    code: str | None = None
    message: str | None = None
    answer_after: float | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    hits: int = 0

    def __post_init__(self) -> None:
        if (self.status is None) == (self.answer_after is None):
            raise ValueError("a fault needs either 'status' (an HTTP error to answer) or 'answer_after' "
                             "(seconds to hold a served request's answer), not both")
        if self.answer_after is not None:
            if not 0 < float(self.answer_after) <= 3600:
                raise ValueError(f"fault answer_after must be seconds in (0, 3600], got {self.answer_after}")
        elif not 400 <= int(self.status) <= 599:
            raise ValueError(f"fault status must be an HTTP error (400-599), got {self.status}")
        if int(self.count) < 0:
            raise ValueError(f"fault count must be >= 0 (0 = until removed), got {self.count}")
        try:
            self._pattern = re.compile(self.path, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"fault path is not a valid regular expression: {exc}") from None
        self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method):
            return False
        return bool(self._pattern.search(path))

    @property
    def exhausted(self) -> bool:
        return self.count and self.hits >= self.count

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items()}

    def body(self) -> dict:
        code, message = self.code, self.message
        if code is None:
            code, message = _DEFAULT_FAULTS.get(self.status, ("InternalServerError", "The server encountered an internal error."))
        return {"error": {"code": code, "message": message or code}}


_DEFAULT_FAULTS = {
    401: ("InvalidAuthenticationToken", "The access token is invalid."),
    403: ("AuthorizationFailed", "The client does not have authorization to perform this action."),
    408: ("RequestTimeout", "The request timed out."),
    429: ("TooManyRequests", "The request was throttled. Please retry after the time in the Retry-After header."),
    500: ("InternalServerError", "Encountered internal server error. Please try again."),
    502: ("BadGateway", "The gateway did not receive a response within the specified time period."),
    503: ("ServiceUnavailable", "The service is currently unavailable. Please retry the request later."),
    504: ("GatewayTimeout", "The gateway did not receive a response within the specified time period."),
}


class HttpFaults:
    """The injected HTTP faults, consulted in insertion order."""

    def __init__(self) -> None:
        self._faults: list[HttpFault] = []

    def add(self, spec: dict) -> HttpFault:
        allowed = {"status", "path", "method", "count", "retry_after", "code", "message", "answer_after"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        fault = HttpFault(**spec)
        self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> HttpFault | None:
        """The fault that answers this request, counting the hit; None when none applies."""
        for fault in self._faults:
            if not fault.exhausted and fault.matches(method, path):
                fault.hits += 1
                return fault
        return None

    def remove(self, fault_id: str) -> bool:
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.id != fault_id]
        return len(self._faults) != before

    def clear(self) -> None:
        self._faults.clear()

    def list(self) -> list[dict]:
        return [f.as_dict() | {"exhausted": bool(f.exhausted)} for f in self._faults]


def now() -> float:
    return time.time()
