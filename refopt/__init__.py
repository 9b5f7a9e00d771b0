"""refopt: a NumPy/CuPy reference engine with autograd, for golden values you can trust.

import refopt as rf
"""

from refopt import autodiff as _autodiff
from refopt import nn, optim, train  # noqa: E402  (after the ops they build on)
from refopt import ops as _ops
from refopt._version import __version__
from refopt.autodiff import *  # noqa: F403  (refopt.autodiff.__all__)
from refopt.backend import current_backend, use_backend
from refopt.kernels.mode import current_kernels, current_mode, set_kernels, use_mode
from refopt.ops import *  # noqa: F403  (refopt.ops.__all__)

__all__ = [
    "__version__",
    "current_backend",
    "current_kernels",
    "current_mode",
    "nn",
    "optim",
    "set_kernels",
    "train",
    "use_backend",
    "use_mode",
    *_autodiff.__all__,
    *_ops.__all__,
]
