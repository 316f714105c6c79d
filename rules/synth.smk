# Synthetic data: open-ended QAs, then synthetic documents (one job per generator), then the audits.
# Generation is sharded: `<stage>_shard` runs one shard (`--shard i`, outputs temporary); the stage's own rule
# merges the shards (and would run any missing one itself, which is what `dvc repro` relies on).


rule synth_qa_shard:
    input:
        **W.shard_inputs("synth_qa", PARAMS),
    output:
        **W.shard_outputs("synth_qa"),
    params:
        fingerprint=W.fingerprint("synth_qa", PARAMS),
    wildcard_constraints:
        shard="[0-9]+",
    log:
        W.shard_log("synth_qa"),
    benchmark:
        W.shard_benchmark("synth_qa")
    threads: W.threads("synth_qa")
    resources:
        **W.resources("synth_qa"),
    conda:
        W.conda_env("synth_qa")
    shell:
        W.shard_command("synth_qa")


rule synth_qa:
    input:
        **W.inputs("synth_qa", PARAMS),
    output:
        **W.outputs("synth_qa"),
    params:
        fingerprint=W.fingerprint("synth_qa", PARAMS),
    log:
        W.log("synth_qa"),
    benchmark:
        W.benchmark("synth_qa")
    threads: W.threads("synth_qa")
    resources:
        **W.resources("synth_qa"),
    conda:
        W.conda_env("synth_qa")
    shell:
        W.command("synth_qa")


rule synth_docs_shard:
    input:
        **W.shard_inputs("synth_docs", PARAMS),
    output:
        **W.shard_outputs("synth_docs"),
    params:
        fingerprint=W.fingerprint("synth_docs", PARAMS),
    wildcard_constraints:
        shard="[0-9]+",
    log:
        W.shard_log("synth_docs"),
    benchmark:
        W.shard_benchmark("synth_docs")
    threads: W.threads("synth_docs")
    resources:
        **W.resources("synth_docs"),
    conda:
        W.conda_env("synth_docs")
    shell:
        W.shard_command("synth_docs")


rule synth_docs:
    input:
        **W.inputs("synth_docs", PARAMS),
    output:
        **W.outputs("synth_docs"),
    params:
        fingerprint=W.fingerprint("synth_docs", PARAMS),
    log:
        W.log("synth_docs"),
    benchmark:
        W.benchmark("synth_docs")
    threads: W.threads("synth_docs")
    resources:
        **W.resources("synth_docs"),
    conda:
        W.conda_env("synth_docs")
    shell:
        W.command("synth_docs")


rule synth_contamination:
    input:
        **W.inputs("synth_contamination", PARAMS),
    output:
        **W.outputs("synth_contamination"),
    params:
        fingerprint=W.fingerprint("synth_contamination", PARAMS),
    log:
        W.log("synth_contamination"),
    threads: W.threads("synth_contamination")
    resources:
        **W.resources("synth_contamination"),
    conda:
        W.conda_env("synth_contamination")
    shell:
        W.command("synth_contamination")


rule synth_audit:
    input:
        **W.inputs("synth_audit", PARAMS),
    output:
        **W.outputs("synth_audit"),
    params:
        fingerprint=W.fingerprint("synth_audit", PARAMS),
    log:
        W.log("synth_audit"),
    benchmark:
        W.benchmark("synth_audit")
    threads: W.threads("synth_audit")
    resources:
        **W.resources("synth_audit"),
    conda:
        W.conda_env("synth_audit")
    shell:
        W.command("synth_audit")
