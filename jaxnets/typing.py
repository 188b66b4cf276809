"""Type aliases of the public functions: what an array, a parameter dict and a cache are.

>>> import jax.numpy as jnp
>>> from jaxnets.typing import Array
>>> isinstance(jnp.ones(2), Array)
True
"""

from __future__ import annotations

from typing import Any, TypeAlias

import jax

__all__ = ["Array", "Params", "State", "Cache", "Grads", "Key"]

#: A jax (or numpy) array.
Array: TypeAlias = jax.Array
#: A model's parameters: a flat dict ``W1, b1, ..., gamma1, beta1, ...`` of arrays.
Params: TypeAlias = dict[str, jax.Array]
#: A model's running statistics: ``running_mean{i}``, ``running_var{i}`` (``{}`` when none).
State: TypeAlias = dict[str, jax.Array]
#: What a ``*_forward`` keeps for its ``*_backward`` (arrays, tuples of them, static geometry).
Cache: TypeAlias = Any
#: A ``*_backward``'s result: one gradient, or the course's tuple (``None`` for labels and keys).
Grads: TypeAlias = jax.Array | tuple[jax.Array | None, ...]
#: A PRNG key from ``jax.random.key``.
Key: TypeAlias = jax.Array
