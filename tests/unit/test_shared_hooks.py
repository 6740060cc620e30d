"""The rules of the triggerer's shared ARM clients (site_recovery.hooks.shared), with real hooks built
from ``AIRFLOW_CONN_*`` connections; nothing here reaches the network (clients ask for tokens only
when they send a request)."""

from __future__ import annotations

import asyncio
import json

import pytest

from site_recovery.hooks.shared import SharedHooks

CONN_ID = "azure_shared_unit"


def set_connection(monkeypatch, secret: str) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
        "conn_type": "azure", "login": "00000000-0000-0000-0000-000000000001", "password": secret,
        "extra": {"tenantId": "00000000-0000-0000-0000-0000000000aa",
                  "subscriptionId": "00000000-0000-0000-0000-0000000000bb"}}))


def test_waits_of_one_connection_share_one_hook_which_lingers_then_closes(monkeypatch):
    set_connection(monkeypatch, "first-secret")
    shared = SharedHooks(linger_seconds=1.0)

    async def scenario():
        async with shared.hook(CONN_ID) as one, shared.hook(CONN_ID) as two:
            assert one is two and one._async_conn is not None
        assert len(shared) == 1 and one._async_conn is not None  # kept for the next wait
        async with shared.hook(CONN_ID) as three:
            assert three is one
        await asyncio.sleep(2.5)  # idle longer than the linger: the keeper closed it
        assert len(shared) == 0 and one._async_conn is None
        await shared.aclose()

    asyncio.run(scenario())


def test_a_rotated_secret_gets_a_new_hook_and_the_old_one_closes_with_its_last_wait(monkeypatch):
    set_connection(monkeypatch, "first-secret")
    shared = SharedHooks()

    async def scenario():
        async with shared.hook(CONN_ID) as old:
            set_connection(monkeypatch, "rotated-secret")
            async with shared.hook(CONN_ID) as new:
                assert new is not old and new._async_settings.client_secret == "rotated-secret"
                assert old._async_conn is not None  # still in use: not closed under its wait
            assert new._async_conn is not None  # the current one lingers
        assert old._async_conn is None and len(shared) == 1
        await shared.aclose()
        assert len(shared) == 0

    asyncio.run(scenario())


def test_a_loop_that_ends_closes_what_it_held(monkeypatch):
    """dag.test runs each deferral in its own asyncio.run: the linger must not leak clients past it."""
    set_connection(monkeypatch, "first-secret")
    shared = SharedHooks()
    held = []

    async def one_wait():
        async with shared.hook(CONN_ID) as hook:
            held.append(hook)

    asyncio.run(one_wait())
    assert held[0]._async_conn is None and held[0]._async_credential is None and len(shared) == 0
    asyncio.run(one_wait())  # a new loop gets a hook of its own
    assert held[1] is not held[0] and held[1]._async_conn is None


def test_a_connection_that_cannot_be_read_leaves_nothing_behind(monkeypatch):
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "azure", "extra": {}}))
    shared = SharedHooks()

    async def scenario():
        with pytest.raises(ValueError, match=CONN_ID):
            async with shared.hook(CONN_ID):
                pass
        assert len(shared) == 0
        await shared.aclose()

    asyncio.run(scenario())
