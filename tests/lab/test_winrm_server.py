"""The WinRM endpoint over real HTTP(S), driven by the unmodified pypsrp client.

One server (HTTPS, and the same app on a plain-HTTP port) serves the module. Its twins
stand in for scripts; one of them makes the server stop answering, to check that a client
gives up with a clear error instead of waiting forever.
"""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
import requests
from pypsrp.complex_objects import ObjectMeta, PSInvocationState
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import NAMESPACES, SelectorSet, WSMan

from asr_lab.pki import ensure_pki
from asr_lab.winrm import ScriptTwins, TwinError, TwinResult, WinRMControls, build_winrm_app
from asr_lab.winrm.testing import running_winrm_server

USER, PASSWORD = "LAB\\svc-asr", "Pa55w:rd!"
INVENTORY = "# asr-lab-twin: Get-VmmInventory\nparam($Cloud, $Password)\n"
WAIT = 10.0


def make_twins() -> ScriptTwins:
    twins = ScriptTwins()

    @twins.register("Get-VmmInventory")
    def inventory(parameters, context):
        return TwinResult(
            output=[json.dumps({"cloud": parameters.get("Cloud"),
                                "password_ok": parameters.get("Password") == "s3cr3t"})],
            verbose=["Found 2 VMs in cloud Gold"], warning=["VM web02 has no replica"],
            information=["Inventory taken"])

    twins.register("Write-VmError", lambda p, c: TwinResult(errors=[TwinError(
        "VM 'web01' is not protected", "ObjectNotFound", "VmNotProtected", target_object="web01",
        position="at <ScriptBlock>, C:\\asr\\Test-Protection.ps1: line 12")]))
    twins.register("Get-Big", lambda p, c: TwinResult(output=["x" * 600_000, "done"]))
    twins.register("Get-Echo", lambda p, c: TwinResult(output=[p.get("Value")]))

    def stop_answering(parameters, context):
        context.controls.stop_answering()
        return TwinResult(output=["the server will now go quiet"])

    twins.register("Stop-Answering", stop_answering)
    return twins


@pytest.fixture(scope="module")
def lab_winrm(tmp_path_factory):
    ca, cert, key = ensure_pki(tmp_path_factory.mktemp("winrm-pki"))
    controls = WinRMControls()
    app = build_winrm_app("vmm01", {USER: PASSWORD}, make_twins(), SimpleNamespace(controls=controls),
                          controls=controls)
    with running_winrm_server(app, certfile=cert, keyfile=key) as https, running_winrm_server(app) as http:
        yield SimpleNamespace(https=https, http=http, ca=str(ca), service=app.state.winrm, controls=controls)
        controls.resume_answering()
        controls.release_pipelines()


