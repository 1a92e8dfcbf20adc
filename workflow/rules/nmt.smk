# The NMT experiment of arXiv:2502.08231 (machine translation, its Table 3) at cpu scale:
# Multi30k en->de, one joint subword table tied across the encoder input, the decoder input and
# the output projection, on the sphere (or Euclidean), trained with CE + lambda R(E); methods x
# seeds at the paper's lambda and a lambda sweep of one method. The tokenised corpus is built
# once, under nmt.cache_dir.
NMT_WILDCARDS = {"method": "[A-Za-z0-9_]+", "seed": "[0-9]+"}


rule nmt_corpus:
    output:
        nmt_paths.corpus(),
    log:
        paths.log("nmt", "corpus.log"),
    conda:
        "../envs/dispersion.yml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(nmt_corpus_spec(config)),
    shell:
        "{params.cli} nmt-corpus --spec {params.spec:q} --out {output} > {log} 2>&1"


rule nmt_run:
    input:
        corpus=nmt_paths.corpus(),
    output:
        **nmt_paths.run_outputs(),
    log:
        paths.log("nmt", "{method}_seed{seed}.log"),
    wildcard_constraints:
        **NMT_WILDCARDS,
    conda:
        "../envs/dispersion.yml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(nmt_spec(config, w.method)),
        out=lambda w, output: os.path.dirname(output.summary),
    shell:
        "{params.cli} nmt-run --spec {params.spec:q} --corpus {input.corpus} "
        "--out {params.out} --seed {wildcards.seed} --threads {threads} --no-progress > {log} 2>&1"


rule nmt_report:
    input:
        nmt_paths.summaries,
    output:
        csv=nmt_paths.report_outputs()["csv"],
        tables=report(
            nmt_paths.report_outputs()["tables"],
            caption="../report/nmt_tables.rst",
            category="Machine translation",
        ),
        figures=report(
            nmt_paths.report_outputs()["figures"],
            caption="../report/nmt_figures.rst",
            category="Machine translation",
        ),
    log:
        paths.log("nmt", "report.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        tables=lambda w, output: os.path.dirname(output.tables[0]),
        figures=lambda w, output: os.path.dirname(output.figures[0]),
    shell:
        "{params.cli} nmt-report --summaries {input} --runs-csv {output.csv} "
        "--tables-dir {params.tables} --figures-dir {params.figures} > {log} 2>&1"
