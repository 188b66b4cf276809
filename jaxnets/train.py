"""Training: the loss wiring, compiled epochs, the fit loop, evaluation and sweeps.

A whole epoch is one compiled program: ``lax.scan`` over the minibatches of a shuffled (or,
as in the documents, with-replacement) index array, the data resident on the device, the
optimizer an optax transformation whose learning rate decays per epoch through an optax
schedule. Gradients come from autodiff or from the hand-derived twins, chosen by the ``ops``
namespace the model was built with and the ``loss_ops`` namespace passed here
(``grad_namespaces("manual")`` gives both).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import augment, layers, losses, manual_grads
from jaxnets.data import validate_images_labels
from jaxnets.errors import InputError
from jaxnets.models import Model
from jaxnets.typing import Array

__all__ = [
    "OPTIMIZERS",
    "LOSSES",
    "GRADS",
    "grad_namespaces",
    "make_optimizer",
    "loss_fn",
    "TrainConfig",
    "TrainState",
    "init_train_state",
    "make_epoch_fn",
    "fit",
    "predict",
    "accuracy",
    "sweep",
]

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
LOSSES = {"softmax": "softmax_loss", "svm": "svm_loss", "squared_error": "squared_error"}
GRADS = {"auto": (layers, losses), "manual": (manual_grads, manual_grads)}


def grad_namespaces(grads: str) -> tuple[ModuleType, ModuleType]:
    """``(ops, loss_ops)`` for ``"auto"`` (autodiff) or ``"manual"`` (hand-derived) gradients."""
    if grads not in GRADS:
        raise InputError(f"grads must be one of {tuple(GRADS)}, got {grads!r}")
    return GRADS[grads]


class TrainConfig(NamedTuple):
    """Hyperparameters of ``fit``. ``lr_decay`` multiplies the learning rate once per epoch;
    ``patience`` is the number of epochs without a better validation accuracy before stopping
    (None: never stop early); ``with_replacement`` samples each minibatch with replacement as
    the documents do, instead of a shuffled pass over the data. ``eval_batch_size`` is the batch
    of the per-epoch accuracy passes, small so that a conv net's activations stay in cache
    (benchmarks/README.md measures batch sizes on the README convnet)."""

    loss: str = "softmax"
    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    lr_decay: float = 1.0
    reg: float = 0.0
    epochs: int = 10
    batch_size: int = 200
    patience: int | None = None
    with_replacement: bool = False
    eval_batch_size: int = 100
    crop_pad: int = 0  # augmentation (jaxnets.augment): random crops of images zero-padded by this
    flip_prob: float = 0.0  # augmentation: mirror each training image left-right with this probability


def _check_config(config: TrainConfig, num_train: int):
    if config.loss not in LOSSES:
        raise InputError(f"loss must be one of {tuple(LOSSES)}, got {config.loss!r}")
    if config.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")
    for name in ("epochs", "batch_size", "eval_batch_size"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{name} must be a positive int, got {value!r}")
    if not config.learning_rate > 0:
        raise InputError(f"learning_rate must be > 0, got {config.learning_rate!r}")
    if not 0 < config.lr_decay <= 1:
        raise InputError(f"lr_decay must be in (0, 1], got {config.lr_decay!r}")
    if not config.reg >= 0:
        raise InputError(f"reg must be >= 0, got {config.reg!r}")
    if config.patience is not None and config.patience < 1:
        raise InputError(f"patience must be a positive int or None, got {config.patience!r}")
    if isinstance(config.crop_pad, bool) or not isinstance(config.crop_pad, int) or config.crop_pad < 0:
        raise InputError(f"crop_pad must be a non-negative int, got {config.crop_pad!r}")
    if not 0 <= config.flip_prob <= 1:
        raise InputError(f"flip_prob must be in [0, 1], got {config.flip_prob!r}")
    if config.batch_size > num_train:
        raise InputError(
            f"batch_size={config.batch_size} is larger than the training set ({num_train} examples); "
            f"use batch_size <= {num_train}"
        )


def _num_classes(model: Model, example_shape, dtype) -> int:
    """Classes the model's scores cover: its output width (2 for a single sigmoid output)."""
    try:
        scores = jax.eval_shape(
            lambda key: model.apply(*model.init(key, example_shape), jnp.zeros((1, *example_shape), dtype))[0],
            jax.random.key(0),
        )
    except (ValueError, TypeError) as e:
        raise type(e)(
            f"the model does not accept examples of shape {tuple(example_shape)} and dtype {dtype}: {e}"
        ) from None
    return max(scores.shape[-1], 2)


