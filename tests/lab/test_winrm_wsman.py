"""WS-Management envelopes: read what pypsrp writes, write what pypsrp reads (no network).

The client side of each check is pypsrp 0.9.1 itself: its header builder makes the requests
and its fault parser reads the faults, so these tests pin the wire contract, not our idea
of it. Expected fault texts are the ones recorded from Windows hosts.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
from pypsrp.wsman import NAMESPACES, OptionSet, SelectorSet, WSMan, WSManAction

from asr_lab.winrm import wsman

SHELL_ID = "4BDB2D7F-56CA-4903-84A2-DB1AB8950A9E"
PS_URI = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
RSP = NAMESPACES["rsp"]


def pypsrp_request(action: str, body: ET.Element | None = None, *, selectors: bool = True,
                   timeout: int | None = None) -> tuple[str, bytes]:
    """(MessageID, envelope bytes) exactly as pypsrp's WSMan.invoke builds them."""
    client = WSMan("windows-host", port=5986, username="u", password="p", auth="basic", operation_timeout=20)
    options = OptionSet()
    options.add_option("WSMAN_CMDSHELL_OPTION_KEEPALIVE", "True")
    selector_set = None
    if selectors:
        selector_set = SelectorSet()
        selector_set.add_option("ShellId", SHELL_ID)
    message_id, header = client._create_header(action, PS_URI, options, selector_set, timeout)
    envelope = ET.Element("{%s}Envelope" % NAMESPACES["s"])
    envelope.append(header)
    body_element = ET.SubElement(envelope, "{%s}Body" % NAMESPACES["s"])
    if body is not None:
        body_element.append(body)
    return f"uuid:{message_id}", ET.tostring(envelope, encoding="utf-8")


class TestParseRequest:
    def test_reads_every_header_pypsrp_sends(self):
        receive = ET.Element("{%s}Receive" % RSP)
        desired = ET.SubElement(receive, "{%s}DesiredStream" % RSP, CommandId="C0FFEE00-0000-0000-0000-000000000001")
        desired.text = "stdout"
        message_id, data = pypsrp_request(WSManAction.RECEIVE, receive, timeout=5)

        request = wsman.parse_request(data)

        assert request.action == wsman.Action.RECEIVE
        assert request.message_id == message_id
        assert request.resource_uri == PS_URI
        assert request.shell_id == SHELL_ID
        assert request.options == {"WSMAN_CMDSHELL_OPTION_KEEPALIVE": "True"}
        assert request.operation_timeout == 5
        assert request.max_envelope_size == 153600
        assert request.to == "https://windows-host:5986/wsman"
        assert request.body.tag == "{%s}Receive" % RSP

    def test_default_operation_timeout_and_empty_body(self):
        _, data = pypsrp_request(WSManAction.DELETE, selectors=False)
        request = wsman.parse_request(data)
        assert request.operation_timeout == 20
        assert request.body is None and request.shell_id is None

    @pytest.mark.parametrize("data", [
        b"not xml at all",
        b"<a/>",
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body/></s:Envelope>',
        b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
    ], ids=["garbage", "not-soap", "no-action", "doctype"])
    def test_unreadable_requests_get_windows_invalid_xml_fault(self, data):
        with pytest.raises(wsman.WSManFault) as excinfo:
            wsman.parse_request(data)
        assert excinfo.value.wsman_code == 2150858819
        assert excinfo.value.code == "s:Sender"


@pytest.mark.parametrize(("text", "seconds"), [
    ("PT20S", 20), ("PT7200.000S", 7200), ("PT1M30S", 90), ("P1DT1H", 90000), ("PT0.5S", 0.5),
])
def test_parse_duration(text, seconds):
    assert wsman.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["20", "PT", "P", "PTS", "PT-1S"])
def test_parse_duration_rejects_malformed(text):
    with pytest.raises(ValueError):
        wsman.parse_duration(text)


def test_format_duration_is_windows_style():
    assert wsman.format_duration(7200) == "PT7200.000S"


