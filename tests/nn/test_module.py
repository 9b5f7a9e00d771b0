"""Module: names and order, registration errors, freeze, state dicts, checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import refopt as rf
from refopt import io as rio
from refopt.nn import CheckpointError


class Block(rf.nn.Module):
    def __init__(self, dim: int, name: str | None = None) -> None:
        super().__init__(name)
        self.dense_1 = self.add_module(rf.nn.Dense(dim, dim, seed=1), "dense_1")
        self.norm = self.add_module(rf.nn.LayerNorm(dim))
        self.scale = self.add_variable("scale", "ones", (dim,), trainable=False)

    def forward(self, x):
        return self.norm(self.dense_1(x)) * self.scale


class Model(rf.nn.Module):
    def __init__(self) -> None:
        super().__init__(name="model")
        self.embed = self.add_module(rf.nn.Embedding(10, 4, seed=0))
        self.encoder = self.add_module(Block(4), "encoder")
        self.head = self.add_module(rf.nn.Sequential([rf.nn.Dense(4, 4), rf.nn.ReLU(), rf.nn.Dense(4, 2)]), "head")

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids)))


EXPECTED = [
    ("embedding/embeddings", (10, 4)),
    ("encoder/scale", (4,)),
    ("encoder/dense_1/kernel", (4, 4)),
    ("encoder/dense_1/bias", (4,)),
    ("encoder/layer_norm/gamma", (4,)),
    ("encoder/layer_norm/beta", (4,)),
    ("head/dense/kernel", (4, 4)),
    ("head/dense/bias", (4,)),
    ("head/dense_1/kernel", (4, 2)),
    ("head/dense_1/bias", (2,)),
]


def test_named_variables_listing_and_names_on_variables() -> None:
    model = Model()
    got = [(n, v.shape) for n, v in model.named_variables().items()]
    assert got == EXPECTED
    assert all(v.name == n for n, v in model.named_variables().items())
    assert model(np.array([[1, 2, 3]])).shape == (1, 3, 2)


def test_names_and_order_are_stable_across_constructions_and_backends() -> None:
    rf.nn.init.set_seed(5)
    a = Model()
    rf.nn.init.set_seed(5)
    with rf.use_backend("array_api_strict"):
        b = Model()
    assert list(a.named_variables()) == list(b.named_variables())
    assert all(v.backend == "array_api_strict" for v in b.variables())
    for (na, va), (nb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and va.tobytes() == vb.tobytes()  # same host draws on every backend


def test_duplicate_names_are_refused() -> None:
    m = rf.nn.Module(name="m")
    m.add_variable("w", "zeros", (2,))
    with pytest.raises(ValueError, match="already has a variable or module named 'w'"):
        m.add_variable("w", "zeros", (2,))
    with pytest.raises(ValueError, match="already has a variable or module named 'w'"):
        m.add_module(rf.nn.Dense(2, 2), "w")
    with pytest.raises(ValueError, match="already has a variable or module named 'fc'"):
        rf.nn.Sequential([rf.nn.Dense(2, 2, name="fc"), rf.nn.Dense(2, 2, name="fc")])
    d = rf.nn.Dense(2, 2)
    rf.nn.Sequential([d])
    with pytest.raises(ValueError, match="already belongs to"):
        rf.nn.Sequential([d])
    with pytest.raises(ValueError, match="must be a non-empty string"):
        m.add_variable("a/b", "zeros", (1,))


def test_freeze_removes_a_subtree_from_trainable_variables() -> None:
    model = Model()
    n_all = len(model.trainable_variables())
    model.encoder.freeze()
    names = [v.name for v in model.trainable_variables()]
    assert not any(n.startswith("encoder/") for n in names)
    assert len(names) == n_all - 4  # encoder/scale was never trainable
    model.encoder.unfreeze()
    assert len(model.trainable_variables()) == n_all + 1  # unfreeze marks scale trainable too


def test_summary_prints_a_table_once(capsys) -> None:
    assert Model().summary() is None  # printed, not also returned: a REPL shows it once
    out = capsys.readouterr().out
    text = Model().summary(print_fn=None)
    assert text + "\n" == out and capsys.readouterr().out == ""
    assert "encoder/dense_1/kernel" in text and "(4, 4)" in text and "float32" in text
    assert "Total params: 102 (trainable: 98, non-trainable: 4)" in text


def _perturbed(model: Model) -> dict[str, np.ndarray]:
    return {n: v + 1.0 for n, v in model.state_dict().items()}


def test_state_dict_round_trip_and_all_or_nothing_load() -> None:
    a, b = Model(), Model()
    b.load_state_dict(_perturbed(a))
    before = b.state_dict()
    bad = a.state_dict()
    bad["head/dense_1/bias"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"'head/dense_1/bias': shape \(3,\) does not match"):
        b.load_state_dict(bad)
    bad = a.state_dict()
    bad["head/dense/bias"] = bad["head/dense/bias"].astype(np.float64)
    with pytest.raises(CheckpointError, match="'head/dense/bias': dtype float64 does not match the variable's float32"):
        b.load_state_dict(bad)
    bad = a.state_dict()
    del bad["encoder/scale"]
    bad["encoder/extra"] = np.zeros(1, np.float32)
    with pytest.raises(CheckpointError, match=r"missing \['encoder/scale'\], unexpected \['encoder/extra'\]"):
        b.load_state_dict(bad)
    after = b.state_dict()
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)  # untouched


def test_non_native_byte_order_loads_whole_and_bad_values_change_nothing() -> None:
    """A big-endian state dict is the same numbers: it loads (it used to pass the checks,
    dtypes compared by name, then fail part-way through the assignments)."""
    a, b = Model(), Model()
    big = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in _perturbed(a).items()}
    b.load_state_dict(big)
    after = b.state_dict()
    assert all(after[k].dtype == np.float32 and np.array_equal(after[k], big[k]) for k in big)
    before = b.state_dict()
    for bad_value, message in (
        ([[1.0], [2.0, 3.0]], "is not an array"),
        (np.array(["ab", "cd"]), "dtype str64 does not match"),
        ("text", r"shape \(\) does not match"),
    ):
        bad = dict(big)
        bad["head/dense_1/bias"] = bad_value  # the last variable: every other one would pass
        with pytest.raises(CheckpointError, match=message):
            b.load_state_dict(bad)
        assert _model_unchanged(b, before)
    with pytest.raises(CheckpointError, match="must be a mapping"):
        b.load_state_dict([("encoder/scale", np.ones(4, np.float32))])


def test_save_load_round_trip_is_bit_exact(tmp_path) -> None:
    a, b = Model(), Model()
    b.load_state_dict(_perturbed(a))
    path = a.save(tmp_path / "ckpt.npz")
    b.load(path)
    for (na, va), (nb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and va.tobytes() == vb.tobytes()
    arrays, meta = rio.read_arrays(path, "refopt.checkpoint", (1,))
    assert meta["model"] == "Model" and meta["variables"][0]["name"] == "embedding/embeddings"
    assert list(arrays) == [n for n, _ in EXPECTED]
    assert a.save(tmp_path / "again.npz").read_bytes() == path.read_bytes()  # same content, same bytes
    os.unlink(tmp_path / "again.npz")
    assert [p for p in os.listdir(tmp_path)] == ["ckpt.npz"]  # no temporary files left


def _model_unchanged(model: Model, before: dict) -> bool:
    return all(before[k].tobytes() == v.tobytes() for k, v in model.state_dict().items())


def test_truncated_corrupted_and_pickled_checkpoints_are_refused(tmp_path) -> None:
    a, b = Model(), Model()
    path = a.save(tmp_path / "good.npz")
    before = b.state_dict()
    raw = path.read_bytes()

    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(rio.FileFormatError, match="truncated or corrupted|not a readable"):
        b.load(trunc)

    flipped = bytearray(raw)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("head/dense/kernel.npy")
    flipped[info.header_offset + 30 + len(info.filename) + 140] ^= 0xFF  # inside the array data
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(rio.FileFormatError, match="corrupted"):
        b.load(bad)

    pickled = tmp_path / "pickled.npz"  # refused before any member is read: no refopt metadata
    np.savez(pickled, **{"embedding/embeddings": np.array([object()], dtype=object)})
    with pytest.raises(rio.FileFormatError, match="no refopt metadata"):
        b.load(pickled)
    meta = {"kind": "refopt.checkpoint", "schema_version": 1, "arrays": {"embedding/embeddings": {}}}
    meta["arrays"]["embedding/embeddings"] = {"shape": [1], "dtype": "|O", "sha256": "0" * 64}
    with zipfile.ZipFile(pickled, "w") as z:  # metadata that declares an object array
        with z.open("embedding/embeddings.npy", "w") as out:
            np.lib.format.write_array(out, np.array([object()], dtype=object), allow_pickle=True)
        with z.open("__refopt__.npy", "w") as out:
            np.lib.format.write_array(out, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(rio.FileFormatError, match="Python objects"):
        b.load(pickled)
    plain_pickle = tmp_path / "state.pkl"
    plain_pickle.write_bytes(pickle.dumps(a.state_dict()))
    with pytest.raises(rio.FileFormatError, match="Python objects"):
        b.load(plain_pickle)

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, **a.state_dict())
    with pytest.raises(rio.FileFormatError, match="no refopt metadata"):
        b.load(foreign)

    arrays, meta = rio.read_arrays(path, "refopt.checkpoint", (1,))
    noted = rio.write_arrays(
        tmp_path / "noted.npz", arrays, "refopt.checkpoint", 1, extra={"model": "Model", "variables": [], "note": 1}
    )
    with pytest.raises(rio.FileFormatError, match=r"metadata fields do not fit \(missing \[\], unexpected \['note'\]"):
        b.load(noted)

    other = Model()
    other.add_module(rf.nn.Dense(2, 2), "extra")
    wrong = other.save(tmp_path / "wrong.npz")
    with pytest.raises(CheckpointError, match=r"unexpected \['extra/kernel', 'extra/bias'\]"):
        b.load(wrong)
    assert _model_unchanged(b, before)


def test_crash_during_save_keeps_the_old_checkpoint(tmp_path, monkeypatch) -> None:
    a, b = Model(), Model()
    path = a.save(tmp_path / "ckpt.npz")
    good = path.read_bytes()

    real_write = np.lib.format.write_array
    calls = []

    def crashing_write(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # three arrays written, then...
            raise KeyboardInterrupt("power cut")
        return real_write(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        b.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    c = Model()
    c.load(path)
    assert _model_unchanged(c, a.state_dict())


def test_initialisers_are_seeded_and_backend_independent() -> None:
    init = rf.nn.init
    for name in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "truncated_normal", "normal"):
        f = init.get(name)
        a, b = f((30, 20), seed=3), f((30, 20), seed=3)
        assert a.tobytes() == b.tobytes() and a.dtype == np.float32
        assert not np.array_equal(a, f((30, 20), seed=4))
    lim = np.sqrt(6 / 50)
    g = init.glorot_uniform((30, 20), seed=0, dtype="float64")
    assert g.max() <= lim and g.min() >= -lim and abs(g.std() - lim / np.sqrt(3)) < 0.02
    assert abs(init.he_normal((400, 300), seed=0).std() - np.sqrt(2 / 400)) < 0.002
    t = init.truncated_normal((10000,), stddev=0.5, seed=0)
    assert np.abs(t).max() <= 1.0
    assert init.fans((3, 3, 4, 8)) == (36, 72)
    np.testing.assert_array_equal(init.constant(2.5)((2,)), [2.5, 2.5])
    with pytest.raises(ValueError, match="unknown initialiser 'xavier'"):
        init.get("xavier")


# -- PyTorch / Keras habits: attributes register, siblings get distinct names ---------------


class TorchStyle(rf.nn.Module):
    """Written the way a PyTorch user writes a model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = rf.nn.Dense(2, 8, seed=1)
        self.act = rf.nn.ReLU()
        self.fc2 = rf.nn.Dense(8, 1, seed=2)
        self.temperature = rf.Variable(np.ones(1, np.float32))

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) * self.temperature


