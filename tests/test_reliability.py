"""Reliability: a battery of bad inputs, determinism, data parallelism, numerical robustness."""

import gzip
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import data, layers, losses, manual_grads, models, train


def tiny_split(n=40, shape=(1, 8, 8), classes=10, seed=0):
    """A small random split with every class present."""
    rng = np.random.default_rng(seed)
    make = lambda m: (rng.normal(size=(m, *shape)).astype(np.float32), (np.arange(m) % classes).astype(np.int32))
    (Xt, yt), (Xv, yv) = make(n), make(n // 2)
    return {"X_train": Xt, "y_train": yt, "X_val": Xv, "y_val": yv, "X_test": Xv, "y_test": yv}


def with_(split, **changes):
    return {**split, **changes}


def fc():
    return models.fc_net([8], 10)


def cnn():
    return models.three_layer_convnet(2, 3, 8, 10)


def fit_(model, split, **config):
    return train.fit(
        model, split, train.TrainConfig(**{"epochs": 1, "batch_size": 10, **config}), key=jax.random.key(0)
    )


def fashion_folder(tmp_path, images=None, labels=None):
    """A Fashion-MNIST folder of 20 train/10 test examples, with one file replaced if asked."""
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(20) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(10) % 10).astype(np.uint8),
    }
    for name, array in files.items():
        data.write_idx(tmp_path / name, array)
    for name, content in (("train-images-idx3-ubyte.gz", images), ("train-labels-idx1-ubyte.gz", labels)):
        if content is not None:
            (tmp_path / name).write_bytes(content(tmp_path / name))
    return tmp_path


