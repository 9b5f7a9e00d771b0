"""Compiling formulas: trace once, emit numba (CPU) and CUDA (CuPy) source.

A formula (see :mod:`refopt.kernels.formula`) is called once with symbolic values; the
operations it performs are recorded as an expression graph, in order.  From the graph:

* :func:`numba_source` -- a Python function over flat arrays, compiled by numba with
  ``fastmath=False`` (LLVM then never contracts ``a*b + c``) and every ``K.fma`` an
  explicit ``llvm.fma`` intrinsic;
* :func:`cuda_source` -- a CUDA C kernel in which every operation is an intrinsic with
  its rounding spelled out (``__fadd_rn``, ``__fmul_rn``, ``__fdiv_rn``, ``__fsqrt_rn``,
  ``__fmaf_rn`` and the double forms), so that nvcc cannot contract either.

Both then compute exactly what :class:`~refopt.kernels.formula.ArrayOps` computes on
NumPy arrays, bit for bit; the tests hold them to it.

Types follow NumPy's rules for the formulas' values: float32, float64, int64, bool;
Python numbers are weak (they take the other operand's type); float32 and float64 never
meet without an explicit ``K.to_f32`` / ``K.to_f64``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Node",
    "Graph",
    "Tracer",
    "trace",
    "numba_source",
    "numba_segments_source",
    "cuda_source",
    "compile_numba",
    "numba_unoptimized_ir",
    "cache_dir",
]

FLOATS = ("float32", "float64")


class FormulaError(TypeError):
    """A formula used an operation or a type mix the formula layer does not allow."""


class Node:
    """One recorded operation: ``op`` applied to ``args`` (Nodes or constants), of ``dtype``."""

    __slots__ = ("op", "args", "dtype", "graph", "index")

    def __init__(self, graph: Graph, op: str, args: tuple, dtype: str) -> None:
        self.graph, self.op, self.args, self.dtype = graph, op, args, dtype
        self.index = len(graph.nodes)
        graph.nodes.append(self)

    # -- arithmetic ----------------------------------------------------------------------
    def _bin(self, op: str, other: Any, reverse: bool = False) -> Node:
        o = self.graph.lift(other, self.dtype)
        if o.dtype != self.dtype:
            raise FormulaError(f"formula: {op} of {self.dtype} and {o.dtype}; cast one explicitly")
        if op in ("add", "sub", "mul", "div") and self.dtype not in FLOATS:
            if op == "div":
                raise FormulaError("formula: division of integers; use shifts")
            if self.dtype == "bool":
                raise FormulaError(f"formula: {op} of booleans")
        a, b = (o, self) if reverse else (self, o)
        return Node(self.graph, op, (a, b), self.dtype)

    def __add__(self, o: Any) -> Node:
        return self._bin("add", o)

    def __radd__(self, o: Any) -> Node:
        return self._bin("add", o, True)

    def __sub__(self, o: Any) -> Node:
        return self._bin("sub", o)

    def __rsub__(self, o: Any) -> Node:
        return self._bin("sub", o, True)

    def __mul__(self, o: Any) -> Node:
        return self._bin("mul", o)

    def __rmul__(self, o: Any) -> Node:
        return self._bin("mul", o, True)

    def __truediv__(self, o: Any) -> Node:
        return self._bin("div", o)

    def __rtruediv__(self, o: Any) -> Node:
        return self._bin("div", o, True)

    def __neg__(self) -> Node:
        if self.dtype not in FLOATS and self.dtype != "int64":
            raise FormulaError(f"formula: negation of {self.dtype}")
        return Node(self.graph, "neg", (self,), self.dtype)

    # -- integers and masks ------------------------------------------------------------------
    def _bits(self, op: str, other: Any, reverse: bool = False) -> Node:
        o = self.graph.lift(other, self.dtype)
        if self.dtype not in ("int64", "bool") or o.dtype != self.dtype:
            raise FormulaError(f"formula: {op} needs two int64 or two bool values, got {self.dtype} and {o.dtype}")
        if op in ("shl", "shr") and self.dtype != "int64":
            raise FormulaError("formula: shifts are for int64 values")
        a, b = (o, self) if reverse else (self, o)
        return Node(self.graph, op, (a, b), self.dtype)

    def __and__(self, o: Any) -> Node:
        return self._bits("and", o)

    def __rand__(self, o: Any) -> Node:
        return self._bits("and", o, True)

    def __or__(self, o: Any) -> Node:
        return self._bits("or", o)

    def __ror__(self, o: Any) -> Node:
        return self._bits("or", o, True)

    def __lshift__(self, o: Any) -> Node:
        return self._bits("shl", o)

    def __rshift__(self, o: Any) -> Node:
        return self._bits("shr", o)

    def __invert__(self) -> Node:
        if self.dtype not in ("bool", "int64"):
            raise FormulaError(f"formula: ~ of {self.dtype}")
        return Node(self.graph, "not" if self.dtype == "bool" else "inv", (self,), self.dtype)

    # -- comparisons ----------------------------------------------------------------------
    def _cmp(self, op: str, other: Any) -> Node:
        o = self.graph.lift(other, self.dtype)
        if o.dtype != self.dtype:
            raise FormulaError(f"formula: comparison of {self.dtype} and {o.dtype}")
        return Node(self.graph, op, (self, o), "bool")

    def __lt__(self, o: Any) -> Node:
        return self._cmp("lt", o)

    def __le__(self, o: Any) -> Node:
        return self._cmp("le", o)

    def __gt__(self, o: Any) -> Node:
        return self._cmp("gt", o)

    def __ge__(self, o: Any) -> Node:
        return self._cmp("ge", o)

    def __eq__(self, o: Any) -> Node:  # type: ignore[override]
        return self._cmp("eq", o)

    def __ne__(self, o: Any) -> Node:  # type: ignore[override]
        return self._cmp("ne", o)

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise FormulaError("formula: a traced value has no truth value; use K.where, not if")


@dataclasses.dataclass
class Graph:
    """The recorded operations of one formula: inputs, constants, tables, outputs."""

    nodes: list[Node] = dataclasses.field(default_factory=list)
    inputs: list[Node] = dataclasses.field(default_factory=list)
    outputs: list[Node] = dataclasses.field(default_factory=list)
    tables: list[np.ndarray] = dataclasses.field(default_factory=list)

    def lift(self, v: Any, dtype: str) -> Node:
        """A Node as is; a Python number as a constant of ``dtype`` (weak typing)."""
        if isinstance(v, Node):
            return v
        if isinstance(v, bool):
            return Node(self, "const", (bool(v),), "bool")
        if isinstance(v, (int, float)):
            if dtype == "bool":
                raise FormulaError("formula: a number where a boolean is expected")
            if dtype == "int64":
                if isinstance(v, float) and not v.is_integer():
                    raise FormulaError(f"formula: the non-integer {v!r} met an int64 value")
                return Node(self, "const", (int(v),), "int64")
            value = float(np.asarray(v, dtype=dtype))
            return Node(self, "const", (value,), dtype)
        raise FormulaError(f"formula: cannot use a {type(v).__name__} in a formula")

    def fma_count(self) -> int:
        return sum(1 for n in self._live() if n.op == "fma")

    def _live(self) -> list[Node]:
        """Nodes the outputs depend on, in recording order."""
        seen: set[int] = set()
        stack = list(self.outputs)
        while stack:
            n = stack.pop()
            if n.index in seen:
                continue
            seen.add(n.index)
            stack.extend(a for a in n.args if isinstance(a, Node))
        return [n for n in self.nodes if n.index in seen]


class Tracer:
    """The ops object ``K`` a formula is traced with (the same methods as ArrayOps)."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph

    def _float(self, x: Any, what: str) -> Node:
        if isinstance(x, float) or (isinstance(x, int) and not isinstance(x, bool)):
            return self.g.lift(float(x), "float64")  # as NumPy takes a Python number: float64
        if not isinstance(x, Node) or x.dtype not in FLOATS:
            raise FormulaError(f"formula: {what} needs a float32 or float64 value")
        return x

    def where(self, c: Any, a: Any, b: Any) -> Node:
        like = a if isinstance(a, Node) else b
        if isinstance(like, Node):
            dtype = like.dtype
        else:  # two Python numbers: NumPy's defaults
            dtype = "float64" if isinstance(a, float) or isinstance(b, float) else "int64"
        a, b = self.g.lift(a, dtype), self.g.lift(b, dtype)
        c = self.g.lift(c, "bool")
        if c.dtype != "bool" or a.dtype != b.dtype:
            raise FormulaError(f"formula: K.where({c.dtype}, {a.dtype}, {b.dtype})")
        return Node(self.g, "where", (c, a, b), a.dtype)

    def abs(self, x: Node) -> Node:
        return Node(self.g, "abs", (self._float(x, "K.abs"),), x.dtype)

    def sqrt(self, x: Node) -> Node:
        return Node(self.g, "sqrt", (self._float(x, "K.sqrt"),), x.dtype)

    def rint(self, x: Node) -> Node:
        return Node(self.g, "rint", (self._float(x, "K.rint"),), x.dtype)

    def floor(self, x: Node) -> Node:
        return Node(self.g, "floor", (self._float(x, "K.floor"),), x.dtype)

    def isnan(self, x: Node) -> Node:
        return Node(self.g, "isnan", (self._float(x, "K.isnan"),), "bool")

    def signbit(self, x: Node) -> Node:
        return Node(self.g, "signbit", (self._float(x, "K.signbit"),), "bool")

    def bits(self, x: Node) -> Node:
        return Node(self.g, "bits", (self.to_f64(x),), "int64")

    def from_bits(self, i: Any) -> Node:
        return Node(self.g, "from_bits", (self.g.lift(i, "int64"),), "float64")

    def to_int(self, x: Node) -> Node:
        return Node(self.g, "to_int", (self._float(x, "K.to_int"),), "int64")

    def to_float(self, i: Any) -> Node:
        return Node(self.g, "to_float", (self.g.lift(i, "int64"),), "float64")

    def to_f64(self, x: Node) -> Node:
        x = self._float(x, "K.to_f64")
        return x if x.dtype == "float64" else Node(self.g, "to_f64", (x,), "float64")

    def to_f32(self, x: Node) -> Node:
        x = self._float(x, "K.to_f32")
        return x if x.dtype == "float32" else Node(self.g, "to_f32", (x,), "float32")

    def lookup(self, table: np.ndarray, i: Any) -> Node:
        table = np.ascontiguousarray(table)
        if table.ndim != 1 or table.dtype.name not in ("float64", "float32", "int64"):
            raise FormulaError("formula: K.lookup needs a 1-D float64, float32 or int64 table")
        k = next((j for j, t in enumerate(self.g.tables) if t.dtype == table.dtype and np.array_equal(t, table)), None)
        if k is None:
            k = len(self.g.tables)
            self.g.tables.append(table)
        return Node(self.g, "lookup", (k, self.g.lift(i, "int64")), table.dtype.name)

    def fma(self, a: Any, b: Any, c: Any) -> Node:
        like = next((v for v in (a, b, c) if isinstance(v, Node)), None)
        if like is None or like.dtype not in FLOATS:
            raise FormulaError("formula: K.fma needs float values")
        a, b, c = (self.g.lift(v, like.dtype) for v in (a, b, c))
        if not a.dtype == b.dtype == c.dtype:
            raise FormulaError(f"formula: K.fma of {a.dtype}, {b.dtype}, {c.dtype}")
        return Node(self.g, "fma", (a, b, c), like.dtype)


