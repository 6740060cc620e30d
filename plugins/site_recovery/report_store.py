"""Where drill and recovery reports live: one object store every Airflow component reads.

``[site_recovery] reports_folder`` (env ``AIRFLOW__SITE_RECOVERY__REPORTS_FOLDER``) is a local
folder or an :class:`~airflow.sdk.ObjectStoragePath` URL:

* a plain path or ``file:///...``: the default (``$AIRFLOW_HOME/drill-reports``), for
  ``airflow standalone`` and ``make demo``, where every task runs on one machine;
* ``abfs://<conn_id>@<container>/<prefix>``: Azure Blob storage through the Azure provider's
  object-storage support (adlfs), the connection (a ``wasb`` or ``adls`` connection: a connection
  string, an account key, a service principal or a managed identity) named in the URL's user
  part, as Airflow's object storage reads it. With several Celery workers, each report and the
  history the trend chart reads are then the same wherever the task ran, and the API server
  serves them to the browser (:mod:`site_recovery.report_routes`).

A store that cannot be reached raises :class:`~site_recovery.exceptions.ReportStoreUnavailable`
naming the store (its URL, never its credentials), so the report task retries and then fails
with a message an engineer can act on.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from site_recovery.exceptions import ReportStoreUnavailable

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)
#: Protocols of a folder on this machine's file system (written atomically through a temporary file).
LOCAL_PROTOCOLS = ("", "file", "local")


def configured_reports_url() -> str:
    """``[site_recovery] reports_folder``, else ``$AIRFLOW_HOME/drill-reports`` (a path or a URL, as configured)."""
    from airflow.configuration import conf

    configured = (conf.get("site_recovery", "reports_folder", fallback=None) or "").strip()
    if configured:
        return configured
    return str(Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "drill-reports")


def reports_root(url: str | os.PathLike | None = None) -> ObjectStoragePath:
    """The store's root as an ObjectStoragePath (``url`` defaults to :func:`configured_reports_url`).

    A local path becomes ``file://`` with ``~`` expanded; a URL is taken as Airflow takes it (the
    connection id in its user part).
    """
    from airflow.sdk import ObjectStoragePath

    text = str(url) if url is not None else configured_reports_url()
    if "://" not in text:
        text = "file://" + str(Path(text).expanduser().resolve())
    try:
        return ObjectStoragePath(text)
    except (ValueError, ImportError) as exc:  # an unknown scheme, a filesystem whose package is missing
        raise ReportStoreUnavailable(f"The reports store {text!r} is not a usable storage URL: {exc}") from None


def is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def describe(path: ObjectStoragePath) -> str:
    """How a log line or an error names a place in the store: a local path as a path, else its URL."""
    return path.path if is_local(path) else str(path)


@contextmanager
def reaching(root: ObjectStoragePath, what: str) -> Iterator[None]:
    """Turn a failure to reach the store into ReportStoreUnavailable naming the store and what was being done.

    The message carries the exception's type and the store's URL, not the exception's text: an
    SDK's message can quote a request with its signature or a connection string.
    """
    try:
        yield
    except ReportStoreUnavailable:
        raise
    except Exception as exc:  # adlfs, azure-core and aiohttp raise many kinds; every one means the same here
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)) and is_local(root):
            raise
        raise ReportStoreUnavailable(
            f"The reports store {describe(root)} could not be reached while {what} "
            f"({type(exc).__module__}.{type(exc).__qualname__}); check that it is up and that the "
            f"connection it names may use it") from None


def write_text(path: ObjectStoragePath, text: str) -> None:
    """Write ``text`` so a reader sees the old object or the whole new one, never a part.

    A local file is written to a temporary file and renamed over; a blob upload becomes visible
    only when it is committed, so a remote object is written directly.
    """
    if is_local(path):
        target = Path(path.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)  # Blob storage: creates the container the first time
    with path.open("w", encoding="utf-8") as f:
        f.write(text)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a local ``path`` through a temporary file in its folder and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def forget_listings(path: ObjectStoragePath) -> ObjectStoragePath:
    """Drop what this process's filesystem remembers of ``path``'s folder listing, and return ``path``.

    fsspec filesystems (adlfs among them) cache listings for the life of the process; another
    worker's new report would stay invisible to a long-lived process (the API server) without this.
    """
    path.fs.invalidate_cache(path.parent.path if path.parent != path else path.path)
    path.fs.invalidate_cache(path.path)
    return path


def list_reports(folder: ObjectStoragePath, suffix: str = ".json") -> list[ObjectStoragePath]:
    """The objects directly in ``folder`` whose names end with ``suffix`` (none for a missing folder),
    by name, as the store holds them now; hidden names (a local writer's temporary files) are left out."""
    if not forget_listings(folder).exists():
        return []
    entries = (entry for entry in folder.iterdir() if entry.name.endswith(suffix) and not entry.name.startswith("."))
    return sorted(entries, key=lambda entry: entry.name)
