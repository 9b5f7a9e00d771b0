"""numba intrinsics the generated kernels use: the fused multiply-add as LLVM's
``llvm.fma`` (one rounding, whatever the CPU: a hardware FMA or libm's exact ``fma``),
bit reinterpretation of floats, and a typed pointer from an address (so that one kernel
call can reach many arrays)."""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["fma", "sqrt", "rint", "floor", "fabs", "bits64", "from_bits64", "bits32", "pointer"]


@intrinsic
def fma(typingctx, a, b, c):  # noqa: ANN001, ANN201 - numba's intrinsic protocol
    """a*b + c rounded once (``llvm.fma.f32`` / ``llvm.fma.f64``)."""
    if not (a == b == c and a in (types.float32, types.float64)):
        return None
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty, ty, ty]))
        return builder.call(fn, args)

    return sig, codegen


def _unary_intrinsic(llvm_name: str, doc: str):  # noqa: ANN202
    """A float32/float64 intrinsic calling ``llvm_name`` (exact IEEE operations, which LLVM
    may vectorise -- unlike libm's ``sqrtf``, a call that may set errno)."""

    @intrinsic
    def fn(typingctx, x):  # noqa: ANN001, ANN202
        if x not in (types.float32, types.float64):
            return None

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            ty = args[0].type
            f = builder.module.declare_intrinsic(llvm_name, [ty], ir.FunctionType(ty, [ty]))
            return builder.call(f, args)

        return x(x), codegen

    fn.__doc__ = doc
    return fn


sqrt = _unary_intrinsic("llvm.sqrt", "Correctly rounded square root (``llvm.sqrt``).")
rint = _unary_intrinsic("llvm.rint", "Round to the nearest integral value, ties to even (``llvm.rint``).")
floor = _unary_intrinsic("llvm.floor", "Round down to an integral value (``llvm.floor``).")
fabs = _unary_intrinsic("llvm.fabs", "Absolute value (``llvm.fabs``).")


def _bitcast(src: Any, dst: Any, llvm_dst: Any, doc: str):  # noqa: ANN202
    """An intrinsic reinterpreting a ``src`` value's bits as ``dst`` (no conversion)."""

    @intrinsic
    def fn(typingctx, x):  # noqa: ANN001, ANN202
        if x != src:
            return None

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            return builder.bitcast(args[0], llvm_dst)

        return dst(src), codegen

    fn.__doc__ = doc
    return fn


bits64 = _bitcast(types.float64, types.int64, ir.IntType(64), "The int64 bit pattern of a float64.")
from_bits64 = _bitcast(types.int64, types.float64, ir.DoubleType(), "The float64 whose bit pattern is an int64.")
bits32 = _bitcast(types.float32, types.int32, ir.IntType(32), "The int32 bit pattern of a float32.")


@intrinsic
def pointer(typingctx, address, dtype):  # noqa: ANN001, ANN201
    """``address`` (an int64) as a pointer to ``dtype`` (a NumPy scalar type), for
    ``numba.carray``."""
    if address != types.int64 or not isinstance(dtype, types.NumberClass):
        return None
    elem = dtype.instance_type
    sig = types.CPointer(elem)(address, dtype)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(elem)))

    return sig, codegen
