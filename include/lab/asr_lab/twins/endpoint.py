"""Twin of Test-TestVmEndpoint (drills): does a port of the test VM answer, probed from the VMM server?

The VM is found as Get-TestVmStatus finds it (:mod:`asr_lab.twins.vmm_view`): a test failover
VM exists on the recovery VMM server from the test failover until its cleanup, and has an
address once it runs attached to a drill network. What answers on a port is what the estate
says the replicated VM's guest listens on (``VirtualMachine.services``), for a test VM and for
the replica a failover started alike: a listed port accepts
connections, an ``http`` one answers every GET with its status; any other port refuses. The
details are the ones Windows PowerShell gives for the same outcomes.
"""

from __future__ import annotations

import hashlib
from http import HTTPStatus
from typing import Any

from asr_lab.estate import Service
from asr_lab.twins.common import Param, ScriptRun, script_twin
from asr_lab.twins.vmm_view import managed_vms, test_vms_on

SCRIPT = "Test-TestVmEndpoint"
PARAMETERS = [
    Param("VmName", mandatory=True, not_empty=True),
    Param("Kind", mandatory=True, choices=("tcp", "http")),
    Param("Port", kind=int, mandatory=True, minimum=1, maximum=65535),
    # The script's default is '/'; None here tells "not given", as $PSBoundParameters does there.
    Param("Path", pattern=r"^/\S*$"),
    Param("TimeoutSeconds", kind=int, default=10, minimum=1, maximum=300),
]
#: What .NET says when a connection is refused (SocketException, ConnectionRefused).
REFUSED_MESSAGE = "No connection could be made because the target machine actively refused it"
#: WebException messages of Invoke-WebRequest when no HTTP answer comes back.
CONNECT_FAILURE = "Unable to connect to the remote server"
NOT_HTTP = "The underlying connection was closed: The connection was closed unexpectedly."


def _elapsed_ms(vm_id: str, port: int, low: int, high: int) -> int:
    """A plausible round trip, stable for one VM and port."""
    digest = int(hashlib.sha256(f"{vm_id}:{port}".encode()).hexdigest(), 16)
    return low + digest % (high - low + 1)


def _ipv4(vm: dict[str, Any]) -> str | None:
    """The first IPv4 address of the VM's adapters, APIPA left out, as the script picks it."""
    return next((a for nic in vm["nics"] for a in nic["ip_addresses"]
                 if ":" not in a and not a.startswith("169.254.")), None)


def _services(lab: Any, site: Any, vm: dict[str, Any]) -> list[Service]:
    """What the VM's guest listens on: a test VM, and a replica started by a failover, run their source VM's guest."""
    sources = {test["id"]: test["sourceVmId"] for test in test_vms_on(lab, site)}
    sources.update({item.replica_vm_id: item.vm_id for vault in lab.backend.state.vaults.values()
                    for item in vault.protected_items.values() if item.replica_vm_id})
    found = lab.estate.vm(sources.get(vm["id"], vm["id"]))
    return list(found[1].services) if found else []


def _probe_tcp(run: ScriptRun, vm: dict[str, Any], address: str, port: int,
               services: list[Service]) -> dict[str, Any]:
    if any(s.port == port for s in services):
        return {"ok": True, "status_code": None, "elapsed_ms": _elapsed_ms(vm["id"], port, 1, 4),
                "detail": "connection accepted"}
    run.verbose(f"Connecting to {address}:{port} failed: {REFUSED_MESSAGE} {address}:{port}")
    return {"ok": False, "status_code": None, "elapsed_ms": _elapsed_ms(vm["id"], port, 1, 3),
            "detail": f"connection refused (nothing listens on port {port}, or the guest firewall rejects it)"}


def _probe_http(run: ScriptRun, vm: dict[str, Any], uri: str, port: int, services: list[Service]) -> dict[str, Any]:
    service = next((s for s in services if s.port == port), None)
    if service is None or service.kind != "http":
        message = CONNECT_FAILURE if service is None else NOT_HTTP
        status = "ConnectFailure" if service is None else "ConnectionClosed"
        run.verbose(f"GET {uri} failed: {status}: {message}")
        return {"ok": False, "status_code": None, "elapsed_ms": _elapsed_ms(vm["id"], port, 1, 4),
                "detail": f"no HTTP answer: {message}"}
    code = int(service.status or 200)
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return {"ok": code < 400, "status_code": code, "elapsed_ms": _elapsed_ms(vm["id"], port, 4, 40),
            "detail": f"HTTP {code} {phrase}".strip()}


@script_twin(SCRIPT, PARAMETERS)
def twin(run: ScriptRun, args: dict[str, Any], context: Any) -> Any:
    context.require_vmm()
    name, kind, port, timeout = args["VmName"], args["Kind"], args["Port"], args["TimeoutSeconds"]
    path = (args["Path"] or "/") if kind == "http" else None
    if kind == "tcp" and args["Path"] is not None:
        run.warn(f"-Path is for http probes; a tcp probe ignores '{args['Path']}'.")
    lab, site = context.lab, context.site
    lab.backend.settle()
    document: dict[str, Any] = {"vm_name": name, "kind": kind, "port": port, "path": path, "address": None,
                                "ok": False, "status_code": None, "elapsed_ms": None, "detail": ""}
    matches = [vm for vm in managed_vms(lab, site) if vm["name"].casefold() == name.casefold()]
    address = None
    if not matches:
        document["detail"] = f"no virtual machine named '{name}' on {site.vmm.fqdn}"
    else:
        if len(matches) > 1:
            run.warn(f"{len(matches)} virtual machines are named '{name}'; probing the first ({matches[0]['id']}).")
        vm = matches[0]
        document["vm_name"] = vm["name"]
        if vm["state"] != "Running":
            document["detail"] = f"'{vm['name']}' is {vm['state']}, not Running"
        else:
            address = _ipv4(vm)
            if address is None:
                document["detail"] = f"'{vm['name']}' has no IPv4 address (the guest has not reported one to VMM)"
    if address is not None:
        document["address"] = address
        target = f"http://{address}:{port}{path}" if kind == "http" else f"{address}:{port}"
        run.verbose(f"Probing {kind} {target} on '{document['vm_name']}' (timeout {timeout} s).")
        services = _services(lab, site, vm)
        probe = (_probe_http(run, vm, target, port, services) if kind == "http"
                 else _probe_tcp(run, vm, address, port, services))
        document.update(probe)
    outcome = "passed" if document["ok"] else "failed"
    run.info(f"{kind} port {port} on '{document['vm_name']}': {outcome}, {document['detail']}.")
    return run.emit(document)
