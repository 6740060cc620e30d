"""The site file: one DR pairing written down as code (ARCHITECTURE principle 1, "Plan as code").

A site file (``include/sites/<name>.yaml``) names the vault, both VMM servers by their Airflow
connection ids, the clouds to pair, the network mappings, the replication policy, the VMs in
scope and the drill. Every DAG of a site is built from it at parse time, so this module imports
nothing heavier than pydantic and PyYAML, never opens a socket, and turns every way a file can be
wrong (bad YAML, hostile YAML, unknown keys, impossible values, secrets) into one
:class:`SiteFileError` whose message names the file and each bad field with what is allowed.
Secrets never live here: only Airflow connection ids.

Parsing cost matters (every DAG file validates its site files each time the dag-processor parses
it; ``bench/dag_parse.py`` measures it): the models build their validator once, on first use
(``defer_build``), annotations are real objects rather than strings pydantic would have to
compile, a valid file is read by libyaml with the same refusals as the pure-Python loader (which
still reads every file libyaml or the checks refuse, so each problem keeps one message), and
workers validate only the file of the site they work on, once per process while it is unchanged
(:func:`load_site_named`).
"""

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from datetime import date, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

MAX_FILE_BYTES = 256 * 1024  # a real site file is a few KiB; anything bigger is a mistake or an attack
MAX_NESTING = 20  # a site file nests 5 deep; this bounds what a hostile file can make the parser do
MAX_PROBLEMS_SHOWN = 20
DURATION_FORMS = "write a duration like 90s, 15m, 12h, 2d (or combined, 1h30m) or ISO 8601 like PT15M"
_MAX_DURATION = timedelta(days=30)


# ----------------------------------------------------------------------------------------- errors
class SiteFileError(ValueError):
    """A site file cannot be used. ``str()`` is one message: a ``<file>: <field>: <problem>`` line per problem."""

    def __init__(self, path: str | os.PathLike, message: str | None = None, problems: list[str] | None = None):
        self.path = os.fspath(path)
        self.problems = list(problems or [message or "cannot be used"])
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"... and {len(self.problems) - MAX_PROBLEMS_SHOWN} more problems")
        super().__init__("\n".join(f"{self.path}: {p}" for p in shown))


class _Problems(ValueError):
    """Cross-field problems, each at its own field (pydantic would put them all on the model)."""

    def __init__(self, items: list[tuple[tuple, str]]):
        self.items = items
        super().__init__("; ".join(f"{_loc(loc)}: {msg}" for loc, msg in items))


def _show(value: Any) -> str:
    """A value as a message quotes it: short, and never a whole mapping."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and value.bit_length() > 128:
        return "a very large number"
    if isinstance(value, (int, float, str)):
        text = repr(value).replace("\\\\", "\\")  # C:\\Installers reads as typed: C:\Installers
        return text if len(text) <= 60 else text[:56] + "...'"
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, (list, tuple, set)) else f"a {type(value).__name__}"


def _loc(loc: tuple) -> str:
    """``drill.probes[0].port``; a key that is not a plain name is quoted (``recovery['\\x1e']``)."""
    parts = (f"[{p}]" if isinstance(p, int) else f".{p}" if re.fullmatch(r"[A-Za-z_][\w-]{0,63}", str(p))
             else f"[{_show(str(p))}]" for p in loc)
    return "".join(parts).lstrip(".") or "(top level)"


def _fmt(delta: timedelta) -> str:
    seconds, parts = int(delta.total_seconds()), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def format_duration(delta: timedelta) -> str:
    """A duration as a site file writes it (``1h30m``), for messages and DAG docs."""
    return _fmt(delta)


# ------------------------------------------------------------------------------- value types
def _text(rule: str, pattern: str, lower: bool = False) -> Any:
    """A string type checked against ``pattern``; the error says ``rule`` (what is allowed)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        value = value.lower() if lower else value
        if not compiled.fullmatch(value):
            raise ValueError(f"{_show(value)} is not allowed; expected {rule}")
        return value
    return Annotated[str, AfterValidator(check)]


def _int(low: int, high: int) -> Any:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range; allowed: {low} to {high}")
        return value
    return Annotated[int, AfterValidator(check)]


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_WINPATH = r'(?:[A-Za-z]:\\|\\\\[A-Za-z0-9._-]+\\[^\\/:*?"<>|\x00-\x1f]+\\?)[^/:*?"<>|\x00-\x1f]*'
SiteName = _text("lower-case letters, digits, '_' and '-', starting with a letter, at most 64 "
                 "(it becomes part of DAG ids such as asr_deploy__<name>)", r"[a-z][a-z0-9_-]{0,63}")
ConnId = _text("an Airflow connection id: letters, digits, '_', '.' and '-' (e.g. winrm_vmm_ams_01)",
               r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,249}")
Fqdn = _text("a fully qualified host name such as vmm-ams-01.corp.example.com",
             rf"(?=.{{4,253}}$){_LABEL}(?:\.{_LABEL})+", lower=True)
Guid = _text("a GUID such as f11fc8de-3eb4-49c8-8f8d-e0e973e1d036",
             r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", lower=True)
ResourceGroup = _text("1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'", r"[\w.()-]{0,89}[\w()-]")
VaultName = _text("2-50 letters, digits and hyphens, starting with a letter (Azure's vault naming rule)",
                  r"[A-Za-z][A-Za-z0-9-]{1,49}")
Region = _text("an Azure region's short name such as westeurope", r"[a-z][a-z0-9]{2,39}", lower=True)
ObjectName = _text("1-256 characters without quotes, '$', '`', '*', '?' or control characters, and no "
                   "leading or trailing space", r"(?! )[^\x00-\x1f\x7f\"'`$*?]{1,256}(?<! )")
Pattern = _text("a VM name or a wildcard pattern (* and ?), 1-256 characters", r"[^\x00-\x1f\x7f]{1,256}")
PolicyName = _text("1-64 letters, digits, '_' and '-', starting with a letter or digit", r"[A-Za-z0-9][\w-]{0,63}")
WindowsPath = _text(r"an absolute Windows path (D:\folder) or a share (\\server\share\folder)", _WINPATH)
Installer = _text(r"an absolute Windows path on the server (C:\Installers\x.exe), a share "
                  r"(\\server\share\x.exe) or an https:// URL", rf"{_WINPATH}|https://[^\s/@?#]+(?:[/?#]\S*)?")
ClassPath = _text("a dotted import path such as airflow.providers.slack.notifications.slack.SlackNotifier",
                  r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
UrlPath = _text("a URL path starting with / (no spaces), at most 1024 characters", r"/\S{0,1023}")
Port = _int(1, 65535)

_SHORT_DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,8})s)?")
_ISO_DURATION = re.compile(r"P(?:(\d{1,6})D)?(?:T(?:(\d{1,6})H)?(?:(\d{1,6})M)?(?:(\d{1,8})S)?)?")


