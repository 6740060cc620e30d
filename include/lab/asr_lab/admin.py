"""The /_lab/ admin API: fault injection, the request log, provider registration, lab time,
stalled replication, ARM's throttling, token counts, reset.

Everything here is for tests, the demo and DR engineers poking at the lab; none of it exists
in Azure, which is why it sits under a reserved prefix and needs its own token.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asr_lab.arm.errors import ArmError
from asr_lab.arm.protection import ReplicationControlError
from asr_lab.clock import non_negative_number
from asr_lab.throttle import parse_limits

if TYPE_CHECKING:
    from asr_lab.app import Lab

#: the longest replication lag the admin API accepts (a year, in seconds)
MAX_LAG_SECONDS = 365 * 24 * 3600


def admin_routes(lab: "Lab", prefix: str) -> list[Route]:
    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(supplied.encode(), lab.admin_token.encode()):
                return JSONResponse({"error": "admin token missing or wrong"}, status_code=401)
            try:
                return await handler(request)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except ArmError as exc:
                return JSONResponse(exc.envelope(), status_code=exc.status)

        return endpoint

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            lab.requests.clear()
            return Response(status_code=204)
        q = request.query_params
        mutating = q.get("mutating")
        entries = lab.requests.query(
            since=int(q.get("since", 0)), method=q.get("method"), path=q.get("path"),
            mutating=None if mutating is None else mutating.lower() in ("1", "true", "yes"),
        )
        return JSONResponse({"requests": entries, "last_seq": lab.requests.last_seq})

    async def http_faults(request: Request) -> Response:
        if request.method == "POST":
            fault = lab.faults.add(await _json(request))
            return JSONResponse(fault.as_dict(), status_code=201)
        if request.method == "DELETE":
            lab.faults.clear()
            return Response(status_code=204)
        return JSONResponse({"faults": lab.faults.list()})

    async def http_fault(request: Request) -> Response:
        if not lab.faults.remove(request.path_params["fault_id"]):
            return JSONResponse({"error": "no such fault"}, status_code=404)
        return Response(status_code=204)

    async def job_faults(request: Request) -> Response:
        if request.method == "POST":
            fault = lab.backend.add_job_fault(await _json(request))
            lab.save_now()
            return JSONResponse(fault, status_code=201)
        if request.method == "DELETE":
            lab.backend.clear_job_faults()
            lab.save_now()
            return Response(status_code=204)
        return JSONResponse({"faults": lab.backend.list_job_faults()})

    async def providers(request: Request) -> Response:
        body = await _json(request)
        missing = {"vault_id", "vmm_server"} - body.keys()
        if missing:
            raise ValueError(f"missing field(s) {sorted(missing)}: need vault_id (ARM id) and vmm_server (FQDN)")
        lab.backend.settle()
        fabric = lab.backend.register_provider(body["vault_id"], body["vmm_server"])
        lab.save_now()
        return JSONResponse(fabric, status_code=201)

    async def state(request: Request) -> Response:
        lab.backend.settle()
        return JSONResponse(lab.backend.summary())

    async def winrm_invocations(request: Request) -> Response:
        server = request.query_params.get("server")
        entries = [dict(entry) for fqdn, windows in lab.windows.items() if server in (None, fqdn)
                   for entry in windows.service.invocations]
        return JSONResponse({"invocations": sorted(entries, key=lambda e: e["started"])})

    async def winrm_controls(request: Request) -> Response:
        fqdn = request.path_params["fqdn"].lower()
        if fqdn not in lab.windows:
            return JSONResponse({"error": f"no Windows server {fqdn!r}; known: {sorted(lab.windows)}"},
                                status_code=404)
        body = await _json(request)
        controls = lab.windows[fqdn].controls
        if "answering" in body:
            controls.resume_answering() if body["answering"] else controls.stop_answering()
        if "hold_pipelines" in body:
            controls.hold_pipelines() if body["hold_pipelines"] else controls.release_pipelines()
        return JSONResponse({"answering": not controls.unresponsive, "hold_pipelines": controls.holding_pipelines})

    async def clock(request: Request) -> Response:
        """``{"time_scale": X}``: durations computed from now on use X; jobs already
        scheduled keep their due instants (see ``ArmBackend.set_time_scale``)."""
        if request.method == "POST":
            lab.set_time_scale(_time_scale(await _json(request)))
        return JSONResponse({"time_scale": lab.clock.scale})

    async def replication(request: Request) -> Response:
        """``{"paused": true, "lag_seconds": 7200}`` stalls one VM's replication; ``{"paused":
        false}`` resumes it (see ``ArmBackend.set_replication``)."""
        vm_name = request.path_params["vm_name"]
        paused, lag_seconds = _replication_spec(await _json(request))
        try:
            items = lab.backend.set_replication(vm_name, paused, lag_seconds)
        except ReplicationControlError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        lab.save_now()
        return JSONResponse({"vm_name": items[0]["vm_name"], "paused": paused,
                             "lag_seconds": lag_seconds if paused else None, "protected_items": items})

    async def library_script(request: Request) -> Response:
        """``{"vmm": fqdn, "path": "\\RPScripts\\x.ps1", "stderr": "text"}`` makes a VMM library script write
        ``stderr`` (a recovery plan's script action then fails with it); ``"stderr": null`` restores it."""
        body = await _json(request)
        _only(body, {"vmm", "path", "stderr"})
        if not isinstance(body.get("vmm"), str) or not isinstance(body.get("path"), str):
            return JSONResponse({"error": "vmm and path are required (text)"}, status_code=400)
        if body.get("stderr") is not None and not isinstance(body["stderr"], str):
            return JSONResponse({"error": "stderr must be text or null"}, status_code=400)
        try:
            answer = lab.backend.set_failing_script(body["vmm"], body["path"], body.get("stderr"))
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        lab.save_now()
        return JSONResponse(answer)

    async def throttle(request: Request) -> Response:
        """``{"enabled": false}`` lifts ARM's throttling; ``{"limits": {"reads": {"burst": 20, "per_second":
        2}}}`` tightens a class (every bucket starts full again). GET: the limits and what was let through
        and refused since the last reset."""
        if request.method == "POST":
            body = await _json(request)
            _only(body, {"enabled", "limits"})
            enabled = body.get("enabled")
            if enabled is not None and not isinstance(enabled, bool):
                raise ValueError(f"enabled must be true or false, got {enabled!r}")
            lab.throttle.configure(enabled=enabled,
                                   limits=parse_limits(body["limits"]) if "limits" in body else None)
        return JSONResponse(lab.throttle.status())

    async def identity(request: Request) -> Response:
        """GET: token requests by client id since the last reset. POST ``{"token_lifetime_seconds": 60}``:
        tokens issued from now on expire that soon."""
        if request.method == "POST":
            body = await _json(request)
            _only(body, {"token_lifetime_seconds"})
            if "token_lifetime_seconds" not in body:
                raise ValueError("missing field 'token_lifetime_seconds'")
            lab.identity.set_token_lifetime(body["token_lifetime_seconds"])
        return JSONResponse(lab.identity.status())

    async def reset(request: Request) -> Response:
        lab.reset()
        return Response(status_code=204)

    async def snapshots(request: Request) -> Response:
        """POST {"name"}: keep the state under that name; POST {"name", "restore": true}: go back to it."""
        body = await _json(request)
        _only(body, {"name", "restore"})
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return JSONResponse({"error": "name is required (text)"}, status_code=400)
        if body.get("restore"):
            try:
                lab.restore(name)
            except KeyError:
                return JSONResponse({"error": f"no snapshot named {name!r}"}, status_code=404)
        else:
            lab.snapshot(name)
        return Response(status_code=204)

    return [
        Route(f"{prefix}/health", health),
        Route(f"{prefix}/requests", guarded(requests), methods=["GET", "DELETE"]),
        Route(f"{prefix}/faults/http", guarded(http_faults), methods=["GET", "POST", "DELETE"]),
        Route(f"{prefix}/faults/http/{{fault_id}}", guarded(http_fault), methods=["DELETE"]),
        Route(f"{prefix}/faults/jobs", guarded(job_faults), methods=["GET", "POST", "DELETE"]),
        Route(f"{prefix}/providers", guarded(providers), methods=["POST"]),
        Route(f"{prefix}/state", guarded(state)),
        Route(f"{prefix}/winrm/invocations", guarded(winrm_invocations)),
        Route(f"{prefix}/winrm/{{fqdn}}/controls", guarded(winrm_controls), methods=["POST"]),
        Route(f"{prefix}/clock", guarded(clock), methods=["GET", "POST"]),
        Route(f"{prefix}/replication/{{vm_name}}", guarded(replication), methods=["POST"]),
        Route(f"{prefix}/library-scripts", guarded(library_script), methods=["POST"]),
        Route(f"{prefix}/throttle", guarded(throttle), methods=["GET", "POST"]),
        Route(f"{prefix}/identity", guarded(identity), methods=["GET", "POST"]),
        Route(f"{prefix}/reset", guarded(reset), methods=["POST"]),
        Route(f"{prefix}/snapshots", guarded(snapshots), methods=["POST"]),
    ]


async def _json(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise ValueError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    return body


def _only(body: dict, allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _time_scale(body: dict) -> float:
    _only(body, {"time_scale"})
    if "time_scale" not in body:
        raise ValueError("missing field 'time_scale': a number >= 0 (1 = real time, 0 = every job "
                         "finishes on the next read)")
    return non_negative_number(body["time_scale"], "time_scale")


def _replication_spec(body: dict) -> tuple[bool, float]:
    _only(body, {"paused", "lag_seconds"})
    if "paused" not in body:
        raise ValueError("missing field 'paused': true stalls the VM's replication, false resumes it")
    paused = body["paused"]
    if not isinstance(paused, bool):
        raise ValueError(f"paused must be true or false, got {paused!r} ({type(paused).__name__})")
    if "lag_seconds" not in body:
        return paused, 0.0
    if not paused:
        raise ValueError("lag_seconds applies only when pausing (paused: true); resuming takes no lag")
    lag = non_negative_number(body["lag_seconds"], "lag_seconds")
    if lag > MAX_LAG_SECONDS:
        raise ValueError(f"lag_seconds must be at most {MAX_LAG_SECONDS} (a year), got {lag:g}")
    return paused, lag
