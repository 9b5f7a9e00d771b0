"""tools/make_docs.py, imported by path (tools/ is not a package), for the docs tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "tools" / "make_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_docs", module)
    spec.loader.exec_module(module)
    return module


make_docs = load_make_docs()
