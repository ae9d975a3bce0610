"""Benchmark: how long the ``kfr-conformance`` command takes to start.

    python3 benchmarks/bench_startup.py [--runs 25] [--before DIR] [--bytecode cache|none] [--write]

Every figure is one whole process (a fresh interpreter, as a user or a script runs it),
timed by the wall clock from before ``exec`` to exit; median and 10th percentile of
``--runs`` runs:

- ``python -c "import re, sys"``: the interpreter alone, the floor under everything;
- ``kfr-conformance --help`` and ``kfr-conformance verify --help``: the parser tree and
  Norwegian help, nothing else;
- ``verify`` start-up: from process start until verification begins, that is until
  ``conformance.pack.verify.verify_path`` is called (interpreter, CLI, parser tree, the
  verifier's own imports, the trust roots read). The child is the real entry point with
  ``verify_path`` replaced by an immediate exit, so nothing after that moment is counted;
- ``verify`` whole: the same command verifying a typical pack to the end, for contrast.

The child imitates the console script (``import re, sys; from conformance.cli import main;
sys.exit(main())``). The pack is a real, signed bundled-sheet pack from
``tests/pack_support`` (one real sandbox run, relabelled, signed by a test CA), verified
with ``--trust`` its root.

Bytecode: a bank's Python writes ``__pycache__`` on the first run and reads it on every
later one, but this machine's environment sets ``PYTHONDONTWRITEBYTECODE=1``. With
``--bytecode cache`` (the default) the children get a bytecode cache of their own
(``PYTHONPYCACHEPREFIX`` in a temporary folder, filled by one warm-up run per figure): a
bank's second and later runs. With ``--bytecode none`` they run as this environment does:
nothing is written, so the project's own modules are compiled from source on every run
(installed packages keep the bytecode pip wrote).

``--before DIR`` measures another checkout too (for example ``git archive <commit> | tar -x
-C DIR``), imported through ``PYTHONPATH=DIR``; its runs are interleaved with the current
tree's one by one, so both see the same load. The load average is printed with the figures:
this machine is shared, so compare the two columns of one table, not tables of other days.
``--write`` replaces the section ``## Start-up figures, …`` for the ``--bytecode`` mode in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perfdoc import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

CONSOLE_SCRIPT = "import re, sys\nfrom conformance.cli import main\nsys.exit(main(sys.argv[1:]))\n"
# verify until its first check: the verifier is imported as verify would import it, and
# entering verify_path ends the process.
VERIFY_START = (
    "import os, re, sys\n"
    "import conformance.pack.verify as verifier\n"
    "verifier.verify_path = lambda *args, **kwargs: os._exit(0)\n"
    "from conformance.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def make_pack(folder: Path) -> tuple[Path, Path]:
    """A typical signed pack and the root to trust for it."""
    from pack_support import build_signed_pack, make_results_dir, shared_pki

    from conformance.pack.build import load_run_record
    from conformance.pack.manifest import pack_file_name

    results = make_results_dir(folder / "reports")
    build_signed_pack(results)
    record = load_run_record(results)
    pack = results / pack_file_name(record.bank["orgnr"], record.started_at)
    return pack, shared_pki().root.write_pem(folder / "ca.pem")


# Children run in a folder of their own: ``python -c`` puts the working directory first on
# sys.path, which would let the repository root shadow the tree under test.
NEUTRAL_CWD = Path(tempfile.gettempdir())


def timed(argv: list[str], env: dict[str, str], expect: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=NEUTRAL_CWD, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode not in expect:
        raise SystemExit(f"{argv[2:]} exited {done.returncode}:\n{done.stderr.decode()[-2000:]}")
    return elapsed


def p10(values: list[float]) -> float:
    return sorted(values)[max(0, round(len(values) * 0.1) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25, help="runs per figure (≥ 20)")
    parser.add_argument("--before", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--bytecode", choices=("cache", "none"), default="cache",
                        help="children keep a bytecode cache (a bank's later runs) or write none")
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        pack, ca = make_pack(Path(tmp))
        verify = ["verify", str(pack), "--trust", str(ca)]
        figures = {
            "python -c \"import re, sys\" (floor)": (["-c", "import re, sys"], (0,)),
            "kfr-conformance --help": (["-c", CONSOLE_SCRIPT, "--help"], (0,)),
            "kfr-conformance verify --help": (["-c", CONSOLE_SCRIPT, "verify", "--help"], (0,)),
            "verify start-up (to its first check)": (["-c", VERIFY_START, *verify], (0,)),
            "verify, whole (typical pack)": (["-c", CONSOLE_SCRIPT, *verify], (0,)),
        }
        base_env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        if args.bytecode == "cache":
            base_env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        else:
            base_env["PYTHONDONTWRITEBYTECODE"] = "1"
        trees = {"after": {**base_env, "PYTHONPATH": str(ROOT)}}
        if args.before:
            trees = {"before": {**base_env, "PYTHONPATH": str(args.before.resolve())}, **trees}
        for tree, env in trees.items():  # each tree really is the one imported
            where = subprocess.run(
                [sys.executable, "-c", "import conformance; print(conformance.__file__)"],
                env=env, cwd=NEUTRAL_CWD, capture_output=True, text=True).stdout.strip()
            expected = (args.before if tree == "before" else ROOT).resolve()
            if not Path(where).resolve().is_relative_to(expected):
                raise SystemExit(f"the {tree} tree imports conformance from {where}")
        results: dict[str, dict[str, list[float]]] = {name: {t: [] for t in trees} for name in figures}
        loads = [os.getloadavg()[0]]
        for name, (argv, expect) in figures.items():
            for env in trees.values():  # one warm run each: pyc files, disk cache
                timed([sys.executable, *argv], env, expect)
            for _ in range(args.runs):
                for tree, env in trees.items():
                    results[name][tree].append(timed([sys.executable, *argv], env, expect))
            loads.append(os.getloadavg()[0])
            shown = "  ".join(f"{tree} median {statistics.median(v) * 1000:.0f} ms "
                              f"p10 {p10(v) * 1000:.0f} ms" for tree, v in results[name].items())
            print(f"{name}: {shown}  (load {loads[-1]:.2f})")

    columns = list(trees)
    head = "| command | " + " | ".join(f"{c}: median (p10)" for c in columns) + " |"
    title = f"## Start-up figures, {'warm bytecode cache' if args.bytecode == 'cache' else 'no bytecode cache'}"
    lines = [
        title,
        "",
        "Method: `python3 benchmarks/bench_startup.py --runs "
        f"{args.runs}{' --before DIR' if args.before else ''} --bytecode {args.bytecode} --write` "
        "(the method is in the script's docstring): each figure is a whole process, median and "
        f"10th percentile of {args.runs} runs"
        + (", the two trees interleaved run by run" if args.before else "") + "; "
        + ("with a warm bytecode cache (a bank's second and later runs)."
           if args.bytecode == "cache" else
           "without bytecode caches (`PYTHONDONTWRITEBYTECODE=1`, as this machine runs)."),
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average (1 min) {min(loads):.2f}–{max(loads):.2f} "
        "during the runs.",
        "",
        head,
        "|---|" + "---:|" * len(columns),
    ]
    for name, by_tree in results.items():
        cells = [f"{statistics.median(v) * 1000:.0f} ms ({p10(v) * 1000:.0f})"
                 for v in by_tree.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    publish(title, lines, args.write)


if __name__ == "__main__":
    main()
