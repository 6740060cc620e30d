"""Persistence of the lab's state in its state dir.

The whole state model is one JSON document, replaced atomically, so a lab stopped at any
moment restarts from the last write with every in-flight job still on its timeline (jobs
carry absolute due instants, not countdowns).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

STATE_FILE = "state.json"
SECRETS_FILE = "identity.json"
ENDPOINTS_FILE = "endpoints.json"
SERVER_FILE = "server.json"  # the port last served on, reused so clients' URLs stay valid
STATE_FORMAT = 2


def read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); move it away to start afresh") from None


def write_json(path: Path, data: dict, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename in the same directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if private:
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, separators=(",", ":"), default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(state_dir: Path) -> dict | None:
    data = read_json(state_dir / STATE_FILE)
    if data is not None and data.get("format") != STATE_FORMAT:
        raise ValueError(
            f"{state_dir / STATE_FILE} has state format {data.get('format')!r}, this lab writes "
            f"{STATE_FORMAT}; use a fresh --state-dir"
        )
    return data


def save_state(state_dir: Path, arm: dict, onprem: dict) -> None:
    write_json(state_dir / STATE_FILE, {"format": STATE_FORMAT, "arm": arm, "onprem": onprem})
