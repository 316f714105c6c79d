# The four conditions per benchmark: closed-book base, RAG base, SMT closed-book, SMT + RAG.
# Each condition is its own stage so that, e.g., a training change never reruns the base-model scores.


rule eval_closed_book_base:
    input:
        **W.inputs("eval_closed_book_base", PARAMS),
    output:
        **W.outputs("eval_closed_book_base"),
    params:
        fingerprint=W.fingerprint("eval_closed_book_base", PARAMS),
    log:
        W.log("eval_closed_book_base"),
    benchmark:
        W.benchmark("eval_closed_book_base")
    threads: W.threads("eval_closed_book_base")
    resources:
        **W.resources("eval_closed_book_base"),
    conda:
        W.conda_env("eval_closed_book_base")
    shell:
        W.command("eval_closed_book_base")


rule eval_rag_base:
    input:
        **W.inputs("eval_rag_base", PARAMS),
    output:
        **W.outputs("eval_rag_base"),
    params:
        fingerprint=W.fingerprint("eval_rag_base", PARAMS),
    log:
        W.log("eval_rag_base"),
    benchmark:
        W.benchmark("eval_rag_base")
    threads: W.threads("eval_rag_base")
    resources:
        **W.resources("eval_rag_base"),
    conda:
        W.conda_env("eval_rag_base")
    shell:
        W.command("eval_rag_base")


rule eval_smt_closed_book:
    input:
        **W.inputs("eval_smt_closed_book", PARAMS),
    output:
        **W.outputs("eval_smt_closed_book"),
    params:
        fingerprint=W.fingerprint("eval_smt_closed_book", PARAMS),
    log:
        W.log("eval_smt_closed_book"),
    benchmark:
        W.benchmark("eval_smt_closed_book")
    threads: W.threads("eval_smt_closed_book")
    resources:
        **W.resources("eval_smt_closed_book"),
    conda:
        W.conda_env("eval_smt_closed_book")
    shell:
        W.command("eval_smt_closed_book")


rule eval_smt_rag:
    input:
        **W.inputs("eval_smt_rag", PARAMS),
    output:
        **W.outputs("eval_smt_rag"),
    params:
        fingerprint=W.fingerprint("eval_smt_rag", PARAMS),
    log:
        W.log("eval_smt_rag"),
    benchmark:
        W.benchmark("eval_smt_rag")
    threads: W.threads("eval_smt_rag")
    resources:
        **W.resources("eval_smt_rag"),
    conda:
        W.conda_env("eval_smt_rag")
    shell:
        W.command("eval_smt_rag")
