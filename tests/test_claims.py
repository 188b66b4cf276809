"""README claims without a test elsewhere: whole-model gradients of every model, the learning rate
the optimizer really uses, dtype preservation of every layer and loss, divergence after good epochs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import data, gradcheck, layers, losses, manual_grads, models, train

WHOLE_MODELS = {
    "linear-svm": (lambda ops: models.linear_classifier(4, ops=ops), (6,), "svm"),
    "linear-softmax": (lambda ops: models.linear_classifier(4, ops=ops), (2, 3), "softmax"),
    "fc-layernorm": (lambda ops: models.fc_net([6, 5], 4, normalization="layernorm", ops=ops), (6,), "softmax"),
    "digits-cnn": (lambda ops: models.digits_cnn((5, 6), ops=ops), (1, 8, 8), "squared_error"),
    "convnet-max": (lambda ops: models.convnet((3, 4), (5,), 4, pool="max", ops=ops), (2, 8, 8), "softmax"),
    "convnet-avg": (lambda ops: models.convnet((3, 4), (5,), 4, pool="avg", ops=ops), (2, 8, 8), "softmax"),
}


@pytest.mark.parametrize("name", WHOLE_MODELS)
@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_whole_model_manual_gradient_matches_autodiff_and_numeric(x64, name):
    factory, input_shape, loss = WHOLE_MODELS[name]
    rng = np.random.default_rng(0)
    auto_model, manual_model = factory(layers), factory(manual_grads)
    params, state = auto_model.init(jax.random.key(1), input_shape)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64) + 0.1 * rng.standard_normal(a.shape), params)
    state = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), state)
    x = jnp.asarray(rng.standard_normal((4, *input_shape)))
    y = jnp.asarray(rng.integers(0, 2 if loss == "squared_error" else 4, 4))

    def objective(model, loss_ops):
        return lambda p: train.loss_fn(model, p, state, x, y, reg=0.1, loss=loss, loss_ops=loss_ops)[0]

    manual = jax.grad(objective(manual_model, manual_grads))(params)
    auto = jax.grad(objective(auto_model, losses))(params)
    # a step small enough that relu / max-pool inputs stay clear of their kinks; its rounding noise
    # (~1e-11 absolute) is measured against the gradient's scale, not against each tiny entry
    numeric = gradcheck.numeric_grads(objective(auto_model, losses), (params,), (0,), h=1e-5)[0]
    for k in params:
        assert manual[k].dtype == jnp.float64
        # entries that are 0 in exact arithmetic (a bias just before batch norm) come out as ~1e-16 residue
        live = np.abs(np.asarray(auto[k])) > 1e-9
        assert np.abs(np.asarray(manual[k] - auto[k]))[~live].max(initial=0) < 1e-12, k
        assert gradcheck.rel_error(manual[k][live], auto[k][live]) < 1e-10, k
        # floored: a gradient that is 0 in exact arithmetic (a bias before batch norm) is all noise
        scale = max(float(jnp.max(jnp.abs(numeric[k]))), 1e-2)
        assert float(jnp.max(jnp.abs(manual[k] - numeric[k]))) / scale < 1e-7, k


def test_lr_decay_is_the_rate_the_optimizer_uses(x64):
    """Recover the learning rate of each epoch from plain-SGD parameter updates (one full batch per epoch)."""
    split = data.load_dataset("digits", seed=0)
    X = jnp.asarray(split["X_train"][:100], jnp.float64)
    y = jnp.asarray(split["y_train"][:100])
    model = models.linear_classifier(10, weight_scale=1e-2)
    config = train.TrainConfig(optimizer="sgd", learning_rate=0.1, lr_decay=0.5, batch_size=100)
    ts = train.init_train_state(model, jax.random.key(0), X.shape[1:], config, 1)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), ts.params)
    opt_state = jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float64) if a.dtype.kind == "f" else a, ts.opt_state
    )
    epoch = jax.jit(train.make_epoch_fn(model, config, 100))
    hyper = {"learning_rate": jnp.float64(0.1), "reg": jnp.float64(0.0)}
    used = []
    for e in range(4):
        grad = jax.grad(lambda p: train.loss_fn(model, p, ts.state, X, y, reg=0.0)[0])(params)
        new, _, opt_state, _ = epoch(params, ts.state, opt_state, hyper, X, y, jax.random.key(e))
        live = jnp.abs(grad["W1"]) > 1e-8  # pixels that are 0 in every image have no gradient
        step = (params["W1"] - new["W1"])[live] / grad["W1"][live]
        used.append(float(jnp.median(step)))
        params = new
    np.testing.assert_allclose(used, [0.1, 0.05, 0.025, 0.0125], rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", [c.name for c in gradcheck.CASES])
def test_every_layer_and_loss_keeps_the_dtype(x64, name, dtype):
    """Each function with a hand-derived backward, autodiff and manual: outputs and gradients in the input dtype."""
    case = next(c for c in gradcheck.CASES if c.name == name)
    args = list(case.sample(np.random.default_rng(0)))

    def cast(a):
        floating = isinstance(a, jax.Array | np.ndarray) and jnp.issubdtype(a.dtype, jnp.floating)
        return jnp.asarray(a, dtype) if floating else a

    args = [jax.tree_util.tree_map(cast, a) if isinstance(a, dict) else cast(a) for a in args]
    for ns in ({"layers": layers, "losses": losses}[case.module], manual_grads):
        fn = getattr(ns, name)
        out = fn(*args)
        for leaf in jax.tree_util.tree_leaves(out):
            if jnp.issubdtype(leaf.dtype, jnp.floating):
                assert leaf.dtype == dtype, (ns.__name__, name, leaf.dtype)

        def scalar(*diff, fn=fn):
            full = list(args)
            for i, a in zip(case.argnums, diff, strict=True):
                full[i] = a
            return sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(fn(*full)))

        grads = jax.grad(scalar, argnums=tuple(range(len(case.argnums))))(*[args[i] for i in case.argnums])
        for g in jax.tree_util.tree_leaves(grads):
            assert g.dtype == dtype, (ns.__name__, name, g.dtype)


def test_divergence_after_good_epochs_keeps_the_best_weights():
    split = data.load_dataset("digits", seed=0)
    model = models.fc_net([16], 10)
    good = train.TrainConfig(optimizer="sgd", learning_rate=0.05, epochs=2, batch_size=100)
    ts = train.fit(model, split, good, key=jax.random.key(0))
    assert ts.best_val_acc > 0.2 and "stopped" not in ts.history
    # the same run continued with a learning rate that blows up in epoch 3
    ts2 = train.fit(model, split, good._replace(learning_rate=1e30, epochs=4), key=jax.random.key(0), resume=ts)
    assert ts2.history["stopped"].startswith("diverged") and "at epoch 3" in ts2.history["stopped"]
    assert ts2.epoch == 2 and ts2.best_val_acc == ts.best_val_acc
    for a, b in zip(jax.tree_util.tree_leaves(ts2.best_params), jax.tree_util.tree_leaves(ts.best_params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree_util.tree_leaves(ts2.params), jax.tree_util.tree_leaves(ts.params), strict=True):
        np.testing.assert_array_equal(a, b)  # the last good epoch, not the non-finite one