def _duration(value: Any) -> timedelta:
    """Durations are written as text (``15m``, ``PT15M``); bare numbers are refused as ambiguous."""
    if isinstance(value, timedelta):
        delta = value
    else:
        text = value.strip() if isinstance(value, str) else ""
        match = _ISO_DURATION.fullmatch(text.upper()) if text[:1] in "Pp" else _SHORT_DURATION.fullmatch(text)
        if not text or not match or not any(match.groups()) or text.upper().endswith("T"):
            raise ValueError(f"{_show(value)} is not a duration; {DURATION_FORMS}")
        d, h, m, s = (int(g or 0) for g in match.groups())
        delta = timedelta(days=d, hours=h, minutes=m, seconds=s)
    if not timedelta(seconds=1) <= delta <= _MAX_DURATION:
        raise ValueError(f"{_show(value) if not isinstance(value, timedelta) else _fmt(value)} is out of range; "
                         f"allowed: 1s to 30d")
    return delta


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _start_time(value: Any) -> Any:
    """``immediately`` or ``HH:MM``; YAML 1.1 reads an unquoted 02:30 as the number 150, so say so."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"YAML read the unquoted time as the number {value}; write it in quotes, like \"02:30\"")
    if isinstance(value, str) and value != "immediately":
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value)
        if not match:
            raise ValueError(f"{_show(value)} is not allowed; allowed: immediately, or a time of day HH:MM (24 h)")
        return f"{int(match[1]):02d}:{match[2]}"
    return value


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo  # stdlib; reads the local tz database, no network

    ok = len(value) <= 64 and re.fullmatch(r"[A-Za-z][\w+-]*(?:/[A-Za-z0-9][\w+-]*){0,3}", value)
    try:
        ok = ok and ZoneInfo(value) is not None
    except Exception:  # ZoneInfoNotFoundError, ValueError, or an unreadable tz file
        ok = False
    if not ok:
        raise ValueError(f"{_show(value)} is not a known time zone; use an IANA name such as Europe/Amsterdam or UTC")
    return value


_CRON_PRESETS = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}


def _cron(value: str) -> str:
    """A 5-field cron expression or a cron preset; checked with croniter when it is installed."""
    text = " ".join(value.split())
    valid = text in _CRON_PRESETS or bool(re.fullmatch(r"(?:[\w*/,?#-]+ ){4}[\w*/,?#-]+", text))
    if valid and text not in _CRON_PRESETS:
        try:
            from croniter import croniter
        except ImportError:  # the 5-field shape check above is all we can do
            croniter = None
        try:
            valid = croniter is None or bool(croniter.is_valid(text))
        except Exception:
            valid = False
    if not valid:
        raise ValueError(f"{_show(value)} is not a cron schedule; write 5 fields (minute hour day month weekday, "
                         f"e.g. \"0 2 * * 6\") or a preset such as @daily, or null for manual drills only")
    return text


# ------------------------------------------------------------------------------------- models
class _Model(BaseModel):
    """Strict (no "300" for 300, no "yes" for true), unknown keys refused, immutable once loaded."""

    # defer_build: only Site's validator is ever needed, built on the first validation.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class AzureTarget(_Model):
    """Where the Recovery Services vault lives and which Airflow connection reaches Azure."""

    conn_id: ConnId = Field(description="Airflow connection (type azure_site_recovery, or azure) for Resource "
                                        "Manager; it holds the service principal's secret, so this file never does.")
    subscription_id: Guid = Field(description="Azure subscription of the vault.")
    resource_group: ResourceGroup = Field(description="Resource group of the vault (it must exist).")
    vault_name: VaultName = Field(description="Recovery Services vault; created in step 5 if missing.")
    region: Region = Field(description="Azure region of the vault, short name (westeurope).")


class VmmServer(_Model):
    """A VMM server: where the ASR Provider is installed and registered (step 6)."""

    fqdn: Fqdn = Field(description="Fully qualified name of the VMM server.")
    psrp_conn_id: ConnId = Field(description="Airflow psrp connection to the VMM server (WinRM, PowerShell).")
    friendly_name: ObjectName | None = Field(None, description="Name the server registers under in the vault "
                                                               "(DRConfigurator /vmmfriendlyname); default: fqdn.")
    provider_installer: Installer = Field(description="AzureSiteRecoveryProvider.exe: a path on the VMM server, "
                                                      "a share, or an https URL.")

    @property
    def name_in_vault(self) -> str:
        """The fabric's friendly name in the vault."""
        return self.friendly_name or self.fqdn


class HyperVHost(_Model):
    """A Hyper-V host of a site: recovery hosts are made replica servers in step 4."""

    fqdn: Fqdn = Field(description="Fully qualified name of the host.")
    psrp_conn_id: ConnId = Field(description="Airflow psrp connection to the host.")


class VmmSite(_Model):
    """One side of the pairing: its VMM server and the Hyper-V hosts the DAGs touch."""

    vmm: VmmServer = Field(description="The site's VMM server.")
    hyperv_hosts: list[HyperVHost] = Field([], description="Hosts prepared by the DAGs: on the recovery side for "
                                                           "Hyper-V Replica (step 4), on the primary side only for "
                                                           "the Recovery Services agent.")


class CloudPairing(_Model):
    """A primary VMM cloud and the recovery cloud its VMs replicate to (step 8)."""

    primary_cloud: ObjectName = Field(description="VMM cloud at the primary site.")
    recovery_cloud: ObjectName = Field(description="VMM cloud at the recovery site.")


class NetworkMapping(_Model):
    """Where a replica's NIC connects after failover; without a mapping it comes up unconnected (step 7)."""

    primary_network: ObjectName = Field(description="VM network at the primary site.")
    recovery_network: ObjectName = Field(description="VM network at the recovery site that takes its place.")


class InitialReplication(_Model):
    """How the first full copy of each VM travels: over the WAN, or on disks shipped by hand."""

    method: Literal["over_network", "offline"] = Field("over_network", description="over_network copies over "
                                                       "the replication link; offline exports to disk and imports.")
    start: Annotated[str, BeforeValidator(_start_time)] = Field(
        "immediately", description="immediately, or a time of day HH:MM (quoted) to start network copies.")
    offline_export_path: WindowsPath | None = Field(None, description="offline only: where the primary host "
                                                                      "exports the initial copy.")
    offline_import_path: WindowsPath | None = Field(None, description="offline only: where the recovery host "
                                                                      "imports it from.")

    @model_validator(mode="after")
    def _paths_iff_offline(self) -> Self:
        problems = []
        for field in ("offline_export_path", "offline_import_path"):
            if self.method == "offline" and not getattr(self, field):
                problems.append(((field,), "is required when method is offline"))
            if self.method == "over_network" and getattr(self, field):
                problems.append(((field,), "is only used when method is offline; remove it or set method: offline"))
        if self.method == "offline" and self.start != "immediately":
            problems.append((("start",), "applies to over_network only; an offline copy starts when you import it"))
        if problems:
            raise _Problems(problems)
        return self


_DELETION_READ_BACK = {"Required": "SecondaryVMOnRecoveryCloud", "NotRequired": "None"}


