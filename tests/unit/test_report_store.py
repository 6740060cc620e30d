"""The reports store: a local folder by default, Azure Blob storage (Azurite here) through an ObjectStoragePath URL.

The Blob tests run against Azurite, Microsoft's own storage emulator (``make test`` installs it
from the npm registry), through the Azure provider's ``abfs`` filesystem and a ``wasb``
connection, as a deployment would.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from bench.stack import AZURITE_BIN, REPORTS_CONN_ID, Azurite, _port_open, free_port, stop_process_groups
from site_recovery.drill_report import load_history, write_report
from site_recovery.exceptions import ReportStoreUnavailable
from site_recovery.links import stored_report_url
from site_recovery.records import DrillReport
from site_recovery.recovery_report import write_recovery_report
from site_recovery.report_routes import parse_report_key, report_dag_ids
from site_recovery.report_store import describe, reports_root
from tests.unit.test_drill_report import make_report

START = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


def _reports(count: int, site: str = "lab") -> list[DrillReport]:
    return [make_report(site=site, run_id=f"scheduled__week{n}", started=START + timedelta(days=7 * n))
            for n in range(count)]


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    assert AZURITE_BIN.exists(), "Azurite is not installed: `make test` installs it (npm ci --prefix tools/azurite)"
    server = Azurite(tmp_path_factory.mktemp("azurite"), free_port())
    proc = subprocess.Popen(server.command, env={**os.environ, **server.env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while not _port_open(server.port):
        assert proc.poll() is None and time.monotonic() < deadline, "Azurite did not start"
        time.sleep(0.1)
    yield server
    stop_process_groups([proc])


#: A connection id of these tests' own: Airflow keeps one filesystem per protocol and connection id for
#: the life of the process, so an id another test module used (the stack's asr_reports) would reach its store.
CONN_ID = "asr_reports_unit_tests"


@pytest.fixture
def blob_store(azurite, monkeypatch, request):
    """``abfs://<conn>@<container>/``: a container of its own per test, reached through a wasb connection."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(azurite.connection()))
    container = f"t{abs(hash(request.node.name)) % 10**10}"
    root = reports_root(f"abfs://{CONN_ID}@{container}/")
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_a_plain_folder_is_a_local_store(tmp_path):
    root = reports_root(tmp_path / "reports")
    assert root.protocol == "file" and describe(root) == str(tmp_path / "reports")
    assert describe(reports_root(f"file://{tmp_path}/x")) == f"{tmp_path}/x"


