"""The lab's estate grown to about 200 protectable VMs, and a site file that protects all of them.

Loads the packaged estate (include/lab/asr_lab/data/estate.yaml), keeps every VM it has (the
four that ASR cannot protect too, so the plan and report still show them), and adds generated
VMs to the primary clouds Gold-Prod and Silver-Prod: realistic names by role (APP-ERP-07,
SQL-PRD-04, WEB-SHOP-02, ...), sizes, disks and NICs on the existing VM networks (Prod-App,
Prod-Data, Prod-DMZ, static addresses from their subnets) and hosts of the right cloud. GUIDs
and MACs are derived from the names, so the same count gives the same estate every time.

The site file is include/sites/lab.yaml with every VM of both clouds in scope, more initial
replications at once and the poll interval the measurement asks for.

    python bench/estate_200.py OUT_DIR [--vms 200]   # writes OUT_DIR/estate.yaml and OUT_DIR/sites/bench.yaml
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
ESTATE = REPO / "include" / "lab" / "asr_lab" / "data" / "estate.yaml"
LAB_SITE = REPO / "include" / "sites" / "lab.yaml"
NAMESPACE = uuid.UUID("6f9d8a57-2c1b-4e0e-9d53-be0c00000200")  # generated GUIDs: uuid5 of the names

# prefix, role, cloud, networks, OS, (cpu, memory MB) choices, data disks (count range, GB choices), services
ROLES = [
    ("APP-ERP", "ERP application server", "Gold-Prod", ["Prod-App"], "Windows Server 2019 Datacenter",
     [(4, 32768), (8, 65536)], (1, 1, [150, 250]), [(8080, "http")]),
    ("SQL-PRD", "SQL Server 2019 instance", "Gold-Prod", ["Prod-Data"], "Windows Server 2019 Datacenter",
     [(8, 65536), (16, 131072)], (2, 3, [200, 300, 500]), [(1433, "tcp")]),
    ("WEB-SHOP", "Web shop front end (IIS)", "Gold-Prod", ["Prod-DMZ"], "Windows Server 2019 Datacenter",
     [(2, 8192), (4, 16384)], (0, 1, [50]), [(80, "http"), (443, "tcp")]),
    ("API-GW", "API gateway", "Gold-Prod", ["Prod-DMZ", "Prod-App"], "Windows Server 2019 Datacenter",
     [(4, 16384)], (0, 0, []), [(443, "tcp")]),
    ("MES-APP", "MES application server", "Gold-Prod", ["Prod-App"], "Windows Server 2016 Datacenter",
     [(4, 16384), (8, 32768)], (1, 1, [100, 200]), [(8443, "tcp")]),
    ("RDS-SH", "Remote Desktop session host", "Silver-Prod", ["Prod-App"], "Windows Server 2016 Datacenter",
     [(8, 65536)], (1, 1, [100]), [(3389, "tcp")]),
    ("FS-DEPT", "Departmental file server", "Silver-Prod", ["Prod-Data"], "Windows Server 2016 Datacenter",
     [(2, 8192), (4, 16384)], (1, 2, [250, 500, 750]), [(445, "tcp")]),
    ("APP-QMS", "Quality management application", "Silver-Prod", ["Prod-App"], "Windows Server 2016 Datacenter",
     [(2, 8192), (4, 16384)], (0, 1, [80]), [(443, "tcp")]),
    ("SQL-RPT", "SQL Server reporting instance", "Silver-Prod", ["Prod-Data"], "Windows Server 2016 Datacenter",
     [(4, 32768)], (1, 2, [150, 250]), [(1433, "tcp")]),
    ("PRINT", "Print server", "Silver-Prod", ["Prod-App"], "Windows Server 2012 R2 Standard",
     [(2, 4096)], (0, 0, []), [(445, "tcp")]),
    ("WSUS", "Update server", "Silver-Prod", ["Prod-App"], "Windows Server 2016 Datacenter",
     [(2, 8192)], (1, 1, [300]), [(8530, "http")]),
]


def _guid(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(map(str, parts))))


def _mac(name: str, index: int) -> str:
    digest = uuid.uuid5(NAMESPACE, f"mac/{name}/{index}").bytes
    return "00:15:5D:" + ":".join(f"{b:02X}" for b in digest[:3])


def build_estate(protectable: int = 200, seed: int = 200) -> dict:
    """The packaged estate plus generated VMs, so that ``protectable`` VMs of it can be protected."""
    estate = yaml.safe_load(ESTATE.read_text())
    primary = next(s for s in estate["sites"] if s["role"] == "primary")
    hosts = {c["name"]: [h["fqdn"] for h in primary["hosts"] if h["cloud"] == c["name"]] for c in primary["clouds"]}
    used_ips = {nic["ip_address"] for vm in primary["vms"] for nic in vm["nics"] if nic.get("ip_address")}
    free_ips = {}
    for net in primary["networks"]:
        subnet = ipaddress.ip_network(net["subnets"][0]["address_prefix"])
        # .1-.9 gateways and infrastructure; the rest of the subnet is for servers
        free_ips[net["name"]] = [str(ip) for ip in list(subnet.hosts())[9:] if str(ip) not in used_ips]
    existing = len([vm for vm in primary["vms"] if not _unprotectable(vm)])
    rng = random.Random(seed)
    counters: dict[str, int] = {}
    for vm in primary["vms"]:
        prefix, _, number = vm["name"].rpartition("-")
        if number.isdigit():
            counters[prefix] = max(counters.get(prefix, 0), int(number))
    for i in range(max(0, protectable - existing)):
        prefix, role, cloud, networks, os_name, shapes, (dmin, dmax, sizes), services = ROLES[i % len(ROLES)]
        counters[prefix] = counters.get(prefix, 0) + 1
        name = f"{prefix}-{counters[prefix]:02d}"
        cpu, memory = rng.choice(shapes)
        generation = 1 if "2012" in os_name else 2
        disks = [{"id": _guid(name, "disk", 0), "file": f"{name}_OS.vhdx", "size_gb": rng.choice([80, 127]),
                  "role": "OperatingSystem", "controller": "IDE" if generation == 1 else "SCSI"}]
        for d in range(rng.randint(dmin, dmax)):
            disks.append({"id": _guid(name, "disk", d + 1), "file": f"{name}_Data{d + 1}.vhdx",
                          "size_gb": rng.choice(sizes), "role": "Data", "controller": "SCSI"})
        # Past a subnet's ~245 free addresses (estates of 1,000 VMs), the rest take theirs from DHCP.
        nics = [{"id": _guid(name, "nic", n), "network": net, "mac": _mac(name, n),
                 "ip_address": free_ips[net].pop(0) if free_ips[net] else None} for n, net in enumerate(networks)]
        primary["vms"].append({
            "id": _guid(name), "name": name, "role": role, "cloud": cloud,
            "host": hosts[cloud][counters[prefix] % len(hosts[cloud])], "generation": generation, "os": os_name,
            "cpu_count": cpu, "memory_mb": memory, "disks": disks, "nics": nics,
            "services": [{"port": port, "kind": kind} for port, kind in services],
        })
    estate["company"] = f"{estate['company']} ({protectable} protectable VMs, generated by bench/estate_200.py)"
    return estate


def _unprotectable(vm: dict) -> bool:
    return vm.get("fibre_channel_adapter") or any(d.get("shared") or d.get("passthrough") for d in vm["disks"])


def build_site(name: str = "bench", max_concurrent: int = 20, poll_interval: str = "30s",
               recovery_plans: list[dict] | None = None, cleanup_when: str = "all_verified") -> dict:
    """include/sites/lab.yaml with every VM of both clouds in scope (no exclusions) and the given
    recovery plans (default none: every VM is drilled on its own)."""
    site = yaml.safe_load(LAB_SITE.read_text())
    site["name"] = name
    site["description"] = "Benchmark copy of the lab site: every VM of Gold-Prod and Silver-Prod in scope."
    site["scope"]["vms"] = [{"cloud": "Gold-Prod", "include": ["*"]}, {"cloud": "Silver-Prod", "include": ["*"]}]
    site["scope"]["max_concurrent_initial_replications"] = max_concurrent
    site["timeouts"]["poll_interval"] = poll_interval
    site["recovery_plans"] = recovery_plans or []
    site["drill"]["cleanup_when"] = cleanup_when
    # Manual drills only: lab.yaml's weekly schedule would start a drill of every VM beside the one measured
    # or tested whenever a run crosses it (Saturdays 01:00 UTC).
    site["drill"]["schedule"] = None
    return site


def write(out_dir: Path, protectable: int = 200, sites: dict[str, dict] | None = None) -> tuple[Path, Path, dict]:
    """Write ``out_dir/estate.yaml`` and an include folder ``out_dir/include``: one site file per entry of
    ``sites`` (``{name: {"max_concurrent": 20, "poll_interval": "30s"}}``; default one site ``bench``) plus
    symlinks to the repo's include/powershell etc. Returns (estate file, include folder, estate)."""
    from asr_lab.estate import load_estate

    out_dir.mkdir(parents=True, exist_ok=True)
    estate = build_estate(protectable)
    estate_file = out_dir / "estate.yaml"
    estate_file.write_text(yaml.safe_dump(estate, sort_keys=False, width=120))
    load_estate(estate_file)  # the lab's own validation: a generated estate that it refuses fails here
    include = out_dir / "include"
    (include / "sites").mkdir(parents=True, exist_ok=True)
    for entry in (REPO / "include").iterdir():
        link = include / entry.name
        if entry.name not in ("sites", "state") and not link.exists():
            link.symlink_to(entry)
    for name, settings in (sites or {"bench": {}}).items():
        (include / "sites" / f"{name}.yaml").write_text(yaml.safe_dump(build_site(name, **settings), sort_keys=False))
    return estate_file, include, estate


def is_protectable(vm: dict) -> bool:
    return not _unprotectable(vm)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--vms", type=int, default=200, help="protectable VMs in the estate")
    args = parser.parse_args()
    estate_file, include, estate = write(args.out_dir, args.vms)
    primary = next(s for s in estate["sites"] if s["role"] == "primary")
    print(f"{estate_file}: {len(primary['vms'])} VMs ({sum(map(is_protectable, primary['vms']))} "
          f"protectable); site file {include / 'sites' / 'bench.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
