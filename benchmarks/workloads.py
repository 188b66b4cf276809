"""The benchmark workloads W1-W7, each as a list of implementations to time side by side.

A workload builds its synthetic data once (fixed seeds) and returns ``Impl`` objects; the
harness in ``run.py`` calls ``setup`` (untimed), ``compile`` (timed on its own: jax's
``lower().compile()``, nothing for numpy / torch), one warm-up ``run``, then the timed ``run``
repetitions, interleaved with the other implementations.

What one timed ``run`` does:

* **W1** one epoch of SGD on the two-layer net (CIFAR-10 shapes, 3072-100-10, batch 200).
* **W2** one epoch of Adam on ``fc_net`` 5 x 100 with batch norm and dropout (Fashion-MNIST
  shapes, 784 inputs, batch 200).
* **W3** ``steps`` SGD steps of ``three_layer_convnet`` (batch 50, 3x32x32, 32 filters 7x7).
  jaxnets: one call of the compiled epoch function (``lax.scan`` over the steps, so Python
  dispatch is paid once); numpy and torch: ``steps`` calls of their one-step function.
* **W4** the 15-configuration sweep (5 learning rates x 3 regs) of ``jaxnets sweep --lr
  log:1e-2:1:5`` (its default model: the two-layer net 64-100-10, momentum, batch 100) on
  sklearn-digits shapes (1258 x 64): ``epochs`` epochs of all 15 configurations, either vmapped
  (one compiled call per epoch, as ``train.sweep`` does) or one after another (the same compiled
  epoch function as ``train.fit``, called 15 times per epoch); plus ``train.sweep`` against
  ``train.fit`` per configuration, end to end. **W4b** the same sweep of ``--model fc``
  (``fc_net`` [256, 256], batch norm, dropout 0.2, Adam, batch 50).
* **W6** one epoch of the README's Fashion-MNIST convnet row (``convnet((32, 64), (256,))``,
  batch norm, dropout 0.4, Adam, batch 100, 55,000 synthetic 1x28x28 images), no evaluation.
* **W7** the same row end to end as a user runs it: ``train.fit`` for 2 epochs (compile, the
  per-epoch accuracy on a training subsample and the 5,000-image validation set, best weights
  kept) against a torch loop that evaluates the same way.

jaxnets implementations go through the library's own training path: ``models`` factories,
``train.make_epoch_fn`` (optax optimizer, per-epoch shuffle and minibatch gather inside the
compiled ``lax.scan``), jitted with buffer donation exactly as ``train.fit`` / ``train.sweep``
do. ``-auto`` builds the model with ``ops=layers`` (gradients by autodiff), ``-manual`` with
``ops=manual_grads`` (the hand-derived backward passes); the comparison of the two is W5.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Impl", "Workload", "WORKLOADS", "build", "sizes"]


@dataclasses.dataclass
class Impl:
    """One implementation of a workload.

    ``setup() -> state`` is untimed; ``compile(state)`` is timed separately (None: nothing to
    compile); ``run(state) -> state`` is the timed unit and must return only when the work is
    done (jax results are blocked on).
    """

    name: str
    setup: Callable[[], Any]
    run: Callable[[Any], Any]
    compile: Callable[[Any], Any] | None = None
    note: str = ""
    units_per_run: int | None = None  # None: the workload's; else this implementation's own run length


@dataclasses.dataclass
class Workload:
    """A workload: its implementations and what one ``run`` amounts to."""

    key: str
    title: str
    impls: list[Impl]
    unit: str  # what the reported time is per: "epoch", "step", "epoch of 15 configs"
    units_per_run: int  # how many units one run does (W3: steps; W4: epochs)
    examples_per_run: int  # training examples processed per run (for examples/s)
    flops_per_run: float  # matmul / conv FLOPs of one run (forward and the needed backward)
    notes: list[str] = dataclasses.field(default_factory=list)
    baselines: tuple[str, ...] = ("numpy", "torch")


# ------------------------------------------------------------------------------------------
# Sizes


def sizes(quick: bool) -> dict:
    """Problem sizes: the full benchmark, or the seconds-long smoke run (``--quick``)."""
    if quick:
        return dict(
            w1_n=1_000,
            w2_n=1_000,
            w2_hidden=(32,) * 2,
            w3_steps=2,
            w3_filters=8,
            w3_filter_size=3,
            w4_epochs=1,
            w4_e2e_epochs=1,
            w4b_epochs=1,
            w4_n=300,
            w4_hidden=32,
            w4b_hidden=(32,),
            w6_n=300,
            w6_val=100,
            w6_channels=(4, 8),
            w6_hidden=(16,),
        )
    return dict(
        w1_n=49_000,
        w2_n=55_000,
        w2_hidden=(100,) * 5,
        w3_steps=20,
        w3_filters=32,
        w3_filter_size=7,
        w4_epochs=30,
        w4_e2e_epochs=3,
        w4b_epochs=6,
        w4_n=1_258,
        w4_hidden=100,
        w4b_hidden=(256, 256),
        w6_n=55_000,
        w6_val=5_000,
        w6_channels=(32, 64),
        w6_hidden=(256,),
    )


def _affine_flops(batch, dims, input_grad_first=False):
    """Forward + weight-gradient (+ input-gradient of all but the first layer) FLOPs of an MLP."""
    pairs = list(zip(dims[:-1], dims[1:], strict=False))
    fwd = sum(2 * batch * a * b for a, b in pairs)
    dw = fwd
    dx = sum(2 * batch * a * b for a, b in pairs[(0 if input_grad_first else 1) :])
    return fwd + dw + dx


# ------------------------------------------------------------------------------------------
# jaxnets helpers


def _jax():
    import jax
    import jax.numpy as jnp

    from jaxnets import layers, losses, manual_grads, models, train

    return jax, jnp, layers, losses, manual_grads, models, train


def _ops(grads):
    _, _, layers, losses, manual_grads, _, _ = _jax()
    return {"auto": (layers, losses), "manual": (manual_grads, manual_grads)}[grads]


def _jaxnets_epoch_impl(name, make_model, config, X, y, input_shape, epochs_per_run=1, note=""):
    """The library's compiled epoch (``train.make_epoch_fn``, jitted with donation as in ``fit``)."""
    jax, jnp, _, _, _, _, train = _jax()
    grads = name.rsplit("-", 1)[1]

    def setup():
        ops, loss_ops = _ops(grads)
        model = make_model(ops)
        num_train = len(y)
        steps = max(num_train // config.batch_size, 1)
        epoch_fn = jax.jit(train.make_epoch_fn(model, config, num_train, loss_ops), donate_argnums=(0, 1, 2))
        ts = train.init_train_state(model, jax.random.key(0), input_shape, config, steps)
        hyper = {"learning_rate": jnp.float32(config.learning_rate), "reg": jnp.float32(config.reg)}
        X_dev, y_dev = jax.device_put(jnp.asarray(X)), jax.device_put(jnp.asarray(y))
        carry = jax.tree_util.tree_map(jnp.array, (ts.params, ts.state, ts.opt_state))
        return {"fn": epoch_fn, "carry": carry, "hyper": hyper, "X": X_dev, "y": y_dev, "epoch": 0}

    def compile_(s):
        s["fn"] = s["fn"].lower(*s["carry"], s["hyper"], s["X"], s["y"], jax.random.key(1)).compile()
        return s

    def run(s):
        for _ in range(epochs_per_run):
            s["epoch"] += 1
            *carry, losses = s["fn"](*s["carry"], s["hyper"], s["X"], s["y"], jax.random.key(s["epoch"]))
            s["carry"] = tuple(carry)
        jax.block_until_ready((s["carry"], losses))
        s["last_loss"] = float(losses[-1])
        return s

    return Impl(name, setup, run, compile_, note)


def _synthetic(seed, shape, num_classes):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape, dtype=np.float32), rng.integers(0, num_classes, shape[0]).astype(np.int32)