def wsman_client(lab, *, password=PASSWORD, auth="basic", tls=True, **options) -> WSMan:
    server = lab.https if tls else lab.http
    return WSMan(server.host, port=server.port, username=USER, password=password, auth=auth, ssl=tls,
                 cert_validation=lab.ca, **options)


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class TestPowerShell:
    def test_script_twin_with_secure_string_after_key_exchange(self, lab_winrm):
        with wsman_client(lab_winrm) as wsman, RunspacePool(wsman) as pool:
            pool.exchange_keys()
            ps = PowerShell(pool)
            ps.add_script(INVENTORY).add_parameters(
                {"Cloud": "Gold", "Password": pool.serialize("s3cr3t", ObjectMeta("SS"))})
            output = ps.invoke()

        assert json.loads(output[0]) == {"cloud": "Gold", "password_ok": True}
        assert [r.message for r in ps.streams.verbose] == ["Found 2 VMs in cloud Gold"]
        assert [r.message for r in ps.streams.warning] == ["VM web02 has no replica"]
        assert [(r.message_data, r.computer, r.user) for r in ps.streams.information] == [
            ("Inventory taken", "vmm01", USER)]
        logged = [i for i in lab_winrm.service.invocations if i["command_id"] == ps._command_id]
        assert logged[0]["commands"][0]["parameters"] == {"Cloud": "Gold", "Password": "********"}
        assert logged[0]["state"] == "Completed" and logged[0]["user"] == USER

    def test_error_record_and_unknown_commands(self, lab_winrm):
        with wsman_client(lab_winrm) as wsman, RunspacePool(wsman) as pool:
            written = PowerShell(pool)
            written.add_cmdlet("Write-VmError").invoke()
            missing = PowerShell(pool)
            missing.add_cmdlet("Get-Nope").invoke()
            in_script = PowerShell(pool)
            in_script.add_script("Get-Nope -Name web01").invoke()

        error = written.streams.error[0]
        assert (str(error), error.fq_error, error.reason) == ("VM 'web01' is not protected", "VmNotProtected",
                                                              "WriteErrorException")
        assert error.message == "ObjectNotFound: (web01:String) [Write-Error], WriteErrorException"
        assert error.script_stacktrace == "at <ScriptBlock>, C:\\asr\\Test-Protection.ps1: line 12"
        assert written.state == PSInvocationState.COMPLETED and not written.had_errors

        assert missing.state == PSInvocationState.FAILED and missing.had_errors
        assert str(missing.streams.error[0]).startswith("The term 'Get-Nope' is not recognized as the name of a "
                                                        "cmdlet, function, script file, or operable program.")
        assert missing.streams.error[0].fq_error == "CommandNotFoundException"
        assert in_script.state == PSInvocationState.COMPLETED and in_script.streams.error

    def test_large_output_spans_fragments_and_receives(self, lab_winrm):
        with wsman_client(lab_winrm) as wsman, RunspacePool(wsman) as pool:
            ps = PowerShell(pool)
            output = ps.add_cmdlet("Get-Big").invoke()
        assert output == ["x" * 600_000, "done"]

    def test_pipeline_as_psrpoperator_builds_it(self, lab_winrm):
        with wsman_client(lab_winrm) as wsman, RunspacePool(wsman) as pool:
            ps = PowerShell(pool)
            output = ps.add_script(INVENTORY).add_parameters({"Cloud": "Gold"}).add_cmdlet("ConvertTo-Json").invoke()
        assert json.loads(json.loads(output[0])) == {"cloud": "Gold", "password_ok": False}

    def test_stop_and_close_signals(self, lab_winrm):
        lab_winrm.controls.hold_pipelines()
        try:
            with wsman_client(lab_winrm) as wsman, RunspacePool(wsman) as pool:
                held = PowerShell(pool)
                held.add_cmdlet("Get-Echo").add_parameter("Value", "late")
                held.begin_invoke()
                held.stop()  # the powershell/signal/ctrl_c signal
                assert held.state == PSInvocationState.STOPPED
                lab_winrm.controls.release_pipelines()
                wait_until(lambda: any(i["command_id"] == held._command_id and i["state"] != "Running"
                                       for i in lab_winrm.service.invocations), "the stopped pipeline to end")
                logged = [i for i in lab_winrm.service.invocations if i["command_id"] == held._command_id]
                assert logged[0]["state"] == "Stopped"  # and its twin never ran
                again = PowerShell(pool)
                assert again.add_cmdlet("Get-Echo").add_parameter("Value", "next").invoke() == ["next"]
                again.close()  # the Terminate signal
        finally:
            lab_winrm.controls.release_pipelines()


class TestTimeouts:
    def test_quiet_command_is_polled_through_operation_timeouts(self, lab_winrm):
        lab_winrm.controls.hold_pipelines()
        before = lab_winrm.service.timed_out_receives
        result: dict = {}
        try:
            with wsman_client(lab_winrm, operation_timeout=0.2) as wsman, RunspacePool(wsman) as pool:
                ps = PowerShell(pool)
                ps.add_cmdlet("Get-Echo").add_parameter("Value", "finally")
                worker = threading.Thread(target=lambda: result.update(output=ps.invoke()))
                worker.start()
                wait_until(lambda: lab_winrm.service.timed_out_receives >= before + 2, "two timed-out Receives")
                lab_winrm.controls.release_pipelines()
                worker.join(WAIT)
        finally:
            lab_winrm.controls.release_pipelines()
        assert result["output"] == ["finally"]

    def test_server_that_stops_answering_mid_run(self, lab_winrm):
        started = time.monotonic()
        try:
            with pytest.raises(requests.exceptions.ReadTimeout):
                with wsman_client(lab_winrm, read_timeout=0.5, reconnection_backoff=0) as wsman, \
                        RunspacePool(wsman) as pool:
                    PowerShell(pool).add_cmdlet("Stop-Answering").add_cmdlet("Out-Null").invoke()
        finally:
            lab_winrm.controls.resume_answering()
        assert time.monotonic() - started < WAIT


