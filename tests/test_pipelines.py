"""fit, evaluate and predict from data pipelines, the Keras 3 way.

Each pipeline gives the same batches in the same order as arrays do with
``shuffle=False``: training from it must give the same weights.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import snnify

N, BATCH, EPOCHS = 48, 16, 2


def converted():
    keras.utils.set_random_seed(0)
    inp = keras.Input((2, 3), name="pixels")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(
        keras.layers.Flatten()(inp)
    )
    out = keras.layers.Dense(3, name="out")(hidden)
    converter = snnify.Converter(keras.Model(inp, out))
    return converter, inp, out


def arrays():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (N, 1, 6)).astype("float32")
    y = rng.integers(0, 3, (N, 1, 1))
    return x, y


def batches(x, y):
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, N, BATCH)]


class Batches(keras.utils.PyDataset):
    """A PyDataset of the batches, keyed as the user chooses."""

    def __init__(self, converter, inp, out, **kwargs):
        super().__init__(**kwargs)
        self.batches = batches(*arrays())
        self.key = (converter.inputs[inp], converter.outputs[out])

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        x, y = self.batches[i]
        return {self.key[0]: x}, {self.key[1]: y}


def pipeline(kind, converter, inp, out):
    """The batches of :func:`arrays` as a pipeline of ``kind``."""
    x, y = arrays()
    if kind == "pydataset":
        return Batches(converter, inp, out)
    if kind == "generator":  # keyed by names; one pass per epoch
        return (
            ({"pixels": bx}, {converter.outputs[out].name: by})
            for _ in range(EPOCHS)
            for bx, by in batches(x, y)
        )
    if kind == "tf.data":
        tf = pytest.importorskip("tensorflow")
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)  # positional
    if kind == "torch":
        torch = pytest.importorskip("torch")
        data = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
        return torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=False)
    raise ValueError(kind)


def fitted_weights(kind):
    """Weights after training from arrays (``kind=None``) or a pipeline."""
    converter, inp, out = converted()
    with snnify.Simulator(
        converter.net, minibatch_size=BATCH, progress_bar=False
    ) as sim:
        sim.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        if kind is None:
            history = sim.fit(*arrays(), epochs=EPOCHS, shuffle=False)
        else:
            data = pipeline(kind, converter, inp, out)
            steps = {"steps_per_epoch": N // BATCH} if kind == "generator" else {}
            history = sim.fit(data, epochs=EPOCHS, shuffle=False, **steps)
    assert len(history.history["loss"]) == EPOCHS
    return [keras.ops.convert_to_numpy(w) for w in converter.net.weights]


@pytest.fixture(scope="module")
def from_arrays():
    return fitted_weights(None)


@pytest.mark.parametrize("kind", ["pydataset", "generator", "tf.data", "torch"])
def test_fit_from_a_pipeline_equals_fit_from_arrays(kind, from_arrays):
    start = [keras.ops.convert_to_numpy(w) for w in converted()[0].net.weights]
    weights = fitted_weights(kind)
    assert not np.allclose(weights[0], start[0])  # it trained
    for got, want in zip(weights, from_arrays):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_fit_from_a_torch_dataloader_on_the_torch_backend(tmp_path):
    pytest.importorskip("torch")
    script = tmp_path / "torch_fit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {os.path.dirname(__file__)!r})
            import numpy as np
            import test_pipelines as t
            np.testing.assert_allclose(
                np.concatenate([w.ravel() for w in t.fitted_weights("torch")]),
                np.concatenate([w.ravel() for w in t.fitted_weights(None)]),
                rtol=1e-5, atol=1e-6,
            )
            print("SAME")
            """
        )
    )
    env = dict(os.environ, KERAS_BACKEND="torch")
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True
    )
    assert "SAME" in result.stdout, result.stderr[-3000:]


