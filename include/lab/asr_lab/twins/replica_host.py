"""Twin of Initialize-HyperVReplicaHost (step 4): make a Hyper-V host a replica server.

It changes the host's record in :class:`~asr_lab.onprem.OnPremState` the way the script changes
the host: replica server settings (Set-VMReplicationServer, an authorization entry for a named
primary server) and an inbound firewall rule for the replication port. Every setting is
compared first and reported under ``changed`` or ``already`` with the same words the script
uses, so a second run changes nothing and says so.
"""

from __future__ import annotations

from typing import Any

from asr_lab.onprem import REPLICA_HTTP_RULE, REPLICA_HTTPS_RULE, AuthorizationEntry, FirewallRule, HostState
from asr_lab.twins.common import Param, ScriptRun, script_twin

SCRIPT = "Initialize-HyperVReplicaHost"
PARAMETERS = [
    Param("ReplicationPort", int, minimum=1, maximum=65535),
    Param("Authentication", default="Kerberos", choices=("Kerberos", "Certificate")),
    Param("StoragePath", mandatory=True, pattern=r"^[a-z]:\\"),
    Param("AllowedPrimaryServer", default="*", pattern=r"^(\*|(\*\.)?[a-z0-9][a-z0-9.-]*)$"),
    Param("CertificateThumbprint", pattern=r"^[0-9a-f]{40}$"),
]
DEFAULT_PORTS = {"Kerberos": 8083, "Certificate": 443}
TRUST_GROUP = "AzureSiteRecovery"


def firewall_rule_name(authentication: str, port: int) -> str:
    """The built-in rule when the port is its own, else the rule this script creates for the port."""
    built_in, built_in_port = (REPLICA_HTTP_RULE, 80) if authentication == "Kerberos" else (REPLICA_HTTPS_RULE, 443)
    if port == built_in_port:
        return built_in
    protocol = "HTTP" if authentication == "Kerberos" else "HTTPS"
    return f"Hyper-V Replica {protocol} Listener (TCP-In, port {port})"


@script_twin(SCRIPT, PARAMETERS)
def twin(run: ScriptRun, args: dict[str, Any], context: Any) -> Any:
    host = context.require_host()
    authentication = args["Authentication"]
    port = args["ReplicationPort"] or DEFAULT_PORTS[authentication]
    storage, allowed = args["StoragePath"].rstrip("\\"), args["AllowedPrimaryServer"]
    replica = host.replica
    changed: list[str] = []
    already: list[str] = []

    def ensure(setting: str, is_set: bool, apply) -> None:
        if is_set:
            already.append(setting)
            return
        apply()
        changed.append(setting)
        run.verbose(f"Set {setting}.")

    thumbprint = None
    if authentication == "Certificate":
        thumbprint = _certificate(run, host, args["CertificateThumbprint"])
    was_enabled = replica.enabled
    ensure("replica server enabled", replica.enabled, lambda: setattr(replica, "enabled", True))
    wanted_auth = authentication
    if was_enabled and replica.authentication not in (authentication, "CertificateAndKerberos"):
        wanted_auth = "CertificateAndKerberos"  # keep the other kind working for existing replication
    ensure(f"authentication {wanted_auth}", replica.authentication in (wanted_auth, "CertificateAndKerberos"),
           lambda: setattr(replica, "authentication", wanted_auth))
    port_field = "kerberos_port" if authentication == "Kerberos" else "certificate_port"
    ensure(f"{authentication} port {port}", getattr(replica, port_field) == port,
           lambda: setattr(replica, port_field, port))
    if thumbprint is not None:
        ensure(f"certificate {thumbprint}", (replica.certificate_thumbprint or "").upper() == thumbprint,
               lambda: setattr(replica, "certificate_thumbprint", thumbprint))
    if allowed == "*":
        ensure("replication allowed from any server", replica.allowed_from_any_server,
               lambda: setattr(replica, "allowed_from_any_server", True))
        ensure(f"default storage location {storage}", (replica.storage_path or "").casefold() == storage.casefold(),
               lambda: setattr(replica, "storage_path", storage))
    else:
        _ensure_entry(ensure, replica, allowed, storage)

    rule_name = firewall_rule_name(authentication, port)
    rule = host.rule(rule_name)
    ensure(f"firewall rule '{rule_name}'", rule is not None and rule.enabled and rule.local_port == port,
           lambda: _open(host, rule, rule_name, port))

    if changed:
        context.changed()
        run.info(f"{host.fqdn}: changed {len(changed)} setting(s), {len(already)} already in place.")
    else:
        run.info(f"{host.fqdn} is already a replica server for {authentication} on TCP {port}; nothing changed.")
    return run.emit({"host": host.fqdn, "changed": changed, "already": already, "settings": {
        "enabled": replica.enabled, "authentication": replica.authentication,
        "kerberos_port": replica.kerberos_port, "certificate_port": replica.certificate_port,
        "storage_path": replica.storage_path, "allowed_from_any_server": replica.allowed_from_any_server,
        "allowed_primary_servers": [e.allowed_primary_server for e in replica.authorization_entries],
        "open_firewall_rules": [r.display_name for r in host.firewall_rules if r.enabled],
    }})


def _certificate(run: ScriptRun, host: HostState, given: str | None) -> str:
    if given:
        if given.upper() not in (c.upper() for c in host.certificates):
            raise run.fail(f"Certificate {given.upper()} is not in Cert:\\LocalMachine\\My on {host.fqdn}.")
        return given.upper()
    if not host.certificates:
        raise run.fail(f"No certificate for Server Authentication issued to {host.fqdn} in "
                       "Cert:\\LocalMachine\\My; enroll one or pass -CertificateThumbprint.")
    return host.certificates[0].upper()


def _ensure_entry(ensure, replica, allowed: str, storage: str) -> None:
    entry = next((e for e in replica.authorization_entries
                  if e.allowed_primary_server.casefold() == allowed.casefold()), None)

    def add() -> None:
        if entry is not None:
            entry.storage_path = storage
        else:
            replica.authorization_entries.append(AuthorizationEntry(allowed, storage, TRUST_GROUP))
        replica.allowed_from_any_server = False

    ensure(f"replication allowed from {allowed} to {storage}",
           entry is not None and entry.storage_path.casefold() == storage.casefold()
           and not replica.allowed_from_any_server, add)


def _open(host: HostState, rule: FirewallRule | None, name: str, port: int) -> None:
    if rule is None:
        host.firewall_rules.append(FirewallRule(name, port, enabled=True))
    else:
        rule.enabled, rule.local_port = True, port
