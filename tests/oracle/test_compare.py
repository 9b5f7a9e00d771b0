"""compare(): per-step, per-variable errors and the first divergence."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from refopt.oracle import scenarios as S
from refopt.oracle.compare import compare


def test_identical_and_perturbed() -> None:
    a = S.run_scenario(S.get("adam-tf1"))
    assert compare(a, a).identical and compare(a, a).first_divergence() is None
    b = copy.deepcopy(a)
    p = b.params["head/kernel"]
    p[7, 2, 3] = np.nextafter(p[7, 2, 3], np.float32(np.inf))
    p[9, 0, 0] = p[9, 0, 0] + np.float32(1e-3)
    c = compare(b, a)
    assert c.first_divergence() == (7, "head/kernel")
    assert c.params["head/kernel"]["max_ulp"][7] == 1 and c.params["head/kernel"]["max_ulp"][8] == 0
    assert c.params["head/kernel"]["max_abs"][9] == pytest.approx(1e-3, rel=1e-3)
    assert not c.identical and c.within({"max_abs": 2e-3}) and not c.within({"max_ulp": 0})
    d = c.to_dict()
    assert d["first_divergence"] == {"step": 7, "variable": "head/kernel"}
    assert "first divergence at step 7 in 'head/kernel'" in c.summary()
    with pytest.raises(ValueError, match="steps"):
        compare(a, S.run_scenario(S.Scenario.from_dict({**S.get("adam-tf1").to_dict(), "steps": 3})))
