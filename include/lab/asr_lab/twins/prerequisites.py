"""Twin of Test-AsrPrerequisites: the documented VMM-to-VMM checks, against the lab's state.

A failed check is data, not an error: the document says which check failed and why, in the
words the script uses. The replication port check reads the same on-premises state that
Initialize-HyperVReplicaHost changes (a listener on the port behind an enabled firewall rule),
and the provider check the registration Install-AsrProvider records, so the report turns green
as the runbook's steps are done.
"""

from __future__ import annotations

from typing import Any

from asr_lab.twins.common import Param, ScriptRun, script_twin

SCRIPT = "Test-AsrPrerequisites"
VAULT_ID_PATTERN = r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.RecoveryServices/vaults/[^/]+$"
PARAMETERS = [
    Param("ReplicationPort", int, default=8083, minimum=1, maximum=65535),
    Param("Authentication", default="Kerberos", choices=("Kerberos", "Certificate")),
    Param("VaultId", pattern=VAULT_ID_PATTERN),
    Param("VaultName", not_empty=True),
    Param("CloudName", list, aliases=("CloudNames",), not_empty=True),
]
#: VMM builds that support VMM-to-VMM replication: 2012 R2 from Update Rollup 5, 2016, 1801/1807, 2019.
SUPPORTED_VMM = "VMM 2012 R2 with Update Rollup 5 or later (3.2.8002.0), 2016, 1801, 1807 or 2019"
MINIMUM_HOST_OS = (6, 3, 9600)  # Windows Server 2012 R2


def vmm_version_supported(version: str) -> bool:
    parts = tuple(int(p) for p in version.split(".")[:3])
    major = parts[0]
    if major == 3:
        return parts >= (3, 2, 8002)
    return major == 4 or (major == 10 and parts[1] == 19)


def _check(name: str, passed: bool, reason: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "reason": reason}


@script_twin(SCRIPT, PARAMETERS)
def twin(run: ScriptRun, args: dict[str, Any], context: Any) -> Any:
    vmm_state = context.require_vmm()
    lab, site = context.lab, context.site
    port, authentication = args["ReplicationPort"], args["Authentication"]
    checks = []

    version = site.vmm.version
    supported = vmm_version_supported(version)
    checks.append(_check("VmmVersion", supported, f"VMM {version} is supported." if supported
                         else f"VMM {version} is not supported; VMM-to-VMM replication needs {SUPPORTED_VMM}."))

    clouds = list(site.clouds)
    if args["CloudName"]:
        missing = [n for n in args["CloudName"] if not any(c.name.casefold() == n.casefold() for c in clouds)]
        clouds = [c for c in clouds if c.name.casefold() in {n.casefold() for n in args["CloudName"]}]
        checks.append(_check("CloudsPresent", not missing,
                             f"No cloud named {', '.join(missing)} on {site.vmm.fqdn}." if missing
                             else f"Found cloud(s) {', '.join(c.name for c in clouds)}."))
    else:
        checks.append(_check("CloudsPresent", bool(clouds), f"Found cloud(s) {', '.join(c.name for c in clouds)}."
                             if clouds else f"{site.vmm.fqdn} has no cloud."))
    empty = [c.name for c in clouds if not site.hosts_in(c.name)]
    checks.append(_check("CloudsHaveHosts", bool(clouds) and not empty,
                         f"No Hyper-V host in the host groups of cloud(s) {', '.join(empty)}." if empty
                         else "Every cloud holds Hyper-V hosts." if clouds else "No cloud to check."))

    hosts = [h for c in clouds for h in site.hosts_in(c.name)]
    old = [f"{h.fqdn} ({h.os_version})" for h in hosts
           if tuple(int(p) for p in h.os_version.split(".")[:3]) < MINIMUM_HOST_OS]
    checks.append(_check("HostOsVersion", bool(hosts) and not old,
                         f"Hosts older than Windows Server 2012 R2: {', '.join(old)}." if old
                         else f"All {len(hosts)} host(s) run Windows Server 2012 R2 or later with Hyper-V."
                         if hosts else "No host to check."))

    closed = []
    for host in hosts:
        run.verbose(f"Testing TCP {port} on {host.fqdn}.")
        if not lab.onprem.host(host.fqdn).replication_reachable(authentication, port):
            closed.append(host.fqdn)
    checks.append(_check(
        "ReplicationPort", bool(hosts) and not closed,
        f"TCP {port} did not answer on {', '.join(closed)}: Hyper-V Replica must listen there with "
        f"{authentication} authentication and the firewall must allow it (Initialize-HyperVReplicaHost)."
        if closed else f"Hyper-V Replica answers on TCP {port} on all {len(hosts)} host(s)."
        if hosts else "No host to check."))

    if authentication == "Kerberos":
        foreign = [h.fqdn for h in hosts if not h.fqdn.endswith("." + lab.estate.domain)]
        checks.append(_check("Authentication", not foreign,
                             f"Not in domain {lab.estate.domain}: {', '.join(foreign)}." if foreign
                             else f"All hosts are in domain {lab.estate.domain}; Kerberos authentication is possible."))
    else:
        without = [h.fqdn for h in hosts if lab.onprem.host(h.fqdn).replica.certificate_thumbprint is None]
        checks.append(_check("Authentication", bool(hosts) and not without,
                             f"No certificate is set for Hyper-V Replica on {', '.join(without)}." if without
                             else "Every host has a certificate set for Hyper-V Replica."))

    checks.append(_provider_check(args, vmm_state))
    for check in checks:
        (run.verbose if check["passed"] else run.warn)(f"{check['name']}: {check['reason']}")
    passed = all(c["passed"] for c in checks)
    run.info(f"{sum(c['passed'] for c in checks)} of {len(checks)} prerequisites met on {site.vmm.fqdn}.")
    return run.emit({"server": site.vmm.fqdn, "checks": checks, "passed": passed})


def _provider_check(args: dict[str, Any], vmm_state: Any) -> dict[str, Any]:
    registered = vmm_state.registered_vault_id
    if not registered:
        return _check("ProviderRegistration", True, "The ASR Provider is not registered to any vault yet.")
    name = registered.rstrip("/").rsplit("/", 1)[-1]
    if args["VaultId"]:
        same = registered.casefold() == args["VaultId"].rstrip("/").casefold()
    elif args["VaultName"]:
        same = name.casefold() == args["VaultName"].casefold()
    else:
        return _check("ProviderRegistration", True, f"The ASR Provider is registered to vault '{name}'.")
    return _check("ProviderRegistration", same,
                  f"The ASR Provider is registered to vault '{name}'." if same
                  else f"The ASR Provider is registered to another vault, '{name}'; unregister it first.")
