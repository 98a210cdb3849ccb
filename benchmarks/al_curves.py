"""Active-learning curves of every strategy in the papers' protocol, part by part, and the page that shows them.

Parts (``--parts``, comma-separated; each runs once per requested dataset,
network and loss, except ``hard``, which is hard10 with the MLP):

- ``proportional``: the papers' proportions (initial set and batch each 2 %
  of the pool, 10 rounds), warm-started retraining, every strategy choosing
  among the same 4 x batch random candidates per round (the ``proportional``
  preset of :mod:`sklearn_ntkal.bench.presets`);
- ``whole_pool``: the same, every strategy choosing from the whole pool;
- ``imbalanced``: the same, on a long-tailed pool (class ratio ``--imbalance``,
  default 10) with a balanced test set;
- ``hard``: the same on ``hard10``, where accuracy stays under 50 % through
  the whole budget (the cold-start regime of a real project);
- ``streaming``: labels one at a time, the network retrained every R = 2 % of
  the pool (warm start), the linearised model updated by ``partial_fit`` in
  between; margin on the stale network, margin on the streaming linearised
  model and sequential look-ahead with true labels at equal labels and retrains
  (:func:`sklearn_ntkal.bench.run_streaming`; its linearised model is scored
  after every ``--eval-every`` labels);
- ``cold_start``: the ``paper`` preset (20 initial labels, 10 rounds of 20,
  retrained from scratch, whole pool), not run unless asked for.

Seeds: 10 on digits and 5 elsewhere unless ``--seeds``. Every part trains all
its strategies at one loss (``--losses``, default mse; cross-entropy parts
are separate parts). Each part writes ``table.md``, ``learning_curves.png``
and ``results.json`` (every number, the command and the environment) in its
folder ``<part>_<dataset>_<network>_<loss>`` under ``--out``, and
``al_curves.md`` is rebuilt from every finished part there, with the
command that made each one.

    python benchmarks/al_curves.py                                  # every default part, writes docs/results/
    python benchmarks/al_curves.py --parts proportional --datasets digits --networks mlp
    python benchmarks/al_curves.py --quick                          # smoke test in a few minutes
"""

import argparse
import dataclasses
import json
import os
import shlex
import sys

from sklearn_ntkal.bench import (PRESETS, BenchmarkConfig, BenchmarkResult, StreamingConfig, StreamingResult,
                                 format_streaming_table, format_table, run_benchmark, run_streaming, summarize,
                                 summarize_streaming, write_report)
from sklearn_ntkal.bench.report import REFERENCES, verdict
from sklearn_ntkal.bench.presets import PROTOCOL_STRATEGIES
from sklearn_ntkal.bench.streaming import REFERENCE as STREAMING_REFERENCE

