# The scaling study per benchmark, then one results page (markdown and HTML) for everything.


rule scaling:
    input:
        **W.inputs("scaling", PARAMS),
    output:
        **W.outputs("scaling"),
    params:
        fingerprint=W.fingerprint("scaling", PARAMS),
    log:
        W.log("scaling"),
    threads: W.threads("scaling")
    resources:
        **W.resources("scaling"),
    conda:
        W.conda_env("scaling")
    shell:
        W.command("scaling")


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
