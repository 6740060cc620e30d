"""WS-Management SOAP envelopes as Windows' WinRM service reads and writes them.

Pure functions and values, no I/O: the HTTP adapter hands in request bytes and sends out
what these functions return. Responses are written as text with the prefixes Windows uses
(``s``, ``a``, ``x``, ``w``, ``rsp``, ``p``) rather than through ElementTree, because
ElementTree's namespace prefixes are process-global and pypsrp (often in the same test
process) registers its own. Faults carry the codes, subcodes and sentences recorded from
real Windows hosts, so a client's fault handling meets exactly what production sends.
"""

from __future__ import annotations

import base64
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "pwsh": "http://schemas.microsoft.com/powershell",
}
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
POWERSHELL_URI_PREFIX = "http://schemas.microsoft.com/powershell/"


class Action:
    """The wsa:Action URIs a PowerShell remoting client sends, and their responses (+"Response")."""

    CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
    DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
    GET = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
    COMMAND = f"{SHELL_URI}/Command"
    SEND = f"{SHELL_URI}/Send"
    RECEIVE = f"{SHELL_URI}/Receive"
    SIGNAL = f"{SHELL_URI}/Signal"


class CommandState:
    DONE = f"{SHELL_URI}/CommandState/Done"
    RUNNING = f"{SHELL_URI}/CommandState/Running"


class SignalCode:
    TERMINATE = f"{SHELL_URI}/signal/Terminate"
    CTRL_C = f"{SHELL_URI}/signal/ctrl_c"
    PS_CTRL_C = "powershell/signal/ctrl_c"


@dataclass(frozen=True)
class WSManRequest:
    """The parts of a request envelope the emulated service acts on."""

    action: str
    message_id: str
    resource_uri: str
    to: str | None = None  #: the listener URL the client addressed
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    operation_timeout: float | None = None  #: seconds, from wsman:OperationTimeout
    max_envelope_size: int | None = None
    body: ET.Element | None = None  #: the first child of s:Body

    @property
    def shell_id(self) -> str | None:
        return self.selectors.get("ShellId")


class WSManFault(Exception):
    """A SOAP fault as Windows sends it: HTTP 500 with a wsmanfault:WSManFault detail."""

    def __init__(self, code: str, subcode: str, reason: str, wsman_code: int, message: str | None = None,
                 fault_detail: str | None = None) -> None:
        self.code = code  #: s:Sender or s:Receiver
        self.subcode = subcode  #: e.g. w:InvalidSelectors
        self.reason = reason
        self.wsman_code = wsman_code  #: the Windows error code pypsrp exposes as WSManFaultError.code
        self.message = message if message is not None else reason
        self.fault_detail = fault_detail
        super().__init__(self.message)


# ---- Faults, with the texts Windows sends (trailing spaces included) ---------------------
ERROR_OPERATION_TIMEDOUT = 2150858793
ERROR_UNEXPECTED_SELECTORS = 2150858843

_INVALID_SELECTORS = ("The WS-Management service cannot process the request because the request contained invalid "
                      "selectors for the resource. ")
_UNEXPECTED_SELECTORS_DETAIL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors"
_TIMED_OUT = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  "


def shell_not_found(shell_id: str | None) -> WSManFault:
    return WSManFault(
        "s:Sender", "w:InvalidSelectors", _INVALID_SELECTORS, ERROR_UNEXPECTED_SELECTORS,
        f"The request for the Windows Remote Shell with ShellId {shell_id or ''} failed because the shell was not "
        "found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists "
        "on the server. Provide the correct ShellId or create a new shell and retry the operation. ",
        _UNEXPECTED_SELECTORS_DETAIL,
    )


def command_not_found() -> WSManFault:
    return WSManFault(
        "s:Sender", "w:InvalidSelectors", _INVALID_SELECTORS, ERROR_UNEXPECTED_SELECTORS,
        "The Windows Remote Shell received a request to perform an operation on a command identifier that does not "
        "exist. Either the command has completed execution or the client specified an invalid command identifier. ",
        _UNEXPECTED_SELECTORS_DETAIL,
    )


def operation_timed_out() -> WSManFault:
    """What a Receive gets when no output is ready within OperationTimeout; clients poll again."""
    return WSManFault("s:Receiver", "w:TimedOut", _TIMED_OUT, ERROR_OPERATION_TIMEDOUT)


def action_not_supported(action: str) -> WSManFault:
    return WSManFault(
        "s:Sender", "a:ActionNotSupported", "The action is not supported by the service.", 2150858771,
        f"The WS-Management service does not support the action specified in the request: {action} ",
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/ActionMismatch",
    )


def resource_not_found(resource_uri: str) -> WSManFault:
    """An unknown session configuration (RunspacePool configuration_name) or resource URI."""
    return WSManFault(
        "s:Sender", "w:DestinationUnreachable",
        "The WS-Management service cannot process the request. The resource URI is not valid or not found. ",
        2150858811,
        f"The WS-Management service cannot process the request. The resource URI ({resource_uri}) was not found in "
        "the WS-Management catalog. The catalog contains the metadata that describes resources, or logical endpoints. ",
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI",
    )


def invalid_xml(detail: str = "") -> WSManFault:
    message = "The WS-Management service cannot process the request because the XML is invalid. "
    return WSManFault("s:Sender", "w:SchemaValidationError", message, 2150858819, message + detail)


