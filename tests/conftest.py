"""Shared fixtures: hypothesis profiles, the backend matrix, the gpu marker, and one run
of the full conformance matrix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings

import refopt as rf
from refopt import backend

# The only function-scoped fixture is the autouse one below, which merely selects the
# NumPy backend; it is safe to share across examples.
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]

# CI is derandomized: the same examples every run, so a red build is reproducible.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESS,
)
settings.register_profile("dev", deadline=None, suppress_health_check=_SUPPRESS)
settings.load_profile(os.environ.get("REFOPT_HYPOTHESIS_PROFILE", "ci"))

# The op suite runs on NumPy and again on array_api_strict arrays: any NumPy-only call in
# an op fails there.  CuPy joins when a GPU is present.
CPU_BACKENDS = ["numpy", "array_api_strict"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA device (skipped otherwise)")
    config.addinivalue_line("markers", "frameworks: compares against torch / TensorFlow / JAX")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if backend.cupy_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device: cupy.is_available() is false")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A parametrization rather than a fixture, so that hypothesis tests can take it.
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", CPU_BACKENDS + [pytest.param("cupy", marks=pytest.mark.gpu)])


@pytest.fixture(autouse=True)
def _numpy_backend_by_default():
    with rf.use_backend("numpy"):
        yield


@pytest.fixture(scope="session")
def full_verify(tmp_path_factory) -> tuple[subprocess.CompletedProcess, object]:
    """The real console script over every scenario and both dtypes, once per session:
    ``refopt verify --markdown --dtype all`` (stdout: the matrix as Markdown) and the
    folder it wrote conformance.json and conformance.md to.  Its ~40 s are shared by
    tests/oracle/test_verify.py and tests/docs/test_conformance_page.py."""
    out = tmp_path_factory.mktemp("verify")
    proc = subprocess.run(
        [sys.executable, "-m", "refopt.cli", "verify", "--markdown", "--dtype", "all", "--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=out,
    )
    return proc, out