class TestBuild:
    def test_response_relates_to_the_request_and_escapes_text(self):
        body = wsman.element("rsp:CommandResponse", children=wsman.element("rsp:CommandId", "<&>"))
        xml = ET.fromstring(wsman.build_envelope(wsman.Action.COMMAND + "Response", "uuid:ABC", body))

        assert xml.findtext("s:Header/wsa:RelatesTo", namespaces=NAMESPACES) == "uuid:ABC"
        assert xml.findtext("s:Header/wsa:Action", namespaces=NAMESPACES) == wsman.Action.COMMAND + "Response"
        assert xml.findtext("s:Body/rsp:CommandResponse/rsp:CommandId", namespaces=NAMESPACES) == "<&>"

    def test_receive_response_reads_like_pypsrp_expects(self):
        body = wsman.receive_response([b"one", b"two"], "CMD-1", wsman.CommandState.DONE)
        xml = ET.fromstring(wsman.build_envelope(wsman.Action.RECEIVE + "Response", "uuid:1", body))

        streams = xml.findall("s:Body/rsp:ReceiveResponse/rsp:Stream", NAMESPACES)
        assert [base64.b64decode(s.text) for s in streams] == [b"one", b"two"]
        assert {s.get("Name") for s in streams} == {"stdout"} and {s.get("CommandId") for s in streams} == {"CMD-1"}
        state = xml.find("s:Body/rsp:ReceiveResponse/rsp:CommandState", NAMESPACES)
        assert state.get("State") == wsman.CommandState.DONE

    def test_pool_receive_has_no_command_attributes(self):
        xml = ET.fromstring(f'<r xmlns:rsp="{RSP}">{wsman.receive_response([b"x"], None, None)}</r>')
        stream = xml.find("rsp:ReceiveResponse/rsp:Stream", NAMESPACES)
        assert stream.get("CommandId") is None
        assert xml.find("rsp:ReceiveResponse/rsp:CommandState", NAMESPACES) is None


class TestFaults:
    """Each fault, read back by pypsrp's own parser, says what Windows says."""

    @staticmethod
    def client_view(fault: wsman.WSManFault):
        return WSMan._parse_wsman_fault(wsman.build_fault(fault, "uuid:1", "vmm01").decode())

    def test_unknown_shell(self):
        error = self.client_view(wsman.shell_not_found(SHELL_ID))
        assert error.code == 2150858843 and error.machine == "vmm01"
        assert error.reason == (
            f"The request for the Windows Remote Shell with ShellId {SHELL_ID} failed because the shell was not found "
            "on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on "
            "the server. Provide the correct ShellId or create a new shell and retry the operation.")

    def test_unknown_command(self):
        error = self.client_view(wsman.command_not_found())
        assert error.code == 2150858843
        assert error.reason.startswith("The Windows Remote Shell received a request to perform an operation on a "
                                       "command identifier that does not exist.")

    def test_operation_timeout_is_the_code_pypsrp_polls_through(self):
        error = self.client_view(wsman.operation_timed_out())
        assert error.code == 2150858793
        assert error.reason == ("The WS-Management service cannot complete the operation within the time specified "
                                "in OperationTimeout.")

    def test_fault_envelope_shape(self):
        xml = ET.fromstring(wsman.build_fault(wsman.operation_timed_out(), "uuid:9", "vmm01"))
        ns = {**NAMESPACES, "f": wsman.NS["f"]}
        assert xml.findtext("s:Header/wsa:Action", namespaces=ns) == wsman.FAULT_ACTION
        assert xml.findtext("s:Body/s:Fault/s:Code/s:Value", namespaces=ns) == "s:Receiver"
        assert xml.findtext("s:Body/s:Fault/s:Code/s:Subcode/s:Value", namespaces=ns) == "w:TimedOut"
        assert xml.find("s:Body/s:Fault/s:Detail/f:WSManFault", ns).get("Code") == "2150858793"

    @pytest.mark.parametrize(("fault", "code"), [
        (wsman.action_not_supported("urn:x"), 2150858771),
        (wsman.resource_not_found(PS_URI.replace("PowerShell", "Exchange")), 2150858811),
        (wsman.shell_quota_exceeded(30), 2150859173),
        (wsman.plugin_failure("boom"), 2150858883),
    ])
    def test_other_faults_carry_windows_codes(self, fault, code):
        assert self.client_view(fault).code == code
