# One table of all scores.


rule report:
    input:
        **W.inputs("report", PARAMS),
    output:
        **W.outputs("report"),
    params:
        fingerprint=W.fingerprint("report", PARAMS),
    log:
        W.log("report"),
    threads: W.threads("report")
    resources:
        **W.resources("report"),
    conda:
        W.conda_env("report")
    shell:
        W.command("report")
