"""``molmo-rag index`` and ``search`` end to end: real files (photos, a PDF deck, an H.264
video, a broken file), real readers, embedded Qdrant, and three kinds of backend: the
pixel-statistics test backend, the OpenAI-compatible REST backend against its loopback
server, and the tiny local Molmo2 checkpoint."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import _pixel_backend
from molmo_rag.cli import main

pytest.importorskip("av")
pytest.importorskip("pypdfium2")


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    from molmo_rag.testing import samples

    root = tmp_path_factory.mktemp("library")
    for sub in ("photos", "decks", "clips"):
        (root / sub).mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        image = samples.photo(name)
        image.thumbnail((160, 160))
        image.save(root / "photos" / f"{name}.png")
    samples.make_pdf(root / "decks" / "talk.pdf", [["Quarterly results", "Revenue grew 12%"], ["Team", "Hiring plans"]])
    samples.make_video(
        root / "clips" / "street.mp4",
        [samples.Shot("rocket", 4, "static"), samples.Shot("coffee", 4, "static")],
        size=(160, 96),
    )
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MOLMO_RAG_BACKEND", raising=False)
    monkeypatch.delenv("MOLMO_RAG_MODEL", raising=False)
    _pixel_backend.register(monkeypatch)

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_index_and_search_a_mixed_folder(library, run, tmp_path):
    db = tmp_path / "db"
    code, out, err = run("index", library, "--backend", "pixels", "--db", db, "--count", "person,bright spots", "--json")
    assert code == 0, err
    lines = jsonl(out)
    records = [r for r in lines if "status" in r]
    failures = [r for r in lines if "error" in r]
    summary = lines[-1]["summary"]
    assert sorted((r["kind"], Path(r["source"]).name) for r in records) == [
        ("image", "astronaut.png"), ("image", "chelsea.png"), ("image", "coffee.png"),
        ("slide", "talk.pdf"), ("slide", "talk.pdf"),
        ("video_segment", "street.mp4"), ("video_segment", "street.mp4"),
    ]
    assert [Path(f["source"]).name for f in failures] == ["broken.jpg"] and failures[0]["error_type"] == "CorruptMediaError"
    assert (summary["items"], summary["indexed"], summary["done"], summary["cached"]) == (7, 7, 28, 0)
    assert "broken.jpg" in err  # failures are listed on stderr too
    slides = {r["slide"]: r for r in records if r["kind"] == "slide"}
    assert slides[1]["title"] == "Quarterly results" and "Revenue grew" in slides[1]["slide_text"]
    assert {(r["start"], r["end"]) for r in records if r["kind"] == "video_segment"} == {(0.0, 4.0), (4.0, 8.0)}
    assert all(set(r["counts"]) == {"person", "bright_spots"} for r in records)

    def search(*args: str) -> list[dict]:
        code, out, err = run("search", "a picture", "--db", db, "--json", "--top", "50", *args)
        assert code == 0, err
        return jsonl(out)

    def ids(hits):
        return sorted(h["media_id"] for h in hits)

    assert ids(search()) == ids(records)
    assert ids(search("--kind", "slide")) == ids(r for r in records if r["kind"] == "slide")
    assert ids(search("--kind", "video", "--kind", "image")) == ids(r for r in records if r["kind"] != "slide")
    for cond, test in [("count.person>=2", lambda n: n >= 2), ("count.person<2", lambda n: n < 2), ("count.person==1", lambda n: n == 1)]:
        expected = ids(r for r in records if test(r["counts"]["person"]))
        assert ids(search("--where", cond)) == expected, cond
    both = ids(r for r in records if r["counts"]["person"] >= 1 and r["kind"] == "image")
    assert ids(search("--where", "count.person>=1", "--where", "kind==image")) == both
    assert ids(search("--source", library / "photos")) == ids(r for r in records if r["kind"] == "image")
    assert ids(search("--source", library / "decks" / "talk.pdf")) == ids(r for r in records if r["kind"] == "slide")
    assert [(h["start"], h["end"]) for h in search("--after", "5")] == [(4.0, 8.0)]
    assert [(h["start"], h["end"]) for h in search("--before", "4")] == [(0.0, 4.0)]
    assert len(search("--top", "2")) == 2
    hit = search("--kind", "image", "--top", "1")[0]
    assert hit["thumbnail"].startswith("data:image/jpeg;base64,") and hit["backend"] == "pixels" and hit["score"] <= 1

    code, out, err = run("search", "quarterly results", "--db", db, "--kind", "slide")
    assert code == 0
    header, first, *_ = out.splitlines()
    assert header.split() == ["score", "kind", "where", "caption"]
    assert "talk.pdf slide 1" in first  # the slide with those words in its title comes first


def test_rerun_through_the_rest_backend_makes_no_calls_and_keeps_the_key_out(library, run, tmp_path, monkeypatch):
    from molmo_rag.testing.loopback import OpenAIServer

    key = "sk-test-0123456789abcdef"
    db, cache = tmp_path / "db", tmp_path / "cache"
    with OpenAIServer(api_key=key, latency=0.0) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", key)
        args = ("index", library / "photos", library / "decks", "--backend", "openai", "--db", db, "--cache-dir", cache, "--ask", "Is it indoors?", "--quiet")
        code, out, err = run(*args)
        assert code == 0, err
        assert "indexed 5 item(s)" in out and "15 result(s) from openai, 0 from cache" in out
        sent = server.stats.requests
        assert sent == 15
        code, out, err = run(*args)
        assert code == 0 and server.stats.requests == sent  # not one request
        assert "0 result(s) from openai, 15 from cache" in out and "0 written, 5 unchanged" in out
        code, out, err = run(*args, "--no-cache")
        assert server.stats.requests == sent + 15 and "5 unchanged" in out
    for path in [*cache.rglob("*"), *db.rglob("*")]:
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    assert key not in out + err


def test_setup_errors_are_one_line_and_exit_1(library, run, tmp_path):
    code, out, err = run("search", "x", "--db", tmp_path / "db", "--where", "persons>2")
    assert code == 2 and err.startswith("molmo-rag: error: --where: bad condition") and "Traceback" not in err
    code, out, err = run("search", "x", "--db", tmp_path / "db")
    assert code == 1 and "index something first" in err and "--" not in err.split("error: ", 1)[1][:2]
    code, out, err = run("index", library / "photos", "--backend", "caption-only", "--db", tmp_path / "db", "--count", "person")
    assert code == 1 and "'caption-only' cannot run task 'count'" in err and "openai" in err
    code, out, err = run("index", library / "photos", "--backend", "pixels", "--db", tmp_path / "db", "--qdrant-url", "http://127.0.0.1:9")
    assert code == 2 and err.startswith("molmo-rag: error: --qdrant-url: ") and "not both" in err


def test_exit_codes(library, run, tmp_path):
    # everything failed -> 1; some failed -> 0, or 1 with --strict
    code, out, err = run("index", library / "photos" / "broken.jpg", "--backend", "pixels", "--db", tmp_path / "db")
    assert code == 1 and "CorruptMediaError" in err
    code, out, err = run("index", library / "photos", "--backend", "pixels", "--db", tmp_path / "db", "--quiet")
    assert code == 0 and "1 failure(s)" in err
    code, out, err = run("index", library / "photos", "--backend", "pixels", "--db", tmp_path / "db", "--strict")
    assert code == 1


def test_tiny_local_checkpoint(library, run, tmp_path, tiny_molmo2_path, monkeypatch):
    from molmo_rag.cli import common

    # The random tiny model never stops by itself: cap its answers so the test stays fast.
    from_flags = common.options_from_flags
    monkeypatch.setattr(
        common, "options_from_flags", lambda **flags: from_flags(**flags, backend_options={"max_new_tokens": 12, "device": "cpu"})
    )
    db = tmp_path / "db"
    code, out, err = run("index", library / "photos" / "coffee.png", library / "decks", "--backend", "local", "--model", tiny_molmo2_path, "--db", db, "--count", "cups", "--json")
    assert code == 0, err
    summary = jsonl(out)[-1]["summary"]
    assert (summary["items"], summary["indexed"], summary["done"], summary["failed"]) == (3, 3, 9, [])
    hits = jsonl(run("search", "a cup of coffee", "--db", db, "--json")[1])
    assert len(hits) == 3 and {h["backend"] for h in hits} == {"local"} and all(h["model"] == str(tiny_molmo2_path) for h in hits)
    code, out, err = run("index", library / "photos" / "coffee.png", library / "decks", "--backend", "local", "--model", tiny_molmo2_path, "--db", db, "--count", "cups", "--json")
    assert jsonl(out)[-1]["summary"]["cached"] == 9 and jsonl(out)[-1]["summary"]["done"] == 0


def _points(db: Path) -> dict:
    """Each point's payload and vector; the picture paths, which name each run's own cache
    folder, are compared by the picture they hold."""
    from molmo_rag.index.store import QdrantIndex

    paths = ("image_path", "image_url", "frame_paths")

    def same_where(payload: dict) -> dict:
        out = {k: v for k, v in payload.items() if k not in paths and k != "metadata"}
        out["metadata"] = {k: v for k, v in payload["metadata"].items() if k not in paths}
        out["picture"] = Path(payload["image_path"]).read_bytes()
        return out

    with QdrantIndex(db, create=False) as store:
        points, _ = store.scroll(limit=1000, with_vectors=True)
        return {str(p.id): (same_where(p.payload), [round(x, 5) for x in p.vector["text-dense"]]) for p in points}


def test_a_killed_run_resumes_to_the_same_index(library, tmp_path):
    """SIGKILL an index run midway, run it again: same points as an uninterrupted run, and
    the second run asks the backend only for what the first had not finished."""
    from molmo_rag.testing.loopback import OpenAIServer

    key = "loopback-key"
    with OpenAIServer(api_key=key, latency=0.15) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": key}
        env.pop("MOLMO_RAG_BACKEND", None)

        def command(name: str) -> list[str]:
            return [sys.executable, "-c", "import sys; from molmo_rag.cli import main; sys.exit(main(sys.argv[1:]))", "index", str(library), "--backend", "openai",
                    "--concurrency", "2", "--db", str(tmp_path / name / "db"),
                    "--cache-dir", str(tmp_path / name / "cache"), "--quiet"]

        subprocess.run(command("reference"), env=env, check=True, capture_output=True, timeout=300)
        total = server.stats.requests
        assert total == 14  # 7 items x (caption, scene)

        server.reset_stats()
        proc = subprocess.Popen(command("killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cache_file = tmp_path / "killed" / "cache" / "results.sqlite3"
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if cache_file.exists():
                try:
                    done = sqlite3.connect(cache_file).execute("SELECT COUNT(*) FROM results").fetchone()[0]
                except sqlite3.Error:
                    done = 0
                if done >= 4:  # the first chunks are cached and indexed
                    break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        first = server.stats.requests
        assert 4 <= done < total and first < total

        server.reset_stats()
        subprocess.run(command("killed"), env=env, check=True, capture_output=True, timeout=300)
        assert server.stats.requests <= total - done  # cached work is not redone
        assert _points(tmp_path / "killed" / "db") == _points(tmp_path / "reference" / "db")


def test_failure_lines_tell_tasks_of_one_name_apart():
    from molmo_rag.analyze import Failure
    from molmo_rag.cli.index_cmd import _failure_line
    from molmo_rag.errors import BackendError
    from molmo_rag.tasks import Ask, Count

    person = Failure(source="/m/a.jpg", error=BackendError("down"), task=Count(target="person")).to_json()
    car = Failure(source="/m/a.jpg", error=BackendError("down"), task=Count(target="car")).to_json()
    assert (person["task"], person["target"], car["target"]) == ("count", "person", "car")
    assert _failure_line(person) == "  /m/a.jpg [count person]: BackendError: down"
    asked = Failure(source="/m/a.jpg", error=BackendError("down"), task=Ask(question="Is it day?")).to_json()
    assert _failure_line(asked) == "  /m/a.jpg [ask Is it day?]: BackendError: down"


def test_search_kinds_comma_separated_and_memory_db_refused(library, run, tmp_path):
    db = tmp_path / "db"
    code, out, err = run("index", library / "photos" / "coffee.png", library / "clips", "--backend", "pixels", "--db", db, "--quiet")
    assert code == 0, err
    kinds = [h["kind"] for h in jsonl(run("search", "x", "--db", db, "--kind", "image,video", "--json")[1])]
    assert sorted(set(kinds)) == ["image", "video_segment"] and kinds.count("image") == 1
    same = [h["kind"] for h in jsonl(run("search", "x", "--db", db, "--kind", "video_segment", "--json")[1])]
    assert same and set(same) == {"video_segment"}
    assert all(Path(h["source"]).is_absolute() for h in jsonl(run("search", "x", "--db", db, "--json")[1]))
    for args in (("index", library / "photos" / "coffee.png", "--backend", "pixels"), ("search", "x")):
        code, out, err = run(*args, "--db", ":memory:")
        assert code == 2 and err.startswith("molmo-rag: error: --db: ") and "would be lost" in err and "Traceback" not in err


def test_remove_a_deleted_folder_and_a_mistyped_path(run, tmp_path):
    import shutil

    from molmo_rag.testing import samples

    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in ("coffee", "rocket"):
        image = samples.photo(name)
        image.thumbnail((96, 96))
        image.save(folder / f"{name}.png")
    db = tmp_path / "db"
    assert run("index", folder, "--backend", "pixels", "--db", db)[0] == 0
    shutil.rmtree(folder)
    code, out, err = run("remove", tmp_path / "shot", "--db", db)  # a typo: nothing goes
    assert code == 1 and "nothing in the index matches" in err
    code, out, err = run("remove", folder, "--db", db, "--dry-run")
    assert code == 0 and out.splitlines()[-1] == "would remove 2 point(s) of 2 source(s)"
    code, out, err = run("remove", folder, "--db", db, "--json")
    assert code == 0 and jsonl(out)[-1]["summary"] == {"removed": 2, "sources": 2, "dry_run": False}
    code, out, err = run("search", "coffee", "--db", db)
    assert code == 0 and err.strip() == "no hits"


def test_search_ground_checks_with_the_collections_backend_unless_told(library, run, tmp_path):
    from molmo_rag.cache import ResultCache

    db, answers = tmp_path / "db", tmp_path / "ground-cache"
    assert run("index", library / "photos", "--backend", "pixels", "--db", db, "--quiet")[0] == 0
    code, out, err = run("search", "bright spots", "--db", db, "--ground", "--ground-top", "2", "--cache-dir", answers, "--json")
    assert code == 0, err
    hits = jsonl(out)
    assert len(hits) == 3 and ["grounded" in h for h in hits] == [True, True, False]  # past --ground-top: unchecked
    assert all(h["evidence"]["target"] == "bright spots" and h["evidence"]["count"] is not None for h in hits[:2])
    with ResultCache(answers, write=False) as cache:
        assert len(cache) == 2  # one Count answer per checked hit, from the backend that made the collection
    # --backend names another: one that can count nothing is refused before it is made
    code, out, err = run("search", "bright spots", "--db", db, "--ground", "--backend", "caption-only", "--cache-dir", answers)
    assert code == 1 and out == "" and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("molmo-rag: error: backend 'caption-only' cannot run task 'count'; backends that can: ")