def trace(formula: Callable[..., Any], inputs: Sequence[tuple[str, str]]) -> Graph:
    """Record ``formula(K, *inputs)``; ``inputs`` are ``(name, dtype)`` pairs.  The result
    (a value or a tuple of values) becomes the graph's outputs."""
    g = Graph()
    for name, dtype in inputs:
        n = Node(g, "input", (name,), dtype)
        g.inputs.append(n)
    out = formula(Tracer(g), *g.inputs)
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        if not isinstance(o, Node):
            raise FormulaError("formula: every output must be a traced value")
    g.outputs = list(outs)
    return g


# -- emitters ------------------------------------------------------------------------------------
_NP_TYPE = {"float32": "np.float32", "float64": "np.float64", "int64": "np.int64", "bool": "np.bool_"}
_PY_OP = {"add": "+", "sub": "-", "mul": "*", "div": "/", "and": "&", "or": "|", "shl": "<<", "shr": ">>"}
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def _const_py(value: Any, dtype: str) -> str:
    if dtype == "bool":
        return "True" if value else "False"
    if dtype == "int64":
        return f"np.int64({int(value)})"
    return f"{_NP_TYPE[dtype]}(float.fromhex({float(value).hex()!r}))"


_HEADER = [
    "import numpy as np",
    "from numba import carray",
    "from refopt.kernels._numba_support import fma, sqrt, rint, floor, fabs, bits64, from_bits64, bits32, pointer",
    "",
]


