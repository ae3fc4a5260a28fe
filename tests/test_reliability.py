"""Careless and hostile input: a clear error, nothing lost or silently wrong.

Every case here is a row of docs/reliability.md (the test id names the row).
"""

import os
import stat
import sys
import warnings

import keras
import numpy as np
import pytest

import snnify
from snnify import cli, params, validation

# --- a small network shared by the cases -----------------------------------


def small_model(name="m"):
    inp = keras.Input((4,), name="inp")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(2, name="out")(hidden)
    return keras.Model(inp, out, name=name), inp, hidden, out


SWAP = {"relu": snnify.SpikingRectifiedLinear()}


@pytest.fixture(scope="module")
def net():
    """(converter, simulator, keras input, keras output), compiled with MSE."""
    keras.utils.set_random_seed(0)
    model, inp, hidden, out = small_model()
    converter = snnify.Converter(model, swap_activations=SWAP)
    sim = snnify.Simulator(converter.net, progress_bar=False, seed=0)
    sim.compile(optimizer="sgd", loss="mse")
    yield converter, sim, inp, out
    sim.close()


@pytest.fixture(scope="module")
def other():
    """A converter of another model with the same layer names."""
    model, inp, _, out = small_model("other")
    return snnify.Converter(model, swap_activations=SWAP), inp, out


def weights_of(converter):
    return [keras.ops.convert_to_numpy(v).copy() for v in converter.net.weights]


def assert_unchanged(converter, before):
    for old, variable in zip(before, converter.net.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(variable))


X = np.random.default_rng(0).random((6, 1, 4)).astype("float32")
Y = np.zeros((6, 1, 2), "float32")


def with_value(array, index, value):
    array = array.copy()
    array[index] = value
    return array


# --- the converter ---------------------------------------------------------
def convert(**options):
    return lambda: snnify.Converter(small_model()[0], **options)


def convert_keyed(option, value):
    def run():
        model = small_model()[0]
        return snnify.Converter(model, **{option: {model.get_layer("hidden"): value}})

    return run


CONVERTER_CASES = {
    "scale_zero": (convert(scale_firing_rates=0), ValueError, "positive and finite"),
    "scale_nan": (
        convert(scale_firing_rates=float("nan")),
        ValueError,
        "scale_firing_rates must be positive and finite.*Received: "
        "scale_firing_rates=nan",
    ),
    "scale_negative": (convert(scale_firing_rates=-5), ValueError, "positive"),
    "scale_inf": (convert(scale_firing_rates=np.inf), ValueError, "finite"),
    "scale_bool": (convert(scale_firing_rates=True), ValueError, "positive"),
    "scale_dict_zero": (
        convert_keyed("scale_firing_rates", 0.0),
        ValueError,
        r"scale_firing_rates\['hidden'\] must be positive",
    ),
    "scale_array_with_zero": (
        convert_keyed("scale_firing_rates", np.array([1.0] * 7 + [0.0])),
        ValueError,
        "1 of 8 elements not",
    ),
    "scale_unknown_name": (
        convert(scale_firing_rates="fast"),
        ValueError,
        "Received: 'fast'",
    ),
    "scale_key_not_in_model": (
        lambda: snnify.Converter(
            small_model()[0], scale_firing_rates={keras.layers.Dense(2): 2.0}
        ),
        ValueError,
        "not a layer or tensor of the model",
    ),
    "synapse_inf": (
        convert(swap_activations=SWAP, synapse=float("inf")),
        ValueError,
        "positive and finite.*Received: tau=inf",
    ),
    "synapse_negative": (
        convert(swap_activations=SWAP, synapse=-0.01),
        ValueError,
        "time constant must be positive",
    ),
    "synapse_nan": (
        convert(swap_activations=SWAP, synapse=float("nan")),
        ValueError,
        "time constant must be positive",
    ),
    "synapse_text": (
        convert(swap_activations=SWAP, synapse="0.01"),
        TypeError,
        "A synapse must be None",
    ),
    "model_not_keras": (
        lambda: snnify.Converter("model.keras"),
        TypeError,
        "Received",
    ),
    "keras2_model": (  # a tf_keras model, as its class presents itself
        lambda: snnify.Converter(
            type("Functional", (), {"__module__": "tf_keras.src.engine.functional"})()
        ),
        TypeError,
        r"a Keras 2 model .*keras.models.load_model\('model.h5'\).*from tf_keras",
    ),
}


