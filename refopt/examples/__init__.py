"""Small runnable examples: ``python -m refopt.examples.regression``."""
