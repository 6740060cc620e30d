"""The lab's HTTPS application: Entra ID, ARM and the /_lab/ admin API on one origin.

Routing and cross-cutting concerns live here (bearer-token check, the request log, injected
HTTP faults, persistence); what the ARM resources are and how they answer lives in
``asr_lab.arm``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asr_lab.arm.models import ArmBackend
from asr_lab.arm.routes import dispatch
from asr_lab.clock import Clock
from asr_lab.control import HttpFaults, RequestLog
from asr_lab.estate import Estate
from asr_lab.identity import AppRegistration, Identity, TokenError
from asr_lab.onprem import OnPremState
from asr_lab.throttle import ArmThrottle
from asr_lab import store

log = logging.getLogger("asr_lab")

ADMIN_PREFIX = "/_lab"
_IDENTITY_PATH = re.compile(r"^/[^/]+/(oauth2|v2\.0)/")
_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)
SAVE_DELAY_SECONDS = 0.05
ARM_METHODS = ["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"]
#: set in the request's ASGI scope (shared by the router and this module's middleware) when ARM's
#: throttling refused it, so the request log can tell a refusal from an answer
THROTTLED_SCOPE_KEY = "asr_lab.throttled"
DEFAULT_RETRY_AFTER_SECONDS = 30  # what ASR sends on its 202s; scaled by the time scale


def retry_after_for(scale: float) -> int:
    """The Retry-After (whole seconds) the lab's 202s carry at time scale ``scale``."""
    return round(DEFAULT_RETRY_AFTER_SECONDS * scale)


class Lab:
    """One running lab: its state model, identity, traffic record and persistence."""

    def __init__(self, state_dir: Path, estate: Estate, clock: Clock, base_url: str,
                 registration: AppRegistration, admin_token: str, retry_after: int = 0,
                 throttled: bool = True) -> None:
        self.state_dir = state_dir
        self.estate = estate
        self.clock = clock
        self.base_url = base_url
        self.registration = registration
        self.admin_token = admin_token
        self.retry_after = retry_after
        #: what ``reset`` restores after ``set_time_scale``
        self.started_time_scale = clock.scale
        self._started_retry_after = retry_after
        self.identity = Identity(registration, base_url)
        #: ARM's request throttling (real time, not lab time: a rate limit is on the wire)
        self.throttle = ArmThrottle(enabled=throttled)
        self._started_throttled = throttled
        self.requests = RequestLog()
        self.faults = HttpFaults()
        saved = store.load_state(state_dir)
        if saved is None:
            self.backend = self._new_backend()
            self.onprem = OnPremState.initial(estate)
        else:
            self.backend = ArmBackend.from_dict(saved["arm"], estate, clock, base_url)
            self.backend.retry_after = retry_after
            self.onprem = OnPremState.from_dict(saved["onprem"], estate)
        self._saved_versions = self._versions() if saved else None
        self._save_task: asyncio.Task | None = None
        #: named copies of the state (``snapshot``/``restore``), in memory only
        self._snapshots: dict[str, tuple[str, str]] = {}
        #: The emulated Windows servers, by FQDN (attached by the server once it has ports).
        self.windows: dict = {}

    def _new_backend(self) -> ArmBackend:
        backend = ArmBackend(self.estate, self.clock, self.base_url)
        backend.retry_after = self.retry_after
        return backend

    def reset(self) -> None:
        """Back to the estate as described: no vault, servers as built, no faults, empty logs,
        lab time at the scale the lab was started with."""
        self.clock.set_scale(self.started_time_scale)
        self.retry_after = self._started_retry_after
        self._publish_time_scale()
        self.backend = self._new_backend()
        self.onprem = OnPremState.initial(self.estate)
        self.faults.clear()
        self.requests.clear()
        self.throttle = ArmThrottle(enabled=self._started_throttled)
        self.identity.reset()
        for server in self.windows.values():
            server.service.reset()
            server.controls.resume_answering()
            server.controls.release_pipelines()
        self.save_now()

    def snapshot(self, name: str) -> None:
        """Keep a copy of the ARM and on-premises state as ``name``, for ``restore`` (in memory, lost on restart).

        A test suite deploys and protects the estate once, then starts each test from the copy.
        """
        self.backend.settle()
        self._snapshots[name] = (json.dumps(self.backend.to_dict()), json.dumps(self.onprem.to_dict()))

    def restore(self, name: str) -> None:
        """``reset``, then the state kept as ``name``: no faults, empty logs, servers answering.

        :raise KeyError: no snapshot of that name.
        """
        arm, onprem = self._snapshots[name]
        self.reset()
        self.backend = ArmBackend.from_dict(json.loads(arm), self.estate, self.clock, self.base_url)
        self.backend.retry_after = self.retry_after
        self.onprem = OnPremState.from_dict(json.loads(onprem), self.estate)
        self.save_now()

    def set_time_scale(self, scale: float) -> None:
        """Run lab time at ``scale`` from now on (``ArmBackend.set_time_scale`` says what moves).

        The 202s' Retry-After follows the scale and ``endpoints.json`` is rewritten with the
        new ``time_scale``. Not persisted: a restarted lab runs at its ``--time-scale``.

        :raise ValueError: ``scale`` is not a finite number >= 0.
        """
        self.backend.set_time_scale(scale)
        self.retry_after = self.backend.retry_after = retry_after_for(self.clock.scale)
        self._publish_time_scale()
        self.save_now()

    def _publish_time_scale(self) -> None:
        """Keep ``time_scale`` in endpoints.json (written by ``asr-lab serve``) current."""
        path = self.state_dir / store.ENDPOINTS_FILE
        endpoints = store.read_json(path)
        if endpoints is not None and endpoints.get("time_scale") != self.clock.scale:
            endpoints["time_scale"] = self.clock.scale
            store.write_json(path, endpoints, private=True)

    # ---- persistence ---------------------------------------------------------------------
    def _versions(self) -> tuple[int, int]:
        return self.backend.version, self.onprem.version

    def save_now(self) -> None:
        store.save_state(self.state_dir, self.backend.to_dict(), self.onprem.to_dict())
        self._saved_versions = self._versions()

    def save_soon(self) -> None:
        """Coalesce bursts of mutations into one write a few milliseconds later."""
        if self._versions() == self._saved_versions or self._save_task is not None:
            return

        async def _save() -> None:
            try:
                await asyncio.sleep(SAVE_DELAY_SECONDS)
                self.save_now()
            except Exception:  # pragma: no cover - the lab keeps serving; the log says why
                log.exception("could not save lab state to %s", self.state_dir)
            finally:
                self._save_task = None

        self._save_task = asyncio.get_running_loop().create_task(_save())

    # ---- ARM -----------------------------------------------------------------------------
    async def arm(self, request: Request) -> Response:
        try:
            claims = self.identity.check_bearer(request.headers.get("authorization"))
        except TokenError as exc:
            return JSONResponse(
                {"error": {"code": exc.code, "message": exc.message}},
                status_code=401,
                headers={"WWW-Authenticate": self.identity.www_authenticate(),
                         "x-ms-request-id": str(uuid.uuid4())},
            )
        subscription = _SUBSCRIPTION.match(request.url.path)
        principal = claims.get("appid", "")
        admission = self.throttle.admit(subscription.group(1).lower() if subscription else "",
                                        principal, request.method, time.monotonic())
        if not admission.admitted:
            request.scope[THROTTLED_SCOPE_KEY] = True
            return JSONResponse(
                {"error": {"code": "SubscriptionRequestsThrottled",
                           "message": f"Number of '{admission.operation.removesuffix('s')}' requests for "
                                      f"subscription '{subscription.group(1) if subscription else ''}' actor "
                                      f"'{principal}' exceeded. Please try again after '{admission.retry_after}' "
                                      "seconds after additional tokens are available. Refer to "
                                      "https://aka.ms/arm-throttling for additional information."}},
                status_code=429,
                headers={**admission.headers(), "x-ms-request-id": str(uuid.uuid4()),
                         **_echo_client_request_id(request)},
            )
        response = await dispatch(request, self.backend)
        response.headers.update(admission.headers())
        self.save_soon()
        return response


