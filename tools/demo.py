"""`make demo`: the lab plus a local Airflow pointed at it, deploying the lab site, until Ctrl-C.

Starts the lab (time scale from DEMO_TIME_SCALE, default 0.02 so a job of minutes takes
seconds), then ``airflow standalone`` (SQLite, LocalExecutor, triggerer included) with the
lab handed over as ordinary Airflow connections, prints where the UI is and how to log in,
triggers the deployment DAG of include/sites/lab.yaml and says where to watch it and how it
ended. On Ctrl-C it stops both process groups so nothing is left running.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO / ".demo"
LAB_CONN_ID = "azure_asr_lab"
DEPLOY_DAG = "asr_deploy__lab"
UI_PORT = int(os.environ.get("DEMO_UI_PORT", "8080"))
TIME_SCALE = os.environ.get("DEMO_TIME_SCALE", "0.02")
AIRFLOW_START_TIMEOUT = 240


def main() -> int:
    from asr_lab.client import LabClient

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    (DEMO_DIR / "airflow").mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    procs: list[subprocess.Popen] = []

    def stop(*_):
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

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
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(UI_PORT),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{UI_PORT}/execution/",
            "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "azure=warning urllib3=error pypsrp=warning",
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
        password = _admin_password(DEMO_DIR / "airflow")
        print(f"Airflow UI: http://localhost:{UI_PORT}  login: admin / {password}")
        print(f"The lab is the Airflow connection '{LAB_CONN_ID}'; its Windows servers are the psrp "
              f"connections winrm_<host>. Press Ctrl-C to stop everything.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        api = AirflowApi(f"http://localhost:{UI_PORT}", "admin", password)
        deployment = api.trigger_when_parsed(DEPLOY_DAG)
        print(f"Deploying the lab site (steps 1-8): watch it at "
              f"http://localhost:{UI_PORT}/dags/{DEPLOY_DAG}/runs/{urllib.parse.quote(deployment)}", flush=True)
        while all(p.poll() is None for p in procs):
            if deployment and (state := api.run_state(DEPLOY_DAG, deployment)) in ("success", "failed"):
                print(f"{DEPLOY_DAG} finished: {state}. Task logs: "
                      f"http://localhost:{UI_PORT}/dags/{DEPLOY_DAG}/runs/{urllib.parse.quote(deployment)}", flush=True)
                deployment = None
            time.sleep(2)
        dead = [p.args[0] for p in procs if p.poll() is not None]
        print(f"stopped unexpectedly: {dead}; see the logs in {DEMO_DIR}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping the lab and Airflow ...")
        return 0
    finally:
        stop()


class AirflowApi:
    """Just enough of Airflow's REST API to trigger the demo's runs and follow them."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self._token = self._call("POST", "/auth/token", {"username": username, "password": password},
                                 auth=False)["access_token"]

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def trigger_when_parsed(self, dag_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", f"/api/v2/dags/{dag_id}")
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise SystemExit(f"{dag_id} is not available in Airflow ({exc}); see {DEMO_DIR / 'airflow.log'}")
                time.sleep(2)
        return self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")["state"]


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
