"""``asr-lab serve``: run the lab until interrupted.

When it is ready to answer it writes ``<state-dir>/endpoints.json`` — the one contract
between the lab and everything that uses it (tests, the demo, Airflow connections) — and
prints one line saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import socket
import sys
from pathlib import Path

import uvicorn

from asr_lab import pki, store
from asr_lab.app import Lab, build_app, retry_after_for
from asr_lab.clock import Clock, non_negative_number
from asr_lab.estate import load_estate
from asr_lab.identity import AppRegistration
from asr_lab.windows import windows_servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asr-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the emulated Azure control plane")
    serve.add_argument("--state-dir", required=True, type=Path, help="where state, CA and endpoints.json live")
    serve.add_argument("--estate", type=Path, help="estate YAML (default: the packaged Contoso-like estate)")
    serve.add_argument("--time-scale", type=float, default=1.0,
                       help="realistic durations are multiplied by this; 0 = every job finishes on the next read "
                            "(changeable while running: POST /_lab/clock)")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    serve.add_argument("--advertise-host", default=None,
                       help="host name clients use to reach the lab (default: --host); goes into URLs and the certificate")
    serve.add_argument("--arm-port", type=int, default=None,
                       help="port for ARM/Entra/admin (default: the one used last time in this state dir, else a free one)")
    serve.add_argument("--arm-throttle", choices=("on", "off"), default="on",
                       help="throttle ARM requests as Azure does, per principal and operation class (default on; "
                            "changeable while running: POST /_lab/throttle)")
    serve.add_argument("--log-level", default="warning")
    conns = sub.add_parser("airflow-connections",
                           help="write the running lab as an Airflow connections file (LocalFilesystemBackend JSON)")
    conns.add_argument("--state-dir", required=True, type=Path)
    conns.add_argument("--conn-id", default="azure_asr_lab")
    conns.add_argument("--output", required=True, type=Path)
    conns.add_argument("--wait", type=float, default=120, help="seconds to wait for the lab to be ready")
    args = parser.parse_args(argv)
    if args.command == "airflow-connections":
        from asr_lab.client import LabClient

        client = LabClient.from_state_dir(args.state_dir, wait_seconds=args.wait)
        connections = client.airflow_connections(args.conn_id)
        store.write_json(args.output, connections, private=True)
        print(f"wrote {len(connections)} connections ({', '.join(sorted(connections))}) to {args.output}")
        return 0
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(serve_lab(args))
    except ValueError as exc:  # bad estate, bad state dir: one clear line, no traceback
        print(f"asr-lab: {exc}", file=sys.stderr)
        return 2


async def serve_lab(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    non_negative_number(args.time_scale, "--time-scale")
    estate = load_estate(args.estate)
    advertised = args.advertise_host or args.host
    ca_path, cert_path, key_path = pki.ensure_pki(state_dir, (advertised,))
    secrets_doc = _load_or_create_secrets(state_dir, estate)
    registration = AppRegistration(**secrets_doc["registration"])

    previous = store.read_json(state_dir / store.SERVER_FILE) or {}
    sock = _bind(args.host, args.arm_port if args.arm_port is not None else previous.get("arm_port", 0))
    port = sock.getsockname()[1]
    base_url = f"https://{_url_host(advertised)}:{port}"
    retry_after = retry_after_for(args.time_scale)
    lab = Lab(state_dir, estate, Clock(args.time_scale), base_url, registration,
              secrets_doc["admin_token"], retry_after=retry_after, throttled=args.arm_throttle == "on")
    lab.windows = windows_servers(lab, secrets_doc["winrm_username"], secrets_doc["winrm_password"])
    winrm_sockets = {
        fqdn: _bind(args.host, previous.get("winrm_ports", {}).get(fqdn, 0)) for fqdn in lab.windows
    }
    winrm_ports = {fqdn: s.getsockname()[1] for fqdn, s in winrm_sockets.items()}
    store.write_json(state_dir / store.SERVER_FILE, {"arm_port": port, "winrm_ports": winrm_ports})

    tls = {"ssl_certfile": str(cert_path), "ssl_keyfile": str(key_path)}
    servers = [(uvicorn.Server(uvicorn.Config(
        build_app(lab), log_level=args.log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=3,
        **tls)), sock)]
    for fqdn, winrm_sock in winrm_sockets.items():
        # Windows answers as Microsoft-HTTPAPI/2.0; uvicorn must not add a Server header of its own.
        config = uvicorn.Config(lab.windows[fqdn].app, log_level=args.log_level, access_log=False,
                                lifespan="off", server_header=False, timeout_graceful_shutdown=3, **tls)
        servers.append((uvicorn.Server(config), winrm_sock))
    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_all)
    for server, _ in servers:
        server.install_signal_handlers = lambda: None  # handled above, once for all servers
    serving = asyncio.gather(*(server.serve(sockets=[s]) for server, s in servers))
    while not all(server.started for server, _ in servers):
        if serving.done():
            serving.result()
            return 1
        await asyncio.sleep(0.02)
    endpoints = {
        "arm_url": base_url,
        "arm_port": port,
        "authority_url": base_url,
        "credential_scope": f"{base_url}/.default",
        "ca_cert": str(ca_path),
        "tenant_id": estate.tenant_id,
        "subscription_id": estate.subscription_id,
        "client_id": registration.client_id,
        "client_secret": registration.client_secret,
        "admin_url": f"{base_url}/_lab",
        "admin_token": secrets_doc["admin_token"],
        "time_scale": args.time_scale,
        "winrm_username": secrets_doc["winrm_username"],
        "winrm_password": secrets_doc["winrm_password"],
        "winrm": {
            fqdn: {"host": advertised, "port": winrm_ports[fqdn], "role": lab.windows[fqdn].role,
                   "url": f"https://{_url_host(advertised)}:{winrm_ports[fqdn]}/wsman"}
            for fqdn in lab.windows
        },
    }
    store.write_json(state_dir / store.ENDPOINTS_FILE, endpoints, private=True)
    print(f"asr-lab ready: ARM at {base_url}, {len(lab.windows)} Windows servers over WinRM "
          f"(time scale {args.time_scale}); endpoints in {state_dir / store.ENDPOINTS_FILE}", flush=True)
    await serving
    (state_dir / store.ENDPOINTS_FILE).unlink(missing_ok=True)
    return 0


def _load_or_create_secrets(state_dir: Path, estate) -> dict:
    """The app registration, admin token and WinRM account, made once per state dir."""
    path = state_dir / store.SECRETS_FILE
    doc = store.read_json(path)
    if doc is None or doc["registration"]["tenant_id"] != estate.tenant_id:
        domain = estate.sites[0].vmm.service_account.split("\\")[0]
        doc = {"registration": AppRegistration.create(estate.tenant_id).__dict__,
               "admin_token": secrets.token_urlsafe(24),
               "winrm_username": f"{domain}\\svc-dr-automation",
               "winrm_password": secrets.token_urlsafe(18)}
        store.write_json(path, doc, private=True)
    return doc


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if not port:
            raise
        sock.bind((host, 0))  # the previous port is taken: any free one, endpoints.json says which
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
