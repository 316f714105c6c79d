# Benchmarks from their published files into normalized tables (documents, questions) with stable ids.


rule ingest:
    input:
        **W.inputs("ingest", PARAMS),
    output:
        **W.outputs("ingest"),
    params:
        fingerprint=W.fingerprint("ingest", PARAMS),
    log:
        W.log("ingest"),
    benchmark:
        W.benchmark("ingest")
    threads: W.threads("ingest")
    resources:
        **W.resources("ingest"),
    conda:
        W.conda_env("ingest")
    shell:
        W.command("ingest")
