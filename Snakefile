# smt: Synthetic Mixed Training as a Snakemake workflow.
# The stages are declared once in smt/pipeline/stages.py. rules/*.smk are rendered from that table (one readable
# rule per stage: inputs, computed code dependencies, params stamp, outputs, log, resources, command, tests) and
# so is DVC's dvc.yaml, so both tools run the same commands on the same graph. params.yaml is the only
# configuration; it is validated against smt/pipeline/schema/params.schema.yaml here, and loading it re-renders
# anything derived from it or from the code before the rules are read.

from smt.pipeline import rules as W


configfile: "params.yaml"


PARAMS = W.load_params(config)
W.check_placement(PARAMS, workflow)  # params that the profile's GPU counts cannot run stop here, before any job


wildcard_constraints:
    **W.AXIS_PATTERNS,


include: "rules/model.smk"
include: "rules/download.smk"
include: "rules/data.smk"
include: "rules/synth.smk"
include: "rules/train.smk"
include: "rules/rag.smk"
include: "rules/eval.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        W.final_targets(PARAMS),
