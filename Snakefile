# smt: Synthetic Mixed Training as a Snakemake workflow.
# The stages are declared once in smt/registry.py; rules/*.smk build each rule from that declaration and
# DVC's dvc.yaml is rendered from the same registry, so both tools run the same commands on the same graph.
# params.yaml is the only configuration; it is validated against smt/schema/params.schema.yaml here.

from smt import workflow as W


configfile: "params.yaml"


PARAMS = W.load_params(config)


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