def _numba_globals(graph: Graph, tag: str) -> tuple[list[str], dict[int, str], dict[int, str]]:
    """Module-level lines for a graph's tables and constants (named with ``tag``), and the
    names of its constants and tables."""
    lines: list[str] = []
    tables: dict[int, str] = {}
    for k, t in enumerate(graph.tables):
        tables[k] = f"{tag}TABLE{k}"
        values = [float(v) if t.dtype.kind == "f" else int(v) for v in t]
        lines.append(f"{tables[k]} = np.array({values!r}, dtype=np.{t.dtype.name})")
    consts: dict[int, str] = {}
    for n in graph._live():
        if n.op == "const":
            consts[n.index] = f"{tag}C{n.index}"
            lines.append(f"{consts[n.index]} = {_const_py(n.args[0], n.dtype)}")
    return lines, consts, tables


def _numba_statements(graph: Graph, names: dict[int, str], tables: dict[int, str], indent: str, tag: str) -> list[str]:
    """One assignment per live operation (``names`` holds the inputs' and constants'
    expressions and receives the temporaries'); the outputs' expressions are then
    ``names[o.index]``."""
    out = []

    def ref(a: Any) -> str:
        return names[a.index]

    for n in graph._live():
        if n.op in ("input", "const"):
            continue
        a = n.args
        op = n.op
        if op in _PY_OP:
            expr = f"{ref(a[0])} {_PY_OP[op]} {ref(a[1])}"
        elif op in _CMP:
            expr = f"{ref(a[0])} {_CMP[op]} {ref(a[1])}"
        elif op == "neg":
            expr = f"-{ref(a[0])}"
        elif op == "not":
            expr = f"not {ref(a[0])}"
        elif op == "inv":
            expr = f"~{ref(a[0])}"
        elif op == "where":
            expr = f"{ref(a[1])} if {ref(a[0])} else {ref(a[2])}"
        elif op == "abs":
            expr = f"fabs({ref(a[0])})"
        elif op in ("sqrt", "rint", "floor"):
            expr = f"{op}({ref(a[0])})"
        elif op == "isnan":
            expr = f"{ref(a[0])} != {ref(a[0])}"
        elif op == "signbit":
            expr = f"bits64(np.float64({ref(a[0])})) < 0" if a[0].dtype == "float64" else f"bits32({ref(a[0])}) < 0"
        elif op == "bits":
            expr = f"bits64({ref(a[0])})"
        elif op == "from_bits":
            expr = f"from_bits64({ref(a[0])})"
        elif op in ("to_int", "to_float", "to_f64", "to_f32"):
            expr = f"{_NP_TYPE[n.dtype]}({ref(a[0])})"
        elif op == "lookup":
            expr = f"{tables[a[0]]}[{ref(a[1])}]"
        elif op == "fma":
            expr = f"fma({ref(a[0])}, {ref(a[1])}, {ref(a[2])})"
        else:  # pragma: no cover - every op the tracer records is handled above
            raise FormulaError(f"numba emitter: unknown op {op!r}")
        names[n.index] = f"{tag}t{n.index}"
        out.append(f"{indent}{tag}t{n.index} = {expr}")
    return out


