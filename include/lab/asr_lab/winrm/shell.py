"""One WinRS shell hosting one PowerShell runspace pool, as a sans-I/O state machine.

PSRP itself (fragments, messages, CLIXML, the session key) is psrpcore's: this class feeds
it the bytes that WSMan requests carry and collects the payloads it queues, routed to the
runspace pool or to the pipeline they belong to, until a Receive takes them. psrpcore's
server needs the ``ServerPipeline`` to exist before its CreatePipeline message is fed in, so
``command`` creates it from the WSMan CommandId first.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass

from psrpcore import (
    CreatePipelineEvent,
    GetAvailableRunspacesEvent,
    GetCommandMetadataEvent,
    PSRPPayload,
    ResetRunspaceStateEvent,
    ServerPipeline,
    ServerRunspacePool,
    SetMaxRunspacesEvent,
    SetMinRunspacesEvent,
    StreamType,
)
from psrpcore.types import PSInvocationState, PSRPMessageType, PSVersion, RunspacePoolState

from asr_lab.winrm import records
from asr_lab.winrm.scripts import CommandCall, TwinError, TwinResult

# Each PSRP fragment must fit, base64-encoded, in one rsp:Stream of a Receive response.
# pypsrp's smallest default envelope is 150 KiB; 32 KiB fragments leave room for several.
FRAGMENT_SIZE = 32_768
_FINISHED = (PSInvocationState.Completed, PSInvocationState.Failed, PSInvocationState.Stopped)


@dataclass(frozen=True)
class PipelineRequest:
    """A pipeline whose CreatePipeline message has fully arrived: what the client wants run."""

    command_id: str
    statements: list[list[CommandCall]]


@dataclass(frozen=True)
class ReceivedOutput:
    """What one Receive returns: PSRP payloads, and whether the command is done (pipelines only)."""

    payloads: list[bytes]
    done: bool


class UnknownCommand(LookupError):
    """The CommandId names no pipeline of this shell."""


class ProtocolError(Exception):
    """The client sent PSRP data psrpcore cannot process; the runspace pool is now broken."""


class PowerShellShell:
    """The state behind one ShellId: a psrpcore ServerRunspacePool and its pipelines.

    Args:
        shell_id: The ShellId the client chose (pypsrp uses the runspace pool id).
        resource_uri: The session configuration's URI (…/powershell/Microsoft.PowerShell).
        owner: The authenticated user; only they can use the shell.
        creation_xml: The decoded ``creationXml`` of the Create request (SessionCapability
            and InitRunspacePool fragments).
        machine: The emulated server's name, written into information records.
        application_private_data: What the pool tells the client about the server.
        idle_timeout: The shell's IdleTimeOut (the client may ask for one at Create).
    """

    def __init__(self, shell_id: str, resource_uri: str, owner: str, creation_xml: bytes, machine: str,
                 application_private_data: dict | None = None, idle_timeout: float = 7200.0) -> None:
        self.shell_id = shell_id
        self.resource_uri = resource_uri
        self.owner = owner
        self.machine = machine
        self.idle_timeout = idle_timeout  #: seconds without a request before WinRM discards the shell
        self.last_used = 0.0  #: when the service last touched it (the service's clock)
        self.pool = ServerRunspacePool(application_private_data=application_private_data)
        self._command_ids: dict[uuid.UUID, str] = {}  # as the client spelled them, for responses
        self._outboxes: dict[uuid.UUID | None, deque[bytes]] = {None: deque()}
        self.feed(None, creation_xml)
        if self.pool.state != RunspacePoolState.Opened:
            raise ProtocolError("creationXml did not open the runspace pool")

    # ---- input ---------------------------------------------------------------------------
    def command(self, command_id: str, first_fragment: bytes) -> list[PipelineRequest]:
        """A WSMan Command: start a pipeline whose CreatePipeline begins with ``first_fragment``."""
        try:
            pipeline_id = uuid.UUID(command_id)
        except ValueError:
            raise ProtocolError(f"CommandId {command_id} is not a GUID") from None
        if pipeline_id in self.pool.pipeline_table:
            raise ProtocolError(f"pipeline {command_id} already exists")
        ServerPipeline(self.pool, pipeline_id)
        self._command_ids[pipeline_id] = command_id
        self._outboxes[pipeline_id] = deque()
        return self.feed(command_id, first_fragment)

    def feed(self, command_id: str | None, data: bytes) -> list[PipelineRequest]:
        """Give psrpcore the PSRP bytes of a Send (or Create/Command) and act on what they say.

        Returns the pipelines whose CreatePipeline message is now complete. Raises
        ProtocolError for bytes psrpcore cannot make sense of, and breaks the pool the way
        PowerShell does, so the client learns it from the RunspacePoolState it receives.
        """
        pipeline_id = self._pipeline_id(command_id) if command_id else None
        if self.pool.state == RunspacePoolState.Broken:
            raise ProtocolError("The runspace pool is broken.")
        try:
            return self._process(pipeline_id, data)
        except Exception as exc:
            message = f"The PSRP data sent by the client could not be processed: {type(exc).__name__}: {exc}"
            if self.pool.state == RunspacePoolState.Opened:
                self.pool.set_broken(records.error_record(TwinError(message, "InvalidData", "PSRPProtocolError",
                                                                    "System.Management.Automation.Remoting."
                                                                    "PSRemotingDataStructureException")))
                self._collect()
            raise ProtocolError(message) from exc

    def _process(self, pipeline_id: uuid.UUID | None, data: bytes) -> list[PipelineRequest]:
        self.pool.receive_data(PSRPPayload(data, StreamType.default, pipeline_id))
        ready: list[PipelineRequest] = []
        while (event := self.pool.next_event()) is not None:
            if isinstance(event, CreatePipelineEvent):
                pipeline = self.pool.pipeline_table[event.pipeline_id]
                pipeline.start()
                ready.append(PipelineRequest(self._command_ids[event.pipeline_id],
                                             records.command_calls(event.pipeline)))
            elif isinstance(event, GetCommandMetadataEvent):
                pipeline = self.pool.pipeline_table[event.pipeline_id]
                pipeline.start()
                self._fail(pipeline, TwinError("Get-Command metadata is not emulated by the lab.", "NotImplemented",
                                               "AsrLabNoCommandMetadata"))
            elif isinstance(event, GetAvailableRunspacesEvent):
                self.pool.runspace_availability_response(event.ci, self.pool.max_runspaces)
            elif isinstance(event, (SetMaxRunspacesEvent, SetMinRunspacesEvent, ResetRunspaceStateEvent)):
                self.pool.runspace_availability_response(event.ci, True)
            # SessionCapability, InitRunspacePool and PublicKey are answered by psrpcore itself;
            # pipeline input and host responses are not used by any twin.
        self._collect()
        return ready

    # ---- results -------------------------------------------------------------------------
    def finish(self, command_id: str, result: TwinResult, user: str) -> None:
        """Write a twin's result to the pipeline's streams and end it (completed or failed)."""
        pipeline = self.pool.pipeline_table.get(uuid.UUID(command_id))
        if pipeline is None or pipeline.state != PSInvocationState.Running:
            return  # stopped or terminated while the twin ran: the client no longer listens
        for message in result.verbose:
            pipeline.write_verbose(str(message))
        for message in result.debug:
            pipeline.write_debug(str(message))
        for data in result.information:
            if self._supports_information():
                pipeline.write_information(records.wire_value(data), source=self._source(command_id), user=user,
                                           computer=self.machine)
        for message in result.warning:
            pipeline.write_warning(str(message))
        for value in result.output:
            pipeline.write_output(records.wire_value(value))
        for error in result.errors:
            pipeline.prepare_message(records.error_record(error), message_type=PSRPMessageType.ErrorRecord)
        if result.terminating_error is not None:
            self._fail(pipeline, result.terminating_error)
        else:
            pipeline.complete()
        self._collect()

    def _fail(self, pipeline: ServerPipeline, error: TwinError) -> None:
        # psrpcore 0.3.1 has no public "fail": stop() uses the same state change with an error record.
        pipeline._change_state(PSInvocationState.Failed, records.error_record(error))
        self._collect()

    def _supports_information(self) -> bool:
        theirs = getattr(self.pool.their_capability, "protocolversion", PSVersion("2.0"))
        return theirs >= PSVersion("2.3")

    def _source(self, command_id: str) -> str:
        pipeline = self.pool.pipeline_table.get(uuid.UUID(command_id))
        commands = getattr(pipeline.metadata, "commands", []) if pipeline else []
        return str(commands[0].command_text)[:100] if commands else ""

    # ---- output --------------------------------------------------------------------------
    def has_output(self, command_id: str | None) -> bool:
        pipeline_id = self._pipeline_id(command_id) if command_id else None
        return bool(self._outboxes[pipeline_id]) or self._is_finished(pipeline_id)

    def receive(self, command_id: str | None, max_bytes: int) -> ReceivedOutput | None:
        """Take queued payloads for the pool or a pipeline, up to ``max_bytes``; None if none yet."""
        pipeline_id = self._pipeline_id(command_id) if command_id else None
        outbox = self._outboxes[pipeline_id]
        payloads: list[bytes] = []
        while outbox and (not payloads or sum(map(len, payloads)) + len(outbox[0]) <= max_bytes):
            payloads.append(outbox.popleft())
        done = pipeline_id is not None and self._is_finished(pipeline_id) and not outbox
        if not payloads and not done:
            return None
        return ReceivedOutput(payloads, done)

    def _is_finished(self, pipeline_id: uuid.UUID | None) -> bool:
        pipeline = self.pool.pipeline_table.get(pipeline_id) if pipeline_id else None
        return pipeline is not None and pipeline.state in _FINISHED

    def _collect(self) -> None:
        """Move everything psrpcore queued into the outbox of the pool or pipeline it is for."""
        while (payload := self.pool.data_to_send(FRAGMENT_SIZE)) is not None:
            outbox = self._outboxes.get(payload.pipeline_id)
            if outbox is not None:  # None: a pipeline already terminated by the client
                outbox.append(payload.data)

    # ---- signals -------------------------------------------------------------------------
    def stop(self, command_id: str) -> None:
        """Ctrl+C (pypsrp ``PowerShell.stop``): stop the pipeline, reporting it Stopped."""
        pipeline = self.pool.pipeline_table[self._pipeline_id(command_id)]
        if pipeline.state == PSInvocationState.Running:
            pipeline.stop()
            self._collect()

    def terminate(self, command_id: str) -> None:
        """Terminate (pypsrp ``PowerShell.close``): forget the pipeline and anything unsent."""
        pipeline_id = self._pipeline_id(command_id)
        pipeline = self.pool.pipeline_table[pipeline_id]
        if pipeline.state in (PSInvocationState.Running, PSInvocationState.Stopping):
            pipeline._change_state(PSInvocationState.Stopped, emit=False)  # nobody is listening any more
        pipeline.close()
        self._outboxes.pop(pipeline_id, None)
        self._command_ids.pop(pipeline_id, None)
        self._collect()

    def _pipeline_id(self, command_id: str) -> uuid.UUID:
        try:
            pipeline_id = uuid.UUID(command_id)
        except ValueError:
            raise UnknownCommand(command_id) from None
        if pipeline_id not in self._outboxes:
            raise UnknownCommand(command_id)
        return pipeline_id

    def is_running(self, command_id: str) -> bool:
        pipeline = self.pool.pipeline_table.get(self._pipeline_id(command_id))
        return pipeline is not None and pipeline.state == PSInvocationState.Running

    @property
    def running_commands(self) -> list[str]:
        return [self._command_ids[pid] for pid, p in self.pool.pipeline_table.items()
                if p.state == PSInvocationState.Running and pid in self._command_ids]
