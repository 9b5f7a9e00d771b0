"""refopt as an oracle: runs, trajectories, framework adapters."""

from refopt.oracle.run import Run, Trajectory, run_refopt

__all__ = ["Run", "Trajectory", "run_refopt"]
