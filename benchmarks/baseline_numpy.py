"""NumPy baselines for the benchmark workloads, written the way the course writes them.

Vectorised forward passes and hand-derived backward passes, float32 throughout, NCHW images.
Each workload comes in three pieces so a timing harness can leave conversions out:

* ``*_prepare(params, X, y)`` converts the caller's arrays once (float32 copies of the params,
  contiguous float32 ``X``, int64 ``y``) and returns a tuple ``prepared = (params, X, y)``.
* ``*_run(prepared, **hyper)`` is the timed core. It copies the params before training, so
  ``prepared`` is never modified and the same ``prepared`` can be run again and again.
* ``w1_numpy``/``w2_numpy``/``w3_numpy_step`` are prepare + run in one call.

Workloads:

* **W1** two-layer net ``affine - relu - affine - softmax``, plain SGD over one epoch of
  contiguous minibatches (the caller shuffles ``X`` beforehand; a last partial batch is dropped).
* **W2** ``fc_net``: ``{affine - batchnorm - relu - [dropout]} x (L-1) - affine - softmax``,
  Adam over one epoch. Batch norm runs in train mode with batch statistics (biased variance,
  ``eps=1e-5``); running statistics are not tracked, as they do not touch the loss or the params.
* **W3** ``three_layer_convnet``: ``conv - relu - 2x2 max pool - affine - relu - affine -
  softmax``, one SGD step. The convolution is im2col + one matmul; col2im loops only over the
  ``HH x WW`` kernel offsets.

Losses are softmax cross-entropy averaged over the batch plus ``0.5 * reg * sum(W**2)`` over the
params whose key starts with ``W``. SGD is ``p -= lr * grad``.

Run ``python benchmarks/baseline_numpy.py`` for gradient checks and small timings, ``--full`` for
the full benchmark sizes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "softmax_loss",
    "l2_penalty",
    "w1_init_params",
    "w1_loss_and_grads",
    "w1_numpy_prepare",
    "w1_numpy_run",
    "w1_numpy",
    "w2_init_params",
    "w2_loss_and_grads",
    "w2_numpy_prepare",
    "w2_numpy_run",
    "w2_numpy",
    "w3_init_params",
    "w3_loss_and_grads",
    "w3_numpy_prepare",
    "w3_numpy_run",
    "w3_numpy_step",
    "w6_init_params",
    "w6_loss_and_grads",
    "w6_numpy_prepare",
    "w6_numpy_run",
    "conv_forward",
    "conv_backward",
    "max_pool_forward",
    "max_pool_backward",
]

BN_EPS = 1e-5


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


def softmax_loss(scores, y):
    """``loss = mean_i(-log softmax(scores_i)[y_i])`` and its gradient ``(probs - onehot) / N``.

    Args:
        scores: ``(N, C)`` class scores.
        y: ``(N,)`` int labels in ``[0, C)``.

    Returns:
        ``(loss, dscores)``: a scalar of the dtype of ``scores``, and ``dscores (N, C)``.
    """
    N = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    rows = np.arange(N)
    # log-sum-exp form: -log(probs) would overflow to inf when a prob underflows to 0.
    loss = np.mean(np.log(sum_exp[:, 0]) - shifted[rows, y])
    dscores = exp / sum_exp
    dscores[rows, y] -= 1
    dscores /= N
    return loss, dscores


def l2_penalty(params, reg):
    """``0.5 * reg * sum(W**2)`` over the params whose key starts with ``W``."""
    return 0.5 * reg * sum(np.sum(v * v) for k, v in params.items() if k.startswith("W"))


def _prepare(params, X, y, flatten):
    """Float32 copies of ``params``, contiguous float32 ``X`` (flattened to ``(N, D)`` when asked),
    int64 ``y``; checks that ``X`` and ``y`` agree in length."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if flatten:
        X = X.reshape(X.shape[0], -1)
    y = np.ascontiguousarray(y, dtype=np.int64)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected shape ({X.shape[0]},) to match X, got {y.shape}")
    params = {k: np.array(v, dtype=np.float32) for k, v in params.items()}
    return params, X, y


def _num_steps(N, batch_size):
    if not 1 <= batch_size <= N:
        raise ValueError(f"batch_size: expected an int in [1, {N}] (N = len(X)), got {batch_size}")
    return N // batch_size


# --------------------------------------------------------------------------------------------
# W1: two-layer net, SGD, one epoch
# --------------------------------------------------------------------------------------------


def w1_init_params(seed=0, D=3072, H=100, C=10, std=1e-4):
    """The course's two-layer net init: ``W ~ std * N(0, 1)``, ``b = 0``.

    Returns:
        float32 ``{"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}``.
    """
    rng = np.random.default_rng(seed)
    return {
        "W1": (std * rng.standard_normal((D, H))).astype(np.float32),
        "b1": np.zeros(H, np.float32),
        "W2": (std * rng.standard_normal((H, C))).astype(np.float32),
        "b2": np.zeros(C, np.float32),
    }