class TestAuthentication:
    def test_wrong_password_is_refused_like_windows(self, lab_winrm):
        with pytest.raises(AuthenticationError):
            with wsman_client(lab_winrm, password="wrong") as wsman, RunspacePool(wsman):
                pass
        response = requests.post(lab_winrm.https.url, data=b"<x/>", auth=(USER, "wrong"), verify=lab_winrm.ca,
                                  timeout=WAIT)
        assert response.status_code == 401 and response.content == b""
        assert response.raw.headers.getlist("WWW-Authenticate") == ["Negotiate", 'Basic realm="WSMAN"']
        assert response.headers["Server"] == "Microsoft-HTTPAPI/2.0"

    def test_basic_over_plain_http_is_refused(self, lab_winrm):
        with pytest.raises(AuthenticationError):
            with wsman_client(lab_winrm, tls=False, encryption="never") as wsman, RunspacePool(wsman):
                pass

    @pytest.mark.parametrize("auth", ["ntlm", "negotiate"])
    def test_ntlm_over_https(self, lab_winrm, auth):
        with wsman_client(lab_winrm, auth=auth) as wsman, RunspacePool(wsman) as pool:
            assert PowerShell(pool).add_cmdlet("Get-Echo").add_parameter("Value", auth).invoke() == [auth]

    def test_ntlm_with_message_encryption_over_http(self, lab_winrm):
        with wsman_client(lab_winrm, auth="ntlm", tls=False) as wsman, RunspacePool(wsman) as pool:
            pool.exchange_keys()
            assert PowerShell(pool).add_cmdlet("Get-Echo").add_parameter("Value", "sealed").invoke() == ["sealed"]

    @pytest.mark.parametrize(("password", "options"), [("wrong", {}), (PASSWORD, {"encryption": "never"})],
                             ids=["wrong-password", "unencrypted-http"])
    def test_ntlm_refusals(self, lab_winrm, password, options):
        with pytest.raises(AuthenticationError):
            with wsman_client(lab_winrm, auth="ntlm", password=password, tls=False, **options) as wsman, \
                    RunspacePool(wsman):
                pass


class TestFaults:
    def test_unknown_shell(self, lab_winrm):
        selectors = SelectorSet()
        selectors.add_option("ShellId", "11111111-1111-1111-1111-111111111111")
        receive = ET.Element("{%s}Receive" % NAMESPACES["rsp"])
        ET.SubElement(receive, "{%s}DesiredStream" % NAMESPACES["rsp"]).text = "stdout"
        with wsman_client(lab_winrm) as wsman, pytest.raises(WSManFaultError) as excinfo:
            wsman.receive("http://schemas.microsoft.com/powershell/Microsoft.PowerShell", receive,
                          selector_set=selectors)
        assert excinfo.value.code == 2150858843 and excinfo.value.machine == "vmm01"
        assert "ShellId 11111111-1111-1111-1111-111111111111 failed because the shell was not found" in \
            excinfo.value.reason

    def test_unknown_session_configuration(self, lab_winrm):
        with wsman_client(lab_winrm) as wsman, pytest.raises(WSManFaultError) as excinfo:
            RunspacePool(wsman, configuration_name="Microsoft.Exchange").open()
        assert excinfo.value.code == 2150858811

    def test_idle_shell_is_discarded_like_windows(self, lab_winrm):
        service, wsman = lab_winrm.service, wsman_client(lab_winrm)
        pool = RunspacePool(wsman, idle_timeout=60)
        pool.open()
        assert pool.shell.idle_time_out == "PT60.000S"
        real_clock = service.clock
        service.clock = lambda: real_clock() + 61
        try:
            with pytest.raises(WSManFaultError) as excinfo:
                PowerShell(pool).add_cmdlet("Get-Echo").invoke()
        finally:
            service.clock = real_clock
            wsman.close()  # no Delete: the shell is already gone
        assert excinfo.value.code == 2150858843 and pool.id not in service.shells

    def test_shell_quota_per_user(self, lab_winrm):
        wsman = wsman_client(lab_winrm)
        pools = [RunspacePool(wsman) for _ in range(30 - len(lab_winrm.service.shells))]
        try:
            for pool in pools:
                pool.open()
            with pytest.raises(WSManFaultError) as excinfo:
                RunspacePool(wsman).open()
            assert excinfo.value.code == 2150859173
            assert "maximum number of 30 concurrent shells" in excinfo.value.reason
        finally:
            for pool in pools:
                pool.close()
            wsman.close()

    def test_pool_state_query(self, lab_winrm):
        with wsman_client(lab_winrm) as wsman, RunspacePool(wsman) as pool:
            assert pool.is_alive()

    def test_malformed_envelope_gets_a_fault_not_a_crash(self, lab_winrm):
        response = requests.post(lab_winrm.https.url, data=b"<s:Envelope", auth=(USER, PASSWORD),
                                 verify=lab_winrm.ca, timeout=WAIT)
        assert response.status_code == 500
        assert WSMan._parse_wsman_fault(response.text).code == 2150858819
