"""Data-parallel training gives the single-device result for the shared curvature kinds.

``NewtonLoss(curvature="hessian" | "fisher")`` shares one curvature matrix over the batch,
the mean over the *global* batch (docs/distribution.md). Two engines, each in subprocesses
run by tests/distribution_worker.py, on the same problem (fixed data and initial weights,
2 SGD steps of a global batch of 8, the halves of every batch very different):

- TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy`, two worker processes on
  localhost (TF_CONFIG, CPU, ring all-reduce over gRPC), each fed its half of every global
  batch; trained by ``model.fit`` (around the Keras 3 MultiWorkerMirroredStrategy bugs, see
  ``_fit_under_multi_worker``) and, for two cases, by a plain ``strategy.run`` loop.
- JAX: ``keras.distribution.DataParallel`` over two host devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=2``), ``model.fit`` on the global
  batch, sharded by batch rows.

References: the single-device fit on the whole global batch in this process (float32; the
Keras loss divides by the global batch under distribution, so one device's
``batch_size=8`` fit is the right comparison), the same on JAX in the JAX subprocess, and
the float64 finite-difference Newton target of tests/newton_reference.py. A control shows
that the comparison can fail: the targets of each half alone (a per-worker curvature) are
far from the global ones.

Tolerances: distributed against single-device float32 on the same backend 2e-5 absolute on
weights of order 1 (observed <= 2e-6: the all-reduce sums in another order); JAX against
TensorFlow 5e-5 (their ``eigh`` differ in the last bits, amplified by the Fisher's
conditioning; observed <= 1e-5); float32 targets against the float64 finite-difference
reference 1e-4 relative.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import distribution_worker as dw
from conftest import REPO
from newton_reference import reference_target

WORKER = os.path.join(REPO, "tests", "distribution_worker.py")
WORKER_TIMEOUT = 240  # seconds for the whole run of one subprocess (normally 25-50 s)
CASE_NAMES = [case[0] for case in dw.CASES]
CASES = {case[0]: case[1:] for case in dw.CASES}
SAME_BACKEND = dict(rtol=1e-5, atol=2e-5)
CROSS_BACKEND = dict(rtol=1e-5, atol=5e-5)
LOSSES_NP = {"quartic": dw.quartic_loss_np, "softmax_ce": dw.softmax_ce_loss_np}


# -- references ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def single_device():
    """``{case: (weights after 2 steps, targets of the first global batch)}`` on one device
    of the current Keras backend (TensorFlow in the test suite)."""
    return {name: dw.single_device_run(*CASES[name]) for name in CASE_NAMES}


def _forward_np(weights, x):
    w0, b0, w1, b1 = (np.asarray(w, np.float64) for w in weights)
    return np.tanh(x.astype(np.float64) @ w0 + b0) @ w1 + b1


def _reference_targets(name, rows=None):
    """Float64 finite-difference z* of the first global batch (or of ``rows`` of it alone)."""
    loss_name, curvature, weighted = CASES[name]
    x, y, sw, w0 = dw.case_data(loss_name, weighted)
    rows = np.arange(dw.GLOBAL_BATCH) if rows is None else np.asarray(rows)
    return reference_target(LOSSES_NP[loss_name], y[rows].astype(np.float64),
                            _forward_np(w0, x[rows]), curvature, dw.TIKHONOV,
                            None if sw is None else sw[rows])


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_control_halves_alone_give_other_targets(name):
    """The halves of a global batch differ: a per-worker curvature (each worker's half
    alone) gives targets far from the global-batch ones, so the checks below can fail."""
    z = _reference_targets(name)
    for k in range(dw.WORKERS):
        rows = np.arange(k * dw.LOCAL_BATCH, (k + 1) * dw.LOCAL_BATCH)
        alone = _reference_targets(name, rows)
        assert np.max(np.abs(alone - z[rows])) > 0.05, (name, k)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_single_device_reference(single_device, name):
    """The single-device run moves the weights, and its targets are z* of the conventions."""
    weights, z = single_device[name]
    assert _max_diff(weights, dw.problem()[4]) > 0.1
    np.testing.assert_allclose(z, _reference_targets(name), rtol=1e-4, atol=1e-4)


# -- TensorFlow: MultiWorkerMirroredStrategy, two processes ----------------------------------


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_workers(tmp_path, attempt):
    ports = _free_ports(dw.WORKERS)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for task in range(dw.WORKERS):
        out = str(tmp_path / f"tf{attempt}_worker{task}")
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
                   CUDA_VISIBLE_DEVICES="-1",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": task}}))
        env.pop("XLA_FLAGS", None)
        log = open(out + ".log", "w")
        procs.append((subprocess.Popen([sys.executable, WORKER, "tf-worker", out], cwd=REPO,
                                       env=env, stdout=log, stderr=subprocess.STDOUT),
                      log, out))
    deadline = time.monotonic() + WORKER_TIMEOUT
    runs = []
    for proc, log, out in procs:
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p, _, _ in procs:  # only the workers started here, by their Popen handle
                if p.poll() is None:
                    p.kill()
                    p.wait()
            rc = "timeout"
        log.close()
        with open(out + ".log") as f:
            runs.append((rc, f.read(), out))
    return runs


@pytest.fixture(scope="module")
def tf_workers(tmp_path_factory):
    """``[(report, arrays)]`` of the two workers; skips if they cannot run collectives."""
    pytest.importorskip("tensorflow")
    tmp_path = tmp_path_factory.mktemp("multi_worker")
    for attempt in range(2):  # a second try on fresh ports (another process may take one)
        runs = _start_workers(tmp_path, attempt)
        if all(rc == 0 for rc, _, _ in runs):
            break
        started = all("COLLECTIVES OK" in log for _, log, _ in runs)
        if started:  # the cluster ran: a failure of the training itself is a real failure
            pytest.fail("a MultiWorkerMirroredStrategy worker failed:\n" + "\n".join(
                f"--- worker {k} (exit {rc})\n{log[-4000:]}"
                for k, (rc, log, _) in enumerate(runs)))
    else:
        pytest.skip("the two MultiWorkerMirroredStrategy workers could not start collective "
                    "ops on localhost (gRPC ports / network unavailable?): " + " | ".join(
                        f"worker {k} exit {rc}: {log[-600:]!r}"
                        for k, (rc, log, _) in enumerate(runs)))
    results = []
    for _, _, out in runs:
        with open(out + ".json") as f:
            report = json.load(f)
        with np.load(out + ".npz") as data:
            results.append((report, dict(data)))
    return results


def test_multi_worker_cluster(tf_workers):
    """Two workers of one CPU replica each, one input pipeline each, a working all-reduce."""
    for task, (report, _) in enumerate(tf_workers):
        assert report["task"] == task
        assert report["replicas"] == 2
        assert len(report["worker_devices"]) == 1
        assert report["all_reduce_of_task_indices"] == 1.0
        assert {tuple(p) for p in report["input_pipelines"]} == {(task, 2)}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_multi_worker_fit_equals_single_device(tf_workers, single_device, name):
    """Both workers end with the single-device weights of the global-batch fit."""
    expected, _ = single_device[name]
    for report, arrays in tf_workers:
        got = [arrays[f"{name}/w{j}"] for j in range(len(expected))]
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, **SAME_BACKEND,
                                       err_msg=f"{name}, worker {report['task']}")


@pytest.mark.parametrize("name", dw.LOOP_CASES)
def test_multi_worker_custom_loop_equals_single_device(tf_workers, single_device, name):
    """The same with a plain ``strategy.run`` loop of the compiled loss and optimizer."""
    expected, _ = single_device[name]
    for report, arrays in tf_workers:
        for j, b in enumerate(expected):
            np.testing.assert_allclose(arrays[f"{name}/loop_w{j}"], b, **SAME_BACKEND,
                                       err_msg=f"{name}, worker {report['task']}")


@pytest.mark.parametrize("name", CASE_NAMES)
def test_multi_worker_targets_use_the_global_batch_curvature(tf_workers, single_device, name):
    """Each worker's targets for its half are the rows of the global batch's z*."""
    _, expected = single_device[name]
    z = np.full_like(expected, np.nan)
    for _, arrays in tf_workers:
        z[arrays[f"{name}/rows"] % dw.GLOBAL_BATCH] = arrays[f"{name}/z"]
    np.testing.assert_allclose(z, expected, **SAME_BACKEND)
    np.testing.assert_allclose(z, _reference_targets(name), rtol=1e-4, atol=1e-4)


# -- JAX: keras.distribution.DataParallel over two host devices ------------------------------


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """``(report, arrays)`` of the JAX DataParallel subprocess."""
    pytest.importorskip("jax")
    out = str(tmp_path_factory.mktemp("jax_data_parallel") / "jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, WORKER, "jax", out], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    with open(out + ".json") as f:
        report = json.load(f)
    with np.load(out + ".npz") as data:
        return report, dict(data)


def test_jax_runs_on_two_devices(jax_run):
    """Two CPU devices; inputs split 4 + 4 rows, weights replicated on both."""
    report, _ = jax_run
    assert report["replicas"] == 2, report["devices"]
    for name in CASE_NAMES:
        assert report[name] == {"input_devices": 2, "input_shard_rows": [4, 4],
                                "target_devices": 2, "weight_devices": 2}, name


@pytest.mark.parametrize("name", CASE_NAMES)
def test_jax_data_parallel_equals_single_device(jax_run, single_device, name):
    """DataParallel weights and targets: those of one JAX device, of TensorFlow's single
    device, and z* of the float64 reference."""
    _, arrays = jax_run
    expected_w, expected_z = single_device[name]
    weights = [arrays[f"{name}/w{j}"] for j in range(len(expected_w))]
    for j, w in enumerate(weights):
        np.testing.assert_allclose(w, arrays[f"{name}/single_w{j}"], **SAME_BACKEND,
                                   err_msg=f"{name}: DataParallel vs one JAX device")
        np.testing.assert_allclose(w, expected_w[j], **CROSS_BACKEND,
                                   err_msg=f"{name}: DataParallel vs one TF device")
    z = arrays[f"{name}/z"]
    np.testing.assert_allclose(z, arrays[f"{name}/single_z"], **SAME_BACKEND)
    np.testing.assert_allclose(z, expected_z, **CROSS_BACKEND)
    np.testing.assert_allclose(z, _reference_targets(name), rtol=1e-4, atol=1e-4)
