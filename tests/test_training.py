"""Training through the simulator, rate regularisation, parameters."""

import os

import keras
import numpy as np
import pytest

import snnify
from snnify import params as params_module


@pytest.fixture(scope="module")
def mnist(mnist_arrays):
    (x_train, y_train), (x_test, y_test) = mnist_arrays
    x_train = x_train[:2000].reshape(-1, 1, 784) / 255
    x_test = x_test[:500].reshape(-1, 1, 784) / 255
    y_train = y_train[:2000].reshape(-1, 1, 1)
    y_test = y_test[:500].reshape(-1, 1, 1)
    return x_train.astype("float32"), y_train, x_test.astype("float32"), y_test


def dense_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((784,))
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(10, name="output")(hidden)
    return keras.Model(inp, out), inp, hidden, out


def compile_classifier(sim, out, **kwargs):
    sim.compile(
        optimizer=keras.optimizers.RMSprop(0.001),
        loss={
            out: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            **kwargs.pop("loss", {}),
        },
        metrics={out: [keras.metrics.sparse_categorical_accuracy]},
        **kwargs,
    )


def fit_losses(sim, converter, inp, out, x, y, epochs=2):
    """Train a compiled simulator; the loss of every epoch."""
    history = sim.fit(
        {converter.inputs[inp]: x}, {converter.outputs[out]: y}, epochs=epochs
    )
    return history.history["loss"]


def test_fit_lowers_loss_and_raises_accuracy(mnist):
    x_train, y_train, x_test, y_test = mnist
    model, inp, hidden, out = dense_model()
    converter = snnify.Converter(model)
    with snnify.Simulator(converter.net, minibatch_size=50, progress_bar=False) as sim:
        compile_classifier(sim, converter.outputs[out])
        test = ({converter.inputs[inp]: x_test}, {converter.outputs[out]: y_test})
        before = sim.evaluate(*test)
        history = sim.fit(
            {converter.inputs[inp]: x_train},
            {converter.outputs[out]: y_train},
            epochs=2,
        )
        after = sim.evaluate(*test)
    assert after["loss"] < before["loss"] * 0.5
    assert (
        after["sparse_categorical_accuracy"]
        > before["sparse_categorical_accuracy"] + 0.3
    )
    assert history.history["loss"][1] < history.history["loss"][0]


def mean_hidden_rate(converter, hidden, x):
    with converter.net:
        probe = snnify.Probe(converter.layers[hidden], keep="last")
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        rate = sim.predict(x)[probe].mean()
    converter.net.probes.remove(probe)
    return rate


@pytest.mark.parametrize("direction", [0.3, 3.0])
@pytest.mark.parametrize("form", ["mse_probe", "helper"])
def test_rate_regularisation_moves_rates_towards_target(mnist, direction, form):
    x_train, y_train, *_ = mnist
    x_train = x_train * 255  # raw pixel values, as the tutorial: rates of tens of Hz
    model, inp, hidden, out = dense_model()
    converter = snnify.Converter(model)
    start = mean_hidden_rate(converter, hidden, x_train[:200])
    target = start * direction
    with converter.net:
        probe = snnify.Probe(converter.layers[hidden])
        if form == "helper":
            snnify.regularize_firing_rates(
                converter.layers[hidden], target=target, weight=0.01
            )
    x, y = {converter.inputs[inp]: x_train}, {converter.outputs[out]: y_train}
    with snnify.Simulator(converter.net, minibatch_size=100, progress_bar=False) as sim:
        if form == "mse_probe":
            compile_classifier(
                sim,
                converter.outputs[out],
                loss={probe: keras.losses.mean_squared_error},
                loss_weights={converter.outputs[out]: 1, probe: 0.01},
            )
            y[probe] = np.full((len(x_train), 1, probe.size_in), target, "float32")
        else:
            compile_classifier(sim, converter.outputs[out])
        sim.fit(x, y, epochs=3)
    converter.net.probes.remove(probe)
    end = mean_hidden_rate(converter, hidden, x_train[:200])
    assert abs(end - target) < 0.5 * abs(start - target), (start, end, target)