def test_attributes_register_under_their_names_and_train() -> None:
    model = TorchStyle()
    assert [(n, v.shape) for n, v in model.named_variables().items()] == [
        ("temperature", (1,)),
        ("fc1/kernel", (2, 8)),
        ("fc1/bias", (8,)),
        ("fc2/kernel", (8, 1)),
        ("fc2/bias", (1,)),
    ]
    assert list(model.children()) == ["fc1", "act", "fc2"] and model.fc1.path == "fc1"
    assert model.fc1.kernel is model.named_variables()["fc1/kernel"]
    outer = rf.nn.Sequential([TorchStyle(), TorchStyle()])  # nested: the path grows
    assert list(outer.named_variables())[:2] == ["torch_style/temperature", "torch_style/fc1/kernel"]
    assert "torch_style_1/fc2/bias" in outer.named_variables()
    # and it trains: every variable moves
    opt = rf.optim.Adam(model.trainable_variables(), learning_rate=0.1)
    before = model.state_dict()
    x = rf.constant(np.array([[0.5, -1.0], [2.0, 0.25]], np.float32))
    opt.minimize(rf.sum((model(x) - 1.0) ** 2))
    assert all(not np.array_equal(before[n], v) for n, v in model.state_dict().items())


def test_names_are_deterministic_and_an_add_module_child_kept_in_an_attribute_keeps_its_name() -> None:
    assert list(TorchStyle().named_variables()) == list(TorchStyle().named_variables())
    assert [n for n, _ in EXPECTED] == list(Model().named_variables())  # self.x = self.add_module(m, "name")


