"""The documents' worked examples, and the course notebooks' reference values."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import gradcheck, layers, manual_grads
from jaxnets.gradcheck import rel_error


def test_reverse_mode_example(x64):
    """f(x, y) = x^2 y + y + 2 at (3, 4): df/dx = 2xy = 24, df/dy = x^2 + 1 = 10."""
    f = lambda x, y: x * x * y + y + 2
    dx, dy = jax.grad(f, argnums=(0, 1))(3.0, 4.0)
    assert (float(dx), float(dy)) == (24.0, 10.0)
    numeric = gradcheck.numeric_grads(lambda x, y: f(x, y), (jnp.asarray(3.0), jnp.asarray(4.0)), (0, 1))
    assert rel_error(numeric, (24.0, 10.0)) < 1e-10


def test_sigmoid_neuron_circuit(x64):
    """f = sigmoid(w0 x0 + w1 x1 + w2), w = (2, -3, -3), x = (-1, -2), backprop by hand."""
    x = jnp.array([[-1.0, -2.0]])
    w = jnp.array([[2.0], [-3.0]])
    b = jnp.array([-3.0])
    z, affine_cache = layers.affine_forward(x, w, b)
    out, sigmoid_cache = layers.sigmoid_forward(z)
    dz = manual_grads.sigmoid_backward(jnp.ones_like(out), sigmoid_cache)
    dx, dw, db = manual_grads.affine_backward(dz, affine_cache)
    np.testing.assert_allclose(float(out[0, 0]), 0.73, atol=5e-3)
    np.testing.assert_allclose([dw[0, 0], dw[1, 0], db[0]], [-0.20, -0.39, 0.20], atol=5e-3)
    np.testing.assert_allclose(dx[0], [0.39, -0.59], atol=5e-3)
    # And the same through jax.grad of the twins.
    grads = jax.grad(lambda x, w, b: manual_grads.sigmoid(manual_grads.affine(x, w, b))[0, 0], argnums=(0, 1, 2))(
        x, w, b
    )
    assert rel_error(grads, (dx, dw, db)) < 1e-12


def _linspace(low, high, shape):
    return jnp.linspace(low, high, int(np.prod(shape))).reshape(shape)


def test_course_reference_affine_forward(x64):
    x = _linspace(-0.1, 0.5, (2, 4, 5, 6))
    w = _linspace(-0.2, 0.3, (120, 3))
    b = jnp.linspace(-0.3, 0.1, 3)
    expected = [[1.49834967, 1.70660132, 1.91485297], [3.25553199, 3.5141327, 3.77273342]]
    assert rel_error(layers.affine(x, w, b), jnp.asarray(expected)) < 1e-8


def test_course_reference_relu_forward(x64):
    x = _linspace(-0.5, 0.5, (3, 4))
    expected = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.04545455, 0.13636364], [0.22727273, 0.31818182, 0.40909091, 0.5]]
    assert rel_error(layers.relu(x), jnp.asarray(expected)) < 5e-8


def test_course_reference_conv_forward(x64):
    x = _linspace(-0.1, 0.5, (2, 3, 4, 4))
    w = _linspace(-0.2, 0.3, (3, 3, 4, 4))
    b = jnp.linspace(-0.1, 0.2, 3)
    expected = [
        [
            [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
            [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
            [[0.50813986, 0.54309974], [0.64082444, 0.67101435]],
        ],
        [
            [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
            [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
            [[2.36270298, 2.36904306], [2.38090835, 2.38247847]],
        ],
    ]
    assert rel_error(layers.conv2d(x, w, b, stride=2, pad=1), jnp.asarray(expected)) < 1e-7


def test_course_reference_max_pool_forward(x64):
    x = _linspace(-0.3, 0.4, (2, 3, 4, 4))
    expected = [
        [
            [[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
            [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
            [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]],
        ],
        [
            [[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
            [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
            [[0.32631579, 0.34105263], [0.38526316, 0.4]],
        ],
    ]
    assert rel_error(layers.max_pool2d(x, 2, 2), jnp.asarray(expected)) < 1e-7


def test_course_reference_batchnorm_statistics(x64, rng):
    """After train-mode batch norm the features have mean beta and std gamma."""
    x = jnp.asarray(rng.standard_normal((200, 3)) @ rng.standard_normal((3, 3)) + 12)
    gamma, beta = jnp.array([1.0, 2.0, 3.0]), jnp.array([11.0, 12.0, 13.0])
    out = layers.batchnorm(x, gamma, beta)
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=0), gamma, rtol=1e-5)


def test_running_stats_and_inference(x64, rng):
    x = jnp.asarray(rng.standard_normal((64, 3, 5, 5)) * 2 + 1)
    mean, var = jnp.zeros(3), jnp.zeros(3)
    for _ in range(400):  # 0.9^400 ~ 5e-19: the running averages have converged
        mean, var = layers.update_running_stats(mean, var, x)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-8)
    np.testing.assert_allclose(var, x.var(axis=(0, 2, 3)), rtol=1e-8)
    train_out = layers.spatial_batchnorm(x, jnp.ones(3), jnp.zeros(3))
    infer_out = layers.batchnorm_inference(x, jnp.ones(3), jnp.zeros(3), mean, var)
    assert rel_error(train_out, infer_out) < 1e-8