def w1_loss_and_grads(params, X, y, reg):
    """Two-layer net ``affine - relu - affine - softmax`` loss and hand backward.

    ``dscores = (probs - onehot) / N``, ``dW2 = h.T @ dscores + reg * W2``,
    ``dh = dscores @ W2.T * (h > 0)``, ``dW1 = X.T @ dh + reg * W1``.

    Args:
        params: ``W1 (D, H)``, ``b1 (H,)``, ``W2 (H, C)``, ``b2 (C,)``.
        X: ``(N, D)`` inputs.
        y: ``(N,)`` int labels.
        reg: L2 strength.

    Returns:
        ``(loss, grads)`` with ``grads`` keyed like ``params``.
    """
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    h = np.maximum(X @ W1 + b1, 0)
    scores = h @ W2 + b2
    loss, dscores = softmax_loss(scores, y)
    loss = loss + l2_penalty(params, reg)

    dh = dscores @ W2.T
    dh *= h > 0
    grads = {
        "W2": h.T @ dscores + reg * W2,
        "b2": dscores.sum(axis=0),
        "W1": X.T @ dh + reg * W1,
        "b1": dh.sum(axis=0),
    }
    return loss, grads


def w1_numpy_prepare(params, X, y):
    """Converts once: ``X`` of shape ``(N, d1..dk)`` becomes float32 ``(N, D)``; see module doc."""
    return _prepare(params, X, y, flatten=True)


def w1_numpy_run(prepared, *, lr=1e-3, reg, batch_size=200):
    """One epoch of SGD on the two-layer net over contiguous minibatches of ``X``.

    Args:
        prepared: ``(params, X (N, D), y (N,))`` from :func:`w1_numpy_prepare`; not modified.
        lr: SGD step size.
        reg: L2 strength.
        batch_size: minibatch size; ``N // batch_size`` steps, a last partial batch is dropped.

    Returns:
        ``(params, losses)``: the trained float32 params and the per-step losses (Python floats).
    """
    params, X, y = prepared
    params = {k: v.copy() for k, v in params.items()}
    losses = []
    for step in range(_num_steps(X.shape[0], batch_size)):
        batch = slice(step * batch_size, (step + 1) * batch_size)
        loss, grads = w1_loss_and_grads(params, X[batch], y[batch], reg)
        for k, g in grads.items():
            params[k] -= lr * g
        losses.append(float(loss))
    return params, losses


def w1_numpy(params, X, y, *, lr=1e-3, reg, batch_size=200):
    """:func:`w1_numpy_prepare` then :func:`w1_numpy_run`."""
    return w1_numpy_run(w1_numpy_prepare(params, X, y), lr=lr, reg=reg, batch_size=batch_size)


# --------------------------------------------------------------------------------------------
# W2: fc_net with batch norm and dropout, Adam, one epoch
# --------------------------------------------------------------------------------------------


def w2_init_params(seed=0, D=784, hidden_dims=(100,) * 5, C=10, weight_scale=5e-2):
    """``fc_net`` init with batch norm: ``W ~ weight_scale * N(0, 1)``, ``b = 0``, ``gamma = 1``,
    ``beta = 0``.

    Returns:
        float32 ``{W1 (D, H1), b1, gamma1, beta1, ..., WL (H_{L-1}, C), bL}``.
    """
    rng = np.random.default_rng(seed)
    dims = [D, *hidden_dims, C]
    params = {}
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=False), start=1):
        params[f"W{i}"] = (weight_scale * rng.standard_normal((d_in, d_out))).astype(np.float32)
        params[f"b{i}"] = np.zeros(d_out, np.float32)
        if i < len(dims) - 1:
            params[f"gamma{i}"] = np.ones(d_out, np.float32)
            params[f"beta{i}"] = np.zeros(d_out, np.float32)
    return params


def _num_layers(params):
    L = sum(k.startswith("W") for k in params)
    missing = [f"{p}{i}" for i in range(1, L) for p in ("gamma", "beta") if f"{p}{i}" not in params]
    if L < 2 or missing:
        raise ValueError(
            f"params: expected W1..WL (L >= 2) with gamma{{i}}, beta{{i}} for i < L, got keys {sorted(params)}"
        )
    return L