class ReplicationPolicy(_Model):
    """The Hyper-V Replica policy every pairing of this site uses (step 8; ASR facts section 3, step 5)."""

    name: PolicyName = Field(description="Name of the policy in the vault.")
    provider: Literal["HyperVReplica2012R2", "HyperVReplica2012"] = Field(
        "HyperVReplica2012R2", description="HyperVReplica2012R2 for Windows Server 2012 R2 and later hosts; "
                                           "HyperVReplica2012 for 2012 hosts (fixed 300 s copies).")
    copy_frequency_seconds: Literal[30, 300, 900] = Field(300, description="How often changes are sent; "
                                                                           "HyperVReplica2012 allows 300 only.")
    recovery_points: _int(0, 24) = Field(0, description="Hourly recovery points kept (hours of retention); 0 = "
                                                        "latest only. At most 24 (15 for HyperVReplica2012).")
    app_consistent_snapshot_frequency_hours: _int(0, 12) = Field(
        0, description="Hours between VSS app-consistent snapshots; 0 = off, else 1-12, at most recovery_points.")
    compression: bool = Field(True, description="Compress replication traffic (costs host CPU, saves WAN).")
    initial_replication: InitialReplication = Field(default_factory=InitialReplication,
                                                    description="How the first full copy travels.")
    replication_port: Port = Field(8083, description="Port the recovery hosts listen on for replication.")
    authentication: Literal["kerberos", "certificate"] = Field(
        "kerberos", description="kerberos (same or trusted domains, unencrypted HTTP) or certificate (HTTPS).")
    delete_replica_on_disable: bool = Field(False, description="When protection is disabled, delete the replica "
                                                               "VM at the recovery site too.")

    @model_validator(mode="after")
    def _check_provider_limits(self) -> Self:
        problems = []
        if self.provider == "HyperVReplica2012" and self.copy_frequency_seconds != 300:
            problems.append((("copy_frequency_seconds",), f"{self.copy_frequency_seconds} is not allowed with "
                             "HyperVReplica2012 (it always copies every 5 minutes); allowed: 300"))
        if self.provider == "HyperVReplica2012" and self.recovery_points > 15:
            problems.append((("recovery_points",), f"{self.recovery_points} is out of range for "
                             "HyperVReplica2012; allowed: 0 to 15"))
        snapshots = self.app_consistent_snapshot_frequency_hours
        if snapshots > self.recovery_points:
            problems.append((("app_consistent_snapshot_frequency_hours",), f"{snapshots} is more than recovery_points "
                             f"({self.recovery_points}); a snapshot must land in a kept recovery point; "
                             f"allowed: 0 to {min(self.recovery_points, 12)}"))
        if problems:
            raise _Problems(problems)
        return self

    @property
    def copy_interval(self) -> timedelta:
        return timedelta(seconds=self.copy_frequency_seconds)

    def _start_timespan(self) -> str:
        start = self.initial_replication.start
        return "" if start == "immediately" else f"{start}:00"

    def to_provider_input(self) -> dict[str, Any]:
        """The ``providerSpecificInput`` of the policy PUT, exactly as New-AzRecoveryServicesAsrPolicy sends it."""
        body: dict[str, Any] = {"instanceType": self.provider}
        if self.provider == "HyperVReplica2012R2":
            body["replicationFrequencyInSeconds"] = self.copy_frequency_seconds
        initial = self.initial_replication
        body.update({
            "recoveryPoints": self.recovery_points,
            "applicationConsistentSnapshotFrequencyInHours": self.app_consistent_snapshot_frequency_hours,
            "compression": "Enable" if self.compression else "Disable",
            "initialReplicationMethod": "OverNetwork" if initial.method == "over_network" else "Offline",
            "onlineReplicationStartTime": self._start_timespan(),
        })
        if initial.method == "offline":
            body["offlineReplicationImportPath"] = initial.offline_import_path
            body["offlineReplicationExportPath"] = initial.offline_export_path
        body.update({
            "replicationPort": self.replication_port,
            "allowedAuthenticationType": 1 if self.authentication == "kerberos" else 2,
            "replicaDeletion": "Required" if self.delete_replica_on_disable else "NotRequired",
        })
        return body

    def matches_provider_details(self, details: dict[str, Any]) -> list[str]:
        """Compare with a policy's read-back ``providerSpecificDetails``; return what differs (empty: nothing).

        The service normalises what it stores (``Disabled`` for ``Disable``, ``replicaDeletionOption``
        for ``replicaDeletion``, an empty start time omitted), so the comparison is made in that form.
        Keys may be camelCase (the wire) or snake_case (an SDK model's ``as_dict()``). Each entry starts
        with the site-file field, e.g. ``copy_frequency_seconds: the vault has 30, the site file says 300``.
        """
        got = {re.sub(r"[^a-z0-9]", "", str(k).lower()): v for k, v in details.items()}

        def have(key: str, spellings: dict | None = None) -> Any:
            value = got.get(key)
            return spellings.get(value, value) if spellings and isinstance(value, str) else value

        initial = self.initial_replication
        checks = [("provider", self.provider, have("instancetype"))]
        if self.provider == "HyperVReplica2012R2":
            checks.append(("copy_frequency_seconds", self.copy_frequency_seconds,
                           have("replicationfrequencyinseconds")))
        deletion = have("replicadeletionoption") or have("replicadeletion", _DELETION_READ_BACK)
        checks += [
            ("recovery_points", self.recovery_points, have("recoverypoints")),
            ("app_consistent_snapshot_frequency_hours", self.app_consistent_snapshot_frequency_hours,
             have("applicationconsistentsnapshotfrequencyinhours")),
            ("compression", "Enabled" if self.compression else "Disabled",
             have("compression", {"Enable": "Enabled", "Disable": "Disabled"})),
            ("initial_replication.method", "OverNetwork" if initial.method == "over_network" else "Offline",
             have("initialreplicationmethod")),
            ("initial_replication.start", _timespan(self._start_timespan()),
             _timespan(have("onlinereplicationstarttime"))),
            ("initial_replication.offline_export_path", (initial.offline_export_path or "").lower(),
             str(have("offlinereplicationexportpath") or "").lower()),
            ("initial_replication.offline_import_path", (initial.offline_import_path or "").lower(),
             str(have("offlinereplicationimportpath") or "").lower()),
            ("replication_port", self.replication_port, have("replicationport")),
            ("authentication", 1 if self.authentication == "kerberos" else 2,
             have("allowedauthenticationtype", {"Kerberos": 1, "Certificate": 2})),
            ("delete_replica_on_disable", _DELETION_READ_BACK["Required" if self.delete_replica_on_disable
                                                              else "NotRequired"], deletion),
        ]
        return [f"{field}: the vault has {_show(actual)}, the site file says {_show(wanted)}"
                for field, wanted, actual in checks if wanted != actual]


def _timespan(value: Any) -> str | None:
    """A .NET TimeSpan text as hh:mm:ss, so 02:30 and 02:30:00 compare equal; empty or absent is None."""
    if not value:
        return None
    match = re.fullmatch(r"(?:\d+\.)?(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?", str(value).strip())
    return f"{int(match[1]):02d}:{match[2]}:{match[3] or '00'}" if match else str(value)


class RecoveryServicesAgent(_Model):
    """The Recovery Services (MARS) agent on the primary hosts: needed only when Azure is the DR target."""

    install: bool = Field(False, description="Install the agent on the primary hosts. VMM-to-VMM replication "
                                             "does not use it (Hyper-V Replica moves the data).")
    installer_path: Installer | None = Field(None, description="MARSAgentInstaller.exe (path, share or https "
                                                               "URL); required when install is true.")

    @model_validator(mode="after")
    def _installer_when_installing(self) -> Self:
        if self.install and not self.installer_path:
            raise _Problems([(("installer_path",), "is required when install is true")])
        return self


class VmScope(_Model):
    """Which VMs of one primary cloud are protected: include patterns minus exclude patterns."""

    cloud: ObjectName = Field(description="A primary cloud named in clouds.")
    include: list[Pattern] = Field(["*"], min_length=1, description="VM names or wildcards (* ?), "
                                                                    "case-insensitive.")
    exclude: list[Pattern] = Field([], description="VM names or wildcards taken out again.")


class Scope(_Model):
    """The VMs step 9 protects, and how hard it may push the WAN link while doing it."""

    vms: list[VmScope] = Field([], description="One entry per primary cloud whose VMs are protected; a paired "
                                               "cloud without an entry has no VM in scope.")
    max_concurrent_initial_replications: _int(1, 64) = Field(4, description="Initial replications running at "
                                                                            "once (they share the WAN link).")
    initial_replication_timeout: Duration = Field(timedelta(hours=12), description="Longest wait for one VM's "
                                                                                   "initial replication.")
    enable_job_timeout: Duration = Field(timedelta(hours=1), description="Longest wait for one EnableDr job.")

    def covers(self, cloud: str, vm: str) -> bool:
        """True when the site file puts VM ``vm`` of primary cloud ``cloud`` in scope (names case-insensitive)."""
        name = vm.casefold()
        for rule in self.vms:
            if rule.cloud.casefold() == cloud.casefold():
                return (any(fnmatchcase(name, p.casefold()) for p in rule.include)
                        and not any(fnmatchcase(name, p.casefold()) for p in rule.exclude))
        return False


