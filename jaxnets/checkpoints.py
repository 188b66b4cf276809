"""Checkpoints: a run's ``TrainState`` in one ``.npz`` file, written atomically.

File layout (a plain, pickle-free ``numpy.savez`` archive):

- every array leaf of ``params``, ``state``, ``opt_state``, ``best_params`` and ``best_state``
  under the name ``<section><pytree path>``, e.g. ``params['W1']`` or ``opt_state[0].mu['W1']``;
- ``__meta__``: UTF-8 JSON (as a uint8 array) with ``format``, ``format_version``, the model's
  name and config, ``epoch``, ``best_val_acc``, ``history`` and any extra run information.

Loading needs a *template*: a freshly initialised ``TrainState`` of the same model and optimizer
(``train.init_train_state``). Its leaves are replaced one by one by the stored arrays after
their shapes and dtypes are checked, which also rebuilds optax's ``opt_state`` namedtuples
without pickling code objects.

Writes go through ``jaxnets.files.atomic_write``: a crash or kill leaves either the old file or
the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.errors import InputError
from jaxnets.files import atomic_write, json_ready, write_json

__all__ = [
    "FORMAT_VERSION",
    "CHECKPOINT_NAME",
    "atomic_write",
    "write_json",
    "save_checkpoint",
    "read_checkpoint_meta",
    "check_model",
    "load_checkpoint",
]

#: Version of the file layout; bump it when the layout changes incompatibly.
FORMAT_VERSION = 1
#: The file name a run directory keeps its checkpoint under.
CHECKPOINT_NAME = "checkpoint.npz"

_FORMAT = "jaxnets-checkpoint"
_META_KEY = "__meta__"
_SECTIONS = ("params", "state", "opt_state", "best_params", "best_state")


def _leaves(section: str, tree) -> dict[str, np.ndarray]:
    """``{"<section><pytree path>": array}`` for every leaf of ``tree``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {section + jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def save_checkpoint(
    path: str | os.PathLike, ts: Any, *, model_name: str, model_config: dict, extra: dict | None = None
) -> Path:
    """Write ``ts`` (current and best weights, optimizer state, history) to ``path`` atomically.

    Args:
      path: destination ``.npz`` file (its directory must exist).
      ts: the ``TrainState`` to store.
      model_name: the model's name (e.g. ``"fc"``); loading checks it.
      model_config: JSON-able dict of everything that decides the parameter shapes; loading
        checks it.
      extra: further JSON-able information to keep in the metadata (e.g. the run's config).

    Returns:
      ``Path(path)``.
    """
    arrays: dict[str, np.ndarray] = {}
    for section in _SECTIONS:
        arrays.update(_leaves(section, getattr(ts, section)))
    meta = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "model_config": json_ready(model_config),
        "epoch": int(ts.epoch),
        "best_val_acc": float(ts.best_val_acc),
        "history": json_ready(ts.history),
        "extra": json_ready(extra or {}),
    }
    arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _corrupt(path, why: str) -> InputError:
    return InputError(
        f"{path}: not a readable jaxnets checkpoint ({why}); it is truncated or corrupt. "
        f"Restore it from a copy or start a new run"
    )


def _read(path: Path, names: Callable[[list[str]], list[str]]) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and the arrays ``names(all_names)`` of the checkpoint ``path``, read eagerly."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _META_KEY not in archive.files:
                raise _corrupt(path, f"no {_META_KEY} entry")
            meta = json.loads(bytes(archive[_META_KEY]).decode())
            arrays = {name: archive[name] for name in names([n for n in archive.files if n != _META_KEY])}
    except ValueError as e:
        if str(e).startswith(f"{path}:"):
            raise
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    except Exception as e:  # BadZipFile, EOFError, OSError, zlib errors: all mean a damaged file
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise _corrupt(path, f"its {_META_KEY} does not describe a {_FORMAT}")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _corrupt(path, f"format_version is {version!r}, not an integer")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{path}: checkpoint format version {version} is newer than this jaxnets supports "
            f"({FORMAT_VERSION}); upgrade jaxnets"
        )
    return meta, arrays


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata of a checkpoint (epoch, history, model, ...) without its arrays.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is truncated/corrupt or from a newer format version.
    """
    return _read(Path(path), lambda names: [])[0]


def check_model(path, meta: dict, model_name: str | None, model_config: dict | None) -> None:
    """Raise ``ValueError`` unless the checkpoint ``meta`` (from ``path``) was written for this model.

    ``None`` skips a check. Cheap: only the metadata is needed, so callers can refuse a wrong
    checkpoint before building anything.
    """
    if model_name is not None and meta.get("model") != model_name:
        raise InputError(
            f"{path}: checkpoint is from model {meta.get('model')!r}, not {model_name!r}; "
            f"evaluate/resume it as model {meta.get('model')!r} or use another checkpoint"
        )
    if model_config is not None and meta.get("model_config") != json_ready(model_config):
        raise InputError(
            f"{path}: checkpoint is from a {meta.get('model')!r} model configured as "
            f"{meta.get('model_config')}, not {json_ready(model_config)}; use the run's own "
            f"config.json or another checkpoint"
        )


def _restore(path, section: str, template, arrays: dict[str, np.ndarray], used: set):
    """``template`` with each leaf replaced by the stored array of the same path, shape and dtype."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for key_path, leaf in flat:
        name = section + jax.tree_util.keystr(key_path)
        if name not in arrays:
            raise InputError(f"{path}: checkpoint has no array {name}; it comes from a different model or optimizer")
        stored, expected = arrays[name], jax.ShapeDtypeStruct(np.shape(leaf), jnp.result_type(leaf))
        if stored.shape != expected.shape or stored.dtype != expected.dtype:
            raise InputError(
                f"{path}: {name} is {stored.dtype}{list(stored.shape)} in the checkpoint but the model "
                f"needs {expected.dtype}{list(expected.shape)}; it comes from a different model or optimizer"
            )
        used.add(name)
        leaves.append(jnp.asarray(stored))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def load_checkpoint(
    path: str | os.PathLike, template: Any, *, model_name: str | None = None, model_config: dict | None = None
) -> tuple[Any, dict]:
    """Read a checkpoint written by ``save_checkpoint`` into the structure of ``template``.

    Args:
      path: the ``.npz`` file.
      template: a fresh ``TrainState`` of the same model and optimizer (gives the pytree
        structure, shapes and dtypes; its values are not used).
      model_name, model_config: when given, the checkpoint must have been written for them.

    Returns:
      ``(train_state, meta)``: the restored ``TrainState`` and the checkpoint's metadata.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a truncated or corrupt file, a newer format version, another model, or
        arrays whose names, shapes or dtypes do not match ``template`` (each names the file).
    """
    path = Path(path)
    meta, arrays = _read(path, lambda names: names)
    check_model(path, meta, model_name, model_config)
    used: set[str] = set()
    trees = {section: _restore(path, section, getattr(template, section), arrays, used) for section in _SECTIONS}
    unexpected = sorted(set(arrays) - used)
    if unexpected:
        raise InputError(
            f"{path}: checkpoint has arrays the model does not ({', '.join(unexpected[:4])}"
            f"{', ...' if len(unexpected) > 4 else ''}); it comes from a different model or optimizer"
        )
    try:
        history = {k: (v if k == "stopped" else [float(x) for x in v]) for k, v in meta["history"].items()}
        ts = template._replace(
            **trees, epoch=int(meta["epoch"]), best_val_acc=float(meta["best_val_acc"]), history=history
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _corrupt(path, f"bad metadata: {type(e).__name__}: {e}") from None
    return ts, meta
