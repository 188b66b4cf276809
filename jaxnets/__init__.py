"""jaxnets: the classic neural-network course nets as pure JAX functions.

Forward layers live in ``layers``, hand-derived backward passes (wired in through
``jax.custom_vjp``) in ``manual_grads``, losses in ``losses``, nets in ``models``, training in
``train``, the registry of named models in ``presets``, gradient checks in ``gradcheck``
(``check_vjp`` for your own layers). ``docs/architecture.md`` maps the modules.

Modules that pull in training (``models``, ``train``, ``presets``, ``runs``, ``cli``) and the
file writers (``checkpoints``, ``plots``, ``files``) load on first use, so writing a file never
imports training.
"""

import importlib

from jaxnets import data, errors, gradcheck, layers, losses, manual_grads

__all__ = [
    "augment",
    "checkpoints",
    "cli",
    "data",
    "distributed",
    "download",
    "errors",
    "files",
    "gradcheck",
    "layers",
    "losses",
    "manual_grads",
    "models",
    "plots",
    "presets",
    "runs",
    "tblog",
    "train",
    "typing",
]
__version__ = "0.1.0"

_LAZY = set(__all__) - {"data", "errors", "gradcheck", "layers", "losses", "manual_grads"}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"jaxnets.{name}")
    raise AttributeError(f"module 'jaxnets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY)
