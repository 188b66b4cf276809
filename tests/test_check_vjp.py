"""The public gradient check: a user's layer with a hand-written backward, checked like jaxnets' own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import gradcheck, layers, manual_grads
from jaxnets.gradcheck import AUTODIFF_BAR, NUMERIC_BAR, assert_vjp_close, check_vjp


def scale_shift_forward(x, w, b):
    """out = x * w + b (per feature), cache (x, w)."""
    return x * w + b, (x, w)


def scale_shift_backward(dout, cache):
    x, w = cache
    return dout * w, jnp.sum(dout * x, axis=0), jnp.sum(dout, axis=0)


def wrong_backward(dout, cache):
    dx, dw, db = scale_shift_backward(dout, cache)
    return dx, 1.01 * dw, db


def _args(rng):
    return rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal(3)


def test_a_users_layer_passes(rng):
    layer = manual_grads.with_backward(scale_shift_forward, scale_shift_backward)
    reference = lambda x, w, b: x * w + b
    errors = check_vjp(reference, layer, _args(rng), argnums=(0, 1, 2))
    assert set(errors) == {"forward", "autodiff", "numeric"}
    assert errors["forward"] == 0.0 and errors["autodiff"] < AUTODIFF_BAR and errors["numeric"] < NUMERIC_BAR
    assert_vjp_close(reference, layer, _args(rng), (0, 1, 2), 3, jit=True)


def test_a_wrong_backward_is_caught(rng):
    layer = manual_grads.with_backward(scale_shift_forward, wrong_backward)
    reference = lambda x, w, b: x * w + b
    errors = check_vjp(reference, layer, _args(rng), argnums=(0, 1, 2))
    assert errors["autodiff"] > 1e-3 and errors["numeric"] > 1e-3
    assert check_vjp(reference, layer, _args(rng), argnums=(0,))["autodiff"] < AUTODIFF_BAR  # dx is right
    with pytest.raises(AssertionError, match="autodiff, numeric over the bar"):
        assert_vjp_close(reference, layer, _args(rng), (0, 1, 2))


def test_runs_in_float64_whatever_the_inputs(rng):
    x = np.asarray(rng.standard_normal((4, 3)), np.float32)
    errors = check_vjp(jnp.tanh, manual_grads.tanh, (x,))
    assert errors["numeric"] < NUMERIC_BAR  # a float32 difference quotient would miss this bar


def test_exact_zeros_compare_absolutely(rng):
    """A bias right before batch norm has gradient 0 in exact arithmetic: residue ~1e-17 on both sides."""
    x, w = rng.standard_normal((6, 4)), rng.standard_normal((4, 3))
    gamma, beta = np.ones(3), np.zeros(3)

    def net(ops):
        return lambda b: jnp.sum(ops.batchnorm(ops.affine(x, w, b), gamma, beta) ** 3)

    errors = check_vjp(net(layers), net(manual_grads), (rng.standard_normal(3),))
    assert errors["autodiff"] < AUTODIFF_BAR and errors["numeric"] < NUMERIC_BAR
    residue_a, residue_b = np.array([3e-17, 1.0]), np.array([-2e-17, 1.0])
    assert gradcheck.rel_error(residue_a, residue_b) > AUTODIFF_BAR  # two residues would fail a relative bar
    assert gradcheck.grad_error(residue_a, residue_b) == 0.0
    assert gradcheck.grad_error(np.array([0.0]), np.array([1e-13])) == 1e-13  # but a real miss still counts


def test_pytree_arguments_and_fixed_labels(rng):
    params = {"W1": rng.standard_normal((3, 4)), "b1": rng.standard_normal(4)}
    x, y = rng.standard_normal((5, 3)), jnp.asarray(rng.integers(0, 4, 5))

    def loss(ops, loss_ops):
        return lambda p, y: loss_ops.softmax_loss(ops.affine(x, p["W1"], p["b1"]), y)

    from jaxnets import losses

    assert_vjp_close(loss(layers, losses), loss(manual_grads, manual_grads), (params, y), argnums=(0,))


def test_bad_argnums_is_clear(rng):
    with pytest.raises(ValueError, match=r"argnums must name arguments of args \(0..0\), got \(1,\)"):
        check_vjp(jnp.sin, jnp.sin, (np.ones(2),), argnums=(1,))


def test_project_cases_go_through_check_vjp(monkeypatch):
    calls = []
    original = gradcheck.check_vjp
    monkeypatch.setattr(gradcheck, "check_vjp", lambda *a, **k: calls.append(a[3]) or original(*a, **k))
    case = next(c for c in gradcheck.CASES if c.name == "affine")
    assert gradcheck.check_case(case, 0)["autodiff"] < AUTODIFF_BAR
    assert calls == [case.argnums]
    assert jax.config.read("jax_enable_x64") is False  # float64 only inside the check


def test_the_readme_example_runs():
    """The README's "Gradient checks" example, run as written."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Gradient checks") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    errors = namespace["errors"]
    assert errors["forward"] == 0.0 and errors["autodiff"] < 1e-14 and errors["numeric"] < 1e-9
