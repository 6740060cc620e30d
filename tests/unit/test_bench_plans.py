"""The plan-drill bench's plans: valid site-file plans that split the 200 protectable VMs in two."""

from __future__ import annotations

import yaml

from bench.estate_200 import build_estate, build_site, is_protectable
from bench.plan_drill import bench_plans, critical_path
from site_recovery.site import load_site


def test_the_bench_plans_hold_every_protectable_vm_once_within_asrs_limits(tmp_path):
    primary = next(s for s in build_estate(200)["sites"] if s["role"] == "primary")
    protectable = [vm for vm in primary["vms"] if is_protectable(vm)]
    plans = bench_plans(protectable)
    path = tmp_path / "bench-plans.yaml"
    path.write_text(yaml.safe_dump(build_site("bench-plans", recovery_plans=plans), sort_keys=False))

    site = load_site(path)  # the product's own validation: 100 VMs and 7 groups per plan, a VM in one plan

    assert [len(plan.vms) for plan in site.recovery_plans] == [100, 100]
    assert sorted(vm for plan in site.recovery_plans for vm in plan.vms) == sorted(vm["name"] for vm in protectable)
    first = site.recovery_plans[0].groups[0].vms
    assert first and all(vm.startswith(("SQL", "FS")) for vm in first)  # databases and file servers boot first


def test_the_critical_path_is_the_longest_failover_plus_the_longest_cleanup_or_the_longest_vm():
    jobs = [{"scenario": "TestFailover", "start": 0, "end": 360, "vm": "a"},
            {"scenario": "TestFailover", "start": 5, "end": 300, "vm": "b"},
            {"scenario": "TestFailoverCleanup", "start": 400, "end": 450, "vm": "a"},
            {"scenario": "TestFailoverCleanup", "start": 420, "end": 476, "vm": "b"}]
    # Every cleanup after the slowest VM: 360 + 56. Each VM cleaned up once verified: a's 360 + 50.
    assert critical_path(jobs) == {"test_failover_s": 360, "cleanup_s": 56, "after_all_s": 416, "per_vm_s": 410,
                                   "seconds": 416}
    assert critical_path(jobs, per_vm=True)["seconds"] == 410
