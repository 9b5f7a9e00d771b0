"""``refopt train``: the flags of :class:`refopt.train.TrainConfig` and :func:`refopt.train.fit`.

Exit status: 0 when the run finished or stopped at ``--max-steps``; 2 for a usage
error, unusable data or an unusable checkpoint (one line on stderr naming the problem);
1 when training itself failed (the loss stopped being finite); 130 after Ctrl-C (the
run is saved and can be resumed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_arguments", "run"]

# flag -> TrainConfig field, for the options that define a run
_CONFIG_FLAGS = {
    "data": "data",
    "label_column": "label_column",
    "num_classes": "num_classes",
    "test_fraction": "test_fraction",
    "model": "model",
    "hidden": "hidden",
    "channels": "channels",
    "optimizer": "optimizer",
    "convention": "convention",
    "lr": "learning_rate",
    "momentum": "momentum",
    "nesterov": "nesterov",
    "weight_decay": "weight_decay",
    "schedule": "schedule",
    "warmup_steps": "warmup_steps",
    "clip_norm": "clip_norm",
    "clip_value": "clip_value",
    "batch_size": "batch_size",
    "epochs": "epochs",
    "seed": "seed",
    "dtype": "dtype",
    "backend": "backend",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``refopt train``'s flags to ``p``.  Run-defining flags default to "not given"
    (so that ``--resume`` can tell which were given); their defaults are TrainConfig's."""
    from refopt.optim.conventions import CONVENTIONS
    from refopt.train.loop import OPTIMIZERS, SCHEDULES, TrainConfig
    from refopt.train.models import MODELS

    d = TrainConfig()
    S = argparse.SUPPRESS
    p.add_argument("--out", required=True, metavar="DIR", help="folder for metrics, checkpoint, model and plot")
    data = p.add_argument_group("data")
    data.add_argument(
        "--data", default=S, metavar="SRC", help="'digits' (bundled, the default), a .npz (arrays x, y) or a .csv file"
    )
    data.add_argument("--label-column", default=S, metavar="NAME", help="the CSV's label column (default: label)")
    data.add_argument("--num-classes", type=int, default=S, metavar="K", help="default: the largest label + 1")
    data.add_argument(
        "--test-fraction", type=float, default=S, metavar="F", help=f"held-out share (default {d.test_fraction})"
    )
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=MODELS, default=S, help=f"default {d.model}")
    m.add_argument("--hidden", type=int, nargs="*", default=S, metavar="N", help="MLP hidden widths (default 128)")
    m.add_argument("--channels", type=int, nargs="+", default=S, metavar="N", help="CNN channels (default 16 32)")
    o = p.add_argument_group("optimizer")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default=S, help=f"default {d.optimizer}")
    o.add_argument("--convention", choices=CONVENTIONS, default=S, help=f"whose arithmetic (default {d.convention})")
    o.add_argument("--lr", type=float, default=S, help=f"learning rate (default {d.learning_rate:g})")
    o.add_argument("--momentum", type=float, default=S, help="SGD momentum (default 0)")
    o.add_argument("--nesterov", action="store_true", default=S, help="SGD Nesterov momentum")
    o.add_argument("--weight-decay", type=float, default=S, help="default: 0 (AdamW: its convention's)")
    o.add_argument("--schedule", choices=SCHEDULES, default=S, help=f"decay over the run (default {d.schedule})")
    o.add_argument("--warmup-steps", type=int, default=S, metavar="N", help="linear warmup from 0 (default 0)")
    o.add_argument("--clip-norm", type=float, default=S, metavar="X", help="clip gradients to this global norm")
    o.add_argument("--clip-value", type=float, default=S, metavar="X", help="clip gradient elements to [-X, X]")
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=int, default=S, metavar="N", help=f"default {d.batch_size}")
    r.add_argument("--epochs", type=int, default=S, metavar="N", help=f"default {d.epochs}")
    r.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after N steps in all (resume later)")
    r.add_argument("--seed", type=int, default=S, help=f"weights and data order (default {d.seed})")
    r.add_argument("--dtype", choices=("float32", "float64"), default=S, help=f"default {d.dtype}")
    r.add_argument("--backend", choices=("numpy", "cupy"), default=S, help="numpy (CPU, default) or cupy (GPU)")
    r.add_argument("--checkpoint-every", type=int, default=100, metavar="N", help="steps between checkpoints (100)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")


def run(args: argparse.Namespace) -> int:
    """Run ``refopt train``; return the exit status."""
    from refopt.io import FileFormatError
    from refopt.nn.module import CheckpointError
    from refopt.train.data import DataError
    from refopt.train.loop import TrainConfig, TrainingError, fit

    given: dict[str, Any] = {field: getattr(args, flag) for flag, field in _CONFIG_FLAGS.items() if hasattr(args, flag)}
    if "hidden" in given:
        given["hidden"] = tuple(given["hidden"])
    if "channels" in given:
        given["channels"] = tuple(given["channels"])

    def fail(code: int, message: str) -> int:
        print(f"refopt train: {message}", file=sys.stderr)
        return code

    try:
        if args.resume:
            result = fit(
                out=args.out,
                resume=True,
                data=given.pop("data", None),
                max_steps=args.max_steps,
                checkpoint_every=args.checkpoint_every,
                progress=not args.quiet,
                log=None if args.quiet else print,
                **given,
            )
        else:
            result = fit(
                TrainConfig(**given),
                out=args.out,
                overwrite=args.overwrite,
                max_steps=args.max_steps,
                checkpoint_every=args.checkpoint_every,
                progress=not args.quiet,
                log=None if args.quiet else print,
            )
    except KeyboardInterrupt:  # a second Ctrl-C: the last checkpoint written stands
        return fail(130, f"interrupted; the last checkpoint in {args.out} stands (--resume continues from it)")
    except TrainingError as exc:
        return fail(1, str(exc))
    except (DataError, CheckpointError, FileFormatError) as exc:
        return fail(2, str(exc))
    except (ValueError, FileNotFoundError) as exc:
        return fail(2, str(exc))
    except OSError as exc:
        return fail(2, f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    if result.stopped == "interrupted":
        return 130
    return 0
