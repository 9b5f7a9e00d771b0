"""Regenerate the golden trajectories shipped in refopt/oracle/golden/ -- from the real
frameworks, never from refopt.

    python tools/make_golden.py [--check] [--kind model|synthetic]

For every registered scenario and dtype, the scenario's first column (the framework its
convention reproduces: torch's fused/default path, Keras on TensorFlow, tf.compat.v1,
optax eager, BERT's optimizer on TF1) runs it, and the trajectory is written without
machine names, so the bytes depend only on the scenario and the framework versions
(pinned in setup.cfg's ``frameworks`` extra).  Model scenarios replay the gradients
refopt's engine computed; masked scenarios store the framework's *unmasked* run (verify
checks the masked invariants against it).

``--check`` regenerates into a temporary folder and exits 1 unless every file is
byte-identical to the shipped one.  ``--kind`` restricts either to the scenarios of one
gradient source (``model``: the ones whose inputs refopt's engine computes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from refopt.oracle import scenarios as S
from refopt.oracle.verify import COLUMNS

GOLDEN = Path(__file__).resolve().parent.parent / "refopt" / "oracle" / "golden"


def generate(folder: Path, kind: str | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in S.names():
        if kind is not None and S.get(name).gradients["kind"] != kind:
            continue
        for dtype in ("float32", "float64"):
            sc = S.get(name)
            if sc.convention == "bert" and dtype != "float32":
                continue
            sc = sc.with_dtype(dtype)
            col, fw, kw, _ = COLUMNS[sc.convention][0]
            mine = S.run_scenario(sc) if sc.gradients["kind"] == "model" else None
            traj = S.run_scenario(sc, fw, _refopt=mine, **kw)
            traj.meta.update({"column": col, "generated_by": "tools/make_golden.py"})
            written.append(traj.save(folder / f"{name}.{dtype}.npz", machine=False))
            print(f"{name} [{dtype}] <- {traj.meta['framework']} {traj.meta.get('version')}", file=sys.stderr)
    return written


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="regenerate elsewhere and compare bytes")
    ap.add_argument("--kind", choices=("model", "synthetic"), help="only the scenarios of this gradient source")
    args = ap.parse_args()
    if not args.check:
        generate(GOLDEN, args.kind)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp), args.kind)
        bad = [p.name for p in fresh if (GOLDEN / p.name).read_bytes() != p.read_bytes()]
        shipped = {p.name for p in GOLDEN.glob("*.npz")}
        if args.kind is not None:
            shipped = {n for n in shipped if S.get(n.split(".")[0]).gradients["kind"] == args.kind}
        missing = sorted(shipped ^ {p.name for p in fresh})
    if bad or missing:
        print(f"golden files differ: {bad}; present on one side only: {missing}", file=sys.stderr)
        return 1
    print(f"{len(fresh)} golden files reproduced byte for byte", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
