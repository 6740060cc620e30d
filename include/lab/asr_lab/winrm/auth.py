"""Who is calling: HTTP authentication the way a Windows WinRM listener does it.

- Basic, over HTTPS only (Windows' ``AllowUnencrypted=false`` refuses it over HTTP).
- Negotiate with NTLM inside (raw or SPNEGO-wrapped), through pyspnego's acceptor. Like
  Windows, the authentication belongs to the TCP connection: once a connection completes the
  handshake, its later requests carry no Authorization header. Over plain HTTP the client must
  then encrypt every message with the NTLM session (``multipart/encrypted``), as pypsrp does.
- Anything else, or a wrong password, gets Windows' bare 401 offering ``Negotiate`` and
  ``Basic realm="WSMAN"``.

pyspnego's NTLM acceptor reads user hashes from the file named by ``NTLM_USER_FILE``, one
per process. Each emulated server has its own users, so the two private lookups it uses are
redirected, for the duration of one handshake step, to that server's in-memory hashes.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hmac
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import spnego
import spnego._ntlm as _spnego_ntlm
from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1
from spnego.exceptions import ErrorCode, SpnegoError

CHALLENGE_HEADERS = [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", 'Basic realm="WSMAN"')]
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = "Encrypted Boundary"
MAX_TRACKED_CONNECTIONS = 1024
# A connection authenticated by NTLM stays so while it is used; an entry unused this long
# belongs to a closed connection (HTTP.sys drops idle ones after 120 s), so forget it rather
# than trust a later connection that happens to reuse the client port.
CONNECTION_IDLE_LIMIT = 900.0

Connection = tuple[str, int]


@dataclass
class AuthDecision:
    """The outcome for one request: a user, or (user None) a 401 with ``headers``."""

    user: str | None
    headers: list[tuple[str, str]] = field(default_factory=list)
    session: Any = None  #: the completed NTLM/SPNEGO context, for message encryption


@dataclass
class _NegotiateState:
    context: Any
    user: str | None = None
    last_seen: float = field(default_factory=time.monotonic)


class WinRMAuthenticator:
    """Checks callers against one emulated server's local accounts (username -> password)."""

    def __init__(self, credentials: dict[str, str]) -> None:
        self._passwords = {name.casefold(): (name, password) for name, password in credentials.items()}
        self._hashes = {_split(name): (lmowfv1(password), ntowfv1(password)) for name, password in credentials.items()}
        self._connections: OrderedDict[Connection, _NegotiateState] = OrderedDict()

    def authenticate(self, authorization: str | None, connection: Connection, is_tls: bool) -> AuthDecision:
        scheme, _, token = (authorization or "").strip().partition(" ")
        scheme = scheme.casefold()
        if scheme == "basic":
            self._connections.pop(connection, None)
            return self._basic(token.strip(), is_tls)
        if scheme in ("negotiate", "ntlm") and NTLM_AVAILABLE:
            return self._negotiate(token.strip(), connection, scheme)
        state = self._connections.get(connection)
        if not authorization and state is not None and state.user is not None:
            if time.monotonic() - state.last_seen <= CONNECTION_IDLE_LIMIT:
                state.last_seen = time.monotonic()
                return AuthDecision(state.user, session=state.context)
            self.forget(connection)
        return AuthDecision(None, list(CHALLENGE_HEADERS))

    def forget(self, connection: Connection) -> None:
        self._connections.pop(connection, None)

    def _basic(self, token: str, is_tls: bool) -> AuthDecision:
        try:
            username, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return AuthDecision(None, list(CHALLENGE_HEADERS))
        known = self._passwords.get(username.casefold())
        if not is_tls or known is None or not hmac.compare_digest(known[1].encode(), password.encode()):
            return AuthDecision(None, list(CHALLENGE_HEADERS))
        return AuthDecision(known[0])

    def _negotiate(self, token: str, connection: Connection, scheme: str) -> AuthDecision:
        header = "Negotiate" if scheme == "negotiate" else "NTLM"
        try:
            in_token = base64.b64decode(token, validate=True)
        except binascii.Error:
            return AuthDecision(None, list(CHALLENGE_HEADERS))
        state = self._connections.get(connection)
        try:
            with _ntlm_accounts(self._hashes):
                if state is None or state.user is not None or _is_first_token(in_token):
                    state = _NegotiateState(spnego.server(protocol="negotiate"))
                    self._track(connection, state)
                out_token = state.context.step(in_token)
        except Exception:  # SpnegoError, or a token too mangled to parse: either way a failed logon
            self._connections.pop(connection, None)
            return AuthDecision(None, list(CHALLENGE_HEADERS))
        reply = [("WWW-Authenticate", f"{header} {base64.b64encode(out_token).decode()}")] if out_token else []
        if not state.context.complete:
            return AuthDecision(None, reply)
        state.user = self._account_name(state.context.client_principal or "")
        if state.user is None:
            self._connections.pop(connection, None)
            return AuthDecision(None, list(CHALLENGE_HEADERS))
        return AuthDecision(state.user, reply, state.context)

    def _account_name(self, principal: str) -> str | None:
        """The credentials key of the account pyspnego authenticated (it only knows ours)."""
        wanted = _split(principal)
        return next((name for name, _ in self._passwords.values() if _split(name) == wanted), None)

    def _track(self, connection: Connection, state: _NegotiateState) -> None:
        self._connections[connection] = state
        self._connections.move_to_end(connection)
        while len(self._connections) > MAX_TRACKED_CONNECTIONS:
            self._connections.popitem(last=False)