def test_input_of_any_size_is_refused_with_a_fix_that_works():
    inp = keras.Input((None, None, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inp, out)
    with pytest.raises(ValueError, match=r"unknown shape \(None, None, None, 1\)"):
        snnify.Converter(model)
    # the fix the message gives
    fixed = keras.models.clone_model(
        model,
        input_tensors=keras.Input((8, 8, 1)),
        clone_function=lambda layer: layer,
    )
    assert snnify.Converter(fixed).verify()
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(
        fixed.predict(x, verbose=0), model.predict(x, verbose=0)
    )


@pytest.mark.parametrize("case", CONVERTER_CASES)
def test_converter_refuses(case):
    make, error, match = CONVERTER_CASES[case]
    with pytest.raises(error, match=match):
        make()


class TimesThirteen(keras.layers.Dense):
    def call(self, inputs):
        return super().call(inputs) * 13


def custom_call_model():
    inp = keras.Input((4,))
    out = TimesThirteen(3, activation="relu", name="times13")(inp)
    return keras.Model(inp, out), out


def test_dense_subclass_with_own_call_falls_back_exactly():
    model, out = custom_call_model()
    with pytest.warns(UserWarning, match="redefines the call"):
        converter = snnify.Converter(model, swap_activations=SWAP)
    assert converter.verify()
    x = np.random.default_rng(1).random((5, 1, 4)).astype("float32")
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        got = sim.predict(x, n_steps=3)[converter.outputs[out]][:, -1]
    np.testing.assert_allclose(got, model.predict(x[:, 0], verbose=0), rtol=1e-5)


def test_dense_subclass_with_own_call_refused_without_fallback():
    with pytest.raises(TypeError, match=r"redefines call\(\) \(in TimesThirteen\)"):
        snnify.Converter(custom_call_model()[0], allow_fallback=False)


def test_dense_subclass_without_own_call_converts():
    class Named(keras.layers.Dense):
        pass

    inp = keras.Input((4,))
    model = keras.Model(inp, Named(3, activation="relu", name="named")(inp))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback warning
        converter = snnify.Converter(model, swap_activations=SWAP)
    assert isinstance(converter.layers[model.output], snnify.graph.NeuronsNode)


# --- neurons, probes, settings, regularisers ------------------------------
def inside(f):
    def run(converter):
        with converter.net:
            return f(converter)

    return run


NAN = float("nan")
OPTION_CASES = {
    "lif_tau_rc_nan": (lambda c: snnify.LIF(tau_rc=NAN), "Received: tau_rc=nan"),
    "lif_tau_rc_zero": (lambda c: snnify.LIF(tau_rc=0), "tau_rc must be > 0"),
    "lif_tau_ref_negative": (lambda c: snnify.LIF(tau_ref=-1), "tau_ref=-1"),
    "lif_tau_ref_inf": (lambda c: snnify.LIF(tau_ref=np.inf), "both finite"),
    "amplitude_zero": (
        lambda c: snnify.SpikingRectifiedLinear(amplitude=0),
        "amplitude must be positive and finite",
    ),
    "amplitude_nan": (lambda c: snnify.LIFRate(amplitude=NAN), "amplitude=nan"),
    "initial_voltage_above_one": (
        lambda c: snnify.SpikingRectifiedLinear(initial_voltage=2.0),
        r"number in \[0, 1\)",
    ),
    "initial_voltage_nan": (
        lambda c: snnify.LIF(initial_voltage=NAN),
        "initial_voltage=nan",
    ),
    "swap_activations_not_a_dict": (
        lambda c: snnify.Converter(small_model()[0], swap_activations="relu"),
        "swap_activations must be a dict",
    ),
    "probe_sample_every_zero": (
        inside(lambda c: snnify.Probe(c.outputs[c.model.output], sample_every=0)),
        "sample_every must be None or positive",
    ),
    "probe_keep_unknown": (
        inside(lambda c: snnify.Probe(c.outputs[c.model.output], keep="none")),
        "keep must be one of",
    ),
    "probe_on_keras_tensor": (
        inside(lambda c: snnify.Probe(c.model.output)),
        "A Probe target must be a node",
    ),
    "regularizer_target_nan": (
        inside(
            lambda c: snnify.regularize_firing_rates(
                c.layers[c.model.get_layer("hidden").output], target=NAN
            )
        ),
        "target must be finite and >= 0",
    ),
    "regularizer_weight_negative": (
        inside(
            lambda c: snnify.regularize_firing_rates(
                c.layers[c.model.get_layer("hidden").output], weight=-1
            )
        ),
        "weight must be finite and >= 0",
    ),
    "setting_unknown": (
        inside(lambda c: snnify.configure_settings(stateful2=True)),
        "Unknown setting",
    ),
    "lif_smoothing_negative": (
        inside(lambda c: snnify.configure_settings(lif_smoothing=-1)),
        "lif_smoothing must be None or positive",
    ),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_options_refused(case):
    make, match = OPTION_CASES[case]
    converter = snnify.Converter(small_model()[0], swap_activations=SWAP)
    probes = list(converter.net.probes)
    with pytest.raises((ValueError, TypeError), match=match):
        make(converter)
    assert converter.net.probes == probes  # nothing added before the error
    assert not converter.net.rate_regularizers


# --- the simulator ---------------------------------------------------------
def simulator(**options):
    def run():
        converter = snnify.Converter(small_model()[0])
        return snnify.Simulator(converter.net, progress_bar=False, **options)

    return run


SIMULATOR_CASES = {
    "dt_zero": (simulator(dt=0), ValueError, "dt must be positive"),
    "dt_nan": (simulator(dt=float("nan")), ValueError, "dt must be positive"),
    "dt_inf": (simulator(dt=float("inf")), ValueError, "finite.*Received: dt=inf"),
    "dt_text": (simulator(dt="0.001"), ValueError, "Received: dt='0.001'"),
    "minibatch_zero": (simulator(minibatch_size=0), ValueError, "positive integer"),
    "minibatch_fraction": (
        simulator(minibatch_size=2.5),
        ValueError,
        "positive integer",
    ),
    "minibatch_nan": (
        simulator(minibatch_size=float("nan")),
        ValueError,
        "minibatch_size=nan",
    ),
    "minibatch_text": (simulator(minibatch_size="10"), ValueError, "positive integer"),
    "seed_negative": (simulator(seed=-1), ValueError, "seed must be an integer >= 0"),
    "seed_fraction": (simulator(seed=0.5), ValueError, "Received: seed=0.5"),
    "network_is_keras_model": (
        lambda: snnify.Simulator(small_model()[0]),
        TypeError,
        "needs an snnify Network",
    ),
}


@pytest.mark.parametrize("case", SIMULATOR_CASES)
def test_simulator_refuses(case):
    make, error, match = SIMULATOR_CASES[case]
    with pytest.raises(error, match=match):
        make()


def predict(x, **kwargs):
    return lambda converter, sim, other: sim.predict(x, **kwargs)


PREDICT_CASES = {
    "n_steps_nan": (predict(X, n_steps=float("nan")), ValueError, "n_steps=nan"),
    "n_steps_zero": (predict(X, n_steps=0), ValueError, "integer >= 1"),
    "n_steps_negative": (predict(X, n_steps=-3), ValueError, "n_steps=-3"),
    "n_steps_fraction": (predict(X, n_steps=2.5), ValueError, "n_steps=2.5"),
    "n_steps_text": (predict(X, n_steps="10"), ValueError, "n_steps='10'"),
    "n_steps_inf": (predict(X, n_steps=float("inf")), ValueError, "n_steps=inf"),
    "empty_batch": (
        predict(np.zeros((0, 1, 4))),
        ValueError,
        r"no examples or no steps.*shape=\(0, 1, 4\)",
    ),
    "zero_steps": (predict(np.zeros((3, 0, 4))), ValueError, "no examples or no"),
    "nan_in_inputs": (
        predict(with_value(X, (2, 0, 1), np.nan)),
        ValueError,
        r"1 NaN or infinite values \(the first at index \(2, 0, 1\)\)",
    ),
    "inf_in_inputs": (
        predict(with_value(X, (0, 0, 0), np.inf)),
        ValueError,
        "NaN or infinite.*np.nan_to_num",
    ),
    "too_large_for_float32": (
        predict(with_value(X.astype("float64"), (0, 0, 0), 1e300)),
        ValueError,
        "NaN or infinite",
    ),
    "complex_inputs": (predict(X.astype(complex)), TypeError, "real numbers"),
    "text_inputs": (predict(X.astype(str)), TypeError, "dtype=<U"),
    "wrong_feature_size": (
        predict(np.zeros((3, 1, 5))),
        ValueError,
        r"expects arrays of shape \(batch, steps, 4\)",
    ),
    "no_time_axis": (predict(np.zeros((3, 4))), ValueError, r"shape=\(3, 4\)"),
    "input_of_another_network": (
        lambda converter, sim, other: sim.predict({other[0].inputs[other[1]]: X}),
        KeyError,
        "not an input of this network",
    ),
    "probe_of_another_network": (
        lambda converter, sim, other: sim.predict(
            X, probes=[other[0].outputs[other[2]]]
        ),
        ValueError,
        "predict's probes: .* is a probe of another network",
    ),
    "recorder_of_another_network": (
        lambda converter, sim, other: sim.predict(
            X,
            probes=[
                snnify.Probe(
                    other[0].outputs[other[2]], synapse=0.01, add_to_container=False
                )
            ],
        ),
        ValueError,
        "probe of another network",
    ),
    "history_beyond_memory": (
        predict(X, n_steps=10**9),
        MemoryError,
        "would need 44.7 GiB.*keep='last'.*sample_every",
    ),
    "steps_differ_between_inputs_and_n_steps": (
        predict(np.zeros((3, 5, 4)), n_steps=7),
        ValueError,
        "Inputs must have 1 step",
    ),
    "predict_on_batch_wrong_size": (
        lambda converter, sim, other: sim.predict_on_batch(X),
        ValueError,
        "one minibatch",
    ),
    "run_nan_seconds": (
        lambda converter, sim, other: sim.run(float("nan")),
        ValueError,
        "time_in_seconds must be positive and finite",
    ),
    "run_no_steps": (
        lambda converter, sim, other: sim.run(0.0001),
        ValueError,
        "at least one step",
    ),
}


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_predict_refuses(case, net, other):
    run, error, match = PREDICT_CASES[case]
    converter, sim = net[:2]
    before = weights_of(converter)
    with pytest.raises(error, match=match):
        run(converter, sim, other)
    assert_unchanged(converter, before)


def test_memory_limit_can_be_raised(net, monkeypatch):
    """The refusal depends on MEMORY_FRACTION, which a user can change."""
    converter, sim = net[:2]
    monkeypatch.setattr(validation, "available_memory", lambda: 10_000)
    # 6 examples x 200 steps x 2 outputs x 4 bytes = 9600 bytes > 0.5 x 10000
    with pytest.raises(MemoryError, match="need 8.94e-06 GiB.* 9.31e-06 GiB"):
        sim.predict(X, n_steps=200, probes=[converter.outputs[net[3]]])
    monkeypatch.setattr(validation, "MEMORY_FRACTION", 1.0)
    data = sim.predict(X, n_steps=200, probes=[converter.outputs[net[3]]])
    assert data[converter.outputs[net[3]]].shape == (6, 200, 2)


def test_closed_simulator_refuses():
    sim = simulator()()
    sim.close()
    with pytest.raises(RuntimeError, match="closed"):
        sim.predict(X)


# --- training --------------------------------------------------------------
def fit(x, y):
    return lambda converter, sim, other: sim.fit(x, y, verbose=0)


TRAINING_CASES = {
    "targets_without_time_axis": (
        fit(X, np.zeros((6, 2))),
        ValueError,
        r"\(batch=6, steps=1, 2\).*Received: shape=\(6, 2\).*y\[:, None\]",
    ),
    "targets_of_other_batch": (fit(X, np.zeros((5, 1, 2))), ValueError, "batch=6"),
    "targets_of_other_size": (
        fit(X, np.zeros((6, 1, 3))),
        ValueError,
        r"shape=\(6, 1, 3\)",
    ),
    "nan_in_targets": (
        fit(X, with_value(Y, (4, 0, 1), np.nan)),
        ValueError,
        r"target array of probe 'probe_out' holds 1 NaN.*\(4, 0, 1\)",
    ),
    "inf_in_targets": (fit(X, with_value(Y, (0, 0, 0), -np.inf)), ValueError, "NaN"),
    "text_targets": (fit(X, Y.astype(str)), TypeError, "real numbers"),
    "nan_in_training_inputs": (
        fit(with_value(X, (0, 0, 0), np.nan), Y),
        ValueError,
        "Input 'inp' holds 1 NaN",
    ),
    "targets_keyed_by_another_networks_probe": (
        lambda converter, sim, other: sim.fit(X, {other[0].outputs[other[2]]: Y}),
        ValueError,
        "probe of another network",
    ),
    "targets_keyed_by_unknown_name": (
        fit(X, {"nothing": Y}),
        KeyError,
        "not a probe of this network",
    ),
    "evaluate_n_steps_zero": (
        lambda converter, sim, other: sim.evaluate(X, Y, n_steps=0),
        ValueError,
        "n_steps=0",
    ),
    "evaluate_targets_without_time_axis": (
        lambda converter, sim, other: sim.evaluate(X, Y[:, 0], n_steps=5),
        ValueError,
        r"steps=1 or 5",
    ),
    "pipeline_with_separate_targets": (
        lambda converter, sim, other: sim.fit(iter([(X, Y)]), Y),
        ValueError,
        "give the targets in its batches",
    ),
}


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_training_refuses(case, net, other):
    run, error, match = TRAINING_CASES[case]
    converter, sim = net[:2]
    before = weights_of(converter)
    with pytest.raises(error, match=match):
        run(converter, sim, other)
    assert_unchanged(converter, before)


def test_loss_keyed_by_another_networks_probe(net, other):
    sim = net[1]
    with pytest.raises(ValueError, match="probe of another network.*Received: key="):
        sim.compile(loss={other[0].outputs[other[2]]: "mse"})


def test_verify_refuses_nan():
    """NaN compares as no difference; verify must not pass on it."""
    converter = snnify.Converter(small_model()[0])
    with pytest.raises(ValueError, match="verify's inputs holds 8 NaN"):
        converter.verify(np.full((2, 4), np.nan, "float32"))
    variable = converter.net.weights[0]
    variable.assign(keras.ops.convert_to_numpy(variable) * np.nan)
    with pytest.raises(ValueError, match="differs from the Keras model by inf"):
        converter.verify()


def test_fit_before_compile():
    sim = simulator()()
    with pytest.raises(RuntimeError, match="Call sim.compile"):
        sim.fit(X, Y)


def test_diverging_training_stops_and_keeps_the_starting_weights():
    keras.utils.set_random_seed(0)
    converter = snnify.Converter(small_model()[0], swap_activations=SWAP)
    x = np.random.default_rng(0).random((64, 1, 4)).astype("float32")
    y = np.full((64, 1, 2), 1e3, "float32")
    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        # a learning rate of 1e3 on targets of 1e3 overflows float32 within a
        # few batches (measured: the loss is inf at batch 2 and nan at 3)
        sim.compile(optimizer=keras.optimizers.SGD(1e3), loss="mse")
        before = weights_of(converter)
        with pytest.warns(RuntimeWarning, match="loss became (nan|inf).*started"):
            history = sim.fit(x, y, epochs=5, batch_size=8, verbose=0)
        assert len(history.history["loss"]) == 1  # stopped in the first epoch
        assert_unchanged(converter, before)
        # and the simulator trains again from there with a sane learning rate
        sim.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        sim.fit(x, y / 1e3, epochs=1, batch_size=8, verbose=0)
        assert all(np.isfinite(w).all() for w in weights_of(converter))


def test_nan_targets_from_a_pipeline_stop_training():
    """Pipelines are not read ahead: the loss check catches their NaN."""
    keras.utils.set_random_seed(0)
    converter = snnify.Converter(small_model()[0], swap_activations=SWAP)

    def batches():
        for i in range(4):
            y = Y[:4] if i < 2 else Y[:4] * np.nan  # the third batch is broken
            yield X[:4], y

    with snnify.Simulator(converter.net, progress_bar=False) as sim:
        sim.compile(optimizer="sgd", loss="mse")
        before = weights_of(converter)
        with pytest.warns(
            RuntimeWarning, match="epoch 1, batch 3: the loss became nan"
        ):
            sim.fit(batches(), epochs=1, verbose=0)
    assert_unchanged(converter, before)


def test_two_simulators_keep_their_own_dt():
    converter = snnify.Converter(small_model()[0], swap_activations=SWAP)
    with snnify.Simulator(converter.net, progress_bar=False, seed=0) as first:
        alone = first.predict(X, n_steps=20)
        with snnify.Simulator(converter.net, dt=0.01, progress_bar=False) as second:
            second.compile(loss="mse")
            second.evaluate(X, Y, n_steps=20, verbose=0)
            again = first.predict(X, n_steps=20)
            assert (first.dt, first.keras_model.dt) == (0.001, 0.001)
            assert second.keras_model.dt == 0.01
    for probe in alone:
        np.testing.assert_array_equal(alone[probe], again[probe])


# --- calibration -----------------------------------------------------------
@pytest.mark.parametrize(
    "case, data, match",
    [
        ("empty", np.zeros((0, 1, 4)), "no examples"),
        ("all_nan", np.full((5, 1, 4), np.nan), "20 NaN or infinite"),
    ],
)
def test_calibration_data_refused(case, data, match):
    with pytest.raises(ValueError, match=match):
        snnify.Converter(
            small_model()[0],
            swap_activations=SWAP,
            scale_firing_rates="auto",
            calibration_data=data,
        )


# --- parameter files -------------------------------------------------------
@pytest.fixture
def saved(net, tmp_path):
    """(converter, simulator, path of saved parameters, their arrays)."""
    converter, sim = net[:2]
    path = tmp_path / "params.npz"
    sim.save_params(path)
    with np.load(path) as file:
        arrays = dict(file)
    return converter, sim, path, arrays


def write_npz(path, arrays):
    with open(path, "wb") as file:
        np.savez(file, **arrays)
    return path


def changed(arrays, f, last=False):
    keys = list(arrays)
    picked = keys[-1:] if last else keys
    return {k: (f(v) if k in picked else v) for k, v in arrays.items()}


LOAD_CASES = {
    "missing_file": (lambda p, a: p.parent / "none.npz", FileNotFoundError, "No "),
    "empty_file": (
        lambda p, a: (p.write_bytes(b""), p)[1],
        ValueError,
        "not a parameter file.*empty, truncated.*Received: path=",
    ),
    "truncated_file": (
        lambda p, a: (p.write_bytes(p.read_bytes()[:300]), p)[1],
        ValueError,
        "not a parameter file",
    ),
    "text_file": (
        lambda p, a: (p.write_text("weights\n"), p)[1],
        ValueError,
        "not a parameter file",
    ),
    "npy_file": (
        lambda p, a: (np.save(open(p, "wb"), np.zeros(3)), p)[1],
        ValueError,
        "not a parameter file",
    ),
    "folder": (
        lambda p, a: ((p.parent / "dir.npz").mkdir(), p.parent / "dir.npz")[1],
        IsADirectoryError,
        "is a folder",
    ),
    "int64_arrays": (
        lambda p, a: write_npz(p, changed(a, lambda v: v.astype("int64"))),
        ValueError,
        "holds int64 values",
    ),
    "bool_arrays": (
        lambda p, a: write_npz(p, changed(a, lambda v: v > 0)),
        ValueError,
        "holds bool values",
    ),
    "complex_arrays": (
        lambda p, a: write_npz(p, changed(a, lambda v: v.astype(complex))),
        ValueError,
        "holds complex128",
    ),
    "text_in_last_array": (
        lambda p, a: write_npz(p, changed(a, lambda v: v.astype(str), last=True)),
        ValueError,
        "holds <U",
    ),
    "nan_in_last_array": (
        lambda p, a: write_npz(p, changed(a, lambda v: v * np.nan, last=True)),
        ValueError,
        "NaN or infinite",
    ),
    "object_arrays": (
        lambda p, a: write_npz(
            p, changed(a, lambda v: np.array([None] * 2, dtype=object), last=True)
        ),
        ValueError,
        "not a parameter file.*Object arrays cannot be loaded",
    ),
    "wrong_shape": (
        lambda p, a: write_npz(p, changed(a, lambda v: v[..., :1], last=True)),
        ValueError,
        "has shape",
    ),
    "missing_array": (
        lambda p, a: write_npz(p, dict(list(a.items())[:-1])),
        ValueError,
        "do not match this network",
    ),
}


@pytest.mark.parametrize("case", LOAD_CASES)
def test_failed_load_changes_nothing(case, saved):
    converter, sim, path, arrays = saved
    make, error, match = LOAD_CASES[case]
    bad = make(path, arrays)
    before = weights_of(converter)
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    with pytest.raises(error, match=match):
        sim.load_params(bad)
    assert_unchanged(converter, before)
    if fds:
        assert len(os.listdir("/proc/self/fd")) == fds  # no file left open


def test_save_keeps_mode_and_writes_through_symlinks(saved, tmp_path):
    converter, sim, path, _ = saved
    os.chmod(path, 0o640)
    link = tmp_path / "link.npz"
    link.symlink_to(path)
    sim.save_params(link)
    assert link.is_symlink()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    sim.load_params(link)
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "params.npz"]


@pytest.mark.parametrize(
    "name, error, match",
    [
        ("runs/", ValueError, "must name a file, not a folder"),
        ("folder.npz", IsADirectoryError, "is a folder"),
        ("missing/params", FileNotFoundError, "folder of .* does not exist"),
    ],
)
def test_save_refuses_paths_that_are_no_files(net, tmp_path, name, error, match):
    (tmp_path / "runs").mkdir()
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(error, match=match):
        net[1].save_params(os.path.join(str(tmp_path), name))
    assert sorted(os.listdir(tmp_path)) == ["folder.npz", "runs"]
    assert os.listdir(tmp_path / "runs") == []


def test_save_beside_a_folder_of_the_same_name(net, tmp_path, monkeypatch):
    """``save_params("runs")`` writes runs.npz (NengoDL's rule), folder or not."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    net[1].save_params("runs")
    net[1].load_params(b"runs")
    assert sorted(os.listdir(tmp_path)) == ["runs", "runs.npz"]


@pytest.mark.parametrize(
    "failure",
    [KeyboardInterrupt, OSError(28, "No space")],
    ids=["ctrl_c", "disk_full"],
)
def test_interrupted_save_keeps_the_old_file(saved, monkeypatch, failure):
    converter, sim, path, _ = saved
    old = path.read_bytes()

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(np, "savez", fail)
    expected = KeyboardInterrupt if failure is KeyboardInterrupt else OSError
    with pytest.raises(expected) as info:
        sim.save_params(path)
    if expected is OSError:  # names the user's path, not the temporary file
        assert str(path) in str(info.value) and ".snnify-" not in str(info.value)
    assert path.read_bytes() == old
    assert os.listdir(path.parent) == ["params.npz"]


def test_save_refuses_nan_weights(saved):
    converter, sim, path, _ = saved
    old = path.read_bytes()
    variable = converter.net.weights[0]
    good = keras.ops.convert_to_numpy(variable)
    variable.assign(good * np.nan)
    try:
        with pytest.raises(ValueError, match="NaN or infinite.*not saved"):
            sim.save_params(path)
    finally:
        variable.assign(good)
    assert path.read_bytes() == old


def test_unwritable_folder_names_the_path(saved, tmp_path, monkeypatch):
    """A folder where no file can be made (as a read-only one, even for root)."""
    sim = saved[1]

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/tmp/.p.npz.snnify-x")

    monkeypatch.setattr(validation.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match="Could not write .*locked.npz'") as info:
        sim.save_params(tmp_path / "locked.npz")
    assert "snnify-x" not in str(info.value)


def test_include_state_refused(net, tmp_path):
    with pytest.raises(ValueError, match="include_state=True"):
        net[1].save_params(tmp_path / "p", include_state=True)


# --- the command line --------------------------------------------------------
def run_cli(argv, capsys):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def no_demo(monkeypatch):
    """Replace the demo's run by a stub that records its output folder."""
    from snnify.demo import run

    calls = []
    monkeypatch.setattr(run, "main", lambda args: calls.append(args.out) or 0)
    return calls


@pytest.mark.parametrize(
    "case, argv, match",
    [
        ("out_is_a_file", ["demo", "--out", "{file}"], "is a file; give a folder"),
        ("out_empty", ["demo", "--out", ""], "must name a folder, got ''"),
        ("out_blank", ["demo", "--out", "  "], "must name a folder"),
        ("backend_not_installed", ["demo", "--backend", "{missing}"], "pip install"),
        (
            "sweep_out_is_a_file",
            ["sweep", "m", "d", "--calibration", "c", "--out", "{file}"],
            "is a file",
        ),  # fmt: skip
    ],
)
def test_command_line_mistakes(
    case, argv, match, tmp_path, capsys, no_demo, monkeypatch
):
    # the running backend, as if chosen by KERAS_BACKEND; another one is missing
    running = keras.backend.backend()
    missing = "tensorflow" if running == "torch" else "torch"
    monkeypatch.setattr(cli, "_backend_installed", lambda backend: backend != missing)
    monkeypatch.setenv("KERAS_BACKEND", running)
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("re-executed"))
    file = tmp_path / "file"
    file.write_text("x")
    argv = [a.format(file=file, missing=missing) for a in argv]
    status, _, err = run_cli(argv, capsys)
    assert status == 1 and not no_demo
    assert err.count("\n") == 1 and "Traceback" not in err
    assert match in err


