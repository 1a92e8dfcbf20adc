# The one entry point of the workflow: `snakemake --cores N` reproduces everything at paper
# scale; `snakemake --workflow-profile workflow/profiles/quick` runs the quick version.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/tammes.smk"


rule all:
    input:
        tammes_outputs(),
    default_target: True
