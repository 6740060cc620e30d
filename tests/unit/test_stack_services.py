"""`make stack` says exactly what it needs when PostgreSQL, Redis or Azurite is missing."""

from __future__ import annotations

import pytest

import bench.stack as stack
from bench.stack import StackUnavailable, check_services, free_port


def test_a_missing_postgres_and_redis_are_named_with_their_addresses(monkeypatch):
    postgres_port, redis_port = free_port(), free_port()  # nothing listens on either
    monkeypatch.setattr(stack, "POSTGRES", {**stack.POSTGRES, "port": postgres_port})
    monkeypatch.setattr(stack, "REDIS", {**stack.REDIS, "port": redis_port})
    with pytest.raises(StackUnavailable) as raised:
        check_services()
    message = str(raised.value)
    assert message.startswith("The distributed stack needs: ")
    assert f"PostgreSQL on 127.0.0.1:{postgres_port} accepting the role 'postgres' without a password" in message
    assert f"Redis on 127.0.0.1:{redis_port}" in message


def test_a_missing_azurite_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(stack, "AZURITE_BIN", tmp_path / "azurite-blob")
    with pytest.raises(StackUnavailable, match="Azurite .*npm from tools/azurite"):
        check_services()


def test_the_services_this_machine_runs_are_enough():
    check_services()
