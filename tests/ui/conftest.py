"""What the browser tests share: Debian's Chromium, which `make test` installs when it is missing."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    assert path, "chromium is not installed: `make test` installs it (apt-get install chromium)"
    return path
