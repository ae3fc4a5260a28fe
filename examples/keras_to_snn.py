"""Convert a Keras network to a spiking network, step by step.

This is the Keras-to-SNN tutorial workflow written with snnify's public API:

1. build a small Keras CNN and train it (non-spiking) through the converter;
2. swap its ReLUs for spiking neurons and see it fail at 10 steps;
3. recover accuracy with a longer presentation, synaptic filters and
   firing-rate scaling;
4. train with a firing-rate regulariser instead, so that no scaling is needed.

Run it with ``KERAS_BACKEND=jax python examples/keras_to_snn.py``. It takes a
few minutes on a laptop CPU and writes its figures to ``keras_to_snn_figures/``.
``snnify demo`` runs the same workflow with timing and an HTML report.
"""

import os

import keras
import numpy as np

import snnify
from snnify.demo.datasets import load_mnist
from snnify.demo.plots import neuron_activity, plot_example, sample_neurons

N_TEST = 400  # test images per configuration
FIGURES = "keras_to_snn_figures"
os.makedirs(FIGURES, exist_ok=True)
keras.utils.set_random_seed(0)

# --- data: images flattened to 784 values, with a time axis of length 1 ------
# (the bundled 10,000 training images; load_mnist(full=True) downloads all 60,000)
(x_train, y_train), (x_test, y_test) = load_mnist()
x_train = x_train.reshape((-1, 1, 784)).astype("float32")
x_test = x_test.reshape((-1, 1, 784)).astype("float32")
y_train = y_train.reshape((-1, 1, 1))
y_test = y_test.reshape((-1, 1, 1))

# --- the Keras model -----------------------------------------------------------
inp = keras.Input(shape=(28, 28, 1))
conv0 = keras.layers.Conv2D(32, 3, activation=keras.activations.relu)(inp)
conv1 = keras.layers.Conv2D(64, 3, strides=2, activation=keras.activations.relu)(conv0)
dense = keras.layers.Dense(10)(keras.layers.Flatten()(conv1))
model = keras.Model(inputs=inp, outputs=dense)

# --- train it, non-spiking, through the converter ------------------------------
converter = snnify.Converter(model)  # no swapped activations: exactly the model
with snnify.Simulator(converter.net, minibatch_size=200) as sim:
    sim.compile(
        optimizer=keras.optimizers.RMSprop(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.sparse_categorical_accuracy],
    )
    sim.fit(
        {converter.inputs[inp]: x_train},
        {converter.outputs[dense]: y_train},
        validation_data=(
            {converter.inputs[inp]: x_test},
            {converter.outputs[dense]: y_test},
        ),
        epochs=2,
        verbose=2,
    )
    sim.save_params("keras_to_snn_params")  # writes keras_to_snn_params.npz


def run_network(
    activation,
    params_file="keras_to_snn_params",
    n_steps=30,
    scale_firing_rates=1,
    synapse=None,
    n_test=N_TEST,
    name="run",
):
    """Convert the model with ``activation``, simulate it, report and plot."""
    run_converter = snnify.Converter(
        model,
        swap_activations={keras.activations.relu: activation},
        scale_firing_rates=scale_firing_rates,
        synapse=synapse,
    )
    output = run_converter.outputs[dense]
    with run_converter.net:
        conv0_probe = snnify.Probe(run_converter.layers[conv0])
        snnify.configure_settings(stateful=False)

    # Each image is given once, with one step, and held for n_steps steps. The
    # conv0 probe records 21,632 values per step and image, so the images run
    # in batches of 50 and only the first image's record is kept.
    outputs = []
    with snnify.Simulator(
        run_converter.net, minibatch_size=10, progress_bar=False, seed=0
    ) as sim:
        sim.load_params(params_file)
        for start in range(0, n_test, 50):
            images = x_test[start : min(start + 50, n_test)]
            data = sim.predict({run_converter.inputs[inp]: images}, n_steps=n_steps)
            outputs.append(data[output])
            if start == 0:
                first_conv0 = data[conv0_probe][0]
    outputs = np.concatenate(outputs)

    # read the network's answer at the last step
    predictions = np.argmax(outputs[:, -1], axis=-1)
    accuracy = (predictions == y_test[:n_test, 0, 0]).mean()

    spiking = activation.spiking
    sample = sample_neurons(conv0_probe.size_in)
    _, rates = neuron_activity(
        first_conv0[:, sample], spiking, scale_firing_rates, sim.dt
    )
    print(
        f"{name}: accuracy {100 * accuracy:.2f} %, conv0 on the first image: "
        f"mean {rates.mean():.0f} Hz, max {rates.max():.0f} Hz"
    )
    fig = plot_example(
        x_test[0, 0],
        first_conv0,
        outputs[0],
        spiking=spiking,
        scale=scale_firing_rates,
        dt=sim.dt,
        label=int(y_test[0, 0, 0]),
        title=f"{name}: {100 * accuracy:.1f} % on {n_test} test images",
    )
    fig.savefig(os.path.join(FIGURES, f"{name}.png"), dpi=100)
    return accuracy


