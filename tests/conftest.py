import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def full_mnist_path():
    """Full MNIST (Keras' ``mnist.npz``) named by ``$KERAS_NEWTON_MNIST``, else ``None``.

    Tests that need full MNIST skip without it; nothing else is searched.
    """
    path = os.environ.get("KERAS_NEWTON_MNIST")
    return path if path and os.path.isfile(path) else None


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def fd_gradient(f, y, h=1e-5):
    """Central finite-difference gradient of scalar ``f`` at float64 vector ``y``."""
    y = np.asarray(y, np.float64)
    g = np.zeros_like(y)
    for j in range(y.size):
        e = np.zeros_like(y)
        e[j] = h
        g[j] = (f(y + e) - f(y - e)) / (2 * h)
    return g


def fd_hessian(f, y, h=1e-4):
    """Central finite-difference Hessian of scalar ``f`` at float64 vector ``y``."""
    y = np.asarray(y, np.float64)
    m = y.size
    hess = np.zeros((m, m))
    for j in range(m):
        for k in range(m):
            ej = np.zeros(m)
            ek = np.zeros(m)
            ej[j] = h
            ek[k] = h
            hess[j, k] = (
                f(y + ej + ek) - f(y + ej - ek) - f(y - ej + ek) + f(y - ej - ek)
            ) / (4 * h * h)
    return 0.5 * (hess + hess.T)


def run_backend_script(script, backend, timeout=600, x64=False):
    """Runs ``script`` (Python source printing ``RESULT<json>``) with ``KERAS_BACKEND`` set to
    ``backend`` in a fresh process and returns the decoded JSON of its last RESULT line.

    The suite runs on TensorFlow in-process (above); JAX and PyTorch run this way. The repo
    and the tests folder are on the child's path; ``x64`` sets ``JAX_ENABLE_X64``.
    """
    import json
    import subprocess
    import sys

    pytest.importorskip(backend)
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join([REPO, tests]))
    env.pop("JAX_ENABLE_X64", None)
    if x64:
        env["JAX_ENABLE_X64"] = "1"
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert lines, f"no RESULT line; stdout ends: {proc.stdout[-1000:]}"
    return json.loads(lines[-1][len("RESULT"):])
