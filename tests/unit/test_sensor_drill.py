"""The drill's verify sensor: one look at the test VM per poke, probes once it is up, the last look pushed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException
from site_recovery.drill import check_test_vm, name_of_test_vm
from site_recovery.exceptions import DrillFailed
from site_recovery.records import JobSummary, ProbeResult, TestVmCheck, VmTarget, format_seconds
from site_recovery.scripts import TestVmEndpointResult, TestVmStatus
from site_recovery.sensors.drill import TestVmVerifiedSensor
from site_recovery.site import Probe

NOW = datetime(2026, 11, 28, 1, 5, tzinfo=timezone.utc)
TARGET = VmTarget(vm="SQL-PRD-01", cloud="Gold-Prod", fabric="f", container="c", item_name="i")
JOB = JobSummary.model_validate({"name": "j1", "state": "Succeeded",
                                 "protected_items": [{"test_vm_name": "SQL-PRD-01 - Drill"}]})
PROBES = [Probe(kind="tcp", port=1433, vm="SQL-*"), Probe(kind="http", port=80, path="/", vm="WEB-*")]


def status(name: str = "SQL-PRD-01 - Drill", *, exists: bool = True, state: str | None = "Running",
           heartbeat: str | None = "OK", ips: tuple[str, ...] = ("192.168.250.10",)) -> TestVmStatus:
    return TestVmStatus(vm_name=name, exists=exists, vm_id="id" if exists else None, state=state if exists else None,
                        heartbeat=heartbeat if exists else None, ip_addresses=list(ips) if exists else [],
                        host="hv-rtm-01" if exists else None)


def answer(ok: bool, port: int = 1433) -> TestVmEndpointResult:
    return TestVmEndpointResult(vm_name="SQL-PRD-01 - Drill", kind="tcp", port=port, path=None,
                                address="192.168.250.10", ok=ok, status_code=None, elapsed_ms=12,
                                detail="connected" if ok else "refused")


class FakeVmm:
    """The recovery VMM: answers Get-TestVmStatus with ``statuses`` in turn, and every probe with ``probe_ok``."""

    def __init__(self, *statuses: TestVmStatus, probe_ok: bool = True) -> None:
        self.statuses, self.probe_ok, self.calls = list(statuses), probe_ok, []

    def run_script(self, name: str, parameters: dict):
        self.calls.append((name, parameters))
        if name == "Get-TestVmStatus":
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return answer(self.probe_ok, parameters["Port"])


class FakeTi:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value

    def get_first_reschedule_date(self, context) -> None:
        return None


def sensor(vmm: FakeVmm | None = None, **kwargs) -> TestVmVerifiedSensor:
    kwargs = {"poke_interval": 1, "timeout": 60, **kwargs}
    made = TestVmVerifiedSensor(task_id="verify_test_vm", site_name="lab", target=TARGET.to_json(),
                                failover_job=JOB, **kwargs)
    made.__dict__["site"] = SimpleNamespace(drill=SimpleNamespace(probes=PROBES),  # no site file read
                                            plan_of=lambda vm: None)
    made.__dict__["vmm"] = vmm  # no WinRM
    return made


def test_it_waits_in_reschedule_mode_unless_told_otherwise():
    assert sensor().mode == "reschedule" and sensor(mode="poke").mode == "poke"


def test_the_test_vm_is_named_by_its_failover_job_else_by_asrs_default():
    assert name_of_test_vm("SQL-PRD-01", JOB) == "SQL-PRD-01 - Drill"
    assert name_of_test_vm("SQL-PRD-01", None) == "SQL-PRD-01 - Test"


def test_a_test_vm_not_up_yet_is_looked_at_again_and_the_look_is_pushed():
    fake = FakeVmm(status(exists=False))
    ti = FakeTi()
    assert sensor(fake).poke({"ti": ti}) is False
    check = ti.pushed["verify"]
    assert isinstance(check, TestVmCheck) and not check.ok and check.started_at is not None
    assert check.detail == "no VM named 'SQL-PRD-01 - Drill'"
    assert [name for name, _ in fake.calls] == ["Get-TestVmStatus"]  # no probe before the VM is up


def test_a_healthy_test_vm_runs_its_probes_and_is_verified():
    fake = FakeVmm(status())
    ti = FakeTi()
    done = sensor(fake).poke({"ti": ti})
    assert done.is_done and done.xcom_value is ti.pushed["verify"]
    check = done.xcom_value
    assert check.ok and check.verified_at is not None and [p.port for p in check.probes] == [1433]
    assert fake.calls[1] == ("Test-TestVmEndpoint", {"VmName": "SQL-PRD-01 - Drill", "Kind": "tcp", "Port": 1433})


def test_a_failed_probe_fails_at_once_and_still_pushes_the_look():
    ti = FakeTi()
    with pytest.raises(DrillFailed, match="the test VM runs but probe failed"):
        sensor(FakeVmm(status(), probe_ok=False)).poke({"ti": ti})
    check = ti.pushed["verify"]
    assert not check.ok and check.probes[0].ok is False and check.detail.startswith("probe failed: ")


def test_a_test_vm_never_up_times_out_saying_what_was_seen_last():
    ti, waiting = FakeTi(), sensor(FakeVmm(status(heartbeat="NoContact")))
    waiting._first_look = datetime.now(timezone.utc) - timedelta(minutes=5)
    with pytest.raises(AirflowSensorTimeout, match=rf"within {format_seconds(60)} \(drill.verify_timeout\); "
                                                   r"last seen: .*NoContact"):
        waiting.poke({"ti": ti})
    assert ti.pushed["verify"].ended_at is not None


def test_soft_fail_skips_instead_of_failing_on_a_timeout():
    with pytest.raises(AirflowSkipException):
        sensor(FakeVmm(status(exists=False)), mode="poke", soft_fail=True, timeout=0).execute({"ti": FakeTi()})


def test_one_look_proves_a_vm_only_when_it_is_healthy_and_every_probe_passed():
    up = check_test_vm(status(), [ProbeResult(kind="tcp", port=1433, ok=True, detail="open")], started_at=NOW,
                       now=NOW)
    assert up.ok and up.verified_at == NOW == up.ended_at
    no_address = check_test_vm(status(ips=()), [], started_at=NOW, now=NOW)
    assert not no_address.ok and no_address.ended_at is None and no_address.probes == []
    refused = check_test_vm(status(), [ProbeResult(kind="tcp", port=1433, ok=False, detail="refused")],
                            started_at=NOW, now=NOW)
    assert not refused.ok and refused.verified_at is None and refused.detail == "probe failed: refused"


def test_a_boot_groups_wait_returns_its_members_in_the_site_files_order_and_pushes_the_job():
    from site_recovery.sensors.drill import PlanGroupSensor

    members = [VmTarget(vm=vm, cloud="Gold-Prod", fabric="f", container="c", item_name=vm.lower())
               for vm in ("SQL-PRD-01", "APP-ERP-01", "APP-ERP-02", "WEB-PORTAL-01")]
    sensor = PlanGroupSensor(task_id="wait_group_2", job_name="j1", group=2, vms=["app-erp-02", "APP-ERP-01"],
                             members=[m.model_dump(mode="json") for m in members],  # as XCom renders them
                             resource_group_name="rg", vault_name="v")
    ti = FakeTi()

    group = sensor.done({"ti": ti}, JOB)

    assert sensor.until_group == "2" and sensor.cancel_on_kill  # stopping the drill cancels the plan's job
    assert [m.vm for m in group] == ["APP-ERP-02", "APP-ERP-01"]
    assert ti.pushed == {"job": JOB}  # the verification reads the test VMs' names from it
