# Issue 13: audit real embedding tables (MiniLM sentence embeddings, GloVe, the text LM's
# tables) against i.i.d. uniform points, and the post-hoc dispersion study on one of them.
# One run per table / post-hoc run; one table per audit, one table + figure for the study.
# Spec builders and paths: dispersion.pipeline.audit (imported in common.smk).
AUDIT_WILDCARDS = {
    "table": "[A-Za-z0-9_]+",
    "method": "[A-Za-z0-9_]+",
    "fidelity": "[a-z_]+",
    "seed": "[0-9]+",
}


rule audit_embed:
    output:
        audit_paths.embedding(),
    log:
        paths.log("audit", "embed_{table}.log"),
    wildcard_constraints:
        table=AUDIT_WILDCARDS["table"],
    conda:
        "../envs/dispersion.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(audit_embed_spec(config, w.table)),
    shell:
        "{params.cli} audit-embed --spec {params.spec:q} --out {output} "
        "--threads {threads} --no-progress > {log} 2>&1"


rule audit_run:
    input:
        lambda w: audit_paths.run_input(w.table),
    output:
        summary=os.path.join(audit_paths.run_dir(), "summary.json"),
        report=os.path.join(audit_paths.run_dir(), "audit.md"),
        figures=report(
            audit_paths.figures(),
            caption="../report/audit_table.rst",
            category="Audit",
        ),
    log:
        paths.log("audit", "run_{table}.log"),
    wildcard_constraints:
        table=AUDIT_WILDCARDS["table"],
    conda:
        "../envs/dispersion.yml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(audit_spec(config, w.table)),
        out=lambda w, output: os.path.dirname(output.summary),
        figures=lambda w: audit_paths.figure_prefix(w.table),
    shell:
        "{params.cli} audit-run --spec {params.spec:q} --out {params.out} "
        "--figures {params.figures} --threads {threads} --no-progress > {log} 2>&1"


rule audit_table:
    input:
        os.path.join(audit_paths.run_dir(), "summary.json"),
    output:
        md=report(
            audit_paths.audit_table()["md"],
            caption="../report/audit_table.rst",
            category="Audit",
        ),
        tex=audit_paths.audit_table()["tex"],
    log:
        paths.log("audit", "table_{table}.log"),
    wildcard_constraints:
        table=AUDIT_WILDCARDS["table"],
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        scale=scale_name(config),
    shell:
        "{params.cli} audit-table --summary {input} --md {output.md} --tex {output.tex} "
        "--scale {params.scale:q} > {log} 2>&1"


rule audit_posthoc_run:
    input:
        audit_paths.posthoc_input(),
    output:
        summary=os.path.join(audit_paths.posthoc_run_dir(), "summary.json"),
        metrics=os.path.join(audit_paths.posthoc_run_dir(), "metrics.jsonl"),
    log:
        paths.log("audit", "posthoc_{method}_{fidelity}_seed{seed}.log"),
    wildcard_constraints:
        method=AUDIT_WILDCARDS["method"],
        fidelity=AUDIT_WILDCARDS["fidelity"],
        seed=AUDIT_WILDCARDS["seed"],
    conda:
        "../envs/dispersion.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(
            audit_posthoc_spec(config, w.method, w.fidelity, w.seed)
        ),
        out=lambda w, output: os.path.dirname(output.summary),
    shell:
        "{params.cli} audit-run --spec {params.spec:q} --out {params.out} "
        "--threads {threads} --no-progress > {log} 2>&1"


rule audit_posthoc_report:
    input:
        audit_paths.posthoc_summaries,
    output:
        csv=audit_paths.posthoc_outputs()["csv"],
        md=report(
            audit_paths.posthoc_outputs()["md"],
            caption="../report/audit_posthoc.rst",
            category="Audit",
        ),
        tex=audit_paths.posthoc_outputs()["tex"],
        figure=report(
            audit_paths.posthoc_outputs()["figure"],
            caption="../report/audit_posthoc.rst",
            category="Audit",
        ),
    log:
        paths.log("audit", "posthoc_report.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        scale=scale_name(config),
        figure=lambda w, output: output.figure[0][:-4],
    shell:
        "{params.cli} audit-posthoc-report --summaries {input} --runs-csv {output.csv} "
        "--md {output.md} --tex {output.tex} --figure {params.figure} "
        "--scale {params.scale:q} > {log} 2>&1"