def predict_rates(converter, inp, out, x, params=None):
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        if params:
            sim.load_params(params)
        return sim.predict({converter.inputs[inp]: x})[converter.outputs[out]]


def trained_params(tmp_path, mnist, model, inp, out):
    converter = snnify.Converter(model)
    with snnify.Simulator(converter.net, minibatch_size=100, progress_bar=False) as sim:
        compile_classifier(sim, converter.outputs[out])
        sim.fit(
            {converter.inputs[inp]: mnist[0][:500]},
            {converter.outputs[out]: mnist[1][:500]},
        )
        sim.save_params(tmp_path / "params")
    return converter, tmp_path / "params"


def test_save_load_gives_identical_predictions_and_ignores_scale(tmp_path, mnist):
    x = mnist[2][:50]
    model, inp, hidden, out = dense_model()
    trained, path = trained_params(tmp_path, mnist, model, inp, out)
    assert (tmp_path / "params.npz").exists()
    expected = predict_rates(trained, inp, out, x)
    assert not np.allclose(
        expected, predict_rates(snnify.Converter(model), inp, out, x)
    )
    np.testing.assert_array_equal(
        predict_rates(snnify.Converter(model), inp, out, x, path), expected
    )
    scaled = snnify.Converter(model, scale_firing_rates=7)
    np.testing.assert_allclose(
        predict_rates(scaled, inp, out, x, path)[:, 0],
        expected[:, 0],
        rtol=1e-5,
        atol=1e-7,
    )


def test_update_model_writes_trained_weights_back(tmp_path, mnist):
    x = mnist[2][:50]
    model, inp, hidden, out = dense_model()
    trained, _ = trained_params(tmp_path, mnist, model, inp, out)
    expected = predict_rates(trained, inp, out, x)[:, 0]
    assert not np.allclose(model.predict(x[:, 0], verbose=0), expected, rtol=1e-4)
    trained.update_model()
    np.testing.assert_allclose(
        model.predict(x[:, 0], verbose=0), expected, rtol=1e-5, atol=1e-6
    )


def test_keras_checkpoints_save_the_network(tmp_path):
    # before, ModelCheckpoint("x.keras") stopped fit after its first epoch
    # (SimulatorModel has no get_config), and converter.net.save wrote a file
    # that no loader read
    model, inp, hidden, out = dense_model()
    converter = snnify.Converter(
        model, swap_activations={"relu": snnify.SpikingRectifiedLinear()}
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (40, 1, 784)).astype("float32")
    y = rng.integers(0, 10, (40, 1, 1))
    checkpoints = [
        keras.callbacks.ModelCheckpoint(tmp_path / "net.keras"),
        keras.callbacks.ModelCheckpoint(
            tmp_path / "net.weights.h5", save_weights_only=True
        ),
    ]
    run = {"progress_bar": False, "seed": 1}
    with snnify.Simulator(converter.net, minibatch_size=20, **run) as sim:
        compile_classifier(sim, converter.outputs[out])
        history = sim.fit(x, y, epochs=2, callbacks=checkpoints, verbose=0)
        expected = sim.predict(x, n_steps=10)[converter.outputs[out]]
    assert len(history.history["loss"]) == 2
    loaded = snnify.load_network(tmp_path / "net.keras").converter
    with snnify.Simulator(loaded.net, minibatch_size=20, **run) as sim:
        got = sim.predict(x, n_steps=10)[loaded.outputs[loaded.model.output]]
    np.testing.assert_array_equal(got, expected)
    # the weights-only checkpoint restores the trained weights
    fresh = snnify.Converter(dense_model()[0])
    with snnify.Simulator(fresh.net, progress_bar=False) as sim:
        sim.keras_model.load_weights(tmp_path / "net.weights.h5")
    for a, b in zip(weights_of(fresh.net), weights_of(converter.net)):
        np.testing.assert_array_equal(a, b)
    converter.net.save(tmp_path / "again.keras")
    assert snnify.load_network(tmp_path / "again.keras").net.converter is not None
    with pytest.raises(FileExistsError, match="overwrite=False"):
        converter.net.save(tmp_path / "again.keras", overwrite=False)
    with pytest.raises(ValueError, match="not built by a Converter"):
        snnify.Network().save(tmp_path / "other.keras")


