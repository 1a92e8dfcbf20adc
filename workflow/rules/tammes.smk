# arXiv:2502.08231: the Tammes problem and the other cases with a known optimum.


rule tammes_run:
    output:
        summary=os.path.join(tammes_paths.run_dir(), "summary.json"),
        metrics=os.path.join(tammes_paths.run_dir(), "metrics.jsonl"),
    log:
        paths.log("tammes", "{case}_{method}_{optimizer}_seed{seed}.log"),
    conda:
        "../envs/dispersion.yml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(
            tammes_spec(config, w.case, w.method, w.optimizer, w.seed)
        ),
        out=lambda w, output: os.path.dirname(output.summary),
    shell:
        "{params.cli} tammes-run --spec {params.spec:q} --out {params.out} "
        "--no-progress > {log} 2>&1"


rule tammes_aggregate:
    input:
        tammes_paths.summaries,
    output:
        runs=paths.res("tammes", "runs.csv"),
        points=paths.res("tammes", "nn_angles.csv"),
    log:
        paths.log("tammes", "aggregate.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
    shell:
        "{params.cli} tammes-aggregate --summaries {input} "
        "--runs-csv {output.runs} --points-csv {output.points} > {log} 2>&1"


rule tammes_table:
    input:
        runs=paths.res("tammes", "runs.csv"),
    output:
        md=report(
            paths.table("tammes")["md"],
            caption="../report/tammes_table.rst",
            category="Tammes",
        ),
        tex=paths.table("tammes")["tex"],
    log:
        paths.log("tammes", "table.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
    shell:
        "{params.cli} tammes-table --runs-csv {input.runs} "
        "--md {output.md} --tex {output.tex} > {log} 2>&1"


rule tammes_figures:
    input:
        runs=paths.res("tammes", "runs.csv"),
        points=paths.res("tammes", "nn_angles.csv"),
    output:
        report(
            multiext(paths.fig("tammes_boxplot"), ".pdf", ".png"),
            caption="../report/tammes_boxplot.rst",
            category="Tammes",
        ),
        report(
            multiext(paths.fig("tammes_riemannian_vs_euclidean"), ".pdf", ".png"),
            caption="../report/tammes_optimizers.rst",
            category="Tammes",
        ),
    log:
        paths.log("tammes", "figures.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        case=config["tammes"].get("figure_case", ""),
        boxplot=lambda w, output: os.path.splitext(output[0])[0],
        optimizers=lambda w, output: os.path.splitext(output[2])[0],
    shell:
        "{params.cli} tammes-figures --runs-csv {input.runs} --points-csv {input.points} "
        "--case {params.case} --boxplot {params.boxplot} "
        "--optimizers {params.optimizers} > {log} 2>&1"