def test_the_default_store_is_under_airflow_home(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert describe(reports_root()) == str(tmp_path / "drill-reports")


def test_an_unknown_scheme_names_the_store():
    with pytest.raises(ReportStoreUnavailable, match="nosuch://bucket/.*not a usable storage URL"):
        reports_root("nosuch://bucket/")


def test_reports_round_trip_through_blob_storage(blob_store):
    reports = _reports(3)
    written = [write_report(blob_store, report, []) for report in reports]
    assert written[0]["html"].startswith(f"abfs://{CONN_ID}@") and written[0]["html"].endswith(".html")
    history = load_history(blob_store, "lab", exclude_run_id="scheduled__week2")
    assert [h.run_id for h in history] == ["scheduled__week0", "scheduled__week1"]
    page = (blob_store / "lab" / written[2]["html"].rsplit("/", 1)[1]).read_text()
    assert "scheduled__week2" in page and "<svg" in page
    assert load_history(blob_store, "elsewhere") == []


def test_a_broken_report_in_the_store_is_skipped_not_fatal(blob_store, caplog):
    write_report(blob_store, _reports(1)[0], [])
    (blob_store / "lab" / "29990101T000000Z__broken.json").write_text("{not json")
    assert [h.run_id for h in load_history(blob_store, "lab")] == ["scheduled__week0"]
    assert "29990101T000000Z__broken.json" in caplog.text


def test_a_recovery_report_goes_to_the_sites_recovery_folder_apart_from_the_drill_trend(blob_store):
    from tests.ui.test_recovery_report_screenshot import report

    paths = write_recovery_report(blob_store, report())
    assert "/lab/recovery/" in paths["json"]
    assert load_history(blob_store, "lab") == []


@pytest.mark.slow  # the Azure SDK's own retries (about a minute) come first
def test_an_unreachable_store_fails_naming_the_store_and_not_its_key(azurite, monkeypatch):
    from azure.storage.blob._shared import policies_async

    # The Storage SDK's own retries, as they run, but seconds apart instead of 15 s, 18 s and 24 s (about
    # two minutes per request): what is checked is the message once they are spent, not their back-off.
    storage_retry = policies_async.ExponentialRetry.__init__

    def quick_retry(self, *args, retry_total: int = 3, retry_to_secondary: bool = False, **kwargs):
        kwargs.update(initial_backoff=0.1, increment_base=1, random_jitter_range=0)
        storage_retry(self, retry_total=retry_total, retry_to_secondary=retry_to_secondary, **kwargs)

    monkeypatch.setattr(policies_async.ExponentialRetry, "__init__", quick_retry)
    dead = Azurite(azurite.location, free_port())  # nobody listens there
    # a connection id of its own: Airflow keeps one filesystem per protocol and connection id
    monkeypatch.setenv("AIRFLOW_CONN_ASR_REPORTS_GONE", json.dumps(dead.connection()))
    root = reports_root("abfs://asr_reports_gone@drill-reports/")
    with pytest.raises(ReportStoreUnavailable) as raised:
        write_report(root, _reports(1)[0], [])
    message = str(raised.value)
    assert "abfs://asr_reports_gone@drill-reports" in message and "writing the drill report" in message
    assert dead.key not in message and "AccountKey" not in message


def test_the_report_link_is_the_plugin_route_of_the_report_key():
    root = f"abfs://{REPORTS_CONN_ID}@drill-reports/"
    html = f"abfs://{REPORTS_CONN_ID}@drill-reports/lab/20261201T020000Z__manual__x.html"
    assert stored_report_url(html, root=root, base_url="https://airflow.example/") == (
        "https://airflow.example/site-recovery/reports/lab/20261201T020000Z__manual__x.html")
    assert stored_report_url("/srv/reports/lab/recovery/a.html", root="/srv/reports") == (
        "/site-recovery/reports/lab/recovery/a.html")
    assert stored_report_url("/elsewhere/lab/a.html", root="/srv/reports") == ""


@pytest.mark.parametrize("key, served", [
    ("lab/20261201T020000Z__manual__x.html", True),
    ("lab/recovery/20261201T020000Z__manual__x.json", True),
    ("lab/../secrets.html", False),
    ("lab/x.txt", False),
    ("lab/other/x.html", False),
    ("/etc/passwd", False),
    ("lab/.x.html.tmp", False),
])
def test_the_route_serves_only_names_the_report_writers_produce(key, served):
    assert (parse_report_key(key) is not None) == served


def test_a_report_is_readable_by_who_may_read_the_runs_that_wrote_it():
    assert report_dag_ids("lab", recovery=False) == ["asr_test_failover_drill__lab"]
    assert report_dag_ids("lab", recovery=True) == ["asr_failover__lab", "asr_failback__lab"]


def test_a_report_another_process_wrote_is_seen_by_a_process_that_listed_before(blob_store, azurite):
    from adlfs import AzureBlobFileSystem

    first, second = _reports(2)
    write_report(blob_store, first, [])
    assert [h.run_id for h in load_history(blob_store, "lab")] == ["scheduled__week0"]  # this process has listed
    other = AzureBlobFileSystem(connection_string=azurite.connection_string, skip_instance_cache=True)
    name = f"{second.started_at:%Y%m%dT%H%M%SZ}__{second.run_id}.json"
    other.pipe(f"{blob_store.path.strip('/')}/lab/{name}", second.model_dump_json(by_alias=True).encode())
    assert [h.run_id for h in load_history(blob_store, "lab")] == ["scheduled__week0", "scheduled__week1"]


def test_the_report_tasks_retry_budget_defaults_and_follows_the_config(monkeypatch):
    from site_recovery.operators.report import REPORT_RETRIES, REPORT_RETRY_DELAY, ReportOperator

    monkeypatch.delenv("AIRFLOW__SITE_RECOVERY__REPORT_RETRIES", raising=False)
    monkeypatch.delenv("AIRFLOW__SITE_RECOVERY__REPORT_RETRY_DELAY", raising=False)
    task = ReportOperator(task_id="drill_report", python_callable=print)
    assert (task.retries, task.retry_delay) == (REPORT_RETRIES, REPORT_RETRY_DELAY)
    monkeypatch.setenv("AIRFLOW__SITE_RECOVERY__REPORT_RETRIES", "1")
    monkeypatch.setenv("AIRFLOW__SITE_RECOVERY__REPORT_RETRY_DELAY", "5")
    # the DAG's default_args (the drill's say two retries) do not override the store's budget
    from airflow.sdk import DAG

    with DAG("report_budget", schedule=None, default_args={"retries": 7, "retry_delay": timedelta(minutes=1)}):
        task = ReportOperator(task_id="drill_report", python_callable=print)
    assert (task.retries, task.retry_delay) == (1, timedelta(seconds=5))


@pytest.mark.parametrize("option, value", [("REPORT_RETRIES", "two"), ("REPORT_RETRIES", "-1"),
                                           ("REPORT_RETRY_DELAY", "30s"), ("REPORT_RETRY_DELAY", "1.5")])
def test_a_bad_retry_budget_fails_the_parse_naming_the_option(monkeypatch, option, value):
    from airflow.exceptions import AirflowConfigException
    from site_recovery.operators.report import ReportOperator

    monkeypatch.setenv(f"AIRFLOW__SITE_RECOVERY__{option}", value)
    with pytest.raises(AirflowConfigException, match=rf"\[site_recovery\] {option.lower()} .*{value!r}"):
        ReportOperator(task_id="drill_report", python_callable=print)