def _split(name: str) -> tuple[str, str]:
    domain, _, user = name.rpartition("\\")
    return domain.casefold(), user.casefold()


def _is_first_token(token: bytes) -> bool:
    """An NTLM NEGOTIATE_MESSAGE, raw or inside a SPNEGO NegTokenInit (which starts 0x60)."""
    return token[:1] == b"\x60" or token[:12] == b"NTLMSSP\x00\x01\x00\x00\x00"


# ---- per-server NTLM accounts for pyspnego's acceptor --------------------------------------
_ACCOUNTS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("asr_lab_ntlm_accounts", default=None)
_LAB_STORE = "<asr-lab winrm accounts>"
_original_credential_file = getattr(_spnego_ntlm, "_get_credential_file", None)
_original_credential = getattr(_spnego_ntlm, "_get_credential", None)


def _credential_file() -> str | None:
    return _LAB_STORE if _ACCOUNTS.get() is not None else _original_credential_file()


def _credential(store, domain=None, username=None):
    if store != _LAB_STORE:
        return _original_credential(store, domain, username)
    hashes = (_ACCOUNTS.get() or {}).get(((domain or "").casefold(), (username or "").casefold()))
    if hashes is None:
        raise SpnegoError(ErrorCode.failure, context_msg="No such account on this emulated server.")
    return domain, username, hashes[0], hashes[1]


# Written against pyspnego 0.12.4 (pinned); should the private names move, NTLM is refused
# (401, as for any unknown account) instead of breaking the lab.
NTLM_AVAILABLE = callable(_original_credential_file) and callable(_original_credential)
if NTLM_AVAILABLE:
    _spnego_ntlm._get_credential_file = _credential_file
    _spnego_ntlm._get_credential = _credential


@contextmanager
def _ntlm_accounts(hashes: dict) -> Iterator[None]:
    token = _ACCOUNTS.set(hashes)
    try:
        yield
    finally:
        _ACCOUNTS.reset(token)


# ---- WinRM message encryption (MS-WSMV 2.2.9.1) --------------------------------------------
def is_encrypted(content_type: str) -> bool:
    return content_type.startswith(("multipart/encrypted", "multipart/x-multi-encrypted"))


def unwrap_message(session: Any, body: bytes) -> bytes:
    """The SOAP envelope inside a ``multipart/encrypted`` request body."""
    parts = [p for p in re.split(rb"--\s*" + BOUNDARY.encode() + rb"(?:--)?\r\n", body) if p]
    message = b""
    for header, payload in zip(parts[0::2], parts[1::2]):
        length = int(re.search(rb"Length=(\d+)", header).group(1))
        wrapped = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        signature_length = struct.unpack("<i", wrapped[:4])[0]
        data = session.unwrap_winrm(wrapped[4:4 + signature_length], wrapped[4 + signature_length:])
        if len(data) != length:
            raise ValueError(f"decrypted {len(data)} bytes, expected {length}")
        message += data
    return message


def wrap_message(session: Any, message: bytes) -> tuple[str, bytes]:
    """(Content-Type, body) for a response encrypted with the caller's session."""
    result = session.wrap_winrm(message)
    body = (
        f"--{BOUNDARY}\r\n\tContent-Type: {ENCRYPTED_PROTOCOL}\r\n"
        f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={len(message) + result.padding_length}"
        f"\r\n--{BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n"
    ).encode() + struct.pack("<i", len(result.header)) + result.header + result.data + f"--{BOUNDARY}--\r\n".encode()
    return f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="{BOUNDARY}"', body
