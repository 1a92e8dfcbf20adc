# The LaTeX document of the reproduced results (paper/main.tex), built against this run's
# tables and figures when latexmk is installed; otherwise the rule checks that every included
# file exists and writes that it skipped the PDF.


rule paper:
    input:
        tex="paper/main.tex",
        outputs=paths.paper_inputs(
            tammes_paths.outputs(),
            synthetic_paths.outputs(),
            image_paths.outputs(),
            text_paths.outputs(),
        ),
    output:
        status=paths.res("paper", "STATUS.txt"),
    log:
        paths.log("paper.log"),
    conda:
        "../envs/dispersion.yml"
    params:
        cli=DISPERSION,
        results=lambda w: config["results_dir"],
        figures=lambda w: config["figures_dir"],
    shell:
        "{params.cli} paper --tex {input.tex} --results {params.results} "
        "--figures {params.figures} --status {output.status} > {log} 2>&1"
