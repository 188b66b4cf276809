"""The course nets as ``Model(init, apply)`` pairs of pure functions.

``init(key, input_shape) -> (params, state)`` with ``input_shape`` the shape of one example
(``(D,)`` or ``(C, H, W)``); ``apply(params, state, x, *, train=False, key=None) ->
(scores, new_state)``. Params are a flat dict with the course's names ``W1, b1, ..., WL, bL``
and ``gamma{i}``, ``beta{i}`` for the normalisation after hidden layer ``i``; batch norm's
running statistics live in ``state`` as ``running_mean{i}``, ``running_var{i}``.

Every factory takes ``ops``: ``jaxnets.layers`` (gradients by autodiff) or
``jaxnets.manual_grads`` (the same forwards with the hand-derived backwards).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnets import layers
from jaxnets.errors import InputError

__all__ = [
    "Model",
    "linear_classifier",
    "two_layer_net",
    "fc_net",
    "digits_cnn",
    "three_layer_convnet",
    "convnet",
    "NORMALIZATIONS",
]

NORMALIZATIONS = (None, "batchnorm", "layernorm")


class Model(NamedTuple):
    """A net as two pure functions (see the module docstring for their signatures)."""

    init: Callable
    apply: Callable


def _weight(key, shape, fan_in, weight_scale):
    """``weight_scale * randn(shape)``; ``weight_scale=None`` is He's ``sqrt(2 / fan_in)``."""
    scale = math.sqrt(2.0 / fan_in) if weight_scale is None else weight_scale
    return scale * jax.random.normal(key, shape, jnp.float32)


def _dropout_keys(key, n, train, dropout):
    """``n`` keys split from ``key`` (Nones without one), after checking a training pass with dropout has one."""
    if train and dropout > 0 and key is None:
        raise InputError(f"apply(..., train=True) with dropout={dropout} needs key=jax.random.key(...), got key=None")
    return [None] * n if key is None else list(jax.random.split(key, n))


def _image_shape(input_shape, pools):
    """``(C, H, W)`` of one image, or a clear error for flat features or images too small to pool."""
    if len(input_shape) != 3:
        raise InputError(
            f"a conv net needs images of shape (C, H, W) (NCHW batches), got examples of shape "
            f"{tuple(input_shape)}; reshape the data to (N, C, H, W)"
        )
    C, H, W = input_shape
    if min(H, W) < 2**pools:
        raise InputError(
            f"images of {H}x{W} are too small for this net: it halves them {pools} time(s) by 2x2 "
            f"pooling and needs H, W >= {2**pools}"
        )
    return tuple(input_shape)


def _check_choice(name, value, choices):
    if value not in choices:
        raise InputError(f"{name} must be one of {choices}, got {value!r}")


def _init_norm(params, state, i, features, normalization):
    if normalization is not None:
        params[f"gamma{i}"] = jnp.ones(features, jnp.float32)
        params[f"beta{i}"] = jnp.zeros(features, jnp.float32)
    if normalization == "batchnorm":
        state[f"running_mean{i}"] = jnp.zeros(features, jnp.float32)
        state[f"running_var{i}"] = jnp.zeros(features, jnp.float32)


def _norm(ops, normalization, x, params, state, i, train):
    """Normalisation after hidden layer ``i``; returns the output and the state entries it updates.

    Batch norm uses batch statistics (and updates the running averages) in training and the
    running statistics at inference; 4-D input is normalised per channel.
    """
    if normalization is None:
        return x, {}
    gamma, beta = params[f"gamma{i}"], params[f"beta{i}"]
    if normalization == "layernorm":
        return ops.layernorm(x, gamma, beta), {}
    mean_key, var_key = f"running_mean{i}", f"running_var{i}"
    if not train:
        return ops.batchnorm_inference(x, gamma, beta, state[mean_key], state[var_key]), {}
    batchnorm = ops.batchnorm if x.ndim == 2 else ops.spatial_batchnorm
    mean, var = ops.update_running_stats(state[mean_key], state[var_key], x)
    return batchnorm(x, gamma, beta), {mean_key: mean, var_key: var}


