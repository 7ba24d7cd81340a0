"""Search, counts in words, labels and grounding on what a new user does (issue 17 items 10,
12 (a CJK label), 15 and 16), through the CLI and the Python API: collections indexed
through the loopback WaveSpeed server (which counts on video only), with the tiny local
Molmo2 checkpoint and with the pixel-statistics backend; real embedded Qdrant.

* a query's count phrases are read in linear time, and a query over
  ``MAX_QUERY_CHARS`` is a usage error (exit 2);
* a count label may be any Unicode letters or digits (``人``), and a refused one says what a
  label may be;
* ``--ground`` checks with the backend and model that made the collection; a check that
  failed shows ``error: <cause>``, a hit the backend cannot check ``-``, and no check at all
  exits 1;
* a count phrase that finds nothing to filter on says, in one line, that it was kept as
  text and why; ``labels`` tells "never counted" from "counted but no count read".
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import _pixel_backend
from molmo_rag import pipeline
from molmo_rag.cli import main
from molmo_rag.errors import UsageError
from molmo_rag.index.filters import label_key
from molmo_rag.media.items import MediaItem
from molmo_rag.testing import FakeBackend, samples

pytest.importorskip("av")

KEY = "ws-test-key-5f2c9a0d7e41"


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def found_cells(table: str) -> list[str]:
    """The ``found`` column of the hits table (its cells may hold spaces: 'yes (2)')."""
    header, *rows = table.splitlines()
    start, end = header.index("found"), header.index("caption")
    return [row[start:end].strip() for row in rows]


def kinds_of(table: str) -> list[str]:
    return [row.split()[1] for row in table.splitlines()[1:]]


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MOLMO_RAG_BACKEND", raising=False)
    monkeypatch.delenv("MOLMO_RAG_MODEL", raising=False)
    _pixel_backend.register(monkeypatch)

    def invoke(*args) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "photos").mkdir()
    for name in ("astronaut", "coffee"):
        image = samples.photo(name)
        image.thumbnail((96, 96))
        image.save(root / "photos" / f"{name}.png")
    (root / "clips").mkdir()
    samples.make_video(
        root / "clips" / "street.mp4", [samples.Shot("rocket", 3, "static"), samples.Shot("coffee", 3, "static")], size=(160, 96)
    )
    return root


@pytest.fixture(scope="module")
def wavespeed(media, tmp_path_factory):
    """One index, two collections made through the loopback WaveSpeed server: ``mixed``
    (the photos and the video, ``--count person``) and ``photos`` (the photos only, ``--count
    person,car``: WaveSpeed counts on video only, so no count of either is ever read)."""
    from molmo_rag.testing.loopback import WaveSpeedServer

    where = tmp_path_factory.mktemp("wavespeed")
    db, cache = where / "db", where / "cache"
    with WaveSpeedServer(api_key=KEY) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("WAVESPEED_BASE_URL", server.base_url)
        env.setenv("WAVESPEED_API_KEY", KEY)
        env.setenv("MOLMO_RAG_CACHE_DIR", str(cache))
        env.delenv("MOLMO_RAG_BACKEND", raising=False)
        env.delenv("MOLMO_RAG_MODEL", raising=False)
        for collection, sources, count in (
            ("mixed", [media / "photos", media / "clips"], "person"),
            ("photos", [media / "photos"], "person,car"),
        ):
            args = ["index", *map(str, sources), "--backend", "wavespeed", "--db", str(db), "--collection", collection]
            assert main([*args, "--count", count, "--quiet"]) == 0
        yield SimpleNamespace(server=server, db=db, cache=cache, env=env)


def counting_jobs(server) -> int:
    return sum(1 for job in list(server.jobs.values()) if job.kind == "video-understanding" and job.inputs.get("task") == "counting")


def test_no_secret_in_the_index_or_the_cache(wavespeed):
    for path in [*wavespeed.db.rglob("*"), *wavespeed.cache.rglob("*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


# --- item 15: ground with what made the collection ------------------------------------------------
def test_ground_uses_the_backend_that_made_the_collection_and_marks_what_it_cannot_check(wavespeed, run, monkeypatch):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(wavespeed.cache))
    before = counting_jobs(wavespeed.server)
    # not 'person': counted at index time, its answers are cached (same media, backend, model, task)
    code, out, err = run("search", "a rocket", "--db", wavespeed.db, "--collection", "mixed", "--ground")
    assert code == 0, err
    assert "Traceback" not in err and "ConfigurationError" not in err and KEY not in out + err
    cells = list(zip(kinds_of(out), found_cells(out)))
    images = [cell for kind, cell in cells if kind == "image"]
    segments = [cell for kind, cell in cells if kind == "video_segment"]
    assert images == ["-", "-"]  # WaveSpeed only captions images: nothing to check there
    assert len(segments) == 2 and all(c.split()[0] in ("yes", "no") and c.split()[1].strip("()").isdigit() for c in segments)
    assert counting_jobs(wavespeed.server) == before + 2  # the segments were checked on WaveSpeed
    assert "looked for 'rocket' in 2 hit(s) (0 from cache) with wavespeed" in err
    assert "2 hit(s) not checked: backend 'wavespeed' cannot run count on images or slides" in err

    code, out, err = run("search", "a rocket", "--db", wavespeed.db, "--collection", "mixed", "--ground", "--json")
    assert code == 0, err
    hits = jsonl(out)
    assert counting_jobs(wavespeed.server) == before + 2  # answers cached: nothing paid twice
    for hit in hits:
        if hit["kind"] == "image":
            assert hit["grounded"] is None and "cannot run count" in hit["evidence"]["skipped"]
        else:
            assert hit["grounded"] in (0.0, 1.0) and isinstance(hit["evidence"]["count"], int)
            assert "error" not in hit["evidence"]


def test_search_grounds_in_python_with_the_collections_backend_and_a_run_kept_open(wavespeed):
    from molmo_rag.grounding import GroundedHits
    from molmo_rag.run import Run, RunOptions

    before = counting_jobs(wavespeed.server)
    query = dict(db=wavespeed.db, collection="mixed")
    first = pipeline.search("a cup of coffee", **query, ground=RunOptions(cache=wavespeed.cache))  # no backend named
    assert isinstance(first, GroundedHits) and first.backend == "wavespeed" and first.made_with["backend"] == "wavespeed"
    assert counting_jobs(wavespeed.server) == before + 2 and first.checked == 2 and first.cached == 0
    assert sorted(h.kind for h in first if h.grounded is None) == ["image", "image"] and len(first.skipped) == 2
    with Run(backend="wavespeed", cache=wavespeed.cache) as run:
        for _ in range(2):  # the run is left open: usable again
            again = pipeline.search("a cup of coffee", **query, ground=run)
            assert again.cached == 2 and [h.source for h in again] == [h.source for h in first]
    assert counting_jobs(wavespeed.server) == before + 2  # answers cached: nothing paid twice


def test_ground_exits_1_when_the_backend_can_check_no_hit(wavespeed, run, monkeypatch):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(wavespeed.cache))
    code, out, err = run("search", "a person", "--db", wavespeed.db, "--collection", "photos", "--ground")
    assert code == 1
    assert found_cells(out) == ["-", "-"]  # the hits are still shown
    assert "ConfigurationError" not in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("molmo-rag: error: --ground: no hit could be checked") and "'wavespeed' cannot run count" in last


@pytest.fixture
def capped_local(monkeypatch):
    """The random tiny model never stops by itself: every local backend a Run makes (index and
    ``search --ground`` alike) caps its answers, so the tests stay fast."""
    from molmo_rag import run as run_module

    create = run_module.create_backend

    def capped(backend=None, model=None, concurrency=None, **options):
        if backend == "local":
            options = {"max_new_tokens": 12, "device": "cpu", **options}
        return create(backend, model, concurrency, **options)

    monkeypatch.setattr(run_module, "create_backend", capped)


def test_ground_on_a_collection_made_with_the_tiny_local_model(media, run, tmp_path, tiny_molmo2_path, capped_local):
    db = tmp_path / "db"
    code, out, err = run("index", media / "photos", "--backend", "local", "--model", tiny_molmo2_path, "--db", db, "--quiet")
    assert code == 0, err
    code, out, err = run("search", "a cup of coffee", "--db", db, "--ground", "--json")
    assert code == 0, err
    hits = jsonl(out)
    assert len(hits) == 2 and "ConfigurationError" not in err and "Molmo2-4B" not in err
    for hit in hits:  # checked by the tiny model the collection was made with: an answer, no error
        assert hit["grounded"] in (0.0, 1.0) and "error" not in hit["evidence"] and hit["evidence"]["answer"] is not None


def test_ground_keeps_its_answers_under_the_cache_dir_given_to_search(media, run, tmp_path, tiny_molmo2_path, capped_local):
    from molmo_rag.cache import ResultCache

    db, own = tmp_path / "db", tmp_path / "ground-cache"
    assert run("index", media / "photos", "--backend", "local", "--model", tiny_molmo2_path, "--db", db, "--quiet")[0] == 0
    code, out, err = run("search", "a cup of coffee", "--db", db, "--ground", "--cache-dir", own, "--json")
    assert code == 0, err
    with ResultCache(own, write=False) as cache:
        assert len(cache) == 2  # one Count answer per checked hit, kept where --cache-dir said


def test_without_a_record_the_hits_own_payload_names_the_backend():
    """Collections indexed before the record existed: the hits' payload says what made them."""
    from molmo_rag.grounding import grounding_backend, made_with
    from molmo_rag.index.store import Hit

    local = [Hit.from_payload({"kind": "image", "source": "/a.png", "backend": "local", "model": "/models/tiny"})]
    hosted = [Hit.from_payload({"kind": "image", "source": "/b.png", "backend": "wavespeed", "model": "wavespeed-ai/molmo2/image-captioner"})]
    assert made_with(local) == {"backend": "local", "model": "/models/tiny"}
    assert made_with(hosted) == {"backend": "wavespeed", "model": None}  # an endpoint, not a model to ask for
    assert made_with(local + hosted) is None
    assert grounding_backend(local) == ("local", "/models/tiny")
    assert grounding_backend(local, "openai") == ("openai", None)  # told otherwise: not the recorded model
    assert grounding_backend(local, None, "/models/other") == ("local", "/models/other")


