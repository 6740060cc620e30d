"""The WinRM service of one emulated Windows server: WSMan actions over PowerShell shells.

Transport-free: it takes parsed requests and an authenticated user and returns response
envelopes, or raises the :class:`~asr_lab.winrm.wsman.WSManFault` Windows would send. It is
async only because a Receive waits (up to the request's OperationTimeout) for output, and
twins may await. Everything runs on the server's event loop; only :class:`WinRMControls`
may be touched from other threads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import psrpcore
from psrpcore.types import PSVersion

from asr_lab.winrm import wsman
from asr_lab.winrm.scripts import ScriptTwins, TwinError, TwinResult, run_pipeline
from asr_lab.winrm.shell import PipelineRequest, PowerShellShell, ProtocolError, UnknownCommand
from asr_lab.winrm.wsman import NS, Action, SignalCode, WSManRequest, element

log = logging.getLogger("asr_lab.winrm")

SESSION_CONFIGURATIONS = ("microsoft.powershell", "microsoft.powershell32")
MAX_SHELLS_PER_USER = 30  # WinRS MaxShellsPerUser on Windows Server 2012 and later
DEFAULT_OPERATION_TIMEOUT = 60.0
DEFAULT_MAX_ENVELOPE_SIZE = 153_600
ENVELOPE_OVERHEAD = 4_096  # what a ReceiveResponse needs besides its base64 streams
IDLE_TIMEOUT = 7200.0
POLL_INTERVAL = 0.05
INVOCATION_LOG_SIZE = 1_000


class WinRMControls:
    """Switches a test flips to make one server misbehave like a real one can.

    Plain attributes, safe to set from any thread: the server checks them as it goes.
    """

    def __init__(self) -> None:
        self.unresponsive = False  #: requests get no answer at all until resumed
        self.holding_pipelines = False  #: pipelines start but produce nothing until released

    def stop_answering(self) -> None:
        self.unresponsive = True

    def resume_answering(self) -> None:
        self.unresponsive = False

    def hold_pipelines(self) -> None:
        self.holding_pipelines = True

    def release_pipelines(self) -> None:
        self.holding_pipelines = False


def _application_private_data() -> dict:
    """What Windows PowerShell 5.1 on Server 2019 tells a client about itself."""
    return {"PSVersionTable": {
        "PSVersion": PSVersion("5.1.17763.1"), "PSEdition": "Desktop",
        "PSCompatibleVersions": [PSVersion(v) for v in ("1.0", "2.0", "3.0", "4.0", "5.0", "5.1.17763.1")],
        "CLRVersion": PSVersion("4.0.30319.42000"), "BuildVersion": PSVersion("10.0.17763.1"),
        "WSManStackVersion": PSVersion("3.0"), "PSRemotingProtocolVersion": PSVersion("2.3"),
        "SerializationVersion": PSVersion("1.1.0.1"),
    }}


class WinRMService:
    """Shells and pipelines of one emulated server, answering WSMan actions."""

    def __init__(self, server_name: str, twins: ScriptTwins, context: Any,
                 controls: WinRMControls | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.server_name = server_name
        self.clock = clock  #: measures shell idleness; tests may move it forward
        self.twins = twins
        self.context = context
        self.controls = controls or WinRMControls()
        self.shells: dict[str, PowerShellShell] = {}
        #: every pipeline this server ran, oldest first, so tests can assert what the product did
        self.invocations: deque[dict[str, Any]] = deque(maxlen=INVOCATION_LOG_SIZE)
        #: Receives answered with the OperationTimeout fault (the client is polling a quiet command)
        self.timed_out_receives = 0
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task] = set()
        self._handlers = {
            Action.CREATE: self._create, Action.DELETE: self._delete, Action.GET: self._get,
            Action.COMMAND: self._command, Action.SEND: self._send, Action.RECEIVE: self._receive,
            Action.SIGNAL: self._signal,
        }

    def reset(self) -> None:
        """Forget every shell, as a restarted WinRM service would (call it on the server's loop)."""
        for task in list(self._tasks):
            task.cancel()
        self.shells.clear()
        self.invocations.clear()
        self.timed_out_receives = 0

    async def handle(self, request: WSManRequest, user: str, client_ip: str = "") -> bytes:
        """Answer one request with a response envelope; raise WSManFault as Windows would."""
        self._discard_idle_shells()
        handler = self._handlers.get(request.action)
        if handler is None:
            raise wsman.action_not_supported(request.action)
        try:
            body = await handler(request, user, client_ip)
        except UnknownCommand:
            raise wsman.command_not_found() from None
        except (ProtocolError, psrpcore.PSRPCoreError, ValueError, binascii.Error) as exc:
            raise wsman.plugin_failure(f"The PowerShell plugin could not process the request: {exc}") from None
        return wsman.build_envelope(request.action + "Response", request.message_id, body)

    # ---- shells --------------------------------------------------------------------------
    def _shell(self, request: WSManRequest, user: str) -> PowerShellShell:
        shell = self.shells.get((request.shell_id or "").upper())
        if shell is None or shell.owner != user:
            raise wsman.shell_not_found(request.shell_id)
        shell.last_used = self.clock()
        return shell

    def _discard_idle_shells(self) -> None:
        """Drop shells idle past their IdleTimeOut, as WinRM does with shells a client leaked."""
        now = self.clock()
        for shell_id, shell in list(self.shells.items()):
            if now - shell.last_used > shell.idle_timeout and not shell.running_commands:
                del self.shells[shell_id]

    async def _create(self, request: WSManRequest, user: str, client_ip: str) -> str:
        configuration = request.resource_uri.removeprefix(wsman.POWERSHELL_URI_PREFIX)
        if not request.resource_uri.startswith(wsman.POWERSHELL_URI_PREFIX) or \
                configuration.casefold() not in SESSION_CONFIGURATIONS:
            raise wsman.resource_not_found(request.resource_uri)
        body = request.body
        creation = body.find(f"{{{NS['pwsh']}}}creationXml") if body is not None else None
        if creation is None or not creation.text:
            raise wsman.invalid_xml("A PowerShell shell needs creationXml. ")
        if sum(shell.owner == user for shell in self.shells.values()) >= MAX_SHELLS_PER_USER:
            raise wsman.shell_quota_exceeded(MAX_SHELLS_PER_USER)
        shell_id = (body.get("ShellId") or str(uuid.uuid4())).upper()
        if shell_id in self.shells:
            raise wsman.plugin_failure(f"A shell with ShellId {shell_id} already exists.")
        idle = body.findtext(f"{{{NS['rsp']}}}IdleTimeOut")
        shell = PowerShellShell(shell_id, request.resource_uri, user, base64.b64decode(creation.text),
                                self.server_name, _application_private_data(),
                                wsman.parse_duration(idle) if idle else IDLE_TIMEOUT)
        shell.last_used = self.clock()
        self.shells[shell_id] = shell
        await self._notify()
        selector = element("w:SelectorSet", children=element("w:Selector", shell_id, Name="ShellId"))
        created = element("x:ResourceCreated", children=element("a:Address", request_address(request)) + element(
            "a:ReferenceParameters", children=element("w:ResourceURI", request.resource_uri) + selector))
        return created + self._shell_element(shell, client_ip)

    def _shell_element(self, shell: PowerShellShell, client_ip: str) -> str:
        fields = [
            ("ShellId", shell.shell_id), ("ResourceUri", shell.resource_uri), ("Owner", shell.owner),
            ("ClientIP", client_ip), ("ProcessId", "4242"), ("IdleTimeOut", wsman.format_duration(shell.idle_timeout)),
            ("InputStreams", "stdin pr"), ("OutputStreams", "stdout"),
            ("MaxIdleTimeOut", "PT2147483.647S"), ("Locale", "en-US"), ("DataLocale", "en-US"),
            ("CompressionMode", "NoCompression"), ("ProfileLoaded", "Yes"), ("Encoding", "UTF8"),
            ("BufferMode", "Block"), ("State", "Connected"), ("ShellRunTime", "P0DT0H0M0S"),
            ("ShellInactivity", "P0DT0H0M0S"),
        ]
        return f'<rsp:Shell xmlns:rsp="{NS["rsp"]}">' + "".join(
            element(f"rsp:{name}", value) for name, value in fields) + "</rsp:Shell>"

    async def _delete(self, request: WSManRequest, user: str, client_ip: str) -> str:
        shell = self._shell(request, user)
        del self.shells[shell.shell_id]
        await self._notify()
        return ""

    async def _get(self, request: WSManRequest, user: str, client_ip: str) -> str:
        if request.resource_uri == wsman.SHELL_URI and request.shell_id:
            return self._shell_element(self._shell(request, user), client_ip)
        if request.resource_uri == wsman.CONFIG_URI:
            return (f'<cfg:Config xmlns:cfg="{NS["cfg"]}">' + element("cfg:MaxEnvelopeSizekb", "500")
                    + element("cfg:MaxTimeoutms", "60000") + element("cfg:MaxBatchItems", "32000")
                    + "</cfg:Config>")
        raise wsman.resource_not_found(request.resource_uri)

    # ---- commands ------------------------------------------------------------------------
    async def _command(self, request: WSManRequest, user: str, client_ip: str) -> str:
        shell = self._shell(request, user)
        body = request.body
        if body is None or body.tag != f"{{{NS['rsp']}}}CommandLine":
            raise wsman.invalid_xml("Command needs rsp:CommandLine. ")
        command_id = (body.get("CommandId") or str(uuid.uuid4())).upper()
        fragment = base64.b64decode(body.findtext(f"{{{NS['rsp']}}}Arguments") or "")
        self._start(shell, shell.command(command_id, fragment), user)
        await self._notify()
        return element("rsp:CommandResponse", children=element("rsp:CommandId", command_id))

    async def _send(self, request: WSManRequest, user: str, client_ip: str) -> str:
        shell = self._shell(request, user)
        for stream in request.body.findall(f"{{{NS['rsp']}}}Stream") if request.body is not None else []:
            data = base64.b64decode(stream.text or "")
            if data:
                self._start(shell, shell.feed(stream.get("CommandId"), data), user)
        await self._notify()
        return element("rsp:SendResponse")

    async def _signal(self, request: WSManRequest, user: str, client_ip: str) -> str:
        shell = self._shell(request, user)
        body = request.body
        command_id = body.get("CommandId", "") if body is not None else ""
        code = (body.findtext(f"{{{NS['rsp']}}}Code") or "").strip() if body is not None else ""
        if code == SignalCode.TERMINATE:
            shell.terminate(command_id)
        elif code in (SignalCode.CTRL_C, SignalCode.PS_CTRL_C):
            shell.stop(command_id)
        else:
            raise wsman.plugin_failure(f"The signal code {code} is not supported by the lab.")
        await self._notify()
        return element("rsp:SignalResponse")

    async def _receive(self, request: WSManRequest, user: str, client_ip: str) -> str:
        desired = request.body.find(f"{{{NS['rsp']}}}DesiredStream") if request.body is not None else None
        command_id = desired.get("CommandId") if desired is not None else None
        envelope_size = request.max_envelope_size or DEFAULT_MAX_ENVELOPE_SIZE
        budget = max((envelope_size - ENVELOPE_OVERHEAD) * 3 // 4, 1024)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (request.operation_timeout or DEFAULT_OPERATION_TIMEOUT)
        async with self._changed:
            while True:
                output = self._shell(request, user).receive(command_id, budget)
                if output is not None:
                    state = wsman.CommandState.DONE if output.done else None
                    return wsman.receive_response(output.payloads, command_id, state)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    self.timed_out_receives += 1
                    raise wsman.operation_timed_out()
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    pass

    # ---- running twins -------------------------------------------------------------------
    def _start(self, shell: PowerShellShell, requests: list[PipelineRequest], user: str) -> None:
        for pipeline in requests:
            task = asyncio.get_running_loop().create_task(self._run(shell, pipeline, user))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, shell: PowerShellShell, pipeline: PipelineRequest, user: str) -> None:
        # Logged on arrival, so a test sees a command the server accepted even if it never finishes.
        invocation = self._log_invocation(shell, pipeline, user)
        while self.controls.holding_pipelines and self.shells.get(shell.shell_id) is shell:
            await asyncio.sleep(POLL_INTERVAL)
        if not self._still_running(shell, pipeline.command_id):  # stopped or closed while held: skip the twin
            invocation.update(state="Stopped", ended=time.time())
            return
        try:
            result = await run_pipeline(pipeline.statements, self.twins, self.context)
        except Exception as exc:  # run_pipeline never raises by design; this guards the lab itself
            log.exception("pipeline %s on %s failed", pipeline.command_id, self.server_name)
            result = TwinResult(terminating_error=TwinError.thrown(f"The lab failed to run the pipeline: {exc}"))
        state = "Failed" if result.terminating_error else "Completed"
        if not self._still_running(shell, pipeline.command_id):
            state = "Stopped"
        else:
            try:
                shell.finish(pipeline.command_id, result, user)
            except Exception as exc:  # the client must hear the pipeline end, whatever went wrong
                log.exception("could not write the result of %s", pipeline.command_id)
                shell.finish(pipeline.command_id, TwinResult(terminating_error=TwinError.thrown(
                    f"The lab could not send the result: {exc}")), user)
                state = "Failed"
        invocation.update(state=state, error_records=len(result.errors), ended=time.time())
        await self._notify()

    def _still_running(self, shell: PowerShellShell, command_id: str) -> bool:
        try:
            return self.shells.get(shell.shell_id) is shell and shell.is_running(command_id)
        except UnknownCommand:
            return False

    def _log_invocation(self, shell: PowerShellShell, pipeline: PipelineRequest, user: str) -> dict[str, Any]:
        """Append a Running entry for a pipeline that just arrived; the caller completes it in place."""
        invocation = {
            "server": self.server_name, "user": user, "shell_id": shell.shell_id, "command_id": pipeline.command_id,
            "commands": [command.describe() for statement in pipeline.statements for command in statement],
            "state": "Running", "error_records": 0, "started": time.time(), "ended": None,
        }
        self.invocations.append(invocation)
        return invocation

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def request_address(request: WSManRequest) -> str:
    """The listener address the client used, for x:ResourceCreated (Windows echoes its URL)."""
    return request.to or "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
