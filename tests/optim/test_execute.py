"""The compiled update kernels against the NumPy reference path, bit for bit.

Every rule x convention x option set of the conformance matrix, float32 and float64,
sizes 0, 1, 7, 8, 9, 1023 and 10^5 + 3, with and without masks, groups and learning-rate
multipliers; 3,000 variables of sizes 1-23 in one call.  The comparison can fail: kernels
with an FMA removed, a product contracted into an FMA, or torch's remainder-loop formula
swapped are caught.  The generated code holds exactly the formulas' FMAs and no
fast-math, in LLVM IR and (with nvcc installed) in the CUDA source's PTX.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import threading

import numpy as np
import pytest

import refopt as rf
from refopt.kernels import compile as C
from refopt.kernels import threads
from refopt.optim import SGD, Adam, AdamW, execute
from tests.optim.test_conformance import MATRIX

pytest.importorskip("numba")

OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
SIZES = (0, 1, 7, 8, 9, 1023, 10**5 + 3)
VARIANTS = [(rule, conv, opts) for rule, conv, _, options in MATRIX for opts in options]


def _ids(v):
    rule, conv, opts = v
    return f"{rule}-{conv}-" + (",".join(f"{k}={val}" for k, val in opts.items()) or "defaults")


def _trajectory(kernels, make, shapes, dtype, steps, seed, masks=False, threads=1, **kw):
    """Parameters and slots after each of ``steps`` updates under ``kernels``."""
    rng = np.random.default_rng(seed)
    rf.set_kernels(kernels, threads=threads)
    place = rf.current_backend()
    try:
        vs = [rf.Variable(rng.standard_normal(s).astype(dtype), name=f"v{i}") for i, s in enumerate(shapes)]
        opt = make(vs, **kw)
        out = []
        for k in range(steps):
            grads = [
                rf.backend.move((rng.standard_normal(s) * 10.0 ** rng.integers(-3, 3)).astype(dtype), place)
                for s in shapes
            ]
            if k == 1 and len(vs) > 1:
                grads[1] = None  # a missing gradient: each convention's policy
            mk = {v: rf.backend.move(rng.random(v.shape) < 0.6, place) for v in vs} if masks else None
            opt.apply_gradients(list(zip(grads, vs)), masks=mk)
            out.append([v.numpy().tobytes() for v in vs])
            out.append([opt.get_slot(v, n).numpy().tobytes() for v in vs for n in opt.slot_names() if _has(opt, v, n)])
        return out
    finally:
        rf.set_kernels("numba", threads=1)


def _has(opt, v, name):
    try:
        opt.get_slot(v, name)
    except KeyError:
        return False
    return True


def _maker(rule, conv, opts):
    cls = OPTIMIZERS[rule]

    def make(vs, **kw):
        return cls(vs, learning_rate=0.01, convention=conv, **opts, **kw)

    return make


@pytest.mark.parametrize("variant", VARIANTS, ids=[_ids(v) for v in VARIANTS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_equals_reference_for_every_size(variant, dtype) -> None:
    rule, conv, opts = variant
    if conv == "bert" and dtype == "float64":
        pytest.skip("BERT's optimizer is float32")
    shapes = [(n,) for n in SIZES]
    make = _maker(rule, conv, opts)
    assert _trajectory("numba", make, shapes, dtype, 3, 1) == _trajectory("numpy", make, shapes, dtype, 3, 1)


@pytest.mark.parametrize("variant", VARIANTS[::3], ids=[_ids(v) for v in VARIANTS[::3]])
def test_compiled_equals_reference_with_masks_groups_and_multipliers(variant) -> None:
    rule, conv, opts = variant
    shapes = [(3, 5), (9,), (2, 2, 2)]
    cls = OPTIMIZERS[rule]

    def make(vs, **kw):
        groups = [{"params": vs[:1], "learning_rate": 0.05}, {"params": vs[1:]}]
        return cls(groups, learning_rate=0.01, convention=conv, lr_multipliers={"v2": 0.5}, **opts)

    for dtype in ("float32",) if conv == "bert" else ("float32", "float64"):
        a = _trajectory("numba", make, shapes, dtype, 4, 2, masks=True)
        assert a == _trajectory("numpy", make, shapes, dtype, 4, 2, masks=True)


@pytest.mark.parametrize("variant", VARIANTS, ids=[_ids(v) for v in VARIANTS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_equals_reference_on_signed_zeros_and_tiny_values(variant, dtype) -> None:
    """Values and gradients of +-0, subnormals, and magnitudes whose squares and products
    underflow (where an emulated FMA's error terms do): the hardware FMA of the kernels
    and the NumPy reference agree on every bit, signs of zero included."""
    rule, conv, opts = variant
    if conv == "bert" and dtype == "float64":
        pytest.skip("BERT's optimizer is float32")
    fi = np.finfo(dtype)
    special = np.array(
        [0.0, -0.0, fi.smallest_subnormal, -fi.smallest_subnormal, fi.tiny, -fi.tiny, 1.0, -1.0]
        + [float(np.sqrt(fi.tiny)) * k for k in (0.3, -0.7, 1.1, 3.0)]
        + [float(fi.tiny) * 2.0**-k for k in (1, 20)],
        dtype,
    )
    grid = np.array(np.meshgrid(special, special)).reshape(2, -1).astype(dtype)
    make = _maker(rule, conv, opts)

    def run(kernels):
        rf.set_kernels(kernels)
        try:
            v = rf.Variable(grid[0].copy(), name="w")
            opt = make([v])
            out = []
            for k in range(3):
                opt.apply_gradients([(np.roll(grid[1], k), v)])
                out.append(v.numpy().tobytes())
                out += [opt.get_slot(v, n).numpy().tobytes() for n in opt.slot_names() if _has(opt, v, n)]
            return out
        finally:
            rf.set_kernels("numba")

    assert run("numba") == run("numpy")


@pytest.mark.parametrize("variant", VARIANTS, ids=[_ids(v) for v in VARIANTS])
def test_threads_give_the_same_bits(variant, monkeypatch) -> None:
    """A call split between threads (pieces as small as one element, so that cuts fall
    inside torch's remainder elements and between masked elements) gives the reference
    bits; and at the real split size (threads.SPLIT_MIN), over three threads."""
    rule, conv, opts = variant
    make = _maker(rule, conv, opts)
    want = _trajectory("numpy", make, [(n,) for n in range(5, 25, 2)], "float32", 3, 6, masks=True)
    with monkeypatch.context() as m:
        m.setattr(threads, "SPLIT_MIN", 1)
        got = _trajectory("numba", make, [(n,) for n in range(5, 25, 2)], "float32", 3, 6, masks=True, threads=16)
    assert got == want
    shapes = [(2 * threads.SPLIT_MIN + 5,), (3,), (threads.SPLIT_MIN + 1,)]  # three runs
    want = _trajectory("numpy", make, shapes, "float32", 2, 7)
    assert _trajectory("numba", make, shapes, "float32", 2, 7, threads=3) == want


def test_threads_from_several_python_threads_at_once() -> None:
    """Python threads that each split their updates between kernel threads, at once: each
    gets the reference trajectory (no shared state between calls)."""

    def work(seed: int, kernels: str, threads_: int, out: dict) -> None:
        rf.set_kernels(kernels, threads=threads_)  # this thread's setting
        rng = np.random.default_rng(seed)
        v = rf.Variable(np.zeros(2 * threads.SPLIT_MIN + 7, np.float32), name="w")
        opt = Adam([v], learning_rate=1e-2, amsgrad=True)
        for _ in range(5):
            opt.apply_gradients([(rng.standard_normal(v.shape).astype(np.float32), v)])
        out[seed] = v.numpy().tobytes()

    got: dict = {}
    pool = [threading.Thread(target=work, args=(s, "numba", 3, got)) for s in range(3)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    want: dict = {}
    for s in range(3):
        t = threading.Thread(target=work, args=(s, "numpy", 1, want))
        t.start()
        t.join()
    assert got == want


def test_three_thousand_small_variables_in_one_call(monkeypatch) -> None:
    sizes = [(int(n),) for n in np.random.default_rng(3).integers(1, 24, 3000)]
    calls = []
    real = execute._numba_group
    monkeypatch.setattr(execute, "_numba_group", lambda r, t: calls.append(len(t)) or real(r, t))
    make = _maker("adam", "torch", {"amsgrad": True})
    a = _trajectory("numba", make, sizes, "float32", 2, 4)
    assert calls == [3000, 2999]  # one kernel call per step (the second step: one None gradient)
    assert a == _trajectory("numpy", make, sizes, "float32", 2, 4)


# -- mutants: the comparison above must catch a kernel that is not the formula ---------------------
class _NoFMA:
    """The formula operations with fma(a, b, c) = a*b + c (two roundings)."""

    def __init__(self, K):
        self.K = K

    def fma(self, a, b, c):
        return a * b + c

    def __getattr__(self, name):
        return getattr(self.K, name)


def _mutant_differs(rule_obj, mutant, shapes, dtype, steps=2, **opts) -> bool:
    """Compile ``mutant`` (a Rule) as the numba kernel, compare with the reference."""
    cls = {"adam": Adam, "adamw": AdamW, "sgd": SGD}[rule_obj.name.split("/")[0]]
    conv = rule_obj.name.split("/")[1]
    ref = _trajectory(
        "numpy", lambda vs, **kw: cls(vs, learning_rate=0.01, convention=conv, **opts), shapes, dtype, 2, 5
    )
    patched = dict(cls._rules)
    patched[conv] = mutant
    saved = cls._rules
    cls._rules = patched
    try:
        got = _trajectory(
            "numba", lambda vs, **kw: cls(vs, learning_rate=0.01, convention=conv, **opts), shapes, dtype, 2, 5
        )
    finally:
        cls._rules = saved
    return got != ref


def test_mutants_are_caught() -> None:
    shapes = [(1031,), (7,)]
    adam_torch, sgd_torch, bert = Adam._rules["torch"], SGD._rules["torch"], AdamW._rules["bert"]
    fma_removed = dataclasses.replace(adam_torch, formula=lambda K, o, a, s: adam_torch.formula(_NoFMA(K), o, a, s))
    assert _mutant_differs(adam_torch, fma_removed, shapes, "float32")
    sgd_fma_removed = dataclasses.replace(sgd_torch, formula=lambda K, o, a, s: sgd_torch.formula(_NoFMA(K), o, a, s))
    assert _mutant_differs(sgd_torch, sgd_fma_removed, shapes, "float64", momentum=0.9)

    def bert_contracted(K, o, a, s):  # p - lr * u with the product fused into the subtraction
        out = bert.formula(K, o, a, s)
        u = (s["b1"] * a["m"] + s["c1"] * a["g"]) / (K.sqrt(s["b2"] * a["v"] + s["c2"] * (a["g"] * a["g"])) + s["eps"])
        out["p"] = K.fma(-s["lr"], u, a["p"])
        return out

    assert _mutant_differs(
        bert, dataclasses.replace(bert, formula=bert_contracted), shapes, "float32", weight_decay=0.0
    )
    tail_swapped = dataclasses.replace(adam_torch, tail_bytes=0)  # the body's v formula everywhere
    many_tails = [(1031,)] + [(7,)] * 200  # at step 1 (v = 0) both formulas agree; later they need not
    assert _mutant_differs(adam_torch, tail_swapped, many_tails, "float32", steps=4)


# -- the generated code --------------------------------------------------------------------------
def _graphs(rule_obj, dtype, **opts):
    """The traced graphs (body, and tail if any) of a rule's default variant."""
    cls = {"adam": Adam, "adamw": AdamW, "sgd": SGD}[rule_obj.name.split("/")[0]]
    v = rf.Variable(np.ones(9, dtype), name="w")
    opt = cls([v], learning_rate=0.01, convention=rule_obj.name.split("/")[1], **opts)
    for _ in range(2):  # every slot exists, and the kernel of the variant below has run (numba compiles lazily)
        opt.apply_gradients([(np.ones(9, dtype), v)])
    st = opt._states[id(v)]
    from refopt.optim.optimizer import StepContext

    ctx = StepContext(v.dtype, 0.01, 2, opt._groups[0].powers, 1)
    o, s = rule_obj.prepare(st.hyper, ctx, frozenset(st.slots))
    # the kernel the second step ran (compiled): this variant, updating in place
    key, (fn, arrays, scalars, _, source) = [
        (k, e)
        for k, e in execute._KERNELS.items()
        if k[0] is rule_obj and k[1] == o and k[2] == np.dtype(dtype).name and not k[4] and e[0].signatures
    ][-1]
    task = execute.Task(v.data, v.data, dict(st.slots), None, o, s, key[5])
    return fn, arrays, scalars, task, source


ALL_RULES = [(cls, conv) for cls in (SGD, Adam, AdamW) for conv in cls._rules]
OPTS = {SGD: {"momentum": 0.9, "nesterov": True}, Adam: {"amsgrad": True}, AdamW: {}}


@pytest.fixture
def fresh_kernels(tmp_path, monkeypatch):
    """Compile anew (a kernel loaded from numba's disk cache carries no IR to inspect)."""
    monkeypatch.setenv("REFOPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(C, "_compiled", {})
    monkeypatch.setattr(execute, "_KERNELS", {})


@pytest.mark.usefixtures("fresh_kernels")
@pytest.mark.parametrize("cls,conv", ALL_RULES, ids=[f"{c.rule}-{v}" for c, v in ALL_RULES])
def test_kernel_ir_holds_exactly_the_formulas_fmas_and_no_fast_math(cls, conv) -> None:
    rule_obj = cls._rules[conv]
    for dtype in ("float32", "float64"):
        opts = {k: v for k, v in OPTS[cls].items() if k in cls._options[conv]}
        fn, arrays, scalars, task, source = _graphs(rule_obj, dtype, **opts)
        formula = execute.masked_formula(rule_obj)
        inputs = [(n, dtype) for n in arrays] + [(n, dtype) for n in scalars]
        expected = 0
        variants = [task.o] + ([execute.with_tail(task.o)] if rule_obj.tail(np.dtype(dtype).itemsize) else [])
        for o in variants:
            g = C.trace(
                lambda K, *vals, o=o: tuple(
                    formula(K, o, dict(zip(arrays, vals)), dict(zip(scalars, vals[len(arrays) :]))).values()
                ),
                inputs,
            )
            expected += g.fma_count()
        flags = r"\b(?:fadd|fsub|fmul|fdiv|call)\s+(?:fast|contract|reassoc|nnan|ninf|nsz|arcp|afn)\b"
        production = "\n".join(fn.inspect_llvm().values())  # as compiled and optimised: no fast-math anywhere
        assert ("@llvm.fma" in production) == (expected > 0) and not re.findall(flags, production)
        ir = C.numba_unoptimized_ir(source, source.split("def ")[1].split("(")[0], fn.signatures[0])
        width = "double" if dtype == "float64" else "float"
        assert len(re.findall(rf"call {width} @llvm\.fma\.f(?:32|64)\(", ir)) == expected  # one per formula FMA
        assert not re.findall(flags, ir)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: the CUDA source is not compiled here")
@pytest.mark.parametrize("cls,conv", ALL_RULES, ids=[f"{c.rule}-{v}" for c, v in ALL_RULES])
def test_cuda_source_of_every_rule_compiles(cls, conv, tmp_path) -> None:
    rule_obj = cls._rules[conv]
    opts = {k: v for k, v in OPTS[cls].items() if k in cls._options[conv]}
    _, arrays, scalars, task, _ = _graphs(rule_obj, "float32", **opts)
    formula = execute.masked_formula(rule_obj)
    g = C.trace(
        lambda K, *vals: tuple(
            formula(K, task.o, dict(zip(arrays, vals)), dict(zip(scalars, vals[len(arrays) :]))).values()
        ),
        [(n, "float32") for n in arrays] + [(n, "float32") for n in scalars],
    )
    cu = tmp_path / "k.cu"
    cu.write_text(C.cuda_source(g, "update", arrays))
    proc = subprocess.run(
        ["nvcc", "--ptx", "-arch=sm_80", str(cu), "-o", str(tmp_path / "k.ptx")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    ptx = (tmp_path / "k.ptx").read_text()
    assert len(re.findall(r"\bfma\.rn\.f32", ptx)) == g.fma_count()
    assert not re.findall(r"\bmad\.|\.approx\.|\.ftz\.", ptx)


def test_steady_state_updates_in_place_and_never_under_a_view() -> None:
    """A training loop with minimize writes values and slots in place (the same arrays,
    step after step: nothing the size of a variable is allocated); a value someone holds a
    view of gets a fresh array instead, and the view keeps what it saw."""
    rng = np.random.default_rng(0)
    model = rf.nn.Sequential([rf.nn.Dense(8, 16, seed=1), rf.nn.ReLU(), rf.nn.Dense(16, 3, seed=2)])
    opt = Adam(model.trainable_variables(), learning_rate=1e-2)
    x = rf.constant(rng.standard_normal((4, 8)).astype(np.float32))
    y = rf.constant(rng.integers(0, 3, 4))

    def step():
        opt.minimize(rf.mean(rf.nn.losses.sparse_softmax_cross_entropy(y, model(x))))

    step()
    before = {n: (id(v.data), id(opt._states[id(v)].slots["m"])) for n, v in model.named_variables().items()}
    versions = {n: v.version for n, v in model.named_variables().items()}
    step()
    step()
    for n, v in model.named_variables().items():
        assert (id(v.data), id(opt._states[id(v)].slots["m"])) == before[n], n
        assert v.version == versions[n] + 2  # each in-place update still counts
    kernel = model.layers[0].kernel
    view = rf.transpose(kernel)  # a Tensor viewing the kernel's array
    seen = view.numpy().copy()
    step()
    assert np.array_equal(view.numpy(), seen) and id(kernel.data) != before["dense/kernel"][0]


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_replaced_arrays_are_never_written_through_a_stale_address(kernels) -> None:
    """After ``assign`` or ``set_slot`` twice the array the kernels cached is freed and
    CPython hands its id (and often its memory) to the next array of that size: a cache
    keyed by id would write the update into that unrelated array.  Values, slots and the
    bystander must all be exactly what the formulas say."""
    rf.set_kernels(kernels)
    try:
        for n in (100, 8000):
            v = rf.Variable(np.zeros(n), name="w")
            opt = SGD([v], learning_rate=1.0, momentum=0.5)
            g = np.ones(n)
            opt.apply_gradients([(g, v)])
            opt.apply_gradients([(g, v)])  # value and momentum updated in place, addresses cached
            v.assign(np.full(n, 10.0))
            opt.set_slot(v, "momentum", np.full(n, 2.0))
            other_v, other_m = np.full(n, 7.0), np.full(n, 7.0)
            v.assign(np.full(n, 20.0))
            opt.set_slot(v, "momentum", np.full(n, 3.0))
            opt.apply_gradients([(g, v)])
            assert np.all(opt.get_slot(v, "momentum").numpy() == 0.5 * 3.0 + 1.0), n
            assert np.all(v.numpy() == 20.0 - 2.5), n
            assert np.all(other_v == 7.0) and np.all(other_m == 7.0), n
    finally:
        rf.set_kernels("numba")


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS, ids=[_ids(v) for v in VARIANTS])
def test_cuda_kernels_equal_the_reference_bit_for_bit(variant) -> None:
    """On CuPy arrays the updates run the generated CUDA kernels: the same bits as the
    NumPy reference path, every rule x convention x option set, both dtypes, with masks."""
    rule, conv, opts = variant
    make = _maker(rule, conv, opts)
    shapes = [(n,) for n in (1, 7, 8, 9, 1023, 4099)]
    for dtype in ("float32",) if conv == "bert" else ("float32", "float64"):
        for masks in (False, True):
            want = _trajectory("numpy", make, shapes, dtype, 3, 7, masks=masks)
            with rf.use_backend("cupy"):
                got = _trajectory("numba", make, shapes, dtype, 3, 7, masks=masks)
            assert got == want, (dtype, masks)
