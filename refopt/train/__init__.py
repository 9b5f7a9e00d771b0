"""refopt.train: train small models (an MLP, a small CNN) with refopt alone.

    from refopt.train import fit
    result = fit(out="runs/digits")               # the bundled 8x8 digits, an MLP, Adam
    result = fit(out="runs/digits", resume=True)  # continue a stopped run, bit for bit

The ``refopt train`` command is this API with flags; see docs/train.md.
"""

from refopt.train.data import (
    DataError,
    Dataset,
    from_arrays,
    load_csv,
    load_dataset,
    load_digits,
    load_npz,
    split,
)
from refopt.train.loop import (
    StepResult,
    TrainConfig,
    Trainer,
    TrainingError,
    TrainResult,
    fit,
    load_model,
    plot_curves,
)
from refopt.train.models import build_model, cnn, mlp

__all__ = [
    "DataError",
    "Dataset",
    "StepResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "build_model",
    "cnn",
    "fit",
    "from_arrays",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_model",
    "load_npz",
    "mlp",
    "plot_curves",
    "split",
]
