"""Command line of the workflow: ``python -m dispersion <command> --help``.

Each Snakemake rule is one call of a command here; commands import their heavy modules lazily.

Errors: a wrong input — an option, a spec key, a parameter, a file that is missing, corrupted
or not writable — is reported in one line naming what was wrong and what was expected, with
exit status 2 (as argparse does for a bad option); a failure of the machine (a full disk, an
I/O error) in one line with exit status 1; a partial output is never left behind. No traceback in either case; set the environment
variable ``DISPERSION_TRACEBACK=1`` to get one. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import json
import os
import sys
import warnings

# geoopt and POT call torch.jit.script at import time; torch >= 2.10 warns about it on every run.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def cmd_methods(args) -> None:
    from . import METHODS, method_parameters

    for name in METHODS:
        print(f"{name:8s} {method_parameters(name)}")


def cmd_tammes_run(args) -> None:
    from .experiments import tammes

    spec = dict(args.spec)
    if args.device:
        spec["device"] = args.device
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


def cmd_paper(args) -> None:
    from .report import paper

    print(paper.build(args.tex, args.results, args.figures, args.status), end="")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (the usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m dispersion",
        description="Dispersion on the hypersphere: experiments, aggregation, tables and figures. "
        "Each Snakemake rule calls one of these commands.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")

    s = sub.add_parser("methods", help="list the dispersion methods and their parameters")
    s.set_defaults(func=cmd_methods)

    s = sub.add_parser("tammes-run", help="one Tammes optimisation (arXiv:2502.08231)",
                       description="Optimise N uniform random points on S^(d-1) with one method and write "
                       "metrics.jsonl and summary.json into --out.")
    s.add_argument("--spec", type=_json_arg, required=True,
                   help='JSON object: n, d, method, params, optimizer, steps, lr, seed [, device, log_every, case, variant, label]')
    s.add_argument("--out", required=True, help="run directory to write")
    s.add_argument("--device", default=None, help="override spec device: auto | cpu | cuda | cuda:N")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.set_defaults(func=cmd_tammes_run)

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

    s = sub.add_parser("paper", help="build paper/main.tex against the workflow's outputs (needs latexmk)",
                       description="Compile the LaTeX document with latexmk when it is installed; otherwise check "
                       "that every table and figure it includes exists and say that the PDF was skipped.")
    s.add_argument("--tex", default="paper/main.tex")
    s.add_argument("--results", required=True, help="results root (holds tables/)")
    s.add_argument("--figures", required=True, help="figures root")
    s.add_argument("--status", required=True, help="status file to write; the PDF goes beside it as main.pdf")
    s.set_defaults(func=cmd_paper)

    for module, hook in (("image", "add_image_commands"), ("text", "add_text_commands"),
                         ("synthetic", "add_synthetic_commands"), ("audit", "add_audit_commands")):
        if importlib.util.find_spec(f"dispersion.experiments.{module}") is None:
            continue
        mod = importlib.import_module(f"dispersion.experiments.{module}")
        if hasattr(mod, hook):
            getattr(mod, hook)(sub)
    from .table_commands import add_audit_command, add_disperse_command

    add_audit_command(sub)
    add_disperse_command(sub)
    return p


#: Exceptions that mean the input is wrong (exit status 2): bad values and types from the
#: library's checks, and input files that are missing or output paths that cannot be written.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:  # "cannot write X: No space left on device", no "[Errno 28]"
        text = e.strerror + (f": {e.filename}" if e.filename else "")
    else:
        text = str(e)
    return " ".join(text.split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    try:
        args.func(args)
    except USER_ERRORS as e:
        if os.environ.get("DISPERSION_TRACEBACK"):
            raise
        parser.exit(2, f"{prog}: error: {_one_line(e)}\n")
    except OSError as e:  # a read-only output is the input's fault; a full disk or I/O error the machine's
        if os.environ.get("DISPERSION_TRACEBACK"):
            raise
        parser.exit(2 if e.errno == errno.EROFS else 1, f"{prog}: error: {_one_line(e)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
