"""Reverse-mode differentiation over the recorded graph: :func:`gradients`.

The walk is two passes over the nodes reachable from ``ys``:

1. a depth-first post-order, which also marks each tensor that depends on some ``x``
   (only those nodes get their VJPs called -- TensorFlow's pruning);
2. the reverse of that order (a topological order from ``ys`` down), pushing each
   node's cotangent to its inputs and summing cotangents that meet.

Both passes follow the recorded argument order, never a set, so the sums are formed in
the same order -- and give the same bits -- on every run.  The cotangent sums (``+``,
installed on Tensor by :mod:`refopt.ops`) and the VJPs are refopt ops, so the result is
itself differentiable (``grad(grad(f))``).
"""

from __future__ import annotations

from typing import Any

from refopt import backend
from refopt.autodiff.tensor import Tensor, Variable, _is_float_dtype, constant

__all__ = ["gradients", "StaleGraphError"]

_UNCONNECTED = ("none", "zero")


class StaleGraphError(RuntimeError):
    """A graph was differentiated after one of the Variables it read had been assigned."""


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _toposort(ys: list[Tensor], x_ids: set[int]) -> tuple[list[Tensor], dict[int, bool]]:
    """Post-order of every tensor reachable from ``ys``; and whether each depends on an x.

    Iterative depth-first search: a tensor is expanded the first time it is on top of the
    stack and finished the second time, when all its inputs are finished.
    """
    depends: dict[int, bool] = {}
    started: set[int] = set()
    order: list[Tensor] = []
    for y in ys:
        stack = [y]
        while stack:
            t = stack[-1]
            tid = id(t)
            if tid in depends:
                stack.pop()
                continue
            node = t._node
            if tid in started:
                stack.pop()
                dep = tid in x_ids
                if node is not None and not dep:
                    for a in node[1]:
                        if isinstance(a, Tensor) and depends[id(a)]:
                            dep = True
                            break
                depends[tid] = dep
                order.append(t)
                continue
            started.add(tid)
            if node is not None:
                for a in node[1]:
                    if isinstance(a, Tensor) and id(a) not in depends:
                        stack.append(a)
    return order, depends


def _check_versions(t: Tensor) -> None:
    prim, args, _, vers = t._node
    for i, seen in vers:
        var = args[i]
        if var._version != seen:
            raise StaleGraphError(
                f"refopt.gradients: Variable {var.name!r} was assigned after this graph read it "
                f"(the graph saw version {seen}, the variable is now at version {var._version}; "
                f"the read was by op {prim.name!r}). Recompute the forward pass after updating "
                "variables."
            )


def _ones_like(y: Tensor) -> Tensor:
    xp = backend.namespace(y.data)
    return constant(xp.ones(y.data.shape, dtype=y.data.dtype))


def _zeros_like(x: Tensor) -> Tensor:
    xp = backend.namespace(x.data)
    return constant(xp.zeros(x.data.shape, dtype=x.data.dtype))


def gradients(
    ys: Tensor | list[Tensor],
    xs: Tensor | list[Tensor],
    grad_ys: Tensor | list[Any] | None = None,
    unconnected_gradients: str = "none",
) -> list[Tensor | None]:
    """Gradients of ``sum(ys)`` with respect to each of ``xs`` (TensorFlow-1 semantics).

    For cotangents ``grad_ys`` (default: ones), returns
        [ sum_j  grad_ys[j] . d ys[j] / d x   for x in xs ],
    a vector-Jacobian product.  ``xs`` may be any tensors of the graph, leaves or
    intermediates.  An ``x`` that ``ys`` does not depend on gets ``None``, or zeros with
    ``unconnected_gradients="zero"``.  The result is a list even for a single ``x``.
    """
    if unconnected_gradients not in _UNCONNECTED:
        raise ValueError(
            f"refopt.gradients: unconnected_gradients must be one of {_UNCONNECTED}, got {unconnected_gradients!r}"
        )
    ys_list = _as_list(ys)
    xs_list = _as_list(xs)
    for i, y in enumerate(ys_list):
        if not isinstance(y, Tensor):
            raise TypeError(f"refopt.gradients: ys[{i}] is a {type(y).__name__}, not a Tensor")
        if not _is_float_dtype(y.dtype):
            raise TypeError(
                f"refopt.gradients: ys[{i}] has dtype {backend.dtype_name(y.dtype)}; only float32 "
                "and float64 values can be differentiated"
            )
    for i, x in enumerate(xs_list):
        if not isinstance(x, Tensor):
            raise TypeError(f"refopt.gradients: xs[{i}] is a {type(x).__name__}, not a Tensor")
    if grad_ys is None:
        gys = [_ones_like(y) for y in ys_list]
    else:
        gys_in = _as_list(grad_ys)
        if len(gys_in) != len(ys_list):
            raise ValueError(f"refopt.gradients: {len(gys_in)} grad_ys for {len(ys_list)} ys")
        gys = []
        for i, (y, gy) in enumerate(zip(ys_list, gys_in)):
            if gy is None:
                gys.append(_ones_like(y))
                continue
            if not isinstance(gy, Tensor):
                array_in = hasattr(gy, "__array_namespace__")
                gy = constant(gy, dtype=None if array_in else backend.dtype_name(y.dtype))
            if gy.shape != y.shape:
                raise ValueError(f"refopt.gradients: grad_ys[{i}] has shape {gy.shape}, ys[{i}] has shape {y.shape}")
            if gy.dtype != y.dtype:
                raise TypeError(
                    f"refopt.gradients: grad_ys[{i}] has dtype {backend.dtype_name(gy.dtype)}, "
                    f"ys[{i}] has dtype {backend.dtype_name(y.dtype)}"
                )
            if isinstance(gy, Variable):
                # A gradient may be the cotangent itself (d y/d y): never hand back the
                # Variable, which an optimizer may change in place; a recorded Tensor.
                from refopt.autodiff.functional import identity

                gy = identity(gy)
            gys.append(gy)

    x_ids = {id(x) for x in xs_list}
    order, depends = _toposort(ys_list, x_ids)

    grads: dict[int, Tensor] = {}
    for y, gy in zip(ys_list, gys):
        if depends[id(y)]:
            prev = grads.get(id(y))
            grads[id(y)] = gy if prev is None else prev + gy

    for t in reversed(order):
        tid = id(t)
        node = t._node
        if node is None or not depends[tid]:
            continue
        g = grads.get(tid)
        if g is None:
            continue
        if tid not in x_ids:
            del grads[tid]
        prim, args, kwargs, vers = node
        if vers is not None:
            _check_versions(t)
        if prim.vjp_all is not None:
            all_g = prim.vjp_all(g, t, *args, **kwargs)
        else:
            all_g = None
        nondiff = prim.nondiff
        for i, a in enumerate(args):
            if not isinstance(a, Tensor) or not depends[id(a)] or i in nondiff:
                continue
            gi = all_g[i] if all_g is not None else prim.vjps[i](g, t, *args, **kwargs)
            if gi is None:
                continue
            if gi.data.shape != a.data.shape:  # a VJP bug, never a user error
                raise AssertionError(
                    f"VJP of {prim.name!r} for input {i} returned shape {gi.shape}, expected {a.shape}"
                )
            aid = id(a)
            prev = grads.get(aid)
            grads[aid] = gi if prev is None else prev + gi

    out: list[Tensor | None] = []
    for x in xs_list:
        g = grads.get(id(x))
        if g is None and unconnected_gradients == "zero":
            g = _zeros_like(x)
        out.append(g)
    return out
