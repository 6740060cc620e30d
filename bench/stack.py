"""The lab and a real Airflow (``airflow standalone``: scheduler, dag-processor, triggerer, api-server,
LocalExecutor, SQLite) in a temporary folder, driven through Airflow's REST API.

Shared by the benchmarks (bench/enable_replication.py, bench/drill.py) and the live tests
(tests/live/): what ``dag.test`` cannot show (triggers in the triggerer, a user acting on a
deferred task, worker slots) needs the real processes.

    with Stack(workdir, estate=None, include=REPO / "include", time_scale=0) as stack:
        run_id = stack.api.trigger_when_parsed("asr_deploy__lab")
        stack.api.wait("asr_deploy__lab", run_id, timeout=300)

Every process runs in its own process group; leaving the ``with`` block stops each group
(SIGTERM, then SIGKILL) and waits until no member is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AZURE_CONN_ID = "azure_asr_lab"


# ------------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_process_groups(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM each process group (last started first), wait until every member is gone, then SIGKILL.

    Waiting for the group, not just its leader: ``airflow standalone`` can exit before its
    api-server child has finished shutting down.
    """
    for proc in reversed(procs):
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            proc.poll()  # reap the leader so that it does not linger as a zombie
            time.sleep(0.2)
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class Stack:
    """The lab and ``airflow standalone`` in their own process groups, stopped together.

    :param workdir: Everything goes here: ``lab/`` (the lab's state), ``airflow/`` (AIRFLOW_HOME),
        ``lab.log``, ``airflow.log``.
    :param estate: The lab's estate file; None: the lab's default estate.
    :param include: The folder the DAGs read site files and scripts from (``SITE_RECOVERY_INCLUDE_DIR``).
    :param time_scale: The lab's starting time scale.
    :param extra_env: More environment for Airflow (``AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER``...).
    :param sqlite_wal: Put the metadata DB in WAL mode and let each connection wait up to
        ``sqlite_busy_timeout`` seconds for a lock. With the default (rollback journal, 5 s), a
        few hundred mapped task instances at once on two busy cores make the scheduler, triggerer
        and dag-processor die of ``database is locked``.
    """

    def __init__(self, workdir: Path, estate: Path | None, include: Path, time_scale: float,
                 extra_env: dict[str, str] | None = None, sqlite_wal: bool = False,
                 sqlite_busy_timeout: float = 60) -> None:
        self.workdir, self.estate, self.include, self.time_scale = workdir, estate, include, time_scale
        self.extra_env = dict(extra_env or {})
        self.sqlite_wal, self.sqlite_busy_timeout = sqlite_wal, sqlite_busy_timeout
        self.procs: list[subprocess.Popen] = []
        self.port = free_port()
        self.airflow_home = workdir / "airflow"
        self.lab = None
        self.api: AirflowApi | None = None

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from asr_lab.client import LabClient

        bin_dir = Path(sys.executable).parent
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        lab_dir = self.workdir / "lab"
        estate = ["--estate", str(self.estate)] if self.estate else []
        self.procs.append(subprocess.Popen(
            [str(bin_dir / "asr-lab"), "serve", "--state-dir", str(lab_dir), *estate,
             "--time-scale", str(self.time_scale), "--log-level", "warning"],
            stdout=open(self.workdir / "lab.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True))
        self.lab = LabClient.from_state_dir(lab_dir, wait_seconds=60)
        deadline = time.monotonic() + 60
        while not self.lab.health():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the lab did not answer; see {self.workdir / 'lab.log'}")
            time.sleep(0.2)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SITE_RECOVERY"))}
        env.update({
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),  # just .airflowignore; site_recovery is installed
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "azure=warning urllib3=error pypsrp=warning",
            "SITE_RECOVERY_INCLUDE_DIR": str(self.include),
            "SITE_RECOVERY_STATE_DIR": str(self.workdir / "site-recovery-state"),
            **{f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
               for conn_id, conn in self.lab.airflow_connections(AZURE_CONN_ID).items()},
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            **self.extra_env,
        })
        if self.sqlite_wal:
            with sqlite3.connect(self.db) as conn:  # WAL mode is a property of the file: set before migrating
                conn.execute("PRAGMA journal_mode=WAL")
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{self.db}?timeout={self.sqlite_busy_timeout:g}"
        self.procs.append(subprocess.Popen(
            [str(bin_dir / "airflow"), "standalone"], env=env, cwd=self.workdir,
            stdout=open(self.workdir / "airflow.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True))
        self.api = AirflowApi.connect(f"http://127.0.0.1:{self.port}", self.airflow_home, self.procs[-1],
                                      self.workdir / "airflow.log")

    def stop(self) -> None:
        stop_process_groups(self.procs)

    def __exit__(self, *exc) -> None:
        self.stop()

    def stray_processes(self) -> list[int]:
        """Pids still alive that belong to this stack (empty once stopped): members of its process
        groups, and any process whose command line or environment names its folder (a task
        process that left the group would still carry AIRFLOW_HOME)."""
        found = {pid for proc in self.procs for pid in group_members(proc.pid)}
        marker = str(self.workdir).rstrip("/").encode() + b"/"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes() or marker in (entry / "environ").read_bytes():
                    if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                        found.add(int(entry.name))
            except OSError:
                continue
        return sorted(found)

    @property
    def db(self) -> Path:
        return self.airflow_home / "airflow.db"

    def run_dag(self, dag_id: str, conf: dict | None = None, timeout: float = 600) -> tuple[str, str, float]:
        """Trigger ``dag_id`` once it is parsed and wait for it to end; (run id, state, seconds)."""
        started = time.monotonic()
        run_id = self.api.trigger_when_parsed(dag_id, conf)
        state = self.api.wait(dag_id, run_id, timeout=timeout)
        return run_id, state, time.monotonic() - started


class AirflowApi:
    """Just enough of Airflow's REST API (``/api/v2``) to trigger runs, wait for them and act on tasks."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self._token = base_url, token

    @classmethod
    def connect(cls, base_url: str, airflow_home: Path, proc: subprocess.Popen, log: Path,
                timeout: float = 300) -> AirflowApi:
        deadline = time.monotonic() + timeout
        passwords = airflow_home / "simple_auth_manager_passwords.json.generated"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Airflow did not come up within {timeout:.0f}s; see {log}")
            try:
                with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=2) as response:
                    if response.status == 200 and passwords.exists():
                        break
            except OSError:
                pass
            time.sleep(1)
        return cls.login(base_url, "admin", json.loads(passwords.read_text())["admin"])

    @classmethod
    def login(cls, base_url: str, username: str, password: str) -> AirflowApi:
        """An API client holding a token for ``username`` (the password itself is not kept)."""
        api = cls(base_url, "")
        api._token = api._call("POST", "/auth/token", {"username": username, "password": password},
                               auth=False)["access_token"]
        return api

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True, tries: int = 5) -> dict:
        """One API call; a GET that meets a 5xx or a dropped connection (SQLite busy under load) is
        tried again, up to ``tries`` times."""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(1, tries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.load(response)
            except urllib.error.HTTPError as exc:
                if method != "GET" or exc.code < 500 or attempt == tries:
                    raise
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if method != "GET" or attempt == tries:
                    raise
            time.sleep(attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _run_path(dag_id: str, run_id: str) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def trigger_when_parsed(self, dag_id: str, conf: dict | None = None, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", f"/api/v2/dags/{dag_id}")
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise RuntimeError(f"{dag_id} is not available in Airflow: {exc}") from None
                time.sleep(1)
        return self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                          {"logical_date": None, "conf": conf or {}})["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", self._run_path(dag_id, run_id))

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.dag_run(dag_id, run_id)["state"]

    def wait(self, dag_id: str, run_id: str, timeout: float, interval: float = 1) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s")
            time.sleep(interval)
        return state

    def task_instances(self, dag_id: str, run_id: str, page: int = 100) -> list[dict]:
        """Every task instance of a run, mapped ones included (one per map index), page by page."""
        out: list[dict] = []
        while True:
            answer = self._call("GET", f"{self._run_path(dag_id, run_id)}/taskInstances?limit={page}"
                                       f"&offset={len(out)}&order_by=id")
            out += answer["task_instances"]
            if not answer["task_instances"] or len(out) >= answer["total_entries"]:
                return out

    def set_task_instance_state(self, dag_id: str, run_id: str, task_id: str, map_index: int,
                                new_state: str) -> dict:
        """What the UI's "Mark as failed/success" sends for one task instance (no upstream, downstream,
        past or future): ``PATCH .../taskInstances/{task_id}/{map_index}``."""
        return self._call("PATCH", f"{self._run_path(dag_id, run_id)}/taskInstances/{task_id}/{map_index}",
                          {"new_state": new_state, "note": None, "include_upstream": False,
                           "include_downstream": False, "include_future": False, "include_past": False})


# ------------------------------------------------------------------------------------ run facts
def ts(value: str | None) -> float | None:
    """Epoch seconds of an ISO 8601 timestamp (Airflow's, ASR's with a trailing Z), or None."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def task_instances(db: Path, dag_id: str, run_id: str) -> list[dict]:
    """The run's task instances straight from the metadata DB (read-only), plus a ``__run__`` row."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT task_id, map_index, rendered_map_index, state, start_date, end_date, try_number "
            "FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)).fetchall()
        run = conn.execute("SELECT start_date, end_date, state FROM dag_run WHERE dag_id = ? AND run_id = ?",
                           (dag_id, run_id)).fetchone()
    finally:
        conn.close()
    tis = [{"task_id": t, "map_index": m, "vm": r, "state": s, "start": ts(a), "end": ts(b), "try": n}
           for t, m, r, s, a, b, n in rows]
    return tis + [{"task_id": "__run__", "start": ts(run[0]), "end": ts(run[1]), "state": run[2]}]


def task_durations(tis: list[dict], group: str = "") -> dict:
    """Mean and max seconds per task (start to end of the last try, deferrals included)."""
    out: dict[str, dict] = {}
    for task_id in sorted({t["task_id"] for t in tis if t["task_id"] != "__run__"}):
        spans = [t["end"] - t["start"] for t in tis if t["task_id"] == task_id and t["start"] and t["end"]]
        states = Counter(t["state"] for t in tis if t["task_id"] == task_id)
        if spans:
            out[task_id.removeprefix(group)] = {"count": len(spans), "mean_s": round(sum(spans) / len(spans), 2),
                                                "max_s": round(max(spans), 2), "states": dict(states)}
    return out


def request_kind(entry: dict) -> str:
    """A lab request log entry as a short label: ``GET job``, ``PUT enable``, ``POST testFailover``..."""
    path = entry["path"].lower()
    if entry["service"] != "arm":
        return "token"
    if entry["method"] != "GET":
        if entry["method"] == "POST":
            return f"POST {entry['path'].rstrip('/').rsplit('/', 1)[-1]}"
        return f"{entry['method']} {'enable' if '/replicationprotecteditems/' in path else 'other'}"
    if "/replicationjobs/" in path:
        return "GET job"
    if path.endswith("/replicationjobs"):
        return "GET job list"
    if "/replicationprotecteditems/" in path:
        return "GET protected item"
    if path.endswith("/replicationprotecteditems"):
        return "GET protected item list"
    if "/replicationprotectableitems" in path:
        return "GET protectable item list"
    # Anything else by its ARM resource type: ".../providers/NS/type/name/type2" -> "GET type2 list"
    segments = entry["path"].split("?")[0].strip("/").split("/")
    if "providers" in segments:
        typed = segments[segments.index("providers") + 2:]
        if typed:
            return f"GET {typed[-1]} list" if len(typed) % 2 else f"GET {typed[-2]}"
    return "GET other"


def request_figures(requests: list[dict], vms: int) -> dict:
    """ARM requests in the lab's request log: total, mutating, reads, per VM and by kind."""
    arm = [r for r in requests if r["service"] == "arm"]
    reads = [r for r in arm if r["method"] == "GET"]
    mutating = [r for r in arm if r["mutating"]]
    by_kind = Counter(request_kind(r) for r in requests)
    return {
        "vms": vms, "arm_requests": len(arm), "mutating": len(mutating), "reads": len(reads),
        "token_requests": by_kind.pop("token", 0),
        "per_vm": {"arm_requests": round(len(arm) / vms, 2), "mutating": round(len(mutating) / vms, 2),
                   "reads": round(len(reads) / vms, 2)},
        "by_kind": dict(by_kind.most_common()),
    }
