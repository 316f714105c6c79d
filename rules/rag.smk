# Retrieval index over the benchmark documents: BM25 (rank-bm25) and dense (faiss).


rule rag_index:
    input:
        **W.inputs("rag_index", PARAMS),
    output:
        **W.outputs("rag_index"),
    params:
        fingerprint=W.fingerprint("rag_index", PARAMS),
    log:
        W.log("rag_index"),
    benchmark:
        W.benchmark("rag_index")
    threads: W.threads("rag_index")
    resources:
        **W.resources("rag_index"),
    conda:
        W.conda_env("rag_index")
    shell:
        W.command("rag_index")