def numba_source(graph: Graph, name: str, arrays: Sequence[str]) -> str:
    """Python source of ``name(<inputs>, <outputs>)`` for numba: inputs named in
    ``arrays`` are 1-D arrays read at ``i``, the others scalars; one output array per
    graph output, written at ``i``; the loop covers the first output's length."""
    lines, consts, tables = _numba_globals(graph, "")
    params = [n.args[0] for n in graph.inputs] + [f"out{k}" for k in range(len(graph.outputs))]
    lines = _HEADER + lines + ["", "", f"def {name}({', '.join(params)}):", "    for i in range(out0.shape[0]):"]
    names = {n.index: n.args[0] + ("[i]" if n.args[0] in arrays else "") for n in graph.inputs}
    names.update(consts)
    lines += _numba_statements(graph, names, tables, "        ", "")
    lines += [f"        out{k}[i] = {names[o.index]}" for k, o in enumerate(graph.outputs)]
    return "\n".join(lines) + "\n"


def numba_segments_source(
    graphs: Sequence[Graph],
    name: str,
    arrays: Sequence[str],
    scalars: Sequence[str],
    inplace: Sequence[str | None] | None = None,
) -> str:
    """Python source of a kernel that runs a formula over many segments (variables) in
    one call::

        name(A_<array>..., S_<scalar>..., O_0..., sizes, tails)

    ``A_x``: int64 addresses of each segment's 1-D array ``x`` (its dtype the graph
    input's); ``S_x``: each segment's value of scalar ``x``; ``O_k``: addresses of each
    segment's output ``k``.  ``inplace[k]``, when given, names the input that output
    ``k`` overwrites (it then has no ``O_k``): the store goes through the same array, so
    that LLVM sees a load and a store of one index -- no loop-carried dependence, the
    loop vectorises -- where two pointers to one range would defeat its alias checks.
    Every input of element i is read before any output of element i is written (and
    element i alone, so a segment can be cut into pieces run by different threads:
    :mod:`refopt.kernels.threads`).  ``graphs[0]`` computes the first ``sizes[seg] -
    tails[seg]`` elements, ``graphs[1]`` (if given) the rest -- torch's remainder loop.
    The graphs share their inputs and outputs by position."""
    body = graphs[0]
    header: list[str] = []
    per_graph = []
    for gi, g in enumerate(graphs):
        tag = f"G{gi}_"
        glines, consts, tables = _numba_globals(g, tag)
        header += glines
        per_graph.append((g, consts, tables, tag))
    dtypes = {n.args[0]: n.dtype for n in body.inputs}
    outs = [o.dtype for o in body.outputs]
    over = list(inplace) if inplace is not None else [None] * len(outs)
    params = [f"A_{a}" for a in arrays] + [f"S_{x}" for x in scalars]
    params += [f"O_{k}" for k in range(len(outs)) if over[k] is None]
    lines = _HEADER + header + ["", "", f"def {name}({', '.join(params)}, sizes, tails):"]
    lines.append("    for seg in range(sizes.shape[0]):")
    lines.append("        n = sizes[seg]")
    lines.append("        k = n - tails[seg]")
    for a in arrays:
        lines.append(f"        {a} = carray(pointer(A_{a}[seg], {_NP_TYPE[dtypes[a]]}), (n,))")
    for x in scalars:
        lines.append(f"        {x} = S_{x}[seg]")
    for k, dt in enumerate(outs):
        if over[k] is None:
            lines.append(f"        out{k} = carray(pointer(O_{k}[seg], {_NP_TYPE[dt]}), (n,))")
        else:
            lines.append(f"        out{k} = {over[k]}")
    for rng, info in zip(("range(k)", "range(k, n)"), per_graph):
        lines += _segment_loop(info, arrays, rng, "        ")
    return "\n".join(lines) + "\n"


