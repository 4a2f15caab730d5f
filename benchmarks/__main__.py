"""One entry point for every benchmark: ``python -m benchmarks --quick | --full [--out DIR]``.

Runs the speed benchmarks (each ``benchmarks.<name>.main`` with ``--quick``/``--full`` and
``--out DIR/<name>.json``), then the quality benchmark (:mod:`benchmarks.quality`, which also
writes ``DIR/quality.md``), and writes ``DIR/summary.json`` saying what ran and what failed.
A failing benchmark (an import error included) is recorded and the others still run; the
exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import environment

#: The speed benchmarks, in the order they run.
SPEED_BENCHMARKS = (
    "tubes",
    "temporal",
    "selective",
    "lrp",
    "lrp_composites",
    "attention",
    "tcav",
    "visualization",
    "batch",
    "memory",
    "timeline",
    "stream",
    "units",
    "influence",
    "stability",
    "two_stream",
)
DEFAULT_OUT = Path(__file__).with_name("results")


def run_module(name: str, mode: str, out_dir: Path) -> dict[str, Any]:
    """Import ``benchmarks.<name>`` and call its ``main``; never raises.

    Args:
        name (str): module name inside ``benchmarks``.
        mode (str): ``"--quick"`` or ``"--full"``.
        out_dir (Path): where ``<name>.json`` goes.

    Returns:
        dict: ``{"status": "ok", "seconds": ..., "out": ...}`` or ``{"status": "failed",
        "error": ...}`` (with ``"seconds"`` where ``main`` ran).

    Example::

        >>> run_module("quality", "--quick", Path("benchmarks/results"))["status"]
        'ok'
    """
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except Exception as err:  # noqa: BLE001 - one broken benchmark must not stop the others
        traceback.print_exc()
        return {"status": "failed", "error": f"import: {err!r}"}
    out = out_dir / f"{name}.json"
    argv = [mode, "--out", str(out)]
    if name == "quality":
        argv += ["--markdown", str(out_dir / "quality.md")]
    start = time.perf_counter()
    try:
        module.main(argv)
    except SystemExit as exit_:  # argparse errors or an explicit sys.exit
        if exit_.code not in (0, None):
            return {
                "status": "failed",
                "error": f"exit {exit_.code}",
                "seconds": time.perf_counter() - start,
            }
    except Exception as err:  # noqa: BLE001
        traceback.print_exc()
        return {"status": "failed", "error": repr(err), "seconds": time.perf_counter() - start}
    return {"status": "ok", "seconds": time.perf_counter() - start, "out": str(out)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run all benchmarks and write ``summary.json``.

    Args:
        argv (sequence of str, optional): arguments; default ``sys.argv[1:]``.

    Returns:
        int: the exit status, 0 when no benchmark failed.

    Example::

        >>> main(["--quick", "--out", "/tmp/bench", "--only", "quality"])
        0
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="small sizes, minutes on a CPU (default)"
    )
    size.add_argument("--full", action="store_true", help="the sizes the issues name")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="run only these benchmarks (names of modules in benchmarks/)",
    )
    args = parser.parse_args(argv)
    mode = "--full" if args.full else "--quick"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(args.only) if args.only else [*SPEED_BENCHMARKS, "quality"]
    summary: dict[str, Any] = {
        "mode": mode.lstrip("-"),
        "environment": environment(),
        "benchmarks": {},
    }
    for name in names:
        print(f"== benchmarks.{name} {mode}", file=sys.stderr, flush=True)
        summary["benchmarks"][name] = status = run_module(name, mode, out_dir)
        print(f"== benchmarks.{name}: {status['status']}", file=sys.stderr, flush=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    failed = [n for n, s in summary["benchmarks"].items() if s["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
