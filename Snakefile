# The one entry point of the workflow: `snakemake --cores N` reproduces everything at paper
# scale; `snakemake --workflow-profile workflow/profiles/quick` runs the quick version.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/tammes.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/image.smk"
include: "workflow/rules/text.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/nmt.smk"
include: "workflow/rules/paper.smk"


rule all:
    default_target: True
    input:
        # the config's `experiments` list (all but nmt by default; config/cpu.yaml: image, text_lm, nmt)
        tammes_paths.outputs() if paths.selected("tammes") else [],
        synthetic_paths.outputs() if paths.selected("synthetic") else [],
        image_paths.outputs() if paths.selected("image") else [],
        text_paths.outputs(
            [t for t in ("classify", "lm") if paths.selected(f"text_{t}")]
        ),
        audit_paths.outputs() if paths.selected("audit") else [],
        # nmt: only where the config names it (config/cpu.yaml; not by default)
        nmt_paths.outputs() if paths.selected("nmt") else [],
        [paths.res("paper", "STATUS.txt")] if paths.selected("paper") else [],
