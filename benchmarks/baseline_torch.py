"""PyTorch eager (CPU) baselines for the benchmark workloads, with the semantics of
``baseline_numpy``.

``torch.nn.functional`` forward passes, autograd backward, ``torch.optim.SGD`` /
``torch.optim.Adam`` (no ``weight_decay``: the L2 term ``0.5 * reg * sum(W**2)`` over the params
whose key starts with ``W`` is part of the loss). float32, NCHW, no ``torch.compile``, the default
``torch.get_num_threads()``.

Each workload comes in three pieces so a timing harness can leave conversions out:

* ``*_prepare(params, X, y)`` converts the caller's numpy arrays once into tensors and returns
  ``prepared = (params, X, y)`` (float32 params and ``X``, int64 ``y``).
* ``*_run(prepared, **hyper)`` is the timed core. It clones the params into fresh leaf tensors
  before training, so ``prepared`` is never modified and can be run again and again. It returns
  numpy params.
* ``w1_torch``/``w2_torch``/``w3_torch_step`` are prepare + run in one call, taking and
  returning numpy arrays.

Workloads (see ``baseline_numpy`` for the details):

* **W1** two-layer net, SGD, one epoch of contiguous minibatches (a last partial batch dropped).
* **W2** ``fc_net`` ``{affine - batchnorm - relu - [dropout]} x (L-1) - affine``, Adam, one
  epoch. Batch norm in train mode via ``F.batch_norm`` with no running buffers (batch statistics,
  biased variance, ``eps=1e-5``). Dropout masks come from a ``torch.Generator`` seeded per epoch,
  so they differ from numpy's: compare with numpy at ``dropout=0.0``.
* **W3** three-layer convnet, one SGD step.

The module imports without torch: check ``TORCH_AVAILABLE`` (and ``TORCH_UNAVAILABLE_REASON``)
first; the functions raise ``RuntimeError`` when torch is missing.

Run ``python benchmarks/baseline_torch.py`` to check agreement with ``baseline_numpy`` and print
small timings, ``--full`` for the full benchmark sizes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except Exception as e:  # ImportError, or OSError from a broken install's shared libraries
    torch = F = None
    TORCH_AVAILABLE = False
    TORCH_UNAVAILABLE_REASON = f"torch could not be imported: {type(e).__name__}: {e}"
    TORCH_VERSION = None
else:
    TORCH_AVAILABLE = True
    TORCH_UNAVAILABLE_REASON = ""
    TORCH_VERSION = torch.__version__

__all__ = [
    "TORCH_AVAILABLE",
    "TORCH_UNAVAILABLE_REASON",
    "TORCH_VERSION",
    "w1_torch_prepare",
    "w1_torch_run",
    "w1_torch",
    "w2_torch_prepare",
    "w2_torch_run",
    "w2_torch",
    "w3_torch_prepare",
    "w3_torch_run",
    "w3_torch_step",
    "w6_forward",
    "w6_torch_prepare",
    "w6_torch_run",
    "w7_torch_fit",
]

BN_EPS = 1e-5


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


def _require_torch():
    if not TORCH_AVAILABLE:
        raise RuntimeError(TORCH_UNAVAILABLE_REASON)


def _prepare(params, X, y, flatten):
    """float32 tensors of ``params`` (copies) and ``X`` (flattened to ``(N, D)`` when asked),
    int64 ``y``; checks that ``X`` and ``y`` agree in length."""
    _require_torch()
    X = np.ascontiguousarray(X, dtype=np.float32)
    if flatten:
        X = X.reshape(X.shape[0], -1)
    y = np.ascontiguousarray(y, dtype=np.int64)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected shape ({X.shape[0]},) to match X, got {y.shape}")
    params = {k: torch.tensor(np.asarray(v), dtype=torch.float32) for k, v in params.items()}
    return params, torch.from_numpy(X), torch.from_numpy(y)


def _leaves(params):
    """Fresh trainable copies, so runs never touch ``prepared``."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def _to_numpy(params):
    return {k: v.detach().numpy().copy() for k, v in params.items()}


def _l2_penalty(params, reg):
    """``0.5 * reg * sum(W**2)`` over the params whose key starts with ``W``."""
    return 0.5 * reg * sum((v * v).sum() for k, v in params.items() if k.startswith("W"))


