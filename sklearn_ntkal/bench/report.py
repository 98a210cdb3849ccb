"""Summaries of a benchmark: the table of AUBC and accuracy per strategy, the learning-curve plot, the JSON."""

from __future__ import annotations

import json
import os
import platform

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from .streaming import REFERENCE as STREAMING_REFERENCE
from .streaming import StreamingResult

REFERENCES = ("random", "margin")
LEVEL = 0.95


def _mean_std(values):
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def confidence_interval(values, level=LEVEL):
    """Student-t confidence interval of the mean of ``values`` (paired differences over seeds).

    ``mean -/+ t_{(1 + level) / 2, n - 1} * s / sqrt(n)``, ``s`` the sample
    standard deviation of the ``n`` values (:data:`scipy.stats.t`).

    Parameters
    ----------
    values : array-like of shape (n,)
    level : float, default=0.95

    Returns
    -------
    tuple of float or None
        ``(low, high)``; ``None`` for fewer than two values.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return None
    half = stats.t.ppf((1 + level) / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


def paired_difference(values, reference):
    """The differences ``values - reference`` paired by seed.

    Returns
    -------
    mean_std : tuple of float
        Mean and sample standard deviation.
    ci : tuple of float or None
        :func:`confidence_interval`.
    wins : int
        How many differences are above 0.
    """
    differences = np.asarray(values, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return _mean_std(differences), confidence_interval(differences), int(np.sum(differences > 0))


def verdict(ci):
    """``"above"`` when a confidence interval lies above 0, ``"below"`` when under it, else ``"overlaps"``."""
    if ci is None:
        return "overlaps"
    return "above" if ci[0] > 0 else "below" if ci[1] < 0 else "overlaps"


def _runs_by_strategy(result):
    """Runs of each strategy of ``result``, in the configuration's order of strategies and in seed order."""
    by_seed = {(run.strategy, run.seed): run for run in result.runs}
    seeds = sorted({run.seed for run in result.runs})
    return {name: [by_seed[name, seed] for seed in seeds] for name in result.config.strategies}


def _later_rounds(times):
    """Mean seconds of the rounds after the first (which compiles), or 0 with one round."""
    return float(np.mean(times[1:])) if len(times) > 1 else 0.0


def _common_row(name, runs):
    """The summary keys every kind of run has: AUBC, final accuracy, query and fit seconds over seeds."""
    return {"strategy": name,
            "n_seeds": len(runs),
            "aubc": _mean_std([run.aubc for run in runs]),
            "final_accuracy": _mean_std([run.scores[-1] for run in runs]),
            "query_time": _mean_std([_later_rounds(run.query_times) for run in runs]),
            "fit_time": _mean_std([np.mean(run.fit_times) for run in runs])}


def summarize(result):
    """Per-strategy figures over seeds, in the order of ``result.config.strategies``.

    For each strategy: AUBC (:func:`~sklearn_ntkal.loop.area_under_budget_curve`)
    and final test accuracy, mean and sample standard deviation over seeds;
    seconds per query and per training (the mean over rounds of a run, then
    mean and standard deviation over seeds); and, for each reference of
    :data:`REFERENCES` that was run (random, margin), the AUBC and final
    accuracy differences to it paired by seed (same split, initial set,
    initialisation and candidates), with their 95 % Student-t confidence
    interval over seeds and the number of seeds on which the strategy is ahead.

    Parameters
    ----------
    result : BenchmarkResult

    Returns
    -------
    list of dict
        Keys ``strategy``, ``aubc``, ``final_accuracy``, ``query_time``,
        ``fit_time`` (each a ``(mean, std)`` pair) and ``n_seeds``; per
        reference ``ref`` that was run, ``aubc_vs_<ref>`` and
        ``final_vs_<ref>`` (pairs), ``aubc_vs_<ref>_ci`` and
        ``final_vs_<ref>_ci`` (``(low, high)`` or ``None`` with one seed),
        and ``wins_vs_<ref>`` (seeds with a higher AUBC).
    """
    by_strategy = _runs_by_strategy(result)
    rows = []
    for name, runs in by_strategy.items():
        row = _common_row(name, runs)
        for reference in (ref for ref in REFERENCES if ref in by_strategy):
            others = by_strategy[reference]
            (row[f"aubc_vs_{reference}"], row[f"aubc_vs_{reference}_ci"],
             row[f"wins_vs_{reference}"]) = paired_difference([run.aubc for run in runs], [run.aubc for run in others])
            row[f"final_vs_{reference}"], row[f"final_vs_{reference}_ci"], _ = paired_difference(
                [run.scores[-1] for run in runs], [run.scores[-1] for run in others])
        rows.append(row)
    return rows


def difference_cell(pair, ci, wins=None, n_seeds=None):
    """``+mean [low, high]`` of a paired difference, with ``(wins/n)`` when given; ``—`` if 0 on every seed."""
    if pair[0] == pair[1] == 0:
        return "—"
    interval = "n/a" if ci is None else "{:+.4f}, {:+.4f}".format(*ci)
    return f"{pair[0]:+.4f} [{interval}]" + ("" if wins is None else f" ({wins}/{n_seeds})")


