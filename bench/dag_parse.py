"""DAG file parse time, measured the way Airflow 3.3's dag-processor parses a file.

What the dag-processor does (airflow/dag_processing/manager.py and processor.py, 3.3.2): its
long-lived manager process has Airflow imported; before it starts the processor of a file it
imports, in itself, every ``airflow.*`` module the file imports (``[dag_processor]
parsing_pre_import_modules``, default True), so over its first loop it accumulates the Airflow
modules of every DAG file; it calls ``gc.freeze()`` once; then for each file it ``os.fork()``s a
child that runs ``_parse_file``: a ``BundleDagBag`` of that one file (the module import, which
builds the DAGs) followed by ``DagSerialization.to_dict`` of each DAG.

This module does the same in one parent interpreter started for the purpose: it imports
``airflow.dag_processing.manager``, pre-imports the Airflow modules of every measured file
(the manager's steady state), freezes the GC, then for each round forks one fresh child per
file (round-robin, so a burst of load from elsewhere hits every file alike) and times
``_parse_file`` in it, wall and CPU. The reference is a minimal DAG file: one DAG, one
``PythonOperator`` from ``airflow.providers.standard``. Each file's median is reported in
seconds and as a ratio to the reference's (goal: every ratio <= 1.5).

A second figure separates what the product costs from what Airflow costs for a DAG of that size:
each DAG file is also compared with its **same-shape** reference, a generated file that declares
the same DAG params and as many ``PythonOperator`` tasks, and imports nothing of the product.
Airflow copies a DAG's params into every task and, serializing a task, validates each copy
against its JSON Schema, so a 28-task DAG with a trigger form costs several times the one-task
file whatever its own code does.

The product package is byte-compiled first, as ``pip install`` (the Dockerfile's install) leaves
it: with ``PYTHONDONTWRITEBYTECODE`` set, or from an editable install, each forked parse would
otherwise compile every product module from source, a cost a deployed dag-processor never pays.
DAG files, the references included, are compiled from source on every parse.

Run ``python bench/dag_parse.py`` (or ``bench/run.py --only dag-parse``, which also writes the
figures to bench/results/latest.json). A DAG file with an import error, or one that yields no
DAG, fails the run (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_RATIO = 1.5
MINIMAL_NAME = "minimal_one_task_dag.py"
MINIMAL_DAG = '''\
"""The reference: one DAG, one PythonOperator."""

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def hello():
    print("hello")


with DAG(dag_id="minimal_one_task", schedule=None):
    PythonOperator(task_id="hello", python_callable=hello)
'''
SHAPE_DAG = '''\
"""Same shape as {name}: its DAG params, {tasks} PythonOperator tasks, nothing of the product."""

import json

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param


def hello():
    print("hello")


PARAMS = {{name: Param(spec.get("default"), description=spec.get("description"), **(spec.get("schema") or {{}}))
          for name, spec in json.loads({params!r})}}

with DAG(dag_id="same_shape_{stem}", schedule=None, params=PARAMS):
    for number in range({tasks}):
        PythonOperator(task_id=f"task_{{number}}", python_callable=hello)
'''


class DagParseError(RuntimeError):
    """A DAG file did not parse cleanly: the benchmark fails rather than time a broken file."""


# ------------------------------------------------------------------- the dag-processor's side
def _child(path: str, bundle_path: str, out: int) -> None:
    """In the forked child: what ``_parse_file_entrypoint`` does, timed; the figures go to ``out``."""
    import resource
    import time

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"  # as _parse_file_entrypoint sets it

    import structlog

    from airflow.dag_processing import processor

    serialize_s = []
    serialize = processor._serialize_dags

    def timed_serialize(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return serialize(*args, **kwargs)
        finally:
            serialize_s.append(time.perf_counter() - t0)

    processor._serialize_dags = timed_serialize
    msg = processor.DagFileParseRequest(file=path, bundle_path=Path(bundle_path), bundle_name="dags-folder",
                                        callback_requests=[])
    log = structlog.get_logger(logger_name="task")
    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = processor._parse_file(msg, log)
    wall, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "wall_s": wall,
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "serialize_s": sum(serialize_s),
        "dags": len(result.serialized_dags) if result else 0,
        "tasks": sum(len(d.data["dag"]["tasks"]) for d in result.serialized_dags) if result else 0,
        "import_errors": dict(result.import_errors or {}) if result else {},
        "modules": len(sys.modules),
        "params": _plain_params(result.serialized_dags[0].data["dag"]) if result and result.serialized_dags else [],
    }
    data = json.dumps(figures, default=str).encode()
    while data:
        data = data[os.write(out, data):]


def _plain_params(serialized_dag: dict) -> list[tuple[str, dict]]:
    """The DAG params of a serialized DAG as plain JSON (default, description, schema), in order."""
    from airflow.serialization.serialized_objects import BaseSerialization

    return [(name, {key: BaseSerialization.deserialize(spec[key]) for key in ("default", "description", "schema")
                    if spec.get(key) is not None})
            for name, spec in serialized_dag.get("params", [])]


def _fork_parse(path: str, bundle_path: str) -> dict:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller
        code = 0
        try:
            os.close(read_end)
            _child(path, bundle_path, write_end)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the run
            try:
                os.write(write_end, json.dumps({"crash": f"{type(exc).__name__}: {exc}"}).encode())
            finally:
                code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks) or b'{"crash": "the child died without a word"}')
    except ValueError:
        return {"crash": "the child's figures cannot be read"}


def measure_in_this_process(files: list[tuple[str, str]], repeats: int) -> dict[str, dict]:
    """Parse each ``(path, bundle_path)`` ``repeats`` times, each in a fresh fork of this process."""
    import gc

    import structlog

    import airflow.dag_processing.manager  # noqa: F401 - what the dag-processor's manager has imported
    from airflow.dag_processing.processor import _pre_import_airflow_modules

    log = structlog.get_logger()
    for path, _ in files:  # the manager's steady state: the Airflow modules of every file imported
        _pre_import_airflow_modules(path, log)
    gc.freeze()
    runs: dict[str, list[dict]] = {path: [] for path, _ in files}
    for round_ in range(repeats + 1):  # round 0 warms the page cache and is not counted
        for path, bundle_path in files:
            figures = _fork_parse(path, bundle_path)
            if "crash" in figures or figures["import_errors"] or not figures["dags"]:
                problem = figures.get("crash") or figures["import_errors"] or "no DAG"
                raise DagParseError(f"{path} does not parse cleanly: {problem}")
            if round_:
                runs[path].append(figures)
    out = {}
    for path, samples in runs.items():
        out[path] = {key: statistics.median(s[key] for s in samples) for key in ("wall_s", "cpu_s", "serialize_s")}
        out[path].update(dags=samples[-1]["dags"], tasks=samples[-1]["tasks"], modules=samples[-1]["modules"],
                         params=samples[-1]["params"], wall_s_min=min(s["wall_s"] for s in samples))
    return out


# ------------------------------------------------------------------------------ the driver
def _measure(files: list[tuple[str, str]], repeats: int, env: dict, workdir: Path) -> dict[str, dict]:
    """Run the measuring parent, in a fresh interpreter, over ``files``; its figures per path."""
    spec = workdir / "files.json"
    spec.write_text(json.dumps({"files": files, "repeats": repeats}))
    proc = subprocess.run([sys.executable, __file__, "--measure", str(spec)], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise DagParseError(f"the parse benchmark failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
                            f"{proc.stdout[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def byte_compile_product() -> None:
    """Write the product package's bytecode, as ``pip install`` does for a regular install."""
    import compileall

    if not compileall.compile_dir(REPO / "plugins" / "site_recovery", quiet=1, workers=0):
        raise DagParseError("the product package does not byte-compile")


