"""Shared test set-up: a hermetic Airflow home, and the lab as a separate process.

Airflow reads its configuration at import time, so the environment is fixed here, before
any test module imports airflow. The lab runs as its own process (as in production, the
product only ever sees its endpoints); one lab serves the whole session and each test that
asks for ``lab`` gets it reset to the estate as described, with no faults and an empty
request log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="asr-dr-airflow-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Waits defer to the triggerer, as every deployment of this product is configured (see README).
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "azure=warning urllib3=error pypsrp=warning",
        "SITE_RECOVERY_STATE_DIR": str(_AIRFLOW_HOME / "site-recovery-state"),
    }
)

LAB_START_TIMEOUT = 60


@pytest.fixture(scope="session")
def lab_process(tmp_path_factory):
    """Start ``asr-lab serve`` at time scale 0 for the session; stop it at the end."""

    state_dir = tmp_path_factory.mktemp("lab-state")
    log_path = state_dir / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "asr-lab"), "serve", "--state-dir", str(state_dir),
             "--time-scale", "0", "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        client = _wait_for_lab(proc, state_dir, log_path)
        yield client, state_dir, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_for_lab(proc, state_dir: Path, log_path: Path):
    import time

    from asr_lab.client import LabClient

    deadline = time.monotonic() + LAB_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"asr-lab exited with {proc.returncode}:\n{log_path.read_text()}")
        if (state_dir / "endpoints.json").exists():
            client = LabClient.from_state_dir(state_dir)
            if client.health():
                return client
        time.sleep(0.05)
    raise RuntimeError(f"asr-lab not ready after {LAB_START_TIMEOUT}s:\n{log_path.read_text()}")


@pytest.fixture
def lab(lab_process):
    """The running lab, reset to a fresh estate for this test."""
    client, _, _ = lab_process
    client.reset()
    return client


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated metadata DB in the session's Airflow home (dag.test needs one)."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture
def lab_connection(lab, monkeypatch):
    """The lab as the Airflow connection ``azure_asr_lab`` (what `make demo` sets up too)."""
    import json

    monkeypatch.setenv("AIRFLOW_CONN_AZURE_ASR_LAB", json.dumps(lab.azure_connection()))
    return "azure_asr_lab"