def truncate(path):
    raw = gzip.decompress(path.read_bytes())
    return gzip.compress(raw[: len(raw) // 2])


SPLIT = tiny_split()
FLAT = with_(SPLIT, X_train=SPLIT["X_train"].reshape(40, -1), X_val=SPLIT["X_val"].reshape(20, -1))

# (id, call, exception, message regex): every distinct bad input a user can hand the library.
BATTERY = [
    (
        "nan_in_train_images",
        lambda tmp: fit_(
            fc(), with_(FLAT, X_train=np.where(np.arange(64) == 3, np.nan, FLAT["X_train"]).astype(np.float32))
        ),
        ValueError,
        r"train split: X: expected finite values; got 40 NaN and 0 inf",
    ),
    (
        "inf_in_val_images",
        lambda tmp: fit_(fc(), with_(FLAT, X_val=np.full_like(FLAT["X_val"], np.inf))),
        ValueError,
        r"val split: X: expected finite values; got 0 NaN and 1280 inf",
    ),
    (
        "empty_training_set",
        lambda tmp: fit_(fc(), with_(FLAT, X_train=np.zeros((0, 64), np.float32), y_train=np.zeros(0, np.int32))),
        ValueError,
        r"X_train must be a non-empty batch of shape \(N, \.\.\.\), got shape \(0, 64\)",
    ),
    (
        "flat_features_for_a_conv_net",
        lambda tmp: fit_(cnn(), FLAT),
        ValueError,
        r"needs images of shape \(C, H, W\).*got examples of shape \(64,\)",
    ),
    (
        "image_too_small_for_the_conv",
        lambda tmp: fit_(
            models.three_layer_convnet(2, 7, 8, 10),
            with_(SPLIT, X_train=SPLIT["X_train"][:, :, :1, :1], X_val=SPLIT["X_val"][:, :, :1, :1]),
        ),
        ValueError,
        r"does not accept examples of shape \(1, 1, 1\).*images of 1x1 are too small for this net: "
        r"it halves them 1 time\(s\) by 2x2 pooling and needs H, W >= 2",
    ),
    (
        "val_images_of_another_size",
        lambda tmp: fit_(fc(), with_(FLAT, X_val=FLAT["X_val"][:, :32])),
        ValueError,
        r"X_val examples must have the shape of X_train's \(64,\), got \(32,\)",
    ),
    (
        "integer_images",
        lambda tmp: fit_(
            fc(), with_(FLAT, X_train=FLAT["X_train"].astype(np.int32), X_val=FLAT["X_val"].astype(np.int32))
        ),
        TypeError,
        r"does not accept examples of shape \(64,\) and dtype int32.*floating-point",
    ),
    (
        "float_labels",
        lambda tmp: fit_(fc(), with_(FLAT, y_train=FLAT["y_train"].astype(np.float32))),
        TypeError,
        r"train split: y: expected an integer dtype; got float32",
    ),
    (
        "labels_out_of_range",
        lambda tmp: fit_(fc(), with_(FLAT, y_val=FLAT["y_val"] - 1)),
        ValueError,
        r"val split: y: labels must lie in \[0, 10\); got min -1, max 8",
    ),
    (
        "more_classes_than_the_model",
        lambda tmp: fit_(models.fc_net([8], 5), FLAT),
        ValueError,
        r"labels must lie in \[0, 5\); got min 0, max 9 \(the model has 5 classes\)",
    ),
    (
        "labels_of_the_wrong_shape",
        lambda tmp: fit_(fc(), with_(FLAT, y_train=FLAT["y_train"][:, None])),
        ValueError,
        r"train split: y: expected a 1-D array of shape \(N,\); got shape \(40, 1\)",
    ),
    (
        "fewer_labels_than_images",
        lambda tmp: fit_(fc(), with_(FLAT, y_train=FLAT["y_train"][:30])),
        ValueError,
        r"expected the same number of examples; got X with 40 .* and y with 30",
    ),
    (
        "missing_split",
        lambda tmp: fit_(fc(), {k: v for k, v in FLAT.items() if k != "y_val"}),
        ValueError,
        r"missing \['y_val'\]",
    ),
    (
        "params_of_another_model",
        lambda tmp: train.fit(
            models.fc_net([8, 8], 10),
            FLAT,
            train.TrainConfig(epochs=2, batch_size=10),
            key=jax.random.key(0),
            resume=fit_(fc(), FLAT),
        ),
        ValueError,
        r"resume: params keys \['W1', 'W2', 'b1', 'b2'\] do not match .* \(missing \['W3', 'b3'\], unexpected \[\]\)",
    ),
    (
        "params_of_another_width",
        lambda tmp: train.fit(
            models.fc_net([9], 10),
            FLAT,
            train.TrainConfig(epochs=2, batch_size=10),
            key=jax.random.key(0),
            resume=fit_(fc(), FLAT),
        ),
        ValueError,
        r"resume: params\['W1'\] has shape \(64, 8\), expected \(64, 9\)",
    ),
    (
        "state_of_another_optimizer",
        lambda tmp: train.fit(
            fc(),
            FLAT,
            train.TrainConfig(epochs=2, batch_size=10, optimizer="sgd"),
            key=jax.random.key(0),
            resume=fit_(fc(), FLAT, optimizer="adam"),
        ),
        ValueError,
        r"resume: opt_state has structure .* from a different model or optimizer",
    ),
    (
        "batch_larger_than_data",
        lambda tmp: fit_(fc(), FLAT, batch_size=41),
        ValueError,
        r"batch_size=41 is larger than the training set \(40 examples\)",
    ),
    (
        "zero_learning_rate",
        lambda tmp: fit_(fc(), FLAT, learning_rate=0.0),
        ValueError,
        r"learning_rate must be > 0, got 0.0",
    ),
    (
        "negative_learning_rate_in_a_sweep",
        lambda tmp: train.sweep(
            fc(), FLAT, [1e-3, -1e-3], [0.0], train.TrainConfig(epochs=1, batch_size=10), key=jax.random.key(0)
        ),
        ValueError,
        r"learning_rate must be > 0, got -0.001",
    ),
    (
        "empty_sweep_grid",
        lambda tmp: train.sweep(
            fc(), FLAT, [], [0.0], train.TrainConfig(epochs=1, batch_size=10), key=jax.random.key(0)
        ),
        ValueError,
        r"at least one learning rate and one reg",
    ),
    (
        "unknown_optimizer",
        lambda tmp: fit_(fc(), FLAT, optimizer="adamw"),
        ValueError,
        r"optimizer must be one of \('sgd', 'momentum', 'rmsprop', 'adam'\), got 'adamw'",
    ),
    (
        "unknown_loss",
        lambda tmp: fit_(fc(), FLAT, loss="hinge"),
        ValueError,
        r"loss must be one of \('softmax', 'svm', 'squared_error'\), got 'hinge'",
    ),
    ("zero_epochs", lambda tmp: fit_(fc(), FLAT, epochs=0), ValueError, r"epochs must be a positive int, got 0"),
    (
        "lr_decay_above_one",
        lambda tmp: fit_(fc(), FLAT, lr_decay=1.5),
        ValueError,
        r"lr_decay must be in \(0, 1\], got 1.5",
    ),
    ("negative_reg", lambda tmp: fit_(fc(), FLAT, reg=-1.0), ValueError, r"reg must be >= 0, got -1.0"),
    (
        "more_devices_than_available",
        lambda tmp: train.fit(
            fc(),
            FLAT,
            train.TrainConfig(epochs=1, batch_size=10),
            key=jax.random.key(0),
            devices=len(jax.devices()) + 1,
        ),
        ValueError,
        r"devices must be between 1 and the \d+ available device\(s\), got \d+",
    ),
    (
        "unknown_normalization",
        lambda tmp: models.fc_net([8], 10, normalization="instancenorm"),
        ValueError,
        r"normalization must be one of .*got 'instancenorm'",
    ),
    (
        "dropout_rate_of_one",
        lambda tmp: models.fc_net([8], 10, dropout=1.0),
        ValueError,
        r"dropout \(the drop probability\) must be a number in \[0, 1\), got 1.0",
    ),
    ("unknown_data_set", lambda tmp: data.load_dataset("svhn"), ValueError, r"svhn"),
    (
        "missing_fashion_folder",
        lambda tmp: data.load_fashion_mnist(tmp / "nowhere", download=False),
        FileNotFoundError,
        r"nowhere",
    ),
    (
        "truncated_idx_file",
        lambda tmp: data.load_fashion_mnist(fashion_folder(tmp, images=truncate)),
        ValueError,
        r"train-images-idx3-ubyte.gz",
    ),
    (
        "idx_file_with_bad_magic",
        lambda tmp: data.load_fashion_mnist(
            fashion_folder(tmp, labels=lambda p: gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 30))
        ),
        ValueError,
        r"train-labels-idx1-ubyte.gz",
    ),
    ("corrupt_cifar_batch", lambda tmp: data.load_cifar10(cifar_folder(tmp)), ValueError, r"data_batch_1"),
]


def cifar_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"not a pickle")
    return folder