def weights_of(net):
    return [keras.ops.convert_to_numpy(v).copy() for v in net.weights]


def test_load_refusals_change_no_weight(tmp_path):
    model, inp, hidden, out = dense_model()
    net = snnify.Converter(model).net
    params_module.save_params(net, tmp_path / "good")
    arrays = dict(np.load(tmp_path / "good.npz", allow_pickle=False))
    bad_shape = dict(arrays, **{"hidden/kernel": np.zeros((3, 3), "float32")})
    np.savez(tmp_path / "shape.npz", **bad_shape)
    np.savez(
        tmp_path / "missing.npz",
        **{k: v for k, v in arrays.items() if k != "hidden/bias"},
    )
    np.savez(tmp_path / "extra.npz", **arrays, **{"other/kernel": np.zeros(2)})
    other = snnify.Converter(dense_model(seed=1)[0]).net
    before = weights_of(other)
    with snnify.Simulator(other, progress_bar=False) as sim:
        with pytest.raises(
            FileNotFoundError, match="No parameter file at .*nothing.npz"
        ):
            sim.load_params(tmp_path / "nothing")
        with pytest.raises(
            ValueError,
            match=r"'hidden/kernel' .* has shape \(3, 3\); the network expects \(784, 32\)",
        ):
            sim.load_params(tmp_path / "shape")
        with pytest.raises(
            ValueError, match=r"missing \['hidden/bias'\], unexpected \[\]"
        ):
            sim.load_params(tmp_path / "missing")
        with pytest.raises(
            ValueError, match=r"missing \[\], unexpected \['other/kernel'\]"
        ):
            sim.load_params(tmp_path / "extra")
    for a, b in zip(before, weights_of(other)):
        np.testing.assert_array_equal(a, b)


def test_interrupted_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    model, *_ = dense_model()
    net = snnify.Converter(model).net
    params_module.save_params(net, tmp_path / "params")
    original = (tmp_path / "params.npz").read_bytes()

    def crash(file, **arrays):
        file.write(b"partial data")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        params_module.save_params(net, tmp_path / "params")
    assert (tmp_path / "params.npz").read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["params.npz"]


def test_training_errors(mnist):
    model, inp, hidden, out = dense_model()
    converter = snnify.Converter(model)
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        with pytest.raises(RuntimeError, match="compile"):
            sim.fit(
                {converter.inputs[inp]: mnist[0][:10]},
                {converter.outputs[out]: mnist[1][:10]},
            )
        with pytest.raises(KeyError, match="not a probe of this network"):
            sim.compile(loss={"nope": "mse"})
        with converter.net:
            probe = snnify.Probe(converter.layers[hidden])
        sim.compile(loss={converter.outputs[out]: "mse", probe: "mse"})
        with pytest.raises(ValueError, match="No targets given for the trained probe"):
            sim.fit(
                {converter.inputs[inp]: mnist[0][:10]},
                {converter.outputs[out]: mnist[1][:10]},
            )


