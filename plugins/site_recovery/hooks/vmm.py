"""Hook that runs the project's PowerShell scripts on VMM servers and Hyper-V hosts through PsrpHook.

Each script keeps one contract (:class:`~site_recovery.script_contract.ScriptContract`): it
writes exactly one JSON document to its output stream, which the contract's pydantic model
reads. Its verbose, information, warning and error records reach the task log through
PsrpHook. Failures are sorted by what a retry would do: a script that never started may be
retried; a script that reported errors, or was cut off half-way, is final unless its
contract says running it again is harmless.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import requests
from pypsrp.complex_objects import RunspacePoolState
from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.serializer import TaggedValue
from pydantic import BaseModel

from airflow.providers.microsoft.psrp.hooks.psrp import PsrpHook
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.log import mask_secret
from site_recovery.exceptions import (
    VmmAuthenticationError,
    VmmConnectionError,
    VmmScriptError,
    VmmScriptInterrupted,
    VmmScriptNotFound,
    VmmTransportError,
)
from site_recovery.script_contract import ScriptContract, redact

#: pypsrp's defaults: the server holds a quiet Receive this long, and the client waits a bit longer.
DEFAULT_OPERATION_TIMEOUT = 20
DEFAULT_READ_TIMEOUT = 30

#: What pypsrp raises when the network or the WinRM service fails.
_TRANSPORT_ERRORS = (requests.exceptions.RequestException, WinRMError, OSError)
#: WSMan fault code of "Access is denied": the account may not use PowerShell remoting there.
_ACCESS_DENIED = 5
#: "line 42" in a script stack trace, "At line:42 char:5" in a position message.
_LINE_NUMBER = re.compile(r"\bline:?\s*(\d+)", re.IGNORECASE)


def is_transient_transport_error(exc: BaseException) -> bool:
    """
    Tell whether a WinRM failure is the network's or the server's passing trouble.

    Connection failures, timeouts, throttling and server errors (WinRM sends its WSMan faults
    with HTTP 500) are transient; rejected credentials, an untrusted certificate and "Access
    is denied" are not. Whether a retry is *safe* also depends on whether the script started.
    """
    if isinstance(exc, (AuthenticationError, requests.exceptions.SSLError)):
        return False
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.RetryError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, WSManFaultError):
        return str(exc.code) != str(_ACCESS_DENIED)
    if isinstance(exc, WinRMTransportError):
        return exc.code in (408, 425, 429) or exc.code >= 500
    return False


class BoundParameters(NamedTuple):
    """Parameters ready for ``add_parameters``, and the secret values to keep out of messages."""

    values: dict[str, Any]
    secrets: tuple[str, ...]


def bind_parameters(contract: ScriptContract, parameters: Mapping[str, Any]) -> BoundParameters:
    """
    Prepare ``parameters`` for ``contract``'s script: mask its secrets in task logs and send
    them as SecureString; leave out ``None`` values.

    :raise TypeError: A secret parameter's value is not a string (the value is not shown).
    """
    values: dict[str, Any] = {}
    secrets: list[str] = []
    for name, value in parameters.items():
        if value is None:
            continue
        if contract.is_secret(name):
            if not isinstance(value, str):
                raise TypeError(f"Secret parameter {name} of {contract.name} must be a string, "
                                f"not {type(value).__name__}.")
            mask_secret(value)
            secrets.append(value)
            value = TaggedValue("SS", value)  # serialised as System.Security.SecureString
        values[name] = value
    return BoundParameters(values, tuple(secrets))


@dataclass(frozen=True)
class ScriptErrorRecord:
    """What a DR engineer needs from one PowerShell error record."""

    message: str  #: the exception's message, as PowerShell prints it
    position: str | None  #: ``line 42``, or the first frame of the script stack trace
    error_id: str | None  #: FullyQualifiedErrorId
    category: str | None  #: CategoryInfo, e.g. ``InvalidOperation: (:) [Write-Error], WriteErrorException``

    @classmethod
    def from_pypsrp(cls, record: Any) -> ScriptErrorRecord:
        """Read one pypsrp ``ErrorRecord`` (an item of ``ps.streams.error``)."""
        position = None
        traces = (getattr(record, "script_stacktrace", None), getattr(record, "invocation_position_message", None))
        for trace in traces:
            if trace and trace.strip():
                first_frame = trace.strip().splitlines()[0]
                line = _LINE_NUMBER.search(first_frame)
                position = f"line {line.group(1)}" if line else first_frame
                break
        return cls(_text(record) or "Unknown error", position, getattr(record, "fq_error", None),
                   _text(getattr(record, "message", None)))

    def __str__(self) -> str:
        return f"{self.message} (at {self.position})" if self.position else self.message


def script_error_message(script: str, host: str, errors: Sequence[ScriptErrorRecord],
                         secrets: Iterable[str] = ()) -> str:
    """``<script> on <host>: <first error> (at line N)``, with secrets replaced by ``***``."""
    text = f"{script} on {host}: {errors[0]}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more error record(s) in the task log)"
    return redact(text, secrets)


def _text(value: Any) -> str | None:
    try:  # pypsrp cannot render some records (jborean93/pypsrp#130)
        return str(value).strip() if value is not None else None
    except Exception:
        return None


def describe_result(result: Any) -> str:
    """The model's own ``summary()`` when it has one, else its class name."""
    summary = getattr(result, "summary", None)
    return str(summary()) if callable(summary) else type(result).__name__