# ------------------------------------------------------------------------------------------
# W1: two-layer net, CIFAR-10 shapes


def w1(quick: bool, torch_ok: bool) -> Workload:
    import baseline_numpy as bn

    n = sizes(quick)["w1_n"]
    D, H, C, B, lr, reg = 3072, 100, 10, 200, 1e-3, 0.25
    X, y = _synthetic(1, (n, D), C)
    params0 = bn.w1_init_params(1, D, H, C)
    steps = n // B
    impls = [
        Impl(
            "numpy",
            lambda: bn.w1_numpy_prepare(params0, X, y),
            lambda p: (bn.w1_numpy_run(p, lr=lr, reg=reg, batch_size=B), p)[1],
        )
    ]
    if torch_ok:
        import baseline_torch as bt

        impls.append(
            Impl(
                "torch",
                lambda: bt.w1_torch_prepare(params0, X, y),
                lambda p: (bt.w1_torch_run(p, lr=lr, reg=reg, batch_size=B), p)[1],
            )
        )

    def make_model(ops):
        _, _, _, _, _, models, _ = _jax()
        return models.two_layer_net(H, C, weight_scale=1e-4, ops=ops)

    _, _, _, _, _, _, train = _jax()
    config = train.TrainConfig(optimizer="sgd", learning_rate=lr, reg=reg, batch_size=B, epochs=1)
    for grads in ("auto", "manual"):
        impls.append(_jaxnets_epoch_impl(f"jaxnets-{grads}", make_model, config, X, y, (D,)))
    return Workload(
        "W1",
        f"two-layer net {D}-{H}-{C}, SGD, batch {B}, one epoch of {n:,} ({steps} steps)",
        impls,
        "epoch",
        1,
        steps * B,
        steps * _affine_flops(B, [D, H, C]),
        notes=[
            "numpy/torch walk contiguous minibatches of a pre-shuffled X; jaxnets draws a fresh "
            "permutation per epoch and gathers each minibatch X[idx] inside the compiled scan"
        ],
    )