def _check_data(model: Model, data: dict) -> None:
    """Train/val splits present, finite, non-empty, labelled in range of the model's classes."""
    missing = [k for k in ("X_train", "y_train", "X_val", "y_val") if k not in data]
    if missing:
        raise InputError(f"data must be a split dict with X_train, y_train, X_val, y_val; missing {missing}")
    X_train = _host_rows(data["X_train"])
    if X_train.ndim < 2 or X_train.shape[0] == 0:
        raise InputError(f"X_train must be a non-empty batch of shape (N, ...), got shape {X_train.shape}")
    num_classes = _num_classes(model, X_train.shape[1:], X_train.dtype)
    for part in ("train", "val"):
        X, y = (_host_rows(data[f"{a}_{part}"]) for a in "Xy")
        if part == "val" and np.size(y) == 0:
            continue  # no validation split: model selection falls back to train accuracy
        if part == "val" and np.shape(X)[1:] != X_train.shape[1:]:
            raise InputError(
                f"X_val examples must have the shape of X_train's {X_train.shape[1:]}, got {np.shape(X)[1:]}"
            )
        try:
            validate_images_labels(X, y, num_classes=num_classes)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{part} split: {e} (the model has {num_classes} classes)") from None


def _host_rows(a):
    """The rows of ``a`` this process holds: all of them, except for a global array spread over
    several processes (``distributed.shard_training_set``)."""
    if not isinstance(a, jax.Array) or a.is_fully_addressable:
        return np.asarray(a)
    shards = {s.index[0].start or 0: s.data for s in a.addressable_shards}
    return np.concatenate([np.asarray(shards[start]) for start in sorted(shards)])


def _describe_mismatch(name: str, got, expected) -> str | None:
    """Why pytree ``got`` does not match the shapes/dtypes of ``expected`` (None if it does)."""
    if isinstance(expected, dict) and isinstance(got, dict) and set(got) != set(expected):
        return (
            f"{name} keys {sorted(got)} do not match the model's {sorted(expected)} "
            f"(missing {sorted(set(expected) - set(got))}, unexpected {sorted(set(got) - set(expected))})"
        )
    if jax.tree_util.tree_structure(got) != jax.tree_util.tree_structure(expected):
        got_structure, expected_structure = jax.tree_util.tree_structure(got), jax.tree_util.tree_structure(expected)
        return f"{name} has structure {got_structure}, expected {expected_structure}"
    got_leaves = jax.tree_util.tree_leaves_with_path(got)
    for (path, g), e in zip(got_leaves, jax.tree_util.tree_leaves(expected), strict=True):
        if np.shape(g) != e.shape:
            return f"{name}{jax.tree_util.keystr(path)} has shape {np.shape(g)}, expected {e.shape}"
    return None


def _check_resume(resume: TrainState, fresh: TrainState) -> None:
    """A resumed state must have the pytree structure and shapes this model and config produce."""
    for name in ("params", "state", "opt_state", "best_params", "best_state"):
        problem = _describe_mismatch(name, getattr(resume, name), getattr(fresh, name))
        if problem:
            raise InputError(f"resume: {problem}; it comes from a different model or optimizer")


def make_optimizer(name: str, learning_rate, lr_decay=1.0, steps_per_epoch=1) -> optax.GradientTransformation:
    """An optax optimizer whose learning rate is multiplied by ``lr_decay`` after every epoch.

    ``learning_rate`` may be a traced value (a vmapped sweep over learning rates).
    """
    schedule = optax.exponential_decay(learning_rate, steps_per_epoch, lr_decay, staircase=True)
    return {
        "sgd": lambda: optax.sgd(schedule),
        "momentum": lambda: optax.sgd(schedule, momentum=0.9),
        "rmsprop": lambda: optax.rmsprop(schedule, decay=0.99, eps=1e-8),
        "adam": lambda: optax.adam(schedule),
    }[name]()


def loss_fn(
    model: Model,
    params,
    state,
    x,
    y,
    *,
    reg,
    key=None,
    loss: str = "softmax",
    loss_ops: ModuleType = losses,
    train: bool = True,
) -> tuple[Array, tuple]:
    """``data_loss(model(x), y) + 0.5 reg sum W^2``.

    Returns:
      ``(loss, (new_state, scores))``, the form ``jax.value_and_grad(..., has_aux=True)`` wants.
    """
    data_loss, aux = _data_loss(model, params, state, x, y, key, loss, loss_ops, train)
    return data_loss + loss_ops.l2_penalty(params, reg), aux


