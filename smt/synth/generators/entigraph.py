"""EntiGraph (Yang et al. 2024): a summary and the salient entities of the document as JSON, then, for sampled
pairs and triples of those entities, a discussion of how they relate in the document.

The entity step asks for JSON with a schema: backends with structured outputs (vLLM, a vLLM server) enforce
it; the transformers backend steers toward it with a JSON prefill. Unparseable JSON, or fewer than two
entities, rejects the document's entity step, and with it every pair and triple planned for that document
(each counted with the reason).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
from typing import Any

from smt import prompts
from smt.synth import collect, rounds
from smt.synth.generation import Request, Sampling, item_seed
from smt.synth.generators import accept_document, user_request
from smt.synth.job import Job

NAME = "entigraph"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "entities": {"type": "array", "items": {"type": "string"}, "minItems": 2},
    },
    "required": ["summary", "entities"],
}
GROUPS = {"pair": 2, "triple": 3}


def parse_entities(text: str, max_entities: int) -> list[str] | str:
    """The distinct entities (at most `max_entities`, in order), or the reason the text is rejected."""
    body = re.sub(r"^```(?:json)?|```$", "", text.strip()).strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        return "unparseable JSON"
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError:
        return "unparseable JSON"
    if not isinstance(data, dict) or not isinstance(data.get("entities"), list):
        return "unparseable JSON: no 'entities' list"
    entities: dict[str, str] = {}
    for item in data["entities"]:
        name = " ".join(str(item).split()) if isinstance(item, str | int | float) else ""
        if not re.search(r"[A-Za-z0-9]", name) or re.fullmatch(r"<.*>", name):
            continue  # a placeholder copied from the prompt, not an entity
        if name.lower() not in entities:
            entities[name.lower()] = name
    if len(entities) < 2:
        return "fewer than 2 entities"
    return list(entities.values())[:max_entities]


def entity_request(doc: dict[str, Any], seed: int) -> Request:
    """The entity step's request for one document (`seed`: the run's seed)."""
    content = prompts.sections(NAME)["entities"].format(document=collect.document_text(doc))
    return Request(
        f"{doc['doc_id']}/entities",
        [{"role": "user", "content": content}],
        item_seed(seed, doc["doc_id"], f"{NAME}_entities", 0),
        json_schema=SCHEMA,
    )


def extract(job: Job, collector: collect.Collector, max_new_tokens: int, max_entities: int) -> tuple[dict, Sampling]:
    """Entities per document id, or the reason the step failed for that document."""
    sampling = job.sampling(max_new_tokens)
    requests = [entity_request(d, job.seed) for d in job.documents]
    found: dict[str, list[str] | str] = {}
    for doc, completion in zip(job.documents, job.complete(requests, sampling, "entities"), strict=True):
        parsed = collect.failure(completion) or parse_entities(completion.text, max_entities)
        if isinstance(parsed, str):
            if parsed.startswith("unparseable") and completion.finish_reason == "length":
                parsed = "truncated at max_new_tokens"
            collector.step_reject(completion.key, doc["doc_id"], parsed, completion.text)
        found[doc["doc_id"]] = parsed
    return found, sampling


def sequence(found: list[str], seed: int, doc_id: str, pairs: int, triples: int) -> list[tuple[str, list[str]]]:
    """A document's relation items in order: `pairs` pairs then `triples` triples per cycle, each kind's
    groups in a seeded shuffle, until both kinds run out."""
    rng = random.Random(item_seed(seed, doc_id, f"{NAME}_groups", 0))
    groups = {}
    for kind, size in GROUPS.items():
        groups[kind] = [list(g) for g in itertools.combinations(found, size)]
        rng.shuffle(groups[kind])
    pattern = ["pair"] * pairs + ["triple"] * triples
    taken = dict.fromkeys(GROUPS, 0)
    found_items: list[tuple[str, list[str]]] = []
    while pattern and any(taken[k] < len(groups[k]) for k in set(pattern)):
        for kind in pattern:
            if taken[kind] < len(groups[kind]):
                found_items.append((kind, groups[kind][taken[kind]]))
                taken[kind] += 1
    return found_items


def produce(job: Job) -> collect.Outcome:
    """Entities once per document, then discussions of pairs and triples in rounds until the document holds its
    share of the stream's token target or its groups run out."""
    opts = job.options
    collector = collect.Collector(NAME)
    entities, entity_sampling = extract(job, collector, opts["entities_max_new_tokens"], opts["max_entities"])
    templates = prompts.sections(NAME)
    per_round = opts["pairs_per_document"] + opts["triples_per_document"]
    sequences = {}
    for doc in job.documents:
        found = entities[doc["doc_id"]]
        if isinstance(found, str):
            collector.plan(per_round)
            for i in range(per_round):
                collector.reject(f"{doc['doc_id']}/{NAME}/{i}", doc["doc_id"], f"entity step failed: {found}")
            continue
        seq = sequence(found, job.seed, doc["doc_id"], opts["pairs_per_document"], opts["triples_per_document"])
        sequences[doc["doc_id"]] = seq
    collector.counts["documents_out_of_groups"] = 0
    sampling = job.sampling()

    def build(doc: dict[str, Any], start: int, n: int) -> list[rounds.Item]:
        doc_id, items = doc["doc_id"], []
        seq = sequences[doc_id]
        if start + n > len(seq):
            collector.counts["documents_out_of_groups"] += start < len(seq)
        for i in range(start, min(start + n, len(seq))):
            kind, group = seq[i]
            key, seed = f"{doc_id}/{NAME}/{i}", item_seed(job.seed, doc_id, f"{NAME}_{kind}", i)
            names = {f"entity_{j + 1}": e for j, e in enumerate(group)}
            fields = {"document": collect.document_text(doc), "title": doc["title"], **names}
            request = user_request(key, templates[kind], seed, **fields)
            items.append(rounds.Item(request, {"doc_id": doc_id, "relation": kind, "entities": group, "seed": seed}))
        return items

    def accept(completion: Any, meta: dict[str, Any]) -> int:
        return accept_document(collector, completion, **meta)

    extracting = dataclasses.replace(job, documents=[d for d in job.documents if d["doc_id"] in sequences])
    if per_round:
        rounds.run(extracting, collector, "relations", sampling, per_round, build, accept)
    return collector.outcome({"entities": entity_sampling, "relations": sampling}, [NAME])