def shell_quota_exceeded(limit: int) -> WSManFault:
    return WSManFault(
        "s:Sender", "w:QuotaLimit", "The service is busy servicing other requests. ", 2150859173,
        f"The WS-Management service cannot process the request. This user is allowed a maximum number of {limit} "
        "concurrent shells, which has been exceeded. Close existing shells or raise the quota for this user. ",
    )


def plugin_failure(message: str) -> WSManFault:
    """The PowerShell plugin could not handle the request (a broken PSRP stream, for instance)."""
    return WSManFault(
        "s:Receiver", "w:InternalError",
        "The WS-Management service cannot process the request. The data source failed to return results for the "
        "request. ", 2150858883, message,
    )


# ---- Parsing ------------------------------------------------------------------------------
_DURATION = re.compile(r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
                       r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float:
    """Seconds in an xs:duration such as ``PT20S`` or ``PT7200.000S``; ValueError if malformed."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise ValueError(f"not an xs:duration: {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)


def format_duration(seconds: float) -> str:
    """``PT7200.000S``, the way Windows writes durations."""
    return f"PT{seconds:.3f}S"


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def parse_request(data: bytes) -> WSManRequest:
    """Read a request envelope; raise the fault Windows would send for one it cannot read."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise invalid_xml("Document type declarations are not allowed. ")
    try:
        envelope = ET.fromstring(data)
    except ET.ParseError as exc:
        raise invalid_xml(str(exc)) from None
    header = envelope.find(_q("s", "Header"))
    body = envelope.find(_q("s", "Body"))
    if envelope.tag != _q("s", "Envelope") or header is None or body is None:
        raise invalid_xml("The message is not a SOAP 1.2 envelope with a Header and a Body. ")

    def text(prefix: str, name: str) -> str | None:
        element = header.find(_q(prefix, name))
        return element.text.strip() if element is not None and element.text else None

    action, message_id = text("a", "Action"), text("a", "MessageID")
    if not action or not message_id:
        raise invalid_xml("The wsa:Action and wsa:MessageID headers are required. ")
    timeout = text("w", "OperationTimeout")
    max_size = text("w", "MaxEnvelopeSize")
    try:
        operation_timeout = parse_duration(timeout) if timeout else None
        max_envelope_size = int(max_size) if max_size else None
    except ValueError as exc:
        raise invalid_xml(str(exc)) from None
    return WSManRequest(
        action=action,
        message_id=message_id,
        resource_uri=text("w", "ResourceURI") or "",
        to=text("a", "To"),
        selectors=_named_values(header.find(_q("w", "SelectorSet")), "Selector"),
        options=_named_values(header.find(_q("w", "OptionSet")), "Option"),
        operation_timeout=operation_timeout,
        max_envelope_size=max_envelope_size,
        body=next(iter(body), None),
    )


def _named_values(element: ET.Element | None, child: str) -> dict[str, str]:
    if element is None:
        return {}
    return {item.get("Name", ""): (item.text or "").strip() for item in element.findall(_q("w", child))}


# ---- Building ------------------------------------------------------------------------------
def element(tag: str, text: str | None = None, children: str = "", **attributes: str) -> str:
    """One XML element as text: ``element("rsp:ShellId", "ABC")``; attribute values are escaped."""
    attrs = "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items() if value is not None)
    content = (escape(text) if text is not None else "") + children
    return f"<{tag}{attrs}>{content}</{tag}>" if content else f"<{tag}{attrs}/>"


def build_envelope(action: str, relates_to: str, body: str = "") -> bytes:
    """A response envelope addressed back to the request it answers (pypsrp checks RelatesTo)."""
    namespaces = "".join(f' xmlns:{prefix}="{NS[prefix]}"' for prefix in ("s", "a", "x", "w", "rsp", "p"))
    header = (
        element("a:Action", action)
        + element("a:MessageID", f"uuid:{str(uuid.uuid4()).upper()}")
        + element("a:To", ANONYMOUS)
        + element("a:RelatesTo", relates_to)
    )
    return (f'<s:Envelope xml:lang="en-US"{namespaces}><s:Header>{header}</s:Header>'
            f"<s:Body>{body}</s:Body></s:Envelope>").encode("utf-8")


def build_fault(fault: WSManFault, relates_to: str, machine: str) -> bytes:
    code = element("s:Value", fault.code) + element("s:Subcode", children=element("s:Value", fault.subcode))
    detail = element("w:FaultDetail", fault.fault_detail) if fault.fault_detail else ""
    detail += (f'<f:WSManFault xmlns:f="{NS["f"]}" Code="{fault.wsman_code}" Machine={quoteattr(machine)}>'
               f"{element('f:Message', fault.message)}</f:WSManFault>")
    body = element("s:Fault", children=(
        element("s:Code", children=code)
        + f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        + element("s:Detail", children=detail)
    ))
    return build_envelope(FAULT_ACTION, relates_to, body)


def receive_response(streams: list[bytes], command_id: str | None, state: str | None) -> str:
    """A rsp:ReceiveResponse body: one base64 stdout stream per PSRP payload, then the command state."""
    parts = "".join(
        element("rsp:Stream", base64.b64encode(data).decode("ascii"), Name="stdout", CommandId=command_id)
        for data in streams
    )
    if state is not None:
        parts += element("rsp:CommandState", CommandId=command_id, State=state)
    return element("rsp:ReceiveResponse", children=parts)
