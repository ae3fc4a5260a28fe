"""The demo's report: the table (text, Markdown), the HTML page, summary figures.

Example:
    >>> table_rows([])[0][:3]
    ['#', 'configuration', 'neurons']
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence

from snnify.demo import plots
from snnify.demo.configurations import N_FIRST, describe

COLUMNS = (
    ("#", "{index}"),
    ("configuration", "{name}"),
    ("neurons", "{neurons}"),
    ("steps", "{steps}"),
    ("synapse (s)", "{synapse}"),
    ("scale", "{scale}"),
    ("acc. first {n_first} (%)", "{accuracy_first:.2f}"),
    ("acc. {n_test} (%)", "{accuracy:.2f}"),
    ("conv0 mean (Hz)", "{rate_mean:.1f}"),
    ("conv0 max (Hz)", "{rate_max:.0f}"),
    ("time (s)", "{seconds:.1f}"),
)


def table_rows(results: Sequence) -> tuple[list, list]:
    """The table's header and rows as strings."""
    if not results:
        return [name for name, _ in COLUMNS], []
    first = results[0]
    header = [
        name.format(n_first=first.n_first, n_test=first.n_test) for name, _ in COLUMNS
    ]
    rows = []
    for i, r in enumerate(results, 1):
        c = r.configuration
        values = {
            "index": i,
            "name": c.name,
            "neurons": c.neurons,
            "steps": r.n_steps,
            "synapse": "-" if c.synapse is None else f"{c.synapse:g}",
            "scale": f"{c.scale:g}",
            "accuracy_first": 100 * r.accuracy_first,
            "accuracy": 100 * r.accuracy,
            "rate_mean": r.rate_mean,
            "rate_max": r.rate_max,
            "seconds": r.seconds,
        }
        rows.append([fmt.format(**values) for _, fmt in COLUMNS])
    return header, rows


def format_table(results: Sequence) -> str:
    """The results as an aligned plain-text table."""
    header, rows = table_rows(results)
    widths = [max(len(x) for x in column) for column in zip(header, *rows)]

    def line(cells):
        return "  ".join(
            cell.ljust(w) if i in (1, 2) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def markdown_table(results: Sequence) -> str:
    """The results as a Markdown table."""
    header, rows = table_rows(results)
    align = ["---:" if i not in (1, 2) else "---" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def provenance(meta: dict) -> str:
    """One sentence: what produced a table, on what, and how long it took.

    Example:
        >>> provenance({"Keras backend": "jax", "total time": "9 s"})
        'Written by `snnify demo`: Keras backend jax; total time 9 s.'
    """
    facts = "; ".join(f"{key} {value}" for key, value in meta.items())
    return f"Written by `snnify demo`: {facts}."


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0; }
.note { color: #444; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.meta dt { font-weight: bold; }
"""


def write_html(
    path: str, results: Sequence, meta: dict, summary_figures: Sequence[str]
) -> None:
    """Write the page that shows the table, the summary figures and all figures."""
    esc = html.escape
    header, rows = table_rows(results)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>snnify demo: Keras to spiking network</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>snnify demo: converting a Keras network to a spiking network</h1>",
        "<p>A small convolutional network is trained on MNIST, then run with "
        "spiking neurons in the configurations of the Keras-to-SNN tutorial. "
        "The accuracy is read from the output at the last time step. Firing "
        f"rates are those of 1000 evenly sampled neurons of the first "
        f"convolutional layer (conv0) over the first {results[0].n_first if results else N_FIRST} "
        "test images: for spiking neurons, spikes over the whole presentation "
        "divided by its duration; for rate neurons, their rate values.</p>",
        '<dl class="meta">',
    ]
    for key, value in meta.items():
        parts.append(f"<dt>{esc(str(key))}</dt><dd>{esc(str(value))}</dd>")
    parts.append("</dl><h2>Results</h2><table><thead><tr>")
    parts += [f"<th>{esc(h)}</th>" for h in header]
    parts.append("</tr></thead><tbody>")
    for i, row in enumerate(rows, 1):
        cells = []
        for j, cell in enumerate(row):
            text = f'<a href="#config-{i}">{esc(cell)}</a>' if j == 1 else esc(cell)
            cls = "" if j in (1, 2) else ' class="num"'
            cells.append(f"<td{cls}>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    for name in summary_figures:
        parts.append(f'<p><img src="{esc(name)}" alt="{esc(name)}"></p>')
    parts.append("<h2>Each configuration</h2>")
    for i, r in enumerate(results, 1):
        c = r.configuration
        parts.append(f'<h3 id="config-{i}">{i}. {esc(c.name)}</h3>')
        parts.append(
            f"<p><b>{esc(describe(c, r.n_steps))}.</b> Accuracy "
            f"{100 * r.accuracy_first:.2f} % on the first {r.n_first} images, "
            f"{100 * r.accuracy:.2f} % on {r.n_test}; conv0 mean "
            f"{r.rate_mean:.1f} Hz, max {r.rate_max:.0f} Hz.</p>"
        )
        if c.note:
            parts.append(f'<p class="note">{esc(c.note)}</p>')
        for name in r.figures:
            parts.append(
                f'<p><img src="{esc(name)}" alt="{esc(c.name)}: input, conv0 '
                'activity and output over time"></p>'
            )
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(parts) + "\n")


def summary_figures(results: Sequence, out: str) -> list:
    """Draw the accuracy bar chart and the accuracy-per-step curves into ``out``."""
    files = []
    labels = [f"{i}. {r.configuration.name}" for i, r in enumerate(results, 1)]
    reference = next(
        (r.accuracy for r in results if r.configuration.neurons == "rate"), None
    )
    first = results[0]
    fig = plots.plot_accuracy(
        labels,
        {
            f"first {first.n_first} test images": [r.accuracy_first for r in results],
            f"{first.n_test} test images": [r.accuracy for r in results],
        },
        reference=reference,
    )
    fig.savefig(os.path.join(out, "accuracy.png"), dpi=100)
    files.append("accuracy.png")
    curves = {
        label: r.accuracy_per_step
        for label, r in zip(labels, results)
        if r.configuration.spiking
    }
    if curves:
        fig = plots.plot_accuracy_vs_steps(
            curves,
            reference=reference,
            title=f"Accuracy on {first.n_test} test images when the output is "
            "read at each step",
        )
        fig.savefig(os.path.join(out, "accuracy-vs-steps.png"), dpi=100)
        files.append("accuracy-vs-steps.png")
    return files
