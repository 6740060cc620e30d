"""Authentication of one emulated server, as an in-memory exchange of HTTP header values.

The client side is pyspnego's initiator configured as pypsrp configures it, and pypsrp's
own WinRMEncryption for sealed messages, so the handshake and the MIME framing are checked
against the real client without a socket.
"""

from __future__ import annotations

import base64

import pytest
import spnego
from pypsrp.encryption import WinRMEncryption

from asr_lab.winrm import auth
from asr_lab.winrm.auth import CHALLENGE_HEADERS, WinRMAuthenticator, unwrap_message, wrap_message

ACCOUNTS = {"LAB\\svc-asr": "Pa55:w0rd", "localadmin": "Secret!1"}
CONNECTION = ("127.0.0.1", 50001)
ENVELOPE = b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>'


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def handshake(authenticator: WinRMAuthenticator, username: str, password: str, protocol: str = "ntlm",
              connection=CONNECTION):
    """Run pypsrp's Negotiate loop against the authenticator; the client context and last decision."""
    client = spnego.client(username, password, hostname="vmm01", service="host", protocol=protocol,
                           options=spnego.NegotiateOptions.wrapping_winrm)
    out_token = client.step()
    while True:
        decision = authenticator.authenticate(f"Negotiate {base64.b64encode(out_token).decode()}", connection,
                                              is_tls=False)
        challenge = dict(decision.headers).get("WWW-Authenticate", "")
        in_token = base64.b64decode(challenge.partition(" ")[2]) if challenge.startswith("Negotiate ") else b""
        if not in_token:
            return client, decision
        out_token = client.step(in_token)
        if out_token is None:
            return client, decision


class TestBasic:
    def test_right_password_over_tls(self):
        decision = WinRMAuthenticator(ACCOUNTS).authenticate(basic("lab\\SVC-ASR", "Pa55:w0rd"), CONNECTION, True)
        assert decision.user == "LAB\\svc-asr"  # user names are case-insensitive, as on Windows

    @pytest.mark.parametrize(("header", "is_tls"), [
        (basic("LAB\\svc-asr", "wrong"), True),
        (basic("nobody", "Pa55:w0rd"), True),
        (basic("LAB\\svc-asr", "Pa55:w0rd"), False),  # AllowUnencrypted=false
        ("Basic !!!", True),
        (None, True),
        ("Kerberos abc", True),
    ], ids=["wrong-password", "unknown-user", "plain-http", "garbage", "missing", "other-scheme"])
    def test_refusals_offer_what_windows_offers(self, header, is_tls):
        decision = WinRMAuthenticator(ACCOUNTS).authenticate(header, CONNECTION, is_tls)
        assert decision.user is None and decision.headers == CHALLENGE_HEADERS


class TestNegotiate:
    @pytest.mark.parametrize("protocol", ["ntlm", "negotiate"])
    @pytest.mark.parametrize("username", ["LAB\\svc-asr", "localadmin"])
    def test_handshake_and_the_connection_stays_authenticated(self, protocol, username):
        authenticator = WinRMAuthenticator(ACCOUNTS)
        _, decision = handshake(authenticator, username, ACCOUNTS[username], protocol)
        assert decision.user == username and decision.session is not None
        assert authenticator.authenticate(None, CONNECTION, False).user == username
        assert authenticator.authenticate(None, ("127.0.0.1", 50002), False).user is None

    def test_wrong_password(self):
        _, decision = handshake(WinRMAuthenticator(ACCOUNTS), "LAB\\svc-asr", "wrong")
        assert decision.user is None and decision.headers == CHALLENGE_HEADERS

    def test_account_of_another_server_is_unknown_here(self):
        other = WinRMAuthenticator({"LAB\\svc-asr": "different"})
        _, decision = handshake(WinRMAuthenticator(ACCOUNTS), "LAB\\svc-asr", "different")
        assert decision.user is None
        assert handshake(other, "LAB\\svc-asr", "different")[1].user == "LAB\\svc-asr"

    def test_mangled_token_is_a_failed_logon(self):
        mangled = "Negotiate " + base64.b64encode(b"NTLMSSP\x00\x03").decode()
        decision = WinRMAuthenticator(ACCOUNTS).authenticate(mangled, CONNECTION, False)
        assert decision.user is None

    def test_idle_connection_is_forgotten(self, monkeypatch):
        authenticator = WinRMAuthenticator(ACCOUNTS)
        handshake(authenticator, "localadmin", "Secret!1")
        now = auth.time.monotonic()
        monkeypatch.setattr(auth.time, "monotonic", lambda: now + auth.CONNECTION_IDLE_LIMIT + 1)
        assert authenticator.authenticate(None, CONNECTION, False).user is None


def test_message_encryption_round_trip_with_pypsrps_framing():
    client, decision = handshake(WinRMAuthenticator(ACCOUNTS), "localadmin", "Secret!1")
    sealer = WinRMEncryption(client, WinRMEncryption.SPNEGO)

    content_type, sealed_request = sealer.wrap_message(ENVELOPE)
    assert auth.is_encrypted(content_type)
    assert unwrap_message(decision.session, sealed_request) == ENVELOPE

    content_type, sealed_response = wrap_message(decision.session, ENVELOPE + b"<!-- reply -->")
    assert content_type == ('multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";'
                            'boundary="Encrypted Boundary"')
    assert sealer.unwrap_message(sealed_response, "Encrypted Boundary") == ENVELOPE + b"<!-- reply -->"
