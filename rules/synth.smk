# Synthetic data: open-ended QAs, then Active Reading and Focal Rewriting documents.


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
