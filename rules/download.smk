# Published benchmark files, fetched and verified against their pinned hashes (smt/benchmarks/sources.yaml).
# Runs only when a benchmark's `source` in params.yaml is data/raw/<name> and that folder is missing.


rule download:
    output:
        directory("data/raw/{benchmark}"),
    log:
        "results/logs/download/{benchmark}.log",
    wildcard_constraints:
        benchmark="|".join(W.DOWNLOADABLE),
    retries: 2
    resources:
        runtime=60,
    conda:
        "../envs/core.yaml"
    shell:
        "python -m smt download {wildcards.benchmark} --dest {output} > {log} 2>&1"