# ------------------------------------------------------------------------------------------
# W2: fc_net 5 x 100, batch norm + dropout, Adam, Fashion-MNIST shapes


def w2(quick: bool, torch_ok: bool) -> Workload:
    import baseline_numpy as bn

    n, hidden = sizes(quick)["w2_n"], sizes(quick)["w2_hidden"]
    D, C, B, lr, reg, rate = 784, 10, 200, 1e-3, 1e-3, 0.5
    X, y = _synthetic(2, (n, D), C)
    params0 = bn.w2_init_params(2, D, hidden, C)
    steps = n // B
    impls = [
        Impl(
            "numpy",
            lambda: bn.w2_numpy_prepare(params0, X, y),
            lambda p: (bn.w2_numpy_run(p, lr=lr, reg=reg, dropout=rate, batch_size=B, seed=0), p)[1],
        )
    ]
    if torch_ok:
        import baseline_torch as bt

        impls.append(
            Impl(
                "torch",
                lambda: bt.w2_torch_prepare(params0, X, y),
                lambda p: (bt.w2_torch_run(p, lr=lr, reg=reg, dropout=rate, batch_size=B, seed=0), p)[1],
            )
        )

    def make_model(ops):
        _, _, _, _, _, models, _ = _jax()
        return models.fc_net(list(hidden), C, normalization="batchnorm", dropout=rate, weight_scale=5e-2, ops=ops)

    _, _, _, _, _, _, train = _jax()
    config = train.TrainConfig(optimizer="adam", learning_rate=lr, reg=reg, batch_size=B, epochs=1)
    for grads in ("auto", "manual"):
        impls.append(_jaxnets_epoch_impl(f"jaxnets-{grads}", make_model, config, X, y, (D,)))
    return Workload(
        "W2",
        f"fc_net {D}-{'-'.join(map(str, hidden))}-{C}, batch norm, dropout {rate}, Adam, batch {B}, "
        f"one epoch of {n:,} ({steps} steps)",
        impls,
        "epoch",
        1,
        steps * B,
        steps * _affine_flops(B, [D, *hidden, C]),
        notes=[
            "jaxnets also updates the batch-norm running statistics (state); numpy/torch do not "
            "track them (they do not touch the loss)"
        ],
    )


