"""jaxnets: the classic neural-network course nets as pure JAX functions.

Forward layers live in ``layers``, hand-derived backward passes (wired in through
``jax.custom_vjp``) in ``manual_grads``, losses in ``losses``, numeric gradient checks in
``gradcheck``.
"""

from jaxnets import data, gradcheck, layers, losses, manual_grads

__all__ = ["data", "gradcheck", "layers", "losses", "manual_grads"]
__version__ = "0.1.0"