def build_app(lab: Lab) -> Starlette:
    from asr_lab.admin import admin_routes

    routes = [
        *admin_routes(lab, ADMIN_PREFIX),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", lab.identity.openid_configuration),
        Route("/{tenant}/oauth2/v2.0/token", lab.identity.token, methods=["POST"]),
        Route("/{path:path}", lab.arm, methods=ARM_METHODS),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        lab.save_now()

    app = Starlette(routes=routes, lifespan=lifespan)
    return TrafficRecorder(app, lab)


class TrafficRecorder:
    """ASGI middleware: answer injected faults, and log every non-admin request."""

    def __init__(self, app, lab: Lab) -> None:
        self.app = app
        self.lab = lab

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.time()
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        client_request_id = _header(scope, b"x-ms-client-request-id")
        status_holder = {"status": 500}
        fault = self.lab.faults.take(method, path)
        if fault is not None and fault.answer_after is not None:
            held: list = []

            async def hold(message) -> None:
                if message["type"] == "http.response.start":
                    status_holder["status"] = message["status"]
                held.append(message)

            await self.app(scope, receive, hold)  # served now: whatever it starts has started
            await asyncio.sleep(fault.answer_after)
            try:
                for message in held:
                    await send(message)
            except OSError:  # the caller is gone (killed while it waited): it never hears the answer
                pass
        elif fault is not None:
            headers = {"x-ms-request-id": str(uuid.uuid4())}
            if client_request_id:
                headers["x-ms-client-request-id"] = client_request_id
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            response = JSONResponse(fault.body(), status_code=fault.status, headers=headers)
            status_holder["status"] = fault.status
            await response(scope, receive, send)
        else:
            async def send_and_watch(message) -> None:
                if message["type"] == "http.response.start":
                    status_holder["status"] = message["status"]
                await send(message)

            await self.app(scope, receive, send_and_watch)
        self.lab.requests.record(
            method=method, path=path, query=query, status=status_holder["status"],
            started=started, ended=time.time(), client_request_id=client_request_id,
            fault_id=fault.id if fault else None,
            service="identity" if _IDENTITY_PATH.match(path) else "arm",
            throttled=scope.get(THROTTLED_SCOPE_KEY, False),
        )


def _echo_client_request_id(request: Request) -> dict[str, str]:
    sent = request.headers.get("x-ms-client-request-id")
    return {"x-ms-client-request-id": sent} if sent else {}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
