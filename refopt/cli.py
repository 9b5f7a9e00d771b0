"""The ``refopt`` command.

    refopt verify [--frameworks F ...] [--scenarios S ...] [--dtype float32|float64|all] [--out DIR] [--markdown]
    refopt golden (--scenario NAME | --config FILE) --out FILE [--framework F] [--dtype D]
    refopt compare A B [--plot out.png] [--json]
    refopt scenarios [--json]
    refopt train --out DIR [--data digits|FILE] [--model mlp|cnn] [--optimizer ...] [--resume] ...
    refopt --version

Exit codes, the same for every subcommand:

* 0 -- done: ``verify`` passed, ``compare`` found the trajectories identical, ``golden`` and
  ``scenarios`` did their job;
* 1 -- a negative answer: ``verify`` has a cell that misses its tolerance (or a framework
  that failed to run a scenario), ``compare`` found a difference;
* 2 -- no answer: a usage error, an input that cannot be read or trusted (a missing or
  malformed file, a folder where a file belongs, a config of the wrong shape or with bad
  values), an output that cannot be written, a backend or framework that is not
  installed -- or an internal error.

Errors are one line on stderr (``refopt <command>: <what is wrong>``), never a traceback;
``--debug`` prints the traceback too.  Ctrl-C ends a command with 130, as shells report it.
``train``'s flags and exit statuses: refopt/train/command.py.  ``refopt`` alone prints the help.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


class _Progress:
    """verify's progress bar (tqdm) on stderr: ``progress(i, n, label)`` after item i of n."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def __call__(self, i: int, n: int, label: str) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            tty = sys.stderr.isatty()
            self.bar = tqdm(total=n, unit="run", file=sys.stderr, dynamic_ncols=True, mininterval=0.1 if tty else 2.0)
        self.bar.set_postfix_str(label[:100], refresh=False)
        self.bar.update(i - self.bar.n)
        if i == n:
            self.bar.close()


class CommandError(Exception):
    """A command that cannot do its job (exit code 2); the message says why."""


