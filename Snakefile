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
include: "workflow/rules/paper.smk"


rule all:
    default_target: True
    input:
        tammes_paths.outputs(),
        synthetic_paths.outputs(),
        image_paths.outputs(),
        text_paths.outputs(),
        audit_paths.outputs(),
        paths.res("paper", "STATUS.txt"),