def markdown_table(header, lines):
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    rule = "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(cells) + " |" for cells in lines])


def format_table(summary):
    """A Markdown table of :func:`summarize`'s rows.

    AUBC and final accuracy are mean ± standard deviation over seeds; the
    differences to random and to margin (when they were run) are the mean
    paired difference, its 95 % confidence interval in brackets and, for
    AUBC, the seeds on which the strategy is ahead.

    Parameters
    ----------
    summary : list of dict

    Returns
    -------
    str
    """
    references = [ref for ref in REFERENCES if f"aubc_vs_{ref}" in summary[0]]
    header = ["strategy", "AUBC", "final accuracy"]
    for reference in references:
        header += [f"AUBC − {reference} [95 % CI] (seeds ahead)", f"final − {reference} [95 % CI]"]
    header += ["query s/round", "training s/round"]
    lines = []
    for row in summary:
        cells = [row["strategy"], "{:.4f} ± {:.4f}".format(*row["aubc"]),
                 "{:.4f} ± {:.4f}".format(*row["final_accuracy"])]
        for reference in references:
            cells += [difference_cell(row[f"aubc_vs_{reference}"], row[f"aubc_vs_{reference}_ci"],
                                      row[f"wins_vs_{reference}"], row["n_seeds"]),
                      difference_cell(row[f"final_vs_{reference}"], row[f"final_vs_{reference}_ci"])]
        cells += ["{:.3f} ± {:.3f}".format(*row["query_time"]), "{:.2f} ± {:.2f}".format(*row["fit_time"])]
        lines.append(cells)
    return markdown_table(header, lines)


def summarize_streaming(result):
    """Per-strategy figures of a streaming benchmark over seeds, in the order of ``result.config.strategies``.

    For each strategy: the AUBC and final test accuracy of the network (at
    the retrains) and of the linearised model (along the stream), mean and
    sample standard deviation over seeds; seconds per stream of choosing
    (``query_time``) and of ``partial_fit`` (``update_time``), and per
    retrain (``fit_time``); and both AUBCs paired by seed against
    :data:`~sklearn_ntkal.bench.streaming.REFERENCE` (margin on the stale
    network), with 95 % confidence intervals and the seeds ahead.

    Parameters
    ----------
    result : StreamingResult

    Returns
    -------
    list of dict
        Keys ``strategy``, ``n_seeds``, ``aubc``, ``linear_aubc``,
        ``final_accuracy``, ``final_linear_accuracy``, ``query_time``,
        ``update_time``, ``fit_time`` (pairs); ``aubc_vs_<ref>`` and
        ``linear_aubc_vs_<ref>`` (pairs), their ``_ci`` and ``_wins``.
    """
    by_strategy = _runs_by_strategy(result)
    rows = []
    for name, runs in by_strategy.items():
        row = {**_common_row(name, runs),
               "linear_aubc": _mean_std([run.linear_aubc for run in runs]),
               "final_linear_accuracy": _mean_std([run.linear_scores[-1] for run in runs]),
               "update_time": _mean_std([_later_rounds(run.update_times) for run in runs])}
        if STREAMING_REFERENCE in by_strategy:
            others = by_strategy[STREAMING_REFERENCE]
            for key in ("aubc", "linear_aubc"):
                name_vs = f"{key}_vs_{STREAMING_REFERENCE}"
                row[name_vs], row[name_vs + "_ci"], row[name_vs + "_wins"] = paired_difference(
                    [getattr(run, key) for run in runs], [getattr(run, key) for run in others])
        rows.append(row)
    return rows


def format_streaming_table(summary):
    """A Markdown table of :func:`summarize_streaming`'s rows (mean ± std; paired differences with 95 % CI).

    Parameters
    ----------
    summary : list of dict

    Returns
    -------
    str
    """
    reference = f"aubc_vs_{STREAMING_REFERENCE}" in summary[0]
    header = ["strategy", "network AUBC", "linearised AUBC", "final network", "final linearised"]
    if reference:
        header += [f"network AUBC − {STREAMING_REFERENCE} [95 % CI] (seeds ahead)",
                   f"linearised AUBC − {STREAMING_REFERENCE} [95 % CI] (seeds ahead)"]
    header += ["query s/stream", "partial_fit s/stream", "retraining s"]
    lines = []
    for row in summary:
        cells = [row["strategy"]] + ["{:.4f} ± {:.4f}".format(*row[key]) for key in
                                     ("aubc", "linear_aubc", "final_accuracy", "final_linear_accuracy")]
        if reference:
            cells += [difference_cell(row[f"{key}_vs_{STREAMING_REFERENCE}"],
                                      row[f"{key}_vs_{STREAMING_REFERENCE}_ci"],
                                      row[f"{key}_vs_{STREAMING_REFERENCE}_wins"], row["n_seeds"])
                      for key in ("aubc", "linear_aubc")]
        cells += ["{:.3f} ± {:.3f}".format(*row["query_time"]), "{:.3f} ± {:.3f}".format(*row["update_time"]),
                  "{:.2f} ± {:.2f}".format(*row["fit_time"])]
        lines.append(cells)
    return markdown_table(header, lines)


