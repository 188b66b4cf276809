"""Whole models: manual vs autodiff gradients, BN state, overfitting, equal training paths."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import data, gradcheck, layers, losses, manual_grads, models, presets, train
from jaxnets.gradcheck import rel_error

# (factory, input shape, loss): each registered model's gradcheck variant (the one
# `jaxnets gradcheck --model NAME` checks), plus variants a user would also build.
MODELS = {
    name.replace("-", "_"): (p.gradcheck.factory, p.gradcheck.input_shape, p.loss)
    for name, p in presets.REGISTRY.items()
    if p.gradcheck is not None
}
MODELS.update(
    fc_plain=(lambda ops: models.fc_net([6, 5], 4, ops=ops), (6,), "softmax"),
    fc_layernorm_dropout=(
        lambda ops: models.fc_net([6, 5], 4, normalization="layernorm", dropout=0.3, ops=ops),
        (6,),
        "softmax",
    ),
    convnet_avgpool=(
        lambda ops: models.convnet((3,), (), 4, normalization=None, pool="avg", ops=ops),
        (1, 4, 4),
        "softmax",
    ),
)


def assert_grads_agree(a, b, bar, zero_atol=1e-14):
    """``gradcheck.grad_error`` per parameter: relative, except exact zeros of the math (absolute)."""
    for k in a:
        assert gradcheck.grad_error(a[k], b[k], zero_atol) < bar, k


def _batch(rng, input_shape, loss, n=6):
    x = jnp.asarray(rng.standard_normal((n, *input_shape)))
    y = jnp.asarray(rng.integers(0, 2 if loss == "squared_error" else 4, n))
    return x, y


@pytest.mark.parametrize("name", list(MODELS))
def test_whole_model_manual_matches_autodiff(name, x64, rng):
    factory, input_shape, loss = MODELS[name]
    auto_model, manual_model = factory(layers), factory(manual_grads)
    params, state = auto_model.init(jax.random.key(1), input_shape)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64) + 0.1 * rng.standard_normal(a.shape), params)
    x, y = _batch(rng, input_shape, loss)
    key = jax.random.key(3)  # the same dropout masks on both sides

    def grads(model, loss_ops):
        f = lambda p: train.loss_fn(model, p, state, x, y, reg=0.1, key=key, loss=loss, loss_ops=loss_ops)[0]
        return jax.jit(jax.value_and_grad(f))(params)

    (auto_loss, auto_grads), (manual_loss, manual_grads_) = grads(auto_model, losses), grads(manual_model, manual_grads)
    assert abs(auto_loss - manual_loss) < 1e-12
    assert set(auto_grads) == set(params)
    assert_grads_agree(auto_grads, manual_grads_, 1e-10)


@pytest.mark.parametrize("name", ["two-layer", "fc", "three-layer-convnet"])
def test_whole_model_manual_matches_numeric(name):
    """The check `jaxnets gradcheck --model NAME` prints: every parameter within both bars."""
    report = presets.model_gradcheck(name, seed=0)
    assert report["errors"] and set(report["errors"]) >= {"W1", "b1"}
    for param, errors in report["errors"].items():
        assert errors["autodiff"] < gradcheck.AUTODIFF_BAR, (param, errors)
        assert errors["numeric"] < gradcheck.NUMERIC_BAR, (param, errors)


def test_batchnorm_running_stats_move_in_training_and_are_used_at_inference(rng):
    model = models.fc_net([5], 3, normalization="batchnorm")
    params, state = model.init(jax.random.key(0), (4,))
    x = jnp.asarray(rng.standard_normal((32, 4)) * 3 + 2, jnp.float32)
    _, new_state = model.apply(params, state, x, train=True)
    assert all(not jnp.allclose(new_state[k], state[k]) for k in state)
    _, same_state = model.apply(params, new_state, x, train=False)
    assert all(jnp.array_equal(same_state[k], new_state[k]) for k in state)
    scores_a = model.apply(params, new_state, x[:1], train=False)[0]
    scores_b = model.apply(params, state, x[:1], train=False)[0]
    assert not jnp.allclose(scores_a, scores_b)  # inference reads the running statistics
    # and, unlike training, depends on each example alone
    assert jnp.allclose(model.apply(params, new_state, x, train=False)[0][:1], scores_a, atol=1e-6)


def test_dropout_in_training_needs_a_key():
    model = models.fc_net([5], 3, dropout=0.5)
    params, state = model.init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match="needs key"):
        model.apply(params, state, jnp.ones((2, 4)), train=True)
    model.apply(params, state, jnp.ones((2, 4)), train=False)  # inference needs none


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.9])
def test_dropout_keeps_units_with_probability_one_minus_rate(rate, key):
    x = jnp.ones((1000, 1000))
    out, mask = layers.dropout_forward(x, key, rate)
    kept = float(jnp.mean(mask > 0))
    assert abs(kept - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / x.size)  # 5 sigma
    np.testing.assert_allclose(out[mask > 0], 1 / (1 - rate), rtol=1e-6)
    other = layers.dropout_forward(x, jax.random.fold_in(key, 1), rate)[1]
    assert float(jnp.mean((mask > 0) == (other > 0))) < 0.99  # another key, another mask


def test_dropout_under_vmap_over_keys_matches_one_key_at_a_time(key):
    keys = jax.random.split(key, 3)
    x = jnp.ones((4, 50))
    batched = jax.jit(jax.vmap(lambda k: layers.dropout_forward(x, k, 0.5)[1]))(keys)
    for k, mask in zip(keys, batched, strict=False):
        np.testing.assert_array_equal(mask, layers.dropout_forward(x, k, 0.5)[1])
    assert not np.array_equal(batched[0], batched[1])


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_compiled_epoch_matches_a_step_by_step_loop(x64, key):
    """make_epoch_fn carries tall weight matrices transposed through its scan; the result must
    be exactly the plain loop's (wide, tall and square weights, Adam's moments, lr decay)."""
    model = models.fc_net([12, 3, 3], 4)  # W1 6x12 wide, W2 12x3 tall, W3 3x3 square, W4 3x4 wide
    config = train.TrainConfig(optimizer="adam", learning_rate=1e-2, lr_decay=0.5, reg=1e-2, batch_size=8)
    X = jax.random.normal(jax.random.key(1), (40, 6))
    y = jax.random.randint(jax.random.key(2), (40,), 0, 4)
    steps = 40 // 8
    optimizer = train.make_optimizer("adam", config.learning_rate, config.lr_decay, steps)
    params, state = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), model.init(key, (6,)))
    opt_state = optimizer.init(params)
    hyper = {"learning_rate": jnp.asarray(config.learning_rate), "reg": jnp.asarray(config.reg)}
    epoch = jax.jit(train.make_epoch_fn(model, config, 40))
    carry = (params, state, opt_state)
    for e in range(2):
        *carry, epoch_losses = epoch(*carry, hyper, X, y, jax.random.key(10 + e))

    for e in range(2):
        order_key, dropout_key = jax.random.split(jax.random.key(10 + e))
        batches = jax.random.permutation(order_key, 40).reshape(steps, 8)
        losses_ = []
        for idx, step_key in zip(batches, jax.random.split(dropout_key, steps), strict=False):
            (loss, (state, _)), grads = jax.value_and_grad(train.loss_fn, argnums=1, has_aux=True)(
                model, params, state, X[idx], y[idx], reg=config.reg, key=step_key
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            losses_.append(loss)
    assert rel_error(carry[0], params) < 1e-12
    assert rel_error(carry[2], opt_state) < 1e-12
    np.testing.assert_allclose(epoch_losses, losses_, rtol=1e-12)
    assert jax.tree_util.tree_map(jnp.shape, carry[0]) == jax.tree_util.tree_map(jnp.shape, params)


def _tiny_split(n=50, shape=(1, 8, 8), seed=0):
    d = data.load_digits(seed=seed)
    return {
        "X_train": d["X_train"][:n],
        "y_train": d["y_train"][:n],
        "X_val": d["X_val"][:20],
        "y_val": d["y_val"][:20],
    }


@pytest.mark.parametrize(
    "name, model, config",
    [
        (
            "fc_net",
            models.fc_net([100, 100], 10),
            train.TrainConfig(optimizer="adam", learning_rate=1e-2, epochs=20, batch_size=25),
        ),
        (
            "three_layer_convnet",
            models.three_layer_convnet(16, 3, 50, 10),
            train.TrainConfig(optimizer="adam", learning_rate=1e-2, epochs=20, batch_size=25),
        ),
    ],
)
def test_overfits_50_samples(name, model, config):
    """The course's sanity check: a net that can't reach 100% on 50 samples has a bug."""
    split = _tiny_split()
    ts = train.fit(model, split, config, key=jax.random.key(0))
    assert train.accuracy(model, ts.params, ts.state, split["X_train"], split["y_train"]) == 1.0


@pytest.mark.parametrize(
    "factory",
    [
        lambda ops: models.fc_net([20, 20], 10, normalization="batchnorm", dropout=0.2, ops=ops),
        lambda ops: models.convnet((4,), (16,), 10, dropout=0.2, ops=ops),
    ],
    ids=["fc_bn_dropout", "convnet"],
)
def test_manual_and_autodiff_training_give_the_same_params(factory):
    split = _tiny_split(100)
    config = train.TrainConfig(optimizer="momentum", learning_rate=1e-2, epochs=3, batch_size=20)
    runs = [
        train.fit(factory(ops), split, config, key=jax.random.key(0), loss_ops=loss_ops)
        for ops, loss_ops in (train.grad_namespaces("auto"), train.grad_namespaces("manual"))
    ]
    for k in runs[0].params:  # float32 training: equal up to rounding that compounds over steps
        np.testing.assert_allclose(runs[0].params[k], runs[1].params[k], rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(runs[0].history["loss"], runs[1].history["loss"], rtol=1e-5)


def test_fit_keeps_best_params_and_stops_early():
    split = _tiny_split(100)
    model = models.fc_net([20], 10)
    ts = train.fit(
        model,
        split,
        train.TrainConfig(optimizer="adam", learning_rate=3e-2, epochs=40, batch_size=20, patience=2),
        key=jax.random.key(0),
    )
    assert "early stopping" in ts.history["stopped"]
    assert len(ts.history["val_acc"]) < 40
    assert ts.best_val_acc == max(ts.history["val_acc"])
    assert train.accuracy(model, ts.best_params, ts.best_state, split["X_val"], split["y_val"]) == pytest.approx(
        ts.best_val_acc
    )


def test_with_replacement_sampling_and_lr_decay_run():
    split = _tiny_split(100)
    config = train.TrainConfig(learning_rate=0.5, lr_decay=0.5, epochs=3, batch_size=30, with_replacement=True)
    ts = train.fit(models.two_layer_net(10, 10), split, config, key=jax.random.key(0))
    assert len(ts.history["loss"]) == 3 * (100 // 30)
    assert ts.history["lr"] == [0.5, 0.25, 0.125]


def test_divergence_stops_with_a_clear_message():
    split = _tiny_split(100)
    ts = train.fit(
        models.fc_net([50, 50], 10, weight_scale=10.0),
        split,
        train.TrainConfig(learning_rate=1e6, epochs=5, batch_size=20),
        key=jax.random.key(0),
    )
    assert ts.history["stopped"].startswith("diverged")
    assert "epoch 1, step" in ts.history["stopped"] and "lower learning rate" in ts.history["stopped"]
    assert all(jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(ts.best_params))


def test_sweep_matches_sequential_runs():
    split = _tiny_split(100)
    model = models.two_layer_net(20, 10)
    config = train.TrainConfig(learning_rate=1e-1, epochs=2, batch_size=20)
    result = train.sweep(model, split, [1e-2, 1e-1], [0.0, 1e-2], config, key=jax.random.key(0))
    assert len(result["val_acc"]) == 4
    for i, (lr, reg) in enumerate(zip(result["learning_rate"], result["reg"], strict=False)):
        ts = train.fit(model, split, config._replace(learning_rate=float(lr), reg=float(reg)), key=jax.random.key(0))
        one = jax.tree_util.tree_map(lambda a, i=i: a[i], result["params"])
        assert rel_error(one, ts.params) < 1e-4


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(epochs=0), "epochs must be a positive int, got 0"),
        (dict(batch_size=1000), "batch_size=1000 is larger than the training set"),
        (dict(learning_rate=-1.0), "learning_rate must be > 0"),
        (dict(optimizer="adagrad"), "optimizer must be one of"),
        (dict(loss="hinge"), "loss must be one of"),
    ],
)
def test_bad_config(bad, match):
    with pytest.raises(ValueError, match=match):
        train.fit(models.two_layer_net(5, 10), _tiny_split(), train.TrainConfig(**bad), key=jax.random.key(0))


def _convnet_nchw_reference(ops, params, state, x, *, train, key, dropout, pool):
    """``convnet((3, 5), (7,), 4)`` written with the public NCHW layers, layer by layer."""
    keys = list(jax.random.split(key, 4))
    new_state = dict(state)
    for i in range(1, 4):
        if i <= 2:
            x = ops.conv2d(x, params[f"W{i}"], params[f"b{i}"], 1, 1)
        else:
            x = ops.affine(x, params[f"W{i}"], params[f"b{i}"])
        x, updates = models._norm(ops, "batchnorm", x, params, state, i, train)
        new_state.update(updates)
        x = ops.relu(x)
        if i <= 2:
            x = getattr(ops, f"{pool}_pool2d")(x, 2, 2)
        elif train and dropout:
            x = ops.dropout(x, keys[i], dropout)
    return ops.affine(x, params["W4"], params["b4"]), new_state


@pytest.mark.parametrize("grads", ["auto", "manual"])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_convnet_channels_last_internals_compute_the_nchw_net(x64, pool, grads):
    """convnet runs its conv blocks channels last: same scores, state and gradients as the NCHW layers."""
    ops, loss_ops = (layers, losses) if grads == "auto" else (manual_grads, manual_grads)
    x = jax.random.normal(jax.random.key(1), (6, 2, 8, 8), jnp.float64)
    y = jnp.arange(6) % 4
    key = jax.random.key(2)
    model = models.convnet((3, 5), (7,), 4, pool=pool, dropout=0.3, ops=ops)
    params, state = model.init(jax.random.key(0), (2, 8, 8))
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)

    def new(p, training):
        return model.apply(p, state, x, train=training, key=key)

    def reference(p, training):
        return _convnet_nchw_reference(ops, p, state, x, train=training, key=key, dropout=0.3, pool=pool)

    for training in (True, False):
        got, want = new(params, training), reference(params, training)
        for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    g_new = jax.grad(lambda p: loss_ops.softmax_loss(new(p, True)[0], y))(params)
    g_ref = jax.grad(lambda p: loss_ops.softmax_loss(reference(p, True)[0], y))(params)
    for k in params:
        np.testing.assert_allclose(g_new[k], g_ref[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_relu_autodiff_derivative_is_the_hand_derived_one_at_zero():
    x = jnp.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(layers.relu(v)))(x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(manual_grads.relu(v)))(x), [0.0, 0.0, 1.0])
    assert jnp.isnan(layers.relu(jnp.array([jnp.nan]))[0])
