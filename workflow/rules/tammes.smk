# PAPER.md 4.1: the Tammes problem and the other cases with a known optimum.
from dispersion.workflow_helpers import spec_json, tammes_runs, tammes_spec

TAMMES = f"{RESULTS}/tammes"
TAMMES_RUN = TAMMES + "/runs/{case}/{method}/{optimizer}/seed{seed}"


def tammes_summaries(wildcards=None):
    return [
        (TAMMES_RUN + "/summary.json").format(**r) for r in tammes_runs(config)
    ]


def tammes_outputs():
    case = config["tammes"].get("figure_case")
    out = [
        f"{TABLES}/tammes.md",
        f"{TABLES}/tammes.tex",
    ]
    if case:
        out += expand(
            f"{FIGURES}/tammes_{{name}}.{{ext}}",
            name=["boxplot", "riemannian_vs_euclidean"],
            ext=["pdf", "png"],
        )
    return out


rule tammes_run:
    output:
        summary=TAMMES_RUN + "/summary.json",
        metrics=TAMMES_RUN + "/metrics.jsonl",
    params:
        spec=lambda w: spec_json(
            tammes_spec(config, w.case, w.method, w.optimizer, w.seed)
        ),
        out=lambda w, output: os.path.dirname(output.summary),
    log:
        f"{LOGS}/tammes/{{case}}_{{method}}_{{optimizer}}_seed{{seed}}.log",
    conda:
        "../envs/dispersion.yml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "{DISPERSION} tammes-run --spec {params.spec:q} --out {params.out} "
        "--no-progress > {log} 2>&1"


rule tammes_aggregate:
    input:
        tammes_summaries,
    output:
        runs=f"{TAMMES}/runs.csv",
        points=f"{TAMMES}/nn_angles.csv",
    log:
        f"{LOGS}/tammes/aggregate.log",
    conda:
        "../envs/dispersion.yml"
    shell:
        "{DISPERSION} tammes-aggregate --summaries {input} "
        "--runs-csv {output.runs} --points-csv {output.points} > {log} 2>&1"


rule tammes_table:
    input:
        runs=f"{TAMMES}/runs.csv",
    output:
        md=f"{TABLES}/tammes.md",
        tex=f"{TABLES}/tammes.tex",
    log:
        f"{LOGS}/tammes/table.log",
    conda:
        "../envs/dispersion.yml"
    shell:
        "{DISPERSION} tammes-table --runs-csv {input.runs} "
        "--md {output.md} --tex {output.tex} > {log} 2>&1"


rule tammes_figures:
    input:
        runs=f"{TAMMES}/runs.csv",
        points=f"{TAMMES}/nn_angles.csv",
    output:
        report(
            multiext(f"{FIGURES}/tammes_boxplot", ".pdf", ".png"),
            caption="../report/tammes_boxplot.rst",
            category="Tammes",
        ),
        report(
            multiext(f"{FIGURES}/tammes_riemannian_vs_euclidean", ".pdf", ".png"),
            caption="../report/tammes_optimizers.rst",
            category="Tammes",
        ),
    params:
        case=config["tammes"].get("figure_case", ""),
    log:
        f"{LOGS}/tammes/figures.log",
    conda:
        "../envs/dispersion.yml"
    shell:
        "{DISPERSION} tammes-figures --runs-csv {input.runs} --points-csv {input.points} "
        "--case {params.case} --boxplot {FIGURES}/tammes_boxplot "
        "--optimizers {FIGURES}/tammes_riemannian_vs_euclidean > {log} 2>&1"