def test_sample_weight_of_one_per_example_weighs_every_step(mnist):
    # before, evaluate's spiking run (a loss per step) raised "Incompatible
    # shapes for broadcasting: shapes=[(32, 10), (32,)]"
    x, y = mnist[2][:64], mnist[3][:64]
    model, inp, hidden, out = dense_model()
    converter = snnify.Converter(
        model, swap_activations={"relu": snnify.SpikingRectifiedLinear()}
    )
    probe = converter.outputs[out]
    first_half = np.repeat(np.float32([1, 0]), 32)
    with snnify.Simulator(converter.net, minibatch_size=32, seed=0) as sim:
        # as in Keras, sample weights weigh the losses and weighted_metrics
        sim.compile(
            optimizer=keras.optimizers.SGD(0.01),
            loss={probe: keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
            weighted_metrics={probe: [keras.metrics.sparse_categorical_accuracy]},
        )
        run = {"n_steps": 10, "verbose": 0}
        plain = sim.evaluate(x, y, **run)
        doubled = sim.evaluate(x, y, sample_weight=np.full(64, 2.0), **run)
        weighted = sim.evaluate(x, y, sample_weight=first_half, **run)
        half = sim.evaluate(x[:32], y[:32], **run)
        sim.fit(x, y, sample_weight=first_half, epochs=1, verbose=0)
    np.testing.assert_allclose(doubled["loss"], 2 * plain["loss"], rtol=1e-5)
    accuracy = "sparse_categorical_accuracy"
    np.testing.assert_allclose(weighted[accuracy], half[accuracy], rtol=1e-6)
    assert weighted[accuracy] != plain[accuracy]


def test_class_weight_weighs_examples_by_the_class_of_their_target(mnist):
    x, y = mnist[0][:256], mnist[1][:256]
    class_weight = {0: 5.0, 3: 0.2}  # the other classes weigh 1
    by_hand = np.array([class_weight.get(int(c), 1.0) for c in y[:, 0, 0]], "float32")
    histories = []
    for weights in ({"class_weight": class_weight}, {"sample_weight": by_hand}):
        model, inp, hidden, out = dense_model()
        converter = snnify.Converter(model)
        with snnify.Simulator(
            converter.net, minibatch_size=32, progress_bar=False
        ) as sim:
            compile_classifier(sim, converter.outputs[out])
            history = sim.fit(
                {converter.inputs[inp]: x}, {converter.outputs[out]: y},
                epochs=2, shuffle=False, **weights,
            )  # fmt: skip
        histories.append(history.history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        compile_classifier(sim, converter.outputs[out])
        data = ({converter.inputs[inp]: x}, {converter.outputs[out]: y})
        with pytest.raises(ValueError, match="class_weight or sample_weight"):
            sim.fit(*data, class_weight=class_weight, sample_weight=np.ones(256))
        with converter.net:
            probe = snnify.Probe(converter.layers[hidden])
        compile_classifier(sim, converter.outputs[out], loss={probe: "mse"})
        with pytest.raises(ValueError, match="targets of one probe"):
            sim.fit(
                data[0], {**data[1], probe: np.zeros((256, 1, 32))},
                class_weight=class_weight,
            )  # fmt: skip


def test_lif_trains_with_softlif_and_runs_spiking(mnist):
    x_train, y_train, x_test, y_test = mnist
    model, inp, hidden, out = dense_model()
    converter = snnify.Converter(
        model, swap_activations={"relu": snnify.LIF(amplitude=0.01)}
    )
    with snnify.Simulator(
        converter.net, minibatch_size=50, progress_bar=False, seed=0
    ) as sim:
        compile_classifier(sim, converter.outputs[out])
        loss = fit_losses(sim, converter, inp, out, x_train, y_train)
        rate_accuracy = sim.evaluate(
            {converter.inputs[inp]: x_test},
            {converter.outputs[out]: y_test},
            spiking=False,
        )
        spikes = sim.predict({converter.inputs[inp]: x_test}, n_steps=100)[
            converter.outputs[out]
        ]
    assert np.isfinite(loss).all() and loss[1] < loss[0]
    spiking_accuracy = (
        spikes[:, 50:].mean(axis=1).argmax(-1) == y_test[:, 0, 0]
    ).mean()
    # measured (seed 0, 500 test images): LIFRate 0.704, spiking LIF 0.698
    assert rate_accuracy["sparse_categorical_accuracy"] >= 0.66
    assert spiking_accuracy >= rate_accuracy["sparse_categorical_accuracy"] - 0.03


def test_spike_aware_training_uses_spiking_forward_pass(mnist):
    x_train, y_train, x_test, y_test = mnist
    model, inp, hidden, out = dense_model()
    neuron = snnify.SpikingRectifiedLinear(initial_voltage=0.5)
    converter = snnify.Converter(
        model, swap_activations={"relu": neuron}, scale_firing_rates=100
    )
    with converter.net:
        snnify.configure_settings(spike_aware_steps=8)
    x = x_test[:20]
    with snnify.Simulator(converter.net, minibatch_size=50, progress_bar=False) as sim:
        spiking = sim.predict({converter.inputs[inp]: x}, n_steps=8)[
            converter.outputs[out]
        ]
        forward = sim.keras_model({converter.inputs[inp].name: x}, training=True)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(forward[converter.outputs[out].name])[:, 0],
            spiking.mean(axis=1),
            rtol=1e-4,
            atol=1e-5,
        )
        rates = converter.net({converter.inputs[inp].name: x}, training=False)[
            converter.outputs[out].name
        ]
        assert not np.allclose(
            keras.ops.convert_to_numpy(rates)[:, 0], spiking.mean(axis=1)
        )
        compile_classifier(sim, converter.outputs[out])
        loss = fit_losses(sim, converter, inp, out, x_train, y_train)
    assert loss[1] < loss[0]


def test_spike_aware_forward_starts_from_the_voltages_predict_starts_from(mnist):
    """Random ("uniform") initial voltages are the same in training and predict."""
    x = mnist[2][:20]
    model, inp, hidden, out = dense_model()
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=100,
    )
    assert converter.layers[hidden].neuron_type.initial_voltage == "uniform"
    with converter.net:
        snnify.configure_settings(spike_aware_steps=8)
    probe = converter.outputs[out]
    x = {converter.inputs[inp].name: x}
    with snnify.Simulator(converter.net, dt=0.002, seed=7, progress_bar=False) as sim:
        spiking = sim.predict(x, n_steps=8)[probe]
        forward = sim.keras_model(x, training=True)
    forward = keras.ops.convert_to_numpy(forward[probe.name])[:, 0]
    np.testing.assert_allclose(forward, spiking.mean(axis=1), rtol=1e-4, atol=1e-5)
    # another seed draws other voltages, and changes the spikes
    other = snnify.Simulator(converter.net, dt=0.002, seed=8).keras_model(
        x, training=True
    )
    assert not np.allclose(keras.ops.convert_to_numpy(other[probe.name])[:, 0], forward)


