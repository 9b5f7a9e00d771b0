"""The ``refopt`` command.

    refopt verify [--frameworks F ...] [--scenarios S ...] [--dtype float32|float64|all] [--out DIR]
    refopt golden (--scenario NAME | --config FILE) --out FILE [--framework F] [--dtype D]
    refopt compare A B [--plot out.png] [--json]
    refopt scenarios [--json]
    refopt train --out DIR [--data digits|FILE] [--model mlp|cnn] [--optimizer ...] [--resume] ...
    refopt --version

``verify`` exits 1 when any scenario misses its stated tolerance against a framework (or a
framework fails to run it), 0 otherwise; ``compare`` exits 1 when the trajectories differ.
``train``'s flags and exit statuses: refopt/train/command.py.  ``refopt`` alone prints the help.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def _load_scenario(args: argparse.Namespace) -> Any:
    from refopt.oracle import scenarios as S

    if args.config:
        data = json.loads(Path(args.config).read_text())
        sc = S.Scenario.from_dict(data)
    else:
        sc = S.get(args.scenario)
    return sc.with_dtype(args.dtype) if args.dtype else sc


def cmd_verify(args: argparse.Namespace) -> int:
    from refopt.oracle import scenarios as S
    from refopt.oracle.verify import ALL_COLUMNS, verify

    if args.frameworks:
        unknown = [f for f in args.frameworks if f not in ALL_COLUMNS]
        if unknown:
            print(f"refopt verify: unknown frameworks {unknown}; known: {', '.join(ALL_COLUMNS)}", file=sys.stderr)
            return 2
    scs = [S.get(n) for n in args.scenarios] if args.scenarios else [S.get(n) for n in S.names()]
    dtypes = ["float32", "float64"] if args.dtype == "all" else [args.dtype]
    report = verify(scs, dtypes, args.frameworks, progress=_Progress(args.quiet), use_golden=not args.no_golden)
    j, m = report.write(args.out)
    print(report.to_markdown())
    print(f"wrote {j} and {m}")
    return 1 if report.failed else 0


def cmd_golden(args: argparse.Namespace) -> int:
    from refopt.oracle import scenarios as S
    from refopt.oracle.verify import COLUMNS

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
        raise SystemExit("refopt compare --plot needs matplotlib: pip install matplotlib") from None
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
    sub = p.add_subparsers(dest="command", metavar="{verify,golden,compare,scenarios,train}")

    v = sub.add_parser("verify", help="check refopt against every installed framework (or the shipped golden files)")
    v.add_argument("--frameworks", nargs="+", metavar="F", help="columns to check (torch, keras, tf1, optax, ...)")
    v.add_argument("--scenarios", nargs="+", metavar="S", help="scenario names (default: all; see `refopt scenarios`)")
    v.add_argument("--dtype", choices=["float32", "float64", "all"], default="float32")
    v.add_argument("--out", default="refopt-verify", help="folder for conformance.json and conformance.md")
    v.add_argument("--no-golden", action="store_true", help="skip missing frameworks instead of using golden files")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(fn=cmd_verify)

    g = sub.add_parser("golden", help="write a golden trajectory")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--scenario", help="a registered scenario")
    src.add_argument("--config", help="a scenario as a JSON file")
    g.add_argument("--out", required=True)
    g.add_argument("--framework", default="refopt", help="refopt (default) or a framework column, e.g. torch")
    g.add_argument("--dtype", choices=["float32", "float64"])
    g.add_argument("--no-machine", action="store_true", help="leave CPU/GPU names out of the metadata")
    g.set_defaults(fn=cmd_golden)

    c = sub.add_parser("compare", help="where two trajectories diverge")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--plot", help="write a PNG of the ULP distance per step per variable")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_compare)

    s = sub.add_parser("scenarios", help="list the scenario registry")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_scenarios)

    from refopt.train.command import add_arguments, run

    t = sub.add_parser("train", help="train a small model (MLP or CNN) on the bundled digits or your data")
    add_arguments(t)
    t.set_defaults(fn=run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `refopt` alone: the help, not an error
        parser.print_help()
        return 0
    try:
        return int(args.fn(args))
    except BrokenPipeError:  # `refopt scenarios | head`
        sys.stderr.close()
        return 0
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"refopt {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