class Probe(_Model):
    """A check run from the recovery VMM against a test VM after it is up with a heartbeat."""

    kind: Literal["tcp", "http"] = Field(description="tcp: the port accepts a connection; http: GET path answers "
                                                     "with a status below 400.")
    port: Port = Field(description="TCP port on the test VM.")
    path: UrlPath | None = Field(None, description="http only: the path to GET (default /).")
    vm: Pattern | None = Field(None, description="VM name or wildcard the probe applies to; default every VM.")

    @model_validator(mode="after")
    def _path_for_http_only(self) -> Self:
        if self.kind == "tcp" and self.path is not None:
            raise _Problems([(("path",), "is only used by http probes")])
        return self


class Notifier(_Model):
    """Who hears about a failed drill: an Airflow notifier class, or a webhook connection."""

    kind: Literal["airflow_notifier", "webhook"] = Field(description="airflow_notifier or webhook.")
    classpath: ClassPath | None = Field(None, description="airflow_notifier: import path of a BaseNotifier class.")
    kwargs: dict[str, Any] = Field({}, description="airflow_notifier: arguments for the class (connection ids, "
                                                   "channels; never secrets).")
    conn_id: ConnId | None = Field(None, description="webhook: Airflow http connection the failure is POSTed to.")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        needs, unused = (("classpath",), ("conn_id",)) if self.kind == "airflow_notifier" else (("conn_id",), (
            "classpath", "kwargs"))
        problems = [((f,), f"is required when kind is {self.kind}") for f in needs if not getattr(self, f)]
        problems += [((f,), f"is not used when kind is {self.kind}") for f in unused if getattr(self, f)]
        if problems:
            raise _Problems(problems)
        return self


class Drill(_Model):
    """The scheduled test failover (step 10): when, where, what counts as ready, and the targets."""

    schedule: Annotated[str, AfterValidator(_cron)] | None = Field(None, description="Cron (5 fields) or preset; "
                                                                                     "null = manual drills only.")
    timezone: Annotated[str, AfterValidator(_timezone)] = Field("UTC", description="IANA time zone of schedule.")
    test_network: ObjectName | None = Field(None, description="Isolated recovery-side VM network the test VMs "
                                                              "join; null = no network.")
    allow_warning_health: bool = Field(False, description="Let VMs with Warning replication health pass the gate.")
    on_gate_failure: Literal["skip", "fail"] = Field("skip", description="A VM that fails the readiness gate is "
                                                                         "skipped (reported) or fails the run.")
    rpo_target: Duration = Field(timedelta(hours=1), description="Recovery point objective the report compares with.")
    max_recovery_point_age: Duration | None = Field(None, description="Gate: the newest recovery point must be "
                                                                      "younger than this; default rpo_target.")
    rto_target: Duration = Field(timedelta(hours=1), description="Recovery time objective: drill start to a "
                                                                 "verified test VM.")
    verify_timeout: Duration = Field(timedelta(minutes=30), description="Longest wait for a test VM to run with a "
                                                                        "heartbeat and pass its probes.")
    probes: list[Probe] = Field([], description="Extra checks per test VM.")
    cleanup_when: Literal["all_verified", "vm_verified"] = Field(
        "all_verified", description="When a VM drilled on its own is cleaned up: all_verified keeps every test VM "
                                    "up until the last is verified (checks across tiers need the others up); "
                                    "vm_verified cleans each up once its own verification ends, so no VM waits "
                                    "for the slowest. Recovery plans are cleaned up as one, at the end.")
    notifier: Notifier | None = Field(None, description="Called when a drill fails; null = none.")

    @property
    def recovery_point_age_limit(self) -> timedelta:
        """What the readiness gate holds each VM's newest recovery point to."""
        return self.max_recovery_point_age or self.rpo_target


class Timeouts(_Model):
    """How long the deployment and drill DAGs wait before calling a step stuck."""

    asr_job: Duration = Field(timedelta(hours=1), description="Any ASR job waited on (policy, pairing, mapping, "
                                                              "test failover and its cleanup).")
    provider_registration: Duration = Field(timedelta(minutes=30), description="From provider registration to a "
                                                                               "connected fabric in the vault.")
    poll_interval: Duration = Field(timedelta(seconds=30), description="How often a waiting task looks on its own "
                                                                       "(free replication slots, a test VM's checks "
                                                                       "on the recovery VMM); waits on jobs and "
                                                                       "replicating VMs look every watch_interval.")
    watch_interval: Duration = Field(timedelta(seconds=5), description="How often a wait on an ASR job or on a "
                                                                      "replicating VM looks again (never less often "
                                                                      "than poll_interval). Such waits share their "
                                                                      "reads: one list of running jobs per vault and "
                                                                      "one list of items per cloud, however many VMs "
                                                                      "wait, so a short interval notices a finished "
                                                                      "job within seconds for a few reads a minute.")
    plan_poll_interval: Duration = Field(timedelta(seconds=10), description="How often a drill reads a recovery "
                                                                            "plan's job: one read per plan, however "
                                                                            "many VMs it holds. A group's members are "
                                                                            "verified once a read finds it up, so the "
                                                                            "interval bounds how late, and how much "
                                                                            "the plan's measured RTO overstates.")

    @property
    def watch_seconds(self) -> float:
        """Seconds between a job or replication wait's looks: ``watch_interval``, or ``poll_interval`` if shorter."""
        return min(self.watch_interval, self.poll_interval).total_seconds()


# ------------------------------------------------------------------------------ recovery plans
#: ASR's limits for one recovery plan (recovery-plan-overview.md, site-recovery-create-recovery-plans.md)
MAX_PLAN_VMS = 100
MAX_PLAN_GROUPS = 7
#: ASR stops a recovery plan script after 600 s (hyper-v-vmm-recovery-script.md)
MAX_SCRIPT_TIMEOUT = timedelta(seconds=600)
#: failover types and directions an action may apply to, as the site file writes them
FAILOVER_TYPES = ("test", "planned", "unplanned")
FAILOVER_DIRECTIONS = ("primary_to_recovery", "recovery_to_primary")

PlanName = _text("1-64 letters, digits and hyphens, starting with a letter (ASR's recovery plan naming rule)",
                 r"[A-Za-z][A-Za-z0-9-]{0,63}")
ActionName = _text("1-128 characters without quotes, '$', '`' or control characters",
                   r"(?! )[^\x00-\x1f\x7f\"'`$]{1,128}(?<! )")
LibraryScript = _text(r"a .ps1 path relative to the VMM library share, starting with \ (e.g. "
                      r"\RPScripts\Set-SqlAlias.ps1: the share \\<vmm>\MSSCVMMLibrary\RPScripts holds it)",
                      r'\\(?:[^\\/:*?"<>|\x00-\x1f]+\\)*[^\\/:*?"<>|\x00-\x1f]+\.[pP][sS]1')
AirflowUser = _text("an Airflow user name (letters, digits, '_', '.', '@' and '-')", r"[\w.@-]{1,256}")


