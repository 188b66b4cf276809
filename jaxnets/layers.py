"""Forward passes of the course layers, as pure functions.

Every layer comes twice: the primal (``affine(x, w, b) -> out``), which is what models call and
``jax.grad`` differentiates, and ``affine_forward(x, w, b) -> (out, cache)``, whose cache feeds
the hand-derived ``manual_grads.affine_backward(dout, cache)``. The primal is the first output of
the ``*_forward`` function, so there is exactly one forward per layer; under ``jit`` XLA drops the
unused cache.

Conventions (see DESIGN.md): images are NCHW, conv weights ``(F, C, HH, WW)``, affine ``w`` is
``(D, M)``. Shapes are checked when the function is traced, so a wrong shape raises a
``ValueError`` naming the argument instead of an error from deep inside XLA.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.errors import InputError, InputTypeError
from jaxnets.typing import Array, Cache

__all__ = [
    "conv2d_nhwc",
    "conv2d_nhwc_forward",
    "max_pool2d_nhwc",
    "max_pool2d_nhwc_forward",
    "avg_pool2d_nhwc",
    "avg_pool2d_nhwc_forward",
    "affine",
    "affine_forward",
    "relu",
    "relu_forward",
    "sigmoid",
    "sigmoid_forward",
    "tanh",
    "tanh_forward",
    "batchnorm",
    "batchnorm_forward",
    "spatial_batchnorm",
    "spatial_batchnorm_forward",
    "layernorm",
    "layernorm_forward",
    "groupnorm",
    "groupnorm_forward",
    "dropout",
    "dropout_forward",
    "conv2d",
    "conv2d_forward",
    "max_pool2d",
    "max_pool2d_forward",
    "avg_pool2d",
    "avg_pool2d_forward",
    "batchnorm_inference",
    "batchnorm_inference_forward",
    "update_running_stats",
    "WindowParam",
    "window_slices",
    "conv_patches",
]


# ---------------------------------------------------------------------------------------------
# Input checks (run at trace time: shapes are static under jit).


def _check_float(name, x):
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise InputTypeError(f"{name} must be a floating-point array, got dtype {jnp.result_type(x)}")


def _check_ndim(name, x, ndims, layout):
    if jnp.ndim(x) not in ndims:
        raise InputError(f"{name} must have rank {' or '.join(map(str, ndims))} ({layout}), got shape {jnp.shape(x)}")


def _check_shape(name, x, expected):
    if tuple(jnp.shape(x)) != tuple(expected):
        raise InputError(f"{name} must have shape {tuple(expected)}, got shape {jnp.shape(x)}")


def _check_norm_params(x, gamma, beta, features):
    _check_float("x", x)
    _check_shape("gamma", gamma, (features,))
    _check_shape("beta", beta, (features,))


# ---------------------------------------------------------------------------------------------
# Window extraction shared by convolution and pooling (the course's im2col).


@dataclasses.dataclass(frozen=True)
class WindowParam:
    """Static geometry of a sliding window (a pytree with no leaves, so it can sit in a cache).

    Attributes: ``size`` (HH, WW), ``stride``, ``pad`` (symmetric zero padding) and the
    ``input_shape`` (N, C, H, W) the windows were taken from.
    """

    size: tuple[int, int]
    stride: int
    pad: int
    input_shape: tuple[int, int, int, int]

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output height and width: ``1 + (H + 2 pad - HH) // stride``."""
        _, _, H, W = self.input_shape
        HH, WW = self.size
        return 1 + (H + 2 * self.pad - HH) // self.stride, 1 + (W + 2 * self.pad - WW) // self.stride


jax.tree_util.register_static(WindowParam)


