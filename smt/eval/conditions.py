"""The four conditions scored per benchmark: the base model closed-book and with retrieval (the floor and the
RAG ceiling), and the model after Synthetic Mixed Training, closed-book and with retrieval."""

from __future__ import annotations

CONDITIONS = ("closed_book_base", "rag_base", "smt_closed_book", "smt_rag")
LABELS = {
    "closed_book_base": "Closed-book (base)",
    "rag_base": "RAG (base)",
    "smt_closed_book": "SMT closed-book",
    "smt_rag": "SMT + RAG",
}
LEGEND = {
    "closed_book_base": "the base model answers from its weights alone (the floor).",
    "rag_base": "the base model answers with retrieved excerpts in its prompt (the RAG ceiling SMT aims at).",
    "smt_closed_book": "the model after Synthetic Mixed Training answers from its weights alone.",
    "smt_rag": "the SMT model answers with retrieved excerpts (whether SMT and RAG add up).",
}