def test_unnamed_siblings_get_distinct_names() -> None:
    m = rf.nn.Module(name="m")
    a, b = m.add_module(rf.nn.Dense(2, 2)), m.add_module(rf.nn.Dense(2, 2))
    m.add_module(rf.nn.LayerNorm(2))
    assert (a.name, b.name) == ("dense", "dense_1")
    assert list(m.named_variables()) == [
        "dense/kernel",
        "dense/bias",
        "dense_1/kernel",
        "dense_1/bias",
        "layer_norm/gamma",
        "layer_norm/beta",
    ]
    with pytest.raises(ValueError, match="already has a variable or module named 'dense'"):
        m.add_module(rf.nn.Dense(2, 2), "dense")  # an explicit name that is taken is still refused


def test_reassigning_replaces_in_place_and_none_or_del_removes() -> None:
    model = TorchStyle()
    old = model.fc1
    model.fc1 = rf.nn.Dense(2, 8, seed=5)  # PyTorch: same name, same place
    assert list(model.named_variables())[1:3] == ["fc1/kernel", "fc1/bias"]
    assert model.named_variables()["fc1/kernel"] is model.fc1.kernel and old.path == ""
    rf.nn.Sequential([old])  # the replaced layer is free again
    model.fc2 = None
    assert "fc2/kernel" not in model.named_variables() and model.fc2 is None
    del model.temperature
    assert list(model.named_variables()) == ["fc1/kernel", "fc1/bias"]
    with pytest.raises(TypeError, match="cannot assign int to 'fc1': it is a registered module"):
        model.fc1 = 3
    assert "fc1/kernel" in model.named_variables()


