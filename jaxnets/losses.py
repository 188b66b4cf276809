"""Losses and penalties. Data losses average over the batch.

Each loss comes as the primal (``softmax_loss(scores, y) -> loss``) and as
``*_forward(...) -> (loss, cache)``, whose cache feeds the hand-derived backward in
``manual_grads``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.errors import InputError, InputTypeError
from jaxnets.layers import _check_float, primal_of
from jaxnets.typing import Array, Cache

__all__ = [
    "softmax_loss",
    "softmax_loss_forward",
    "svm_loss",
    "svm_loss_forward",
    "squared_error",
    "squared_error_forward",
    "sigmoid_bce",
    "sigmoid_bce_forward",
    "l2_penalty",
    "l2_penalty_forward",
    "l1_penalty",
    "l1_penalty_forward",
    "weight_keys",
]


def _check_scores_labels(scores, y):
    """Shapes and dtypes of (N, C) scores and int (N,) labels; values too when they are concrete."""
    _check_float("scores", scores)
    if jnp.ndim(scores) != 2:
        raise InputError(f"scores must have shape (N, C), got shape {jnp.shape(scores)}")
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise InputTypeError(f"labels y must be an integer array of class indices, got dtype {jnp.result_type(y)}")
    N, C = jnp.shape(scores)
    if jnp.shape(y) != (N,):
        raise InputError(
            f"labels y must have shape (N,) = ({N},) to match scores {jnp.shape(scores)}, got shape {jnp.shape(y)}"
        )
    if not isinstance(y, jax.core.Tracer):
        y_np = np.asarray(y)
        if y_np.size and (y_np.min() < 0 or y_np.max() >= C):
            raise InputError(
                f"labels y must lie in [0, {C}) for scores with C={C} classes, got range [{y_np.min()}, {y_np.max()}]"
            )


def softmax_loss_forward(scores, y) -> tuple[Array, Cache]:
    """``L = -mean_i log softmax(scores_i)[y_i]``, stable for large scores (log-sum-exp shift).

    Args:
      scores: (N, C) class scores.
      y: (N,) integer labels in [0, C).

    Returns:
      ``loss`` (scalar) and ``cache = (probs, y)``.

    >>> float(softmax_loss_forward(jnp.zeros((2, 4)), jnp.array([0, 3]))[0])  # log 4
    1.386294...
    """
    _check_scores_labels(scores, y)
    log_probs = jax.nn.log_softmax(scores, axis=1)
    loss = -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))
    return loss, (jnp.exp(log_probs), y)


def svm_loss_forward(scores, y, delta=1.0) -> tuple[Array, Cache]:
    """Multiclass hinge: ``L = mean_i sum_{j != y_i} max(0, s_ij - s_iy_i + delta)``.

    Args:
      scores: (N, C) class scores.
      y: (N,) integer labels in [0, C).
      delta: margin (the course uses 1).

    Returns:
      ``loss`` (scalar) and ``cache = (positive, y)`` with ``positive`` the (N, C) indicator of
      active margins (correct class excluded).

    >>> float(svm_loss_forward(jnp.array([[1.0, 2.0, 0.0]]), jnp.array([0]))[0])
    2.0
    """
    _check_scores_labels(scores, y)
    correct = jnp.take_along_axis(scores, y[:, None], axis=1)
    not_correct = jnp.arange(scores.shape[1])[None, :] != y[:, None]
    margins = jnp.where(not_correct, jnp.maximum(0.0, scores - correct + delta), 0.0)
    positive = (margins > 0).astype(scores.dtype)
    return jnp.sum(margins) / scores.shape[0], (positive, y)


def _check_same_shape(pred_name, pred, target_name, target):
    _check_float(pred_name, pred)
    if jnp.ndim(pred) < 1 or jnp.shape(pred) != jnp.shape(target):
        raise InputError(
            f"{target_name} must have the shape of {pred_name} {jnp.shape(pred)} (N, ...), got {jnp.shape(target)}"
        )


def squared_error_forward(pred, target) -> tuple[Array, Cache]:
    """``L = (1 / 2N) sum (pred - target)^2`` (the L2 cost, averaged over the batch).

    Args:
      pred, target: (N, ...) arrays of one shape.

    Returns:
      ``loss`` and ``cache = diff = pred - target``.

    >>> float(squared_error_forward(jnp.array([[1.0], [3.0]]), jnp.zeros((2, 1)))[0])
    2.5
    """
    _check_same_shape("pred", pred, "target", target)
    diff = pred - jnp.asarray(target, pred.dtype)
    return 0.5 * jnp.sum(diff * diff) / pred.shape[0], diff


def sigmoid_bce_forward(logits, y) -> tuple[Array, Cache]:
    """``L = mean[softplus(z) - z y]``: binary cross-entropy on logits ``z``, ``softplus(z) = log(1 + e^z)``.

    softplus is evaluated as ``logaddexp(z, 0)``, finite for any ``|z|`` (no ``log(0)``) and
    smooth at ``z = 0`` (a ``max(z, 0) + log1p(exp(-|z|))`` spelling has kinks there that give
    autodiff a wrong subgradient).

    Args:
      logits: (N, ...) real logits.
      y: targets in [0, 1] of the same shape.

    Returns:
      ``loss`` and ``cache = (logits, y)``.

    >>> float(sigmoid_bce_forward(jnp.zeros(2), jnp.array([0.0, 1.0]))[0])  # log 2
    0.693147...
    """
    _check_same_shape("logits", logits, "y", y)
    y = jnp.asarray(y, logits.dtype)
    z = logits
    loss = jnp.mean(jax.nn.softplus(z) - z * y)
    return loss, (z, y)


def weight_keys(params) -> list[str]:
    """The keys of ``params`` that are regularised: weight matrices, whose names start with W."""
    return sorted(k for k in params if k.startswith("W"))


def l2_penalty_forward(params, reg) -> tuple[Array, Cache]:
    """``R = 0.5 * reg * sum_W sum W^2`` over the weights (keys starting with W) only.

    Returns:
      ``R`` and ``cache = (params, reg)``.

    >>> float(l2_penalty_forward({"W1": jnp.ones((2, 2)), "b1": jnp.ones(2)}, 0.1)[0])
    0.2
    """
    return 0.5 * reg * sum(jnp.sum(params[k] ** 2) for k in weight_keys(params)), (params, reg)


def l1_penalty_forward(params, reg) -> tuple[Array, Cache]:
    """``R = reg * sum_W sum |W|`` over the weights (keys starting with W) only.

    Returns:
      ``R`` and ``cache = (params, reg)``.

    >>> float(l1_penalty_forward({"W1": -jnp.ones((2, 2)), "b1": jnp.ones(2)}, 0.1)[0])
    0.4
    """
    return reg * sum(jnp.sum(jnp.abs(params[k])) for k in weight_keys(params)), (params, reg)


softmax_loss = primal_of(softmax_loss_forward)
svm_loss = primal_of(svm_loss_forward)
squared_error = primal_of(squared_error_forward)
sigmoid_bce = primal_of(sigmoid_bce_forward)
l2_penalty = primal_of(l2_penalty_forward)
l1_penalty = primal_of(l1_penalty_forward)
