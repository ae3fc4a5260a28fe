"""Code that users bring: Keras's and NengoDL's ways of training, saving and
predicting, tried on one small converted network.

Each case runs in its own ``try`` and prints ``OK`` (with what it gave) or
the exception, its type and the start of its message, in a Markdown table:

- Keras callbacks in ``Simulator.fit`` (checkpoints of the whole network and
  of its weights, early stopping, learning-rate schedules, logging,
  TensorBoard, backup and restore), and loading the checkpoint back;
- Keras's arguments of ``fit``, ``evaluate`` and ``predict`` (class and
  sample weights, validation split, initial epoch, steps per epoch,
  ``return_dict``, ``batch_size``, ``verbose``, lists of arrays);
- NengoDL's options of the ``Converter`` and of ``configure_settings``, and
  Keras's methods called on the network itself (``converter.net.predict``);
- ``save_network`` / ``load_network`` of networks converted with options
  that change the network (``max_to_avg_pool``, ``fold_batch_norm``): the
  largest difference of the loaded network's outputs.

    KERAS_BACKEND=jax python benchmarks/bench_user_code.py
"""

from __future__ import annotations

import os
import tempfile
import warnings

import keras
import numpy as np

import snnify

L = keras.layers
RNG = np.random.default_rng(0)
X = RNG.uniform(0, 1, (40, 1, 6)).astype("float32")
Y = RNG.integers(0, 2, (40, 1, 1))
FOLDER = tempfile.mkdtemp()


def mlp():
    inp = keras.Input((6,))
    out = L.Dense(2)(L.Dense(8, activation="relu")(inp))
    return keras.Model(inp, out)


def pooled_batch_norm():
    inp = keras.Input((8, 8, 1))
    h = L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(inp))
    h = L.MaxPooling2D()(L.ReLU()(h))
    return keras.Model(inp, L.Dense(3)(L.Flatten()(h)))


def simulator(converter):
    sim = snnify.Simulator(converter.net, minibatch_size=10, progress_bar=False)
    sim.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return sim


def fitted(callback=None, **kwargs):
    converter = snnify.Converter(mlp())
    with simulator(converter) as sim:
        callbacks = [] if callback is None else [callback]
        history = sim.fit(X, Y, epochs=2, callbacks=callbacks, verbose=0, **kwargs)
    return f"{len(history.history['loss'])} epochs"


def spiking_sim():
    converter = snnify.Converter(
        mlp(), swap_activations={"relu": snnify.SpikingRectifiedLinear()}
    )
    return simulator(converter)


def saved_and_loaded(**options):
    converter = snnify.Converter(
        pooled_batch_norm(),
        swap_activations={"relu": snnify.IntegrateAndFire()},
        scale_firing_rates=4.0,
        **options,
    )
    path = os.path.join(FOLDER, "options.keras")
    snnify.save_network(converter, path)
    loaded = snnify.load_network(path).converter
    x = RNG.uniform(0, 1, (8, 1, 64)).astype("float32")
    outputs = []
    for network in (converter, loaded):
        with snnify.Simulator(network.net, progress_bar=False) as sim:
            outputs.append(sim.predict(x, n_steps=6)[network.net.probes[0]])
    return f"max abs diff {np.abs(outputs[0] - outputs[1]).max():.3g}"


def nengo_dl_setting(name):
    converter = snnify.Converter(mlp())
    with converter.net:
        snnify.configure_settings(**{name: False})


def callbacks():
    path = os.path.join(FOLDER, "{}")
    return {
        "ModelCheckpoint('net.keras')": keras.callbacks.ModelCheckpoint(
            path.format("net.keras")
        ),
        "ModelCheckpoint(weights only)": keras.callbacks.ModelCheckpoint(
            path.format("net.weights.h5"), save_weights_only=True
        ),
        "ModelCheckpoint(save_best_only)": keras.callbacks.ModelCheckpoint(
            path.format("best.keras"), monitor="loss", save_best_only=True
        ),
        "EarlyStopping(restore_best_weights)": keras.callbacks.EarlyStopping(
            monitor="loss", patience=1, restore_best_weights=True
        ),
        "ReduceLROnPlateau": keras.callbacks.ReduceLROnPlateau(monitor="loss"),
        "LearningRateScheduler": keras.callbacks.LearningRateScheduler(
            lambda epoch, rate: rate * 0.9
        ),
        "CSVLogger": keras.callbacks.CSVLogger(path.format("log.csv")),
        "BackupAndRestore": keras.callbacks.BackupAndRestore(path.format("backup")),
        "TerminateOnNaN": keras.callbacks.TerminateOnNaN(),
    }


def cases() -> dict:
    found = {
        f"fit, callback {name}": (lambda cb=cb: fitted(cb))
        for name, cb in callbacks().items()
    }
    found.update({
        "load_network of the checkpoint": lambda: type(snnify.load_network(
            os.path.join(FOLDER, "net.keras")
        ).converter).__name__,
        "fit(class_weight=)": lambda: fitted(class_weight={0: 1.0, 1: 2.0}),
        "fit(sample_weight=)": lambda: fitted(sample_weight=np.ones(40)),
        "fit(validation_split=)": lambda: fitted(validation_split=0.25),
        "fit(initial_epoch=1)": lambda: fitted(initial_epoch=1),
        "fit(steps_per_epoch=2)": lambda: fitted(steps_per_epoch=2),
        "fit([x], [y])": lambda: spiking_sim().fit([X], [Y], verbose=0) and "fitted",
        "evaluate(return_dict=True)": lambda: spiking_sim().evaluate(
            X, Y, n_steps=5, return_dict=True, verbose=0),
        "evaluate(sample_weight=)": lambda: spiking_sim().evaluate(
            X, Y, n_steps=5, sample_weight=np.ones(40), verbose=0),
        "predict([x])": lambda: {
            p.name: v.shape for p, v in spiking_sim().predict([X], n_steps=3).items()},
        "predict(batch_size=7, verbose=0)": lambda: {
            p.name: v.shape
            for p, v in spiking_sim().predict(X, 3, batch_size=7, verbose=0).items()},
        "fit(x without time axis)": lambda: spiking_sim().fit(X[:, 0], Y, verbose=0),
        "Converter(inference_only=True)": lambda: snnify.Converter(
            pooled_batch_norm(), inference_only=True).verify(),
        "Converter(split_shared_weights=True)": lambda: snnify.Converter(
            mlp(), split_shared_weights=True).verify(),
        "converter.net.predict(x)": lambda: snnify.Converter(mlp()).net.predict(X),
        "save/load, max_to_avg_pool=True": lambda: saved_and_loaded(
            max_to_avg_pool=True),
        "save/load, fold_batch_norm=True": lambda: saved_and_loaded(
            fold_batch_norm=True),
    })  # fmt: skip
    for name in ("keep_history", "dtype", "use_loop", "inference_only"):
        found[f"configure_settings({name}=False)"] = lambda name=name: nengo_dl_setting(
            name
        )
    return found


def main():
    warnings.simplefilter("ignore")
    keras.utils.set_random_seed(0)
    print(f"backend {keras.backend.backend()}, Keras {keras.__version__}\n")
    print("| code | result |\n| --- | --- |")
    for name, run in cases().items():
        try:
            result = f"OK: {run()}"
        except Exception as error:  # noqa: BLE001 -- the table reports every failure
            result = f"{type(error).__name__}: {str(error)[:160]}"
        print(f"| `{name}` | {result.replace('|', '/').replace(chr(10), ' ')} |")


if __name__ == "__main__":
    main()