def _plot_mean_band(axes, n_labeled, scores, label, marker):
    """Plot the mean of ``scores`` (seeds x points) over ``n_labeled`` with a ±1 standard deviation band."""
    mean = scores.mean(axis=0)
    std = scores.std(axis=0, ddof=1) if scores.shape[0] > 1 else np.zeros_like(mean)
    (line,) = axes.plot(n_labeled, mean, marker=marker, markersize=3, label=label)
    axes.fill_between(n_labeled, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)


def _figure(size):
    """A matplotlib figure of ``size`` inches drawn off-screen (no pyplot, so no GUI back end is touched)."""
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _label_axes(axes, title, **title_style):
    """Axes of a learning curve: test accuracy against labelled examples, a title and a light grid."""
    axes.set_xlabel("labelled examples")
    axes.set_ylabel("test accuracy")
    axes.set_title(title, **title_style)
    axes.grid(alpha=0.3)


def plot_streaming_curves(result, path, title=None):
    """Write a PNG of a streaming benchmark: the network at the retrains (left), the linearised model (right).

    Parameters
    ----------
    result : StreamingResult
    path : str or path-like
    title : str or None
    """
    config = result.config
    figure = _figure((11, 4.5))
    network_axes, linear_axes = figure.subplots(1, 2, sharey=True)
    for name in config.strategies:
        _plot_mean_band(network_axes, *result.curves(name), name, "o")
        _plot_mean_band(linear_axes, *result.linear_curves(name), name, None)
    _label_axes(network_axes, "network, at each retrain", fontsize="medium")
    _label_axes(linear_axes, "linearised model, along the stream", fontsize="medium")
    linear_axes.legend(fontsize="small")
    figure.suptitle(title or f"streaming · {config.dataset} · {config.network} · {config.loss}, "
                             f"retrain every {result.budget['batch_size']} labels, {len(config.seeds)} seeds")
    figure.savefig(path, dpi=120)


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
    figure = _figure((7, 4.5))
    axes = figure.add_subplot()
    for name in config.strategies:
        _plot_mean_band(axes, *result.curves(name), name, "o")
    _label_axes(axes, title or f"{config.dataset} · {config.network} · {config.loss}, {len(config.seeds)} seeds")
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=120)


def environment():
    """Versions and devices the numbers were measured with, and which copy of the package measured them.

    ``sklearn_ntkal`` names the directory the package was imported from: a
    script run from ``benchmarks/`` imports the installed package, which is
    not the checkout unless it was installed in editable mode.
    """
    from .. import __version__

    return {
        "sklearn_ntkal": f"{__version__} from {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "devices": [str(device) for device in jax.devices()],
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def write_results(out_dir, args, **record):
    """Write ``results.json`` into ``out_dir`` (created if needed) and return its path.

    It holds the script's settings (its parsed ``args``, paths as strings),
    the :func:`environment` and the fields of ``record``.
    """
    settings = {key: (os.fspath(value) if isinstance(value, os.PathLike) else value)
                for key, value in vars(args).items()}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "results.json")
    with open(path, "w") as f:
        json.dump({"settings": settings, "environment": environment(), **record}, f, indent=2)
    return path


def write_report(result, out_dir, command=None):
    """Write ``table.md``, ``learning_curves.png`` and ``results.json`` (every number) into ``out_dir``.

    Parameters
    ----------
    result : BenchmarkResult or StreamingResult
        A streaming result gets :func:`summarize_streaming`'s table and
        :func:`plot_streaming_curves`'s plot.
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
    streaming = isinstance(result, StreamingResult)
    summary = summarize_streaming(result) if streaming else summarize(result)
    table = format_streaming_table(summary) if streaming else format_table(summary)
    paths = {name: os.path.join(out_dir, name) for name in ("table.md", "learning_curves.png", "results.json")}
    heading = f"{result.dataset_description}; network {result.config.network}, loss {result.config.loss}."
    with open(paths["table.md"], "w", encoding="utf-8") as handle:
        handle.write(heading + "\n\n" + (f"Command: `{command}`\n\n" if command else "") + table + "\n")
    (plot_streaming_curves if streaming else plot_learning_curves)(result, paths["learning_curves.png"])
    document = {"command": command, "environment": environment(), "summary": summary, **result.to_dict()}
    with open(paths["results.json"], "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    return {"summary": summary, "table": table, "table_path": paths["table.md"],
            "plot_path": paths["learning_curves.png"], "json_path": paths["results.json"]}