def _segment_loop(graph_info: tuple, arrays: Sequence[str], rng: str, indent: str) -> list[str]:
    g, consts, tables, tag = graph_info
    names = {n.index: n.args[0] + ("[i]" if n.args[0] in arrays else "") for n in g.inputs}
    names.update(consts)
    lines = [f"{indent}for i in {rng}:"]
    lines += _numba_statements(g, names, tables, indent + "    ", tag)
    lines += [f"{indent}    out{k}[i] = {names[o.index]}" for k, o in enumerate(g.outputs)]
    return lines


_C_TYPE = {"float32": "float", "float64": "double", "int64": "long long", "bool": "bool"}
_C_RN = {
    ("add", "float32"): "__fadd_rn",
    ("sub", "float32"): "__fsub_rn",
    ("mul", "float32"): "__fmul_rn",
    ("div", "float32"): "__fdiv_rn",
    ("add", "float64"): "__dadd_rn",
    ("sub", "float64"): "__dsub_rn",
    ("mul", "float64"): "__dmul_rn",
    ("div", "float64"): "__ddiv_rn",
}


def _const_c(value: Any, dtype: str) -> str:
    if dtype == "bool":
        return "true" if value else "false"
    if dtype == "int64":
        return f"{int(value)}LL"
    v = float(value)
    if np.isnan(v):
        return "__longlong_as_double(0x7ff8000000000000LL)" if dtype == "float64" else "__int_as_float(0x7fc00000)"
    if np.isinf(v):
        inf = "__longlong_as_double(0x7ff0000000000000LL)" if dtype == "float64" else "__int_as_float(0x7f800000)"
        return inf if v > 0 else f"(-{inf})"
    return v.hex() + ("f" if dtype == "float32" else "")


