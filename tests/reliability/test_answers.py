"""Answers a hosted service should not send, and what becomes of them (issue 17, items 4 and 6).

Real loopback servers (``molmo_rag.testing.loopback``, fault ``answer``) answer with fields
of the wrong type (``"model": {}``, a caption that is a number, content parts that are not
text, ``timings`` that are not numbers), a count of 5,000 digits, a lone surrogate and NULs,
a 5 MB caption, a flood of points and a body over the HTTP cap. Every one is checked at the
backend boundary (``Backend._to_result`` and the decoders): cleaned where the answer is
usable (recorded in ``truncated`` when cut), else a typed, non-retryable
:class:`~molmo_rag.errors.MalformedAnswerError` for that one task, carrying what the answer
cost, while the item's other results are kept, indexed and cached (a re-run pays nothing
for them). A subprocess checks that a 5 MB caption keeps peak memory flat.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("qdrant_client")

from molmo_rag.analyze import analyze
from molmo_rag.backends.openai import OpenAIBackend
from molmo_rag.backends.openoctopus import OpenOctopusBackend
from molmo_rag.backends.wavespeed import WaveSpeedBackend
from molmo_rag.errors import MalformedAnswerError
from molmo_rag.pipeline import index, search
from molmo_rag.results import Failure, Result
from molmo_rag.tasks import Caption, Count, Scene
from molmo_rag.testing.loopback import OpenAIServer, OpenOctopusServer, WaveSpeedServer

KEY = "sk-ANSWERS-5e4d3c2b1a09"
PHOTOS = ("coffee", "rocket")
SCENE = "Describe the scene"  # in the scene prompt only
COUNT = "How many"  # in the count prompt only


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from molmo_rag.testing import samples

    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        image = samples.photo(name)
        image.thumbnail((64, 64))
        image.save(root / f"{name}.png")
    return root


def openai(server: OpenAIServer, **options) -> OpenAIBackend:
    return OpenAIBackend(api_key=KEY, base_url=server.base_url, max_retries=1, retry_wait=0.01, **options)


def outcomes(photos: Path, tasks, backend) -> tuple[list[Result], list[Failure]]:
    out = list(analyze([str(photos / f"{name}.png") for name in PHOTOS], tasks, backend))
    return [o for o in out if isinstance(o, Result)], [o for o in out if isinstance(o, Failure)]


def assert_malformed(failure: Failure, code: str = "malformed_answer") -> None:
    error = failure.error
    assert isinstance(error, MalformedAnswerError), (type(error), error)
    assert error.code == code and error.retryable is False and not getattr(error, "fatal", False)
    as_json = failure.to_json()
    assert as_json["error_type"] == "MalformedAnswerError" and as_json["error_code"] == code
    assert as_json["retryable"] is False and "\n" not in as_json["error"]


# -- item 4: fields of the wrong type ------------------------------------------------------


def test_a_model_field_of_the_wrong_type_is_ignored_and_the_run_indexes_and_caches_all(photos, tmp_path):
    where = dict(db=tmp_path / "db", cache=tmp_path / "cache")
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, fields={"model": {"name": "molmo"}})
        first = index([str(photos)], backend=openai(server), **where)
        assert not first.failed and first.indexed == len(PHOTOS) and first.done == 2 * len(PHOTOS)
        paid = server.stats.by_route["chat"]
        again = index([str(photos)], backend=openai(server), **where)
        assert again.cached == first.done and server.stats.by_route["chat"] == paid  # nothing paid twice
        results, failures = outcomes(photos, [Caption()], openai(server))
    assert not failures and {r.model for r in results} == {"allenai/Molmo2-4B"}
    assert {hit.payload["model"] for hit in search("a photo", db=where["db"])} == {"allenai/Molmo2-4B"}


@pytest.mark.parametrize(
    "content",
    [42, {"text": "a cup"}, None, [{"type": "text", "text": 7}]],
    ids=["number", "object", "null", "part-of-the-wrong-type"],
)
def test_an_answer_text_of_the_wrong_type_fails_that_task_only(photos, content):
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, match=SCENE, text=content)
        results, failures = outcomes(photos, [Caption(), Scene()], openai(server))
        assert server.stats.by_route["chat"] == 2 * len(PHOTOS)  # not asked again
    assert [r.task.name for r in results] == ["caption"] * len(PHOTOS)
    assert [f.task.name for f in failures] == ["scene"] * len(PHOTOS)
    for failure in failures:
        assert_malformed(failure)
        assert "text" in str(failure.error) and failure.source.endswith(".png")


@pytest.mark.parametrize(
    "choices", [[{"index": 0, "message": None}], [], None], ids=["message-null", "no-choices", "choices-null"]
)
def test_an_answer_without_the_protocols_shape_is_remembered_not_asked_again(photos, tmp_path, choices):
    where = dict(db=tmp_path / "db", cache=tmp_path / "cache")
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, match=SCENE, fields={"choices": choices})
        first = index([str(photos)], backend=openai(server), **where)
        assert [f.task.name for f in first.failed] == ["scene"] * len(PHOTOS)
        for failure in first.failed:
            assert_malformed(failure)
        index([str(photos)], backend=openai(server), **where)
        assert server.stats.by_route["chat"] == 2 * len(PHOTOS)  # the re-run asked for nothing


def test_a_5000_digit_count_fails_the_count_and_keeps_caption_and_scene(photos, tmp_path):
    where = dict(db=tmp_path / "db", cache=tmp_path / "cache")
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, match=COUNT, text="There are " + "7" * 5000 + " cups.")
        first = index([str(photos)], backend=openai(server), count=["cups"], **where)
        assert first.indexed == len(PHOTOS) and first.done == 2 * len(PHOTOS)
        assert [f.task.name for f in first.failed] == ["count"] * len(PHOTOS)
        for failure in first.failed:
            assert_malformed(failure)
            assert "a number of 5000 digits" in str(failure.error)
        again = index([str(photos)], backend=openai(server), count=["cups"], **where)
        assert again.cached >= 2 * len(PHOTOS)  # caption and scene were cached ...
        assert server.stats.by_route["chat"] == 3 * len(PHOTOS)  # ... and the failed count remembered
    hits = search("a photo", db=where["db"])
    assert len(hits) == len(PHOTOS) and all(hit.payload["caption"] and hit.payload["scene"] for hit in hits)


def test_a_lone_surrogate_and_nuls_in_a_caption_are_cleaned_cached_and_paid_once(photos, tmp_path):
    where = dict(db=tmp_path / "db", cache=tmp_path / "cache")
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, match="Describe this", text="A cup\ud800 on a\x00 table.\x00")
        first = index([str(photos)], backend=openai(server), **where)
        assert not first.failed and first.indexed == len(PHOTOS)
        assert server.stats.by_route["chat"] == 2 * len(PHOTOS)
        again = index([str(photos)], backend=openai(server), **where)
        assert again.cached == 2 * len(PHOTOS) and server.stats.by_route["chat"] == 2 * len(PHOTOS)
    captions = {hit.payload["caption"] for hit in search("a cup", db=where["db"])}
    assert captions == {"A cup on a table."}


def test_wavespeed_and_openoctopus_answers_of_the_wrong_type_fail_typed_and_carry_their_cost(photos):
    with WaveSpeedServer(api_key=KEY, latency=0.0) as server:
        server.inject("answer", times=1, text={"caption": "a cup"})
        backend = WaveSpeedBackend(api_key=KEY, base_url=server.base_url, poll_interval=0.05, max_retries=0)
        results, failures = outcomes(photos, [Caption()], backend)
        assert server.stats.jobs_created == len(PHOTOS)  # not submitted again
    assert len(results) == len(failures) == 1
    assert_malformed(failures[0])
    assert failures[0].error.cost_usd == pytest.approx(results[0].cost_usd) and results[0].cost_usd > 0
    assert failures[0].to_json()["cost_usd"] == pytest.approx(results[0].cost_usd)

    with OpenOctopusServer(api_key=KEY, latency=0.0) as server:
        server.inject("answer", times=1, text=12345)
        backend = OpenOctopusBackend(api_key=KEY, base_url=server.base_url, poll_interval=0.05, max_retries=0)
        results, failures = outcomes(photos, [Caption()], backend)
        assert server.stats.jobs_created == len(PHOTOS)
    assert len(results) == len(failures) == 1
    assert_malformed(failures[0])
    assert failures[0].error.cost_usd > 0


def test_wavespeed_timings_that_are_not_numbers_do_not_lose_the_answer(photos):
    with WaveSpeedServer(api_key=KEY, latency=0.2) as server:  # polled: the timing is read
        server.inject("answer", times=-1, fields={"timings": {"inference": "fast"}, "model": 7})
        backend = WaveSpeedBackend(api_key=KEY, base_url=server.base_url, poll_interval=0.05, max_retries=0)
        results, failures = outcomes(photos, [Caption()], backend)
    assert not failures and len(results) == len(PHOTOS) and all(r.fields["caption"] for r in results)


# -- item 6: caps on an answer --------------------------------------------------------------


def test_an_oversized_caption_is_cut_to_max_answer_chars_and_marked_truncated(photos):
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, match="Describe this", text="A cup on a table. ", repeat=2000)
        results, failures = outcomes(photos, [Caption()], openai(server, max_answer_chars=1000))
    assert not failures
    for result in results:
        assert len(result.text) == 1000 and result.fields["caption"].startswith("A cup on a table.")
        assert len(result.fields["caption"]) <= 1000
        assert result.fields["truncated"] == ["text"] and result.to_json()["truncated"] == ["text"]


def test_a_flood_of_points_is_cut_to_max_answer_points_and_the_stated_count_kept(photos):
    coords = " ".join(f"{i} {100 + i % 800} {100 + i % 700}" for i in range(1, 3001))
    flood = f'Counting the <points coords="1 {coords}">cups</points> shows a total of 3000.'
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, match=COUNT, text=flood)
        results, failures = outcomes(photos, [Count(target="cups")], openai(server, max_answer_points=100))
    assert not failures
    for result in results:
        assert result.fields["count"] == 3000 and len(result.fields["points"]) == 100
        assert result.fields["truncated"] == ["points"]


def test_an_answer_body_over_max_response_bytes_is_refused_once_and_not_retried(photos):
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, match="Describe this", text="A cup. ", repeat=20_000)
        results, failures = outcomes(photos, [Caption(), Scene()], openai(server, max_response_bytes=64_000))
        assert server.stats.by_route["chat"] == 2 * len(PHOTOS)  # the big ones were not asked again
    assert [r.task.name for r in results] == ["scene"] * len(PHOTOS)
    for failure in failures:
        assert_malformed(failure, "answer_too_large")
        assert "max_response_bytes" in str(failure.error)


def test_answer_limits_are_typed_described_options():
    from molmo_rag.backends.base import BackendOptions
    from molmo_rag.backends.rest import RestOptions
    from molmo_rag.errors import UsageError

    for cls, name in ((BackendOptions, "max_answer_chars"), (BackendOptions, "max_answer_points"), (RestOptions, "max_response_bytes")):
        field = cls.model_fields[name]
        assert field.description and isinstance(field.default, int) and field.default > 0
    assert BackendOptions().max_answer_chars == 65_536
    with pytest.raises(UsageError, match="max_answer_chars"):
        BackendOptions(max_answer_chars=0)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from molmo_rag.backends.openai import OpenAIBackend
    from molmo_rag.pipeline import index

    def peak_bytes():
        # VmHWM: this process's own peak (ru_maxrss would start at the parent's)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

    base_url, key, warm, flood, db, cache = sys.argv[1:]
    backend = OpenAIBackend(api_key=key, base_url=base_url, max_retries=0)
    # the embedder, Qdrant and HTTP loaded first, with a short caption (the flood answers "Describe this")
    warmed = index([warm], backend=backend, db=db, cache=cache, detail="low")
    base = peak_bytes()
    flooded = index([flood], backend=backend, db=db, cache=cache)
    print(json.dumps({"base": base, "peak": peak_bytes(), "warm": warmed.indexed, "indexed": flooded.indexed,
                      "failed": [str(f.error) for f in flooded.failed + warmed.failed]}))
    """
)
MEMORY_HEADROOM = 200 * 1024**2
"""How much peak memory may grow over a warmed-up run while a 5 MB caption is indexed: about
60 MiB for a plain caption, 110 MiB with the flood (its body and text held a few times while
read and cleaned); uncapped, a 0.5 MB caption grew it by 460 MiB and the 5 MB one by 7.4 GB
(the embedder on the whole text)."""