def _window_param(x, size, stride, pad, what):
    """Validate a window geometry against ``x`` (N, C, H, W) and return its ``WindowParam``."""
    for name, value, low in (("stride", stride, 1), ("pad", pad, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InputError(f"{name} must be an int >= {low}, got {value!r}")
    N, C, H, W = jnp.shape(x)
    HH, WW = size
    if HH > H + 2 * pad or WW > W + 2 * pad:
        raise InputError(
            f"{what} window {HH}x{WW} is larger than the (padded) input {H + 2 * pad}x{W + 2 * pad}"
            f" (x shape {(N, C, H, W)}, pad={pad})"
        )
    if (H + 2 * pad - HH) % stride or (W + 2 * pad - WW) % stride:
        raise InputError(
            f"{what} with window {HH}x{WW}, stride={stride}, pad={pad} does not tile input of "
            f"height x width {H}x{W}: (H + 2*pad - HH) and (W + 2*pad - WW) must be divisible by "
            f"stride, got {H + 2 * pad - HH} and {W + 2 * pad - WW}"
        )
    return WindowParam((HH, WW), stride, pad, (N, C, H, W))


def window_slices(x_pad, param: WindowParam, axes=(2, 3)) -> list[Array]:
    """Strided views, one per kernel offset: ``views[i*WW + j][..., h, w] = x_pad[..., i + s*h, j + s*w]``.

    ``s`` is ``param.stride``.

    Args:
      x_pad: the input, already zero-padded by ``param.pad`` (pools have no padding).
      param: the window geometry; views are (H', W') = ``param.out_hw`` along ``axes``.
      axes: the (height, width) axes of ``x_pad``.

    Returns:
      A list of ``HH*WW`` arrays, row-major kernel order, each ``x_pad``'s shape with ``axes``
      replaced by (H', W').

    >>> p = WindowParam((2, 2), 2, 0, (1, 1, 4, 4))
    >>> [int(v[0, 0, 0, 0]) for v in window_slices(jnp.arange(16).reshape(1, 1, 4, 4), p)]
    [0, 1, 4, 5]
    """
    s = param.stride
    Ho, Wo = param.out_hw
    HH, WW = param.size

    def view(i, j):
        index = [slice(None)] * x_pad.ndim
        index[axes[0]] = slice(i, i + s * (Ho - 1) + 1, s)
        index[axes[1]] = slice(j, j + s * (Wo - 1) + 1, s)
        return x_pad[tuple(index)]

    return [view(i, j) for i in range(HH) for j in range(WW)]


def _pad_hw(x, pad, axes=(2, 3)):
    if not pad:
        return x
    widths = [(0, 0)] * x.ndim
    for a in axes:
        widths[a] = (pad, pad)
    return jnp.pad(x, widths)


def _stack_windows(x_pad, param: WindowParam, axis, hw_axes):
    """Stack the windows of ``x_pad`` at ``axis`` as two axes (HH, WW) in two passes.

    First the WW column offsets (strided slices along the width), then the HH row offsets of
    that: two concatenations of few operands instead of one of HH*WW, which XLA fuses into
    two plain copies instead of HH*WW slice kernels and a gather of their results.
    """
    s = param.stride
    Ho, Wo = param.out_hw
    HH, WW = param.size
    h_axis, w_axis = hw_axes

    def strided(a, ax, start, n):
        index = [slice(None)] * a.ndim
        index[ax] = slice(start, start + s * (n - 1) + 1, s)
        return a[tuple(index)]

    cols = jnp.stack([strided(x_pad, w_axis, j, Wo) for j in range(WW)], axis=axis)
    shift = 1 if h_axis >= axis else 0  # the new WW axis may sit before the height axis
    return jnp.stack([strided(cols, h_axis + shift, i, Ho) for i in range(HH)], axis=axis)


def conv_patches(x, param: WindowParam) -> Array:
    """im2col matrix: ``cols[(c, i, j), (n, h, w)] = x_pad[n, c, h*s + i, w*s + j]``, rows and columns row-major.

    One column per output pixel, so a convolution is one matrix product
    ``w.reshape(F, C*HH*WW) @ cols`` (and its weight gradient one more). Built from the
    (C, N, H, W) transpose of ``x`` (HH*WW times smaller than ``cols``) so that every row is a
    run of contiguous copies.

    Args:
      x: (N, C, H, W) input.
      param: the window geometry (``param.input_shape`` is ``x``'s shape).

    Returns:
      ``cols`` (C*HH*WW, N*H'*W').

    >>> p = WindowParam((3, 3), 1, 1, (2, 3, 5, 5))
    >>> conv_patches(jnp.ones((2, 3, 5, 5)), p).shape
    (27, 50)
    """
    N, C, _, _ = param.input_shape
    Ho, Wo = param.out_hw
    HH, WW = param.size
    x_cn = _pad_hw(jnp.transpose(x, (1, 0, 2, 3)), param.pad)  # (C, N, H+2p, W+2p): 1/HH*WW of cols
    windows = _stack_windows(x_cn, param, axis=1, hw_axes=(2, 3))  # (C, HH, WW, N, H', W')
    return windows.reshape(C * HH * WW, N * Ho * Wo)


# ---------------------------------------------------------------------------------------------
# Affine and activations.


def affine_forward(x, w, b) -> tuple[Array, Cache]:
    """``out = x.reshape(N, D) @ w + b``.

    Args:
      x: (N, d1, ..., dk) input, flattened to (N, D) with D = d1 * ... * dk.
      w: (D, M) weights.
      b: (M,) biases.

    Returns:
      ``out`` (N, M) and ``cache = (x, w)``.

    >>> out, _ = affine_forward(jnp.ones((2, 3, 4)), jnp.ones((12, 5)), jnp.zeros(5))
    >>> out.shape
    (2, 5)
    """
    _check_float("x", x)
    if jnp.ndim(x) < 1 or jnp.ndim(w) != 2:
        raise InputError(f"affine expects x (N, d1..dk) and w (D, M), got x {jnp.shape(x)}, w {jnp.shape(w)}")
    D = math.prod(jnp.shape(x)[1:])
    if jnp.shape(w)[0] != D:
        raise InputError(
            f"w must have shape (D, M) with D = prod(x.shape[1:]) = {D} for x of shape "
            f"{jnp.shape(x)}, got w of shape {jnp.shape(w)}"
        )
    _check_shape("b", b, (jnp.shape(w)[1],))
    out = jnp.reshape(x, (jnp.shape(x)[0], D)) @ w + b
    return out, (x, w)


def relu_forward(x) -> tuple[Array, Cache]:
    """``out = max(0, x)``; cache ``x``.

    Written as a select so that autodiff's derivative is ``1[x > 0]``, the hand-derived one
    (``jnp.maximum`` would give 1/2 at 0 and cost a divide per element), and NaN passes through.

    >>> relu_forward(jnp.array([-1.0, 2.0]))[0]
    Array([0., 2.], dtype=float32)
    """
    _check_float("x", x)
    return jnp.where(x <= 0, jnp.zeros((), x.dtype), x), x


def sigmoid_forward(x) -> tuple[Array, Cache]:
    """``out = 1 / (1 + exp(-x))``; cache ``out`` (the derivative is ``out (1 - out)``).

    >>> sigmoid_forward(jnp.array([0.0]))[0]
    Array([0.5], dtype=float32)
    """
    _check_float("x", x)
    out = jax.nn.sigmoid(x)
    return out, out


def tanh_forward(x) -> tuple[Array, Cache]:
    """``out = tanh(x)``; cache ``out`` (the derivative is ``1 - out**2``).

    >>> tanh_forward(jnp.array([0.0]))[0]
    Array([0.], dtype=float32)
    """
    _check_float("x", x)
    out = jnp.tanh(x)
    return out, out


# ---------------------------------------------------------------------------------------------
# Normalisation.


def _normalize(x, axes, eps):
    """``x_hat = (x - mean) / sqrt(var + eps)`` over ``axes`` (biased variance)."""
    mu = jnp.mean(x, axis=axes, keepdims=True)
    xc = x - mu
    var = jnp.mean(xc * xc, axis=axes, keepdims=True)
    inv_std = lax.rsqrt(var + eps)
    return xc * inv_std, xc, inv_std


def batchnorm_forward(x, gamma, beta, eps=1e-5) -> tuple[Array, Cache]:
    """Train-mode batch norm: ``out = gamma * (x - mu_B) / sqrt(var_B + eps) + beta``.

    Statistics are over the batch axis, with the biased variance.

    Args:
      x: (N, D) input.
      gamma, beta: (D,) scale and shift.

    Returns:
      ``out`` (N, D) and ``cache = (x_hat, xc, inv_std, gamma)`` with ``xc = x - mu``.

    >>> out, _ = batchnorm_forward(jnp.array([[1.0], [3.0]]), jnp.ones(1), jnp.zeros(1))
    >>> out.round(3)
    Array([[-1.],
           [ 1.]], dtype=float32)
    """
    _check_ndim("x", x, (2,), "N, D")
    _check_norm_params(x, gamma, beta, jnp.shape(x)[1])
    x_hat, xc, inv_std = _normalize(x, 0, eps)
    return gamma * x_hat + beta, (x_hat, xc, inv_std, gamma)


def nchw_to_rows(x) -> Array:
    """(N, C, H, W) -> (N*H*W, C): one row per pixel, so per-channel statistics are per column."""
    N, C, H, W = x.shape
    return jnp.transpose(x, (0, 2, 3, 1)).reshape(N * H * W, C)


def rows_to_nchw(rows, shape) -> Array:
    """Inverse of ``nchw_to_rows`` for an NCHW ``shape``."""
    N, C, H, W = shape
    return jnp.transpose(rows.reshape(N, H, W, C), (0, 3, 1, 2))


def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5) -> tuple[Array, Cache]:
    """Batch norm per channel of an NCHW input: statistics over N, H and W.

    Args:
      x: (N, C, H, W) input.
      gamma, beta: (C,) scale and shift.

    Returns:
      ``out`` (N, C, H, W) and the ``batchnorm_forward`` cache of the (N*H*W, C) view.

    >>> spatial_batchnorm_forward(jnp.ones((2, 3, 4, 4)), jnp.ones(3), jnp.zeros(3))[0].shape
    (2, 3, 4, 4)
    """
    _check_ndim("x", x, (4,), "N, C, H, W")
    _check_norm_params(x, gamma, beta, jnp.shape(x)[1])
    out, cache = batchnorm_forward(nchw_to_rows(x), gamma, beta, eps)
    return rows_to_nchw(out, x.shape), cache


def layernorm_forward(x, gamma, beta, eps=1e-5) -> tuple[Array, Cache]:
    """Layer norm: ``out = gamma * (x - mu_n) / sqrt(var_n + eps) + beta``, statistics per sample.

    Args:
      x: (N, D) input.
      gamma, beta: (D,) scale and shift.

    Returns:
      ``out`` (N, D) and ``cache = (x_hat, xc, inv_std, gamma)``.

    >>> out, _ = layernorm_forward(jnp.array([[1.0, 3.0]]), jnp.ones(2), jnp.zeros(2))
    >>> out.round(3)
    Array([[-1.,  1.]], dtype=float32)
    """
    _check_ndim("x", x, (2,), "N, D")
    _check_norm_params(x, gamma, beta, jnp.shape(x)[1])
    x_hat, xc, inv_std = _normalize(x, 1, eps)
    return gamma * x_hat + beta, (x_hat, xc, inv_std, gamma)


def groupnorm_forward(x, gamma, beta, groups, eps=1e-5) -> tuple[Array, Cache]:
    """Group norm: normalise each sample over each group of ``C // groups`` channels and H, W.

    Args:
      x: (N, C, H, W) input, C divisible by ``groups``.
      gamma, beta: (C,) per-channel scale and shift.
      groups: number of channel groups G (static).

    Returns:
      ``out`` (N, C, H, W) and ``cache = (x_hat, xc, inv_std, gamma)`` with the normalised
      tensors in the grouped (N, G, C//G, H, W) view.

    >>> groupnorm_forward(jnp.ones((2, 4, 3, 3)), jnp.ones(4), jnp.zeros(4), 2)[0].shape
    (2, 4, 3, 3)
    """
    _check_ndim("x", x, (4,), "N, C, H, W")
    N, C, H, W = jnp.shape(x)
    _check_norm_params(x, gamma, beta, C)
    if not isinstance(groups, int) or groups < 1 or C % groups:
        raise InputError(f"groups must be a positive int dividing C={C}, got {groups!r}")
    xg = jnp.reshape(x, (N, groups, C // groups, H, W))
    x_hat, xc, inv_std = _normalize(xg, (2, 3, 4), eps)
    out = gamma[:, None, None] * x_hat.reshape(N, C, H, W) + beta[:, None, None]
    return out, (x_hat, xc, inv_std, gamma)


def _channel_shape(x):
    """Broadcast shape of per-feature (2-D) or per-channel (NCHW) statistics."""
    return (1, -1) if jnp.ndim(x) == 2 else (1, -1, 1, 1)


def batchnorm_inference_forward(x, gamma, beta, running_mean, running_var, eps=1e-5) -> tuple[Array, Cache]:
    """Inference-mode batch norm with running statistics: ``gamma (x - rm) / sqrt(rv + eps) + beta``.

    Args:
      x: (N, D) input (per-feature statistics) or (N, C, H, W) (per-channel statistics).
      gamma, beta, running_mean, running_var: (D,) or (C,).

    Returns:
      ``out`` like ``x`` and ``cache = (x_hat, inv_std, gamma)``.

    >>> x = jnp.array([[2.0]])
    >>> batchnorm_inference_forward(x, jnp.ones(1), jnp.zeros(1), jnp.ones(1), jnp.ones(1) - 1e-5)[0]
    Array([[1.]], dtype=float32)
    """
    _check_ndim("x", x, (2, 4), "N, D or N, C, H, W")
    _check_norm_params(x, gamma, beta, jnp.shape(x)[1])
    _check_shape("running_mean", running_mean, (jnp.shape(x)[1],))
    _check_shape("running_var", running_var, (jnp.shape(x)[1],))
    shape = _channel_shape(x)
    inv_std = lax.rsqrt(running_var + eps)
    x_hat = (x - running_mean.reshape(shape)) * inv_std.reshape(shape)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), (x_hat, inv_std, gamma)


def update_running_stats(running_mean, running_var, x, momentum=0.9) -> tuple[Array, Array]:
    """``running = momentum * running + (1 - momentum) * batch`` for the mean and biased variance.

    Statistics are per feature for 2-D ``x`` (N, D) and per channel for NCHW ``x``. Running
    statistics are state, not parameters: no gradient flows through them.

    >>> update_running_stats(jnp.zeros(1), jnp.zeros(1), jnp.array([[1.0], [3.0]]))
    (Array([0.2], dtype=float32), Array([0.1], dtype=float32))
    """
    _check_ndim("x", x, (2, 4), "N, D or N, C, H, W")
    _check_shape("running_mean", running_mean, (jnp.shape(x)[1],))
    _check_shape("running_var", running_var, (jnp.shape(x)[1],))
    x = lax.stop_gradient(x)
    axes = 0 if x.ndim == 2 else (0, 2, 3)
    mean = jnp.mean(x, axis=axes)
    var = jnp.var(x, axis=axes)
    return (
        momentum * running_mean + (1 - momentum) * mean,
        momentum * running_var + (1 - momentum) * var,
    )


# ---------------------------------------------------------------------------------------------
# Dropout.


def check_dropout_rate(rate, name="rate") -> None:
    """Raise ``ValueError`` unless ``rate`` (a drop probability) is a number in [0, 1)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise InputError(f"{name} (the drop probability) must be a number in [0, 1), got {rate!r}")


def _random_bits(key, shape):
    """Uniform uint32 bits of ``shape`` from XLA's threefry generator, seeded by ``key``.

    Like ``jax.random.bits`` but one fused kernel: on CPU jax lowers its threefry to a rolled
    5-iteration loop whose fixed cost (~0.12 ms a call) made the masks a quarter of a dropout
    net's training step (``benchmarks/README.md``). Under ``vmap`` over keys every key keeps its
    own stream (``lax.rng_bit_generator``'s own batching rule would seed them all from the first).
    """

    def draw(key):
        seed = jax.random.bits(key, (4,), jnp.uint32)
        return lax.rng_bit_generator(seed, shape, jnp.uint32, algorithm=lax.RandomAlgorithm.RNG_THREE_FRY)[1]

    @jax.custom_batching.custom_vmap
    def bits(key):
        return draw(key)

    @bits.def_vmap
    def _(axis_size, in_batched, keys):
        return lax.map(draw, keys), True

    return bits(key)


def dropout_forward(x, key, rate) -> tuple[Array, Cache]:
    """Inverted dropout: ``out = x * mask / (1 - rate)``, ``mask ~ Bernoulli(1 - rate)``.

    The mask is ``bits < (1 - rate) 2^32`` with uniform 32-bit ``bits`` drawn from ``key``.

    ``rate`` is the probability of *dropping* a unit; the course's ``p`` is the keep
    probability ``1 - rate``. Scaling at train time means inference is the identity.

    Args:
      x: input of any shape.
      key: a ``jax.random.key`` (may be ``None`` when ``rate == 0``).
      rate: drop probability in [0, 1) (static).

    Returns:
      ``out`` like ``x`` and ``cache = scaled_mask`` (``mask / (1 - rate)``).

    >>> out, _ = dropout_forward(jnp.ones(4), jax.random.key(0), 0.0)
    >>> out
    Array([1., 1., 1., 1.], dtype=float32)
    """
    _check_float("x", x)
    check_dropout_rate(rate)
    if rate == 0.0:
        return x, jnp.ones_like(x)
    if key is None:
        raise InputError("dropout with rate > 0 needs a PRNG key (key=jax.random.key(seed)), got None")
    # P(bits < t) = t / 2^32 = 1 - rate, to within 2^-32
    threshold = min(max(round((1.0 - rate) * 2.0**32), 1), 2**32 - 1)
    keep = _random_bits(key, jnp.shape(x)) < jnp.uint32(threshold)
    scaled_mask = keep.astype(x.dtype) / (1.0 - rate)
    return x * scaled_mask, scaled_mask


# ---------------------------------------------------------------------------------------------
# Convolution and pooling.


def conv2d_forward(x, w, b, stride=1, pad=0) -> tuple[Array, Cache]:
    """Cross-correlation with symmetric zero padding: ``out[n,f] = sum_c x_pad[n,c] * w[f,c] + b[f]``.

    Computed as im2col: ``out = w.reshape(F, C*HH*WW) @ conv_patches(x)`` (one large matrix
    product), reshaped to NCHW.

    Args:
      x: (N, C, H, W) input.
      w: (F, C, HH, WW) filters.
      b: (F,) biases.
      stride, pad: static ints; ``(H + 2 pad - HH)`` must be divisible by ``stride``.

    Returns:
      ``out`` (N, F, H', W') with ``H' = 1 + (H + 2 pad - HH) // stride``, and
      ``cache = (cols, w, param)`` with ``cols = conv_patches(x)`` (C*HH*WW, N*H'*W').

    >>> conv2d_forward(jnp.ones((1, 3, 8, 8)), jnp.ones((4, 3, 3, 3)), jnp.zeros(4), 1, 1)[0].shape
    (1, 4, 8, 8)
    """
    _check_float("x", x)
    _check_ndim("x", x, (4,), "N, C, H, W")
    _check_ndim("w", w, (4,), "F, C, HH, WW")
    F, C, HH, WW = jnp.shape(w)
    if jnp.shape(x)[1] != C:
        raise InputError(
            f"x has {jnp.shape(x)[1]} channels (shape {jnp.shape(x)}) but w expects C={C} (w shape {jnp.shape(w)})"
        )
    _check_shape("b", b, (F,))
    param = _window_param(x, (HH, WW), stride, pad, "conv2d")
    N = jnp.shape(x)[0]
    Ho, Wo = param.out_hw
    cols = conv_patches(x, param)
    # w enters as (w_mat^T)^T with a barrier between: autodiff's weight gradient is then
    # cols @ dout_mat^T (C*HH*WW, F), the form manual_grads.conv2d_backward uses and XLA:CPU
    # runs ~1.5x faster than dout_mat @ cols^T. (F, N, H', W') is the product's natural
    # layout; XLA fuses the move to NCHW into the consumer.
    w_cols = lax.optimization_barrier(w.reshape(F, C * HH * WW).T)
    out = jnp.transpose((w_cols.T @ cols).reshape(F, N, Ho, Wo), (1, 0, 2, 3))
    return out + b[:, None, None], (cols, w, param)


def _pool_param(x, size, stride):
    _check_float("x", x)
    _check_ndim("x", x, (4,), "N, C, H, W")
    if not isinstance(size, int) or size < 1:
        raise InputError(f"size must be a positive int, got {size!r}")
    return _window_param(x, (size, size), stride, 0, "pool")


def max_pool2d_forward(x, size=2, stride=2) -> tuple[Array, Cache]:
    """Max pooling: ``out[n,c,h,w] = max over the size x size window at (h*stride, w*stride)``.

    ``argmax`` comes from the ``size*size`` strided views of ``x`` stacked as windows, and ``out``
    selects each window's element at ``argmax`` from the views: autodiff then differentiates
    selects, not a reduction (about 10% faster training of the benchmark's convnet than
    elementwise maxima, and far faster than ``max`` over a window axis). Ties: the gradient is
    routed to the first maximal element of a window in row-major order, by autodiff and by the
    hand-derived backward alike.

    Args:
      x: (N, C, H, W); ``(H - size)`` and ``(W - size)`` divisible by ``stride``.

    Returns:
      ``out`` (N, C, H', W') and ``cache = (argmax, param)`` with ``argmax`` the window offset
      (N, C, H', W') of each maximum.

    >>> max_pool2d_forward(jnp.arange(16.0).reshape(1, 1, 4, 4))[0]
    Array([[[[ 5.,  7.],
             [13., 15.]]]], dtype=float32)
    """
    param = _pool_param(x, size, stride)
    views = window_slices(x, param)
    argmax = jnp.argmax(jnp.stack(views, axis=2), axis=2)
    out = views[0]
    for k, v in enumerate(views[1:], 1):
        out = jnp.where(argmax == k, v, out)
    return out, (argmax, param)


def avg_pool2d_forward(x, size=2, stride=2) -> tuple[Array, Cache]:
    """Average pooling: ``out[n,c,h,w] = mean of the size x size window at (h*stride, w*stride)``.

    Returns:
      ``out`` (N, C, H', W') and ``cache = param``.

    >>> avg_pool2d_forward(jnp.arange(16.0).reshape(1, 1, 4, 4))[0]
    Array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]], dtype=float32)
    """
    param = _pool_param(x, size, stride)
    views = window_slices(x, param)
    # times 1/K, not / K: XLA turns a division by a constant into this product under jit, and
    # eager and compiled results must agree to the bit
    return sum(views[1:], views[0]) * (1.0 / len(views)), param


# ---------------------------------------------------------------------------------------------
# Channels-last internals: what ``models.convnet`` runs between its NCHW input and its first
# affine layer. Channels contiguous make im2col shifted slices plus one matrix product, and
# batch norm a reduction over the rows of a free (N*H*W, C) view: no layout changes per layer.


def conv2d_nhwc_forward(x, w, b, pad):
    """Stride-1 ``out[n,h,w,f] = sum_{i,j,c} x_pad[n,h+i,w+j,c] * w[f,c,i,j] + b[f]`` on (N, H, W, C).

    ``conv2d_forward`` with channels last: the patches are the HH*WW shifted (N, H', W', C)
    slices of the padded input, concatenated on the channel axis, so the convolution is one
    (N*H'*W', HH*WW*C) @ (HH*WW*C, F) product whose result is already (N, H', W', F).

    Returns:
      ``out`` (N, H', W', F) and ``cache = (patches, w, pad)`` with ``patches`` (N*H'*W', HH*WW*C).

    >>> conv2d_nhwc_forward(jnp.ones((1, 8, 8, 3)), jnp.ones((4, 3, 3, 3)), jnp.zeros(4), 1)[0].shape
    (1, 8, 8, 4)
    """
    _check_float("x", x)
    _check_ndim("x", x, (4,), "N, H, W, C")
    N, H, W, C = jnp.shape(x)
    F, _, HH, WW = jnp.shape(w)
    if jnp.shape(w)[1] != C:
        raise ValueError(
            f"x has {C} channels (NCHW shape {(N, C, H, W)}) but w expects C={jnp.shape(w)[1]} (w shape {jnp.shape(w)})"
        )
    Ho, Wo = H + 2 * pad - HH + 1, W + 2 * pad - WW + 1
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    shifted = [xp[:, i : i + Ho, j : j + Wo, :] for i in range(HH) for j in range(WW)]
    patches = jnp.concatenate(shifted, axis=3).reshape(N * Ho * Wo, HH * WW * C)  # columns (i, j, c)
    out = patches @ _nhwc_weight(w) + b
    return out.reshape(N, Ho, Wo, F), (patches, w, pad)


def _nhwc_weight(w):
    """(F, C, HH, WW) filters as the (HH*WW*C, F) matrix that multiplies channels-last patches."""
    F, C, HH, WW = jnp.shape(w)
    return jnp.transpose(w, (2, 3, 1, 0)).reshape(HH * WW * C, F)


def _pool_nhwc_tiles(x, size) -> Array:
    """(N, H, W, C) as its free (N, H/size, size, W/size, size, C) view: axes 2 and 4 index a window."""
    N, H, W, C = jnp.shape(x)
    if H % size or W % size:
        raise InputError(f"pool size {size} does not tile x of height x width {H}x{W}")
    return jnp.reshape(x, (N, H // size, size, W // size, size, C))


def _window_offsets(size) -> Array:
    """``i * size + j`` at window position (i, j), shaped (1, 1, size, 1, size, 1) to meet the tiles."""
    return (jnp.arange(size)[:, None] * size + jnp.arange(size)).reshape(1, 1, size, 1, size, 1)


def max_pool2d_nhwc_forward(x, size):
    """Non-overlapping max pool (stride = size) of (N, H, W, C): ``max_pool2d_forward`` channels last.

    ``out = sum_{i,j} [argmax = (i, j)] * tiles[:, :, i, :, j, :]``: a select with no tie
    splitting, whose transpose (autodiff's backward) is one elementwise select of the
    broadcast ``dout``, not a scatter.

    Returns:
      ``out`` (N, H/size, W/size, C) and ``cache = (argmax, size)`` (row-major window index,
      first maximum on ties).
    """
    tiles = _pool_nhwc_tiles(x, size)
    N, Ho, _, Wo, _, C = tiles.shape
    windows = jnp.transpose(tiles, (0, 1, 3, 5, 2, 4)).reshape(N, Ho, Wo, C, size * size)
    argmax = jnp.argmax(windows, axis=-1)
    at_max = argmax[:, :, None, :, None, :] == _window_offsets(size)
    return jnp.sum(jnp.where(at_max, tiles, 0), axis=(2, 4)), (argmax, size)


def avg_pool2d_nhwc_forward(x, size):
    """Non-overlapping average pool (stride = size) of (N, H, W, C); ``cache = size``."""
    return jnp.sum(_pool_nhwc_tiles(x, size), axis=(2, 4)) * (1.0 / (size * size)), size


# ---------------------------------------------------------------------------------------------
# Primals: what models call and jax.grad differentiates.


def primal_of(forward) -> Callable[..., Array]:
    """The primal ``f(*args) = forward(*args)[0]`` of a ``*_forward`` function, with its signature."""

    def primal(*args, **kwargs):
        return forward(*args, **kwargs)[0]

    name = forward.__name__.removesuffix("_forward")
    primal.__name__ = primal.__qualname__ = name
    primal.__doc__ = f"Primal of ``{forward.__name__}`` (its output without the cache); see there."
    primal.__wrapped__ = forward  # so inspect.signature shows the forward's arguments
    return primal


affine = primal_of(affine_forward)
relu = primal_of(relu_forward)
sigmoid = primal_of(sigmoid_forward)
tanh = primal_of(tanh_forward)
batchnorm = primal_of(batchnorm_forward)
spatial_batchnorm = primal_of(spatial_batchnorm_forward)
layernorm = primal_of(layernorm_forward)
groupnorm = primal_of(groupnorm_forward)
batchnorm_inference = primal_of(batchnorm_inference_forward)
dropout = primal_of(dropout_forward)
conv2d = primal_of(conv2d_forward)
max_pool2d = primal_of(max_pool2d_forward)
avg_pool2d = primal_of(avg_pool2d_forward)
conv2d_nhwc = primal_of(conv2d_nhwc_forward)
max_pool2d_nhwc = primal_of(max_pool2d_nhwc_forward)
avg_pool2d_nhwc = primal_of(avg_pool2d_nhwc_forward)
