"""``make stack``: Airflow distributed as docker-compose lays it out, on this machine, against the lab.

api-server, scheduler, dag-processor, two triggerers and two Celery workers as separate processes;
metadata in PostgreSQL (database ``asr_dr`` of role ``asr_dr`` on 127.0.0.1:5432), the Celery
broker in Redis (database 11 on 127.0.0.1:6379), the drill reports in Azurite (Blob storage),
the lab as the ASR control plane and the VMM servers. Everything lives in ``.stack/`` and is kept
between runs (the metadata in its database). Ctrl-C (or SIGTERM) stops every process it started
and nothing else.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stack import DistributedStack, StackUnavailable  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=REPO / ".stack", help="the stack's folder (default .stack/)")
    parser.add_argument("--port", type=int, default=8080, help="the API server's port (default 8080)")
    parser.add_argument("--time-scale", type=float, default=0.02, help="the lab's time scale (default 0.02)")
    parser.add_argument("--database", default="asr_dr", help="the PostgreSQL database (default asr_dr)")
    parser.add_argument("--redis-db", type=int, default=11, help="the Redis database number (default 11)")
    parser.add_argument("--fresh", action="store_true", help="start from an empty database and lab")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack = DistributedStack(args.dir.resolve(), estate=None, include=REPO / "include", time_scale=args.time_scale,
                             database=args.database, redis_db=args.redis_db, fresh=args.fresh,
                             drop_database_on_stop=False, port=args.port)
    try:
        with stack:
            print(f"Airflow UI  http://127.0.0.1:{stack.port}  (user admin, password in "
                  f"{stack.airflow_home / 'simple_auth_manager_passwords.json.generated'})")
            print(f"components  {', '.join(stack.components)}; logs in {args.dir}/<component>.log")
            print(f"reports     {stack.reports_url} (Azurite on 127.0.0.1:{stack.azurite_port})")
            print("Ctrl-C stops every process of the stack.", flush=True)
            while not stop.wait(2):
                dead = [name for name, proc in stack.components.items() if proc.poll() is not None]
                if dead:
                    print(f"stopped by itself: {', '.join(dead)}; see their logs. Stopping the stack.", file=sys.stderr)
                    return 1
    except StackUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    print("stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
