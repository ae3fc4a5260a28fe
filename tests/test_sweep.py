"""sweep: the table, the choice of the cheapest accurate configuration, the plot."""

import keras
import numpy as np
import pytest

import snnify
from snnify.sweep import SweepResult


def row(setting, steps, accuracy, spikes, energy):
    return {
        "setting": setting,
        "steps": steps,
        "accuracy": accuracy,
        "spikes": spikes,
        "spikes_per_neuron": spikes / 100,
        "synops": 10 * spikes,
        "macs": 0.0,
        "energy_nj": energy,
    }


def test_best_is_the_cheapest_row_that_reaches_the_target():
    rows = [
        row("a", 4, 0.90, 100, 5.0),
        row("a", 8, 0.95, 200, 9.0),
        row("b", 4, 0.96, 400, 8.0),
        row("b", 8, 0.97, 800, 15.0),
    ]
    result = SweepResult(rows, 0.97, 50.0, {"a": {}, "b": {}}, {}, None)
    assert result.best(target=0.95) is rows[2]  # 8 nJ beats 9 nJ
    assert result.best(target=0.95, cost="spikes") is rows[1]
    assert result.best(target=0.95, cost="steps") is rows[2]  # 4 steps, then spikes
    assert result.best(tolerance=0.005) is rows[3]  # 0.97 - 0.005
    assert result.best(target=0.99) is None
    with pytest.raises(ValueError, match="exactly one of target and tolerance"):
        result.best()
    with pytest.raises(ValueError, match="cost must be one of"):
        result.best(target=0.9, cost="money")
    assert "| ANN | - | 97.00 |" in result.table(markdown=True)


def glorot_uniform(rng, shape):
    limit = np.sqrt(6 / sum(shape))
    return rng.uniform(-limit, limit, shape).astype("float32")


def test_sweep_runs_settings_over_steps(tmp_path):
    inp = keras.Input((6,))
    hidden = keras.layers.Dense(24, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(hidden))
    rng = np.random.default_rng(0)  # the same network on every backend
    (w1, b1), (w2, b2) = [layer.get_weights() for layer in model.layers[1:]]
    model.set_weights(
        [glorot_uniform(rng, w1.shape), b1, glorot_uniform(rng, w2.shape), b2]
    )
    x = rng.uniform(-1, 1, (40, 6)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=-1)  # the ANN is 100 % right
    result = snnify.sweep(
        model,
        x,
        y,
        steps=[1, 4, 16],
        settings={
            "p99": {"percentile": 99},
            "scale 5": {"scale_firing_rates": 5.0},
        },
        calibration_data=x,
    )
    assert [(r["setting"], r["steps"]) for r in result.rows] == [
        ("p99", 1), ("p99", 4), ("p99", 16),
        ("scale 5", 1), ("scale 5", 4), ("scale 5", 16),
    ]  # fmt: skip
    assert result.ann_accuracy == 1.0
    calibrated = [r for r in result.rows if r["setting"] == "p99"]
    # measured on JAX, TensorFlow and PyTorch alike: 75 / 90 / 97.5 % at 1 / 4 /
    # 16 steps (40 examples); the bounds leave one example
    accuracy = [r["accuracy"] for r in calibrated]
    assert all(a >= b for a, b in zip(accuracy, [0.725, 0.875, 0.95])), accuracy
    assert calibrated[0]["accuracy"] < calibrated[-1]["accuracy"]
    assert calibrated[0]["spikes"] < calibrated[1]["spikes"] < calibrated[2]["spikes"]
    # scale 5 hardly fires in 16 steps: calibration wins
    assert result.best(target=0.9)["setting"] == "p99"
    result.plot(tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="Unknown sweep setting option"):
        snnify.sweep(model, x, y, settings={"bad": {"percentil": 99}})


def test_one_hot_labels_count_as_their_classes():
    inp = keras.Input((6,))
    hidden = keras.layers.Dense(12, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(hidden))
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (30, 6)).astype("float32")
    labels = rng.integers(0, 3, 30)  # about a third right: a mix-up shows
    one_hot = np.eye(3)[labels]
    # the arg-max of one-hot rows, not a broadcast of (30,) against (90,)
    accuracies = []
    for y in (labels, one_hot, one_hot[:, None]):
        converter = snnify.convert_for_steps(model, x, n_steps=4, labels=y)
        result = snnify.sweep(model, x, y, steps=[4], calibration_data=x)
        stats = snnify.measure(converter, x, n_steps=4, y=y)
        expected = converter.calibration.expected
        accuracies.append(
            (expected["accuracy"], result.ann_accuracy, result.rows[0]["accuracy"],
             stats.accuracy)
        )  # fmt: skip
    assert accuracies[1] == accuracies[0] and accuracies[2] == accuracies[0]
    with pytest.raises(ValueError, match=r"one per example, for 30 examples"):
        snnify.measure(converter, x, n_steps=4, y=labels[:20])