DATASETS = ("digits", "mnist5k")
NETWORKS = ("mlp", "cnn")
LOSSES = ("mse", "cross_entropy")
HARD = ("hard10", "mlp")
QUICK_STRATEGIES = ("random", "margin", "ntk_lookahead", "ntk_lookahead_seq_oracle", "dynamical")


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of the protocol: its title, what it is, and how its configuration is built.

    Attributes
    ----------
    title, description : str
    config_type : type
        :class:`~sklearn_ntkal.bench.BenchmarkConfig` or :class:`~sklearn_ntkal.bench.StreamingConfig`.
    settings : dict
        Fields of the configuration before the dataset, network, loss and seeds are set.
    default : bool
        Run when ``--parts`` is not given.
    """

    title: str
    description: str
    config_type: type
    settings: dict
    default: bool = True


PARTS = {
    "proportional": Part(
        "Papers' proportions, shared candidates",
        "Initial set and batch each 2 % of the pool, 10 rounds, warm-started retraining (fresh optimiser, the "
        "same epochs every round), every strategy choosing among the same 4 x batch random unlabelled rows per "
        "round (the look-ahead paper's 4000 candidates for batches of 1000).",
        BenchmarkConfig, PRESETS["proportional"]),
    "whole_pool": Part(
        "Papers' proportions, whole pool",
        "As the proportional part, every strategy choosing from the whole unlabelled pool.",
        BenchmarkConfig, {**PRESETS["proportional"], "candidate_factor": None}),
    "imbalanced": Part(
        "Papers' proportions, imbalanced pool",
        "As the proportional part, on a pool subsampled to a long-tailed class profile (class order drawn from "
        "the seed, like dynamicAL's imbalanced CIFAR-10), with a test set of equal class counts.",
        BenchmarkConfig, PRESETS["proportional"]),
    "hard": Part(
        "Hard problem, papers' proportions",
        "As the proportional part, on hard10 (10 classes, 4 informative features of 20, low class separation, "
        "10 % flipped labels), where accuracy stays under 50 % through the whole budget: the cold start of a real "
        "project, where uncertainty-driven picks are known to lose to random.",
        BenchmarkConfig, PRESETS["proportional"]),
    "streaming": Part(
        "Streaming",
        "Labels arrive one at a time; the network is retrained (warm start) every R labels, R the proportional "
        "batch (2 % of the pool), and between retrains the linearised model around it takes each new label by "
        "partial_fit. margin_network picks the R smallest margins of the network at each retrain; "
        "margin_linearized picks one at a time by the margin of the updated linearised model; lookahead_oracle "
        "is sequential NTK look-ahead with the true label of each pick, R picks at each retrain. All see equal "
        "labels and equal retrains and choose among the same 4 x R candidates per retrain.",
        StreamingConfig, {}),
    "cold_start": Part(
        "Cold start (the `paper` preset)",
        "20 initial labels, 10 rounds of 20, the network retrained from scratch every round, the whole pool as "
        "candidates.",
        BenchmarkConfig, PRESETS["paper"], default=False),
}
QUICK_PARTS = ("proportional", "hard", "streaming")


def parse_args(argv):
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=None,
                        help=f"comma-separated parts among {', '.join(PARTS)} (default: all but cold_start; "
                             f"with --quick: {','.join(QUICK_PARTS)})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: digits and MLP (hard10 for the hard part), 2 seeds, 2 rounds, 20 epochs, "
                             f"400 samples, strategies {','.join(QUICK_STRATEGIES)}")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default digits,mnist5k)")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated (default mlp,cnn)")
    parser.add_argument("--losses", "--loss", default="mse",
                        help="comma-separated training losses, one part each (default mse, the look-ahead paper's)")
    parser.add_argument("--strategies", default=None,
                        help="comma-separated strategies of the non-streaming parts (default: the protocol's, "
                             f"{','.join(PROTOCOL_STRATEGIES)})")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 10 on digits, 5 elsewhere)")
    parser.add_argument("--imbalance", type=float, default=10.0,
                        help="class ratio of the imbalanced part (default 10)")
    parser.add_argument("--eval-every", type=int, default=1, dest="eval_every",
                        help="score the streaming part's linearised model after every N labels (default 1)")
    parser.add_argument("--n-jobs", type=int, default=None, dest="n_jobs",
                        help="joblib worker processes over the (seed, strategy) runs of a part (default 1)")
    parser.add_argument("--out", default=None,
                        help="output folder (default docs/results, or results/al_curves with --quick)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--page-only", action="store_true",
                        help="run nothing; rewrite al_curves.md from the parts already in the output folder")
    args = parser.parse_args(argv)
    if args.parts is None:
        args.parts = ",".join(QUICK_PARTS if args.quick else (name for name, part in PARTS.items() if part.default))
    unknown = [name for name in args.parts.split(",") if name not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; valid parts are: {', '.join(PARTS)}")
    return args


def part_settings(part, args):
    """``(dataset, network, loss)`` triples of a part."""
    if part == "hard":
        grid = [HARD]
    elif args.quick:
        grid = [("digits", "mlp")]
    else:
        grid = [(dataset, network) for dataset in args.datasets.split(",") for network in args.networks.split(",")]
    return [(dataset, network, loss) for dataset, network in grid for loss in args.losses.split(",")]


def configs(args):
    """``(part, folder name, config)`` of every part to run."""
    jobs = []
    for part in args.parts.split(","):
        for dataset, network, loss in part_settings(part, args):
            fields = {"dataset": dataset, "network": network, "loss": loss,
                      "seeds": tuple(range(args.seeds or (10 if dataset == "digits" else 5)))}
            if part == "imbalanced":
                fields["imbalance"] = args.imbalance
            if part == "streaming":
                fields["eval_every"] = args.eval_every
            if args.strategies and part != "streaming":
                fields["strategies"] = tuple(args.strategies.split(","))
            if args.quick:
                fields.update(seeds=(0, 1), n_rounds=2, epochs=20, max_samples=400)
                if part != "streaming":
                    fields["strategies"] = QUICK_STRATEGIES
            config = PARTS[part].config_type(**{**PARTS[part].settings, **fields})
            jobs.append((part, f"{part}_{dataset}_{network}_{loss}", config))
    return jobs


def part_of(document):
    """The part a finished result belongs to, read from its configuration."""
    config = document["config"]
    if document.get("kind") == "streaming":
        return "streaming"
    if config["dataset"] == HARD[0]:
        return "hard"
    if config.get("imbalance"):
        return "imbalanced"
    if not config.get("warm_start"):
        return "cold_start"
    return "whole_pool" if config.get("candidate_factor") is None else "proportional"


def load_sections(out):
    """``(folder, document)`` of every finished part under ``out``, by part, dataset, network and loss."""
    def rank(item):
        config = item[1]["config"]
        return (list(PARTS).index(part_of(item[1])),) + tuple(
            order.index(name) if name in order else len(order)
            for name, order in ((config["dataset"], DATASETS), (config["network"], NETWORKS),
                                (config["loss"], LOSSES))) + (item[0],)

    sections = []
    for folder in os.listdir(out):
        path = os.path.join(out, folder, "results.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                sections.append((folder, json.load(handle)))
    return sorted(sections, key=rank)


def verdict_lines(summary, references, keys):
    """Lines saying which strategies are above and which below each reference, by the 95 % interval of the difference.

    Parameters
    ----------
    summary : list of dict
    references : sequence of str
        References present in the summary.
    keys : sequence of (str, str)
        ``(summary key prefix, what it measures)``, e.g. ``("aubc", "AUBC")``.
    """
    lines = []
    for reference in references:
        for key, what in keys:
            groups = {"above": [], "below": []}
            for row in summary:
                found = verdict(row[f"{key}_vs_{reference}_ci"])
                if row["strategy"] != reference and found in groups:
                    groups[found].append(f"`{row['strategy']}`")
            lines.append(f"- {what} against `{reference}`: above (95 % interval above 0): "
                         f"{', '.join(groups['above']) or 'none'}; significantly below: "
                         f"{', '.join(groups['below']) or 'none'}.")
    return lines


def describe(document):
    """One sentence of the settings of a finished part."""
    config, budget = document["config"], document.get("budget") or {}
    initial, batch = budget.get("initial_size", config["initial_size"]), budget.get("batch_size", config["batch_size"])
    candidates = ("the whole pool" if config.get("candidate_factor") is None
                  else f"{config['candidate_factor']} x batch shared candidates")
    text = (f"{len(config['seeds'])} seeds, {initial} initial labels, {config['n_rounds']} "
            + ("retrains every" if document.get("kind") == "streaming" else "rounds of") + f" {batch}"
            + (f" (pool {budget['pool_size']})" if "pool_size" in budget else "")
            + f", loss {config['loss']}, {config['epochs']} epochs per round, "
            + ("warm start" if config.get("warm_start") else "retrained from scratch") + f", {candidates}"
            + (f", class ratio {config['imbalance']:g}" if config.get("imbalance") else "")
            + (f", {config['max_samples']} samples" if config["max_samples"] else "") + ".")
    if document.get("kind") == "streaming":
        text += f" Linearised model scored after every {config['eval_every']} label(s) and before each retrain."
    return text


def missing_line(part, done):
    """``Not run yet: ...`` for the (dataset, network) pairs of a part at loss mse without a finished result."""
    grid = [HARD] if part == "hard" else [(dataset, network) for dataset in DATASETS for network in NETWORKS]
    missing = [(dataset, network) for dataset, network in grid if (part, dataset, network, "mse") not in done]
    if not missing:
        return []
    return ["", "Not run yet: " + ", ".join(
        f"{dataset} · {network} (`python benchmarks/al_curves.py --parts {part}"
        + ("" if part == "hard" else f" --datasets {dataset} --networks {network}") + "`)"
        for dataset, network in missing) + "."]


def section(folder, document):
    """The Markdown of one finished part: settings, command, table, verdicts and plot.

    The table is recomputed from the runs, so parts written by an earlier version read the same way.
    """
    config, env = document["config"], document["environment"]
    streaming = document.get("kind") == "streaming"
    if streaming:
        summary = summarize_streaming(StreamingResult.from_dict(document))
        table = format_streaming_table(summary)
        references = [STREAMING_REFERENCE] if f"aubc_vs_{STREAMING_REFERENCE}" in summary[0] else []
        keys = (("aubc", "Network AUBC"), ("linear_aubc", "Linearised-model AUBC"))
    else:
        summary = summarize(BenchmarkResult.from_dict(document))
        table = format_table(summary)
        references = [ref for ref in REFERENCES if f"aubc_vs_{ref}" in summary[0]]
        keys = (("aubc", "AUBC"), ("final", "Final accuracy"))
    return [
        "",
        f"### {config['dataset']} · {config['network']} · {config['loss']}",
        "",
        describe(document) + f" Measured on {', '.join(env['devices'])} ({env['cpu_count']} CPU cores), "
        f"jax {env['jax']}, Python {env['python']}, with",
        "",
        f"    {document['command']}",
        "",
        table,
        "",
        *verdict_lines(summary, references, keys),
        "",
        f"![learning curves, {config['dataset']}, {config['network']}, {config['loss']}]({folder}/learning_curves.png)",
    ]


def page(sections):
    """The Markdown page of every finished part, each with its table, verdicts, plot and command."""
    quick = any(document["config"]["n_rounds"] < PRESETS["paper"]["n_rounds"] for _, document in sections)
    lines = ["# Active-learning curves", "", "Generated by `benchmarks/al_curves.py`; do not edit by hand."]
    if quick:
        lines += [
            "",
            "!!! warning \"Smoke test\"",
            "    Some figures come from the `--quick` mode (digits, MLP, 2 seeds, 2 rounds), which checks that",
            "    everything runs; they say little about which strategy is better. Run the script without",
            "    `--quick` for the full comparison.",
        ]
    lines += [
        "",
        "AUBC is the area under the learning curve (test accuracy against labels used, trapezoid rule, divided "
        "by the budget range); AUBC and final accuracy are mean ± sample standard deviation over seeds. "
        "Differences to a reference strategy are paired by seed (same split, initial set, initialisation and "
        "candidates): the mean, its 95 % Student-t confidence interval over seeds in brackets and, for AUBC, the "
        "seeds on which the strategy is ahead. A strategy is above (below) a reference when the whole interval is "
        "above (below) 0. Query and training times are seconds per round; training time includes compiling the "
        "network.",
    ]
    done = {(part_of(document), document["config"]["dataset"], document["config"]["network"],
             document["config"]["loss"]) for _, document in sections}
    present = {part_of(document) for _, document in sections}
    for name, part in PARTS.items():
        if not part.default and name not in present:
            continue
        lines += ["", f"## {part.title}", "", part.description, *missing_line(name, done)]
        for folder, document in sections:
            if part_of(document) == name:
                lines += section(folder, document)
    return "\n".join(lines) + "\n"


def write_page(out):
    """Write ``al_curves.md`` in ``out`` from every finished part there."""
    with open(os.path.join(out, "al_curves.md"), "w", encoding="utf-8") as handle:
        handle.write(page(load_sections(out)))


def main(argv=None):
    """Run every requested part, print its table, and write the tables, plots, JSON and results page.

    The page covers every finished part in the output folder, so parts run
    by separate commands add up to one page. Each part appends its finished
    runs to ``runs.jsonl`` in its folder, so the same command resumes an
    interrupted part; the file is removed once the part's report is written.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    out = args.out or (os.path.join("results", "al_curves") if args.quick else os.path.join("docs", "results"))
    command = ("python benchmarks/al_curves.py " + shlex.join(argv)).rstrip()
    jobs = [] if args.page_only else configs(args)
    for _, _, config in jobs:
        config.validate()
    for part, name, config in jobs:
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        checkpoint = os.path.join(folder, "runs.jsonl")
        runner = run_streaming if part == "streaming" else run_benchmark
        result = runner(config, progress=not args.no_progress, checkpoint=checkpoint, n_jobs=args.n_jobs)
        paths = write_report(result, folder, command=command)
        os.remove(checkpoint)
        print(f"\n## {PARTS[part].title}: {config.dataset} · {config.network} · {config.loss}\n\n{paths['table']}")
        write_page(out)
    if args.page_only:
        write_page(out)
    print(f"\nwrote {os.path.join(out, 'al_curves.md')} and one folder per part under {out}")


if __name__ == "__main__":
    main()
