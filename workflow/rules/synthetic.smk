# arXiv:2502.08231: large-scale synthetic dispersion, the regime sweep, and the reviewers'
# questions (how many slices, full-batch vs minibatch, Riemannian vs Euclidean at scale).


rule synthetic_run:
    output:
        summary=os.path.join(synthetic_paths.run_dir(), "summary.json"),
        metrics=os.path.join(synthetic_paths.run_dir(), "metrics.jsonl"),
    log:
        paths.log("synthetic", "{study}", "{cell}_{method}_seed{seed}.log"),
    conda:
        "../envs/dispersion.yml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(
            SYNTHETIC_SPECS[(w.study, w.cell, w.method, int(w.seed))]
        ),
        out=lambda w, output: os.path.dirname(output.summary),
    shell:
        "{params.cli} synthetic-run --spec {params.spec:q} --out {params.out} "
        "--no-progress > {log} 2>&1"


rule synthetic_aggregate:
    input:
        synthetic_paths.summaries,
    output:
        runs=paths.res("synthetic", "{study}", "runs.csv"),
        curves=paths.res("synthetic", "{study}", "curves.csv"),
    log:
        paths.log("synthetic", "{study}", "aggregate.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
    shell:
        "{params.cli} synthetic-aggregate --summaries {input} "
        "--runs-csv {output.runs} --curves-csv {output.curves} > {log} 2>&1"


rule synthetic_report_main:
    input:
        runs=paths.res("synthetic", "main", "runs.csv"),
        curves=paths.res("synthetic", "main", "curves.csv"),
    output:
        md=report(
            paths.table("synthetic_final")["md"],
            caption="../report/synthetic_tables.rst",
            category="Synthetic",
        ),
        tex=paths.table("synthetic_final")["tex"],
        speed_md=report(
            paths.res("tables", "synthetic_speed.md"),
            caption="../report/synthetic_tables.rst",
            category="Synthetic",
        ),
        speed_tex=paths.res("tables", "synthetic_speed.tex"),
        figure=report(
            multiext(paths.fig("synthetic_curves"), ".pdf", ".png"),
            caption="../report/synthetic_curves.rst",
            category="Synthetic",
        ),
    log:
        paths.log("synthetic", "main", "report.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        tables=lambda w, output: [output.md[:-3], output.speed_md[:-3]],
        figure=lambda w, output: output.figure[0][:-4],
    shell:
        "{params.cli} synthetic-report --study main --runs-csv {input.runs} "
        "--curves-csv {input.curves} --tables {params.tables} --figures {params.figure} "
        "> {log} 2>&1"


rule synthetic_report_figure_study:
    input:
        runs=paths.res("synthetic", "{study}", "runs.csv"),
        curves=paths.res("synthetic", "{study}", "curves.csv"),
    output:
        md=report(
            paths.res("tables", "synthetic_{study}.md"),
            caption="../report/synthetic_tables.rst",
            category="Synthetic",
        ),
        tex=paths.res("tables", "synthetic_{study}.tex"),
        figure=report(
            multiext(paths.fig("synthetic_{study}"), ".pdf", ".png"),
            caption="../report/synthetic_study.rst",
            category="Synthetic",
        ),
    log:
        paths.log("synthetic", "{study}", "report.log"),
    wildcard_constraints:
        study="regimes|slices",
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        table=lambda w, output: output.md[:-3],
        figure=lambda w, output: output.figure[0][:-4],
    shell:
        "{params.cli} synthetic-report --study {wildcards.study} --runs-csv {input.runs} "
        "--curves-csv {input.curves} --tables {params.table} --figures {params.figure} "
        "> {log} 2>&1"


rule synthetic_report_table_study:
    input:
        runs=paths.res("synthetic", "{study}", "runs.csv"),
        curves=paths.res("synthetic", "{study}", "curves.csv"),
    output:
        md=report(
            paths.res("tables", "synthetic_{study}.md"),
            caption="../report/synthetic_tables.rst",
            category="Synthetic",
        ),
        tex=paths.res("tables", "synthetic_{study}.tex"),
    log:
        paths.log("synthetic", "{study}", "report.log"),
    wildcard_constraints:
        study="fullbatch|optimizers",
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        table=lambda w, output: output.md[:-3],
    shell:
        "{params.cli} synthetic-report --study {wildcards.study} --runs-csv {input.runs} "
        "--curves-csv {input.curves} --tables {params.table} > {log} 2>&1"
