# The token-budgeted QA/document/replay mix, and continued training of the student with TRL.


rule mix:
    input:
        **W.inputs("mix", PARAMS),
    output:
        **W.outputs("mix"),
    params:
        fingerprint=W.fingerprint("mix", PARAMS),
    log:
        W.log("mix"),
    threads: W.threads("mix")
    resources:
        **W.resources("mix"),
    conda:
        W.conda_env("mix")
    shell:
        W.command("mix")


rule train:
    input:
        **W.inputs("train", PARAMS),
    output:
        **W.outputs("train"),
    params:
        fingerprint=W.fingerprint("train", PARAMS),
    log:
        W.log("train"),
    benchmark:
        W.benchmark("train")
    threads: W.threads("train")
    resources:
        **W.resources("train"),
    conda:
        W.conda_env("train")
    shell:
        W.command("train")
