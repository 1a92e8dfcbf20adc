# arXiv:2502.08231: image classification with hyperspherical prototypes placed by each method.
# One run per (dataset, dim, method, seed); one report job per dataset (CSV, tables, figures).


wildcard_constraints:
    dataset="[a-z0-9_]+",
    dim="[0-9]+",
    seed="[0-9]+",


rule image_run:
    input:
        # a <variant>_matched run reads the class layout of the softmax run of its D and seed
        layout=lambda w: (
            os.path.join(image_paths.layout_run(**w), "summary.json")
            if image_paths.layout_run(**w)
            else []
        ),
    output:
        summary=os.path.join(image_paths.run_dir(), "summary.json"),
        metrics=os.path.join(image_paths.run_dir(), "metrics.jsonl"),
    log:
        paths.log("image", "{dataset}_d{dim}_{method}_seed{seed}.log"),
    conda:
        "../envs/dispersion.yml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=720,
    params:
        cli=DISPERSION,
        spec=lambda w: spec_json(run_spec(config, w.dataset, w.dim, w.method)),
        out=lambda w, output: os.path.dirname(output.summary),
        layout=lambda w, input: (
            f"--class-means {os.path.join(os.path.dirname(input.layout), 'class_means.pt')}"
            if input.layout
            else ""
        ),
    shell:
        "{params.cli} image-run --config {params.spec:q} --out {params.out} {params.layout} "
        "--seed {wildcards.seed} --threads {threads} --no-progress > {log} 2>&1"


rule image_report:
    input:
        lambda w: image_paths.summaries(w.dataset),
    output:
        runs=image_paths.runs_csv(),
        tables=report(
            multiext(
                image_paths.table_prefix(),
                *[f"{n}.{e}" for n in ImagePaths.TABLES for e in ("md", "tex")],
            ),
            caption="../report/image_tables.rst",
            category="Image classification",
        ),
        accuracy=report(
            multiext(image_paths.figure_prefix() + "accuracy_vs_dim", ".pdf", ".png"),
            caption="../report/image_accuracy.rst",
            category="Image classification",
        ),
        min_angle=report(
            multiext(
                image_paths.figure_prefix() + "min_angle_vs_accuracy", ".pdf", ".png"
            ),
            caption="../report/image_min_angle.rst",
            category="Image classification",
        ),
    log:
        paths.log("image", "{dataset}_report.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        table_prefix=lambda w: image_paths.table_prefix(w.dataset),
        figure_prefix=lambda w: image_paths.figure_prefix(w.dataset),
    shell:
        "{params.cli} image-report --dataset {wildcards.dataset} --summaries {input} "
        "--runs-csv {output.runs} --table-prefix {params.table_prefix} "
        "--figure-prefix {params.figure_prefix} > {log} 2>&1"


# Optional target (not in `all`): `snakemake image_imagenet200` once the HPN ImageNet-200
# folder is set as image.datasets.imagenet200.path; fails up front, saying where to get it.
rule image_imagenet200:
    input:
        lambda w: check_imagenet200(config)
        and image_paths.report_outputs("imagenet200"),