class PlanAction(_Model):
    """One step before or after a group boots: a VMM library script, a manual action, or an Airflow-side check.

    Scripts and manual actions are ASR's own recovery plan actions (the plan's job runs them);
    a check is ours: a probe Airflow runs from the recovery VMM between groups, which ASR does
    not offer.
    """

    kind: Literal["script", "manual", "check"] = Field(description="script: a VMM library script ASR runs; manual: "
                                                                   "instructions a person carries out and confirms; "
                                                                   "check: a probe Airflow runs between groups.")
    name: ActionName = Field(description="The action's name in the plan (unique within the plan).")
    path: LibraryScript | None = Field(None, description="script: path relative to the VMM library share; the "
                                                         "script must exist in both sites' libraries.")
    side: Literal["primary", "recovery"] | None = Field(None, description="script: which site's VMM server runs it.")
    timeout: Duration | None = Field(None, description="script: at most 600s (ASR's limit; default 600s); manual: "
                                                       "how long a person has to confirm (default 1h).")
    instructions: str | None = Field(None, min_length=1, max_length=2000,
                                     description="manual: what the person must do and confirm.")
    approvers: list[AirflowUser] = Field([], description="manual: Airflow users who may confirm; empty = any user "
                                                         "allowed to act on the DAG run.")
    probe: Probe | None = Field(None, description="check: the probe (tcp or http), as in drill.probes; its vm "
                                                  "must name a VM of the plan.")
    failover_types: list[Literal["test", "planned", "unplanned"]] = Field(
        list(FAILOVER_TYPES), min_length=1, description="script and manual: the failover types the action runs in.")
    directions: list[Literal["primary_to_recovery", "recovery_to_primary"]] = Field(
        list(FAILOVER_DIRECTIONS), min_length=1, description="script and manual: the failover directions it runs in.")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        needs = {"script": ("path", "side"), "manual": ("instructions",), "check": ("probe",)}[self.kind]
        unused = {"script": ("instructions", "approvers", "probe"), "manual": ("path", "side", "probe"),
                  "check": ("path", "side", "timeout", "instructions", "approvers")}[self.kind]
        problems = [((f,), f"is required when kind is {self.kind}") for f in needs if getattr(self, f) is None]
        problems += [((f,), f"is not used when kind is {self.kind}") for f in unused if getattr(self, f)]
        if self.kind == "script" and self.timeout is not None and self.timeout > MAX_SCRIPT_TIMEOUT:
            problems.append((("timeout",), f"{_fmt(self.timeout)} is longer than ASR lets a recovery plan script "
                                           f"run; allowed: at most {_fmt(MAX_SCRIPT_TIMEOUT)}"))
        if self.kind == "check" and self.probe is not None and self.probe.vm is None:
            problems.append((("probe", "vm"), "is required in a plan's check: name the VM of the plan it probes"))
        for field in ("failover_types", "directions"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                problems.append(((field,), "lists a value twice"))
        if problems:
            raise _Problems(problems)
        return self

    @property
    def script_timeout(self) -> timedelta:
        return self.timeout or MAX_SCRIPT_TIMEOUT

    @property
    def manual_timeout(self) -> timedelta:
        return self.timeout or timedelta(hours=1)


class PlanGroup(_Model):
    """One boot group: its VMs start together, after every earlier group and its actions."""

    group: _int(1, MAX_PLAN_GROUPS) = Field(description="The group's number: 1 boots first; groups are numbered "
                                                        "1, 2, 3... in the order they are listed.")
    vms: list[ObjectName] = Field(min_length=1, description="VM names (as in VMM) that boot in this group.")
    pre: list[PlanAction] = Field([], description="Actions before the group's VMs start.")
    post: list[PlanAction] = Field([], description="Actions after the group's VMs are up.")


class RecoveryPlan(_Model):
    """An application recovered as one: its VMs in ordered boot groups, with actions between them."""

    name: PlanName = Field(description="The recovery plan's name in the vault.")
    description: str = Field("", max_length=2000, description="Free text shown in the drill report.")
    rto_target: Duration | None = Field(None, description="The plan's recovery time objective (drill start to the "
                                                          "last group verified); default drill.rto_target.")
    unattended: Literal["auto_confirm", "skip"] = Field("skip", description="What a scheduled (unattended) drill "
                                                                            "does with the plan's manual actions: "
                                                                            "confirm them itself (the report says "
                                                                            "so) or skip the plan.")
    groups: list[PlanGroup] = Field(min_length=1, description=f"Boot groups in order; at most {MAX_PLAN_GROUPS}.")

    @model_validator(mode="after")
    def _check_groups(self) -> Self:
        p: list[tuple[tuple, str]] = []
        if len(self.groups) > MAX_PLAN_GROUPS:
            p.append((("groups",), f"has {len(self.groups)} groups; ASR allows at most {MAX_PLAN_GROUPS} per plan"))
        for i, group in enumerate(self.groups):
            if group.group != i + 1:
                p.append((("groups", i, "group"), f"is {group.group} but this is group {i + 1} in order: number the "
                          f"groups 1, 2, 3... without gaps, in the order they boot"))
        vms = [(("groups", i, "vms", j), vm) for i, g in enumerate(self.groups) for j, vm in enumerate(g.vms)]
        if len(vms) > MAX_PLAN_VMS:
            p.append((("groups",), f"holds {len(vms)} VMs; ASR allows at most {MAX_PLAN_VMS} per plan"))
        seen: dict[str, tuple] = {}
        for loc, vm in vms:
            if vm.casefold() in seen:
                p.append((loc, f"{_show(vm)} is already in this plan at {_loc(seen[vm.casefold()])}; a VM boots in "
                          "one group"))
            seen.setdefault(vm.casefold(), loc)
        names: dict[str, tuple] = {}
        for i, group in enumerate(self.groups):
            for when in ("pre", "post"):
                for j, action in enumerate(getattr(group, when)):
                    loc = ("groups", i, when, j)
                    if action.name.casefold() in names:
                        p.append((loc + ("name",), f"{_show(action.name)} is already an action of this plan at "
                                  f"{_loc(names[action.name.casefold()])}"))
                    names.setdefault(action.name.casefold(), loc)
                    if action.kind == "check" and action.probe and action.probe.vm:
                        wanted = action.probe.vm.casefold()
                        booted = {vm.casefold() for g in self.groups[:i + 1] for vm in g.vms}
                        if when == "pre":
                            booted -= {vm.casefold() for vm in group.vms}
                        matched = [vm for vm in booted if fnmatchcase(vm, wanted)]
                        if not matched:
                            p.append((loc + ("probe", "vm"), f"{_show(action.probe.vm)} names no VM that is up at "
                                      f"this point of the plan (groups 1 to {i + 1 if when == 'post' else i})"))
                        elif len(matched) > 1:
                            p.append((loc + ("probe", "vm"), f"{_show(action.probe.vm)} matches {len(matched)} VMs of "
                                      "the plan; a check probes one VM: name it"))
        if p:
            raise _Problems(p)
        return self

    @property
    def vms(self) -> list[str]:
        """Every VM of the plan, in boot order."""
        return [vm for group in self.groups for vm in group.vms]

    def manual_actions(self, failover_type: str = "test", direction: str = "primary_to_recovery") -> list[PlanAction]:
        """The manual actions a failover of that type and direction meets, in the order the plan's job runs them."""
        return [a for g in self.groups for a in (*g.pre, *g.post)
                if a.kind == "manual" and failover_type in a.failover_types and direction in a.directions]

    def checks(self) -> list[PlanAction]:
        """The Airflow-side checks, in plan order."""
        return [a for g in self.groups for a in (*g.pre, *g.post) if a.kind == "check"]

    def check_vm(self, action: PlanAction) -> str:
        """The one VM of the plan a check probes (its probe's ``vm``, validated to match exactly one)."""
        wanted = str(action.probe.vm).casefold()
        return next(vm for vm in self.vms if fnmatchcase(vm.casefold(), wanted))

    def pauses(self, failover_type: str = "test", direction: str = "primary_to_recovery") -> list[PlanAction]:
        """Where the plan's job suspends, in order: its manual actions, and its checks (held by ASR as manual
        actions that the drill confirms once the probe passes), so the next group waits for each."""
        return [step for step in self.job_order(failover_type, direction) if isinstance(step, PlanAction)]

    def job_order(self, failover_type: str | None = "test", direction: str = "primary_to_recovery",
                  ) -> list[PlanGroup | PlanAction]:
        """What the plan's job meets, in order: each group's pauses before it, the group's boot, its pauses after.

        ``failover_type`` None: the pauses of a failover of any type (the type is the run's choice).
        """
        def pausing(actions: list[PlanAction]) -> list[PlanAction]:
            return [a for a in actions if a.kind == "check" or (
                a.kind == "manual" and (failover_type is None or failover_type in a.failover_types)
                and direction in a.directions)]

        return [step for g in self.groups for step in (*pausing(g.pre), g, *pausing(g.post))]


def _first_seen(items: list, attr: str, loc: tuple, what: str) -> list[tuple[tuple, str]]:
    """A problem for each value of ``attr`` (case-insensitive) already used by an earlier item."""
    seen: dict[str, int] = {}
    problems = []
    for i, item in enumerate(items):
        value = getattr(item, attr)
        if value.casefold() in seen:
            first = _loc(loc + (seen[value.casefold()],))
            problems.append((loc + (i, attr), f"{_show(value)} {what} (first at {first})"))
        seen.setdefault(value.casefold(), i)
    return problems


class Failover(_Model):
    """The real recovery (failover to the recovery site, failback to the primary): who approves, how long to wait."""

    approvers: list[AirflowUser] = Field(
        [], description="Airflow users who may approve each irreversible step of a failover or failback (the "
                        "failover itself, its commit or cancel, the reprotect). Empty: the failover and failback "
                        "DAGs refuse to run, since no step may change production without a named person.")
    approval_timeout: Duration = Field(timedelta(hours=4), description="Longest wait for an approval; then the run "
                                                                       "fails with nothing further changed.")
    verify_timeout: Duration = Field(timedelta(minutes=30), description="Longest wait for a recovered VM to run with "
                                                                        "a heartbeat and pass drill.probes (the "
                                                                        "checks a drill proves are the ones a "
                                                                        "recovery is verified by).")


class Site(_Model):
    """One DR pairing: the Azure vault, the two VMM sites, and everything the three DAGs need."""

    name: SiteName = Field(description="Site name used in DAG ids (asr_deploy__<name>); default: the file name.")
    description: str = Field("", max_length=2000, description="Free text shown in the DAGs' documentation.")
    azure: AzureTarget = Field(description="The vault and the Azure connection.")
    primary: VmmSite = Field(description="The production site.")
    recovery: VmmSite = Field(description="The DR site.")
    clouds: list[CloudPairing] = Field(min_length=1, description="Clouds to pair; a cloud appears once per side.")
    network_mappings: list[NetworkMapping] = Field([], description="VM network mappings, primary to recovery.")
    replication_policy: ReplicationPolicy = Field(description="The Hyper-V Replica policy of every pairing.")
    recovery_services_agent: RecoveryServicesAgent = Field(default_factory=RecoveryServicesAgent,
                                                           description="MARS agent on the primary hosts.")
    scope: Scope = Field(default_factory=Scope, description="VMs protected by step 9.")
    drill: Drill = Field(default_factory=Drill, description="Scheduled test failover (step 10).")
    failover: Failover = Field(default_factory=Failover, description="The real failover and failback, behind "
                                                                     "approvals.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Waits of the deployment and drill DAGs.")
    recovery_plans: list[RecoveryPlan] = Field([], description="Applications recovered as one, in boot groups; "
                                                               "drills drill them as plans.")

    def plan_named(self, name: str) -> RecoveryPlan:
        """The plan of that name (case-insensitive); a DAG built from this file asks only for its own plans."""
        return next(plan for plan in self.recovery_plans if plan.name.casefold() == name.casefold())

    def plan_of(self, vm: str) -> RecoveryPlan | None:
        """The recovery plan VM ``vm`` belongs to (names case-insensitive), if any."""
        wanted = vm.casefold()
        return next((plan for plan in self.recovery_plans if wanted in {v.casefold() for v in plan.vms}), None)

    def _check_recovery_plans(self) -> list[tuple[tuple, str]]:
        """Plans across the site: unique names, a VM in one plan, every VM in the scope of a paired cloud."""
        p = _first_seen(self.recovery_plans, "name", ("recovery_plans",), "names two plans")
        owner: dict[str, tuple] = {}
        for i, plan in enumerate(self.recovery_plans):
            for g, group in enumerate(plan.groups):
                for j, vm in enumerate(group.vms):
                    loc = ("recovery_plans", i, "groups", g, "vms", j)
                    first = owner.setdefault(vm.casefold(), loc)
                    if first[1] != i:
                        p.append((loc, f"{_show(vm)} is already in plan {self.recovery_plans[first[1]].name} "
                                  f"({_loc(first)}); a VM belongs to at most one plan"))
                    elif not any(self.scope.covers(rule.cloud, vm) for rule in self.scope.vms):
                        clouds = ", ".join(rule.cloud for rule in self.scope.vms) or "none"
                        p.append((loc, f"{_show(vm)} is not in the scope of any paired cloud (scope.vms covers: "
                                  f"{clouds}); a plan holds only VMs this site protects"))
        return p

    def dag_id(self, family: str) -> str:
        """The id of this site's DAG of ``family`` (``asr_deploy`` -> ``asr_deploy__lab``)."""
        return f"{family}__{self.name}"

    @model_validator(mode="after")
    def _check_plan(self) -> Self:
        """Rules across sections: two VMM servers, each cloud and network once, the recovery side not production."""
        p: list[tuple[tuple, str]] = []
        if self.primary.vmm.fqdn == self.recovery.vmm.fqdn:
            p.append((("recovery", "vmm", "fqdn"), f"{self.recovery.vmm.fqdn} is also the primary VMM server; the "
                      "recovery site needs its own VMM server"))
        hosts = [((side, "hyperv_hosts", i), h) for side in ("primary", "recovery")
                 for i, h in enumerate(getattr(self, side).hyperv_hosts)]
        for n, (loc, host) in enumerate(hosts):
            earlier = [other for other, h in hosts[:n] if h.fqdn == host.fqdn]
            if earlier:
                p.append((loc + ("fqdn",), f"{host.fqdn} is already listed at {_loc(earlier[0])}; a host belongs "
                          "to one site"))
        if not self.recovery.hyperv_hosts:
            p.append((("recovery", "hyperv_hosts"), "needs at least 1 host: step 4 makes them Hyper-V Replica servers"))
        if self.recovery_services_agent.install and not self.primary.hyperv_hosts:
            p.append((("primary", "hyperv_hosts"), "needs at least 1 host when recovery_services_agent.install "
                      "is true"))
        p += _first_seen(self.clouds, "primary_cloud", ("clouds",), "is paired twice; a cloud belongs to one pairing")
        p += _first_seen(self.clouds, "recovery_cloud", ("clouds",), "is paired twice; a cloud belongs to one pairing")
        maps = self.network_mappings
        p += _first_seen(maps, "primary_network", ("network_mappings",), "is mapped twice")
        primaries = {m.primary_network.casefold(): i for i, m in enumerate(maps)}
        test = (self.drill.test_network or "").casefold()
        for i, m in enumerate(maps):
            j = primaries.get(m.recovery_network.casefold(), i)
            if j != i:
                p.append((("network_mappings", i, "recovery_network"), f"{_show(m.recovery_network)} is a primary "
                          f"(production) network in network_mappings[{j}]; map to a recovery-side network"))
            if m.recovery_network.casefold() == test:
                p.append((("network_mappings", i, "recovery_network"), f"{_show(m.recovery_network)} is the drill's "
                          "test network (drill.test_network); drills must not share a production network"))
        paired = [c.primary_cloud for c in self.clouds]
        for i, rule in enumerate(self.scope.vms):
            if rule.cloud.casefold() not in {c.casefold() for c in paired}:
                p.append((("scope", "vms", i, "cloud"), f"{_show(rule.cloud)} is not a primary cloud in clouds; "
                          f"allowed: {', '.join(paired)}"))
        p += _first_seen(self.scope.vms, "cloud", ("scope", "vms"), "has two scope entries")
        p += self._check_recovery_plans()
        every = self.replication_policy.copy_interval
        for field in ("rpo_target", "max_recovery_point_age"):
            value = getattr(self.drill, field)
            if value is not None and value < every:
                p.append((("drill", field), f"{_fmt(value)} can never be met: the replication policy copies every "
                          f"{_fmt(every)}; allowed: at least {_fmt(every)}"))
        if p:
            raise _Problems(p)
        return self


# ------------------------------------------------------------------------------------- loading
class _Refused(Exception):
    """YAML the loader will not accept although PyYAML would (aliases, duplicate keys, ...)."""


class _StrictMappings:
    """Mapping checks shared by both loaders: no merge keys, no duplicate keys (PyYAML silently keeps
    the last), only text keys."""

    def construct_mapping(self, node, deep=False):
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(f"line {line}: merge keys (<<) are not allowed in a site file")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(f"line {line}: a key is a collection; keys must be names")
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise _Refused(f"line {line}: key {_show(key)} is not text; keys must be names (quote it: "
                               f"{_show(key_node.value).replace(chr(39), chr(34))})")
            if key in seen:
                raise _Refused(f"line {line}: duplicate key {_show(key)} (first on line {seen[key]}); each key once")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _SiteYamlLoader(_StrictMappings, yaml.SafeLoader):
    """SafeLoader without the traps: no anchors or aliases (billion laughs), no merge keys, no
    duplicate keys, only text keys, and bounded nesting. Its messages are the ones a DR engineer reads."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused(f"line {line}: anchors and aliases (&name, *name) are not allowed in a site file; "
                           "write each value out (a value starting with * or & must be quoted)")
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_NESTING:
                raise _Refused(f"line {line}: nested more than {MAX_NESTING} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


if getattr(yaml, "__with_libyaml__", False):
    class _FastSiteYamlLoader(_StrictMappings, yaml.CSafeLoader):
        """libyaml's parser and composer with the same mapping checks; anchors, aliases and nesting are
        checked on libyaml's events first (:func:`_parse_fast`)."""
else:  # PyYAML without libyaml: every file takes the pure-Python loader
    _FastSiteYamlLoader = None


class _UseThePythonLoader(Exception):
    """The fast path does not decide: the pure-Python loader reads the file and says what is wrong."""


# Constructs libyaml accepts and PyYAML refuses (found by comparing both on generated files).
# Tabs, the Unicode line breaks and a byte order mark inside the text (libyaml reads them differently),
# and a block scalar header followed by # (libyaml accepts it).
_LENIENT_LIBYAML = re.compile("[\t\x85\u2028\u2029\ufeff]|[|>][-+1-9]{0,2}#")


def _parse_fast(text: str) -> Any:
    """libyaml, about ten times faster, for a file both loaders accept; anything else raises."""
    # What the pure-Python reader refuses, or reads differently from libyaml.
    if yaml.reader.Reader.NON_PRINTABLE.search(text) or _LENIENT_LIBYAML.search(text):
        raise _UseThePythonLoader
    flow = [False]  # per open collection: written in flow style ({...} or [...])
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):  # events only: nothing is built yet
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) or getattr(event, "tag", None):
            raise _UseThePythonLoader  # a site file has no anchors, aliases or tags
        if isinstance(event, yaml.CollectionStartEvent):
            flow.append(flow[-1] or bool(event.flow_style))
            if len(flow) > MAX_NESTING:  # a scalar inside counts as one more level in the Python loader
                raise _UseThePythonLoader
        elif isinstance(event, yaml.CollectionEndEvent):
            flow.pop()
        elif isinstance(event, yaml.ScalarEvent) and flow[-1] and not event.style and "?" in event.value:
            raise _UseThePythonLoader  # PyYAML ends a plain scalar at ? inside {...} or [...]
    loader = _FastSiteYamlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _parse_yaml(text: str) -> Any:
    if _FastSiteYamlLoader is not None:
        try:
            return _parse_fast(text)
        except Exception:  # refused, invalid or unusual: the pure-Python loader gives the one message
            pass
    loader = _SiteYamlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(exc: Exception) -> str:
    if isinstance(exc, _Refused):
        return str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "cannot be parsed"
        if "'\\t'" in problem:
            return f"{where}indented with a tab; YAML needs spaces"
        hint = " (a value starting with * or & must be quoted)" if re.search(
            "alias|anchor", f"{problem} {exc.context}") else ""
        return f"{where}not valid YAML: {problem}{hint}"
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.position}: not valid YAML text: {exc.reason} (#x{exc.character:04x})" \
            if isinstance(exc.character, int) else f"not valid YAML text: {exc.reason}"
    if isinstance(exc, RecursionError):
        return f"nested too deeply (more than {MAX_NESTING} levels)"
    if "integer string conversion" in str(exc):
        return "holds a number thousands of digits long"
    return f"not a usable YAML value: {str(exc)[:200]}"  # e.g. a date such as 2024-13-45


def _secret_key(name: str) -> bool:
    """True for key names that say "secret" (clientSecret, api_key, sas_token), but not for ``*conn_id``."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    if squashed.endswith(("connid", "connids")):  # a connection id is where secrets are supposed to be named
        return False
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(w in squashed for w in ("password", "passwd", "secret", "token", "credential", "passphrase",
                                       "apikey", "privatekey", "accesskey", "accountkey", "connectionstring")) \
        or any(w in {"pwd", "pass", "key", "sas", "sig", "signature"} for w in words)


_SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY|AccountKey=|SharedAccessKey=|SharedAccessSignature|"
                           r"[?&]sig=|://[^/@\s:]+:[^/@\s]+@|\beyJ[\w-]{8,}\.[\w-]{8,}\.", re.IGNORECASE)
_SECRET_ADVICE = "secrets belong in an Airflow connection: store it there and name the connection's id here"


def _find_secrets(node: Any, loc: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Keys named like secrets (password, token, api_key, ...) and values shaped like secrets, never echoed."""
    if isinstance(node, dict):
        for key, value in node.items():
            if _secret_key(key) and value not in (None, "", [], {}):
                yield loc + (key,), f"looks like a secret; {_SECRET_ADVICE}"
            else:
                yield from _find_secrets(value, loc + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _find_secrets(value, loc + (i,))
    elif isinstance(node, str) and _SECRET_VALUE.search(node):
        yield loc, f"holds what looks like a secret (a key, signature or password); {_SECRET_ADVICE}"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (to list its keys when one is unknown)."""
    def inner(annotation: Any) -> type[BaseModel] | None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return next((m for m in map(inner, get_args(annotation)) if m), None)

    model: type[BaseModel] | None = Site
    for part in loc:
        if isinstance(part, str):
            field = model.model_fields.get(part) if model else None
            model = inner(field.annotation) if field else None
    return model


_TYPE_NAMES = {"string_type": "text", "int_type": "a whole number", "bool_type": "true or false",
               "list_type": "a list", "model_type": "a mapping", "dict_type": "a mapping",
               "timedelta_type": "a duration", "float_type": "a number"}


def _message(error: dict) -> str:
    """One pydantic error as a DR engineer reads it: what was found, what is allowed."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        model = _model_at(error["loc"][:-1])
        allowed = list(model.model_fields) if model else []
        import difflib  # only for a message

        close = difflib.get_close_matches(str(error["loc"][-1]), allowed, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown key{hint}; allowed keys here: {', '.join(allowed)}"
    if kind == "literal_error":
        allowed = str(ctx.get("expected", "")).replace(" or ", ", ").replace("'", "")
        return f"{_show(value)} is not allowed; allowed: {allowed}"
    if kind in _TYPE_NAMES:
        quote = " (put it in quotes)" if kind == "string_type" and isinstance(value, (int, float, date)) else ""
        return f"expected {_TYPE_NAMES[kind]}, got {_show(value)}{quote}"
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length')} characters"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} entry"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg'][:1].lower()}{error['msg'][1:]} (got {_show(value)})"


def _problems(exc: ValidationError) -> list[tuple[tuple, str]]:
    found = []
    for error in exc.errors(include_url=False):
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _Problems):
            found += [(tuple(error["loc"]) + sub, msg) for sub, msg in cause.items]
        else:
            found.append((tuple(error["loc"]), _message(error)))
    return found