# ------------------------------------------------------------------------------------------
# W3: three-layer convnet


def w3(quick: bool, torch_ok: bool) -> Workload:
    import baseline_numpy as bn

    sz = sizes(quick)
    S, F, K = sz["w3_steps"], sz["w3_filters"], sz["w3_filter_size"]
    N, Cin, Hin, hidden, C, lr, reg = 50, 3, 32, 100, 10, 1e-3, 1e-3
    X, y = _synthetic(3, (S * N, Cin, Hin, Hin), C)
    params0 = bn.w3_init_params(3, (Cin, Hin, Hin), F, K, hidden, C)

    def batches(prepare):
        return [prepare(params0, X[k * N : (k + 1) * N], y[k * N : (k + 1) * N]) for k in range(S)]

    def numpy_run(prepared):
        for p in prepared:
            bn.w3_numpy_run(p, lr=lr, reg=reg)
        return prepared

    impls = [Impl("numpy", lambda: batches(bn.w3_numpy_prepare), numpy_run)]
    if torch_ok:
        import baseline_torch as bt

        def torch_run(prepared):
            for p in prepared:
                bt.w3_torch_run(p, lr=lr, reg=reg)
            return prepared

        impls.append(Impl("torch", lambda: batches(bt.w3_torch_prepare), torch_run))

    def make_model(ops):
        _, _, _, _, _, models, _ = _jax()
        return models.three_layer_convnet(F, K, hidden, C, weight_scale=1e-3, ops=ops)

    _, _, _, _, _, _, train = _jax()
    config = train.TrainConfig(optimizer="sgd", learning_rate=lr, reg=reg, batch_size=N, epochs=1)
    for grads in ("auto", "manual"):
        impls.append(_jaxnets_epoch_impl(f"jaxnets-{grads}", make_model, config, X, y, (Cin, Hin, Hin)))
    Ho = Hin  # pad (K-1)/2 keeps H x W
    conv = 2 * N * F * Ho * Ho * Cin * K * K
    flops = S * (2 * conv + _affine_flops(N, [F * (Ho // 2) ** 2, hidden, C], input_grad_first=True))
    return Workload(
        "W3",
        f"three_layer_convnet, batch {N}, {Cin}x{Hin}x{Hin}, {F} filters {K}x{K} pad {(K - 1) // 2}, "
        f"2x2 max pool, hidden {hidden}, SGD; {S} steps per run",
        impls,
        "step",
        S,
        S * N,
        flops,
        notes=[
            f"jaxnets: one call of the compiled epoch function = lax.scan over {S} steps (shuffle + gather "
            f"inside), time / {S}; numpy/torch: {S} calls of their one-step function (the median run / {S}), "
            "no input gradient of the first conv"
        ],
    )


# ------------------------------------------------------------------------------------------
# W4: the 15-configuration sweep, vmapped vs one after another


W4_LRS = tuple(float(v) for v in np.logspace(-2, 0, 5))  # jaxnets sweep's --lr log:1e-2:1:5
W4_REGS = (1e-4, 1e-3, 1e-2)  # and its default --reg


def _sweep_workload(key, quick, title, make_model, dims, config, n, E, seed, E_e2e=None):
    """15-configuration sweep, vmapped (``train.sweep``'s program) vs one config after another."""
    jax, jnp, _, _, _, _, train = _jax()
    X, y = _synthetic(seed, (n, 1, 8, 8), 10)
    lr_grid, reg_grid = (
        a.reshape(-1)
        for a in np.meshgrid(np.asarray(W4_LRS, np.float32), np.asarray(W4_REGS, np.float32), indexing="ij")
    )
    n_cfg = len(lr_grid)
    steps = n // config.batch_size

    def vmapped_impl(grads):
        def setup():
            ops, loss_ops = _ops(grads)
            model = make_model(ops)
            params, state = model.init(jax.random.key(0), X.shape[1:])
            opt_state = train.make_optimizer(config.optimizer, config.learning_rate, config.lr_decay, steps).init(
                params
            )
            stack = lambda tree: jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_cfg, *jnp.shape(a))), tree)
            epoch_fn = train.make_epoch_fn(model, config, n, loss_ops)
            # exactly train.sweep's program
            fn = jax.jit(jax.vmap(epoch_fn, in_axes=(0, 0, 0, 0, None, None, None)), donate_argnums=(0, 1, 2))
            hyper = {"learning_rate": jnp.asarray(lr_grid), "reg": jnp.asarray(reg_grid)}
            init = (stack(params), stack(state), stack(opt_state))
            return {"fn": fn, "init": init, "hyper": hyper, "X": jnp.asarray(X), "y": jnp.asarray(y)}

        def compile_(s):
            carry = jax.tree_util.tree_map(jnp.array, s["init"])
            s["fn"] = s["fn"].lower(*carry, s["hyper"], s["X"], s["y"], jax.random.key(1)).compile()
            return s

        def run(s):
            carry = jax.tree_util.tree_map(jnp.array, s["init"])
            for e in range(E):
                *carry, losses = s["fn"](*carry, s["hyper"], s["X"], s["y"], jax.random.key(e + 1))
            jax.block_until_ready((carry, losses))
            return s

        return Impl(f"jaxnets-sweep-{grads}", setup, run, compile_, "train.sweep's vmapped epoch, 15 configs per call")

    def sequential_impl(grads):
        def setup():
            ops, loss_ops = _ops(grads)
            model = make_model(ops)
            ts = train.init_train_state(model, jax.random.key(0), X.shape[1:], config, steps)
            fn = jax.jit(train.make_epoch_fn(model, config, n, loss_ops), donate_argnums=(0, 1, 2))
            hypers = [
                {"learning_rate": jnp.float32(lr), "reg": jnp.float32(reg)}
                for lr, reg in zip(lr_grid, reg_grid, strict=True)
            ]
            return {
                "fn": fn,
                "init": (ts.params, ts.state, ts.opt_state),
                "hypers": hypers,
                "X": jnp.asarray(X),
                "y": jnp.asarray(y),
            }

        def compile_(s):
            carry = jax.tree_util.tree_map(jnp.array, s["init"])
            s["fn"] = s["fn"].lower(*carry, s["hypers"][0], s["X"], s["y"], jax.random.key(1)).compile()
            return s

        def run(s):
            for hyper in s["hypers"]:
                carry = jax.tree_util.tree_map(jnp.array, s["init"])
                for e in range(E):
                    *carry, losses = s["fn"](*carry, hyper, s["X"], s["y"], jax.random.key(e + 1))
                jax.block_until_ready((carry, losses))
            return s

        return Impl(f"jaxnets-seq-{grads}", setup, run, compile_, "train.fit's compiled epoch, 15 calls per epoch")

    def end_to_end(which):
        """What a user runs: ``train.sweep`` once, or ``train.fit`` per config (compile + evaluation included)."""

        def setup():
            ops, loss_ops = _ops("auto")
            data = {"X_train": X, "y_train": y, "X_val": X[:180], "y_val": y[:180]}
            return {"model": make_model(ops), "data": data, "loss_ops": loss_ops}

        # --quick: a 2-config grid, or 15 compiles would be most of the smoke run
        lrs, regs = (W4_LRS[:2], W4_REGS[:1]) if quick else (W4_LRS, W4_REGS)
        cfg_e2e = config._replace(epochs=E_e2e)

        def run(s):
            if which == "sweep":
                out = train.sweep(
                    s["model"], s["data"], lrs, regs, cfg_e2e, key=jax.random.key(0), loss_ops=s["loss_ops"]
                )
                jax.block_until_ready(out["params"])
            else:
                for lr, reg in ((lr, reg) for lr in lrs for reg in regs):
                    cfg = cfg_e2e._replace(learning_rate=float(lr), reg=float(reg))
                    ts = train.fit(s["model"], s["data"], cfg, key=jax.random.key(0), loss_ops=s["loss_ops"])
                    jax.block_until_ready(ts.params)
            return s

        name = "jaxnets-train.sweep" if which == "sweep" else "jaxnets-train.fit-seq"
        note = (
            "train.sweep(...) end to end: compile, 15 configs vmapped, accuracies"
            if which == "sweep"
            else "train.fit(...) per config, end to end: compile (cached after the first), per-epoch train/val accuracy"
        )
        return Impl(name, setup, run, None, note, units_per_run=E_e2e)

    impls = [vmapped_impl("auto"), sequential_impl("auto"), vmapped_impl("manual"), sequential_impl("manual")]
    if key == "W4":
        impls += [end_to_end("sweep"), end_to_end("fit")]
    B = config.batch_size
    return Workload(
        key,
        f"sweep of {n_cfg} configs (5 lr x 3 reg) of {title}, {config.optimizer}, batch {B}, "
        f"sklearn-digits shapes ({n:,} x 1x8x8, {steps} steps/epoch); {E} epochs per run"
        + (f" ({E_e2e} for train.sweep / train.fit-seq)" if key == "W4" else ""),
        impls,
        "epoch of 15 configs",
        E,
        E * n_cfg * steps * B,
        E * n_cfg * steps * _affine_flops(B, dims),
        notes=[
            "sweep: train.sweep's program (jit(vmap(make_epoch_fn)), one call per epoch for all 15 configs); "
            "seq: the same compiled epoch function as train.fit, called once per config per epoch"
        ]
        + (
            [
                f"train.sweep / train.fit-seq: the library calls end to end (user's view, auto grads, "
                f"{'2 configs with --quick' if quick else '15 configs'}): fit evaluates "
                "train/val accuracy after every epoch and compiles per call "
                "(jax's cache makes calls after the first cheaper), "
                "sweep compiles once and evaluates once"
            ]
            if key == "W4"
            else []
        ),
        baselines=("jaxnets-seq-auto", "jaxnets-seq-manual", "jaxnets-train.fit-seq"),
    )


def w4(quick: bool, torch_ok: bool) -> Workload:
    """``jaxnets sweep`` (default model two-layer): the course's lr x reg grid search of the two-layer net."""
    _, _, _, _, _, models, train = _jax()
    sz = sizes(quick)
    hidden = sz["w4_hidden"]
    config = train.TrainConfig(
        optimizer="momentum", learning_rate=0.3, lr_decay=0.95, reg=1e-3, batch_size=100, epochs=sz["w4_epochs"]
    )
    return _sweep_workload(
        "W4",
        quick,
        f"two_layer_net 64-{hidden}-10",
        lambda ops: models.two_layer_net(hidden, 10, ops=ops),
        [64, hidden, 10],
        config,
        sz["w4_n"],
        sz["w4_epochs"],
        4,
        E_e2e=sz["w4_e2e_epochs"],
    )


def w4b(quick: bool, torch_ok: bool) -> Workload:
    """``jaxnets sweep --model fc``: fc_net [256, 256], batch norm, dropout 0.2, Adam."""
    _, _, _, _, _, models, train = _jax()
    sz = sizes(quick)
    hidden = list(sz["w4b_hidden"])
    config = train.TrainConfig(
        optimizer="adam", learning_rate=1e-3, lr_decay=0.95, reg=1e-3, batch_size=50, epochs=sz["w4b_epochs"]
    )
    dims = [64, *hidden, 10]
    return _sweep_workload(
        "W4b",
        quick,
        f"fc_net {'-'.join(map(str, dims))}, batch norm, dropout 0.2",
        lambda ops: models.fc_net(hidden, 10, normalization="batchnorm", dropout=0.2, ops=ops),
        dims,
        config,
        sz["w4_n"],
        sz["w4b_epochs"],
        5,
    )


# ------------------------------------------------------------------------------------------
# W6 / W7: the README's Fashion-MNIST convnet row


def _w6_setup(quick, overrides=None):
    sz = {**sizes(quick), **(overrides or {})}
    n, n_val, channels, hidden = sz["w6_n"], sz["w6_val"], sz["w6_channels"], sz["w6_hidden"]
    X, y = _synthetic(6, (n + n_val, 1, 28, 28), 10)
    return n, n_val, channels, hidden, X, y


def _w6_flops(N, channels, hidden, hw=28, c_in=1, classes=10):
    """Forward + weight-gradient + input-gradient (all but the first conv) FLOPs of one convnet step."""
    total = 0
    for k, c_out in enumerate(channels):
        conv = 2 * N * c_out * hw * hw * c_in * 9
        total += conv * (2 if k == 0 else 3)
        c_in, hw = c_out, hw // 2
    return total + _affine_flops(N, [c_in * hw * hw, *hidden, classes], input_grad_first=True)


W6_HYPER = dict(lr=1e-3, reg=0.0, dropout=0.4, batch_size=100)  # the README row (reg: TrainConfig default)


def _w6_model(channels, hidden):
    def make_model(ops):
        _, _, _, _, _, models, _ = _jax()
        return models.convnet(channels, hidden, 10, normalization="batchnorm", dropout=W6_HYPER["dropout"], ops=ops)

    return make_model


def w6(quick: bool, torch_ok: bool, overrides=None) -> Workload:
    """One training epoch of the README's fashion-convnet row (no evaluation)."""
    import baseline_numpy as bn

    n, _, channels, hidden, X, y = _w6_setup(quick, overrides)
    X, y = X[:n], y[:n]
    h = W6_HYPER
    B = h["batch_size"]
    params0 = bn.w6_init_params(6, (1, 28, 28), channels, hidden, 10)
    run_kw = dict(lr=h["lr"], reg=h["reg"], dropout=h["dropout"], batch_size=B)
    impls = [
        Impl(
            "numpy",
            lambda: bn.w6_numpy_prepare(params0, X, y),
            lambda p: (bn.w6_numpy_run(p, **run_kw), p)[1],
        )
    ]
    if torch_ok:
        import baseline_torch as bt

        impls.append(
            Impl("torch", lambda: bt.w6_torch_prepare(params0, X, y), lambda p: (bt.w6_torch_run(p, **run_kw), p)[1])
        )
    _, _, _, _, _, _, train = _jax()
    config = train.TrainConfig(optimizer="adam", learning_rate=h["lr"], reg=h["reg"], batch_size=B, epochs=1)
    for grads in ("auto", "manual"):
        impls.append(_jaxnets_epoch_impl(f"jaxnets-{grads}", _w6_model(channels, hidden), config, X, y, (1, 28, 28)))
    steps = n // B
    return Workload(
        "W6",
        f"convnet({tuple(channels)}, {tuple(hidden)}), batch norm, dropout {h['dropout']}, Adam, batch {B}, "
        f"1x28x28, one epoch of {n:,} ({steps} steps), no evaluation",
        impls,
        "epoch",
        1,
        steps * B,
        steps * _w6_flops(B, channels, hidden),
        notes=[
            "numpy/torch walk contiguous minibatches of a pre-shuffled X and keep no running batch-norm "
            "statistics; jaxnets shuffles and gathers inside the compiled epoch and updates them"
        ],
    )


def w7(quick: bool, torch_ok: bool, overrides=None) -> Workload:
    """The fashion-convnet row end to end: ``train.fit`` for 2 epochs (compile, per-epoch evaluation)."""
    n, n_val, channels, hidden, X, y = _w6_setup(quick, overrides)
    h = W6_HYPER
    B, epochs = h["batch_size"], 2
    data = {"X_train": X[:n], "y_train": y[:n], "X_val": X[n:], "y_val": y[n:]}
    jax, _, _, _, _, _, train = _jax()
    config = train.TrainConfig(optimizer="adam", learning_rate=h["lr"], reg=h["reg"], batch_size=B, epochs=epochs)
    impls = []
    if torch_ok:
        import baseline_numpy as bn
        import baseline_torch as bt

        params0 = bn.w6_init_params(6, (1, 28, 28), channels, hidden, 10)

        def torch_setup():
            import torch

            val = (torch.from_numpy(data["X_val"]), torch.from_numpy(data["y_val"].astype(np.int64)))
            return bt.w6_torch_prepare(params0, data["X_train"], data["y_train"]), val

        def torch_run(s):
            bt.w7_torch_fit(
                s[0], s[1], epochs=epochs, lr=h["lr"], reg=h["reg"], dropout=h["dropout"], batch_size=B,
                eval_batch_size=config.eval_batch_size,
            )
            return s

        impls.append(Impl("torch", torch_setup, torch_run))

    def fit_impl(grads):
        def setup():
            ops, loss_ops = _ops(grads)
            return {"model": _w6_model(channels, hidden)(ops), "loss_ops": loss_ops}

        def run(s):
            ts = train.fit(s["model"], data, config, key=jax.random.key(0), loss_ops=s["loss_ops"])
            jax.block_until_ready(ts.params)
            return s

        return Impl(f"jaxnets-{grads}", setup, run, None, "train.fit end to end (its compile included)")

    impls += [fit_impl("auto"), fit_impl("manual")]
    steps = n // B
    return Workload(
        "W7",
        f"the W6 convnet end to end as a user runs it: train.fit, {epochs} epochs of {n:,} "
        f"(train + accuracy on a {max(n_val, 1000):,} training subsample and {n_val:,} validation images per "
        "epoch, best weights kept); torch: the same loop with running batch-norm statistics",
        impls,
        "epoch",
        epochs,
        epochs * steps * B,
        epochs * steps * _w6_flops(B, channels, hidden),
        notes=["jaxnets: one train.fit call per run, its compile included (fit compiles its epoch per call)"],
        baselines=("torch",),
    )


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W4b": w4b, "W6": w6, "W7": w7}


def build(key: str, quick: bool, torch_ok: bool, sizes: dict | None = None) -> Workload:
    """Build workload ``key`` (one of ``WORKLOADS``); ``sizes`` overrides W6/W7 entries of ``sizes(quick)``."""
    if not sizes:
        return WORKLOADS[key](quick, torch_ok)
    if key not in ("W6", "W7") or not set(sizes) <= {"w6_n", "w6_val"}:
        raise ValueError(f"sizes: only w6_n and w6_val of W6/W7 can be overridden, got {sorted(sizes)} for {key}")
    return WORKLOADS[key](quick, torch_ok, sizes)


def timed(fn, *args):
    """``(seconds, result)`` of one call."""
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def flops_matmul(n: int) -> float:
    """FLOPs of one n x n by n x n matrix product."""
    return 2.0 * n**3


def finite_positive(x) -> bool:
    """True for a finite number > 0."""
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0