def test_a_list_of_layers_is_refused_instead_of_silently_untrained() -> None:
    class Blocks(rf.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = [rf.nn.Dense(2, 2), rf.nn.Dense(2, 2)]

    with pytest.raises(TypeError, match=r"Blocks.blocks: a list of modules registers nothing.*Sequential"):
        Blocks()

    class Weights(rf.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ws = {"a": rf.Variable(np.ones(2))}

    with pytest.raises(TypeError, match="Weights.ws: a dict of variables registers nothing"):
        Weights()
    model = TorchStyle()
    model.handles = [model.fc1, model.fc1.kernel]  # references to registered things are fine
    assert len(model.variables()) == 5


def test_one_parent_one_owner() -> None:
    a, b = TorchStyle(), TorchStyle()
    with pytest.raises(ValueError, match="'fc1' .* already belongs to 'torch_style', and a module has one parent"):
        b.other = a.fc1
    with pytest.raises(ValueError, match="variable 'fc1/kernel' .* already belongs to module 'fc1'"):
        b.tied = a.fc1.kernel
    b.tied = b.fc1.kernel  # a variable of its own tree: a reference, registered once
    assert len(b.variables()) == 5 and b.fc1.kernel.name == "fc1/kernel"
    assert "other" not in b.children() and "tied" not in b.named_variables()


def test_forgetting_super_init_is_explained() -> None:
    class NoSuper(rf.nn.Module):
        def __init__(self) -> None:
            self.fc = rf.nn.Dense(2, 2)

    with pytest.raises(AttributeError, match=r"cannot assign Dense 'fc': NoSuper.__init__ has not called super"):
        NoSuper()

    class NoSuperPlain(rf.nn.Module):
        def __init__(self) -> None:
            self.width = 2

        def forward(self, x):
            return x

    with pytest.raises(AttributeError, match=r"cannot use NoSuperPlain as a layer: .*super\(\)\.__init__"):
        rf.nn.Sequential([NoSuperPlain()])
    with pytest.raises(AttributeError, match=r"has no attribute '_modules': its __init__ did not call super"):
        NoSuperPlain().named_variables()


def test_a_deep_copy_owns_its_copied_variables() -> None:
    import copy

    model = TorchStyle()
    twin = copy.deepcopy(model)
    assert list(twin.named_variables()) == list(model.named_variables())
    assert twin.fc1.kernel is not model.fc1.kernel
    assert rf.nn.torch_layout_of(twin.fc1.kernel).refopt == "kernel"  # its layer is known: slots convert
    with pytest.raises(ValueError, match="already belongs to module 'fc1'"):
        model.stolen = twin.fc1.kernel
