"""refopt as an oracle: runs, trajectories, framework adapters."""

from refopt.oracle.run import Run, run_refopt
from refopt.oracle.trajectory import Trajectory

__all__ = ["Run", "Trajectory", "run_refopt"]
