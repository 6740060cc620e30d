"""Twin of Get-TestVmStatus (drills): is the test failover VM there, running, answering, addressed?

The test VM is the ARM backend's: a test failover job creates "<vm> - Test" on a recovery
host (off at first, running once the job's boot task is done) and its cleanup removes it. The
twin looks the name up among the VMs this VMM server manages (:mod:`asr_lab.twins.vmm_view`),
so on the other site's VMM server, or after cleanup, the VM does not exist. A running VM
answers its heartbeat; a test VM attached to a drill network holds an address from its subnet.
"""

from __future__ import annotations

from typing import Any

from asr_lab.twins.common import Param, ScriptFailure, ScriptRun, script_twin
from asr_lab.twins.vmm_view import managed_vms
from asr_lab.winrm.scripts import TwinError

SCRIPT = "Get-TestVmStatus"
#: Appended to the replicated VM's name by a test failover.
TEST_SUFFIX = " - Test"
PARAMETERS = [Param("VmName", not_empty=True), Param("ProtectedItemName", not_empty=True)]


def _parameter_set(args: dict[str, Any]) -> str:
    """The VM name to look for, resolving the script's two parameter sets as PowerShell does."""
    if args["VmName"] and args["ProtectedItemName"]:
        raise ScriptFailure(TwinError(
            "Parameter set cannot be resolved using the specified named parameters.", "InvalidArgument",
            f"AmbiguousParameterSet,{SCRIPT}", "System.Management.Automation.ParameterBindingException"))
    if not args["VmName"] and not args["ProtectedItemName"]:
        raise ScriptFailure(TwinError(
            "Cannot process command because of one or more missing mandatory parameters: VmName.",
            "InvalidArgument", f"MissingMandatoryParameter,{SCRIPT}",
            "System.Management.Automation.ParameterBindingException"))
    return args["VmName"] or f"{args['ProtectedItemName']}{TEST_SUFFIX}"


@script_twin(SCRIPT, PARAMETERS)
def twin(run: ScriptRun, args: dict[str, Any], context: Any) -> Any:
    context.require_vmm()
    name = _parameter_set(args)
    lab, site = context.lab, context.site
    lab.backend.settle()
    matches = [vm for vm in managed_vms(lab, site) if vm["name"].casefold() == name.casefold()]
    if not matches:
        run.info(f"No virtual machine named '{name}' on {site.vmm.fqdn}.")
        return run.emit({"vm_name": name, "exists": False, "vm_id": None, "state": None, "heartbeat": None,
                         "ip_addresses": [], "host": None})
    if len(matches) > 1:
        run.warn(f"{len(matches)} virtual machines are named '{name}'; reporting the first ({matches[0]['id']}).")
    vm = matches[0]
    running = vm["state"] == "Running"
    heartbeat = "OK" if running else "NoContact"
    addresses = [address for nic in vm["nics"] for address in nic["ip_addresses"]] if running else []
    run.verbose(f"'{name}' is on {vm['host']}; reading its heartbeat from the host.")
    run.info(f"'{name}': {vm['state']}, heartbeat {heartbeat}, IP {', '.join(addresses) or 'none'}.")
    return run.emit({"vm_name": vm["name"], "exists": True, "vm_id": vm["id"], "state": vm["state"],
                     "heartbeat": heartbeat, "ip_addresses": addresses, "host": vm["host"]})