def cuda_source(graph: Graph, name: str, arrays: Sequence[str]) -> str:
    """CUDA C source of ``extern "C" __global__ void name(<inputs>, <outputs>, long long n)``:
    one thread per element, every floating-point operation an explicit ``_rn`` intrinsic.
    The pointers are not ``__restrict__``: an output may be an input's array."""
    live = graph._live()
    lines = []
    for k, t in enumerate(graph.tables):
        vals = ", ".join(_const_c(v, t.dtype.name) for v in t.tolist())
        lines.append(f"__device__ const {_C_TYPE[t.dtype.name]} {name}_TABLE{k}[{t.size}] = {{{vals}}};")
    params = []
    for n in graph.inputs:
        nm = n.args[0]
        params.append(f"const {_C_TYPE[n.dtype]}* {nm}" if nm in arrays else f"const {_C_TYPE[n.dtype]} {nm}")
    params += [f"{_C_TYPE[o.dtype]}* out{k}" for k, o in enumerate(graph.outputs)]
    params.append("const long long n")
    lines += [
        f'extern "C" __global__ void {name}({", ".join(params)}) {{',
        "    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;",
        "    if (i >= n) return;",
    ]
    names: dict[int, str] = {}
    for n in graph.inputs:
        names[n.index] = n.args[0] + ("[i]" if n.args[0] in arrays else "")

    def ref(a: Any) -> str:
        return names[a.index]

    for n in live:
        if n.op == "input":
            continue
        a, op, dt = n.args, n.op, n.dtype
        if op == "const":
            names[n.index] = _const_c(a[0], dt)
            continue
        if op in ("add", "sub", "mul", "div") and dt in FLOATS:
            expr = f"{_C_RN[(op, dt)]}({ref(a[0])}, {ref(a[1])})"
        elif op in _PY_OP:
            sym = {"and": "&&", "or": "||"}.get(op) if dt == "bool" else None
            expr = f"({ref(a[0])} {sym or _PY_OP[op]} {ref(a[1])})"
        elif op in _CMP:
            expr = f"({ref(a[0])} {_CMP[op]} {ref(a[1])})"
        elif op == "neg":
            expr = f"(-{ref(a[0])})"
        elif op == "not":
            expr = f"(!{ref(a[0])})"
        elif op == "inv":
            expr = f"(~{ref(a[0])})"
        elif op == "where":
            expr = f"({ref(a[0])} ? {ref(a[1])} : {ref(a[2])})"
        elif op == "abs":
            expr = f"{'fabsf' if dt == 'float32' else 'fabs'}({ref(a[0])})"
        elif op == "sqrt":
            expr = f"{'__fsqrt_rn' if dt == 'float32' else '__dsqrt_rn'}({ref(a[0])})"
        elif op == "rint":
            expr = f"{'rintf' if dt == 'float32' else 'rint'}({ref(a[0])})"
        elif op == "floor":
            expr = f"{'floorf' if dt == 'float32' else 'floor'}({ref(a[0])})"
        elif op == "isnan":
            expr = f"isnan({ref(a[0])})"
        elif op == "signbit":
            expr = f"(signbit({ref(a[0])}) != 0)"
        elif op == "bits":
            expr = f"__double_as_longlong({ref(a[0])})"
        elif op == "from_bits":
            expr = f"__longlong_as_double({ref(a[0])})"
        elif op == "to_int":
            expr = f"{'__float2ll_rz' if a[0].dtype == 'float32' else '__double2ll_rz'}({ref(a[0])})"
        elif op == "to_float":
            expr = f"__ll2double_rn({ref(a[0])})"
        elif op == "to_f64":
            expr = f"(double)({ref(a[0])})"
        elif op == "to_f32":
            expr = f"__double2float_rn({ref(a[0])})"
        elif op == "lookup":
            expr = f"{name}_TABLE{a[0]}[{ref(a[1])}]"
        elif op == "fma":
            expr = f"{'__fmaf_rn' if dt == 'float32' else '__fma_rn'}({ref(a[0])}, {ref(a[1])}, {ref(a[2])})"
        else:  # pragma: no cover
            raise FormulaError(f"CUDA emitter: unknown op {op!r}")
        names[n.index] = f"t{n.index}"
        lines.append(f"    const {_C_TYPE[dt]} t{n.index} = {expr};")
    lines += [f"    out{k}[i] = {ref(o)};" for k, o in enumerate(graph.outputs)]
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- numba compilation, cached on disk ----------------------------------------------------------
def cache_dir() -> Path:
    """Where generated kernel modules (and numba's cache beside them) are kept:
    ``$REFOPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/refopt``, else ``~/.cache/refopt``."""
    base = os.environ.get("REFOPT_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "refopt"


_compiled: dict[str, Callable[..., Any]] = {}


def compile_numba(source: str, name: str) -> Callable[..., Any]:
    """njit(fastmath=False, nogil=True, cache=True) the function ``name`` of generated
    ``source`` (nogil: :mod:`refopt.kernels.threads` runs pieces of a call at once).

    The source is written to a file named by its hash (numba's cache needs a file), so
    the same formula reuses its machine code across processes."""
    key = hashlib.sha256(source.encode()).hexdigest()[:20]
    hit = _compiled.get(key)
    if hit is not None:
        return hit
    import numba

    folder = cache_dir() / "kernels"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"k_{key}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        tmp.replace(path)
    modname = f"refopt_kernel_{key}"
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    # error_model="numpy": x / 0 is inf (IEEE), never a raised ZeroDivisionError
    fn = numba.njit(fastmath=False, error_model="numpy", cache=True, nogil=True)(getattr(module, name))
    _compiled[key] = fn
    return fn


def numba_unoptimized_ir(source: str, name: str, signature: Any) -> str:
    """The LLVM IR of generated function ``name`` compiled for ``signature`` with LLVM's
    optimisations off -- one call per formula operation, before the loop vectoriser turns
    a scalar ``llvm.fma.f32`` into ``llvm.fma.v8f32`` and an epilogue (for inspection by
    the tests; the kernels themselves are compiled by :func:`compile_numba`)."""
    import numba

    namespace: dict[str, Any] = {}
    exec(compile(source, f"<refopt kernel {name}>", "exec"), namespace)
    fn = numba.njit(fastmath=False, error_model="numpy", _dbg_optnone=True)(namespace[name])
    fn.compile(signature)
    return "\n".join(fn.inspect_llvm().values())