def test_a_5_mb_caption_keeps_peak_memory_flat(photos, tmp_path):
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, match="Describe this", text="A cup on a table. ", repeat=5 * 1024**2 // 18)
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, server.base_url, KEY, str(photos / "rocket.png"), str(photos / "coffee.png"),
             str(tmp_path / "db"), str(tmp_path / "cache")],
            capture_output=True, text=True, timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["warm"] == report["indexed"] == 1 and not report["failed"], report
    grown = report["peak"] - report["base"]
    assert grown < MEMORY_HEADROOM, f"peak memory grew by {grown / 1024**2:.0f} MiB"
    hit = search("a cup", db=tmp_path / "db", source=str(photos / "coffee.png"))[0]
    assert len(hit.payload["caption"]) <= 65_536


def test_items_whose_every_task_failed_are_not_counted_as_indexed(photos, tmp_path):
    where = dict(db=tmp_path / "db", cache=tmp_path / "cache")
    with OpenAIServer(api_key=KEY) as server:
        server.inject("answer", times=-1, text=42)  # every answer malformed: no item gets a point
        summary = index([str(photos)], backend=openai(server), **where)
    assert len(summary.failed) == 2 * len(PHOTOS) and summary.indexed == 0
    assert summary.items == 0  # was len(PHOTOS): "indexed 2 item(s) ... 0 written"
