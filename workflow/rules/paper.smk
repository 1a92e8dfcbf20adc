# The LaTeX document of the reproduced results (paper/main.tex), built from the outputs already
# there, without running any experiment: each study of the document is drawn from the first
# output root that holds all of its tables, figures and CSVs (this config's results_dir and
# figures_dir, then, at paper scale, the committed cpu scale under cpu/, which no rule of this
# workflow writes). The numbers of its prose are generated into numbers.tex beside the PDF.
# Without latexmk the rule checks the files and writes that it skipped the PDF.
from dispersion.pipeline.paper import paper_fallbacks, paper_inputs

PAPER_FALLBACKS = paper_fallbacks(config, workflow.basedir)


rule paper:
    input:
        tex="paper/main.tex",
        outputs=lambda w: paper_inputs(
            config,
            "paper/main.tex",
            PAPER_FALLBACKS,
            # the audit's and the translation's tables are found by name; wait for the ones
            # this config makes
            [
                p
                for name, study in (("audit", audit_paths), ("nmt", nmt_paths))
                if paths.selected(name)
                for p in study.outputs()
                if p.endswith((".tex", ".pdf"))
            ],
        ),
    output:
        status=paths.res("paper", "STATUS.txt"),
        numbers=paths.res("paper", "numbers.tex"),
    log:
        paths.log("paper.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        results=lambda w: config["results_dir"],
        figures=lambda w: config["figures_dir"],
        fallback=" ".join(f"--fallback {r} {f}" for r, f in PAPER_FALLBACKS),
    shell:
        "{params.cli} paper --tex {input.tex} --results {params.results} "
        "--figures {params.figures} {params.fallback} --status {output.status} > {log} 2>&1"
