"""Summaries of a benchmark: the table of AUBC and accuracy per strategy, the learning-curve plot, the JSON."""

from __future__ import annotations

import json
import os
import platform

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

REFERENCE = "random"


def _mean_std(values):
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def summarize(result):
    """Per-strategy figures over seeds, in the order of ``result.config.strategies``.

    For each strategy: AUBC (:func:`~sklearn_ntkal.loop.area_under_budget_curve`)
    and final test accuracy, mean and sample standard deviation over seeds;
    seconds per query and per training (the mean over rounds of a run, then
    mean and standard deviation over seeds); and, when ``"random"`` was run,
    the AUBC difference to it paired by seed (same split, initial set and
    initialisation) with the number of seeds on which the strategy beat it.

    Parameters
    ----------
    result : BenchmarkResult

    Returns
    -------
    list of dict
        Keys ``strategy``, ``aubc``, ``final_accuracy``, ``query_time``,
        ``fit_time`` (each a ``(mean, std)`` pair), ``n_seeds``, and, with a
        random reference, ``aubc_vs_random`` (a pair) and ``wins_vs_random``.
    """
    by_seed = {(run.strategy, run.seed): run for run in result.runs}
    seeds = sorted({run.seed for run in result.runs})
    has_reference = REFERENCE in result.config.strategies
    rows = []
    for name in result.config.strategies:
        runs = [by_seed[name, seed] for seed in seeds]
        row = {
            "strategy": name,
            "n_seeds": len(runs),
            "aubc": _mean_std([run.aubc for run in runs]),
            "final_accuracy": _mean_std([run.scores[-1] for run in runs]),
            "query_time": _mean_std([np.mean(run.query_times[1:]) if len(run.query_times) > 1 else 0.0
                                     for run in runs]),
            "fit_time": _mean_std([np.mean(run.fit_times) for run in runs]),
        }
        if has_reference:
            gains = np.array([run.aubc - by_seed[REFERENCE, run.seed].aubc for run in runs])
            row["aubc_vs_random"] = _mean_std(gains)
            row["wins_vs_random"] = int(np.sum(gains > 0))
        rows.append(row)
    return rows


def format_table(summary):
    """A Markdown table of :func:`summarize`'s rows (mean ± standard deviation over seeds).

    Parameters
    ----------
    summary : list of dict

    Returns
    -------
    str
    """
    with_reference = "aubc_vs_random" in summary[0]
    header = ["strategy", "AUBC", "final accuracy"]
    if with_reference:
        header += ["AUBC − random", "seeds beating random"]
    header += ["query s/round", "training s/round"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in summary:
        cells = [row["strategy"], "{:.4f} ± {:.4f}".format(*row["aubc"]),
                 "{:.4f} ± {:.4f}".format(*row["final_accuracy"])]
        if with_reference:
            cells += ["{:+.4f} ± {:.4f}".format(*row["aubc_vs_random"]),
                      f"{row['wins_vs_random']}/{row['n_seeds']}"]
        cells += ["{:.3f} ± {:.3f}".format(*row["query_time"]), "{:.2f} ± {:.2f}".format(*row["fit_time"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_learning_curves(result, path, title=None):
    """Write a PNG of test accuracy against labels used: the mean over seeds and a ±1 std band per strategy.

    Parameters
    ----------
    result : BenchmarkResult
    path : str or path-like
    title : str or None
        Defaults to ``"<dataset> · <network> · <loss>, <n> seeds"``.
    """
    config = result.config
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name in config.strategies:
        n_labeled, scores = result.curves(name)
        mean = scores.mean(axis=0)
        std = scores.std(axis=0, ddof=1) if scores.shape[0] > 1 else np.zeros_like(mean)
        (line,) = axes.plot(n_labeled, mean, marker="o", markersize=3, label=name)
        axes.fill_between(n_labeled, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xlabel("labelled examples")
    axes.set_ylabel("test accuracy")
    axes.set_title(title or f"{config.dataset} · {config.network} · {config.loss}, {len(config.seeds)} seeds")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=120)


def environment():
    """Versions and devices the numbers were measured with."""
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "devices": [str(device) for device in jax.devices()],
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def write_report(result, out_dir, command=None):
    """Write ``table.md``, ``learning_curves.png`` and ``results.json`` (every number) into ``out_dir``.

    Parameters
    ----------
    result : BenchmarkResult
    out_dir : str or path-like
        Created if missing.
    command : str or None
        The command line that produced the result, recorded in the table and the JSON.

    Returns
    -------
    dict
        ``"summary"`` (:func:`summarize`'s rows), ``"table"`` (the Markdown
        table) and the paths ``"table_path"``, ``"plot_path"``, ``"json_path"``.
    """
    os.makedirs(out_dir, exist_ok=True)
    summary = summarize(result)
    table = format_table(summary)
    paths = {name: os.path.join(out_dir, name) for name in ("table.md", "learning_curves.png", "results.json")}
    heading = f"{result.dataset_description}; network {result.config.network}, loss {result.config.loss}."
    with open(paths["table.md"], "w", encoding="utf-8") as handle:
        handle.write(heading + "\n\n" + (f"Command: `{command}`\n\n" if command else "") + table + "\n")
    plot_learning_curves(result, paths["learning_curves.png"])
    document = {"command": command, "environment": environment(), "summary": summary, **result.to_dict()}
    with open(paths["results.json"], "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    return {"summary": summary, "table": table, "table_path": paths["table.md"],
            "plot_path": paths["learning_curves.png"], "json_path": paths["results.json"]}