def _num_steps(N, batch_size):
    if not 1 <= batch_size <= N:
        raise ValueError(f"batch_size: expected an int in [1, {N}] (N = len(X)), got {batch_size}")
    return N // batch_size


# --------------------------------------------------------------------------------------------
# W1: two-layer net, SGD, one epoch
# --------------------------------------------------------------------------------------------


def w1_loss(params, X, y, reg):
    """Two-layer net ``affine - relu - affine - softmax`` loss plus L2.

    Args:
        params: tensors ``W1 (D, H)``, ``b1 (H,)``, ``W2 (H, C)``, ``b2 (C,)``.
        X: ``(N, D)`` inputs.
        y: ``(N,)`` int64 labels.
        reg: L2 strength.

    Returns:
        The scalar loss tensor.
    """
    h = F.relu(torch.addmm(params["b1"], X, params["W1"]))
    scores = torch.addmm(params["b2"], h, params["W2"])
    return F.cross_entropy(scores, y) + _l2_penalty(params, reg)


def w1_torch_prepare(params, X, y):
    """Converts once: ``X`` of shape ``(N, d1..dk)`` becomes a float32 ``(N, D)`` tensor."""
    return _prepare(params, X, y, flatten=True)


def w1_torch_run(prepared, *, lr=1e-3, reg, batch_size=200):
    """One epoch of SGD on the two-layer net over contiguous minibatches of ``X``.

    Args:
        prepared: ``(params, X (N, D), y (N,))`` tensors from :func:`w1_torch_prepare`;
            not modified.
        lr: SGD step size.
        reg: L2 strength.
        batch_size: minibatch size; ``N // batch_size`` steps, a last partial batch is dropped.

    Returns:
        ``(params, losses)``: the trained params as float32 numpy arrays and the per-step losses.
    """
    params, X, y = prepared
    params = _leaves(params)
    opt = torch.optim.SGD(params.values(), lr=lr)
    losses = []
    for step in range(_num_steps(X.shape[0], batch_size)):
        batch = slice(step * batch_size, (step + 1) * batch_size)
        loss = w1_loss(params, X[batch], y[batch], reg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return _to_numpy(params), losses


def w1_torch(params, X, y, *, lr=1e-3, reg, batch_size=200):
    """:func:`w1_torch_prepare` then :func:`w1_torch_run`."""
    return w1_torch_run(w1_torch_prepare(params, X, y), lr=lr, reg=reg, batch_size=batch_size)


# --------------------------------------------------------------------------------------------
# W2: fc_net with batch norm and dropout, Adam, one epoch
# --------------------------------------------------------------------------------------------


def _num_layers(params):
    L = sum(k.startswith("W") for k in params)
    missing = [f"{p}{i}" for i in range(1, L) for p in ("gamma", "beta") if f"{p}{i}" not in params]
    if L < 2 or missing:
        raise ValueError(
            f"params: expected W1..WL (L >= 2) with gamma{{i}}, beta{{i}} for i < L, got keys {sorted(params)}"
        )
    return L


def w2_loss(params, X, y, reg, rate, generator):
    """``fc_net`` with batch norm and inverted dropout: loss plus L2.

    Hidden layer ``i``: ``affine - batchnorm (batch statistics) - relu - dropout`` with
    ``mask = (u >= rate) / (1 - rate)``, ``u ~ U[0, 1)``; ``rate`` is the **drop** probability.

    Args:
        params: tensors ``W1 (D, H1), b1, gamma1, beta1 (H1,), ..., WL (H_{L-1}, C), bL (C,)``.
        X: ``(N, D)`` inputs.
        y: ``(N,)`` int64 labels.
        reg: L2 strength.
        rate: dropout drop probability in ``[0, 1)``; ``0`` skips dropout.
        generator: ``torch.Generator`` drawing the masks; unused when ``rate == 0``.

    Returns:
        The scalar loss tensor.
    """
    L = _num_layers(params)
    h = X
    for i in range(1, L):
        h = torch.addmm(params[f"b{i}"], h, params[f"W{i}"])
        h = F.batch_norm(h, None, None, params[f"gamma{i}"], params[f"beta{i}"], training=True, eps=BN_EPS)
        h = F.relu(h)
        if rate > 0:
            mask = (torch.rand(h.shape, generator=generator) >= rate).to(h.dtype) / (1.0 - rate)
            h = h * mask
    scores = torch.addmm(params[f"b{L}"], h, params[f"W{L}"])
    return F.cross_entropy(scores, y) + _l2_penalty(params, reg)


def w2_torch_prepare(params, X, y):
    """Converts once: ``X`` of shape ``(N, 1, 28, 28)`` or ``(N, D)`` becomes float32 ``(N, D)``."""
    return _prepare(params, X, y, flatten=True)


def w2_torch_run(prepared, *, lr=1e-3, reg, dropout, batch_size=200, seed=0, beta1=0.9, beta2=0.999, eps=1e-8):
    """One epoch of ``torch.optim.Adam`` on the batch-norm ``fc_net`` over contiguous minibatches.

    Args:
        prepared: ``(params, X (N, D), y (N,))`` tensors from :func:`w2_torch_prepare`;
            not modified.
        lr, beta1, beta2, eps: Adam hyper-parameters (bias-corrected Adam, fresh state).
        reg: L2 strength.
        dropout: drop probability in ``[0, 1)`` (the course's keep probability is ``1 - dropout``).
        batch_size: minibatch size; ``N // batch_size`` steps, a last partial batch is dropped.
        seed: seeds the ``torch.Generator`` that draws this epoch's dropout masks.

    Returns:
        ``(params, losses)``: the trained params as float32 numpy arrays and the per-step losses.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a drop probability in [0, 1), got {dropout}")
    params, X, y = prepared
    params = _leaves(params)
    opt = torch.optim.Adam(params.values(), lr=lr, betas=(beta1, beta2), eps=eps)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(_num_steps(X.shape[0], batch_size)):
        batch = slice(step * batch_size, (step + 1) * batch_size)
        loss = w2_loss(params, X[batch], y[batch], reg, dropout, generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return _to_numpy(params), losses


def w2_torch(params, X, y, *, lr=1e-3, reg, dropout, batch_size=200, seed=0):
    """:func:`w2_torch_prepare` then :func:`w2_torch_run`."""
    return w2_torch_run(
        w2_torch_prepare(params, X, y), lr=lr, reg=reg, dropout=dropout, batch_size=batch_size, seed=seed
    )


# --------------------------------------------------------------------------------------------
# W3: three-layer convnet, one SGD step
# --------------------------------------------------------------------------------------------


def w3_loss(params, X, y, reg):
    """Three-layer convnet ``conv(stride 1, pad (HH-1)/2) - relu - max pool 2x2 - affine - relu -
    affine - softmax`` loss plus L2.

    Args:
        params: tensors ``W1 (F, C, HH, WW), b1 (F,), W2 (F*H/2*W/2, Hd), b2, W3 (Hd, K), b3``.
        X: ``(N, C, H, W)`` images.
        y: ``(N,)`` int64 labels.
        reg: L2 strength.

    Returns:
        The scalar loss tensor.
    """
    W1 = params["W1"]
    h = F.conv2d(X, W1, params["b1"], stride=1, padding=(W1.shape[2] - 1) // 2)
    h = F.max_pool2d(F.relu(h), kernel_size=2, stride=2)
    h = F.relu(torch.addmm(params["b2"], h.flatten(1), params["W2"]))  # NCHW flatten order
    scores = torch.addmm(params["b3"], h, params["W3"])
    return F.cross_entropy(scores, y) + _l2_penalty(params, reg)


def w3_torch_prepare(params, X, y):
    """Converts once: float32 NCHW ``X (N, C, H, W)``, int64 ``y``, float32 params."""
    return _prepare(params, X, y, flatten=False)


def w3_torch_run(prepared, *, lr=1e-3, reg):
    """One ``torch.optim.SGD`` step of the three-layer convnet on the whole of ``X``.

    Args:
        prepared: ``(params, X (N, C, H, W), y (N,))`` tensors from :func:`w3_torch_prepare`;
            not modified.
        lr: SGD step size.
        reg: L2 strength.

    Returns:
        ``(params, loss)``: the updated params as float32 numpy arrays and the step's loss.
    """
    params, X, y = prepared
    params = _leaves(params)
    opt = torch.optim.SGD(params.values(), lr=lr)
    loss = w3_loss(params, X, y, reg)
    loss.backward()
    opt.step()
    return _to_numpy(params), loss.item()


def w3_torch_step(params, X, y, *, lr=1e-3, reg):
    """:func:`w3_torch_prepare` then :func:`w3_torch_run`."""
    return w3_torch_run(w3_torch_prepare(params, X, y), lr=lr, reg=reg)


# --------------------------------------------------------------------------------------------
# W6 / W7: the README's Fashion-MNIST convnet, Adam
# --------------------------------------------------------------------------------------------


def w6_forward(params, X, *, train, rate=0.0, running=None, momentum=0.1):
    """``convnet`` scores: ``{conv 3x3 pad 1 - batch norm - relu - max pool 2x2} x n - {affine -
    batch norm - relu - dropout} - affine``.

    Args:
        params: tensors as ``baseline_numpy.w6_init_params``.
        X: ``(N, C, H, W)`` images.
        train: batch statistics and dropout (True) or the running statistics (False).
        rate: dropout drop probability.
        running: ``{i: (running_mean, running_var)}`` buffers, updated in training by
            ``F.batch_norm`` (torch's momentum 0.1 = jaxnets' 0.9), required when ``train`` is
            False; None in training skips them.

    Returns:
        ``(N, classes)`` scores.
    """
    L = sum(1 for k in params if k.startswith("W"))
    h = X
    for i in range(1, L):
        W = params[f"W{i}"]
        conv = W.dim() == 4
        h = F.conv2d(h, W, params[f"b{i}"], padding=W.shape[2] // 2) if conv else torch.addmm(params[f"b{i}"], h, W)
        rm, rv = running[i] if running is not None else (None, None)
        h = F.batch_norm(h, rm, rv, params[f"gamma{i}"], params[f"beta{i}"], train, momentum, BN_EPS)
        h = F.relu(h)
        if conv:
            h = F.max_pool2d(h, 2, 2)
            if params[f"W{i + 1}"].dim() == 2:
                h = h.flatten(1)  # NCHW order, as jaxnets' affine
        elif train and rate > 0:
            h = F.dropout(h, rate, training=True)
    return torch.addmm(params[f"b{L}"], h, params[f"W{L}"])


def w6_torch_prepare(params, X, y):
    """Converts once: float32 NCHW ``X (N, C, H, W)``, int64 ``y``, float32 params."""
    return _prepare(params, X, y, flatten=False)


def _w6_epoch(params, opt, X, y, reg, dropout, batch_size, running=None):
    losses = []
    for step in range(_num_steps(X.shape[0], batch_size)):
        batch = slice(step * batch_size, (step + 1) * batch_size)
        scores = w6_forward(params, X[batch], train=True, rate=dropout, running=running)
        loss = F.cross_entropy(scores, y[batch]) + _l2_penalty(params, reg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def w6_torch_run(prepared, *, lr=1e-3, reg, dropout, batch_size=100, seed=0):
    """One epoch of ``torch.optim.Adam`` on the convnet over contiguous minibatches (no running
    statistics, as :func:`w2_torch_run`).

    Returns:
        ``(params, losses)``.
    """
    params, X, y = prepared
    params = _leaves(params)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(params.values(), lr=lr)
    losses = _w6_epoch(params, opt, X, y, reg, dropout, batch_size)
    return _to_numpy(params), losses


def _accuracy(params, running, X, y, batch_size):
    with torch.no_grad():
        correct = 0
        for s in range(0, X.shape[0], batch_size):
            scores = w6_forward(params, X[s : s + batch_size], train=False, running=running)
            correct += int((scores.argmax(1) == y[s : s + batch_size]).sum())
    return correct / X.shape[0]


def w7_torch_fit(prepared, val, *, epochs, lr=1e-3, reg, dropout, batch_size=100, eval_batch_size=100, seed=0):
    """What ``train.fit`` does, in torch: per epoch, one epoch of Adam (with running batch-norm
    statistics), then the accuracy on a fixed training subsample of ``len(y_val)`` (at least 1000)
    and on the validation set in batches of ``eval_batch_size``, keeping a copy of the best weights.

    Args:
        prepared: from :func:`w6_torch_prepare` (the training set).
        val: ``(X_val, y_val)`` tensors.

    Returns:
        ``(best_params, history)`` with ``history = [(train_acc, val_acc), ...]``.
    """
    params, X, y = prepared
    X_val, y_val = val
    params = _leaves(params)
    torch.manual_seed(seed)
    running = {
        i: (torch.zeros(params[f"gamma{i}"].shape[0]), torch.zeros(params[f"gamma{i}"].shape[0]))
        for i in range(1, sum(1 for k in params if k.startswith("W")))
    }
    n_sub = min(X.shape[0], max(len(y_val), 1000))
    sub = torch.from_numpy(np.random.default_rng(seed).choice(X.shape[0], n_sub, replace=False))
    opt = torch.optim.Adam(params.values(), lr=lr)
    best, best_acc, history = None, -1.0, []
    for _ in range(epochs):
        _w6_epoch(params, opt, X, y, reg, dropout, batch_size, running)
        accs = (
            _accuracy(params, running, X[sub], y[sub], eval_batch_size),
            _accuracy(params, running, X_val, y_val, eval_batch_size),
        )
        history.append(accs)
        if accs[1] > best_acc:
            best, best_acc = _to_numpy(params), accs[1]
    return best, history


# --------------------------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------------------------


def _import_numpy_baseline():
    try:
        from . import baseline_numpy
    except ImportError:  # run as a script: benchmarks/ is on sys.path
        import baseline_numpy
    return baseline_numpy


def _scaled_diff(a, b):
    """``max |a - b| / max |a|``: the difference relative to the array's scale."""
    return float(np.max(np.abs(a - b)) / max(1e-30, float(np.max(np.abs(a)))))


def _torch_grads(loss_fn, params, X, y, *args):
    """Autograd gradients of ``loss_fn(params, X, y, *args)`` at numpy ``params``."""
    tparams, tX, ty = _prepare(params, X, y, flatten=X.ndim == 2)
    tparams = _leaves(tparams)
    loss = loss_fn(tparams, tX, ty, *args)
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in tparams.items()}


