"""The HTTP face of one emulated Windows server: ``POST /wsman`` as WinRM answers it.

A thin adapter: authenticate (see :mod:`asr_lab.winrm.auth`), decrypt if the client sealed
the message, parse the envelope, let :class:`~asr_lab.winrm.service.WinRMService` answer,
and send the result back the way Windows does (SOAP faults with HTTP 500, a bare 401 for
callers it does not accept, ``Server: Microsoft-HTTPAPI/2.0``). Whether the listener is HTTPS
is read from the ASGI scope, so the same app serves an HTTPS port (the normal case) or a
plain HTTP one (where only NTLM with message encryption gets through, as on Windows with
``AllowUnencrypted=false``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asr_lab.winrm import wsman
from asr_lab.winrm.auth import WinRMAuthenticator, is_encrypted, unwrap_message, wrap_message
from asr_lab.winrm.scripts import ScriptTwins
from asr_lab.winrm.service import POLL_INTERVAL, WinRMControls, WinRMService

log = logging.getLogger("asr_lab.winrm")

SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
SERVER_HEADER = "Microsoft-HTTPAPI/2.0"


def build_winrm_app(server_name: str, credentials: dict[str, str], twins: ScriptTwins, context: object, *,
                    controls: WinRMControls | None = None) -> Starlette:
    """The ASGI app answering ``/wsman`` for the Windows server ``server_name``.

    Args:
        server_name: The emulated machine's name (WSManFault Machine, information records).
        credentials: Its local accounts, ``username -> password`` (``DOMAIN\\user`` allowed).
        twins: The Python twins that stand in for the product's PowerShell scripts.
        context: Handed to every twin, typically the lab's estate for this server.
        controls: Test switches (stop answering, hold pipelines); one is made if omitted.

    The service is ``app.state.winrm`` and the switches ``app.state.controls``.
    """
    service = WinRMService(server_name, twins, context, controls)
    authenticator = WinRMAuthenticator(credentials)

    async def wsman_endpoint(request: Request) -> Response:
        return await _answer(request, service, authenticator)

    app = Starlette(routes=[Route("/wsman", wsman_endpoint, methods=["POST"])])
    app.state.winrm = service
    app.state.controls = service.controls
    return app


async def _answer(request: Request, service: WinRMService, authenticator: WinRMAuthenticator) -> Response:
    client = request.client
    connection = (client.host, client.port) if client else ("", 0)
    is_tls = request.url.scheme == "https"
    decision = authenticator.authenticate(request.headers.get("authorization"), connection, is_tls)
    if decision.user is None:
        return _response(401, b"", decision.headers)
    body = await request.body()
    if not await _wait_while_unresponsive(request, service.controls):
        return _response(503, b"")  # the client gave up; nobody reads this
    session = decision.session
    encrypted = is_encrypted(request.headers.get("content-type", ""))
    if encrypted:
        if session is None:
            return _response(401, b"", [("WWW-Authenticate", "Negotiate")])
        try:
            body = unwrap_message(session, body)
        except Exception:  # a message we cannot decrypt is an authentication failure on Windows too
            authenticator.forget(connection)
            return _response(401, b"", [("WWW-Authenticate", "Negotiate")])
    elif body and not is_tls:
        return _response(401, b"", [("WWW-Authenticate", "Negotiate")])  # AllowUnencrypted=false
    if not body:  # the empty POST pypsrp sends to set up message encryption
        return _response(200, b"", decision.headers)

    status, payload = await _soap(body, service, decision.user, connection[0])
    headers = list(decision.headers)
    if encrypted:
        content_type, payload = wrap_message(session, payload)
        headers.append(("Content-Type", content_type))
    else:
        headers.append(("Content-Type", SOAP_CONTENT_TYPE))
    return _response(status, payload, headers)


async def _soap(body: bytes, service: WinRMService, user: str, client_ip: str) -> tuple[int, bytes]:
    """(HTTP status, envelope) for one SOAP request; the lab never answers with a traceback."""
    relates_to = ""
    try:
        request = wsman.parse_request(body)
        relates_to = request.message_id
        return 200, await service.handle(request, user, client_ip)
    except wsman.WSManFault as fault:
        return 500, wsman.build_fault(fault, relates_to, service.server_name)
    except Exception as exc:
        log.exception("WinRM request on %s failed", service.server_name)
        fault = wsman.plugin_failure(f"The lab could not process the request: {type(exc).__name__}: {exc}")
        return 500, wsman.build_fault(fault, relates_to, service.server_name)


async def _wait_while_unresponsive(request: Request, controls: WinRMControls) -> bool:
    """Hold the request while the server plays dead; False if the client hung up meanwhile."""
    while controls.unresponsive:
        if await request.is_disconnected():
            return False
        await asyncio.sleep(POLL_INTERVAL)
    return True


def _response(status: int, body: bytes, headers: list[tuple[str, Any]] | None = None) -> Response:
    response = Response(body, status_code=status)
    response.headers["Server"] = SERVER_HEADER
    for name, value in headers or []:
        if name.casefold() == "content-type":
            response.headers["Content-Type"] = value
        else:
            response.headers.append(name, value)
    return response
