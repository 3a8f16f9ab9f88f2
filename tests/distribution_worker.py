"""Training with `NewtonLoss` under multi-worker / multi-device data parallelism.

Shared by tests/test_distribution.py (which imports the problem definitions below to compute
the single-device result) and run as a script in the distributed processes:

    python tests/distribution_worker.py tf-worker OUT   # one tf.distribute worker; TF_CONFIG
    python tests/distribution_worker.py jax OUT         # KERAS_BACKEND=jax, XLA_FLAGS=
                                                        # --xla_force_host_platform_device_count=2

Each writes ``OUT.npz`` with, per case of `CASES`, the weights after `STEPS` SGD steps of
the global batch `GLOBAL_BATCH` (``{case}/w{j}``) and the Newton targets of the first
global batch at the initial weights (``{case}/z``; a tf.distribute worker writes only the
rows of its own shard, ``{case}/rows`` says which), plus ``OUT.json`` with what the run saw
(number of replicas, devices).

The problem: a Dense-tanh-Dense model with fixed initial weights drawn by NumPy (the same
on every backend), 16 samples, 2 global batches of 8. Worker/device ``k`` of 2 gets rows
``4k .. 4k + 3`` of every global batch, and the two halves are made very different (shifted
inputs and targets), so the curvature of one half is far from that of the global batch: a
run whose shared curvature were not the global-batch mean would give visibly different
targets and weights.
"""

import json
import os
import sys

WORKERS = 2
GLOBAL_BATCH = 8
STEPS = 2
LOCAL_BATCH = GLOBAL_BATCH // WORKERS
LEARNING_RATE = 0.5
TIKHONOV = 0.05

# (case name, base loss name, curvature, with sample weights)
CASES = (
    ("quartic_hessian", "quartic", "hessian", False),  # autodiff, shared Hessian sum
    ("quartic_hessian_weighted", "quartic", "hessian", True),
    ("quartic_fisher", "quartic", "fisher", False),  # autodiff gradients, Fisher mean
    ("softmax_ce_hessian", "softmax_ce", "hessian", False),  # closed form (Example 2)
    ("softmax_ce_fisher", "softmax_ce", "fisher", False),
)


def worker_rows(k):
    """Rows of the 16 samples that worker/device ``k`` trains on, in step order."""
    return [b * GLOBAL_BATCH + k * LOCAL_BATCH + r
            for b in range(STEPS) for r in range(LOCAL_BATCH)]


