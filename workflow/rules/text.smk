# Issue 6 (after the NMT experiment of arXiv:2502.08231): text. Few classes: sentence classification on frozen MiniLM
# features with prototypes placed by each method (or a softmax head); many classes: a small
# language model whose tied embedding table lives on the sphere, trained with CE + 10 R(E).
# Frozen features and the tokenised corpus are computed once, under text.cache_dir.
TEXT_WILDCARDS = {
    "dataset": "[a-z0-9_]+",
    "dim": "[0-9]+",
    "method": "[A-Za-z0-9_]+",
    "seed": "[0-9]+",
}


rule text_features:
    output:
        text_paths.features(),
    log:
        paths.log("text", "features_{dataset}.log"),
    wildcard_constraints:
        dataset=TEXT_WILDCARDS["dataset"],
    conda:
        "../envs/dispersion.yml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(features_spec(config, w.dataset)),
    shell:
        "{params.cli} text-features --spec {params.spec:q} --out {output} "
        "--threads {threads} --no-progress > {log} 2>&1"


rule text_classify:
    input:
        features=text_paths.features(),
    output:
        summary=os.path.join(text_paths.classify_run_dir(), "summary.json"),
        metrics=os.path.join(text_paths.classify_run_dir(), "metrics.jsonl"),
    log:
        paths.log("text", "classify_{dataset}_d{dim}_{method}_seed{seed}.log"),
    wildcard_constraints:
        **TEXT_WILDCARDS,
    conda:
        "../envs/dispersion.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(classify_spec(config, w.dataset, w.dim, w.method)),
        out=lambda w, output: os.path.dirname(output.summary),
    shell:
        "{params.cli} text-classify --spec {params.spec:q} --features {input.features} "
        "--out {params.out} --seed {wildcards.seed} --threads {threads} --no-progress > {log} 2>&1"


rule text_corpus:
    output:
        text_paths.corpus(),
    log:
        paths.log("text", "corpus.log"),
    conda:
        "../envs/dispersion.yml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(corpus_spec(config)),
    shell:
        "{params.cli} text-corpus --spec {params.spec:q} --out {output} > {log} 2>&1"


rule text_lm:
    input:
        corpus=text_paths.corpus(),
    output:
        **text_paths.lm_outputs(),
    log:
        paths.log("text", "lm_{method}_seed{seed}.log"),
    wildcard_constraints:
        method=TEXT_WILDCARDS["method"],
        seed=TEXT_WILDCARDS["seed"],
    conda:
        "../envs/dispersion.yml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=600,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(lm_spec(config, w.method)),
        out=lambda w, output: os.path.dirname(output.summary),
        table="" if "embedding" in text_paths.lm_outputs() else "--no-embedding",
    shell:
        "{params.cli} text-lm --spec {params.spec:q} --corpus {input.corpus} "
        "--out {params.out} --seed {wildcards.seed} --threads {threads} --no-progress {params.table} > {log} 2>&1"


rule text_classify_report:
    input:
        text_paths.classify_summaries,
    output:
        csv=text_paths.report_outputs("classify")["csv"],
        tables=report(
            text_paths.report_outputs("classify")["tables"],
            caption="../report/text_classify_tables.rst",
            category="Text classification",
        ),
        figures=report(
            text_paths.report_outputs("classify")["figures"],
            caption="../report/text_classify_accuracy.rst",
            category="Text classification",
        ),
    log:
        paths.log("text", "classify_report.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        results=lambda w, output: os.path.dirname(output.csv),
        tables=lambda w, output: os.path.dirname(output.tables[0]),
        figures=lambda w, output: os.path.dirname(output.figures[0]),
    shell:
        "{params.cli} text-report --classify {input} --results-dir {params.results} "
        "--tables-dir {params.tables} --figures-dir {params.figures} > {log} 2>&1"


rule text_lm_report:
    input:
        text_paths.lm_summaries,
    output:
        csv=text_paths.report_outputs("lm")["csv"],
        tables=report(
            text_paths.report_outputs("lm")["tables"],
            caption="../report/text_lm_table.rst",
            category="Text language model",
        ),
        figures=report(
            text_paths.report_outputs("lm")["figures"],
            caption="../report/text_lm_geometry.rst",
            category="Text language model",
        ),
    log:
        paths.log("text", "lm_report.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        results=lambda w, output: os.path.dirname(output.csv),
        tables=lambda w, output: os.path.dirname(output.tables[0]),
        figures=lambda w, output: os.path.dirname(output.figures[0]),
    shell:
        "{params.cli} text-report --lm {input} --results-dir {params.results} "
        "--tables-dir {params.tables} --figures-dir {params.figures} > {log} 2>&1"