def _load_scenario(args: argparse.Namespace) -> Any:
    from refopt.oracle import scenarios as S

    if args.config:
        path = Path(args.config)
        if path.is_dir():
            raise CommandError(f"config {args.config!r} is a folder, not a JSON file")
        if path.exists() and not path.is_file():
            raise CommandError(f"config {args.config!r} is not a regular file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"config {args.config!r} is not valid JSON ({exc})") from exc
        sc = S.Scenario.from_dict(data)
    else:
        sc = S.get(args.scenario)
    return sc.with_dtype(args.dtype) if args.dtype else sc


def _check_output(path: str, folder: bool, what: str) -> None:
    """Refuse an output path of the wrong kind before any work is done."""
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise CommandError(f"{what} {path!r} is an existing file, not a folder")
    if not folder and p.is_dir():
        raise CommandError(f"{what} {path!r} is a folder, not a file")


def cmd_verify(args: argparse.Namespace) -> int:
    from refopt.oracle import scenarios as S
    from refopt.oracle.verify import ALL_COLUMNS, verify

    if args.frameworks:
        unknown = [f for f in args.frameworks if f not in ALL_COLUMNS]
        if unknown:
            print(f"refopt verify: unknown frameworks {unknown}; known: {', '.join(ALL_COLUMNS)}", file=sys.stderr)
            return 2
    _check_output(args.out, folder=True, what="--out")
    scs = [S.get(n) for n in args.scenarios] if args.scenarios else [S.get(n) for n in S.names()]
    dtypes = ["float32", "float64"] if args.dtype == "all" else [args.dtype]
    report = verify(scs, dtypes, args.frameworks, progress=_Progress(args.quiet), use_golden=not args.no_golden)
    j, m = report.write(args.out)
    if args.markdown:  # stdout is the matrix alone, ready to embed in a page
        sys.stdout.write(report.to_markdown(title=False))
        print(f"wrote {j} and {m}", file=sys.stderr)
    else:
        print(report.to_markdown())
        print(f"wrote {j} and {m}")
    return 1 if report.failed else 0


def cmd_golden(args: argparse.Namespace) -> int:
    from refopt.oracle import scenarios as S
    from refopt.oracle.verify import COLUMNS

    _check_output(args.out, folder=False, what="--out")
    sc = _load_scenario(args)
    if args.framework == "refopt":
        traj = S.run_scenario(sc)
        traj.meta["column"] = "refopt"
    else:
        cols = {c[0]: c for c in COLUMNS[sc.convention]}
        if args.framework not in cols:
            print(
                f"refopt golden: framework {args.framework!r} does not run the {sc.convention} convention; "
                f"choose from {', '.join(cols)} or refopt",
                file=sys.stderr,
            )
            return 2
        _, fw, kw, _ = cols[args.framework]
        mine = S.run_scenario(sc) if sc.gradients["kind"] == "model" else None
        traj = S.run_scenario(sc, fw, _refopt=mine, **kw)
        traj.meta["column"] = args.framework
    path = traj.save(args.out, machine=not args.no_machine)
    print(
        f"wrote {path}: scenario {sc.name!r}, {traj.steps} steps, {len(traj.names)} variables, "
        f"from {traj.meta.get('framework')} {traj.meta.get('version')}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from refopt.oracle.compare import compare
    from refopt.oracle.trajectory import load

    if args.plot:
        _check_output(args.plot, folder=False, what="--plot")
    a, b = load(args.a), load(args.b)
    cmp = compare(a, b)
    if args.json:
        print(json.dumps(cmp.to_dict(), indent=2))
    else:
        print(f"{args.a} vs {args.b}")
        print(cmp.summary())
    if args.plot:
        _plot(cmp, args.plot, f"{Path(args.a).name} vs {Path(args.b).name}")
        print(f"wrote {args.plot}")
    return 0 if cmp.identical else 1


def _plot(cmp: Any, path: str, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("--plot needs matplotlib: pip install matplotlib") from None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in cmp.names:
        ulps = cmp.params[name]["max_ulp"]
        ax.plot(range(len(ulps)), ulps, marker=".", label=name)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("step")
    ax.set_ylabel("max ULP distance (parameters)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_scenarios(args: argparse.Namespace) -> int:
    from refopt.oracle import scenarios as S
    from refopt.oracle.verify import COLUMNS

    if args.json:
        print(json.dumps({n: S.get(n).to_dict() for n in S.names()}, indent=2))
        return 0
    for n in S.names():
        sc = S.get(n)
        cols = ", ".join(c[0] for c in COLUMNS[sc.convention])
        print(f"{n:32s} {sc.rule:6s} {sc.convention:6s} {sc.steps:3d} steps  [{cols}]")
        print(f"{'':32s} {sc.description}")
    return 0


def _parser() -> argparse.ArgumentParser:
    from refopt._version import __version__

    p = argparse.ArgumentParser(prog="refopt", description="refopt: golden optimizer trajectories and conformance")
    p.add_argument("--version", action="version", version=f"refopt {__version__}")
    p.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    sub = p.add_subparsers(dest="command", metavar="{verify,golden,compare,scenarios,train}")
    debug = argparse.ArgumentParser(add_help=False)  # --debug after the subcommand too
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    v = sub.add_parser(
        "verify", parents=[debug], help="check refopt against every installed framework (or the shipped golden files)"
    )
    v.add_argument("--frameworks", nargs="+", metavar="F", help="columns to check (torch, keras, tf1, optax, ...)")
    v.add_argument("--scenarios", nargs="+", metavar="S", help="scenario names (default: all; see `refopt scenarios`)")
    v.add_argument("--dtype", choices=["float32", "float64", "all"], default="float32")
    v.add_argument("--out", default="refopt-verify", help="folder for conformance.json and conformance.md")
    v.add_argument("--no-golden", action="store_true", help="skip missing frameworks instead of using golden files")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.add_argument(
        "--markdown",
        action="store_true",
        help="print only the conformance matrix on stdout, as a Markdown fragment (no title) to embed in a page; "
        "the files are written as usual",
    )
    v.set_defaults(fn=cmd_verify)

    g = sub.add_parser("golden", parents=[debug], help="write a golden trajectory")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--scenario", help="a registered scenario")
    src.add_argument("--config", help="a scenario as a JSON file")
    g.add_argument("--out", required=True)
    g.add_argument("--framework", default="refopt", help="refopt (default) or a framework column, e.g. torch")
    g.add_argument("--dtype", choices=["float32", "float64"])
    g.add_argument("--no-machine", action="store_true", help="leave CPU/GPU names out of the metadata")
    g.set_defaults(fn=cmd_golden)

    c = sub.add_parser("compare", parents=[debug], help="where two trajectories diverge")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--plot", help="write a PNG of the ULP distance per step per variable")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_compare)

    s = sub.add_parser("scenarios", parents=[debug], help="list the scenario registry")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_scenarios)

    from refopt.train.command import add_arguments, run

    t = sub.add_parser(
        "train", parents=[debug], help="train a small model (MLP or CNN) on the bundled digits or your data"
    )
    add_arguments(t)
    t.set_defaults(fn=run)
    return p


def _one_line(exc: BaseException) -> str:
    """An error as one line: its message (for an OSError, what failed and on which file)."""
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)  # a usage error: argparse's message and exit code 2
    if args.command is None:  # `refopt` alone: the help, not an error
        parser.print_help()
        return 0
    try:
        return int(args.fn(args))
    except BrokenPipeError:  # `refopt scenarios | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"refopt {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # exit code 2: no answer (see the module docstring)
        if args.debug:
            traceback.print_exc()
        expected = (CommandError, ValueError, OSError, ImportError, KeyError)
        what = (
            _one_line(exc) if isinstance(exc, expected) else f"internal error: {type(exc).__name__}: {_one_line(exc)}"
        )
        hint = "" if isinstance(exc, expected) or args.debug else " (run with --debug for the traceback)"
        print(f"refopt {args.command}: {what}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