@pytest.fixture
def spots(tmp_path):
    folder = tmp_path / "world"
    truth = samples.spots_world(folder, hits=2, misses=2)
    db = tmp_path / "db"
    pipeline.index([folder], backend=_pixel_backend.PixelBackend(), db=db, cache=False)
    return db, truth


def test_a_failed_check_shows_error_and_its_cause_never_no(spots, run):
    db, truth = spots
    gone = next(source for source, n in truth.items() if n == 0)
    Path(gone).unlink()
    code, out, err = run("search", "bright spots", "--db", db, "--ground")  # made with 'pixels': no --backend needed
    assert code == 0, err
    header, *rows = out.splitlines()
    by_source = {next(s for s in truth if s in row): cell for row, cell in zip(rows, found_cells(out))}
    assert by_source[gone].startswith("error: SourceNotFoundError")
    assert all(cell.split()[0] in ("yes", "no") for source, cell in by_source.items() if source != gone)
    assert gone in err  # the failure's own line names the file

    for source in truth:
        Path(source).unlink(missing_ok=True)
    # another target: the answers about 'bright spots' are cached (media reopen only on a miss)
    code, out, err = run("search", "bright squares", "--db", db, "--ground", "--json")
    assert code == 1
    hits = jsonl(out)
    assert len(hits) == 4 and all(h["evidence"]["error"].startswith("SourceNotFoundError") for h in hits)
    assert err.strip().splitlines()[-1].startswith("molmo-rag: error: --ground: no hit could be checked")