def _hidden_affine(ops, params, state, x, i, normalization, dropout, key, train):
    """Hidden layer ``i``: affine -> [norm] -> relu -> [dropout]; returns ``(x, state updates)``."""
    x = ops.affine(x, params[f"W{i}"], params[f"b{i}"])
    x, updates = _norm(ops, normalization, x, params, state, i, train)
    x = ops.relu(x)
    if train and dropout > 0:
        x = ops.dropout(x, key, dropout)
    return x, updates


def _init_affine_stack(key, dims, weight_scale, first=1):
    """``W{i}: (dims[k], dims[k+1])``, zero ``b{i}``, numbered from ``first``."""
    params = {}
    for k, (fan_in, fan_out), sub in zip(
        range(len(dims) - 1), zip(dims[:-1], dims[1:], strict=False), jax.random.split(key, len(dims) - 1), strict=False
    ):
        params[f"W{first + k}"] = _weight(sub, (fan_in, fan_out), fan_in, weight_scale)
        params[f"b{first + k}"] = jnp.zeros(fan_out, jnp.float32)
    return params


def linear_classifier(num_classes: int = 10, *, weight_scale: float | None = 1e-3, ops: ModuleType = layers) -> Model:
    """The score function ``scores = x W1 + b1`` (train it with the SVM or the softmax loss).

    >>> params, state = linear_classifier(3).init(jax.random.key(0), (4,))
    >>> params["W1"].shape, state
    ((4, 3), {})
    """

    def init(key, input_shape):
        return _init_affine_stack(key, [math.prod(input_shape), num_classes], weight_scale), {}

    def apply(params, state, x, *, train=False, key=None):
        return ops.affine(x, params["W1"], params["b1"]), state

    return Model(init, apply)


def two_layer_net(
    hidden_dim: int = 100, num_classes: int = 10, *, weight_scale: float | None = 1e-2, ops: ModuleType = layers
) -> Model:
    """affine - relu - affine, initialised ``weight_scale * randn`` with zero biases.

    >>> model = two_layer_net(5, 3)
    >>> params, state = model.init(jax.random.key(0), (4,))
    >>> model.apply(params, state, jnp.ones((2, 4)))[0].shape
    (2, 3)
    """
    return fc_net([hidden_dim], num_classes, weight_scale=weight_scale, ops=ops)


def fc_net(
    hidden_dims: Sequence[int],
    num_classes: int = 10,
    *,
    normalization: str | None = None,
    dropout: float = 0.0,
    weight_scale: float | None = None,
    ops: ModuleType = layers,
) -> Model:
    """``{affine - [norm] - relu - [dropout]} x (L - 1) - affine``.

    Args:
      hidden_dims: sizes of the L - 1 hidden layers.
      num_classes: C, the size of the scores.
      normalization: None, "batchnorm" or "layernorm" after each hidden affine layer.
      dropout: drop probability after each hidden relu (0 for none).
      weight_scale: std of the initial weights; None for He initialisation.
      ops: ``layers`` or ``manual_grads``.

    >>> model = fc_net([8, 8], 3, normalization="batchnorm", dropout=0.5)
    >>> params, state = model.init(jax.random.key(0), (1, 4, 4))
    >>> sorted(state)
    ['running_mean1', 'running_mean2', 'running_var1', 'running_var2']
    >>> scores, new_state = model.apply(params, state, jnp.ones((5, 1, 4, 4)), train=True, key=jax.random.key(1))
    >>> scores.shape
    (5, 3)
    """
    _check_choice("normalization", normalization, NORMALIZATIONS)
    layers.check_dropout_rate(dropout, "dropout")
    hidden_dims = list(hidden_dims)
    L = len(hidden_dims) + 1

    def init(key, input_shape):
        dims = [math.prod(input_shape), *hidden_dims, num_classes]
        params, state = _init_affine_stack(key, dims, weight_scale), {}
        for i, width in enumerate(hidden_dims, start=1):
            _init_norm(params, state, i, width, normalization)
        return params, state

    def apply(params, state, x, *, train=False, key=None):
        keys, new_state = _dropout_keys(key, L, train, dropout), dict(state)
        for i in range(1, L):
            x, updates = _hidden_affine(ops, params, state, x, i, normalization, dropout, keys[i], train)
            new_state.update(updates)
        return ops.affine(x, params[f"W{L}"], params[f"b{L}"]), new_state

    return Model(init, apply)


ACTIVATIONS = ("relu", "sigmoid", "tanh")


