"""convert_for_steps with neurons limited to the spikes per step it assumes.

``convert_for_steps`` chooses thresholds for neurons that fire at most
``spikes_per_step`` (here 2) times per step, but by default the neurons that
run have no limit. For each network trained by networks.py and each step
count, this converts the network twice from the same 500 calibration images:

- ``no limit``: ``convert_for_steps(model, x_cal, T, spikes_per_step=2)``;
- ``at most 2 per step``: the same with
  ``neuron=snnify.IntegrateAndFire(max_spikes_per_step=2)``, the neurons the
  search assumes;

and prints, on the first ``--n-test`` test images, the accuracy, the spikes
per inference and the highest firing rate of a neuron (Hz, ``dt`` = 1 ms:
1000 Hz is one spike per step).

    KERAS_BACKEND=jax python bench_spike_limit.py tutorial_rmsprop --n-test 2000
"""

from __future__ import annotations

import argparse

from bench_calibration import _load

STEPS = (4, 8)


def main(argv=None):
    import snnify

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    args = parser.parse_args(argv)
    print("| network (test images) | steps | neurons | accuracy % | spikes "
          "| highest rate (Hz) |\n|---|---:|---|---:|---:|---:|")  # fmt: skip
    for name in args.names:
        model, x_cal, x_test, y_test = _load(name, args.n_test)
        for t in args.steps:
            for label, neuron in [
                ("no limit", snnify.IntegrateAndFire()),
                ("at most 2 per step", snnify.IntegrateAndFire(max_spikes_per_step=2)),
            ]:
                converter = snnify.convert_for_steps(
                    model, x_cal, t, spikes_per_step=2, neuron=neuron
                )
                stats = snnify.measure(converter, x_test, t, y=y_test)
                highest = max(s.max_rate for s in stats.layers if s.spiking)
                print(f"| {name} ({len(y_test)}) | {t} | {label} "
                      f"| {100 * stats.accuracy:.2f} | {stats.spikes:,.0f} "
                      f"| {highest:,.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
