# The base model (generator and student), materialized once as a Hugging Face folder.


rule model:
    input:
        **W.inputs("model", PARAMS),
    output:
        **W.outputs("model"),
    params:
        fingerprint=W.fingerprint("model", PARAMS),
    log:
        W.log("model"),
    threads: W.threads("model")
    resources:
        **W.resources("model"),
    conda:
        W.conda_env("model")
    shell:
        W.command("model")