def test_two_simulators_train_with_their_own_dt_seed_and_compile(mnist):
    """Spike-aware training reads the fitting simulator's dt and seed, even
    after another simulator of the same network compiled and trained."""
    x_train, y_train, _, _ = mnist
    model, inp, hidden, out = dense_model()
    converter = snnify.Converter(
        model,
        swap_activations={"relu": snnify.SpikingRectifiedLinear()},
        scale_firing_rates=30,
    )
    with converter.net:
        snnify.configure_settings(spike_aware_steps=4)
    data = (
        {converter.inputs[inp]: x_train[:100]},
        {converter.outputs[out]: y_train[:100]},
    )
    sims = [
        snnify.Simulator(converter.net, dt=dt, seed=seed, progress_bar=False)
        for dt, seed in ((0.001, 1), (0.003, 2))
    ]
    for sim in sims:
        sim.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    start = weights_of(converter.net)
    histories = []
    for order in (sims, sims[::-1]):
        for sim in order:
            for v, w in zip(converter.net.weights, start):
                v.assign(w)
            history = sim.fit(*data, batch_size=50, shuffle=False).history
            histories.append(history["loss"])
    # each simulator's loss is the same whichever trained first
    np.testing.assert_allclose(histories[0], histories[3], rtol=1e-5)
    np.testing.assert_allclose(histories[1], histories[2], rtol=1e-5)
    assert not np.allclose(histories[0], histories[1], rtol=1e-3)
