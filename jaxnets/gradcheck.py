"""Centered-difference numeric gradients and the relative error used to compare gradients.

Arrays are immutable, so a perturbed input is built anew (``x.at[i].add(h)``) and passed to the
function explicitly; nothing is modified in place. Use float64 (``jax.experimental.enable_x64``)
for checks: in float32 the rounding error of a difference quotient swamps a 1e-7 bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnets.errors import InputError

__all__ = [
    "rel_error",
    "grad_error",
    "numeric_grad",
    "numeric_grad_array",
    "numeric_grads",
    "float64",
    "check_vjp",
    "assert_vjp_close",
    "AUTODIFF_BAR",
    "NUMERIC_BAR",
    "Case",
    "CASES",
    "check_case",
    "within_bars",
    "check_cases",
]


def rel_error(x, y):
    """``max |x - y| / max(1e-8, |x| + |y|)``, elementwise then the maximum (the course's measure).

    Pytrees of arrays are compared leaf by leaf and the largest error is returned.

    >>> rel_error(jnp.array([1.0, 2.0]), jnp.array([1.0, 2.0]))
    0.0
    """
    errs = jax.tree_util.tree_map(
        lambda a, b: np.max(
            np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(1e-8, np.abs(np.asarray(a)) + np.abs(np.asarray(b))),
            initial=0.0,
        ),
        x,
        y,
    )
    return float(max(jax.tree_util.tree_leaves(errs), default=0.0))


_DEFAULT_STEP = {2: 1e-5, 4: 1e-3}


def numeric_grad(f, x, h=None, order=4):
    """Centered-difference gradient of a scalar-valued ``f`` (see ``numeric_grad_array``).

    >>> float(numeric_grad(lambda x: jnp.sum(x ** 3), jnp.array([2.0]), h=1e-2, order=2)[0])
    12.0001...
    """
    return numeric_grad_array(f, x, jnp.ones(()), h, order)


def numeric_grad_array(f, x, dout, h=None, order=4):
    """Numeric vector-Jacobian product ``sum_j dout_j df_j/dx_i`` by centered differences.

    ``order=2`` is the course's ``(f(x + h e_i) - f(x - h e_i)) / 2h``, error ``O(h^2)``; with
    float64 its best step is ``h ~ 1e-5``, where rounding (``eps |f| / h ~ 1e-11 |f|``) limits
    it. ``order=4`` adds the ``2h`` points (Richardson):
    ``(8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / 12h``, error ``O(h^4)``, so a larger step
    ``h = 1e-3`` keeps both truncation (~1e-12) and rounding (~1e-13) far below the 1e-7 bar,
    even for gradient entries near zero. Inputs must stay 2h away from kinks (relu at 0, ties
    in max pooling).

    Differences are taken elementwise *before* weighting by ``dout`` (as the course does), and
    every point runs through one compiled executable, so outputs that do not depend on ``x_i``
    cancel to exactly zero. (A vmapped batch would not do: XLA may reduce different rows of a
    batch in different orders, leaving one-ulp noise.)

    Args:
      f: function of one array returning an array shaped like ``dout``.
      x: the point, any shape; it is not modified (each perturbed copy is passed explicitly).
      dout: upstream gradient, the shape of ``f(x)``.
      h: step (default 1e-5 for order 2, 1e-3 for order 4).
      order: 2 or 4.

    Returns:
      An array like ``x``.
    """
    if order not in _DEFAULT_STEP:
        raise InputError(f"order must be 2 or 4, got {order!r}")
    h = _DEFAULT_STEP[order] if h is None else h
    x = np.asarray(x)
    f_jit = jax.jit(f)
    dout = np.asarray(dout)

    def central(i, step):
        e = np.zeros(x.size, x.dtype)
        e[i] = step
        e = e.reshape(x.shape)
        return np.sum((np.asarray(f_jit(x + e)) - np.asarray(f_jit(x - e))) * dout)

    grad = np.zeros(x.size, dtype=np.result_type(x.dtype, np.float32))
    for i in range(x.size):
        if order == 2:
            grad[i] = central(i, h) / (2 * h)
        else:
            grad[i] = (8 * central(i, h) - central(i, 2 * h)) / (12 * h)
    return jnp.asarray(grad.reshape(x.shape))


def numeric_grads(f, args, argnums, dout=None, h=None, order=4):
    """Numeric VJP of ``f(*args)`` with respect to each argument in ``argnums``.

    Arguments may be pytrees (a params dict): each is flattened with ``ravel_pytree``.

    Args:
      f: function of several arguments returning a scalar or an array.
      args: the point, a tuple.
      argnums: indices of the arguments to differentiate.
      dout: upstream gradient (``None`` for scalar ``f``).
      h, order: as in ``numeric_grad_array``.

    Returns:
      A tuple with one gradient (shaped like its argument) per index in ``argnums``.
    """
    dout = jnp.ones(()) if dout is None else dout

    def along(i):
        flat, unravel = ravel_pytree(args[i])

        def fi(v):
            return f(*args[:i], unravel(v), *args[i + 1 :])

        return unravel(numeric_grad_array(fi, flat, dout, h, order))

    return tuple(along(i) for i in argnums)


def float64():
    """Context manager that turns on float64 (the precision every gradient check runs in)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # jax < 0.8

    return enable_x64()


# ---------------------------------------------------------------------------------------------
# The registry: every layer and loss with a hand-derived backward, with random inputs.


class Case(NamedTuple):
    """A function with a hand-derived backward: ``layers.<name>`` or ``losses.<name>``.

    ``sample(rng)`` draws random shapes and values and returns the positional arguments;
    ``argnums`` are the differentiable ones (the rest are labels, keys or static config).
    """

    name: str
    module: str
    sample: Callable[[np.random.Generator], tuple]
    argnums: tuple[int, ...]


def _normal(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape))


def _away_from_zero(rng, *shape):
    """Normal values with |v| >= 0.05, so no kink (relu, |W|) sits within a finite-difference step."""
    v = rng.standard_normal(shape)
    return jnp.asarray(np.where(v >= 0, v + 0.05, v - 0.05))


def _distinct(rng, *shape):
    """A random permutation of well-separated values: no ties, so every max is unique."""
    size = int(np.prod(shape))
    return jnp.asarray(rng.permutation(size).reshape(shape) * (4.0 / size) - 2.0)


def _dims(rng, k, low=2, high=5):
    return tuple(int(d) for d in rng.integers(low, high + 1, size=k))


def _sample_affine(rng):
    N, M = _dims(rng, 2)
    feature_dims = _dims(rng, int(rng.integers(1, 3)), 1, 4)
    return _normal(rng, N, *feature_dims), _normal(rng, int(np.prod(feature_dims)), M), _normal(rng, M)


def _sample_activation(positive_gap):
    def sample(rng):
        shape = _dims(rng, int(rng.choice([2, 4])))
        return ((_away_from_zero if positive_gap else _normal)(rng, *shape),)

    return sample


def _sample_norm_2d(rng):
    N, D = _dims(rng, 2, 4, 8)  # with 2 samples (features) x_hat is just +-1: a degenerate check
    return 2 + 3 * _normal(rng, N, D), _normal(rng, D), _normal(rng, D)


def _sample_norm_4d(rng):
    N, C, H, W = _dims(rng, 4, 2, 4)
    return 1 + 2 * _normal(rng, N, C, H, W), _normal(rng, C), _normal(rng, C)


def _sample_groupnorm(rng):
    G, per_group = _dims(rng, 2, 1, 3)
    N, H, W = _dims(rng, 3, 2, 3)
    C = G * per_group
    return 1 + 2 * _normal(rng, N, C, H, W), _normal(rng, C), _normal(rng, C), G


def _sample_bn_inference(rng):
    x, gamma, beta = _sample_norm_2d(rng) if rng.random() < 0.5 else _sample_norm_4d(rng)
    C = x.shape[1]
    return x, gamma, beta, _normal(rng, C), jnp.asarray(0.5 + rng.random(C))


def _sample_dropout(rng):
    shape = _dims(rng, 2, 3, 8)
    return _normal(rng, *shape), jax.random.key(int(rng.integers(2**31))), float(rng.choice([0.25, 0.5]))


def _sample_conv(rng):
    N, C, F = _dims(rng, 3, 1, 3)
    HH, WW = _dims(rng, 2, 1, 3)
    stride, pad = int(rng.integers(1, 3)), int(rng.integers(0, 2))
    H = HH - 2 * pad + stride * int(rng.integers(1, 4))
    W = WW - 2 * pad + stride * int(rng.integers(1, 4))
    H, W = (H + stride, W + stride) if min(H, W) < 1 else (H, W)
    return _normal(rng, N, C, H, W), _normal(rng, F, C, HH, WW), _normal(rng, F), stride, pad


def _sample_pool(values):
    def sample(rng):
        size = int(rng.integers(2, 4))
        stride = int(rng.choice([1, 2, size]))
        N, C = _dims(rng, 2, 1, 3)
        H = size + stride * int(rng.integers(0, 3))
        W = size + stride * int(rng.integers(0, 3))
        return values(rng, N, C, H, W), size, stride

    return sample


def _sample_scores_labels(rng, delta_gap=False):
    N, C = _dims(rng, 2, 2, 6)
    y = jnp.asarray(rng.integers(0, C, size=N))
    while True:
        scores = (3 if delta_gap else 1) * _normal(rng, N, C)
        margins = scores - jnp.take_along_axis(scores, y[:, None], 1) + 1.0
        if not delta_gap or jnp.min(jnp.abs(margins)) > 0.05:
            return scores, y


def _sample_regression(rng):
    shape = _dims(rng, 2)
    return _normal(rng, *shape), _normal(rng, *shape)


def _sample_bce(rng):
    shape = _dims(rng, 2)
    return 4 * _normal(rng, *shape), jnp.asarray(rng.random(shape))


def _sample_params(rng):
    D, H, C = _dims(rng, 3)
    params = {
        "W1": _away_from_zero(rng, D, H),
        "b1": _normal(rng, H),
        "W2": _away_from_zero(rng, H, C),
        "b2": _normal(rng, C),
        "gamma1": _normal(rng, H),
    }
    return params, jnp.asarray(float(rng.uniform(0.01, 1.0)))


CASES: tuple[Case, ...] = (
    Case("affine", "layers", _sample_affine, (0, 1, 2)),
    Case("relu", "layers", _sample_activation(True), (0,)),
    Case("sigmoid", "layers", _sample_activation(False), (0,)),
    Case("tanh", "layers", _sample_activation(False), (0,)),
    Case("batchnorm", "layers", _sample_norm_2d, (0, 1, 2)),
    Case("spatial_batchnorm", "layers", _sample_norm_4d, (0, 1, 2)),
    Case("layernorm", "layers", _sample_norm_2d, (0, 1, 2)),
    Case("groupnorm", "layers", _sample_groupnorm, (0, 1, 2)),
    Case("batchnorm_inference", "layers", _sample_bn_inference, (0, 1, 2, 3, 4)),
    Case("dropout", "layers", _sample_dropout, (0,)),
    Case("conv2d", "layers", _sample_conv, (0, 1, 2)),
    Case("max_pool2d", "layers", _sample_pool(_distinct), (0,)),
    Case("avg_pool2d", "layers", _sample_pool(_normal), (0,)),
    Case("softmax_loss", "losses", _sample_scores_labels, (0,)),
    Case("svm_loss", "losses", lambda rng: _sample_scores_labels(rng, delta_gap=True), (0,)),
    Case("squared_error", "losses", _sample_regression, (0, 1)),
    Case("sigmoid_bce", "losses", _sample_bce, (0, 1)),
    Case("l2_penalty", "losses", _sample_params, (0, 1)),
    Case("l1_penalty", "losses", _sample_params, (0, 1)),
)

AUTODIFF_BAR = 1e-10
NUMERIC_BAR = 1e-7


def grad_error(a, b, zero_atol: float = 1e-14) -> float:
    """``rel_error`` over entries that are not exact zeros of the math; the absolute error on those.

    Some gradient entries are 0 in exact arithmetic (a bias just before batch norm, a unit that
    dropout removed for the whole batch) and come out as ~1e-17 rounding residue on both sides,
    where a relative measure is meaningless. Entries with ``max(|a|, |b|) < max(zero_atol, 1e-12)``
    count only when their absolute difference exceeds ``zero_atol`` (then that difference is the
    error). Pytrees are compared leaf by leaf; the largest error is returned.

    >>> grad_error(jnp.array([1.0, 3e-17]), jnp.array([1.0, -2e-17]))
    0.0
    """
    errors = []
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        zero = np.maximum(np.abs(x), np.abs(y)) < max(zero_atol, 1e-12)
        absolute = float(np.max(np.abs(x - y)[zero], initial=0.0))
        relative = rel_error(x[~zero], y[~zero]) if (~zero).any() else 0.0
        errors.append(max(relative, absolute if absolute > zero_atol else 0.0))
    return max(errors, default=0.0)


def check_vjp(
    reference: Callable,
    candidate: Callable,
    args: tuple,
    argnums: tuple[int, ...] = (0,),
    seed: int = 0,
    *,
    jit: bool = False,
    h: float | None = None,
) -> dict[str, float]:
    """Errors of ``candidate``'s VJP against ``jax.vjp(reference)`` and centered differences, in float64.

    ``reference`` is a function differentiated by autodiff; ``candidate`` computes the same
    function with a hand-written backward (a ``jax.custom_vjp``, e.g. built with
    ``manual_grads.with_backward(my_forward, my_backward)``). Both are called as ``f(*args)``;
    the arguments in ``argnums`` (arrays or pytrees) are differentiated, the others (labels,
    keys, static configuration) are held fixed. One random upstream gradient ``dout`` (drawn
    with ``seed``) weights the output, so every output entry takes part.

    Exact zeros of the math are compared absolutely (see ``grad_error``): autodiff within 1e-14,
    numeric within 1e-9.

    Args:
      reference: ``f(*args) -> array`` differentiated by ``jax.vjp``.
      candidate: the same function with its own backward.
      args: the point, a tuple of positional arguments (converted to float64 where floating).
      argnums: indices of the differentiated arguments.
      seed: seed of ``dout``.
      jit: compile both functions first.
      h: numeric step (default: fourth-order differences with step 1e-3).

    Returns:
      ``{"forward": ..., "autodiff": ..., "numeric": ...}``: relative errors of the candidate's
      output against the reference's, and of its VJP against autodiff and against numeric
      differences. Compare with ``AUTODIFF_BAR`` (1e-10) and ``NUMERIC_BAR`` (1e-7).

    >>> from jaxnets import manual_grads
    >>> def cube_forward(x):
    ...     return x**3, x
    >>> def cube_backward(dout, x):
    ...     return 3 * x**2 * dout
    >>> cube = manual_grads.with_backward(cube_forward, cube_backward)
    >>> errors = check_vjp(lambda x: x**3, cube, (np.linspace(-1.0, 1.0, 5),))
    >>> errors["autodiff"] < AUTODIFF_BAR and errors["numeric"] < NUMERIC_BAR
    True
    """
    argnums = tuple(argnums)
    if not argnums or any(not 0 <= i < len(args) for i in argnums):
        raise InputError(f"argnums must name arguments of args (0..{len(args) - 1}), got {argnums!r}")
    with float64():
        args = tuple(
            jax.tree_util.tree_map(
                lambda a: (
                    jnp.asarray(a, jnp.float64) if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating) else a
                ),
                a,
            )
            for a in args
        )

        def restricted(fn):
            def f(*diff_args):
                full = list(args)
                for i, a in zip(argnums, diff_args, strict=True):
                    full[i] = a
                return fn(*full)

            return jax.jit(f) if jit else f

        diff_args = tuple(args[i] for i in argnums)
        out, reference_vjp = jax.vjp(restricted(reference), *diff_args)
        candidate_out, candidate_vjp = jax.vjp(restricted(candidate), *diff_args)
        dout = jnp.asarray(np.random.default_rng(seed).standard_normal(jnp.shape(out)))
        manual = candidate_vjp(dout)
        numeric = numeric_grads(restricted(reference), diff_args, range(len(diff_args)), dout, h=h)
        return {
            "forward": rel_error(out, candidate_out),
            "autodiff": grad_error(reference_vjp(dout), manual, 1e-14),
            "numeric": grad_error(numeric, manual, 1e-9),
        }


