"""requirements.txt is a full lock: every line an exact pin, and the stack the product is built on."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUIRED = {
    "apache-airflow": "3.3.2",
    "apache-airflow-providers-microsoft-azure": "15.2.1",
    "apache-airflow-providers-microsoft-psrp": "4.0.1",
    "azure-mgmt-recoveryservices": "4.3.0",
    "azure-mgmt-recoveryservicessiterecovery": "2.0.0",
}


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\],]+)==([^\s;]+)(\s*;.*)?", line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        found[match.group(1).lower().split("[")[0]] = match.group(2)
    return found


def test_runtime_lock_pins_everything_and_the_required_versions():
    locked = pins(REPO / "requirements.txt")
    assert len(locked) > 150
    for name, version in REQUIRED.items():
        assert locked[name] == version, name
    for name in ("apache-airflow-providers-standard", "azure-identity", "pypsrp", "psrpcore", "pydantic", "pyyaml"):
        assert name in locked, name


def test_dev_lock_is_pinned_and_consistent_with_the_runtime_lock():
    runtime, dev = pins(REPO / "requirements.txt"), pins(REPO / "requirements-dev.txt")
    assert {"pytest", "pytest-timeout", "hypothesis"} <= dev.keys()
    for name in dev.keys() & runtime.keys():
        assert dev[name] == runtime[name], f"{name}: dev lock {dev[name]} != runtime lock {runtime[name]}"
