"""Checkpoints: round trip, format version, model identity, corrupt files, atomic writes."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import checkpoints, models, train

CONFIG = train.TrainConfig(optimizer="adam", learning_rate=1e-2, epochs=3, batch_size=10)
IDENTITY = dict(model_name="fc", model_config={"hidden": [5], "normalization": "batchnorm", "num_classes": 3})


def _state(seed=0, model=None, optimizer="adam"):
    model = model or models.fc_net([5], 3, normalization="batchnorm")
    return train.init_train_state(model, jax.random.key(seed), (4,), CONFIG._replace(optimizer=optimizer), 7)


def _trained_state():
    """A state whose every part differs from a fresh one (params, running stats, adam moments, history)."""
    model = models.fc_net([5], 3, normalization="batchnorm")
    rng = np.random.default_rng(0)
    split = {
        "X_train": rng.standard_normal((30, 4)).astype(np.float32),
        "y_train": rng.integers(0, 3, 30).astype(np.int32),
        "X_val": rng.standard_normal((10, 4)).astype(np.float32),
        "y_val": rng.integers(0, 3, 10).astype(np.int32),
    }
    return train.fit(model, split, CONFIG._replace(epochs=2), key=jax.random.key(1))


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(x, y) and np.asarray(x).dtype == np.asarray(y).dtype for x, y in zip(la, lb, strict=False)
    )


def test_round_trip_restores_every_part(tmp_path):
    ts = _trained_state()
    path = checkpoints.save_checkpoint(tmp_path / "c.npz", ts, extra={"note": "hi"}, **IDENTITY)
    restored, meta = checkpoints.load_checkpoint(path, _state(seed=5), **IDENTITY)
    for part in ("params", "state", "opt_state", "best_params", "best_state"):
        assert _leaves_equal(getattr(restored, part), getattr(ts, part)), part
    # optax's namedtuples come back as themselves, so the optimizer can use them
    assert jax.tree_util.tree_structure(restored.opt_state) == jax.tree_util.tree_structure(ts.opt_state)
    assert restored.epoch == ts.epoch == 2 and restored.best_val_acc == pytest.approx(ts.best_val_acc)
    assert restored.history == ts.history
    assert meta["format_version"] == checkpoints.FORMAT_VERSION and meta["extra"] == {"note": "hi"}
    assert checkpoints.read_checkpoint_meta(path)["epoch"] == 2


def test_resumed_fit_from_a_checkpoint_matches_an_uninterrupted_one(tmp_path):
    model = models.fc_net([5], 3, dropout=0.3)
    rng = np.random.default_rng(0)
    split = {
        "X_train": rng.standard_normal((30, 4)).astype(np.float32),
        "y_train": rng.integers(0, 3, 30).astype(np.int32),
        "X_val": rng.standard_normal((10, 4)).astype(np.float32),
        "y_val": rng.integers(0, 3, 10).astype(np.int32),
    }
    key = jax.random.key(2)
    saved = []
    full = train.fit(
        model,
        split,
        CONFIG._replace(epochs=4),
        key=key,
        on_epoch=lambda ts, rec: saved.append(
            checkpoints.save_checkpoint(tmp_path / f"e{rec['epoch']}.npz", ts, model_name="m", model_config={})
        ),
    )
    template = train.init_train_state(model, jax.random.fold_in(key, 0), (4,), CONFIG, 3)
    half, _ = checkpoints.load_checkpoint(saved[1], template, model_name="m", model_config={})
    resumed = train.fit(model, split, CONFIG._replace(epochs=4), key=key, resume=half)
    assert _leaves_equal(resumed.params, full.params) and _leaves_equal(resumed.opt_state, full.opt_state)
    assert resumed.history["loss"] == full.history["loss"]


def test_newer_format_version_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "FORMAT_VERSION", checkpoints.FORMAT_VERSION + 1)
    path = checkpoints.save_checkpoint(tmp_path / "c.npz", _state(), **IDENTITY)
    monkeypatch.undo()
    newer = checkpoints.FORMAT_VERSION + 1
    with pytest.raises(
        ValueError,
        match=rf"format version {newer} is newer than this jaxnets supports "
        rf"\({checkpoints.FORMAT_VERSION}\); upgrade jaxnets",
    ):
        checkpoints.load_checkpoint(path, _state(), **IDENTITY)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = checkpoints.save_checkpoint(tmp_path / "c.npz", _state(), **IDENTITY)
    with pytest.raises(ValueError, match=r"c.npz: checkpoint is from model 'fc', not 'convnet'"):
        checkpoints.load_checkpoint(path, _state(), model_name="convnet", model_config=IDENTITY["model_config"])
    with pytest.raises(ValueError, match=r"configured as .*'hidden': \[5\].*not .*'hidden': \[7\]"):
        checkpoints.load_checkpoint(
            path, _state(), model_name="fc", model_config={**IDENTITY["model_config"], "hidden": [7]}
        )
    # without the identity, the leaf shapes still catch it
    with pytest.raises(
        ValueError, match=r"params\['W1'\] is float32\[4, 5\] in the checkpoint but the model needs float32\[4, 7\]"
    ):
        checkpoints.load_checkpoint(path, _state(model=models.fc_net([7], 3, normalization="batchnorm")))
    with pytest.raises(ValueError, match="has no array .*different model or optimizer"):
        checkpoints.load_checkpoint(path, _state(optimizer="momentum"))  # no adam moments for 'mu'? other layout
    with pytest.raises(ValueError, match="has arrays the model does not"):
        checkpoints.load_checkpoint(path, _state(model=models.fc_net([5], 3)))  # no gamma/beta, no running stats


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "empty"])
def test_corrupt_file_gives_a_clear_error_naming_it(tmp_path, damage):
    path = checkpoints.save_checkpoint(tmp_path / "c.npz", _state(), **IDENTITY)
    data = path.read_bytes()
    damaged = {
        "truncate": data[: len(data) // 2],
        "garbage": b"not a checkpoint" * 10,
        "empty": b"",
        "flip": data[:200] + bytes(b ^ 0xFF for b in data[200:260]) + data[260:],
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(ValueError, match=rf"{path}: not a readable jaxnets checkpoint .*truncated or corrupt"):
        checkpoints.load_checkpoint(path, _state(), **IDENTITY)


def test_npz_without_metadata_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="x.npz: not a readable jaxnets checkpoint .*no __meta__"):
        checkpoints.read_checkpoint_meta(tmp_path / "x.npz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        checkpoints.load_checkpoint(tmp_path / "nope.npz", _state())


def test_no_pickles_inside(tmp_path):
    path = checkpoints.save_checkpoint(tmp_path / "c.npz", _trained_state(), **IDENTITY)
    with np.load(path, allow_pickle=False) as archive:  # would raise on an object array
        assert all(archive[name].dtype != object for name in archive.files)
        assert json.loads(bytes(archive["__meta__"]))["format"] == "jaxnets-checkpoint"


def test_atomic_write_leaves_no_temp_files(tmp_path):
    for seed in range(3):
        checkpoints.save_checkpoint(tmp_path / "c.npz", _state(seed), **IDENTITY)
    assert os.listdir(tmp_path) == ["c.npz"]


@pytest.mark.parametrize("where", ["savez", "fsync", "replace"])
def test_failed_write_keeps_the_good_checkpoint(tmp_path, monkeypatch, where):
    path = checkpoints.save_checkpoint(tmp_path / "c.npz", _state(0), **IDENTITY)
    good = path.read_bytes()

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    if where == "savez":
        monkeypatch.setattr(checkpoints.np, "savez", half_written)
    else:
        monkeypatch.setattr(checkpoints.os, where, fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_checkpoint(path, _state(1), **IDENTITY)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["c.npz"]
    restored, _ = checkpoints.load_checkpoint(path, _state(7), **IDENTITY)
    assert _leaves_equal(restored.params, _state(0).params)


def test_write_json_is_atomic_and_readable(tmp_path):
    path = checkpoints.write_json(tmp_path / "m.json", {"a": np.float32(0.5), "b": jnp.arange(2), "c": (1, 2)})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1], "c": [1, 2]}
    assert os.listdir(tmp_path) == ["m.json"]