def dag_parse_times(repeats: int = 15, dags_folder: Path | None = None) -> dict:
    """Parse figures of every DAG file of ``dags_folder`` (default dags/), the minimal DAG file and each
    file's same-shape reference.

    Runs the measuring parent in fresh interpreters with their own ``AIRFLOW_HOME``: first over the
    minimal file and the DAG files (which tells each file's shape), then over the same-shape files.
    Raises :class:`DagParseError` when a file does not parse cleanly.
    """
    dags_folder = Path(dags_folder or REPO / "dags").resolve()
    dag_files = sorted(p for p in dags_folder.glob("*.py") if not p.name.startswith("_"))
    byte_compile_product()
    with tempfile.TemporaryDirectory(prefix="asr-dag-parse-") as tmp:
        reference = Path(tmp) / "reference"
        reference.mkdir()
        (reference / MINIMAL_NAME).write_text(MINIMAL_DAG)
        files = [(str(reference / MINIMAL_NAME), str(reference))] + [(str(p), str(dags_folder)) for p in dag_files]
        env = {**os.environ, "AIRFLOW_HOME": tmp, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
               "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "plugins"), os.environ.get("PYTHONPATH")]))}
        measured = _measure(files, repeats, env, Path(tmp))
        shapes = Path(tmp) / "same_shape"
        shapes.mkdir()
        shape_of: dict[str, str] = {}
        for path, m in list(measured.items())[1:]:
            stem = Path(path).stem
            shape = shapes / f"same_shape_{stem}.py"
            shape.write_text(SHAPE_DAG.format(name=Path(path).name, stem=stem, tasks=m["tasks"],
                                              params=json.dumps(m["params"])))
            shape_of[path] = str(shape)
        shaped = _measure([(str(reference / MINIMAL_NAME), str(reference))]
                          + [(p, str(shapes)) for p in shape_of.values()], repeats, env, Path(tmp))
    base = measured.pop(files[0][0])
    figures: dict = {
        "method": "fork per parse from a parent with Airflow and every file's airflow.* imports pre-imported, "
                  "gc frozen, product package byte-compiled; timed: airflow.dag_processing.processor._parse_file "
                  "(DagBag + serialization)",
        "repeats": repeats,
        "goal_ratio": GOAL_RATIO,
        "minimal_dag_file": {"seconds": round(base["wall_s"], 4), "cpu_seconds": round(base["cpu_s"], 4),
                             "serialize_seconds": round(base["serialize_s"], 4)},
        "files": {},
    }
    for path, m in measured.items():
        same = shaped[shape_of[path]]
        figures["files"][Path(path).name] = {
            "seconds": round(m["wall_s"], 4), "ratio": round(m["wall_s"] / base["wall_s"], 2),
            "cpu_seconds": round(m["cpu_s"], 4), "cpu_ratio": round(m["cpu_s"] / base["cpu_s"], 2),
            "serialize_seconds": round(m["serialize_s"], 4), "dags": m["dags"], "tasks": m["tasks"],
            "params": len(m["params"]), "modules_loaded": m["modules"] - base["modules"],
            "same_shape_seconds": round(same["wall_s"], 4),
            "same_shape_ratio": round(same["wall_s"] / shaped[files[0][0]]["wall_s"], 2),
            "ratio_to_same_shape": round(m["wall_s"] / same["wall_s"], 2),
        }
    figures["max_ratio"] = max((f["ratio"] for f in figures["files"].values()), default=None)
    figures["goal_met"] = figures["max_ratio"] is not None and figures["max_ratio"] <= GOAL_RATIO
    figures["max_ratio_to_same_shape"] = max((f["ratio_to_same_shape"] for f in figures["files"].values()),
                                             default=None)
    return figures


def summary(figures: dict) -> str:
    base = figures["minimal_dag_file"]
    lines = [f"DAG parse ({figures['repeats']} forks per file, median): minimal one-task DAG file "
             f"{base['seconds'] * 1000:.1f} ms"]
    for name, f in figures["files"].items():
        mark = "ok" if f["ratio"] <= figures["goal_ratio"] else "OVER GOAL"
        lines.append(f"  {name:32s} {f['seconds'] * 1000:7.1f} ms  ratio {f['ratio']:5.2f} (cpu {f['cpu_ratio']:5.2f})"
                     f"  {f['dags']} DAG(s), {f['tasks']} tasks, +{f['modules_loaded']} modules  {mark}")
        lines.append(f"  {'':32s} same shape ({f['tasks']} tasks, {f['params']} params, no product code) "
                     f"{f['same_shape_seconds'] * 1000:.1f} ms, ratio {f['same_shape_ratio']:.2f}; "
                     f"file / same shape {f['ratio_to_same_shape']:.2f}")
    lines.append(f"  goal: every ratio <= {figures['goal_ratio']}: {'met' if figures['goal_met'] else 'NOT MET'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="forks per file (median kept)")
    parser.add_argument("--dags-folder", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the measuring parent
    args = parser.parse_args(argv)
    if args.measure:
        spec = json.loads(Path(args.measure).read_text())
        try:
            out = measure_in_this_process([tuple(f) for f in spec["files"]], spec["repeats"])
        except DagParseError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(json.dumps(out))
        return 0
    try:
        figures = dag_parse_times(args.repeats, args.dags_folder)
    except DagParseError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2) if args.json else summary(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