class VmmScriptHook(BaseHook):
    """
    Run a script of ``include/powershell`` on a VMM server or Hyper-V host and read its JSON.

    Uses a ``psrp`` connection as :class:`~airflow.providers.microsoft.psrp.hooks.psrp.PsrpHook`
    does (host, login, password and its nine allowed extras) and, unlike PsrpHook, honours the
    connection's port.

    :param psrp_conn_id: Id of the ``psrp`` connection of the server.
    :param operation_timeout: Seconds the server may hold one poll of a quiet script before
        answering "nothing yet" (WSMan OperationTimeout).
    :param read_timeout: Seconds one WinRM request may go unanswered before the server counts
        as not answering. Must exceed ``operation_timeout``; the connection's ``read_timeout``
        extra wins. pypsrp retries a silent poll five times, so a dead server is given up on
        after about six times this (plus ``reconnection_backoff``).
    :param stream_logging_level: Level from which the script's records are logged; INFO keeps
        verbose, information, warning and error records and drops ``Write-Debug``.
    :param wsman_options: More :class:`pypsrp.wsman.WSMan` options (``encryption``, ``path``,
        ``reconnection_backoff``...); ``port`` defaults to the connection's port.
    :param runspace_options: More :class:`pypsrp.powershell.RunspacePool` options.
    """

    conn_name_attr = "psrp_conn_id"
    default_conn_name = "psrp_default"
    conn_type = "psrp"
    hook_name = "VMM and Hyper-V PowerShell scripts"

    def __init__(
        self,
        psrp_conn_id: str = default_conn_name,
        *,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        stream_logging_level: int = logging.INFO,
        wsman_options: dict[str, Any] | None = None,
        runspace_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if read_timeout <= operation_timeout:
            raise ValueError(f"read_timeout ({read_timeout} s) must exceed operation_timeout "
                             f"({operation_timeout} s), or every quiet poll would count as a dead server.")
        self.psrp_conn_id = psrp_conn_id
        self.operation_timeout = operation_timeout
        self.read_timeout = read_timeout
        self.stream_logging_level = stream_logging_level
        self.wsman_options = dict(wsman_options or {})
        self.runspace_options = dict(runspace_options or {})

    def get_conn(self) -> PsrpHook:
        """Return the PsrpHook the scripts run through (not connected yet)."""
        return self._psrp_hook(self.get_connection(self.psrp_conn_id))

    def run_script(self, script: ScriptContract | str, parameters: Mapping[str, Any] | None = None) -> BaseModel:
        """
        Run ``script`` with ``parameters`` and return its output document, read by its model.

        :param script: The script's contract, or its name in ``site_recovery.scripts.SCRIPTS``.
        :param parameters: Values for the script's ``param()`` block; ``None`` values are left
            out, switches take ``True``. Secret parameters must be strings.
        :return: An instance of the contract's model.
        :raise VmmTransportError: WinRM failed before the script started: retrying is safe.
        :raise VmmAuthenticationError: The server rejected the login and password.
        :raise VmmConnectionError: The server refused the session for another lasting reason.
        :raise VmmScriptError: The script wrote error records, threw, or exited non-zero.
        :raise VmmScriptInterrupted: The server failed or went silent while the script ran.
        :raise VmmScriptOutputError: The output is not one JSON document matching the model.
        """
        contract = self._contract(script)
        text = contract.read_script()
        connection = self.get_connection(self.psrp_conn_id)
        host = connection.host or "(no host)"
        bound = bind_parameters(contract, parameters or {})
        self.log.info("Running %s on %s with parameters: %s", contract.name, host,
                      contract.describe_parameters(parameters or {}))

        started = time.monotonic()
        outputs = self._invoke(contract, connection, host, text, bound, started)
        result = contract.parse_output(outputs, f"{contract.name} on {host}", bound.secrets)
        self.log.info("%s on %s finished in %.1f s: %s", contract.name, host, time.monotonic() - started,
                      describe_result(result))
        return result

    # Running one script

    def _invoke(self, contract: ScriptContract, connection: Any, host: str, text: str, bound: BoundParameters,
                started: float) -> list[Any]:
        psrp = self._psrp_hook(connection)
        read_timeout = self._effective_read_timeout(connection)
        self._open(psrp, contract, connection, host, read_timeout)
        ps = None
        try:
            with psrp.invoke() as ps:
                ps.add_script(text)
                if bound.values:
                    ps.add_parameters(bound.values)
        except AirflowException as exc:
            if type(exc) is not AirflowException or ps is None or not ps.streams.error:
                raise  # not PsrpHook's "Process had one or more errors" (e.g. the task's own timeout)
            errors = tuple(ScriptErrorRecord.from_pypsrp(record) for record in ps.streams.error)
            message = script_error_message(contract.name, host, errors, bound.secrets)
            raise VmmScriptError(message, errors) from exc
        except _TRANSPORT_ERRORS as exc:
            if ps is not None and isinstance(exc, requests.exceptions.Timeout):
                # Closing the shell would wait another read timeout on a silent server; WinRM
                # drops abandoned shells itself once its IdleTimeout passes.
                ps.runspace_pool.state = RunspacePoolState.BROKEN
                reason = (f"did not answer within {read_timeout:g} s "
                          f"(gave up after {time.monotonic() - started:.0f} s)")
            else:
                reason = f"lost its WinRM connection: {redact(str(exc), bound.secrets)}"
            raise self._cut_off(contract, host, reason, exc) from exc
        finally:
            self._close(psrp, host)

        exit_code = ps.runspace_pool.host.rc
        if ps.had_errors or exit_code:
            detail = f"exited with code {exit_code}" if exit_code else "failed without an error record"
            raise VmmScriptError(f"{contract.name} on {host} {detail}.")
        return list(ps.output)

    def _open(self, psrp: PsrpHook, contract: ScriptContract, connection: Any, host: str,
              read_timeout: float) -> None:
        """Open the runspace pool; nothing of the script has run if this fails."""
        try:
            psrp.__enter__()
        except AuthenticationError as exc:
            auth = connection.extra_dejson.get("auth", "negotiate")
            raise VmmAuthenticationError(
                f"WinRM authentication to {host} as {connection.login} failed ({auth}): check the login "
                f"and password of connection {self.psrp_conn_id}. {contract.name} did not start."
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            if isinstance(exc, requests.exceptions.Timeout):
                reason = f"did not answer within {read_timeout:g} s"
            else:
                reason = f"could not be reached: {exc}"
            if is_transient_transport_error(exc):
                raise VmmTransportError(
                    f"WinRM on {host} {reason}. {contract.name} did not start, so retrying is safe."
                ) from exc
            raise VmmConnectionError(
                f"Could not open a WinRM session on {host} for {contract.name}: {exc}"
            ) from exc

    @staticmethod
    def _cut_off(contract: ScriptContract, host: str, reason: str, exc: BaseException) -> AirflowException:
        """The error for a script the server stopped serving half-way."""
        message = f"{contract.name} on {host} {reason}"
        if contract.safe_to_retry and is_transient_transport_error(exc):
            return VmmTransportError(f"{message}. {contract.name} is safe to run again, so the task may retry.")
        return VmmScriptInterrupted(
            f"{message}. The script may have partly run, so it is not retried automatically: "
            f"check {host} before clearing the task."
        )

    def _close(self, psrp: PsrpHook, host: str) -> None:
        try:
            psrp.__exit__(None, None, None)
        except Exception as exc:  # the script's outcome is known by now; a failed close must not hide it
            self.log.warning("Could not close the PowerShell session on %s cleanly: %s", host, exc)

    # Configuration

    def _psrp_hook(self, connection: Any) -> PsrpHook:
        port = {"port": connection.port} if connection.port else {}  # PsrpHook ignores the connection's port
        wsman_options = {**port, **self.wsman_options, "operation_timeout": self.operation_timeout,
                         "read_timeout": self.read_timeout}  # the connection's read_timeout extra still wins
        return PsrpHook(self.psrp_conn_id, logging_level=self.stream_logging_level,
                        wsman_options=wsman_options, runspace_options=self.runspace_options)

    def _effective_read_timeout(self, connection: Any) -> float:
        read_timeout = float(connection.extra_dejson.get("read_timeout") or self.read_timeout)
        if read_timeout <= self.operation_timeout:
            raise VmmConnectionError(
                f"Connection {self.psrp_conn_id} sets read_timeout {read_timeout:g} s, which must exceed "
                f"the WSMan operation timeout ({self.operation_timeout:g} s); raise it or lower operation_timeout."
            )
        return read_timeout

    @staticmethod
    def _contract(script: ScriptContract | str) -> ScriptContract:
        if isinstance(script, ScriptContract):
            return script
        from site_recovery.scripts import SCRIPTS  # the project's registry; only needed for names

        try:
            return SCRIPTS[script]
        except KeyError:
            raise VmmScriptNotFound(
                f"No script contract named {script!r}; known scripts: {', '.join(sorted(SCRIPTS))}."
            ) from None