@pytest.mark.parametrize("call, error, match", [case[1:] for case in BATTERY], ids=[case[0] for case in BATTERY])
def test_bad_input_battery(call, error, match, tmp_path):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_battery_has_at_least_25_distinct_inputs():
    assert len({case[0] for case in BATTERY}) == len(BATTERY) >= 25


def test_divergence_keeps_the_best_params_finite():
    split = tiny_split(80, (64,))
    ts = train.fit(
        fc(),
        split,
        train.TrainConfig(optimizer="sgd", learning_rate=1e9, epochs=5, batch_size=10),
        key=jax.random.key(0),
    )
    assert "diverged" in ts.history["stopped"] and "lower learning rate" in ts.history["stopped"]
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree_util.tree_leaves(ts.best_params))


def test_same_seed_same_run_with_dropout():
    split = tiny_split(80, (64,))
    model = models.fc_net([16, 16], 10, normalization="batchnorm", dropout=0.3)
    config = train.TrainConfig(optimizer="adam", epochs=3, batch_size=16)
    a, b = (train.fit(model, split, config, key=jax.random.key(7)) for _ in range(2))
    for x, y in zip(
        jax.tree_util.tree_leaves((a.params, a.state, a.opt_state, a.best_params)),
        jax.tree_util.tree_leaves((b.params, b.state, b.opt_state, b.best_params)),
        strict=False,
    ):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    strip = lambda h: {k: v for k, v in h.items() if k != "epoch_time"}
    assert strip(a.history) == strip(b.history)
    c = train.fit(model, split, config, key=jax.random.key(8))
    assert not np.array_equal(np.asarray(a.params["W1"]), np.asarray(c.params["W1"]))


DATA_PARALLEL = textwrap.dedent("""
    import jax, numpy as np
    from jaxnets import data, models, train
    assert len(jax.devices()) == 4, jax.devices()
    split = data.load_digits(seed=0)
    model = models.fc_net([32], 10, normalization="batchnorm")
    # Momentum, not adam: adam divides by sqrt(v), turning the ~1e-10 rounding residue of
    # gradients that are exactly 0 in exact arithmetic (b1, before batch norm) into lr-sized steps.
    config = train.TrainConfig(optimizer="momentum", learning_rate=1e-2, epochs=2, batch_size=64)
    one = train.fit(model, split, config, key=jax.random.key(0))
    four = train.fit(model, split, config, key=jax.random.key(0), devices=4)
    for k in one.params:
        np.testing.assert_allclose(one.params[k], four.params[k], rtol=1e-4, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(one.history["loss"], four.history["loss"], rtol=1e-4)
    assert one.history["val_acc"] == four.history["val_acc"]
    try:
        train.fit(model, split, config._replace(batch_size=66), key=jax.random.key(0), devices=4)
    except ValueError as e:
        assert "batch_size=66 must be divisible by devices=4" in str(e), e
    else:
        raise AssertionError("no error for a batch not divisible by the device count")
    print("ok")
""")


