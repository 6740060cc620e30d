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


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    """``check()``'s first truthy answer, asked every ``interval`` seconds; AssertionError naming ``what``
    after ``timeout`` seconds. Used by the stacks and their tests alike."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


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

    def admin_password(self) -> str:
        """The password Airflow's simple auth manager generated for ``admin``."""
        return json.loads((self.airflow_home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]

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


# ------------------------------------------------------------------------------ the distributed stack
#: PostgreSQL and Redis as this kind of machine runs them (and as the README asks for them elsewhere).
POSTGRES = {"host": "127.0.0.1", "port": 5432, "admin": "postgres"}
REDIS = {"host": "127.0.0.1", "port": 6379}
#: The project's own role in PostgreSQL (trust auth on 127.0.0.1: no password).
DB_ROLE = "asr_dr"
#: The reports' container in the stack's Blob store, and the Airflow connection that reaches it.
REPORTS_CONTAINER, REPORTS_CONN_ID = "drill-reports", "asr_reports"
#: The Azurite storage account of a stack (its key is made up at each start and kept in the
#: connections file only).
AZURITE_ACCOUNT = "asrdrreports"
AZURITE_BIN = REPO / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
#: The hostname callable every process of the stack uses: a Celery worker or triggerer is told
#: its host name by the stack (``ASR_STACK_HOSTNAME``), as each container has its own.
HOSTNAME_MODULE = '''"""Written by bench/stack.py: each process of the stack runs as the host the stack names."""
import os


def hostname() -> str:
    return os.environ["ASR_STACK_HOSTNAME"]
'''


class Azurite:
    """Azurite's Blob service for one stack or test: its own account, its made-up key, its data in ``location``.

    ``command`` and ``env`` start it (the key travels in the environment, as Azurite reads it);
    :meth:`connection` is the Airflow ``wasb`` connection that reaches it (a connection string).
    """

    def __init__(self, location: Path, port: int) -> None:
        import base64

        self.location, self.port = location, port
        self.key = base64.b64encode(os.urandom(64)).decode()
        location.mkdir(parents=True, exist_ok=True)
        self.command = [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
                        str(location), "--silent", "--skipApiVersionCheck", "--loose"]
        self.env = {"AZURITE_ACCOUNTS": f"{AZURITE_ACCOUNT}:{self.key}"}

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={self.key};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")

    def connection(self) -> dict:
        return {"conn_type": "wasb", "extra": {"connection_string": self.connection_string}}


class StackUnavailable(RuntimeError):
    """Something the distributed stack needs on this machine is missing; the message says what."""


def check_services() -> None:
    """Fail naming exactly what is missing: PostgreSQL with trust auth, Redis, Node.js and Azurite."""
    import psycopg2
    import redis

    missing = []
    try:
        psycopg2.connect(host=POSTGRES["host"], port=POSTGRES["port"], user=POSTGRES["admin"], dbname="postgres",
                         connect_timeout=5).close()
    except psycopg2.Error as exc:
        missing.append(f"PostgreSQL on {POSTGRES['host']}:{POSTGRES['port']} accepting the role "
                       f"{POSTGRES['admin']!r} without a password (trust auth) ({str(exc).strip()})")
    try:
        redis.Redis(**REDIS, socket_timeout=5).ping()
    except redis.RedisError as exc:
        missing.append(f"Redis on {REDIS['host']}:{REDIS['port']} ({exc})")
    if not AZURITE_BIN.exists():
        missing.append(f"Azurite ({AZURITE_BIN}; `make stack` installs it with npm from tools/azurite)")
    if missing:
        raise StackUnavailable("The distributed stack needs: " + "; ".join(missing))


def prepare_database(name: str, fresh: bool) -> str:
    """Create the project's role and database ``name`` (dropped first when ``fresh``); return its URL."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(host=POSTGRES["host"], port=POSTGRES["port"], user=POSTGRES["admin"], dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DB_ROLE,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(DB_ROLE)))
            if fresh:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                          sql.Identifier(DB_ROLE)))
    finally:
        conn.close()
    return f"postgresql+psycopg2://{DB_ROLE}@{POSTGRES['host']}:{POSTGRES['port']}/{name}"


def drop_database(name: str) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(host=POSTGRES["host"], port=POSTGRES["port"], user=POSTGRES["admin"], dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


#: The stack's components as docker-compose.yaml names its services (tests/unit/test_compose.py).
COMPOSE_SERVICES = {"api-server": "airflow-apiserver", "scheduler": "airflow-scheduler",
                    "dag-processor": "airflow-dag-processor", "triggerer": "airflow-triggerer",
                    "worker": "airflow-worker", "lab": "asr-lab", "azurite": "azurite"}


class DistributedStack(Stack):
    """Airflow as docker-compose lays it out, as separate processes on this machine, plus the lab and Azurite.

    api-server, scheduler, dag-processor, ``triggerers`` triggerers and ``workers`` Celery workers
    (each its own host name: ``triggerer-1``, ``worker-1``...), CeleryExecutor with its broker in
    Redis database ``redis_db`` and the metadata in PostgreSQL database ``database`` (owned by the
    project's role ``asr_dr``), connections from a LocalFilesystemBackend file (the lab's and the
    reports store's; nothing secret in any process's environment), the drill reports in Azurite
    (``abfs://asr_reports@drill-reports/``). Every process in its own process group, stopped together.

    :param fresh: Start from an empty database and Redis database (tests); else keep them (``make stack``).
    :param drop_database_on_stop: Drop the database when the stack stops (tests).
    """

    def __init__(self, workdir: Path, estate: Path | None, include: Path, time_scale: float,
                 extra_env: dict[str, str] | None = None, *, database: str = "asr_dr_test", redis_db: int = 12,
                 workers: int = 2, triggerers: int = 2, worker_concurrency: int = 16, fresh: bool = True,
                 drop_database_on_stop: bool = True, port: int | None = None) -> None:
        super().__init__(workdir, estate, include, time_scale, extra_env=extra_env)
        self.database, self.redis_db, self.fresh = database, redis_db, fresh
        self.drop_database_on_stop = drop_database_on_stop
        self.workers, self.triggerers, self.worker_concurrency = workers, triggerers, worker_concurrency
        if port:
            self.port = port
        #: component name ("scheduler", "worker-1", ...) -> its process
        self.components: dict[str, subprocess.Popen] = {}
        #: component name -> the environment it was started with (a restart reuses it)
        self.component_env: dict[str, dict[str, str]] = {}
        self.env: dict[str, str] = {}
        self.azurite_port = free_port()
        self.reports_url = f"abfs://{REPORTS_CONN_ID}@{REPORTS_CONTAINER}/"
        self.lab_command: list[str] = []
        self.azurite: Azurite | None = None

    # ---------------------------------------------------------------- start
    def _start(self) -> None:
        from asr_lab.client import LabClient

        check_services()
        bin_dir = Path(sys.executable).parent
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        lab_dir = self.workdir / "lab"
        estate = ["--estate", str(self.estate)] if self.estate else []
        self.lab_command = [str(bin_dir / "asr-lab"), "serve", "--state-dir", str(lab_dir), *estate,
                            "--time-scale", str(self.time_scale), "--log-level", "warning"]
        self.start_component("lab", self.lab_command, env=dict(os.environ))
        self.lab = LabClient.from_state_dir(lab_dir, wait_seconds=60)
        self._wait_until(self.lab.health, "the lab", self.workdir / "lab.log")
        self._start_azurite()
        connections = self.lab.airflow_connections(AZURE_CONN_ID)
        connections[REPORTS_CONN_ID] = self.azurite.connection()
        connections_file = self.workdir / "connections.json"
        connections_file.touch(mode=0o600)
        connections_file.write_text(json.dumps(connections, indent=2))
        (self.workdir / "stack_hosts.py").write_text(HOSTNAME_MODULE)
        database_url = prepare_database(self.database, fresh=self.fresh)
        import redis

        if self.fresh:
            redis.Redis(**REDIS, db=self.redis_db).flushdb()
        self.env = self._airflow_env(bin_dir, database_url, connections_file)
        migrate = subprocess.run([str(bin_dir / "airflow"), "db", "migrate"],
                                 env={**self.env, "ASR_STACK_HOSTNAME": "init"},
                                 cwd=self.workdir, capture_output=True, text=True, timeout=600)
        (self.workdir / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
        if migrate.returncode:
            raise RuntimeError(f"airflow db migrate failed; see {self.workdir / 'db-migrate.log'}")
        airflow = str(bin_dir / "airflow")
        self.start_component("api-server", [airflow, "api-server", "--port", str(self.port), "--host", "127.0.0.1"])
        self.start_component("scheduler", [airflow, "scheduler"])
        self.start_component("dag-processor", [airflow, "dag-processor"])
        for n in range(1, self.triggerers + 1):
            self.start_component(f"triggerer-{n}", [airflow, "triggerer"],
                                 {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())})
        for n in range(1, self.workers + 1):
            self.start_component(f"worker-{n}", self.worker_command(n),
                                 {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())})
        self.api = AirflowApi.connect(f"http://127.0.0.1:{self.port}", self.airflow_home, self.components["api-server"],
                                      self.workdir / "api-server.log")

    def worker_command(self, n: int) -> list[str]:
        return [str(Path(sys.executable).parent / "airflow"), "celery", "worker", "--celery-hostname",
                f"worker-{n}@%h", "--concurrency", str(self.worker_concurrency)]

    def _airflow_env(self, bin_dir: Path, database_url: str, connections_file: Path) -> dict[str, str]:
        from cryptography.fernet import Fernet

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SITE_RECOVERY"))}
        env.update(stack_settings(database_url=database_url, broker_url=f"redis://{REDIS['host']}:{REDIS['port']}/"
                                  f"{self.redis_db}", connections_file=str(connections_file),
                                  reports_url=self.reports_url))
        env.update({
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(24).hex(),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "stack_hosts.hostname",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "PYTHONPATH": str(self.workdir),
            "SITE_RECOVERY_INCLUDE_DIR": str(self.include),
            "SITE_RECOVERY_STATE_DIR": str(self.workdir / "site-recovery-state"),
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            **self.extra_env,
        })
        return env

    def _start_azurite(self) -> str:
        """Start Azurite's Blob service with an account of its own; return the account key (never logged)."""
        azurite = Azurite(self.workdir / "azurite", self.azurite_port)
        self.start_component("azurite", azurite.command, env={**os.environ, **azurite.env})
        self._wait_until(lambda: _port_open(self.azurite_port), "Azurite", self.workdir / "azurite.log")
        self.azurite = azurite
        return azurite.key

    def start_component(self, name: str, command: list[str], extra_env: dict[str, str] | None = None,
                        env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start (or start again) one component in its own process group, logging to ``<name>.log``."""
        base = env if env is not None else {**self.env, "ASR_STACK_HOSTNAME": name}
        self.component_env[name] = {**base, **(extra_env or {})}
        proc = subprocess.Popen(command, env=self.component_env[name], cwd=self.workdir,
                                stdout=open(self.workdir / f"{name}.log", "ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.components[name] = proc
        self.procs.append(proc)
        return proc

    def kill_component(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process of the component's group (SIGKILL: as a host dying takes them all)."""
        proc = self.components[name]
        if _group_alive(proc.pid):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 60
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            proc.poll()
            time.sleep(0.2)
        proc.wait()

    def restart_component(self, name: str) -> None:
        """Stop a component (SIGTERM, as a service manager does; nothing to do if it is already gone) and
        start it again with the same command and environment, as a service's restart policy does."""
        proc = self.components[name]
        stop_process_groups([proc])
        self.start_component(name, list(proc.args), env=self.component_env[name])
        if name == "lab":
            self._wait_until(self.lab.health, "the lab", self.workdir / "lab.log")
        elif name == "azurite":
            self._wait_until(lambda: _port_open(self.azurite_port), "Azurite", self.workdir / "azurite.log")

    @staticmethod
    def _wait_until(check, what: str, log: Path, timeout: float = 60) -> None:
        """Wait for a component to come up; a check that raises (not listening yet) counts as not up."""
        def up() -> bool:
            try:
                return bool(check())
            except Exception:  # not up yet
                return False

        try:
            wait_for(what, up, timeout, interval=0.2)
        except AssertionError:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f}s; see {log}") from None

    def reports(self):
        """The stack's reports store, read from this process through the same connection the workers use."""
        from site_recovery.report_store import reports_root

        connections = json.loads((self.workdir / "connections.json").read_text())
        os.environ[f"AIRFLOW_CONN_{REPORTS_CONN_ID.upper()}"] = json.dumps(connections[REPORTS_CONN_ID])
        return reports_root(self.reports_url)

    def stop(self) -> None:
        stop_process_groups(self.procs)
        if self.drop_database_on_stop and self.env:
            drop_database(self.database)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stack_settings(*, database_url: str, broker_url: str, connections_file: str, reports_url: str) -> dict[str, str]:
    """The Airflow settings the distributed stack and docker-compose.yaml share (tests/unit/test_compose.py
    checks that the compose file says the same)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database_url.replace("postgresql+psycopg2", "postgresql", 1),
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": connections_file}),
        "AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER": reports_url,
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "azure=warning urllib3=error pypsrp=warning",
    }