def w2_loss_and_grads(params, X, y, reg, rate, rng):
    """``fc_net`` with batch norm and inverted dropout: loss and hand backward.

    Hidden layer ``i``: ``a = h @ Wi + bi``, ``z = gamma_i * (a - mu) / sqrt(var + eps) + beta_i``
    (batch mean and biased variance), ``r = relu(z)``, ``h = r * mask`` with
    ``mask = (u >= rate) / (1 - rate)``, ``u ~ U[0, 1)``. ``rate`` is the **drop** probability
    (the course's ``p`` is the keep probability ``1 - rate``).

    Batch norm backward, the simplified closed form:
    ``dx = inv_std / N * (N * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))`` with
    ``dxhat = dz * gamma``.

    Args:
        params: ``W1 (D, H1), b1, gamma1, beta1 (H1,), ..., WL (H_{L-1}, C), bL (C,)``.
        X: ``(N, D)`` inputs.
        y: ``(N,)`` int labels.
        reg: L2 strength.
        rate: dropout drop probability in ``[0, 1)``; ``0`` skips dropout.
        rng: ``np.random.Generator`` drawing the masks (layer by layer); unused when ``rate == 0``.

    Returns:
        ``(loss, grads)`` with ``grads`` keyed like ``params``.
    """
    L = _num_layers(params)
    N = X.shape[0]
    keep = 1.0 - rate
    caches = []
    h = X
    for i in range(1, L):
        a = h @ params[f"W{i}"] + params[f"b{i}"]
        mu = a.mean(axis=0)
        var = a.var(axis=0)
        inv_std = 1.0 / np.sqrt(var + BN_EPS)
        xhat = (a - mu) * inv_std
        z = params[f"gamma{i}"] * xhat + params[f"beta{i}"]
        out = np.maximum(z, 0)
        mask = None
        if rate > 0:
            mask = (rng.random(out.shape, dtype=out.dtype) >= rate) * out.dtype.type(1.0 / keep)
            out *= mask
        caches.append((h, xhat, inv_std, z, mask))
        h = out

    WL = params[f"W{L}"]
    scores = h @ WL + params[f"b{L}"]
    loss, dscores = softmax_loss(scores, y)
    loss = loss + l2_penalty(params, reg)

    grads = {f"W{L}": h.T @ dscores + reg * WL, f"b{L}": dscores.sum(axis=0)}
    dh = dscores @ WL.T
    for i in range(L - 1, 0, -1):
        h_in, xhat, inv_std, z, mask = caches[i - 1]
        if mask is not None:
            dh *= mask
        dz = dh * (z > 0)
        grads[f"gamma{i}"] = np.sum(dz * xhat, axis=0)
        grads[f"beta{i}"] = dz.sum(axis=0)
        dxhat = dz * params[f"gamma{i}"]
        da = (inv_std / N) * (N * dxhat - dxhat.sum(axis=0) - xhat * np.sum(dxhat * xhat, axis=0))
        W = params[f"W{i}"]
        grads[f"W{i}"] = h_in.T @ da + reg * W
        grads[f"b{i}"] = da.sum(axis=0)
        if i > 1:
            dh = da @ W.T
    return loss, grads


def w2_numpy_prepare(params, X, y):
    """Converts once: ``X`` of shape ``(N, 1, 28, 28)`` or ``(N, D)`` becomes float32 ``(N, D)``."""
    return _prepare(params, X, y, flatten=True)