# --- item 16: count words that find nothing to filter on -------------------------------------------
def test_a_count_phrase_kept_as_text_says_why(wavespeed, run, monkeypatch):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(wavespeed.cache))
    code, out, err = run("search", "at least 2 people", "--db", wavespeed.db, "--collection", "photos")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "kept" in line]
    assert len(notes) == 1 and len(out.splitlines()) == 3  # unfiltered: both photos, and one line saying why
    assert "'at least 2 people'" in notes[0] and "'person'" in notes[0]
    assert "counted at index time but no item has a count" in notes[0]

    code, out, err = run("search", "at least 2 dogs and no cars", "--db", wavespeed.db, "--collection", "photos", "--json")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "kept" in line]
    assert len(notes) == 1 and len(jsonl(out)) == 2
    assert "'dog' was never counted" in notes[0] and "'car' was counted at index time but no item has a count" in notes[0]

    code, out, err = run("search", "at least 1 person", "--db", wavespeed.db, "--collection", "mixed")
    assert code == 0 and "kept" not in err and "read 'at least 1 person' as count.person>=1" in err


def test_labels_tells_never_counted_from_counted_without_counts(wavespeed, run, spots, monkeypatch):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(wavespeed.cache))
    code, out, err = run("labels", "--db", wavespeed.db, "--collection", "photos")
    assert code == 0 and out == ""
    assert "car, person: counted at index time (--count) but no item has a count" in err
    assert "index with --count" not in err
    code, out, err = run("labels", "--db", wavespeed.db, "--collection", "photos", "--json")
    assert jsonl(out) == [{"labels": [], "without_counts": ["car", "person"]}]
    code, out, err = run("labels", "--db", wavespeed.db, "--collection", "mixed")
    assert code == 0 and out.split() == ["person"] and err == ""
    db, _ = spots  # indexed without --count
    code, out, err = run("labels", "--db", db)
    assert code == 0 and "no counted labels: index with --count LABEL" in err
    assert pipeline.count_labels(db=db) == pipeline.CountLabels(counted=[], without_counts=[])


