"""``manual_grads`` with the document's deliberately broken max-pooling backward.

The multi-channel digits CNN document ends with an experiment: after training the net with the
proper hand-derived backward pass, the author "breaks the math" of the step through the max
pooling layers and trains again (the "broken back prop net"). The three changed lines are

* a plain element-wise multiplication of the two factors below,
* a transpose of the derivative arriving from after the max pooling layer (upsampled to the
  layer's input size), and
* a transpose of the max pooling layer's mask (1 where a window had its maximum),

and the broken net is compared with the original over three sizes of its last fully-connected
layers. This namespace rebuilds that variant: it is ``manual_grads`` name for name (use it as
``ops=broken_grads`` wherever ``ops=manual_grads`` is accepted), except ``max_pool2d_backward``
and the twin ``max_pool2d`` wired to it. Forwards are unchanged, so only training differs.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxnets import layers, manual_grads
from jaxnets.errors import InputError
from jaxnets.manual_grads import *  # noqa: F403  (the namespace is manual_grads, name for name)
from jaxnets.manual_grads import _twin, fold_patches

__all__ = list(manual_grads.__all__)  # max_pool2d(_nhwc) and its backward replaced below


def _transpose_hw(x):
    """Swap the spatial axes of an NCHW array: ``x[n, c, h, w] -> x[n, c, w, h]``."""
    return jnp.swapaxes(x, -1, -2)


def max_pool2d_backward(dout, cache):
    """Deliberately wrong: ``dx = mask^T * up(dout)^T``, i.e. the true ``dx`` with H and W swapped.

    The document's broken net, step back through max pooling: the pooling layer's mask (1 at
    each window's maximum) is only transposed, the derivative from after the pooling layer
    (copied over its window, ``up``) is only transposed, and the two are combined by a plain
    element-wise multiplication. A transpose distributes over an element-wise product, so for
    non-overlapping windows (size == stride, as in the document) this is exactly the correct
    gradient transposed.

    Wrong because the true rule sends window (i, j)'s gradient to its own argmax ``(h, w)``,
    while this one sends it to the mirror pixel ``(w, h)``, which lies in window (j, i) and is
    generally not its maximum, so the convolutions get credit for the wrong pixels.

    Args:
      dout: (N, C, H', W') upstream gradient.
      cache: ``(argmax, param)`` from ``layers.max_pool2d_forward``; the input must be square
        (H == W) so that the transposed gradient keeps the input's shape.

    Returns:
      ``dx`` (N, C, H, W), the same shape (and total) as the true gradient.

    Raises:
      ValueError: the pooled input is not square.

    >>> x = jnp.array([[[[0.0, 3.0], [1.0, 2.0]]]])  # the maximum 3 is at row 0, column 1
    >>> out, cache = layers.max_pool2d_forward(x)
    >>> max_pool2d_backward(jnp.ones_like(out), cache)[0, 0]
    Array([[0., 0.],
           [1., 0.]], dtype=float32)
    """
    argmax, param = cache
    _, _, H, W = param.input_shape
    if H != W:
        raise InputError(
            f"x: the broken max_pool2d backward transposes H and W, so it needs a square input, "
            f"got height x width {H}x{W} (x shape {param.input_shape})"
        )
    K = param.size[0] * param.size[1]
    windows = dout.shape[:2] + (K,) + dout.shape[2:]
    is_max = argmax[:, :, None] == jnp.arange(K)[None, None, :, None, None]
    mask = fold_patches(is_max.astype(dout.dtype), param)  # 1 at each window's maximum
    up = fold_patches(jnp.broadcast_to(dout[:, :, None], windows), param)  # dout over its window
    return _transpose_hw(mask) * _transpose_hw(up)


max_pool2d = _twin(layers.max_pool2d_forward, max_pool2d_backward, nondiff_argnums=(1, 2))
max_pool2d.__doc__ = (
    "``max_pool2d(x, size=2, stride=2)`` with the true forward and the document's deliberately "
    "wrong backward ``broken_grads.max_pool2d_backward`` (``dx = mask^T * up(dout)^T``)."
)


def max_pool2d_nhwc(x, size=2):
    """The channels-last max pool of ``models.convnet`` with the same broken backward (via NCHW)."""
    return jnp.transpose(max_pool2d(jnp.transpose(x, (0, 3, 1, 2)), size, size), (0, 2, 3, 1))