def assert_vjp_close(
    reference: Callable,
    candidate: Callable,
    *check_args,
    autodiff_bar: float = AUTODIFF_BAR,
    numeric_bar: float = NUMERIC_BAR,
    **kwargs,
) -> dict[str, float]:
    """``check_vjp`` for pytest: raise ``AssertionError`` (with all three errors) if one is over its bar.

    Takes ``check_vjp``'s arguments; the forward must agree to 1e-12 and the VJP to ``autodiff_bar`` /
    ``numeric_bar``.

    >>> assert_vjp_close(jnp.sin, jnp.sin, (np.array([0.3, 1.2]),))["autodiff"]
    0.0
    """
    errors = check_vjp(reference, candidate, *check_args, **kwargs)
    over = [
        name
        for name, bar in (("forward", 1e-12), ("autodiff", autodiff_bar), ("numeric", numeric_bar))
        if not errors[name] < bar
    ]
    if over:
        raise AssertionError(
            f"{', '.join(over)} over the bar (autodiff {autodiff_bar:.0e}, numeric {numeric_bar:.0e}): {errors}"
        )
    return errors


def check_case(case: Case, seed: int, *, jit: bool = False) -> dict[str, float]:
    """``check_vjp`` of ``manual_grads.<name>`` against the autodiff ``<module>.<name>`` on ``case.sample``.

    Runs in float64 on random arguments drawn from ``case.sample`` with ``seed``.

    Returns:
      ``{"forward": ..., "autodiff": ..., "numeric": ...}`` as ``check_vjp``.
    """
    from jaxnets import layers, losses, manual_grads

    with float64():
        args = case.sample(np.random.default_rng(seed))
        reference = getattr({"layers": layers, "losses": losses}[case.module], case.name)
        return check_vjp(reference, getattr(manual_grads, case.name), args, case.argnums, seed, jit=jit)


def within_bars(errors: dict[str, float]) -> bool:
    """Whether ``errors`` (as ``check_vjp``'s) are under ``AUTODIFF_BAR`` and ``NUMERIC_BAR``.

    >>> within_bars({"autodiff": 1e-12, "numeric": 1e-9})
    True
    """
    return errors["autodiff"] < AUTODIFF_BAR and errors["numeric"] < NUMERIC_BAR


def check_cases(trials: int = 2, seed: int = 0) -> dict[str, dict[str, float]]:
    """The worst ``check_case`` errors of every case in ``CASES`` over seeds ``seed .. seed + trials - 1``.

    Returns:
      ``{case name: {"autodiff": max error, "numeric": max error}}``, in the order of ``CASES``.
    """
    worst = {}
    for case in CASES:
        errors = [check_case(case, s) for s in range(seed, seed + trials)]
        worst[case.name] = {k: max(e[k] for e in errors) for k in ("autodiff", "numeric")}
    return worst
