"""docker-compose.yaml keeps the official Airflow 3.3 layout plus the lab (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
}


def mount_target(volume: str) -> str:
    """'${AIRFLOW_PROJ_DIR:-.}/dags:/opt/airflow/dags[:ro]' -> '/opt/airflow/dags'."""
    return re.split(r":(?=/)", volume)[1].split(":")[0]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_every_service_of_the_layout_is_there():
    services = compose()["services"]
    assert set(AIRFLOW_SERVICES) | {"airflow-init", "postgres", "redis", "asr-lab"} <= set(services)
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["command"] == command, name


def test_airflow_services_are_built_from_the_dockerfile_and_mount_the_project():
    services = compose()["services"]
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        service = services[name]
        assert service["build"] == ".", name
        targets = {mount_target(v) for v in service["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= targets, name
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_dockerfile_installs_from_the_lock_only_on_the_pinned_airflow():
    import re

    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2" in dockerfile
    installs = [" ".join(found.split()) for found in re.findall(r"pip install ((?:[^\n]|\\\n)*)",
                                                                 dockerfile.replace("\\\n", " "))]
    assert installs[0] == "--no-cache-dir -r /requirements.txt"
    # the rest are the project's own folders, without dependencies: nothing reaches the image unpinned
    assert all("--no-deps /opt/" in found for found in installs[1:]), installs
    lock = {line.split("==")[0]: line.split("==")[1] for line in (REPO / "requirements.txt").read_text().splitlines()
            if "==" in line and not line.startswith(" ")}
    assert lock["apache-airflow"] == "3.3.2"
    for distributed in ("apache-airflow-providers-celery", "apache-airflow-providers-postgres", "celery", "redis",
                        "psycopg2-binary"):
        assert distributed in lock, f"{distributed} is not in the lock"


def test_the_lab_service_serves_https_with_a_health_check():
    lab = compose()["services"]["asr-lab"]
    assert lab["entrypoint"] == ["asr-lab"]
    assert lab["command"][0] == "serve" and "--state-dir" in lab["command"]
    assert "healthcheck" in lab