def test_negative_seed_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--seed", "-1"])
    assert info.value.code == 2
    assert "--seed: must be an integer from 0" in capsys.readouterr().err


def test_demo_says_what_it_writes_and_keeps_foreign_files(tmp_path, capsys, no_demo):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "index.html").write_text("my page")
    status, _, err = run_cli(["demo", "--out", folder], capsys)
    assert status == 1 and "not written by snnify demo" in err and not no_demo
    assert (folder / "index.html").read_text() == "my page"
    fresh = tmp_path / "fresh"
    status, out, _ = run_cli(["demo", "--out", fresh], capsys)
    assert status == 0 and no_demo == [str(fresh)]
    assert "writes index.html, table.md, results.json" in out
    assert "replacing" not in out
    fresh.mkdir()
    (fresh / "index.html").write_text("<html>")
    (fresh / "results.json").write_text('{"meta": {}, "results": []}')
    status, out, _ = run_cli(["demo", "--out", fresh], capsys)
    assert status == 0 and "replacing those of the earlier demo" in out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_write_atomically_keeps_mode(tmp_path):
    path = tmp_path / "table.md"
    path.write_text("old")
    path.chmod(0o604)
    validation.write_atomically(path, lambda p: open(p, "w").write("new"))
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o604


def test_params_reader_is_used_for_every_load(saved):
    """read_arrays names the file it refuses (used by load_params)."""
    path = saved[2]
    path.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match=str(path)):
        params.read_arrays(str(path))


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, float("inf"), float("nan"), "4"])
def test_integer_arguments_refuse_what_is_no_count(bad):
    checks = {
        "levels": lambda: snnify.QCFS(levels=bad),
        "max_spikes_per_step": lambda: snnify.IntegrateAndFire(max_spikes_per_step=bad),
        "spike_aware_steps": lambda: snnify.Settings(spike_aware_steps=bad),
    }
    for name, make in checks.items():
        with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
            make()


def test_integer_arguments_take_integral_numbers():
    assert snnify.QCFS(levels=np.int64(8)).levels == 8
    neuron = snnify.IntegrateAndFire(max_spikes_per_step=2.0)
    assert type(neuron.max_spikes_per_step) is int
    assert snnify.Settings(spike_aware_steps=np.int32(4)).spike_aware_steps == 4