def digits_cnn(
    hidden_dims: Sequence[int] = (28, 36),
    *,
    activations: Sequence[str] = ("tanh", "relu", "tanh", "relu"),
    weight_scale: float | None = None,
    ops: ModuleType = layers,
) -> Model:
    """The documents' multi-channel CNN for 8x8 digits (0 vs 1), with a different activation per layer.

    ``conv 3x3 (2 channels, zero pad 1) - act1 - maxpool 2 - conv 3x3 (4 channels, pad 1) - act2 -
    maxpool 2 - affine 16 -> 28 - act3 - affine 28 -> 36 - act4 - affine 36 -> 1 - sigmoid``.
    The output is the sigmoid probability (N, 1) of class 1, trained with the squared-error
    (L2) cost against the 0/1 label.

    Args:
      hidden_dims: widths of the two hidden affine layers (the document tries (18, 20),
        (28, 36) and (48, 56)).
      activations: names ("relu", "sigmoid", "tanh") of the activations after conv 1, conv 2,
        affine 3 and affine 4.

    >>> model = digits_cnn()
    >>> params, state = model.init(jax.random.key(0), (1, 8, 8))
    >>> params["W1"].shape, params["W2"].shape, params["W3"].shape, params["W5"].shape
    ((2, 1, 3, 3), (4, 2, 3, 3), (16, 28), (36, 1))
    >>> model.apply(params, state, jnp.ones((3, 1, 8, 8)))[0].shape
    (3, 1)
    """
    if len(activations) != 4:
        raise InputError(f"activations must name 4 activations (conv1, conv2, fc3, fc4), got {activations!r}")
    for name in activations:
        _check_choice("activation", name, ACTIVATIONS)
    act = [getattr(ops, name) for name in activations]

    def init(key, input_shape):
        C, H, W = _image_shape(input_shape, 2)
        k1, k2, k3 = jax.random.split(key, 3)
        params = {
            "W1": _weight(k1, (2, C, 3, 3), C * 9, weight_scale),
            "b1": jnp.zeros(2, jnp.float32),
            "W2": _weight(k2, (4, 2, 3, 3), 2 * 9, weight_scale),
            "b2": jnp.zeros(4, jnp.float32),
        }
        flat = 4 * (H // 4) * (W // 4)
        params.update(_init_affine_stack(k3, [flat, *hidden_dims, 1], weight_scale, first=3))
        return params, {}

    def apply(params, state, x, *, train=False, key=None):
        x = ops.max_pool2d(act[0](ops.conv2d(x, params["W1"], params["b1"], 1, 1)), 2, 2)
        x = ops.max_pool2d(act[1](ops.conv2d(x, params["W2"], params["b2"], 1, 1)), 2, 2)
        x = act[2](ops.affine(x, params["W3"], params["b3"]))
        x = act[3](ops.affine(x, params["W4"], params["b4"]))
        return ops.sigmoid(ops.affine(x, params["W5"], params["b5"])), state

    return Model(init, apply)


def three_layer_convnet(
    num_filters: int = 32,
    filter_size: int = 7,
    hidden_dim: int = 100,
    num_classes: int = 10,
    *,
    weight_scale: float | None = None,
    ops: ModuleType = layers,
) -> Model:
    """``conv - relu - 2x2 max pool - affine - relu - affine`` (the course's defaults).

    The convolution has stride 1 and zero padding ``(filter_size - 1) // 2``, so it keeps H x W.

    >>> model = three_layer_convnet(4, 3, 10, 3)
    >>> params, state = model.init(jax.random.key(0), (3, 8, 8))
    >>> params["W2"].shape
    (64, 10)
    """
    pad = (filter_size - 1) // 2

    def init(key, input_shape):
        C, H, W = _image_shape(input_shape, 1)
        k1, k2 = jax.random.split(key)
        params = {
            "W1": _weight(k1, (num_filters, C, filter_size, filter_size), C * filter_size**2, weight_scale),
            "b1": jnp.zeros(num_filters, jnp.float32),
        }
        params.update(
            _init_affine_stack(k2, [num_filters * (H // 2) * (W // 2), hidden_dim, num_classes], weight_scale, first=2)
        )
        return params, {}

    def apply(params, state, x, *, train=False, key=None):
        x = ops.max_pool2d(ops.relu(ops.conv2d(x, params["W1"], params["b1"], 1, pad)), 2, 2)
        x = ops.relu(ops.affine(x, params["W2"], params["b2"]))
        return ops.affine(x, params["W3"], params["b3"]), state

    return Model(init, apply)


POOLS = ("max", "avg")


def convnet(
    channels: Sequence[int] = (32, 64),
    hidden_dims: Sequence[int] = (256,),
    num_classes: int = 10,
    *,
    normalization: str | None = "batchnorm",
    pool: str = "max",
    kernel_size: int = 3,
    dropout: float = 0.0,
    weight_scale: float | None = None,
    ops: ModuleType = layers,
) -> Model:
    """``{conv KxK (pad K//2) - [spatial batch norm] - relu - 2x2 pool} x len(channels)``, then
    ``{affine - [batch norm] - relu - [dropout]} x len(hidden_dims) - affine``.

    Layers are numbered in order (convs first), so ``W1`` is the first conv's filters and
    ``gamma{i}`` follows layer ``i``.

    >>> model = convnet((4, 8), (16,), 10)
    >>> params, state = model.init(jax.random.key(0), (1, 8, 8))
    >>> params["W1"].shape, params["W3"].shape, sorted(state)[:2]
    ((4, 1, 3, 3), (32, 16), ['running_mean1', 'running_mean2'])
    """
    _check_choice("normalization", normalization, (None, "batchnorm"))
    _check_choice("pool", pool, POOLS)
    layers.check_dropout_rate(dropout, "dropout")
    if kernel_size % 2 == 0:
        raise InputError(f"kernel_size must be odd (so padding keeps H x W), got {kernel_size}")
    channels, hidden_dims = list(channels), list(hidden_dims)
    n_conv, L = len(channels), len(channels) + len(hidden_dims) + 1
    pool_fn = {"max": "max_pool2d_nhwc", "avg": "avg_pool2d_nhwc"}[pool]

    def init(key, input_shape):
        C, H, W = _image_shape(input_shape, len(channels))
        if H % 2**n_conv or W % 2**n_conv:
            raise InputError(f"input height and width must be divisible by 2**{n_conv} for {n_conv} pools, got {H}x{W}")
        keys = jax.random.split(key, n_conv + 1)
        params, state = {}, {}
        for i, (c_in, c_out) in enumerate(zip([C, *channels[:-1]], channels, strict=False), start=1):
            params[f"W{i}"] = _weight(
                keys[i - 1], (c_out, c_in, kernel_size, kernel_size), c_in * kernel_size**2, weight_scale
            )
            params[f"b{i}"] = jnp.zeros(c_out, jnp.float32)
            _init_norm(params, state, i, c_out, normalization)
        flat = channels[-1] * (H // 2**n_conv) * (W // 2**n_conv)
        params.update(_init_affine_stack(keys[-1], [flat, *hidden_dims, num_classes], weight_scale, first=n_conv + 1))
        for i, width in enumerate(hidden_dims, start=n_conv + 1):
            _init_norm(params, state, i, width, normalization)
        return params, state

    def apply(params, state, x, *, train=False, key=None):
        keys, new_state = _dropout_keys(key, L, train, dropout), dict(state)
        # The conv blocks run channels last (NHWC; see layers.conv2d_nhwc_forward): batch norm
        # then sees the free (N*H*W, C) view, and only the input and the last pool's output
        # change layout. The same function of the parameters as conv2d / spatial batch norm /
        # pools in NCHW (tests/test_models.py checks it against them).
        x = jnp.transpose(x, (0, 2, 3, 1)) if n_conv else x
        for i in range(1, L):
            if i <= n_conv:
                x = ops.conv2d_nhwc(x, params[f"W{i}"], params[f"b{i}"], kernel_size // 2)
                nhwc = x.shape
                x, updates = _norm(ops, normalization, x.reshape(-1, nhwc[3]), params, state, i, train)
                x = ops.relu(x).reshape(nhwc)
                x = getattr(ops, pool_fn)(x, 2)
                if i == n_conv:
                    x = jnp.transpose(x, (0, 3, 1, 2))  # NCHW flattening order for the affine weights
            else:
                x, updates = _hidden_affine(ops, params, state, x, i, normalization, dropout, keys[i], train)
            new_state.update(updates)
        return ops.affine(x, params[f"W{L}"], params[f"b{L}"]), new_state

    return Model(init, apply)
