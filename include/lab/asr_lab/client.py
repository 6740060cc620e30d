"""A small client for a running lab: its endpoints and its /_lab/ admin API.

Tests, the demo and benchmarks read ``endpoints.json`` through this rather than each
parsing it their own way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from asr_lab.store import ENDPOINTS_FILE


class LabClient:
    def __init__(self, endpoints: dict[str, Any]) -> None:
        self.endpoints = endpoints
        self._session = requests.Session()
        # Passed on every call: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self._verify = endpoints["ca_cert"]
        self._session.headers["Authorization"] = f"Bearer {endpoints['admin_token']}"

    @classmethod
    def from_state_dir(cls, state_dir: str | Path, wait_seconds: float = 0) -> "LabClient":
        path = Path(state_dir) / ENDPOINTS_FILE
        deadline = time.monotonic() + wait_seconds
        while not path.exists():
            if time.monotonic() >= deadline:
                raise FileNotFoundError(f"{path} does not exist: is the lab running with that --state-dir?")
            time.sleep(0.05)
        return cls(json.loads(path.read_text()))

    def azure_connection(self) -> dict:
        """The lab as an Airflow ``azure_site_recovery`` connection (JSON form of ``AIRFLOW_CONN_<ID>``)."""
        e = self.endpoints
        return {
            "conn_type": "azure_site_recovery",
            "login": e["client_id"],
            "password": e["client_secret"],
            "extra": {
                "tenantId": e["tenant_id"],
                "subscriptionId": e["subscription_id"],
                "resource_manager_endpoint": e["arm_url"],
                "authority_host": e["authority_url"],
                "ca_bundle": e["ca_cert"],
                "portal_url": e["arm_url"] + "/_lab/portal",
            },
        }

    def psrp_connection(self, fqdn: str, auth: str = "negotiate") -> dict:
        """An emulated Windows server as an Airflow ``psrp`` connection (JSON form).

        The psrp provider ignores a connection's port; the product's VMM hook passes it on.
        """
        e = self.endpoints
        server = e["winrm"][fqdn.lower()]
        return {
            "conn_type": "psrp", "host": server["host"], "port": server["port"],
            "login": e["winrm_username"], "password": e["winrm_password"],
            "extra": {"auth": auth, "cert_validation": e["ca_cert"], "ssl": True},
        }

    def airflow_connections(self, azure_conn_id: str = "azure_asr_lab") -> dict[str, dict]:
        """Every lab endpoint as an Airflow connection: the azure one and one psrp per server.

        Windows servers are named ``winrm_<host>`` after the first label of their FQDN, with
        hyphens as underscores so the ids also work as ``AIRFLOW_CONN_<ID>`` variables.
        """
        connections = {azure_conn_id: self.azure_connection()}
        for fqdn in self.endpoints["winrm"]:
            connections[winrm_conn_id(fqdn)] = self.psrp_connection(fqdn)
        return connections

    def __getitem__(self, key: str) -> Any:
        return self.endpoints[key]

    def _call(self, method: str, path: str, **kwargs) -> Any:
        response = self._session.request(method, f"{self.endpoints['admin_url']}{path}", timeout=30,
                                         verify=self._verify, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"lab admin {method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    # request log
    def requests(self, since: int = 0, *, method: str | None = None, path: str | None = None,
                 mutating: bool | None = None) -> list[dict]:
        params: dict[str, Any] = {"since": since}
        if method:
            params["method"] = method
        if path:
            params["path"] = path
        if mutating is not None:
            params["mutating"] = str(mutating).lower()
        return self._call("GET", "/requests", params=params)["requests"]

    def last_request_seq(self) -> int:
        return self._call("GET", "/requests", params={"since": 10**12})["last_seq"]

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    # faults
    def add_http_fault(self, status: int, *, path: str = ".*", method: str = "*", count: int = 1,
                       retry_after: int | None = None, code: str | None = None,
                       message: str | None = None) -> dict:
        spec = {"status": status, "path": path, "method": method, "count": count}
        spec.update({k: v for k, v in (("retry_after", retry_after), ("code", code), ("message", message)) if v is not None})
        return self._call("POST", "/faults/http", json=spec)

    def add_job_fault(self, scenario: str, outcome: str, *, target: str | None = None,
                      error: dict | None = None, count: int = 1, task: int | str | None = None) -> dict:
        """Bend the next ``count`` jobs of ``scenario`` (on ``target``) to ``outcome`` at ``task`` (default: the last)."""
        spec = {"scenario": scenario, "outcome": outcome, "count": count}
        if task is not None:
            spec["task"] = task
        if target is not None:
            spec["target"] = target
        if error is not None:
            spec["error"] = error
        return self._call("POST", "/faults/jobs", json=spec)

    def http_faults(self) -> list[dict]:
        return self._call("GET", "/faults/http")["faults"]

    def hold_answers(self, seconds: float, *, path: str, method: str = "*", count: int = 1) -> dict:
        """Serve the next ``count`` matching requests but hold each answer back ``seconds`` (wall time)."""
        return self._call("POST", "/faults/http", json={"answer_after": seconds, "path": path, "method": method,
                                                         "count": count})

    def job_faults(self) -> list[dict]:
        return self._call("GET", "/faults/jobs")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults/http")
        self._call("DELETE", "/faults/jobs")

    # state
    def register_provider(self, vault_id: str, vmm_server: str) -> dict:
        return self._call("POST", "/providers", json={"vault_id": vault_id, "vmm_server": vmm_server})

    def state(self) -> dict:
        return self._call("GET", "/state")

    def winrm_invocations(self, server: str | None = None) -> list[dict]:
        params = {"server": server.lower()} if server else {}
        return self._call("GET", "/winrm/invocations", params=params)["invocations"]

    def winrm_controls(self, fqdn: str, *, answering: bool | None = None,
                       hold_pipelines: bool | None = None) -> dict:
        body = {k: v for k, v in (("answering", answering), ("hold_pipelines", hold_pipelines)) if v is not None}
        return self._call("POST", f"/winrm/{fqdn.lower()}/controls", json=body)

    # lab time
    def time_scale(self) -> float:
        """The scale the lab's time runs on now (``endpoints["time_scale"]`` may be stale)."""
        return self._call("GET", "/clock")["time_scale"]

    def set_time_scale(self, scale: float) -> float:
        """Run lab time at ``scale`` from now on (``reset`` restores the starting scale).

        Durations computed from now on use it; a job task already running keeps its due time.
        """
        current = self._call("POST", "/clock", json={"time_scale": scale})["time_scale"]
        self.endpoints["time_scale"] = current
        return current

    # replication
    def set_replication(self, vm_name: str, paused: bool, lag_seconds: float = 0) -> dict:
        """Stall (``paused=True``) or resume one protected VM's Hyper-V replication.

        Paused: its lastReplicatedTime freezes ``lag_seconds`` (wall-clock) in the past,
        replication health turns Warning (Critical from a two-hour lag) with one health
        error. Resumed: Normal again, replication runs from the resume time.
        """
        body: dict[str, Any] = {"paused": paused}
        if paused or lag_seconds:
            body["lag_seconds"] = lag_seconds
        return self._call("POST", f"/replication/{quote(vm_name, safe='')}", json=body)

    # ARM throttling and Entra's token counts
    def throttle(self) -> dict:
        """ARM's throttling: enabled, the limits per operation class, requests admitted and throttled."""
        return self._call("GET", "/throttle")

    def set_throttle(self, *, enabled: bool | None = None, limits: dict[str, dict] | None = None) -> dict:
        """Turn ARM's throttling on or off, or set some classes' buckets (``{"reads": {"burst": 20,
        "per_second": 2}}``); every bucket starts full. ``reset`` restores how the lab was started."""
        body: dict[str, Any] = {}
        if enabled is not None:
            body["enabled"] = enabled
        if limits is not None:
            body["limits"] = limits
        return self._call("POST", "/throttle", json=body)

    def identity(self) -> dict:
        """Token requests by client id since the last reset, and the lifetime of new tokens."""
        return self._call("GET", "/identity")

    def set_token_lifetime(self, seconds: int) -> dict:
        """Tokens issued from now on expire after ``seconds`` (``reset`` restores 3599)."""
        return self._call("POST", "/identity", json={"token_lifetime_seconds": seconds})

    # VMM library scripts (recovery plan script actions)
    def set_library_script_error(self, vmm: str, path: str, stderr: str | None) -> dict:
        """Make the library script ``path`` on VMM ``vmm`` write ``stderr`` (None: as the estate says)."""
        return self._call("POST", "/library-scripts", json={"vmm": vmm, "path": path, "stderr": stderr})

    def reset(self) -> None:
        self._call("POST", "/reset")
        self.endpoints["time_scale"] = self.time_scale()

    def snapshot(self, name: str) -> None:
        """Keep the lab's state (vault, protection, servers) as ``name``; in the lab's memory until it stops."""
        self._call("POST", "/snapshots", json={"name": name})

    def restore(self, name: str) -> bool:
        """Reset the lab, then bring back the state kept as ``name``; False (lab only reset) when there is none."""
        response = self._session.post(f"{self.endpoints['admin_url']}/snapshots", timeout=30, verify=self._verify,
                                      json={"name": name, "restore": True})
        if response.status_code == 404:
            self.reset()
            return False
        if response.status_code >= 400:
            raise RuntimeError(f"lab admin POST /snapshots -> {response.status_code}: {response.text}")
        self.endpoints["time_scale"] = self.time_scale()
        return True

    def health(self) -> bool:
        return self._session.get(f"{self.endpoints['admin_url']}/health", timeout=5, verify=self._verify).ok


def winrm_conn_id(fqdn: str) -> str:
    """``vmm-ams-01.corp.example.nl`` -> ``winrm_vmm_ams_01`` (the lab's connection naming)."""
    return "winrm_" + fqdn.split(".")[0].replace("-", "_").lower()