def problem():
    """``(x, y_real, y_onehot, sample_weight, initial_weights)`` as float32 NumPy arrays."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    second = np.zeros(n, bool)
    second[worker_rows(1)] = True  # worker 1's rows: shifted inputs and targets
    x = rng.normal(size=(n, 5)) + 1.5 * second[:, None]
    y_real = rng.normal(size=(n, 3)) + 3.0 * second[:, None]
    labels = np.where(second, 2, rng.integers(0, 2, size=n))
    y_onehot = np.eye(3)[labels]
    sample_weight = rng.uniform(0.2, 2.0, size=n)
    weights = [0.6 * rng.normal(size=(5, 6)), 0.1 * rng.normal(size=(6,)),
               0.6 * rng.normal(size=(6, 3)), 0.1 * rng.normal(size=(3,))]
    cast = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return (cast(x), cast(y_real), cast(y_onehot), cast(sample_weight),
            [cast(w) for w in weights])


def quartic_loss(y_true, y_pred):
    """Per-sample ``sum log cosh(d) + 0.1 d^4 + softplus(sum y)``: dense, non-constant
    Hessian, no closed form (autodiff). tests/mirrored_check.py uses it too."""
    from keras import ops

    d = y_pred - y_true
    return ops.sum(ops.log(ops.cosh(d)) + 0.1 * d**4, axis=-1) + ops.softplus(
        ops.sum(y_pred, axis=-1))


def quartic_loss_np(t, y):
    """`quartic_loss` of one sample in float64 NumPy (for tests/newton_reference.py)."""
    import numpy as np

    d = y - t
    return np.sum(np.log(np.cosh(d)) + 0.1 * d**4) + np.logaddexp(0.0, np.sum(y))


def softmax_ce_loss_np(t, y):
    """Softmax cross-entropy from logits of one sample in float64 NumPy."""
    import numpy as np

    return -np.sum(t * (y - np.logaddexp.reduce(y)))


def base_loss(name):
    import keras

    if name == "quartic":
        return quartic_loss
    if name == "softmax_ce":
        # Closed form (paper Example 2): H_i = diag(p_i) - p_i p_i^T, depends on y_i.
        return keras.losses.CategoricalCrossentropy(from_logits=True)
    raise ValueError(name)


def case_data(loss_name, weighted):
    """``(x, y, sample_weight or None, initial_weights)`` of a case."""
    x, y_real, y_onehot, sw, weights = problem()
    return x, (y_real if loss_name == "quartic" else y_onehot), (sw if weighted else None), \
        weights


def build_model(weights):
    import keras

    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh"),
                              keras.layers.Dense(3)])
    model.set_weights(weights)
    return model


def compile_model(model, loss_name, curvature):
    import keras

    import keras_newton as kn

    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE),
                  loss=kn.NewtonLoss(base_loss(loss_name), curvature=curvature,
                                     tikhonov=TIKHONOV))
    return model


def single_device_run(loss_name, curvature, weighted):
    """``(weights after STEPS steps, targets of the first global batch)`` on one device."""
    from keras import ops

    x, y, sw, w0 = case_data(loss_name, weighted)
    model = compile_model(build_model(w0), loss_name, curvature)
    z = model.loss.target(y[:GLOBAL_BATCH], model(x[:GLOBAL_BATCH]),
                          None if sw is None else sw[:GLOBAL_BATCH])
    z = ops.convert_to_numpy(z)
    model.fit(x, y, sample_weight=sw, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False,
              verbose=0)
    return [ops.convert_to_numpy(v) for v in model.get_weights()], z


# -- tf.distribute.MultiWorkerMirroredStrategy -----------------------------------------------

# Cases also trained by a custom training loop (`strategy.run`), besides `model.fit`.
LOOP_CASES = ("quartic_hessian", "softmax_ce_fisher")


def _fit_under_multi_worker(strategy, model, data, local_batch):
    """``model.fit(data)`` under MultiWorkerMirroredStrategy, around two Keras 3 bugs.

    Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy with more than one worker
    (keras-team/keras#20585); two private steps of its TensorFlow trainer call
    ``strategy.reduce`` in ways that only work in one process:

    - ``_maybe_symbolic_build`` reduces the first batch, a nest of PerReplica values, with
      ``strategy.reduce("MEAN", nest)``, which takes one value only ("Attempt to convert a
      value (PerReplica...) to a Tensor"). It only needs the shapes: build from one local
      batch instead (and no batch is drawn from the training iterator).
    - ``reduce_per_replica`` reduces every log with ``strategy.reduce("MEAN", v, axis=0)``,
      which fails on scalars ("Invalid reduction dimension 0 for input with 0 dimensions").
      The train step returns its logs as shape ``(1,)`` instead.

    Neither touches the training step itself (loss, gradients, optimizer).
    """
    import tensorflow as tf

    def symbolic_build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=tuple(tf.constant(v) for v in local_batch))

    train_step = model.train_step
    model._maybe_symbolic_build = symbolic_build
    model.train_step = lambda data: {
        k: tf.reshape(v, (1,)) for k, v in train_step(data).items()}
    model.fit(data, epochs=1, steps_per_epoch=STEPS, verbose=0)


def _custom_loop(strategy, model, data):
    """`STEPS` steps of the compiled loss and optimizer in a plain `strategy.run` loop.

    The Keras loss divides its reduced value by the number of replicas under
    `tf.distribute` and the optimizer sums the gradients across replicas, so each step is
    the gradient of the global-batch mean, as on one device.
    """
    import tensorflow as tf

    def step(batch):
        x, y = batch[0], batch[1]
        sw = batch[2] if len(batch) > 2 else None
        with tf.GradientTape() as tape:
            loss = model.loss(y, model(x, training=True), sw)
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))

    @tf.function
    def train(iterator):
        for _ in range(STEPS):
            strategy.run(step, args=(next(iterator),))

    train(iter(data))


def _tf_worker(out):
    import tensorflow as tf

    # Created first, before any other TensorFlow op, as MultiWorkerMirroredStrategy needs.
    # A collective that waits longer than the timeout fails instead of hanging.
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=120.0)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]

    import numpy as np

    # The collectives work: the replicas' task indices sum to 0 + 1.
    total = strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
        "sum", tf.constant(float(task))))
    total = float(strategy.experimental_local_results(total)[0])
    print(f"COLLECTIVES OK task={task} sum={total}", flush=True)

    results = {}
    report = {"task": task, "replicas": int(strategy.num_replicas_in_sync),
              "worker_devices": list(strategy.extended.worker_devices),
              "all_reduce_of_task_indices": total, "input_pipelines": []}
    first = np.array(worker_rows(task)[:LOCAL_BATCH])  # my rows of the first global batch
    for name, loss_name, curvature, weighted in CASES:
        x, y, sw, w0 = case_data(loss_name, weighted)

        def dataset_fn(context, x=x, y=y, sw=sw):
            # One input pipeline per worker: its own shard, in step order.
            report["input_pipelines"].append(
                [context.input_pipeline_id, context.num_input_pipelines])
            mine = np.array(worker_rows(context.input_pipeline_id))
            parts = (x[mine], y[mine]) + (() if sw is None else (sw[mine],))
            batch = context.get_per_replica_batch_size(GLOBAL_BATCH)
            return tf.data.Dataset.from_tensor_slices(parts).batch(batch, drop_remainder=True)

        def fresh_model():
            with strategy.scope():
                return compile_model(build_model(w0), loss_name, curvature)

        model = fresh_model()

        # Newton targets of the first global batch: each worker computes its shard's rows
        # in the replica context, where the shared curvature is summed across workers.
        @tf.function
        def targets(xs, ys, ws):
            return strategy.run(lambda xs, ys, ws: model.loss.target(ys, model(xs), ws),
                                args=(xs, ys, ws))

        z = targets(tf.constant(x[first]), tf.constant(y[first]),
                    None if sw is None else tf.constant(sw[first]))
        results[f"{name}/z"] = np.concatenate(
            [np.asarray(v) for v in strategy.experimental_local_results(z)])
        results[f"{name}/rows"] = first

        local = (x[first], y[first]) + (() if sw is None else (sw[first],))
        _fit_under_multi_worker(
            strategy, model, strategy.distribute_datasets_from_function(dataset_fn), local)
        for j, v in enumerate(model.get_weights()):
            results[f"{name}/w{j}"] = np.asarray(v)

        if name in LOOP_CASES:
            model = fresh_model()
            _custom_loop(strategy, model, strategy.distribute_datasets_from_function(dataset_fn))
            for j, v in enumerate(model.get_weights()):
                results[f"{name}/loop_w{j}"] = np.asarray(v)
    np.savez(out + ".npz", **results)
    with open(out + ".json", "w") as f:
        json.dump(report, f)


# -- JAX: keras.distribution.DataParallel ----------------------------------------------------


def _jax_worker(out):
    import jax
    import keras
    import numpy as np
    from keras import ops

    assert keras.backend.backend() == "jax", keras.backend.backend()
    devices = jax.devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    results = {}
    report = {"devices": [str(d) for d in devices], "replicas": len(devices)}
    for name, loss_name, curvature, weighted in CASES:
        x, y, sw, w0 = case_data(loss_name, weighted)
        # The same run on one device (no distribution), for a same-backend comparison.
        w, z = single_device_run(loss_name, curvature, weighted)
        results.update({f"{name}/single_w{j}": v for j, v in enumerate(w)})
        results[f"{name}/single_z"] = z

        keras.distribution.set_distribution(distribution)
        try:
            model = compile_model(build_model(w0), loss_name, curvature)
            # The targets of the first global batch, from batch-sharded arrays in a jitted
            # function, as the train step computes them.
            def shard(a):
                return jax.device_put(a, distribution.get_data_layout(a.shape).backend_layout)

            xs, ys = shard(x[:GLOBAL_BATCH]), shard(y[:GLOBAL_BATCH])
            ws = None if sw is None else shard(sw[:GLOBAL_BATCH])
            params = [v.value for v in model.trainable_variables]

            @jax.jit
            def targets(params, xs, ys, ws):
                y_pred, _ = model.stateless_call(params, [], xs)
                return model.loss.target(ys, y_pred, ws)

            z = targets(params, xs, ys, ws)
            report[name] = {
                "input_devices": len(xs.sharding.device_set),
                "input_shard_rows": sorted(int(s.data.shape[0]) for s in xs.addressable_shards),
                "target_devices": len(z.sharding.device_set),
                "weight_devices": len(model.trainable_variables[0].value.sharding.device_set),
            }
            model.fit(x, y, sample_weight=sw, batch_size=GLOBAL_BATCH, epochs=1,
                      shuffle=False, verbose=0)
            for j, v in enumerate(model.get_weights()):
                results[f"{name}/w{j}"] = ops.convert_to_numpy(v)
            results[f"{name}/z"] = np.asarray(z)
            results[f"{name}/rows"] = np.arange(GLOBAL_BATCH)
        finally:
            keras.distribution.set_distribution(None)
    np.savez(out + ".npz", **results)
    with open(out + ".json", "w") as f:
        json.dump(report, f)


def main(argv):
    mode, out = argv[1:3]
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if mode == "tf-worker":
        os.environ["KERAS_BACKEND"] = "tensorflow"
        _tf_worker(out)
    elif mode == "jax":
        if os.environ.get("KERAS_BACKEND") != "jax":
            raise SystemExit("run the jax mode with KERAS_BACKEND=jax")
        _jax_worker(out)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("DONE", flush=True)


if __name__ == "__main__":
    main(sys.argv)