def w2_numpy_run(prepared, *, lr=1e-3, reg, dropout, batch_size=200, seed=0, beta1=0.9, beta2=0.999, eps=1e-8):
    """One epoch of Adam on the batch-norm ``fc_net`` over contiguous minibatches of ``X``.

    Adam (bias-corrected): ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g**2``,
    ``p -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)``; ``m = v = 0``, ``t = 0`` at
    the start of the epoch.

    Args:
        prepared: ``(params, X (N, D), y (N,))`` from :func:`w2_numpy_prepare`; not modified.
        lr, beta1, beta2, eps: Adam hyper-parameters.
        reg: L2 strength.
        dropout: drop probability in ``[0, 1)`` (the course's keep probability is ``1 - dropout``).
        batch_size: minibatch size; ``N // batch_size`` steps, a last partial batch is dropped.
        seed: seeds the ``np.random.default_rng`` that draws this epoch's dropout masks.

    Returns:
        ``(params, losses)``: the trained float32 params and the per-step losses (Python floats).
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a drop probability in [0, 1), got {dropout}")
    params, X, y = prepared
    params = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    rng = np.random.default_rng(seed)
    losses = []
    for step in range(_num_steps(X.shape[0], batch_size)):
        batch = slice(step * batch_size, (step + 1) * batch_size)
        loss, grads = w2_loss_and_grads(params, X[batch], y[batch], reg, dropout, rng)
        t = step + 1
        bc1, bc2 = 1.0 - beta1**t, 1.0 - beta2**t
        for k, g in grads.items():
            m[k] *= beta1
            m[k] += (1.0 - beta1) * g
            v[k] *= beta2
            v[k] += (1.0 - beta2) * (g * g)
            params[k] -= lr * (m[k] / bc1) / (np.sqrt(v[k] / bc2) + eps)
        losses.append(float(loss))
    return params, losses


def w2_numpy(params, X, y, *, lr=1e-3, reg, dropout, batch_size=200, seed=0):
    """:func:`w2_numpy_prepare` then :func:`w2_numpy_run`."""
    return w2_numpy_run(
        w2_numpy_prepare(params, X, y), lr=lr, reg=reg, dropout=dropout, batch_size=batch_size, seed=seed
    )


# --------------------------------------------------------------------------------------------
# W3: three-layer convnet, one SGD step
# --------------------------------------------------------------------------------------------


def conv_forward(x, w, b, stride=1, pad=0):
    """Cross-correlation via im2col:
    ``out[n, f, h, w] = sum_{c,i,j} w[f, c, i, j] * xpad[n, c, s*h + i, s*w + j] + b[f]``.

    Args:
        x: ``(N, C, H, W)`` input.
        w: ``(F, C, HH, WW)`` filters.
        b: ``(F,)`` biases.
        stride: step between windows.
        pad: symmetric zero padding of H and W.

    Returns:
        ``(out, cache)`` with ``out`` of shape ``(N, F, H', W')``,
        ``H' = (H + 2 pad - HH) // stride + 1``.
    """
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    # (N, C, H', W', HH, WW) view, no copy; the reshape below is the im2col gather.
    windows = sliding_window_view(xp, (HH, WW), axis=(2, 3))[:, :, ::stride, ::stride]
    Ho, Wo = windows.shape[2:4]
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(N * Ho * Wo, C * HH * WW)
    out = cols @ w.reshape(F, -1).T + b  # (N * H' * W', F)
    out = np.ascontiguousarray(out.reshape(N, Ho, Wo, F).transpose(0, 3, 1, 2))
    return out, (x.shape, w, cols, stride, pad)


def conv_backward(dout, cache, input_grad=True):
    """im2col backward: ``dw = dout_mat.T @ cols``, ``db = sum(dout)``,
    ``dx = col2im(dout_mat @ w_mat)``.

    Args:
        dout: ``(N, F, H', W')`` upstream gradient.
        cache: from :func:`conv_forward`.
        input_grad: compute ``dx`` (col2im, a loop over the ``HH x WW`` kernel offsets); ``False``
            returns ``dx = None``, as autodiff does for an input that needs no gradient.

    Returns:
        ``(dx (N, C, H, W) or None, dw (F, C, HH, WW), db (F,))``.
    """
    (N, C, H, W), w, cols, stride, pad = cache
    F, _, HH, WW = w.shape
    Ho, Wo = dout.shape[2:]
    dout_mat = dout.transpose(0, 2, 3, 1).reshape(-1, F)  # (N * H' * W', F)
    dw = (dout_mat.T @ cols).reshape(w.shape)
    db = dout_mat.sum(axis=0)
    if not input_grad:
        return None, dw, db
    dcols = (dout_mat @ w.reshape(F, -1)).reshape(N, Ho, Wo, C, HH, WW)
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dout.dtype)
    for i in range(HH):
        for j in range(WW):
            dxp[:, :, i : i + stride * Ho : stride, j : j + stride * Wo : stride] += dcols[:, :, :, :, i, j].transpose(
                0, 3, 1, 2
            )
    return dxp[:, :, pad : pad + H, pad : pad + W], dw, db


def max_pool_forward(x):
    """2x2 max pool, stride 2, by reshaping to ``(N, C, H/2, 2, W/2, 2)``.

    Args:
        x: ``(N, C, H, W)`` with even ``H`` and ``W``.

    Returns:
        ``(out (N, C, H/2, W/2), cache)``.
    """
    N, C, H, W = x.shape
    if H % 2 or W % 2:
        raise ValueError(f"x: expected even H and W for a 2x2 pool, got shape {x.shape}")
    xr = x.reshape(N, C, H // 2, 2, W // 2, 2)
    # the window's max as maxima of its four corners: numpy's reductions over the length-2
    # axes, xr.max(axis=(3, 5)), are ~30x slower
    out = np.maximum(
        np.maximum(xr[:, :, :, 0, :, 0], xr[:, :, :, 0, :, 1]), np.maximum(xr[:, :, :, 1, :, 0], xr[:, :, :, 1, :, 1])
    )
    return out, (xr, out)


def max_pool_backward(dout, cache):
    """``dx = dout`` at each window's maximum, 0 elsewhere.

    On ties the first maximum in row-major order takes the gradient, as in ``jaxnets`` and
    PyTorch (the course's reshape version splits it among the ties instead).

    Args:
        dout: ``(N, C, H/2, W/2)`` upstream gradient.
        cache: from :func:`max_pool_forward`.

    Returns:
        ``dx`` of shape ``(N, C, H, W)``.
    """
    xr, out = cache
    dx = np.zeros(xr.shape, dtype=dout.dtype)  # (N, C, H/2, 2, W/2, 2)
    taken = np.zeros(out.shape, dtype=bool)
    for a, b in ((0, 0), (0, 1), (1, 0), (1, 1)):  # row-major window order
        first = (xr[:, :, :, a, :, b] == out) & ~taken
        dx[:, :, :, a, :, b] = dout * first
        taken |= first
    N, C, Hh, _, Wh, _ = xr.shape
    return dx.reshape(N, C, 2 * Hh, 2 * Wh)


def w3_init_params(
    seed=0, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10, weight_scale=1e-3
):
    """The course's ``ThreeLayerConvNet`` init: ``W ~ weight_scale * N(0, 1)``, ``b = 0``.

    Returns:
        float32 ``{W1 (F, C, HH, WW), b1 (F,), W2 (F*H/2*W/2, hidden), b2 (hidden,),
        W3 (hidden, classes), b3 (classes,)}``.
    """
    rng = np.random.default_rng(seed)
    C, H, W = input_dim
    shapes = {
        "W1": (num_filters, C, filter_size, filter_size),
        "W2": (num_filters * (H // 2) * (W // 2), hidden_dim),
        "W3": (hidden_dim, num_classes),
    }
    params = {}
    for i, shape in enumerate(shapes.values(), start=1):
        params[f"W{i}"] = (weight_scale * rng.standard_normal(shape)).astype(np.float32)
        params[f"b{i}"] = np.zeros(shape[0] if i == 1 else shape[1], np.float32)
    return params


def w3_loss_and_grads(params, X, y, reg, input_grad=False):
    """Three-layer convnet ``conv(stride 1, pad (HH-1)/2) - relu - pool 2x2 - affine - relu -
    affine - softmax``: loss and hand backward.

    Args:
        params: ``W1 (F, C, HH, WW), b1 (F,), W2 (F*H/2*W/2, Hd), b2 (Hd,), W3 (Hd, K), b3 (K,)``.
        X: ``(N, C, H, W)`` images.
        y: ``(N,)`` int labels.
        reg: L2 strength.
        input_grad: also return ``grads["X"]`` (exercises col2im); off by default because the
            training step needs no gradient for the data.

    Returns:
        ``(loss, grads)`` with ``grads`` keyed like ``params``.
    """
    W1, b1, W2, b2, W3, b3 = (params[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    N = X.shape[0]
    c, conv_cache = conv_forward(X, W1, b1, stride=1, pad=(W1.shape[2] - 1) // 2)
    r = np.maximum(c, 0)
    p, pool_cache = max_pool_forward(r)
    flat = p.reshape(N, -1)
    h = np.maximum(flat @ W2 + b2, 0)
    scores = h @ W3 + b3
    loss, dscores = softmax_loss(scores, y)
    loss = loss + l2_penalty(params, reg)

    grads = {"W3": h.T @ dscores + reg * W3, "b3": dscores.sum(axis=0)}
    dh = dscores @ W3.T
    dh *= h > 0
    grads["W2"] = flat.T @ dh + reg * W2
    grads["b2"] = dh.sum(axis=0)
    dp = (dh @ W2.T).reshape(p.shape)
    dr = max_pool_backward(dp, pool_cache)
    dr *= r > 0
    dx, dW1, db1 = conv_backward(dr, conv_cache, input_grad=input_grad)
    grads["W1"] = dW1 + reg * W1
    grads["b1"] = db1
    if input_grad:
        grads["X"] = dx
    return loss, grads


def w3_numpy_prepare(params, X, y):
    """Converts once: float32 NCHW ``X (N, C, H, W)``, int64 ``y``, float32 params."""
    return _prepare(params, X, y, flatten=False)


def w3_numpy_run(prepared, *, lr=1e-3, reg, input_grad=False):
    """One SGD step of the three-layer convnet on the whole of ``X``.

    Args:
        prepared: ``(params, X (N, C, H, W), y (N,))`` from :func:`w3_numpy_prepare`; not modified.
        lr: SGD step size.
        reg: L2 strength.
        input_grad: also compute the (unused) input gradient via col2im, as the course's
            ``conv_relu_pool_backward`` does; autodiff frameworks skip it.

    Returns:
        ``(params, loss)``: the updated float32 params and the step's loss (a Python float).
    """
    params, X, y = prepared
    loss, grads = w3_loss_and_grads(params, X, y, reg, input_grad=input_grad)
    params = {k: p - lr * grads[k] for k, p in params.items()}
    return params, float(loss)


def w3_numpy_step(params, X, y, *, lr=1e-3, reg):
    """:func:`w3_numpy_prepare` then :func:`w3_numpy_run`."""
    return w3_numpy_run(w3_numpy_prepare(params, X, y), lr=lr, reg=reg)


# --------------------------------------------------------------------------------------------
# W6: the README's Fashion-MNIST convnet, Adam, one epoch
# --------------------------------------------------------------------------------------------


def w6_init_params(seed=0, input_dim=(1, 28, 28), channels=(32, 64), hidden_dims=(256,), num_classes=10):
    """``convnet`` shapes with He-scaled normal weights, zero biases, ``gamma = 1``, ``beta = 0``.

    Returns:
        float32 ``{W1 (32, 1, 3, 3), b1, gamma1, beta1, W2 (64, 32, 3, 3), ..., W3 (3136, 256), b3,
        gamma3, beta3, W4 (256, 10), b4}``.
    """
    rng = np.random.default_rng(seed)
    C, H, W = input_dim
    params = {}
    c_in = C
    for i, c_out in enumerate(channels, start=1):
        params[f"W{i}"] = (np.sqrt(2.0 / (9 * c_in)) * rng.standard_normal((c_out, c_in, 3, 3))).astype(np.float32)
        params[f"b{i}"] = np.zeros(c_out, np.float32)
        params[f"gamma{i}"], params[f"beta{i}"] = np.ones(c_out, np.float32), np.zeros(c_out, np.float32)
        c_in = c_out
    dims = [c_in * (H >> len(channels)) * (W >> len(channels)), *hidden_dims, num_classes]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True), start=len(channels) + 1):
        params[f"W{i}"] = (np.sqrt(2.0 / a) * rng.standard_normal((a, b))).astype(np.float32)
        params[f"b{i}"] = np.zeros(b, np.float32)
        if i < len(channels) + len(dims) - 1:
            params[f"gamma{i}"], params[f"beta{i}"] = np.ones(b, np.float32), np.zeros(b, np.float32)
    return params


def _bn_rows_forward(a, gamma, beta):
    """Batch norm of ``a`` (M, D) over its rows: ``(z, cache)``."""
    mu = a.mean(axis=0)
    var = a.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + BN_EPS)
    xhat = (a - mu) * inv_std
    return gamma * xhat + beta, (xhat, inv_std, gamma)


def _bn_rows_backward(dz, cache):
    """``(da, dgamma, dbeta)``: the closed form of ``w2_loss_and_grads``."""
    xhat, inv_std, gamma = cache
    M = dz.shape[0]
    dxhat = dz * gamma
    da = (inv_std / M) * (M * dxhat - dxhat.sum(axis=0) - xhat * np.sum(dxhat * xhat, axis=0))
    return da, np.sum(dz * xhat, axis=0), dz.sum(axis=0)


def w6_loss_and_grads(params, X, y, reg, rate, rng):
    """``convnet``: ``{conv 3x3 pad 1 - spatial batch norm - relu - max pool 2x2} x 2 - {affine -
    batch norm - relu - dropout} - affine - softmax``: loss and hand backward (im2col convs).

    Args:
        params: from :func:`w6_init_params`.
        X: ``(N, C, H, W)`` images.
        y: ``(N,)`` int labels.
        reg: L2 strength.
        rate: dropout drop probability in ``[0, 1)``.
        rng: ``np.random.Generator`` drawing the dropout mask.

    Returns:
        ``(loss, grads)`` with ``grads`` keyed like ``params``.
    """
    n_conv = sum(1 for k in params if k.startswith("W") and params[k].ndim == 4)
    L = sum(1 for k in params if k.startswith("W"))
    N = X.shape[0]
    caches, h = [], X
    for i in range(1, n_conv + 1):
        c, conv_cache = conv_forward(h, params[f"W{i}"], params[f"b{i}"], stride=1, pad=1)
        Nn, Cc, Hh, Ww = c.shape
        rows = c.transpose(0, 2, 3, 1).reshape(-1, Cc)
        z, bn_cache = _bn_rows_forward(rows, params[f"gamma{i}"], params[f"beta{i}"])
        r = np.ascontiguousarray(np.maximum(z, 0).reshape(Nn, Hh, Ww, Cc).transpose(0, 3, 1, 2))
        h, pool_cache = max_pool_forward(r)
        caches.append((conv_cache, bn_cache, r, pool_cache))
    h = h.reshape(N, -1)
    fc_caches = []
    for i in range(n_conv + 1, L):
        a = h @ params[f"W{i}"] + params[f"b{i}"]
        z, bn_cache = _bn_rows_forward(a, params[f"gamma{i}"], params[f"beta{i}"])
        out = np.maximum(z, 0)
        mask = None
        if rate > 0:
            mask = (rng.random(out.shape, dtype=out.dtype) >= rate) * out.dtype.type(1.0 / (1.0 - rate))
            out = out * mask
        fc_caches.append((h, bn_cache, z, mask))
        h = out
    WL = params[f"W{L}"]
    scores = h @ WL + params[f"b{L}"]
    loss, dscores = softmax_loss(scores, y)
    loss = loss + l2_penalty(params, reg)

    grads = {f"W{L}": h.T @ dscores + reg * WL, f"b{L}": dscores.sum(axis=0)}
    dh = dscores @ WL.T
    for i in range(L - 1, n_conv, -1):
        h_in, bn_cache, z, mask = fc_caches[i - n_conv - 1]
        if mask is not None:
            dh = dh * mask
        da, grads[f"gamma{i}"], grads[f"beta{i}"] = _bn_rows_backward(dh * (z > 0), bn_cache)
        W = params[f"W{i}"]
        grads[f"W{i}"] = h_in.T @ da + reg * W
        grads[f"b{i}"] = da.sum(axis=0)
        dh = da @ W.T
    for i in range(n_conv, 0, -1):
        conv_cache, bn_cache, r, pool_cache = caches[i - 1]
        Nn, Cc, Hh, Ww = r.shape
        dr = max_pool_backward(dh.reshape(Nn, Cc, Hh // 2, Ww // 2), pool_cache)
        dr *= r > 0
        drows = dr.transpose(0, 2, 3, 1).reshape(-1, Cc)
        dc, grads[f"gamma{i}"], grads[f"beta{i}"] = _bn_rows_backward(drows, bn_cache)
        dc = np.ascontiguousarray(dc.reshape(Nn, Hh, Ww, Cc).transpose(0, 3, 1, 2))
        dh, dW, grads[f"b{i}"] = conv_backward(dc, conv_cache, input_grad=i > 1)
        grads[f"W{i}"] = dW + reg * params[f"W{i}"]
    return loss, grads


def w6_numpy_prepare(params, X, y):
    """Converts once: float32 NCHW ``X (N, C, H, W)``, int64 ``y``, float32 params."""
    return _prepare(params, X, y, flatten=False)


def w6_numpy_run(prepared, *, lr=1e-3, reg, dropout, batch_size=100, seed=0, beta1=0.9, beta2=0.999, eps=1e-8):
    """One epoch of Adam on the convnet over contiguous minibatches (as :func:`w2_numpy_run`).

    Returns:
        ``(params, losses)``.
    """
    params, X, y = prepared
    params = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    rng = np.random.default_rng(seed)
    losses = []
    for step in range(_num_steps(X.shape[0], batch_size)):
        batch = slice(step * batch_size, (step + 1) * batch_size)
        loss, grads = w6_loss_and_grads(params, X[batch], y[batch], reg, dropout, rng)
        t = step + 1
        bc1, bc2 = 1.0 - beta1**t, 1.0 - beta2**t
        for k, g in grads.items():
            m[k] *= beta1
            m[k] += (1.0 - beta1) * g
            v[k] *= beta2
            v[k] += (1.0 - beta2) * (g * g)
            params[k] -= lr * (m[k] / bc1) / (np.sqrt(v[k] / bc2) + eps)
        losses.append(float(loss))
    return params, losses


# --------------------------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------------------------


def _numeric_grad(f, x, h=1e-5):
    """Centered differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` of scalar ``f()``, perturbing
    ``x`` in place (and restoring it)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad


def _rel_error(x, y):
    """``max |x - y| / max(1e-8, |x| + |y|)``, elementwise, like the course's."""
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _gradcheck(name, loss_and_grads, params, extra=None):
    """Compares hand gradients with centered differences for every param (float64)."""
    _, grads = loss_and_grads()
    worst = 0.0
    for k, p in {**params, **(extra or {})}.items():
        num = _numeric_grad(lambda: loss_and_grads()[0], p)
        err = _rel_error(num, grads[k])
        worst = max(worst, err)
        print(f"  {name} d{k:<7} rel error {err:.2e}")
    assert worst < 1e-6, f"{name}: gradient check failed, worst rel error {worst:.2e}"
    return worst


def _self_check_grads():
    rng = np.random.default_rng(0)

    def f64(params):
        return {k: v.astype(np.float64) for k, v in params.items()}

    print("gradient checks (float64, centered differences):")
    p1 = f64(w1_init_params(1, D=6, H=5, C=3, std=0.5))
    X1, y1 = rng.standard_normal((4, 6)), rng.integers(0, 3, 4)
    _gradcheck("W1", lambda: w1_loss_and_grads(p1, X1, y1, 0.1), p1)

    p2 = f64(w2_init_params(2, D=6, hidden_dims=(5, 4), C=3, weight_scale=0.5))
    for k in p2:  # non-trivial gamma/beta so their gradients are exercised
        if k.startswith(("gamma", "beta")):
            p2[k] = p2[k] + 0.3 * rng.standard_normal(p2[k].shape)
    X2, y2 = rng.standard_normal((7, 6)), rng.integers(0, 3, 7)
    for rate in (0.0, 0.3):
        # a fresh generator per evaluation: every perturbed loss sees the same masks
        _gradcheck(
            f"W2 (dropout {rate})", lambda: w2_loss_and_grads(p2, X2, y2, 0.1, rate, np.random.default_rng(3)), p2
        )

    p3 = f64(
        w3_init_params(
            3, input_dim=(2, 6, 6), num_filters=3, filter_size=3, hidden_dim=5, num_classes=4, weight_scale=0.3
        )
    )
    X3, y3 = rng.standard_normal((2, 2, 6, 6)), rng.integers(0, 4, 2)
    _gradcheck("W3", lambda: w3_loss_and_grads(p3, X3, y3, 0.1, input_grad=True), p3, {"X": X3})

    # conv with stride 2 and 7x7 / pad 3 filters against a direct loop
    x = rng.standard_normal((2, 3, 9, 9))
    w = rng.standard_normal((4, 3, 7, 7))
    b = rng.standard_normal(4)
    for stride in (1, 2):
        out, cache = conv_forward(x, w, b, stride=stride, pad=3)
        xp = np.pad(x, ((0, 0), (0, 0), (3, 3), (3, 3)))
        ref = np.empty_like(out)
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                patch = xp[:, :, stride * i : stride * i + 7, stride * j : stride * j + 7]
                ref[:, :, i, j] = np.einsum("nchw,fchw->nf", patch, w) + b
        dout = rng.standard_normal(out.shape)
        dx, dw, db = conv_backward(dout, cache)
        num_dx = _numeric_grad(lambda: np.sum(conv_forward(x, w, b, stride, 3)[0] * dout), x)
        num_dw = _numeric_grad(lambda: np.sum(conv_forward(x, w, b, stride, 3)[0] * dout), w)
        errs = (_rel_error(out, ref), _rel_error(dx, num_dx), _rel_error(dw, num_dw))
        print(f"  conv 7x7 pad 3 stride {stride}: out {errs[0]:.2e}  dx {errs[1]:.2e}  dw {errs[2]:.2e}")
        assert max(errs) < 1e-6, "conv check failed"

    # max pool ties: the first maximum (row-major) takes the gradient
    x = np.array([[[[1.0, 3.0, 0.0, 0.0], [3.0, 2.0, 0.0, 0.0]]]])
    out, cache = max_pool_forward(x)
    dx = max_pool_backward(np.array([[[[5.0, 7.0]]]]), cache)
    assert np.array_equal(out, [[[[3.0, 0.0]]]])
    assert np.array_equal(dx, [[[[0.0, 5.0, 7.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]]), dx
    print("  max pool ties: gradient to the first maximum")


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


def _synthetic(seed, shape, num_classes):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape, dtype=np.float32), rng.integers(0, num_classes, shape[0])


def _self_check_timings(full):
    n1, n2, reps = (49_000, 55_000, 1) if full else (2_000, 2_000, 3)
    print(f"\ntimings ({'full' if full else 'small'} sizes; median of {reps} run(s), W3 of 5):")

    X, y = _synthetic(1, (n1, 3, 32, 32), 10)
    prepared = w1_numpy_prepare(w1_init_params(1), X, y)
    t, (_, losses) = _time(lambda: w1_numpy_run(prepared, lr=1e-3, reg=0.25), reps)
    print(f"  W1 numpy, {n1} samples, {len(losses)} steps: {t:8.3f} s   loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    del X, prepared

    X, y = _synthetic(2, (n2, 1, 28, 28), 10)
    for rate in (0.0, 0.5):
        prepared = w2_numpy_prepare(w2_init_params(2), X, y)
        t, (_, losses) = _time(lambda: w2_numpy_run(prepared, lr=1e-3, reg=1e-3, dropout=rate, seed=0), reps)
        print(
            f"  W2 numpy, {n2} samples, {len(losses)} steps, dropout {rate}: {t:8.3f} s   "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        )

    X, y = _synthetic(3, (50, 3, 32, 32), 10)
    prepared = w3_numpy_prepare(w3_init_params(3), X, y)
    for input_grad in (False, True):
        t, (_, loss) = _time(lambda: w3_numpy_run(prepared, lr=1e-3, reg=1e-3, input_grad=input_grad), 5)
        print(f"  W3 numpy, one step, N=50, input_grad={input_grad}: {t * 1e3:8.1f} ms   loss {loss:.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="time the full benchmark sizes")
    args = parser.parse_args()
    _self_check_grads()
    _self_check_timings(args.full)
