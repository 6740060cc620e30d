"""Answering a DAG's required actions (Airflow's human-in-the-loop tasks) the way the UI's form does.

A thread waits for each named task to reach the awaiting-input state, logs in as a user of the
simple auth manager (``POST /auth/token``) and sends the form (``PATCH .../hitlDetails``), or
lets the action time out through the scheduler's own sweep of awaiting-input tasks.
"""

from __future__ import annotations

import threading
import time

import pytest

PASSWORDS = {"admin": "admin-drill-pw", "oncall": "oncall-drill-pw"}


@pytest.fixture
def airflow_users(tmp_path, monkeypatch):
    """Two simple-auth-manager users: ``admin`` (the lab site's approver) and ``oncall`` (an operator who is not)."""
    import json

    path = tmp_path / "passwords.json"
    path.write_text(json.dumps(PASSWORDS))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,oncall:op")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(path))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    return PASSWORDS


class Answers:
    """Answer required actions of one DAG, in order, from a second thread, through the REST API.

    ``plan`` maps each task id (in the order the run reaches them) to its answers, each
    ``(user, option)``; ``option`` None lets the action time out instead. ``waited`` keeps, per task,
    the required action as the first user saw it; ``responses`` each ``(task id, user, HTTP status)``.
    """

    def __init__(self, dag_id: str, plan: dict[str, list[tuple[str, str | None]]], wait_seconds: float = 300) -> None:
        self.dag_id, self.plan, self.wait_seconds = dag_id, plan, wait_seconds
        self.responses: list[tuple[str, str, int]] = []
        self.waited: dict[str, dict] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Answers:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join(timeout=5)

    def _awaiting(self, task_id: str):
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        with create_session() as session:
            return session.query(TaskInstance).filter(TaskInstance.dag_id == self.dag_id,
                                                      TaskInstance.task_id == task_id,
                                                      TaskInstance.state == TaskInstanceState.AWAITING_INPUT).first()

    def _run(self) -> None:
        from fastapi.testclient import TestClient

        from airflow.api_fastapi.app import create_app

        api = None
        for task_id, answers in self.plan.items():
            deadline = time.monotonic() + self.wait_seconds
            ti = None
            while time.monotonic() < deadline and ti is None:
                ti = self._awaiting(task_id)
                time.sleep(0.5)
            if ti is None:
                return
            api = api or TestClient(create_app(apps="all"))
            path = (f"/api/v2/dags/{ti.dag_id}/dagRuns/{ti.run_id}/taskInstances/{ti.task_id}/{ti.map_index}"
                    "/hitlDetails")
            for user, option in answers:
                token = api.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})
                headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
                self.waited.setdefault(task_id, api.get(path, headers=headers).json())
                if option is None:
                    sweep_timeouts(ti)
                    return
                answer = api.patch(path, headers=headers, json={"chosen_options": [option], "params_input": {}})
                self.responses.append((task_id, user, answer.status_code))


class Answer(Answers):
    """Answer one required action of ``dag_id``: ``Answer(dag_id, task_id, (user, option), ...)``."""

    def __init__(self, dag_id: str, task_id: str, *answers: tuple[str, str | None]) -> None:
        super().__init__(dag_id, {task_id: list(answers)})

    @property
    def waited_list(self) -> list[dict]:
        return list(self.waited.values())


def sweep_timeouts(ti) -> None:
    """Move the required action's deadline into the past and run the scheduler's own AWAITING_INPUT sweep."""
    from datetime import timedelta

    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils import timezone
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.get(TaskInstance, ti.id)
        row.trigger_timeout = timezone.utcnow() - timedelta(seconds=1)
    SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()
