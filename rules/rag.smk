# Retrieval: the index over the benchmark documents (BM25 with rank-bm25, dense with faiss), then the chunks
# retrieved (and optionally reranked) for every question, shared by both RAG conditions.


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


rule retrieve:
    input:
        **W.inputs("retrieve", PARAMS),
    output:
        **W.outputs("retrieve"),
    params:
        fingerprint=W.fingerprint("retrieve", PARAMS),
    log:
        W.log("retrieve"),
    benchmark:
        W.benchmark("retrieve")
    threads: W.threads("retrieve")
    resources:
        **W.resources("retrieve"),
    conda:
        W.conda_env("retrieve")
    shell:
        W.command("retrieve")