def _data_loss(model, params, state, x, y, key, loss, loss_ops, train=True):
    """``(data_loss(model(x), y), (new_state, scores))``: ``loss_fn`` without the penalty."""
    scores, new_state = model.apply(params, state, x, train=train, key=key)
    target = y.astype(scores.dtype)[:, None] if loss == "squared_error" else y
    return getattr(loss_ops, LOSSES[loss])(scores, target), (new_state, scores)


class TrainState(NamedTuple):
    """Everything a run needs to continue: current and best weights, optimizer state, history."""

    params: Any
    state: Any
    opt_state: Any
    epoch: int
    best_params: Any
    best_state: Any
    best_val_acc: float
    history: dict


def init_train_state(model: Model, key, input_shape, config: TrainConfig, steps_per_epoch: int) -> TrainState:
    """Fresh parameters (from ``key``) and optimizer state."""
    params, state = model.init(key, input_shape)
    opt_state = make_optimizer(config.optimizer, config.learning_rate, config.lr_decay, steps_per_epoch).init(params)
    history = {"loss": [], "train_acc": [], "val_acc": [], "epoch_time": [], "lr": []}
    return TrainState(params, state, opt_state, 0, params, state, -1.0, history)


def _batch_indices(key, num_train, batch_size, with_replacement):
    """(steps, batch_size) example indices for one epoch."""
    steps = max(num_train // batch_size, 1)
    if with_replacement:
        return jax.random.randint(key, (steps, batch_size), 0, num_train)
    return jax.random.permutation(key, num_train)[: steps * batch_size].reshape(steps, batch_size)


def _carried_transposed(params):
    """Which weights a compiled epoch carries transposed: the 2-D leaves taller than wide.

    ``affine``'s weight gradient ``dw = x^T dout`` is a (D, M) product with a short contraction
    (the batch); carried as ``w^T`` its gradient is ``dout^T x``, which writes the long side D
    contiguously. XLA:CPU runs that 1.1-2.3x faster (2.3x at D = 1024, 3072, 8192;
    ``benchmarks/README.md``), and the update needs no transpose.
    """
    return jax.tree_util.tree_map(lambda a: jnp.ndim(a) == 2 and a.shape[0] > a.shape[1], params)


def _transpose_where(tree, flags):
    """``tree`` with the leaves whose flag is True transposed (its own inverse)."""
    return jax.tree_util.tree_map(lambda a, flag: a.T if flag else a, tree, flags)


def make_epoch_fn(
    model: Model, config: TrainConfig, num_train: int, loss_ops: ModuleType = losses, batch_sharding=None
) -> Callable:
    """``epoch(params, state, opt_state, hyper, X, y, key) -> (params, state, opt_state, losses)``.

    One call runs a whole epoch (``lax.scan`` over its minibatches); ``hyper`` is
    ``{"learning_rate": ..., "reg": ...}`` as arrays, so a sweep can ``vmap`` over it.
    ``batch_sharding``, if given, lays each minibatch across devices (data parallelism).
    Inside the scan, tall weight matrices and their optimizer state are carried transposed
    (``_carried_transposed``); what goes in and comes out is in the model's layout.
    """
    steps = max(num_train // config.batch_size, 1)

    def epoch(params, state, opt_state, hyper, X, y, key):
        optimizer = make_optimizer(config.optimizer, hyper["learning_rate"], config.lr_decay, steps)
        order_key, dropout_key = jax.random.split(key)
        batches = _batch_indices(order_key, num_train, config.batch_size, config.with_replacement)

        flags = _carried_transposed(params)
        carried = lambda tree: _transpose_where(tree, flags)
        carried_opt = lambda opt: optax.tree_utils.tree_map_params(optimizer, _transpose_where, opt, flags)

        def loss_of_carried(params_t, state, xb, yb, step_key):
            # loss_fn with the penalty taken on the carried layout (sum W^2 is the same either way)
            data_loss, aux = _data_loss(model, carried(params_t), state, xb, yb, step_key, config.loss, loss_ops)
            return data_loss + loss_ops.l2_penalty(params_t, hyper["reg"]), aux

        def step(carry, inputs):
            params_t, state, opt_state_t = carry
            idx, step_key = inputs
            xb, yb = X[idx], y[idx]
            if config.crop_pad or config.flip_prob:
                step_key, aug_key = jax.random.split(step_key)
                xb = augment.augment_batch(aug_key, xb, crop_pad=config.crop_pad, flip_prob=config.flip_prob)
            if batch_sharding is not None:
                xb = jax.lax.with_sharding_constraint(xb, batch_sharding)
                yb = jax.lax.with_sharding_constraint(yb, batch_sharding)
            (loss, (state, _)), grads_t = jax.value_and_grad(loss_of_carried, has_aux=True)(
                params_t, state, xb, yb, step_key
            )
            updates, opt_state_t = optimizer.update(grads_t, opt_state_t, params_t)
            return (optax.apply_updates(params_t, updates), state, opt_state_t), loss

        step_keys = jax.random.split(dropout_key, steps)
        carry = (carried(params), state, carried_opt(opt_state))
        (params_t, state, opt_state_t), epoch_losses = jax.lax.scan(step, carry, (batches, step_keys))
        return carried(params_t), state, carried_opt(opt_state_t), epoch_losses

    return epoch


def predict(model: Model, params, state, X, *, batch_size: int = 1000) -> Array:
    """Scores of ``X`` (N, ...) in jitted batches of ``batch_size``: (N, C)."""
    return _predict(model, batch_size, params, state, jnp.asarray(X))


@partial(jax.jit, static_argnums=(0, 1))
def _predict(model, batch_size, params, state, X):
    N = X.shape[0]
    n_batches = -(-N // batch_size)
    padded = jnp.pad(X, [(0, n_batches * batch_size - N)] + [(0, 0)] * (X.ndim - 1))
    batches = padded.reshape(n_batches, batch_size, *X.shape[1:])
    scores = jax.lax.map(lambda xb: model.apply(params, state, xb, train=False)[0], batches)
    return scores.reshape(n_batches * batch_size, -1)[:N]


def labels_from_scores(scores) -> Array:
    """Class predictions: argmax of (N, C) scores; ``score > 0.5`` for a single sigmoid output."""
    return (scores[:, 0] > 0.5).astype(jnp.int32) if scores.shape[1] == 1 else jnp.argmax(scores, axis=1)


def accuracy(model: Model, params, state, X, y, *, batch_size: int = 1000) -> float:
    """Fraction of ``X`` classified as ``y`` (evaluated in jitted batches)."""
    if len(y) == 0:
        return float("nan")
    preds = labels_from_scores(predict(model, params, state, X, batch_size=min(batch_size, len(y))))
    return float(jnp.mean(preds == jnp.asarray(y)))


def _subsample(X, y, n, seed=0, num_train=None):
    """A fixed subset of ``n`` of the first ``num_train`` training examples for the per-epoch train accuracy
    (the same on every process when ``X``, ``y`` are global arrays spread over processes)."""
    num_train = len(y) if num_train is None else num_train
    if num_train <= n and num_train == len(y):
        return X, y
    idx = np.random.default_rng(seed).choice(num_train, min(n, num_train), replace=False)
    if isinstance(X, jax.Array) and not X.is_fully_addressable:
        everywhere = jax.sharding.NamedSharding(X.sharding.mesh, jax.sharding.PartitionSpec())
        gather = jax.jit(lambda a: a[idx], out_shardings=everywhere)
        return np.asarray(gather(X)), np.asarray(gather(y))
    return X[idx], y[idx]


def fit(
    model: Model,
    data: dict,
    config: TrainConfig = TrainConfig(),
    *,
    key,
    loss_ops: ModuleType = losses,
    resume: TrainState | None = None,
    on_epoch: Callable[[TrainState, dict], None] | None = None,
    devices: int | None = None,
) -> TrainState:
    """Train ``model`` on ``data`` (a split dict from ``jaxnets.data``) and keep the best-validation weights.

    Args:
      model: a ``Model`` (its ``ops`` decide how layer gradients are computed).
      data: ``{"X_train", "y_train", "X_val", "y_val", ...}``.
      config: a ``TrainConfig``.
      key: PRNG key; parameters come from ``fold_in(key, 0)`` and epoch ``e`` uses
        ``fold_in(key, e + 1)``, so a resumed run replays the same randomness.
      loss_ops: ``losses`` or ``manual_grads`` (the loss and L2 gradients).
      resume: a ``TrainState`` to continue from (``epoch`` epochs already done).
      on_epoch: called after every epoch with the new ``TrainState`` and that epoch's record
        (``epoch``, ``loss``, ``train_acc``, ``val_acc``, ``time``, ``steps``).
      devices: number of devices to shard each minibatch over (data parallelism).

    Returns:
      The final ``TrainState``; ``best_params``/``best_state`` hold the weights with the best
      validation accuracy. ``history["stopped"]`` says why training stopped early, if it did.
    """
    _check_data(model, data)
    X_train, y_train = data["X_train"], data["y_train"]
    num_train = data.get("num_train", len(y_train))  # a global array spread over processes may be padded
    _check_config(config, num_train)
    steps = max(num_train // config.batch_size, 1)
    mesh_sharding = _data_parallel(devices, config.batch_size)
    fresh = partial(init_train_state, model, jax.random.fold_in(key, 0), X_train.shape[1:], config, steps)
    if resume is not None:
        _check_resume(resume, jax.eval_shape(fresh))
    ts = resume or fresh()

    epoch_fn = jax.jit(make_epoch_fn(model, config, num_train, loss_ops, mesh_sharding), donate_argnums=(0, 1, 2))
    # The training set lives on the device(s) for the whole run: replicated over the mesh when
    # data-parallel (each device gathers its share of a minibatch locally), else on the default device.
    replicated = (
        None if mesh_sharding is None else jax.sharding.NamedSharding(mesh_sharding.mesh, jax.sharding.PartitionSpec())
    )
    # Across processes, each holds only its rows of the training set (a global array already on the mesh).
    spread = isinstance(X_train, jax.Array) and not X_train.is_fully_addressable
    if spread:
        X_dev, y_dev = X_train, y_train
    else:
        X_dev, y_dev = jax.device_put(np.asarray(X_train), replicated), jax.device_put(np.asarray(y_train), replicated)
    hyper = {"learning_rate": jnp.float32(config.learning_rate), "reg": jnp.float32(config.reg)}
    X_sub, y_sub = _subsample(X_train, y_train, max(len(data["y_val"]), 1000), num_train=num_train)
    history = {k: list(v) for k, v in ts.history.items()}
    params, state, opt_state = jax.tree_util.tree_map(jnp.array, (ts.params, ts.state, ts.opt_state))  # donated below
    if spread:  # placed as the epoch returns them, so the second epoch does not compile again
        params, state, opt_state = jax.device_put((params, state, opt_state), replicated)
    best = (ts.best_params, ts.best_state, ts.best_val_acc)
    since_best = 0
    for epoch in range(ts.epoch, config.epochs):
        start = time.perf_counter()
        params, state, opt_state, epoch_losses = epoch_fn(
            params, state, opt_state, hyper, X_dev, y_dev, jax.random.fold_in(key, epoch + 1)
        )
        epoch_losses = np.asarray(epoch_losses)
        record = {"epoch": epoch + 1, "steps": steps, "loss": float(epoch_losses[-1])}
        bad = np.flatnonzero(~np.isfinite(epoch_losses))
        if bad.size:
            history["stopped"] = (
                f"diverged: loss became {epoch_losses[bad[0]]} at epoch {epoch + 1}, step {bad[0] + 1} of {steps}; "
                f"try a lower learning rate (was {config.learning_rate:g})"
            )
            break
        record["train_acc"] = accuracy(model, params, state, X_sub, y_sub, batch_size=config.eval_batch_size)
        record["val_acc"] = accuracy(
            model, params, state, data["X_val"], data["y_val"], batch_size=config.eval_batch_size
        )
        record["time"] = time.perf_counter() - start
        history["loss"].extend(epoch_losses.tolist())
        history["train_acc"].append(record["train_acc"])
        history["val_acc"].append(record["val_acc"])
        history["epoch_time"].append(record["time"])
        history["lr"].append(config.learning_rate * config.lr_decay**epoch)
        score = record["val_acc"] if not math.isnan(record["val_acc"]) else record["train_acc"]
        if score > best[2]:
            # Copies: the current buffers are donated to the next epoch.
            best, since_best = (*jax.tree_util.tree_map(jnp.copy, (params, state)), score), 0
        else:
            since_best += 1
        ts = TrainState(params, state, opt_state, epoch + 1, best[0], best[1], best[2], history)
        if on_epoch is not None:
            on_epoch(ts, record)
        if config.patience is not None and since_best >= config.patience:
            history["stopped"] = f"early stopping: no better validation accuracy for {config.patience} epochs"
            break
    return TrainState(ts.params, ts.state, ts.opt_state, ts.epoch, best[0], best[1], best[2], history)


def _data_parallel(devices, batch_size):
    """The sharding of a minibatch over ``devices`` devices (None for one device)."""
    if devices is None or devices == 1:
        return None
    available = jax.devices()
    if not isinstance(devices, int) or devices < 1 or devices > len(available):
        raise InputError(f"devices must be between 1 and the {len(available)} available device(s), got {devices!r}")
    if batch_size % devices:
        raise InputError(
            f"batch_size={batch_size} must be divisible by devices={devices} to split each minibatch evenly"
        )
    if jax.process_count() > 1:
        # An equal share of devices from every process, in process order (each holds its rows of the data).
        if devices % jax.process_count():
            raise InputError(
                f"devices={devices} must be a multiple of the {jax.process_count()} processes (each gives as many)"
            )
        per_process = devices // jax.process_count()
        by_process = [[d for d in available if d.process_index == p] for p in range(jax.process_count())]
        available = [d for own in by_process for d in own[:per_process]]
    mesh = jax.sharding.Mesh(np.array(available[:devices]), ("batch",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))


def sweep(
    model: Model,
    data: dict,
    learning_rates,
    regs,
    config: TrainConfig = TrainConfig(),
    *,
    key,
    loss_ops: ModuleType = losses,
) -> dict:
    """Train every (learning rate, reg) pair at once: one compiled program, ``vmap`` over the pairs.

    All configurations share the initial weights and the minibatch order (one key), as a
    sequential grid search with one seed would.

    Returns:
      ``{"learning_rate", "reg", "train_acc", "val_acc"}`` arrays, one entry per pair (the
      grid in row-major order: learning rates outer), plus ``"params"`` and ``"state"``
      stacked along a leading axis, and ``"time"``.
    """
    _check_data(model, data)
    X_train, y_train = data["X_train"], data["y_train"]
    num_train = len(y_train)
    _check_config(config, num_train)
    if np.size(learning_rates) == 0 or np.size(regs) == 0:
        raise InputError(f"sweep needs at least one learning rate and one reg, got {learning_rates!r} and {regs!r}")
    lr_grid, reg_grid = (
        a.reshape(-1)
        for a in np.meshgrid(np.asarray(learning_rates, np.float32), np.asarray(regs, np.float32), indexing="ij")
    )
    for lr in lr_grid:
        _check_config(config._replace(learning_rate=float(lr)), num_train)
    steps = max(num_train // config.batch_size, 1)
    params, state = model.init(jax.random.fold_in(key, 0), X_train.shape[1:])
    opt_state = make_optimizer(config.optimizer, config.learning_rate, config.lr_decay, steps).init(params)
    n = len(lr_grid)
    stack = lambda tree: jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n, *jnp.shape(a))), tree)
    params, state, opt_state = stack(params), stack(state), stack(opt_state)
    hyper = {"learning_rate": jnp.asarray(lr_grid), "reg": jnp.asarray(reg_grid)}

    epoch_fn = make_epoch_fn(model, config, num_train, loss_ops)
    vmapped = jax.jit(jax.vmap(epoch_fn, in_axes=(0, 0, 0, 0, None, None, None)), donate_argnums=(0, 1, 2))

    def evaluate(params, state, X, y):
        scores = jax.vmap(lambda p, s: model.apply(p, s, X, train=False)[0])(params, state)
        return jnp.mean(jax.vmap(labels_from_scores)(scores) == y, axis=1)

    evaluate = jax.jit(evaluate)
    X_dev, y_dev = jnp.asarray(X_train), jnp.asarray(y_train)
    X_sub, y_sub = _subsample(X_train, y_train, max(len(data["y_val"]), 1000))
    start = time.perf_counter()
    for epoch in range(config.epochs):
        params, state, opt_state, _ = vmapped(
            params, state, opt_state, hyper, X_dev, y_dev, jax.random.fold_in(key, epoch + 1)
        )
    train_acc = np.asarray(evaluate(params, state, jnp.asarray(X_sub), jnp.asarray(y_sub)))
    val_acc = np.asarray(evaluate(params, state, jnp.asarray(data["X_val"]), jnp.asarray(data["y_val"])))
    return {
        "learning_rate": lr_grid,
        "reg": reg_grid,
        "train_acc": train_acc,
        "val_acc": val_acc,
        "params": params,
        "state": state,
        "time": time.perf_counter() - start,
    }