# --- item 12 (part): count labels in any script -----------------------------------------------------
def _bands(n: int) -> Image.Image:
    a = np.zeros((40, 120, 3), np.uint8)
    a[:] = (30, 60, 200)
    for k in range(n):
        a[5:12, 4 + 12 * k : 9 + 12 * k] = 255
    return Image.fromarray(a)


def test_a_cjk_count_label_is_counted_and_filtered_on(tmp_path, run):
    assert [label_key(x) for x in ("人", "Traffic lights", "Café", "ｃａｒ")] == ["人", "traffic_lights", "café", "car"]
    items = [MediaItem.from_pil(_bands(n), source=f"/world/bands-{n}.png") for n in range(5)]
    db = tmp_path / "db"
    summary = pipeline.index(items, backend=FakeBackend(), db=db, cache=False, count=["人"])
    assert not summary.failed and summary.indexed == 5
    assert pipeline.labels(db=db) == ["人"]

    def bands(hits) -> list[int]:
        return sorted(int(h.source.rsplit("-", 1)[1].split(".")[0]) for h in hits)

    assert bands(pipeline.search("a picture", db=db, where="count.人>=3", top=20)) == [3, 4]
    assert bands(pipeline.search("at least 3 人", db=db, count_words=True, top=20)) == [3, 4]
    code, out, err = run("search", "pictures with at least 3 人", "--db", db, "--top", "20")
    assert code == 0 and "read 'at least 3 人' as count.人>=3" in err and len(out.splitlines()) == 3


def test_a_refused_count_label_says_what_a_label_may_be(tmp_path, run):
    photo = tmp_path / "photo.png"
    _bands(2).save(photo)
    for args in (("index", photo, "--backend", "pixels", "--db", tmp_path / "db", "--count", "person,##"),
                 ("search", "x", "--db", tmp_path / "db", "--where", "count.##>=1")):
        code, out, err = run(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "'##' has no letters or digits" in err and "letters or digits of any script" in err
        assert err.startswith(f"molmo-rag: error: --{'count' if args[0] == 'index' else 'where'}: ")
    assert not (tmp_path / "db").exists()  # refused before anything was read or indexed
    with pytest.raises(UsageError, match="letters or digits of any script"):
        pipeline.index([photo], backend=FakeBackend(), db=tmp_path / "db", cache=False, count=["--"])


# --- item 10: long queries ----------------------------------------------------------------------------
_PARSE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from molmo_rag.index.count_words import split_counts

    query = "at least 3 people " * int(sys.argv[1])
    read = split_counts(query, ["person", "car"])
    print(json.dumps({"chars": len(query), "where": read.where, "phrases": len(read.phrases), "text": read.text}))
    """
)


def test_a_megabyte_of_count_phrases_is_read_in_linear_time():
    """Before the fix each phrase found re-scanned the query from its start: 120 KB took
    105 s, a megabyte would take hours. The subprocess's timeout only catches that: it is
    hundreds of times what a linear read takes."""
    repeats = 60_000  # 1.08 MB, 60,000 phrases
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE_SCRIPT, str(repeats)], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["chars"] > 1_000_000 and report["phrases"] == repeats
    assert report["where"] == ["count.person>=3"] and report["text"] == ""  # one condition, not 60,000 copies


def test_a_query_over_the_limit_is_a_usage_error(wavespeed, run, monkeypatch):
    from molmo_rag.index.count_words import MAX_QUERY_CHARS

    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(wavespeed.cache))
    assert MAX_QUERY_CHARS == 4096
    longest = ("at least 3 people " * 300)[:MAX_QUERY_CHARS]
    code, out, err = run("search", longest, "--db", wavespeed.db, "--collection", "photos")
    assert code == 0, err
    code, out, err = run("search", longest + "x", "--db", wavespeed.db, "--collection", "photos")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("molmo-rag: error: QUERY: the query is 4,097 characters long") and "4,096" in err
    with pytest.raises(UsageError, match="at most 4,096") as refused:
        pipeline.search("x" * 5000, db=wavespeed.db, collection="photos")
    assert refused.value.option == "query"
