"""Augmentation: shapes, determinism per key, identity cases, flip statistics, vmap, in training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import augment, data, models, train


def _batch(n=8, c=2, h=5, w=6, dtype=jnp.float32):
    return jnp.arange(n * c * h * w, dtype=dtype).reshape(n, c, h, w) + 1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_shapes_and_dtype(x64, dtype):
    x = _batch(dtype=dtype)
    out = augment.augment_batch(jax.random.key(0), x, crop_pad=2, flip_prob=0.5)
    assert out.shape == x.shape and out.dtype == x.dtype


def test_deterministic_per_key_and_varies_across_keys():
    x = _batch()
    a = augment.augment_batch(jax.random.key(3), x, crop_pad=2, flip_prob=0.5)
    b = augment.augment_batch(jax.random.key(3), x, crop_pad=2, flip_prob=0.5)
    c = augment.augment_batch(jax.random.key(4), x, crop_pad=2, flip_prob=0.5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_identity_cases():
    x = _batch()
    np.testing.assert_array_equal(augment.random_crop(jax.random.key(0), x, 0), x)
    np.testing.assert_array_equal(augment.random_flip(jax.random.key(0), x, 0.0), x)
    np.testing.assert_array_equal(augment.augment_batch(jax.random.key(0), x), x)
    np.testing.assert_array_equal(augment.random_flip(jax.random.key(0), x, 1.0), x[..., ::-1])


def test_crop_is_a_shift_with_zero_fill():
    """Each cropped image equals the original shifted by (dy, dx) in [-pad, pad], zeros where it left."""
    pad = 2
    x = _batch(n=32)
    out = np.asarray(augment.random_crop(jax.random.key(1), x, pad))
    xs = np.asarray(x)
    shifts = set()
    for i in range(len(xs)):
        padded = np.pad(xs[i], ((0, 0), (pad, pad), (pad, pad)))
        found = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(padded[:, dy : dy + 5, dx : dx + 6], out[i])
        ]
        assert found, f"example {i} is not a crop of the padded image"
        shifts.add(found[0])
    assert len(shifts) > 5  # offsets are drawn per example, not one per batch


def test_flip_statistics():
    n, prob = 4000, 0.3
    x = jnp.tile(jnp.arange(3.0).reshape(1, 1, 1, 3), (n, 1, 1, 1))
    out = np.asarray(augment.random_flip(jax.random.key(0), x, prob))
    flipped = out[:, 0, 0, 0] == 2.0
    assert np.all(out[flipped, 0, 0] == [2, 1, 0]) and np.all(out[~flipped, 0, 0] == [0, 1, 2])
    # binomial(4000, 0.3): std 0.0072; 5 std
    assert abs(flipped.mean() - prob) < 0.036


def test_jit_and_vmap_over_keys_match_loop():
    x = _batch(n=4)
    keys = jax.random.split(jax.random.key(0), 3)
    fn = jax.jit(lambda k, xb: augment.augment_batch(k, xb, crop_pad=1, flip_prob=0.5))
    batched = jax.vmap(fn, in_axes=(0, None))(keys, x)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], fn(keys[i], x))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: augment.random_crop(jax.random.key(0), jnp.ones((2, 3)), 1), "NCHW"),
        (lambda: augment.random_crop(jax.random.key(0), jnp.ones((2, 1, 3, 3)), -1), "pad"),
        (lambda: augment.random_flip(jax.random.key(0), jnp.ones((2, 1, 3, 3)), 1.5), "prob"),
        (lambda: train._check_config(train.TrainConfig(crop_pad=-1), 10), "crop_pad"),
        (lambda: train._check_config(train.TrainConfig(flip_prob=2.0), 10), "flip_prob"),
    ],
)
def test_bad_arguments_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_augmentation_changes_training_inside_the_epoch():
    """The compiled epoch applies the augmentation: same key, different parameters; off is unchanged."""
    split = data.load_dataset("digits", seed=0)
    model = models.convnet((4,), (), 10)
    base = train.TrainConfig(optimizer="adam", learning_rate=1e-3, epochs=1, batch_size=100)
    key = jax.random.key(0)
    p0 = train.fit(model, split, base, key=key).params
    p0_again = train.fit(model, split, base._replace(crop_pad=0, flip_prob=0.0), key=key).params
    p1 = train.fit(model, split, base._replace(crop_pad=1, flip_prob=0.5), key=key).params
    leaves0, leaves0b, leaves1 = (jax.tree_util.tree_leaves(p) for p in (p0, p0_again, p1))
    assert all(np.array_equal(a, b) for a, b in zip(leaves0, leaves0b, strict=True))
    assert not all(np.allclose(a, b) for a, b in zip(leaves0, leaves1, strict=True))