def test_evaluate_and_predict_from_a_pipeline_equal_arrays():
    converter, inp, out = converted()
    converter = snnify.Converter(
        converter.model,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=50,
        synapse=0.005,
    )
    x, y = arrays()
    x = np.repeat(x, 5, axis=1)  # 5 steps, from the data's time axis
    probe = converter.outputs[out]
    with snnify.Simulator(converter.net, minibatch_size=BATCH, seed=0) as sim:
        sim.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["sparse_categorical_accuracy"],
        )
        want = sim.evaluate(x, y, verbose=0)
        got = sim.evaluate(((bx, {probe: by}) for bx, by in batches(x, y)), verbose=0)
        predicted = sim.predict(x)[probe]
        streamed = sim.predict(Batches(converter, inp, out))  # targets ignored
        generated = sim.predict(bx for bx, _ in batches(x, y))[probe]
    assert got == pytest.approx(want, rel=1e-5)
    assert streamed[probe].shape == (N, 1, 3)
    np.testing.assert_array_equal(generated, predicted)


def test_pipeline_errors():
    converter, inp, out = converted()
    x, y = arrays()
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        sim.compile(loss="mse")
        with pytest.raises(ValueError, match=r"give the targets in its batches"):
            sim.fit(Batches(converter, inp, out), y)
        with pytest.raises(KeyError, match="'nothing' is not an input"):
            sim.fit(iter([({"nothing": x}, y)]))
        with pytest.raises(
            ValueError, match=r"expects arrays of shape \(batch, steps, 6\)"
        ):
            sim.fit(iter([(x[:, 0], y)]))
        with pytest.raises(ValueError, match="stateful run continues"):
            sim.predict(iter([x]), stateful=True)


def test_tensorboard_callback_writes_logs(tmp_path):
    pytest.importorskip("tensorboard", reason="install the `tensorboard` extra")
    converter, inp, out = converted()
    with snnify.Simulator(
        converter.net, minibatch_size=BATCH, progress_bar=False
    ) as sim:
        sim.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        sim.fit(*arrays(), callbacks=[keras.callbacks.TensorBoard(tmp_path)])
    assert list((tmp_path / "train").iterdir())


def calibration_pipeline(kind, x, y):
    """``(x, y)`` in batches of ``BATCH`` as a pipeline of ``kind``, positional."""
    parts = batches(x, y)
    if kind == "pydataset":

        class Parts(keras.utils.PyDataset):
            def __len__(self):
                return len(parts)

            def __getitem__(self, i):
                return parts[i]

        return Parts()
    if kind == "generator":
        return iter(parts)
    if kind == "tf.data":
        tf = pytest.importorskip("tensorflow")
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    torch = pytest.importorskip("torch")
    data = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
    return torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=False)


@pytest.mark.parametrize("kind", ["pydataset", "generator", "tf.data", "torch"])
def test_calibration_and_statistics_from_a_pipeline_equal_arrays(kind):
    # before: "setting an array element with a sequence" (PyDataset) or
    # "expects arrays of shape ... Received: shape=()" (tf.data)
    converter, _, _ = converted()
    x, y = arrays()
    x = x.reshape(N, 2, 3)  # Keras's own format
    want = snnify.convert_for_steps(converter.model, x, n_steps=4, labels=y)
    got = snnify.convert_for_steps(
        converter.model, calibration_pipeline(kind, x, y), n_steps=4
    )
    # the pipeline's labels give the expected accuracy
    assert got.calibration.expected == want.calibration.expected
    assert "accuracy" in got.calibration.expected
    # regression targets are not labels
    targets = np.random.default_rng(1).normal(0, 1, (N, 3)).astype("float32")
    regression = snnify.convert_for_steps(
        converter.model, calibration_pipeline(kind, x, targets), n_steps=4
    )
    assert "accuracy" not in regression.calibration.expected
    for a, b in zip(got.calibration.layers, want.calibration.layers, strict=True):
        np.testing.assert_array_equal(a.scale, b.scale)
        np.testing.assert_array_equal(a.initial_voltage, b.initial_voltage)
    stats = snnify.measure(got, calibration_pipeline(kind, x, y), n_steps=4)
    assert stats.n_examples == N
    assert stats.layers == snnify.measure(got, x, n_steps=4).layers
