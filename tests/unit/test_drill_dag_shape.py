"""The plan drill's shape: one chain in the order the plan's job runs, each group verified as soon as it is up.

The plan drill tests in tests/dags would pass just as well if every verification waited for the
whole job to end (the lab's groups boot in moments); this test holds the wiring that makes a group's
members be verified while later groups boot.
"""

from __future__ import annotations

from pathlib import Path

DAGS = Path(__file__).resolve().parents[2] / "dags"
PORTAL = "drill_plan_order_portal"


def test_a_plans_waits_and_pauses_chain_in_job_order_and_each_group_is_verified_off_its_own_wait():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "asr_test_failover_drill.py"))
    assert bag.import_errors == {}
    dag = bag.dags["asr_test_failover_drill__lab"]

    # Every task of the plan reads the start task's XCom (the job), so it is upstream of all: leave it out.
    links = {t.task_id.removeprefix(f"{PORTAL}."): {u.removeprefix(f"{PORTAL}.") for u in t.upstream_task_ids}
             - {"test_failover"} for t in dag.tasks if t.task_id.startswith(f"{PORTAL}.")
             and t.task_id.split(".")[1].startswith(("wait_", "check_", "manual_"))}
    chain, at = ["test_failover"], set()
    while nexts := [task for task, after in links.items() if after == at]:
        assert len(nexts) == 1, (chain, nexts)
        chain.append(nexts[0])
        at = {nexts[0]}
    # lab.yaml: group 1, its post check (its script is ASR's), group 2's pre manual action, group 2, group 3
    assert chain == ["test_failover", "wait_group_1", "wait_for_erp_database_answers", "check_erp_database_answers",
                     "wait_for_confirm_licence_server", "manual_confirm_licence_server", "wait_group_2",
                     "wait_group_3", "wait_test_failover"]
    for group in (1, 2, 3):
        verify = dag.get_task(f"{PORTAL}.verify_group_{group}")
        assert verify.upstream_task_ids == {f"{PORTAL}.wait_group_{group}"}  # not the job's end
        assert dag.get_task(f"{PORTAL}.wait_group_{group}").until_group == str(group)
    assert {f"{PORTAL}.verify_group_{g}" for g in (1, 2, 3)} <= dag.get_task("start_cleanup").upstream_task_ids


def _drill_dag_of(cleanup_when: str):
    """The lab site's drill DAG as built with ``drill.cleanup_when`` set to ``cleanup_when``."""
    import importlib.util

    from site_recovery.site import default_sites_dir, load_site

    spec = importlib.util.spec_from_file_location("asr_drill_dag_shape", DAGS / "asr_test_failover_drill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    site = load_site(default_sites_dir() / "lab.yaml")
    return module.build(site.model_copy(update={"drill": site.drill.model_copy(update={"cleanup_when": cleanup_when})}))


def test_with_vm_verified_each_vm_is_cleaned_up_off_its_own_verification_and_the_teardown_follows():
    dag = _drill_dag_of("vm_verified")
    dag.validate()  # a setup's direct downstream tasks must need all upstream tasks to succeed
    cleanup = dag.get_task("drill_vm.clean_up_test_vm")
    # It finds its VM by map index, so it is not downstream of the gate (the teardown's setup) itself.
    assert cleanup.upstream_task_ids == {"drill_vm.verify_test_vm"}
    assert cleanup.trigger_rule == "all_done" and cleanup.get_closest_mapped_task_group().group_id == "drill_vm"
    assert dag.get_task("drill_vm.wait_test_vm_cleanup").upstream_task_ids - {"readiness_gate"} == {
        "drill_vm.clean_up_test_vm"}
    assert "drill_vm.wait_test_vm_cleanup" in dag.get_task("start_cleanup").upstream_task_ids
    assert dag.get_task("start_cleanup").is_teardown


def test_by_default_every_test_vm_stays_up_until_the_teardown():
    dag = _drill_dag_of("all_verified")
    dag.validate()
    assert not [t for t in dag.task_ids if "clean_up_test_vm" in t or "wait_test_vm_cleanup" in t]
    assert "drill_vm.verify_test_vm" in dag.get_task("start_cleanup").upstream_task_ids
