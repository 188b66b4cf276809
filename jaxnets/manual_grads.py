"""Hand-derived backward passes, and the layers wired to them through ``jax.custom_vjp``.

For each layer of ``layers`` (and each loss of ``losses``) this module has

* ``<name>_backward(dout, cache)``: the chain rule worked out by hand, from the cache that
  ``layers.<name>_forward`` returns (the forward is never re-derived here), returning the
  course's tuple, e.g. ``(dx, dw, db)``;
* ``<name>``: a twin of ``layers.<name>`` with the same signature whose gradient under
  ``jax.grad`` / ``jax.vjp`` *is* that hand-derived backward. A model built with
  ``ops=manual_grads`` therefore trains on the derivations, under ``jit``, ``grad`` and ``vmap``.

Notation: ``dout`` is dL/d(out) and has the shape of ``out``; ``N`` is the batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets import layers, losses
from jaxnets.layers import WindowParam
from jaxnets.typing import Array, Grads, Params

__all__ = [
    "conv2d_nhwc",
    "conv2d_nhwc_backward",
    "max_pool2d_nhwc",
    "max_pool2d_nhwc_backward",
    "avg_pool2d_nhwc",
    "avg_pool2d_nhwc_backward",
    "affine_backward",
    "relu_backward",
    "sigmoid_backward",
    "tanh_backward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "spatial_batchnorm_backward",
    "layernorm_backward",
    "groupnorm_backward",
    "batchnorm_inference_backward",
    "dropout_backward",
    "conv2d_backward",
    "max_pool2d_backward",
    "avg_pool2d_backward",
    "fold_patches",
    "fold_conv_patches",
    "softmax_loss_backward",
    "svm_loss_backward",
    "squared_error_backward",
    "sigmoid_bce_backward",
    "l2_penalty_backward",
    "l1_penalty_backward",
    "two_layer_net_loss_and_grads",
    "with_backward",
    # custom_vjp twins, same names and signatures as in layers / losses
    "affine",
    "relu",
    "sigmoid",
    "tanh",
    "batchnorm",
    "spatial_batchnorm",
    "layernorm",
    "groupnorm",
    "batchnorm_inference",
    "update_running_stats",
    "dropout",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "softmax_loss",
    "svm_loss",
    "squared_error",
    "sigmoid_bce",
    "l2_penalty",
    "l1_penalty",
]


# ---------------------------------------------------------------------------------------------
# Affine and activations.


def affine_backward(dout, cache) -> Grads:
    """``dx = dout w^T`` (reshaped like x), ``dw = x^T dout``, ``db = sum_n dout``.

    Args:
      dout: (N, M) upstream gradient.
      cache: ``(x, w)`` from ``layers.affine_forward``.

    Returns:
      ``(dx, dw, db)`` shaped like ``x`` (N, d1..dk), ``w`` (D, M), ``b`` (M,).
    """
    x, w = cache
    x_rows = x.reshape(x.shape[0], -1)
    return (dout @ w.T).reshape(x.shape), x_rows.T @ dout, jnp.sum(dout, axis=0)


def relu_backward(dout, cache) -> Grads:
    """``dx = dout * 1[x > 0]``."""
    return jnp.where(cache > 0, dout, 0)


def sigmoid_backward(dout, cache) -> Grads:
    """``dx = dout * s (1 - s)`` with ``s = sigmoid(x)`` (the cached output)."""
    return dout * cache * (1 - cache)


def tanh_backward(dout, cache) -> Grads:
    """``dx = dout * (1 - t^2)`` with ``t = tanh(x)`` (the cached output)."""
    return dout * (1 - cache * cache)


# ---------------------------------------------------------------------------------------------
# Normalisation.


def _normalize_backward_staged(dx_hat, xc, inv_std, axes):
    """Backward of ``x_hat = (x - mu) inv_std`` through its computational graph, node by node."""
    M = _count(xc, axes)
    # x_hat = xc * inv_std
    dxc = dx_hat * inv_std
    dinv_std = jnp.sum(dx_hat * xc, axis=axes, keepdims=True)
    # inv_std = (var + eps)^(-1/2)
    dvar = -0.5 * inv_std**3 * dinv_std
    # var = mean(xc^2)
    dxc = dxc + 2.0 * xc * dvar / M
    # xc = x - mu, mu = mean(x)
    dmu = -jnp.sum(dxc, axis=axes, keepdims=True)
    return dxc + dmu / M


def _normalize_backward(dx_hat, x_hat, inv_std, axes):
    """Closed form: ``dx = inv_std / M * (M dx_hat - sum dx_hat - x_hat sum(dx_hat x_hat))``."""
    M = _count(dx_hat, axes)
    sum_d = jnp.sum(dx_hat, axis=axes, keepdims=True)
    sum_dx = jnp.sum(dx_hat * x_hat, axis=axes, keepdims=True)
    return inv_std / M * (M * dx_hat - sum_d - x_hat * sum_dx)


def _count(x, axes):
    axes = (axes,) if isinstance(axes, int) else axes
    count = 1
    for a in axes:
        count *= x.shape[a]
    return count


def _scaled_norm_backward(dout, cache, axis):
    """``(dx, dgamma, dbeta)`` of ``gamma * x_hat + beta`` with ``x_hat`` normalised along ``axis`` (N, D)."""
    x_hat, _, inv_std, gamma = cache
    dx = _normalize_backward(dout * gamma, x_hat, inv_std, axis)
    return dx, jnp.sum(dout * x_hat, axis=0), jnp.sum(dout, axis=0)


def batchnorm_backward(dout, cache) -> Grads:
    """Chain rule node by node: ``dgamma = sum dout x_hat``, ``dbeta = sum dout``, then back
    through ``x_hat = xc inv_std``, ``inv_std = (var + eps)^-1/2``, ``var = mean xc^2``,
    ``xc = x - mu``, ``mu = mean x``.

    Args:
      dout: (N, D).
      cache: ``(x_hat, xc, inv_std, gamma)`` from ``layers.batchnorm_forward``.

    Returns:
      ``(dx, dgamma, dbeta)``: (N, D), (D,), (D,).
    """
    x_hat, xc, inv_std, gamma = cache
    dx = _normalize_backward_staged(dout * gamma, xc, inv_std, 0)
    return dx, jnp.sum(dout * x_hat, axis=0), jnp.sum(dout, axis=0)


def batchnorm_backward_alt(dout, cache) -> Grads:
    """Simplified: ``dx = gamma inv_std / N * (N dout - sum dout - x_hat sum(dout x_hat))``.

    Same arguments and results as ``batchnorm_backward``.
    """
    return _scaled_norm_backward(dout, cache, 0)


def spatial_batchnorm_backward(dout, cache) -> Grads:
    """``batchnorm_backward_alt`` on the (N*H*W, C) view of ``dout`` (N, C, H, W).

    Returns:
      ``(dx, dgamma, dbeta)``: (N, C, H, W), (C,), (C,).
    """
    dx_rows, dgamma, dbeta = batchnorm_backward_alt(layers.nchw_to_rows(dout), cache)
    return layers.rows_to_nchw(dx_rows, dout.shape), dgamma, dbeta


def layernorm_backward(dout, cache) -> Grads:
    """Batch norm's closed form with the roles of the axes swapped (statistics per sample):
    ``dx = inv_std / D * (D dx_hat - sum_d dx_hat - x_hat sum_d(dx_hat x_hat))``, ``dx_hat = dout gamma``.

    Returns:
      ``(dx, dgamma, dbeta)``: (N, D), (D,), (D,).
    """
    return _scaled_norm_backward(dout, cache, 1)


def groupnorm_backward(dout, cache) -> Grads:
    """Layer norm's closed form per (sample, group) over the group's channels and H, W.

    Args:
      dout: (N, C, H, W).
      cache: ``(x_hat, xc, inv_std, gamma)`` with grouped (N, G, C//G, H, W) tensors.

    Returns:
      ``(dx, dgamma, dbeta)``: (N, C, H, W), (C,), (C,).
    """
    x_hat, _, inv_std, gamma = cache
    x_hat_nchw = x_hat.reshape(dout.shape)
    dx_hat = (dout * gamma[:, None, None]).reshape(x_hat.shape)
    dx = _normalize_backward(dx_hat, x_hat, inv_std, (2, 3, 4)).reshape(dout.shape)
    return dx, jnp.sum(dout * x_hat_nchw, axis=(0, 2, 3)), jnp.sum(dout, axis=(0, 2, 3))


def batchnorm_inference_backward(dout, cache) -> Grads:
    """Constant statistics: ``dx = dout gamma inv_std``, ``drunning_mean = -sum dx``,
    ``drunning_var = -1/2 sum dout gamma x_hat inv_std^2``.

    Args:
      dout: (N, D) or (N, C, H, W).
      cache: ``(x_hat, inv_std, gamma)`` from ``layers.batchnorm_inference_forward``.

    Returns:
      ``(dx, dgamma, dbeta, drunning_mean, drunning_var)``.
    """
    x_hat, inv_std, gamma = cache
    shape = (1, -1) if dout.ndim == 2 else (1, -1, 1, 1)
    axes = tuple(a for a in range(dout.ndim) if a != 1)
    dx_hat = dout * gamma.reshape(shape)
    dx = dx_hat * inv_std.reshape(shape)
    return (
        dx,
        jnp.sum(dout * x_hat, axis=axes),
        jnp.sum(dout, axis=axes),
        -jnp.sum(dx, axis=axes),
        -0.5 * jnp.sum(dx_hat * x_hat, axis=axes) * inv_std**2,
    )


# ---------------------------------------------------------------------------------------------
# Dropout.


def dropout_backward(dout, cache) -> Grads:
    """``dx = dout * mask / (1 - rate)``: the gradient flows only through the kept units."""
    return dout * cache


# ---------------------------------------------------------------------------------------------
# Convolution and pooling.


def _place_windows(pieces, param: WindowParam):
    """Sum of ``pieces[k]`` (..., H', W') each spread to its window offset k: (..., H, W).

    Piece ``i*WW + j`` lands on rows ``i, i+s, ...`` and columns ``j, j+s, ...`` of the padded
    input (``lax.pad`` with interior padding ``s - 1``); negative edge padding crops the zero
    padding of the forward. XLA fuses the HH*WW pads and their sum into one pass.
    """
    _, _, H, W = param.input_shape
    HH, WW = param.size
    Ho, Wo = param.out_hw
    p, s = param.pad, param.stride
    zero = jnp.zeros((), pieces[0].dtype)
    lead = [(0, 0, 0)] * (pieces[0].ndim - 2)

    def placed(i, j):
        return lax.pad(
            pieces[i * WW + j],
            zero,
            lead + [(i - p, H + p - i - s * (Ho - 1) - 1, s - 1), (j - p, W + p - j - s * (Wo - 1) - 1, s - 1)],
        )

    return sum(placed(i, j) for i in range(HH) for j in range(WW))


def fold_patches(dcols, param: WindowParam) -> Array:
    """col2im, the adjoint of stacking every window (im2col): add each window's gradient back in place.

    Args:
      dcols: (N, C, HH*WW, H', W') gradient with respect to the windows.

    Returns:
      (N, C, H, W) gradient with respect to the unpadded input; overlapping windows add up.
    """
    return _place_windows([dcols[:, :, k] for k in range(dcols.shape[2])], param)


def fold_conv_patches(dcols, param: WindowParam) -> Array:
    """col2im, the adjoint of ``layers.conv_patches``: add each column's gradient back to its window.

    Args:
      dcols: (C*HH*WW, N*H'*W') gradient with respect to the im2col matrix.

    Returns:
      (N, C, H, W) gradient with respect to the unpadded input; overlapping windows add up.

    >>> p = layers.WindowParam((3, 3), 1, 1, (1, 1, 3, 3))
    >>> fold_conv_patches(jnp.ones((9, 9)), p)[0, 0]  # how many 3x3 windows cover each pixel
    Array([[4., 6., 4.],
           [6., 9., 6.],
           [4., 6., 4.]], dtype=float32)
    """
    N, C, _, _ = param.input_shape
    K = param.size[0] * param.size[1]
    d = dcols.reshape(C, K, N, *param.out_hw)
    dx_cn = _place_windows([d[:, k] for k in range(K)], param)  # (C, N, H, W)
    return jnp.transpose(dx_cn, (1, 0, 2, 3))


def conv2d_backward(dout, cache) -> Grads:
    """``db = sum_{n,h,w} dout``, ``dw = (cols dout_mat^T)^T``, ``dx = col2im(w_mat^T dout_mat)``.

    With ``dout_mat`` = ``dout`` as (F, N*H'*W') and ``w_mat`` = ``w`` as (F, C*HH*WW): both
    gradients are one matrix product each (``dx`` is dropped by XLA when nothing uses it).

    Args:
      dout: (N, F, H', W').
      cache: ``(cols, w, param)`` from ``layers.conv2d_forward``.

    Returns:
      ``(dx, dw, db)``: (N, C, H, W), (F, C, HH, WW), (F,).
    """
    cols, w, param = cache
    F = w.shape[0]
    dout_mat = jnp.transpose(dout, (1, 0, 2, 3)).reshape(F, -1)
    w_mat = w.reshape(F, -1)
    # dw^T as (C*HH*WW, F) = cols @ dout_mat^T: XLA:CPU runs this product ~1.25x faster than
    # dout_mat @ cols^T (a 51200-long contraction into a 32 x 147 result in the benchmark's
    # convnet); the barrier stops XLA from folding the transpose back into the product.
    dw = lax.optimization_barrier(cols @ dout_mat.T).T.reshape(w.shape)
    dx = fold_conv_patches(w_mat.T @ dout_mat, param)
    return dx, dw, jnp.sum(dout, axis=(0, 2, 3))


def _tiles(param: WindowParam):
    """True when the windows tile the input exactly (stride == size, no padding)."""
    return param.pad == 0 and param.size == (param.stride, param.stride)


def max_pool2d_backward(dout, cache) -> Grads:
    """``dx`` = ``dout`` routed to the argmax of each window (first maximum on ties), 0 elsewhere.

    When the windows tile the input (stride == size) this is one select on the
    (N, C, H', size, W', size) view of ``dx``; otherwise the routed windows are folded back
    (col2im, as in ``fold_patches``).

    Args:
      dout: (N, C, H', W').
      cache: ``(argmax, param)`` from ``layers.max_pool2d_forward``.

    Returns:
      ``dx`` (N, C, H, W).
    """
    argmax, param = cache
    HH, WW = param.size
    if _tiles(param):
        offset = (jnp.arange(HH)[:, None] * WW + jnp.arange(WW)[None, :])[None, None, None, :, None, :]
        hit = argmax[:, :, :, None, :, None] == offset
        return jnp.where(hit, dout[:, :, :, None, :, None], 0).reshape(param.input_shape)
    return _place_windows([jnp.where(argmax == k, dout, 0) for k in range(HH * WW)], param)


def avg_pool2d_backward(dout, cache) -> Grads:
    """``dx`` = ``dout / (size * size)`` spread over each window (overlaps add up)."""
    param = cache
    HH, WW = param.size
    share = dout / (HH * WW)
    if _tiles(param):
        N, C, Ho, Wo = dout.shape
        return jnp.broadcast_to(share[:, :, :, None, :, None], (N, C, Ho, HH, Wo, WW)).reshape(param.input_shape)
    return _place_windows([share] * (HH * WW), param)


def conv2d_nhwc_backward(dout, cache):
    """``dw = patches^T dout_mat``, ``db = sum dout``, ``dx = fold(dout_mat w_mat^T)``, channels last.

    ``dout_mat`` is ``dout`` (N, H', W', F) as (N*H'*W', F), a free view; the fold adds each
    offset's (N, H', W', C) slice of the patch gradient back at its shift (pads fused into one
    sum, and the forward's zero padding cropped).

    Returns:
      ``(dx, dw, db)``: (N, H, W, C), (F, C, HH, WW), (F,).
    """
    patches, w, pad = cache
    F, C, HH, WW = w.shape
    N, Ho, Wo, _ = dout.shape
    H, W = Ho + HH - 1 - 2 * pad, Wo + WW - 1 - 2 * pad
    dout_mat = dout.reshape(N * Ho * Wo, F)
    dw = jnp.transpose((patches.T @ dout_mat).reshape(HH, WW, C, F), (3, 2, 0, 1))
    dpatches = (dout_mat @ layers._nhwc_weight(w).T).reshape(N, Ho, Wo, HH * WW, C)
    zero = jnp.zeros((), dout.dtype)

    def placed(i, j):  # offset (i, j) read x_pad[:, i:i+H', j:j+W']
        piece = dpatches[:, :, :, i * WW + j, :]
        widths = [(0, 0, 0), (i - pad, H + pad - i - Ho, 0), (j - pad, W + pad - j - Wo, 0), (0, 0, 0)]
        return lax.pad(piece, zero, widths)

    dx = sum(placed(i, j) for i in range(HH) for j in range(WW))
    return dx, dw, jnp.sum(dout_mat, axis=0)


def _untile(tiles):
    """(N, Ho, size, Wo, size, C) window tiles back to (N, Ho*size, Wo*size, C), a free reshape."""
    N, Ho, size, Wo, _, C = tiles.shape
    return tiles.reshape(N, Ho * size, Wo * size, C)


def max_pool2d_nhwc_backward(dout, cache):
    """``dx`` = ``dout`` at each window's argmax (first maximum on ties), 0 elsewhere: (N, H, W, C)."""
    argmax, size = cache
    at_max = argmax[:, :, None, :, None, :] == layers._window_offsets(size)
    return _untile(jnp.where(at_max, dout[:, :, None, :, None, :], 0))


def avg_pool2d_nhwc_backward(dout, cache):
    """``dx`` = ``dout / size**2`` spread over each window: (N, H, W, C)."""
    size = cache
    N, Ho, Wo, C = dout.shape
    share = dout[:, :, None, :, None, :] * (1.0 / (size * size))
    return _untile(jnp.broadcast_to(share, (N, Ho, size, Wo, size, C)))


# ---------------------------------------------------------------------------------------------
# Losses.


def softmax_loss_backward(dout, cache) -> Grads:
    """``dscores = dout * (probs - onehot(y)) / N``.

    Returns:
      ``dscores`` (N, C).
    """
    probs, y = cache
    return dout * (probs - jax.nn.one_hot(y, probs.shape[1], dtype=probs.dtype)) / probs.shape[0]


def svm_loss_backward(dout, cache) -> Grads:
    """``dscores_ij = dout / N * (1[margin_ij > 0] - 1[j = y_i] * #{k : margin_ik > 0})``.

    Returns:
      ``dscores`` (N, C).
    """
    positive, y = cache
    onehot = jax.nn.one_hot(y, positive.shape[1], dtype=positive.dtype)
    counts = jnp.sum(positive, axis=1, keepdims=True)
    return dout * (positive - onehot * counts) / positive.shape[0]


def squared_error_backward(dout, cache) -> Grads:
    """``dpred = dout * (pred - target) / N`` (and ``dtarget = -dpred``).

    Returns:
      ``dpred`` like ``pred``.
    """
    diff = cache
    return dout * diff / diff.shape[0]


def sigmoid_bce_backward(dout, cache) -> Grads:
    """``dlogits = dout * (sigmoid(z) - y) / size``.

    Returns:
      ``dlogits`` like ``logits``.
    """
    z, y = cache
    return dout * (jax.nn.sigmoid(z) - y) / z.size


def l2_penalty_backward(dout, cache) -> Grads:
    """``dW = dout * reg * W`` for weights, 0 for the rest; ``dreg = dout * 0.5 * sum W^2``.

    Returns:
      ``(dparams, dreg)``: a dict like ``params`` and a scalar.
    """
    params, reg = cache
    keys = losses.weight_keys(params)
    dparams = {k: dout * reg * v if k in keys else jnp.zeros_like(v) for k, v in params.items()}
    dreg = dout * 0.5 * sum(jnp.sum(params[k] ** 2) for k in keys)
    return dparams, jnp.asarray(dreg, jnp.result_type(reg))


def l1_penalty_backward(dout, cache) -> Grads:
    """``dW = dout * reg * sign(W)`` for weights, 0 for the rest; ``dreg = dout * sum |W|``.

    Returns:
      ``(dparams, dreg)``.
    """
    params, reg = cache
    keys = losses.weight_keys(params)
    dparams = {k: dout * reg * jnp.sign(v) if k in keys else jnp.zeros_like(v) for k, v in params.items()}
    dreg = dout * sum(jnp.sum(jnp.abs(params[k])) for k in keys)
    return dparams, jnp.asarray(dreg, jnp.result_type(reg))


# ---------------------------------------------------------------------------------------------
# The two-layer net of the documents, as one function.


def two_layer_net_loss_and_grads(params, X, y, reg) -> tuple[Array, Params]:
    """Softmax loss + ``0.5 reg (sum W1^2 + sum W2^2)`` of affine-relu-affine, and its gradients.

    Equations (1)-(10) of the two-layer derivation, in matrix form:
    (1) ``fc1 = X W1 + b1``, (2) ``h = max(0, fc1)``, (3) ``s = h W2 + b2``, (4) softmax;
    (5) ``ds = (probs - onehot(y)) / N``, (6) ``dW2 = h^T ds``, (7) ``db2 = 1^T ds``,
    (8) ``dh = ds W2^T`` masked by ``fc1 > 0``, (9) ``dW1 = X^T dh``, (10) ``db1 = 1^T dh``,
    plus ``reg * W`` for each weight.

    Args:
      params: ``{"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}``.
      X: (N, D) inputs (or (N, d1..dk), flattened).
      y: (N,) integer labels.
      reg: L2 strength.

    Returns:
      ``(loss, grads)`` with ``grads`` shaped like ``params``.

    >>> params = {"W1": jnp.ones((3, 4)), "b1": jnp.zeros(4), "W2": jnp.ones((4, 2)), "b2": jnp.zeros(2)}
    >>> loss, grads = two_layer_net_loss_and_grads(params, jnp.ones((5, 3)), jnp.zeros(5, int), 0.0)
    >>> sorted(grads), float(loss)
    (['W1', 'W2', 'b1', 'b2'], 0.693147...)
    """
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    fc1, (X, _) = layers.affine_forward(X, W1, b1)  # (1)
    h, _ = layers.relu_forward(fc1)  # (2)
    scores, _ = layers.affine_forward(h, W2, b2)  # (3)
    data_loss, (probs, y) = losses.softmax_loss_forward(scores, y)  # (4)
    loss = data_loss + losses.l2_penalty({"W1": W1, "W2": W2}, reg)

    N = scores.shape[0]
    X_rows = X.reshape(N, -1)
    dscores = (probs - jax.nn.one_hot(y, probs.shape[1], dtype=probs.dtype)) / N  # (5)
    dW2 = h.T @ dscores  # (6)
    db2 = jnp.sum(dscores, axis=0)  # (7)
    dh = jnp.where(fc1 > 0, dscores @ W2.T, 0)  # (8)
    dW1 = X_rows.T @ dh  # (9)
    db1 = jnp.sum(dh, axis=0)  # (10)
    return loss, {"W1": dW1 + reg * W1, "b1": db1, "W2": dW2 + reg * W2, "b2": db2}


# ---------------------------------------------------------------------------------------------
# The custom_vjp twins: layers' forwards with the backwards above as their gradients.


def with_backward(forward: Callable, backward: Callable, nondiff_argnums: tuple[int, ...] = ()) -> Callable:
    """``f(*args)`` (the primal of ``forward``) whose VJP is ``backward(dout, cache)``, via ``jax.custom_vjp``.

    ``forward(*args)`` returns ``(out, cache)``. ``backward`` must return one cotangent per
    differentiable argument (a tuple when there are several); ``None`` stands for arguments
    without gradients (keys, labels). Python configuration (stride, pool size) goes in
    ``nondiff_argnums``; all arguments are passed positionally.

    >>> def cube_forward(x):
    ...     return x**3, x
    >>> def cube_backward(dout, x):
    ...     return 3 * x**2 * dout
    >>> cube = with_backward(cube_forward, cube_backward)
    >>> float(jax.grad(cube)(2.0))
    12.0
    """
    twin = jax.custom_vjp(layers.primal_of(forward), nondiff_argnums=nondiff_argnums)

    def bwd(*args):
        cache, dout = args[-2], args[-1]
        grads = backward(dout, cache)
        return grads if isinstance(grads, tuple) else (grads,)

    twin.defvjp(forward, bwd)
    name = getattr(forward, "__name__", "f").removesuffix("_forward")
    twin.__doc__ = (
        f"``{name}`` whose gradient is the hand-derived ``{getattr(backward, '__name__', 'backward')}``. "
        f"Same signature as ``{getattr(forward, '__module__', '')}.{getattr(forward, '__name__', '')}``."
    )
    return twin


_twin = with_backward


def _with_none(backward):
    """Append a ``None`` cotangent for a last argument without gradient (labels or a key)."""

    def adapted(dout, cache):
        return backward(dout, cache), None

    adapted.__name__ = backward.__name__
    return adapted


def _with_target(backward):
    """Add the target's cotangent (``-dpred``) to a regression-style loss backward."""

    def adapted(dout, cache):
        dpred = backward(dout, cache)
        return dpred, -dpred

    adapted.__name__ = backward.__name__
    return adapted


def _bce_backward_both(dout, cache):
    z, _ = cache
    return sigmoid_bce_backward(dout, cache), -dout * z / z.size


_bce_backward_both.__name__ = "sigmoid_bce_backward"

affine = _twin(layers.affine_forward, affine_backward)
relu = _twin(layers.relu_forward, relu_backward)
sigmoid = _twin(layers.sigmoid_forward, sigmoid_backward)
tanh = _twin(layers.tanh_forward, tanh_backward)
batchnorm = _twin(layers.batchnorm_forward, batchnorm_backward, nondiff_argnums=(3,))
spatial_batchnorm = _twin(layers.spatial_batchnorm_forward, spatial_batchnorm_backward, nondiff_argnums=(3,))
layernorm = _twin(layers.layernorm_forward, layernorm_backward, nondiff_argnums=(3,))
groupnorm = _twin(layers.groupnorm_forward, groupnorm_backward, nondiff_argnums=(3, 4))
batchnorm_inference = _twin(layers.batchnorm_inference_forward, batchnorm_inference_backward, nondiff_argnums=(5,))
dropout = _twin(layers.dropout_forward, _with_none(dropout_backward), nondiff_argnums=(2,))
conv2d = _twin(layers.conv2d_forward, conv2d_backward, nondiff_argnums=(3, 4))
max_pool2d = _twin(layers.max_pool2d_forward, max_pool2d_backward, nondiff_argnums=(1, 2))
avg_pool2d = _twin(layers.avg_pool2d_forward, avg_pool2d_backward, nondiff_argnums=(1, 2))
conv2d_nhwc = _twin(layers.conv2d_nhwc_forward, conv2d_nhwc_backward, nondiff_argnums=(3,))
max_pool2d_nhwc = _twin(layers.max_pool2d_nhwc_forward, max_pool2d_nhwc_backward, nondiff_argnums=(1,))
avg_pool2d_nhwc = _twin(layers.avg_pool2d_nhwc_forward, avg_pool2d_nhwc_backward, nondiff_argnums=(1,))
update_running_stats = layers.update_running_stats  # state update: no gradient to derive

softmax_loss = _twin(losses.softmax_loss_forward, _with_none(softmax_loss_backward))
svm_loss = _twin(losses.svm_loss_forward, _with_none(svm_loss_backward), nondiff_argnums=(2,))
squared_error = _twin(losses.squared_error_forward, _with_target(squared_error_backward))
sigmoid_bce = _twin(losses.sigmoid_bce_forward, _bce_backward_both)
l2_penalty = _twin(losses.l2_penalty_forward, l2_penalty_backward)
l1_penalty = _twin(losses.l1_penalty_forward, l1_penalty_backward)
