"""The HTTP backend against a flaky endpoint on loopback (tests/fake_endpoint.py): every kind of fault is retried
a bounded number of times and counted, a malformed answer never stops the run, every finished completion reaches
the journal callback, and the API key reaches no message and no other host."""

from __future__ import annotations

import time

import pytest
from fake_endpoint import FAULTS, MALFORMED, MODEL, RETRY_AFTER, FakeEndpoint

from smt.synth.backends.http import REDACTED, EndpointError, HTTPBackend
from smt.synth.generation import Completion, Request, Sampling

KEY = "sk-fault-3b9d71"  # made up; it must appear in no message
SAMPLING = Sampling(1.0, 1.0, 32)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMT_FAULT_KEY", KEY)


def requests(n: int) -> list[Request]:
    asked = [[{"role": "user", "content": f"Document {i}."}] for i in range(n)]
    return [Request(f"r{i}", messages, 100 + i, prefill="Question:") for i, messages in enumerate(asked)]


def backend(endpoint: FakeEndpoint, **options: object) -> HTTPBackend:
    settings = {"model": MODEL, "api_key_env": "SMT_FAULT_KEY", "concurrency": 2, "max_retries": 3}
    return HTTPBackend(endpoint.url, **{**settings, "backoff_seconds": 0.01, "timeout_seconds": 0.5, **options})


def clean_texts(items: list[Request]) -> list[str]:
    with FakeEndpoint() as endpoint:
        return [c.text for c in backend(endpoint).generate(items, SAMPLING, progress=False)]


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_retried_and_counted(fault: str) -> None:
    with FakeEndpoint([fault]) as endpoint:
        client = backend(endpoint, concurrency=1)
        started = time.monotonic()
        (completion,) = client.generate(requests(1), SAMPLING, progress=False)
    assert completion.text == clean_texts(requests(1))[0] and completion.finish_reason == "stop"
    assert endpoint.posts == 2 and client.stats.extra == {"retries": 1, "malformed": int(fault in MALFORMED)}
    if fault == "429":
        assert time.monotonic() - started >= float(RETRY_AFTER), "Retry-After is honoured"


def test_every_fault_at_once_gives_the_clean_completions_each_reported_as_it_finishes() -> None:
    reported: list[str] = []
    with FakeEndpoint(FAULTS) as endpoint:
        client = backend(endpoint, max_retries=len(FAULTS))
        out = client.generate(requests(6), SAMPLING, progress=False, on_done=lambda c: reported.append(c.key))
    assert [c.text for c in out] == clean_texts(requests(6))
    assert sorted(reported) == [f"r{i}" for i in range(6)]
    assert client.stats.extra["retries"] == len(FAULTS) == endpoint.posts - 6
    assert client.describe()["malformed_answers"] == len(MALFORMED)


def test_answers_that_stay_malformed_reject_the_item_not_the_run() -> None:
    with FakeEndpoint(["bad_json", "no_choices", "bad_json", "no_message"]) as endpoint:
        client = backend(endpoint, concurrency=1, max_retries=3)
        first, second = client.generate(requests(2), SAMPLING, progress=False)
    assert first.finish_reason == "error" and first.error.startswith("malformed answers: POST ")
    assert "still failing after 3 retries" in first.error
    assert second.text == clean_texts(requests(2))[1]
    assert endpoint.posts == 4 + 1 and client.stats.extra["malformed"] == 4


def test_an_endpoint_that_stays_down_stops_after_max_retries() -> None:
    with FakeEndpoint(["500"] * 10) as endpoint:
        client = backend(endpoint, concurrency=1, max_retries=3)
        with pytest.raises(EndpointError, match=r"still failing after 3 retries \(HTTP 500\)"):
            client.generate(requests(1), SAMPLING, progress=False)
    assert endpoint.posts == 4, "a bounded loop: one try and max_retries retries"


def test_a_refused_configuration_stops_the_run_and_keeps_what_finished() -> None:
    """401 on one request: the run stops, but every completion the endpoint did answer reached the journal."""
    reported: list[Completion] = []
    with FakeEndpoint([None, None, "401"]) as endpoint:
        endpoint.delay = 0.2
        with pytest.raises(EndpointError, match="HTTP 401") as refused:
            backend(endpoint).generate(requests(6), SAMPLING, progress=False, on_done=reported.append)
    assert len(reported) == endpoint.answered >= 2
    assert KEY not in str(refused.value) and REDACTED in str(refused.value), "the echoed header is redacted"


def test_a_400_that_echoes_the_key_rejects_the_item_without_the_key() -> None:
    with FakeEndpoint(["400"]) as endpoint:
        refused, fine = backend(endpoint, concurrency=1).generate(requests(2), SAMPLING, progress=False)
    assert refused.finish_reason == "error" and refused.error.startswith("endpoint refused the request")
    assert KEY not in refused.error and REDACTED in refused.error
    assert fine.text == clean_texts(requests(2))[1]


def test_the_key_is_not_sent_to_another_host_on_a_redirect() -> None:
    with FakeEndpoint() as elsewhere, FakeEndpoint() as home:
        home.redirect_models = f"{elsewhere.url}/models"
        assert backend(home, model=None).model == MODEL
        home.redirect_models = f"{home.url}/models?again=1"  # the same origin keeps it
        assert backend(home, model=None).model == MODEL
    assert [h.get("Authorization") for _, _, h in home.seen] == [f"Bearer {KEY}"] * 3
    assert [(p, h.get("Authorization")) for _, p, h in elsewhere.seen] == [("/v1/models", None)]