def default_sites_dir() -> Path:
    """``$SITE_RECOVERY_INCLUDE_DIR/sites``, else the ``include/sites`` folder beside ``plugins``."""
    include = os.environ.get("SITE_RECOVERY_INCLUDE_DIR")
    return (Path(include).expanduser() if include else Path(__file__).resolve().parents[2] / "include") / "sites"


def _read_site_file(path: str | os.PathLike) -> bytes:
    """The bytes of a site file, refused when it is not a small regular file."""
    shown = os.fspath(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
            raise SiteFileError(shown, "is not a regular file")
        with open(path, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SiteFileError(shown, f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SiteFileError(shown, f"is larger than {MAX_FILE_BYTES // 1024} KiB; a site file is a few KiB")
    return data


def load_site(path: str | os.PathLike) -> Site:
    """Read and validate one site file; any problem raises :class:`SiteFileError` naming the file and field."""
    return _validate(os.fspath(path), _read_site_file(path))


def _validate(shown: str, data: bytes) -> Site:
    """The site in ``data`` (the bytes of file ``shown``), or :class:`SiteFileError`."""
    try:
        raw = _parse_yaml(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise SiteFileError(shown, f"byte {exc.start}: not UTF-8 text") from None
    except (yaml.YAMLError, _Refused, ValueError, OverflowError, RecursionError) as exc:
        raise SiteFileError(shown, _yaml_problem(exc)) from None
    if raw is None:
        raise SiteFileError(shown, "is empty; a site file is a mapping of settings (see include/sites/lab.yaml)")
    if not isinstance(raw, dict):
        raise SiteFileError(shown, f"must be a mapping of settings at the top level, not {_show(raw)}")
    problems: list[tuple[tuple, str]] = []
    if "name" not in raw:
        derived = Path(shown).stem.lower()
        raw = {"name": derived, **raw}
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", derived):
            problems.append((("name",), f"is not set, and the file name gives {_show(derived)}, which is not a "
                             "safe name (lower-case letters, digits, '_', '-'; starting with a letter); set name:"))
            raw["name"] = "site"
    secrets = list(_find_secrets(raw))
    try:
        site = Site.model_validate(raw)
    except ValidationError as exc:
        problems += _problems(exc)
    problems = secrets + [(loc, msg) for loc, msg in problems
                          if not any(loc[:len(s)] == s for s, _ in secrets)]
    if problems:
        raise SiteFileError(shown, problems=[f"{_loc(loc)}: {msg}" for loc, msg in problems])
    return site


def _site_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".yaml", ".yml") and not p.name.startswith("."))


def load_sites(directory: str | os.PathLike | None = None) -> tuple[dict[str, Site], dict[str, str]]:
    """Load every ``*.yaml``/``*.yml`` file of ``directory`` (default :func:`default_sites_dir`).

    Returns (sites by name, error messages by file name). One broken file never stops the others;
    two files giving the same site name are both refused, since the name is part of the DAG ids.
    """
    folder = Path(directory) if directory is not None else default_sites_dir()
    try:
        files = _site_files(folder)
    except OSError as exc:
        return {}, {str(folder): f"{folder}: cannot list the site files: {exc.strerror or exc}"}
    loaded: dict[str, list[tuple[Path, Site]]] = {}
    errors: dict[str, str] = {}
    for file in files:
        try:
            site = load_site(file)
        except SiteFileError as exc:
            errors[file.name] = str(exc)
        except Exception as exc:  # a bug here must not hide the other sites' DAGs
            errors[file.name] = f"{file}: could not be loaded ({type(exc).__name__}: {str(exc)[:300]})"
        else:
            loaded.setdefault(site.name, []).append((file, site))
    sites = {}
    for name, found in loaded.items():
        if len(found) == 1:
            sites[name] = found[0][1]
            continue
        for file, _ in found:
            others = ", ".join(f.name for f, _ in found if f != file)
            errors[file.name] = str(SiteFileError(file, f"name: {name!r} is also the site name of {others}; each "
                                                        "site needs its own name (it is part of the DAG ids)"))
    return sites, errors


# ------------------------------------------------------------------------- one site, by name
# A top-level ``name:`` line (block style, the way every site file is written): the site's name
# without parsing the file. Anything less plain makes the file a candidate that is parsed.
_NAME_LINE = re.compile(rb"""^name[ \t]*:[ \t]*(?:"([\w.-]*)"|'([\w.-]*)'|([\w.-]+))[ \t]*(?:#[^\n]*)?\r?$""",
                        re.MULTILINE)
_NAME_WORD = re.compile(rb"(?<![\w-])name(?![\w-])")
_VALIDATED: dict[tuple[str, str], Site] = {}  # (file, sha256 of its bytes) -> its site
_VALIDATED_MAX = 64


def _may_define(file: Path, data: bytes, name: str) -> bool:
    """False only when ``file`` certainly does not define the site ``name``; True means: parse it to know."""
    lines = _NAME_LINE.findall(data)
    if len(lines) == 1:
        return next((v for v in lines[0] if v), b"").decode("utf-8", "replace") == name
    if lines:  # a duplicate key: the loader will say so
        return True
    # No plain name line: the name is the file's stem, unless a name key hides in another form.
    return file.stem.lower() == name or bool(_NAME_WORD.search(data))


def _validated(file: Path, data: bytes) -> Site:
    """:func:`load_site` of ``file`` whose bytes are ``data``, validated once per process per content."""
    key = (os.fspath(file), hashlib.sha256(data).hexdigest())
    site = _VALIDATED.get(key)
    if site is None:
        site = _validate(key[0], data)
        if len(_VALIDATED) >= _VALIDATED_MAX:
            _VALIDATED.clear()
        _VALIDATED[key] = site
    return site


def load_site_named(name: str, directory: str | os.PathLike | None = None) -> Site:
    """The valid site called ``name`` in ``directory`` (default :func:`default_sites_dir`), as :func:`load_sites`
    would give it, or :class:`SiteFileError`.

    For workers: every file is read (a few KiB each) but only the one defining ``name`` is parsed and
    validated, and only once per process while its bytes stay the same; the returned model is shared,
    so treat it as read-only. Anything unusual (an unreadable file, no such site, two files claiming
    the name) is decided by :func:`load_sites`, so the answer and its message do not depend on the shortcut.
    """
    folder = Path(directory) if directory is not None else default_sites_dir()
    try:
        found = []
        for file in _site_files(folder):
            data = _read_site_file(file)
            if _may_define(file, data, name):
                try:
                    site = _validated(file, data)
                except SiteFileError:
                    continue
                if site.name == name:
                    found.append(site)
        if len(found) == 1:
            return found[0]
    except (OSError, SiteFileError):
        pass
    sites, errors = load_sites(folder)
    if name not in sites:
        problems = "\n".join(errors.values())
        raise SiteFileError(name, f"site {name!r} cannot be loaded any more" + (f":\n{problems}" if problems else ""))
    return sites[name]
