"""The broken max-pooling backward: same forward, a wrong (transposed) gradient, a full ops namespace."""

import functools
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import broken_grads, layers, manual_grads, models

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "broken_backprop.py"


@functools.partial(jax.jit, static_argnums=0)
def _pool_vjp(ops, x, dout):
    """``(out, dL/dx)`` of ``L = sum(dout * ops.max_pool2d(x))``, compiled once per namespace and shape."""
    out, vjp = jax.vjp(lambda x: ops.max_pool2d(x, 2, 2), x)
    return out, vjp(dout)[0]


def _input_and_dout(rng):
    """Random x (3, 2, 8, 8) and dout (3, 2, 4, 4); one shape for every test, so one compile each."""
    return (
        jnp.asarray(rng.standard_normal((3, 2, 8, 8)), jnp.float32),
        jnp.asarray(rng.standard_normal((3, 2, 4, 4)), jnp.float32),
    )


def test_forward_is_the_true_forward(rng):
    x, dout = _input_and_dout(rng)
    out_broken, _ = _pool_vjp(broken_grads, x, dout)
    np.testing.assert_array_equal(out_broken, _pool_vjp(layers, x, dout)[0])
    np.testing.assert_array_equal(out_broken, _pool_vjp(manual_grads, x, dout)[0])


def test_gradient_differs_from_the_true_gradient(rng):
    x, dout = _input_and_dout(rng)
    _, dx_broken = _pool_vjp(broken_grads, x, dout)
    _, dx_manual = _pool_vjp(manual_grads, x, dout)
    _, dx_auto = _pool_vjp(layers, x, dout)
    np.testing.assert_allclose(dx_manual, dx_auto)  # the reference itself is right
    assert dx_broken.shape == x.shape
    assert np.abs(dx_broken - dx_manual).max() > 0.1
    assert np.abs(dx_broken - dx_auto).max() > 0.1
    # The documented formula: mask^T * up(dout)^T is the true gradient with H and W swapped ...
    np.testing.assert_allclose(dx_broken, jnp.swapaxes(dx_manual, -1, -2))
    # ... so some of it lands on pixels that were no window's maximum (true gradient 0 there).
    assert np.any((dx_broken != 0) & (dx_manual == 0))


def test_gradient_agrees_when_the_true_gradient_is_symmetric(rng):
    """The wrong rule coincides with the true one exactly when the true dx is H<->W symmetric,
    e.g. a symmetric input whose window maxima sit on the windows' diagonal, with symmetric dout."""
    a, d = _input_and_dout(rng)
    top_left = jnp.zeros((8, 8)).at[::2, ::2].set(100.0)  # symmetric; the unique max of each window
    x = a + jnp.swapaxes(a, -1, -2) + top_left
    dout = d + jnp.swapaxes(d, -1, -2)
    _, dx_broken = _pool_vjp(broken_grads, x, dout)
    _, dx_manual = _pool_vjp(manual_grads, x, dout)
    np.testing.assert_array_equal(dx_broken, dx_manual)


def test_backward_rejects_non_square_input():
    x = jnp.ones((1, 1, 4, 6))
    np.testing.assert_array_equal(broken_grads.max_pool2d(x), layers.max_pool2d(x))  # forward is fine
    with pytest.raises(ValueError, match="x: .*square.*4x6"):
        jax.grad(lambda x: jnp.sum(broken_grads.max_pool2d(x)))(x)


def test_namespace_is_manual_grads_name_for_name():
    assert broken_grads.__all__ == manual_grads.__all__
    replaced = {"max_pool2d", "max_pool2d_backward", "max_pool2d_nhwc"}
    for name in manual_grads.__all__:
        same = getattr(broken_grads, name) is getattr(manual_grads, name)
        assert same == (name not in replaced), name
    for name in (
        "affine",
        "conv2d",
        "relu",
        "tanh",
        "sigmoid",
        "max_pool2d",
        "avg_pool2d",
        "batchnorm",
        "spatial_batchnorm",
        "layernorm",
        "batchnorm_inference",
        "update_running_stats",
        "dropout",
        "squared_error",
        "softmax_loss",
        "l2_penalty",
    ):
        assert callable(getattr(broken_grads, name)), name


def test_digits_cnn_trains_with_broken_grads():
    """Only the conv layers (upstream of the pools) see the wrong gradient; a few SGD steps train."""
    # The example's quick hidden sizes: the initialisers' compiles are shared with its test.
    true_model, broken_model = (
        models.digits_cnn((18, 20), ops=manual_grads),
        models.digits_cnn((18, 20), ops=broken_grads),
    )
    params, state = broken_model.init(jax.random.key(0), (1, 8, 8))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(16, 1, 8, 8)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, 16), jnp.float32)[:, None]

    def loss(model, p):
        return broken_grads.squared_error(model.apply(p, state, x)[0], y)

    @jax.jit
    def grads(p):
        return jax.grad(lambda p: loss(true_model, p))(p), jax.value_and_grad(lambda p: loss(broken_model, p))(p)

    true_g, (start, broken_g) = grads(params)
    for k in params:
        if k in ("W1", "b1", "W2", "b2"):
            assert not np.allclose(true_g[k], broken_g[k]), k
        else:  # affine layers after the pools: the same gradient
            np.testing.assert_allclose(true_g[k], broken_g[k], rtol=1e-5, atol=1e-7, err_msg=k)

    for _ in range(20):
        _, (_, g) = grads(params)
        params = jax.tree_util.tree_map(lambda w, d: w - 0.5 * d, params, g)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in params.values())
    assert float(grads(params)[1][0]) < float(start)


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_example_quick_run_writes_png(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("broken_backprop_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "curves.png"
    rows = example.main(["--quick", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(rows) == 1 and set(rows[0]) == {"hidden_dims", "true", "broken"}
    for variant in ("true", "broken"):
        costs = rows[0][variant]["costs"]
        assert costs.shape == (example.QUICK_EPOCHS,) and np.all(np.isfinite(costs))
        assert 0.0 <= rows[0][variant]["test_acc"] <= 1.0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "broken" in printed


def test_channels_last_pool_is_broken_the_same_way():
    """``convnet`` pools channels last: its broken backward is the NCHW rule, transposed along."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.permutation(2 * 3 * 4 * 4).reshape(2, 3, 4, 4), jnp.float32)  # no ties
    dout = jnp.asarray(rng.normal(size=(2, 3, 2, 2)), jnp.float32)
    to_nhwc = (0, 2, 3, 1)
    dx_nchw = jax.grad(lambda x: jnp.sum(broken_grads.max_pool2d(x) * dout))(x)
    dx_nhwc = jax.grad(
        lambda x: jnp.sum(broken_grads.max_pool2d_nhwc(jnp.transpose(x, to_nhwc)) * jnp.transpose(dout, to_nhwc))
    )(x)
    np.testing.assert_array_equal(dx_nhwc, dx_nchw)
    assert not np.array_equal(dx_nhwc, jax.grad(lambda x: jnp.sum(manual_grads.max_pool2d(x) * dout))(x))
