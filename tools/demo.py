"""`make demo`: the lab plus a local Airflow pointed at it, running the lab site's DAGs, until Ctrl-C.

Starts the lab, then ``airflow standalone`` (SQLite, LocalExecutor, triggerer included) with
the lab handed over as ordinary Airflow connections, prints where the UI is and how to log in,
then runs the stages in ``STAGES`` in order: each triggers one DAG of include/sites/lab.yaml,
follows its run to the end and says how it ended and where to read its report; the first
stage that does not succeed stops the sequence with a message naming it and its failed tasks.
Airflow stays up afterwards for browsing. On Ctrl-C it stops both process groups (every
process in them) so nothing is left running.

Lab time: a stage may set the lab's time scale before it starts (realistic durations times the
scale). The deployment runs at DEMO_TIME_SCALE (default 0.02: a job of minutes takes seconds);
enabling replication at DEMO_ENABLE_TIME_SCALE (default 0.005), because initial replication is
realistic too (120 s + 8 s per GB: 10 minutes for the 60 GB print server, nearly 5 hours for
the 2 TB CAD vault) and the site allows four at once: at 0.005 the lab's eight VMs take about
two and a half minutes (at 0.02, about eight). The drill runs at DEMO_DRILL_TIME_SCALE
(default 0.02) and ends the demo with the path of its HTML report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench.stack: the process-group handling the benchmarks use too

from bench.stack import AirflowApi as StackApi, stop_process_groups  # noqa: E402
DEMO_DIR = REPO / ".demo"
LAB_CONN_ID = "azure_asr_lab"
UI_PORT = int(os.environ.get("DEMO_UI_PORT", "8080"))
UI = f"http://localhost:{UI_PORT}"
TIME_SCALE = os.environ.get("DEMO_TIME_SCALE", "0.02")
ENABLE_TIME_SCALE = os.environ.get("DEMO_ENABLE_TIME_SCALE", "0.005")
DRILL_TIME_SCALE = os.environ.get("DEMO_DRILL_TIME_SCALE", "0.02")
AIRFLOW_START_TIMEOUT = 240
STARTED = time.monotonic()


@dataclass(frozen=True)
class Stage:
    """One DAG run of the demo: trigger ``dag_id`` with ``conf``, follow it to the end."""

    dag_id: str
    title: str
    conf: dict = field(default_factory=dict)
    #: lab time scale set before the stage starts (None: leave it as it is)
    time_scale: float | None = None
    #: the task whose log is the stage's report
    report_task: str | None = None


#: Run in order; the first stage that does not succeed stops the sequence.
STAGES = [
    Stage("asr_deploy__lab", "Deploy the lab site (steps 1-8)", time_scale=float(TIME_SCALE),
          report_task="summary"),
    Stage("asr_enable_replication__lab", "Enable replication of the VMs in scope (step 9)",
          time_scale=float(ENABLE_TIME_SCALE), report_task="report_protection"),
    # Unattended, as the Saturday drill runs: the order-portal plan's manual action is confirmed by the
    # drill itself (the site file says auto_confirm), so the demo needs nobody at the keyboard.
    Stage("asr_test_failover_drill__lab", "DR drill: test failover of VMs and recovery plans, verify, clean up, "
          "report (step 10)", conf={"unattended": True}, time_scale=float(DRILL_TIME_SCALE),
          report_task="drill_report"),
]


def main() -> int:
    from asr_lab.client import LabClient

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    (DEMO_DIR / "airflow").mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    procs: list[subprocess.Popen] = []

    def stop(*_):
        stop_process_groups(procs)

    try:
        lab_log = open(DEMO_DIR / "lab.log", "wb")
        procs.append(subprocess.Popen(
            [str(bin_dir / "asr-lab"), "serve", "--state-dir", str(DEMO_DIR / "lab"), "--time-scale", TIME_SCALE],
            stdout=lab_log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        lab = LabClient.from_state_dir(DEMO_DIR / "lab", wait_seconds=60)
        print(f"lab ready: ARM at {lab['arm_url']} (time scale {TIME_SCALE}); log in {DEMO_DIR / 'lab.log'}")

        env = os.environ.copy()
        env.update({
            "AIRFLOW_HOME": str(DEMO_DIR / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),  # just .airflowignore; site_recovery is installed
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(UI_PORT),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{UI_PORT}/execution/",
            "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "azure=warning urllib3=error pypsrp=warning",
            # the plan's list of in-scope VMs (the trigger form's suggestions) stays in .demo too
            "SITE_RECOVERY_STATE_DIR": str(DEMO_DIR / "site-recovery-state"),
            "AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER": str(DEMO_DIR / "drill-reports"),
            **{f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
               for conn_id, conn in lab.airflow_connections(LAB_CONN_ID).items()},
            "PATH": f"{bin_dir}:{env.get('PATH', '')}",
        })
        airflow_log = open(DEMO_DIR / "airflow.log", "wb")
        procs.append(subprocess.Popen(
            [str(bin_dir / "airflow"), "standalone"], env=env, cwd=REPO,
            stdout=airflow_log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        print(f"starting Airflow (log in {DEMO_DIR / 'airflow.log'}) ...", flush=True)
        _wait_for_airflow(procs[-1])
        print(f"Airflow answers, {time.monotonic() - STARTED:.0f} s after the demo started.", flush=True)
        password = _admin_password(DEMO_DIR / "airflow")
        print(f"Airflow UI: {UI}  login: admin / {password}")
        print(f"The lab is the Airflow connection '{LAB_CONN_ID}'; its Windows servers are the psrp "
              f"connections winrm_<host>. Press Ctrl-C to stop everything.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        api = AirflowApi.login(UI, "admin", password)
        run_stages(api, lab, procs)
        while all(p.poll() is None for p in procs):
            time.sleep(2)
        dead = [p.args[0] for p in procs if p.poll() is not None]
        print(f"stopped unexpectedly: {dead}; see the logs in {DEMO_DIR}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping the lab and Airflow ...", flush=True)
        return 0
    finally:
        stop()


def run_stages(api: AirflowApi, lab, procs: list[subprocess.Popen]) -> bool:
    """Run ``STAGES`` in order; stop at the first that does not succeed. True when all succeeded."""
    for number, stage in enumerate(STAGES, 1):
        where = f"stage {number}/{len(STAGES)}"
        if stage.time_scale is not None and stage.time_scale != lab.time_scale():
            lab.set_time_scale(stage.time_scale)
            print(f"lab time scale now {stage.time_scale} for {stage.dag_id}", flush=True)
        asked = time.monotonic()
        try:
            run_id = api.trigger_when_parsed(stage.dag_id, stage.conf)
        except (RuntimeError, OSError) as exc:
            print(f"{where} {stage.dag_id} could not start: {exc} (see {DEMO_DIR / 'airflow.log'}). Stopping "
                  "here; Airflow keeps running (Ctrl-C to stop).", file=sys.stderr, flush=True)
            return False
        started = time.monotonic()
        parsing = f" (after {started - asked:.0f} s waiting for Airflow to parse it)" if started - asked > 5 else ""
        run_url = f"{UI}/dags/{stage.dag_id}/runs/{urllib.parse.quote(run_id)}"
        print(f"[{where}] {stage.title}: {stage.dag_id} triggered{parsing}; watch it at {run_url}", flush=True)
        state = None
        while state not in ("success", "failed"):
            if any(p.poll() is not None for p in procs):
                return False  # the caller reports which process stopped
            time.sleep(2)
            try:
                state = api.run_state(stage.dag_id, run_id)
            except OSError as exc:  # a busy api-server: ask again
                print(f"  (could not read the run's state: {exc})", file=sys.stderr, flush=True)
        took = time.monotonic() - started
        print(f"[{where}] {stage.dag_id} finished: {state} in {_minutes(took)}.", flush=True)
        if stage.report_task:
            print(f"  Report: the log of task {stage.report_task}, {run_url}/tasks/{stage.report_task}", flush=True)
        outcome = api.outcome(stage.dag_id, run_id, stage.report_task)
        if outcome:
            print(f"  {outcome}", flush=True)
        if state != "success":
            failed = api.failed_tasks(stage.dag_id, run_id)
            listed = ", ".join(failed) if failed else "see the run's grid"
            later = ", ".join(s.dag_id for s in STAGES[number:])
            print(f"{where} {stage.dag_id} FAILED (failed tasks: {listed}); task logs at {run_url}. "
                  + (f"Not running the later stages ({later}). " if later else "")
                  + "Airflow keeps running for a look (Ctrl-C to stop).", file=sys.stderr, flush=True)
            return False
    total = time.monotonic() - STARTED
    print(f"All {len(STAGES)} stages succeeded, {_minutes(total)} after the demo started. "
          f"Airflow keeps running: {UI} (Ctrl-C to stop).", flush=True)
    return True


def _minutes(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


class AirflowApi(StackApi):
    """The benchmarks' REST client, plus what the demo prints about a finished run."""

    def failed_tasks(self, dag_id: str, run_id: str) -> list[str]:
        """``task_id[VM]`` of every failed or upstream-failed task instance of the run."""
        try:
            found = self._call("GET", f"{self._run_path(dag_id, run_id)}/taskInstances"
                                      "?state=failed&state=upstream_failed&limit=100")["task_instances"]
        except OSError:
            return []
        return [ti["task_id"] + (f"[{ti.get('rendered_map_index') or ti['map_index']}]" if ti["map_index"] >= 0 else "")
                + ("" if ti["state"] == "failed" else " (upstream failed)") for ti in found]

    def outcome(self, dag_id: str, run_id: str, report_task: str | None) -> str | None:
        """One line from the report task's return value (the enable report's rows, the drill's verdict)."""
        if not report_task:
            return None
        try:
            entry = self._call("GET", f"{self._run_path(dag_id, run_id)}/taskInstances/"
                                      f"{report_task}/xcomEntries/return_value")
        except OSError:
            return None
        rows = entry.get("value")
        if isinstance(rows, str):
            try:
                rows = json.loads(rows)
            except ValueError:
                return None
        rows = _unwrap(rows)
        if isinstance(rows, dict) and "verdict" in rows:  # the drill report
            reasons = "; ".join(rows.get("reasons") or [])
            return (f"Drill verdict {rows['verdict']}" + (f" ({reasons})" if reasons else "")
                    + f". Report: {rows.get('html')} (JSON beside it: {rows.get('json')})")
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "result" in r for r in rows):
            return None
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["result"]] = counts.get(row["result"], 0) + 1
        attention = [r["vm"] for r in rows if r.get("to_fix")]
        return (f"{len(rows)} VM(s) in scope: " + ", ".join(f"{n} {result}" for result, n in counts.items())
                + (f"; needing attention: {', '.join(attention)}" if attention else "") + ".")



def _unwrap(value):
    """A record as the REST API returns XCom, in Airflow serde's form, back to its JSON fields."""
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    if isinstance(value, dict) and "__classname__" in value:
        return _unwrap(value.get("__data__"))
    return value


def _wait_for_airflow(proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + AIRFLOW_START_TIMEOUT
    url = f"http://localhost:{UI_PORT}/api/v2/monitor/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"airflow standalone exited with {proc.returncode}; see {DEMO_DIR / 'airflow.log'}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"Airflow did not answer on {url} within {AIRFLOW_START_TIMEOUT}s")


def _admin_password(airflow_home: Path) -> str:
    path = airflow_home / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        return json.loads(path.read_text()).get("admin", "(see the file)")
    except (OSError, ValueError):
        return f"(see {path})"


if __name__ == "__main__":
    sys.exit(main())