def _check(name, a, b, tol, skip=()):
    """Asserts ``max |a[k] - b[k]| / max |a[k]| < tol`` for every key not in ``skip``."""
    worst = max(_scaled_diff(a[k], b[k]) for k in a if k not in skip)
    print(f"  {name:<40} max scaled diff {worst:.1e}" + (f"  (not compared: {', '.join(skip)})" if skip else ""))
    assert worst < tol, f"{name}: numpy and torch disagree"


def _self_check_agreement(bn):
    """Gradients at the init (the sharp test: params after a small step agree even when a
    gradient is wrong), the losses, then the params after a few optimizer steps."""
    print("numpy vs torch (same init, same data, float32; diffs relative to each array's max):")
    rng = np.random.default_rng(0)

    p = bn.w1_init_params(1, D=3072, H=100, C=10, std=1e-2)
    X, y = rng.standard_normal((400, 3072), dtype=np.float32), rng.integers(0, 10, 400)
    l_np, g_np = bn.w1_loss_and_grads(p, X[:200], y[:200], 0.25)
    l_t, g_t = _torch_grads(w1_loss, p, X[:200], y[:200], 0.25)
    assert np.isclose(l_np, l_t, rtol=1e-5), (l_np, l_t)
    _check("W1 gradients", g_np, g_t, 1e-4)
    new_np, l_np = bn.w1_numpy(p, X, y, lr=1e-1, reg=0.25)
    new_t, l_t = w1_torch(p, X, y, lr=1e-1, reg=0.25)
    assert np.allclose(l_np, l_t, rtol=1e-5), (l_np, l_t)
    _check("W1 params after 2 SGD steps (lr 0.1)", new_np, new_t, 1e-4)

    # The biases before batch norm have a zero gradient (batch norm removes the mean): both
    # sides return float noise, and Adam turns noise / noise into steps of up to lr.
    hidden_b = tuple(f"b{i}" for i in range(1, 6))
    p = bn.w2_init_params(2)
    X, y = rng.standard_normal((1000, 784), dtype=np.float32), rng.integers(0, 10, 1000)
    l_np, g_np = bn.w2_loss_and_grads(p, X[:200], y[:200], 1e-3, 0.0, None)
    l_t, g_t = _torch_grads(w2_loss, p, X[:200], y[:200], 1e-3, 0.0, None)
    assert np.isclose(l_np, l_t, rtol=1e-5), (l_np, l_t)
    _check("W2 gradients (dropout 0)", g_np, g_t, 1e-4, skip=hidden_b)
    noise_np = max(abs(g_np[k]).max() for k in hidden_b)
    noise_t = max(abs(g_t[k]).max() for k in hidden_b)
    print(f"    hidden-bias gradients (zero up to float noise): max |g| numpy {noise_np:.1e}, torch {noise_t:.1e}")
    new_np, l_np = bn.w2_numpy(p, X, y, lr=1e-3, reg=1e-3, dropout=0.0)
    new_t, l_t = w2_torch(p, X, y, lr=1e-3, reg=1e-3, dropout=0.0)
    assert np.allclose(l_np, l_t, rtol=1e-5), (l_np, l_t)
    _check("W2 params after 5 Adam steps (dropout 0)", new_np, new_t, 1e-4, skip=hidden_b)

    p = bn.w3_init_params(3, weight_scale=1e-2)
    X, y = rng.standard_normal((50, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, 50)
    l_np, g_np = bn.w3_loss_and_grads(p, X, y, 1e-3)
    l_t, g_t = _torch_grads(w3_loss, p, X, y, 1e-3)
    assert np.isclose(l_np, l_t, rtol=1e-5), (l_np, l_t)
    _check("W3 gradients", g_np, g_t, 1e-4)
    new_np, l_np = bn.w3_numpy_step(p, X, y, lr=1e-1, reg=1e-3)
    new_t, l_t = w3_torch_step(p, X, y, lr=1e-1, reg=1e-3)
    _check("W3 params after 1 SGD step (lr 0.1)", new_np, new_t, 1e-4)


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


def _self_check_timings(bn, full):
    n1, n2, reps = (49_000, 55_000, 1) if full else (2_000, 2_000, 3)
    print(
        f"\ntimings ({'full' if full else 'small'} sizes; median of {reps} run(s), W3 of 5; "
        f"torch {TORCH_VERSION}, {torch.get_num_threads()} threads):"
    )

    X, y = bn._synthetic(1, (n1, 3, 32, 32), 10)
    prepared = w1_torch_prepare(bn.w1_init_params(1), X, y)
    t, (_, losses) = _time(lambda: w1_torch_run(prepared, lr=1e-3, reg=0.25), reps)
    print(f"  W1 torch, {n1} samples, {len(losses)} steps: {t:8.3f} s   loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    del X, prepared

    X, y = bn._synthetic(2, (n2, 1, 28, 28), 10)
    for rate in (0.0, 0.5):
        prepared = w2_torch_prepare(bn.w2_init_params(2), X, y)
        t, (_, losses) = _time(lambda: w2_torch_run(prepared, lr=1e-3, reg=1e-3, dropout=rate, seed=0), reps)
        print(
            f"  W2 torch, {n2} samples, {len(losses)} steps, dropout {rate}: {t:8.3f} s   "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        )

    X, y = bn._synthetic(3, (50, 3, 32, 32), 10)
    prepared = w3_torch_prepare(bn.w3_init_params(3), X, y)
    w3_torch_run(prepared, lr=1e-3, reg=1e-3)  # warm-up: oneDNN picks its conv kernels
    t, (_, loss) = _time(lambda: w3_torch_run(prepared, lr=1e-3, reg=1e-3), 5)
    print(f"  W3 torch, one step, N=50: {t * 1e3:8.1f} ms   loss {loss:.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="time the full benchmark sizes")
    args = parser.parse_args()
    if not TORCH_AVAILABLE:
        raise SystemExit(f"skipping: {TORCH_UNAVAILABLE_REASON}")
    numpy_baseline = _import_numpy_baseline()
    _self_check_agreement(numpy_baseline)
    _self_check_timings(numpy_baseline, args.full)