# --- the non-spiking network, then a naive spiking conversion ------------------
run_network(snnify.RectifiedLinear(), n_steps=10, name="rate")
run_network(snnify.SpikingRectifiedLinear(), n_steps=10, name="spiking-10-steps")

# --- longer presentation: the neurons have time to spike -----------------------
run_network(snnify.SpikingRectifiedLinear(), n_steps=50, name="spiking-50-steps")

# --- synaptic filters average the spikes (and delay the output) ----------------
for tau in [0.001, 0.005, 0.01]:
    run_network(
        snnify.SpikingRectifiedLinear(),
        n_steps=120,
        synapse=tau,
        name=f"synapse-{tau}",
    )

# --- higher firing rates after training: scale the currents --------------------
for scale in [2, 10, 20]:
    run_network(
        snnify.SpikingRectifiedLinear(),
        scale_firing_rates=scale,
        synapse=0.01,
        name=f"scale-{scale}",
    )
# with enough spikes per step the spiking network is the rate network again
run_network(
    snnify.SpikingRectifiedLinear(),
    scale_firing_rates=1000,
    n_steps=10,
    name="scale-1000",
)

# --- or train for higher firing rates: a loss on the conv layers' rates --------
target_rate = 250  # Hz
converter = snnify.Converter(model)
with converter.net:
    output_p = converter.outputs[dense]
    conv0_p = snnify.Probe(converter.layers[conv0])
    conv1_p = snnify.Probe(converter.layers[conv1])

# NengoDL's recipe on the 10,000 bundled images: 10 epochs in minibatches of
# 200 (500 updates). The rate loss makes the logits large and the accuracy of
# the weights swing from update to update, so the optimizer keeps a moving
# average of the weights over about the last 100 updates, which fit() saves.
n_train = len(x_train)
with snnify.Simulator(converter.net, minibatch_size=200, seed=0) as sim:
    sim.compile(
        optimizer=keras.optimizers.RMSprop(0.001, use_ema=True, ema_momentum=0.99),
        loss={
            output_p: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            conv0_p: keras.losses.MeanSquaredError(),
            conv1_p: keras.losses.MeanSquaredError(),
        },
        loss_weights={output_p: 1, conv0_p: 1e-3, conv1_p: 1e-3},
    )
    sim.fit(
        {converter.inputs[inp]: x_train},
        {
            output_p: y_train,
            # the same target for every image and neuron (a view, not a copy)
            conv0_p: np.broadcast_to(
                np.float32(target_rate), (n_train, 1, conv0_p.size_in)
            ),
            conv1_p: np.broadcast_to(
                np.float32(target_rate), (n_train, 1, conv1_p.size_in)
            ),
        },
        epochs=10,
        verbose=2,
    )
    sim.save_params("keras_to_snn_regularized_params")

run_network(
    snnify.RectifiedLinear(),
    params_file="keras_to_snn_regularized_params",
    n_steps=10,
    name="regularized-rate",
)
# no scaling needed: the neurons were trained to fire fast enough
run_network(
    snnify.SpikingRectifiedLinear(),
    params_file="keras_to_snn_regularized_params",
    synapse=0.01,
    name="regularized-spiking",
)
print(f"Figures in {os.path.abspath(FIGURES)}")
