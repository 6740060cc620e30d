"""The API server's route to stored reports: ``GET /site-recovery/reports/<site>/[recovery/]<name>.html``.

A report task's ``Report`` button (:class:`~site_recovery.links.StoredReportLink`) opens this
route. It reads the page from the reports store (:mod:`site_recovery.report_store`), so a report
written by any worker, to a local folder or to Azure Blob storage, opens in the browser from the
API server. It is behind Airflow's own login, as the UI is: the caller's token (the UI's session
cookie or a bearer token) must name a user the auth manager lets read the runs of the DAG that
wrote the report (the site's drill DAG for a drill report; its failover or failback DAG for a
recovery report). A browser without a session is sent to the login page; any other caller gets 401.

Only names the report writers produce are served (a safe site name, an optional ``recovery/``,
a safe file name ending ``.html`` or ``.json``): nothing else of the store is reachable.
"""

from __future__ import annotations

import re

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

#: What a report's key in the store looks like: site, optional recovery folder, file (see drill_report.safe_name).
_KEY = re.compile(r"(?P<site>[A-Za-z0-9][A-Za-z0-9._-]{0,119})/(?:(?P<recovery>recovery)/)?"
                  r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.(?P<kind>html|json))")
_MEDIA = {"html": "text/html; charset=utf-8", "json": "application/json"}

app = FastAPI(title="Site recovery reports",
              description="Drill and recovery reports from the reports store, behind Airflow's login.")


def parse_report_key(key: str) -> re.Match | None:
    """The key's parts (``site``, ``recovery``, ``name``, ``kind``) when it names a report the writers
    produce; None for anything else of the store."""
    return _KEY.fullmatch(key) if ".." not in key else None


class LoginRequired(Exception):
    """The request carries no valid Airflow token."""


@app.exception_handler(LoginRequired)
async def _to_login(request: Request, exc: LoginRequired) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)),
                                status_code=status.HTTP_303_SEE_OTHER)
    return JSONResponse({"detail": "Not authenticated"}, status_code=status.HTTP_401_UNAUTHORIZED)


async def _reader(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)):
    """The caller as Airflow's own API resolves it (bearer token, else the UI's session cookie)."""
    try:
        return await get_user(request, None, bearer)
    except HTTPException as exc:
        if exc.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            raise LoginRequired() from None
        raise


def report_dag_ids(site: str, recovery: bool) -> list[str]:
    """The DAGs whose runs write the reports of ``site`` of this kind: reading one of their runs reads the report."""
    families = ("asr_failover", "asr_failback") if recovery else ("asr_test_failover_drill",)
    return [f"{family}__{site}" for family in families]


@app.get("/reports/{key:path}", response_class=HTMLResponse)
def stored_report(key: str, user=Depends(_reader)) -> Response:
    """One stored report page (or its JSON), if the caller may read the runs that wrote it."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from site_recovery.exceptions import ReportStoreUnavailable
    from site_recovery.report_store import forget_listings, reaching, reports_root

    found = parse_report_key(key)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such report")
    manager = get_auth_manager()
    if not any(manager.is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                         details=DagDetails(id=dag_id), user=user)
               for dag_id in report_dag_ids(found["site"], bool(found["recovery"]))):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "You may not read the runs that wrote this report")
    root = reports_root()
    path = root / found["site"]
    if found["recovery"]:
        path = path / "recovery"
    path = path / found["name"]
    try:
        with reaching(root, f"reading report {key}"):
            body = path.read_bytes() if forget_listings(path).exists() else None
    except ReportStoreUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    if body is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such report")
    # The page is self-contained (inline CSS and SVG, no script): forbid anything else it could load.
    return Response(body, media_type=_MEDIA[found["kind"]],
                    headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                             "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})
