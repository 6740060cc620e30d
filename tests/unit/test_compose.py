"""docker-compose.yaml keeps the official Airflow 3.3 layout plus the lab (no Docker engine here)."""

from __future__ import annotations

import json
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
    assert set(AIRFLOW_SERVICES) | {"airflow-init", "postgres", "redis", "asr-lab", "azurite"} <= set(services)
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


# ------------------------------------------------------------------ the compose file and `make stack` agree
def _compose_env() -> dict[str, str]:
    return {key: str(value) for key, value in compose()["x-airflow-common"]["environment"].items()}


def _stack_env() -> dict[str, str]:
    from bench.stack import REPORTS_CONN_ID, REPORTS_CONTAINER, stack_settings

    return stack_settings(database_url="postgresql+psycopg2://asr_dr@127.0.0.1:5432/asr_dr",
                          broker_url="redis://127.0.0.1:6379/11", connections_file="/stack/connections.json",
                          reports_url=f"abfs://{REPORTS_CONN_ID}@{REPORTS_CONTAINER}/")


def test_the_compose_file_runs_the_components_of_the_tested_stack():
    from bench.stack import COMPOSE_SERVICES, DistributedStack

    services = compose()["services"]
    assert set(COMPOSE_SERVICES.values()) | {"postgres", "redis", "airflow-init"} == set(services)
    defaults = DistributedStack.__init__.__kwdefaults__
    assert services["airflow-worker"]["deploy"]["replicas"] == defaults["workers"] == 2
    assert services["airflow-triggerer"]["deploy"]["replicas"] == defaults["triggerers"] == 2


def test_the_compose_file_has_the_settings_of_the_tested_stack():
    stack, composed = _stack_env(), _compose_env()
    same = ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__SECRETS__BACKEND",
            "AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER", "AIRFLOW__LOGGING__NAMESPACE_LEVELS")
    for key in same:
        assert composed[key] == stack[key], key
    for key in ("AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"):
        assert composed[key].lower() == stack[key].lower(), key
    # the same drivers and kinds of URL; only hosts, credentials and database numbers differ
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND",
                "AIRFLOW__CELERY__BROKER_URL"):
        assert composed[key].split("://")[0] == stack[key].split("://")[0], key
    kwargs = (json.loads(composed["AIRFLOW__SECRETS__BACKEND_KWARGS"]),
              json.loads(stack["AIRFLOW__SECRETS__BACKEND_KWARGS"]))
    assert kwargs[0].keys() == kwargs[1].keys() == {"connections_file_path"}
    assert composed["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${"), "the JWT secret must come from .env"


def test_the_compose_file_writes_the_reports_connection_the_stack_uses():
    from bench.stack import AZURITE_ACCOUNT, REPORTS_CONN_ID

    init = "\n".join(compose()["services"]["airflow-init"]["command"])
    assert f'connections["{REPORTS_CONN_ID}"]' in init and '"conn_type": "wasb"' in init
    assert f"AccountName={AZURITE_ACCOUNT};" in init and f"BlobEndpoint=http://azurite:10000/{AZURITE_ACCOUNT};" in init
    azurite = compose()["services"]["azurite"]
    assert azurite["environment"]["AZURITE_ACCOUNTS"].startswith(f"{AZURITE_ACCOUNT}:${{AZURITE_ACCOUNT_KEY")
    assert "--skipApiVersionCheck" in azurite["command"] and "--loose" in azurite["command"]


def test_the_compose_file_pins_the_versions_the_stack_ran():
    import psycopg2
    import redis

    from bench.stack import POSTGRES, REDIS

    services = compose()["services"]
    pinned = json.loads((REPO / "tools" / "azurite" / "package.json").read_text())["dependencies"]["azurite"]
    assert services["azurite"]["image"] == f"mcr.microsoft.com/azure-storage/azurite:{pinned}"
    with psycopg2.connect(host=POSTGRES["host"], port=POSTGRES["port"], user=POSTGRES["admin"],
                          dbname="postgres") as conn:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            postgres_major = cur.fetchone()[0].split(".")[0]
    assert services["postgres"]["image"] == f"postgres:{postgres_major}"
    redis_version = redis.Redis(**REDIS).info("server")["redis_version"]
    assert services["redis"]["image"] == f"redis:{'.'.join(redis_version.split('.')[:2])}-bookworm"
