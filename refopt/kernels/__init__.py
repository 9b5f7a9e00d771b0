"""refopt's kernels: the arithmetic whose bits refopt decides itself.

* :mod:`~refopt.kernels.mode` -- the numerics mode, ``"reproducible"`` or ``"fast"``;
* :mod:`~refopt.kernels.formula` -- the formula layer: elementwise formulas over IEEE
  basic operations, written once and evaluated on NumPy or CuPy arrays;
* :mod:`~refopt.kernels.eft` -- error-free transformations and double-double arithmetic;
* :mod:`~refopt.kernels.fma` -- exact fused multiply-add; :mod:`~refopt.kernels.libm` --
  the C library's ``pow``/``powf`` (what the frameworks' bias corrections call).
"""

from refopt.kernels.mode import MODES, current_mode, reproducible, use_mode

__all__ = ["MODES", "current_mode", "reproducible", "use_mode"]
