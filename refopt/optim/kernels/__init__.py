"""Exact arithmetic kernels the update rules are written with."""

from refopt.optim.kernels.fma import fma, round_to_odd_add, two_prod, two_sum

__all__ = ["fma", "round_to_odd_add", "two_prod", "two_sum"]
