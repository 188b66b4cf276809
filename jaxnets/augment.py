"""Data augmentation as pure, keyed functions on NCHW batches.

Each function takes a PRNG key and a batch ``x`` of shape (N, C, H, W) and returns a batch of
the same shape and dtype; each example draws its own crop offset and flip from the key, so the
functions are jittable, ``vmap``-safe and deterministic per key. ``train.make_epoch_fn`` applies
:func:`augment_batch` to every minibatch inside the compiled epoch when ``TrainConfig.crop_pad``
or ``TrainConfig.flip_prob`` is set.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnets.errors import InputError

__all__ = ["random_crop", "random_flip", "augment_batch"]


def _check_nchw(x, name: str = "x"):
    if x.ndim != 4:
        raise InputError(f"{name} must be an NCHW image batch (4-D), got shape {tuple(x.shape)}")


def random_crop(key, x, pad: int):
    """Random (H, W) crop of ``x`` zero-padded by ``pad`` on each side: (N, C, H, W) -> (N, C, H, W).

    Each example is shifted by its own offset in ``[-pad, pad]`` along each axis; ``pad=0`` is the
    identity.

    >>> x = jnp.arange(2 * 1 * 3 * 3.0).reshape(2, 1, 3, 3)
    >>> random_crop(jax.random.key(0), x, 1).shape
    (2, 1, 3, 3)
    >>> bool((random_crop(jax.random.key(0), x, 0) == x).all())
    True
    """
    _check_nchw(x)
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise InputError(f"pad must be a non-negative int, got {pad!r}")
    if pad == 0:
        return x
    N, C, H, W = x.shape
    padded = jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    offsets = jax.random.randint(key, (N, 2), 0, 2 * pad + 1)

    def crop_one(image, offset):
        return jax.lax.dynamic_slice(image, (0, offset[0], offset[1]), (C, H, W))

    return jax.vmap(crop_one)(padded, offsets)


def random_flip(key, x, prob: float = 0.5):
    """Mirror each example of ``x`` left-right with probability ``prob``: (N, C, H, W) -> same.

    >>> x = jnp.arange(3.0).reshape(1, 1, 1, 3)
    >>> random_flip(jax.random.key(0), x, 1.0).ravel().tolist()
    [2.0, 1.0, 0.0]
    """
    _check_nchw(x)
    if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0 <= prob <= 1:
        raise InputError(f"prob must be a number in [0, 1], got {prob!r}")
    if prob == 0:
        return x
    flip = jax.random.bernoulli(key, prob, (x.shape[0],))
    return jnp.where(flip[:, None, None, None], x[..., ::-1], x)


def augment_batch(key, x, *, crop_pad: int = 0, flip_prob: float = 0.0):
    """:func:`random_crop` with ``crop_pad`` then :func:`random_flip` with ``flip_prob``: (N, C, H, W) -> same.

    >>> x = jnp.ones((4, 1, 5, 5))
    >>> augment_batch(jax.random.key(1), x, crop_pad=2, flip_prob=0.5).shape
    (4, 1, 5, 5)
    """
    crop_key, flip_key = jax.random.split(key)
    return random_flip(flip_key, random_crop(crop_key, x, crop_pad), flip_prob)