def test_four_device_data_parallel_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", DATA_PARALLEL], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("ops", [losses, manual_grads], ids=["autodiff", "manual"])
def test_softmax_and_bce_are_finite_and_correct_for_huge_scores(dtype, ops, x64):
    scores = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, 0.0]], dtype)
    y = jnp.array([0, 0, 2])
    loss, grad = jax.value_and_grad(ops.softmax_loss)(scores, y)
    # Row 0: log-prob 0; row 1: -log p(class 0) = 2e4 + log 2; row 2: log 3.
    expected = (0.0 + 2e4 + np.log(2) + np.log(3)) / 3
    assert loss.dtype == dtype and np.isfinite(float(loss))
    assert abs(float(loss) - expected) < 1e-6 * expected
    assert np.isfinite(np.asarray(grad)).all()
    np.testing.assert_allclose(np.asarray(grad).sum(axis=1), 0.0, atol=1e-6)

    logits = jnp.array([1e4, -1e4, 1e4, -1e4, 0.0], dtype)
    targets = jnp.array([1.0, 0.0, 0.0, 1.0, 1.0], dtype)
    loss, grad = jax.value_and_grad(ops.sigmoid_bce)(logits, targets)
    expected = (0 + 0 + 1e4 + 1e4 + np.log(2)) / 5
    assert np.isfinite(float(loss)) and abs(float(loss) - expected) < 1e-6 * expected
    np.testing.assert_allclose(np.asarray(grad), np.array([0, 0, 1, -1, -0.5]) / 5, atol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("ops", [layers, manual_grads], ids=["autodiff", "manual"])
def test_batchnorm_on_a_constant_feature_is_finite(dtype, ops, x64):
    x = jnp.concatenate([jnp.full((6, 1), 3.5, dtype), jnp.arange(6, dtype=dtype)[:, None]], axis=1)
    gamma, beta = jnp.array([2.0, 1.0], dtype), jnp.array([0.25, 0.0], dtype)
    out = ops.batchnorm(x, gamma, beta)
    assert out.dtype == dtype
    np.testing.assert_allclose(np.asarray(out[:, 0]), 0.25)  # zero variance: x - mean = 0 exactly
    grads = jax.grad(
        lambda x, g, b: jnp.sum(ops.batchnorm(x, g, b) * jnp.arange(12.0, dtype=dtype).reshape(6, 2)), argnums=(0, 1, 2)
    )(x, gamma, beta)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
    # The constant column's input gradient is gamma/sqrt(eps) * (dout - mean(dout)): finite and bounded.
    assert np.abs(np.asarray(grads[0][:, 0])).max() < 2.0 / np.sqrt(1e-5) * 12

    xs = jnp.full((2, 3, 4, 4), -7.0, dtype)
    out = ops.spatial_batchnorm(xs, jnp.ones(3, dtype), jnp.zeros(3, dtype))
    assert np.array_equal(np.asarray(out), np.zeros((2, 3, 4, 4)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_step_keeps_the_input_dtype(dtype, x64):
    split = tiny_split(40, (64,))
    split = {k: (v.astype(dtype) if k.startswith("X") else v) for k, v in split.items()}
    model = models.fc_net([8], 10)
    params, state = model.init(jax.random.key(0), (64,))
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    loss, grads = jax.value_and_grad(
        lambda p: train.loss_fn(model, p, state, split["X_train"], split["y_train"], reg=1e-3)[0]
    )(params)
    assert loss.dtype == dtype and np.isfinite(float(loss))
    assert all(g.dtype == dtype for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_train_command_runs_data_parallel_on_four_devices(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    command = [
        sys.executable,
        "-m",
        "jaxnets",
        "train",
        "--model",
        "two-layer",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--quiet",
        "--devices",
    ]
    result = subprocess.run(
        command + ["4", "--out", str(tmp_path / "dp")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout.lower()
    assert (tmp_path / "dp" / "metrics.json").exists()
    result = subprocess.run(
        command + ["3", "--out", str(tmp_path / "dp3")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert result.stderr == "jaxnets: error: --batch-size 64 must be divisible by --devices 3\n"
