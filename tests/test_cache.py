import sqlite3
import subprocess
import sys
import textwrap

import pytest

from molmo_rag.cache import ResultCache, backend_policy, cache_key, default_cache_dir
from molmo_rag.errors import ConfigurationError


def entry(text="A cat.", **kw):
    base = dict(media_id="abc", backend="local", model="m", task="caption(detail=medium)", text=text, fields={"caption": text}, cost_usd=0.002)
    return {**base, **kw}


def test_key_depends_on_every_part_and_is_stable():
    base = cache_key("abc#slide=2", "wavespeed", "allenai/Molmo2-4B", "caption(detail=medium)", {"num_frames": 64})
    assert base == cache_key("abc#slide=2", "wavespeed", "allenai/Molmo2-4B", "caption(detail=medium)", {"num_frames": 64})
    variants = [
        cache_key("abc#slide=3", "wavespeed", "allenai/Molmo2-4B", "caption(detail=medium)", {"num_frames": 64}),
        cache_key("abc#slide=2", "local", "allenai/Molmo2-4B", "caption(detail=medium)", {"num_frames": 64}),
        cache_key("abc#slide=2", "wavespeed", "allenai/Molmo2-8B", "caption(detail=medium)", {"num_frames": 64}),
        cache_key("abc#slide=2", "wavespeed", "allenai/Molmo2-4B", "caption(detail=high)", {"num_frames": 64}),
        cache_key("abc#slide=2", "wavespeed", "allenai/Molmo2-4B", "caption(detail=medium)", {"num_frames": 32}),
    ]
    assert len({base, *variants}) == 6
    # the same key in another process (no per-process salt such as hash())
    code = "from molmo_rag.cache import cache_key; print(cache_key('abc#slide=2','wavespeed','allenai/Molmo2-4B','caption(detail=medium)',{'num_frames':64}))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == base


def test_put_get_roundtrip(tmp_path):
    with ResultCache(tmp_path) as cache:
        assert cache.get("k1") is None
        cache.put("k1", **entry(fields={"caption": "A cat.", "points": [{"x": 0.5, "y": 0.25, "t": None}]}))
        hit = cache.get("k1")
        assert hit.text == "A cat." and hit.fields["points"][0]["x"] == 0.5 and hit.cost_usd == 0.002 and hit.model == "m"
        assert len(cache) == 1
        assert cache.hits == 1 and cache.misses == 1
    with ResultCache(tmp_path) as again:  # persisted
        assert again.get("k1").text == "A cat."
        assert again.clear() == 1 and len(again) == 0


def test_read_false_bypasses_lookups_but_still_writes(tmp_path):
    with ResultCache(tmp_path) as cache:
        cache.put("k", **entry("old"))
    with ResultCache(tmp_path, read=False) as fresh:
        assert fresh.get("k") is None
        fresh.put("k", **entry("new"))
    with ResultCache(tmp_path) as cache:
        assert cache.get("k").text == "new"
    with ResultCache(tmp_path, write=False) as readonly:
        readonly.put("k2", **entry())
        assert readonly.get("k2") is None


def test_default_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    with ResultCache() as cache:
        assert cache.path.parent == tmp_path / "c"
        assert sqlite3.connect(cache.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    monkeypatch.delenv("MOLMO_RAG_CACHE_DIR")
    assert "molmo-rag" in str(default_cache_dir())


def test_unusable_location_is_a_configuration_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigurationError, match="cannot open the result cache"):
        ResultCache(blocker / "sub")


def test_many_processes_write_and_read_at_once(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from molmo_rag.cache import ResultCache
        n = int(sys.argv[1])
        cache = ResultCache({str(tmp_path)!r})
        for i in range(60):
            cache.put(f"p{{n}}-{{i}}", media_id="m", backend="b", model="x", task="t", text=f"{{n}}:{{i}}", fields={{}})
            assert cache.get(f"p{{n}}-{{i}}").text == f"{{n}}:{{i}}"
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with ResultCache(tmp_path) as cache:
        assert len(cache) == 180
        assert len(cache.get_many(f"p{n}-{i}" for n in range(3) for i in range(60))) == 180


def test_backend_policy_reads_marked_fields_that_differ_from_their_default():
    from molmo_rag.options_base import Options, cache_key_field

    class Opts(Options):
        num_frames: int = cache_key_field(16)
        max_fps: float = cache_key_field(1.0)
        concurrency: int = 8
        api_key: str = "sk-secret"

    class WithOptions:
        def __init__(self, **values):
            self.options = Opts(**values)

    assert backend_policy(WithOptions()) == {}
    assert backend_policy(WithOptions(num_frames=8, concurrency=2, api_key="sk-other")) == {"num_frames": 8}

    class Explicit:
        def cache_params(self):
            return {"max_image_side": 512}

    assert backend_policy(Explicit()) == {"max_image_side": 512}


# -- the pending-jobs journal ------------------------------------------------------------------


def test_journal_records_and_clears_pending_jobs(tmp_path):
    with ResultCache(tmp_path) as cache:
        journal = cache.journal("k1")
        assert journal.pending() is None
        journal.submitted("wavespeed", "job-1")
        job = journal.pending()
        assert (job.key, job.backend, job.job_id) == ("k1", "wavespeed", "job-1") and job.submitted_at > 0
        assert journal.pending("openoctopus") is None  # another backend's job is not ours
        journal.submitted("wavespeed", "job-2")  # a resubmission replaces the failed job
        assert [p.job_id for p in cache.pending_jobs()] == ["job-2"]
        journal.finished("job-1")  # not the job recorded any more: kept
        assert journal.pending().job_id == "job-2"
        journal.finished()
        assert journal.pending() is None and cache.pending_jobs() == []


def test_storing_the_answer_clears_its_pending_job(tmp_path):
    with ResultCache(tmp_path) as cache:
        cache.journal("k1").submitted("wavespeed", "job-1")
        cache.journal("k2").submitted("openoctopus", "task-2")
        assert {p.key for p in cache.pending_jobs()} == {"k1", "k2"}
        assert [p.key for p in cache.pending_jobs("openoctopus")] == ["k2"]
        cache.put("k1", **entry())
        assert [p.key for p in cache.pending_jobs()] == ["k2"]
        assert cache.clear() == 1 and [p.key for p in cache.pending_jobs()] == ["k2"]  # paid jobs outlive a clear
    with ResultCache(tmp_path, read=False) as fresh:  # --no-cache still finishes a paid job
        assert fresh.journal("k2").pending().job_id == "task-2"
    with ResultCache(tmp_path, write=False) as readonly:
        assert readonly.journal("k2") is None
        readonly.add_pending("k3", "wavespeed", "job-3")
        readonly.clear_pending("k2")
        assert [p.key for p in readonly.pending_jobs()] == ["k2"]


def test_a_cache_file_from_before_the_journal_opens(tmp_path):
    path = tmp_path / "results.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE results (key TEXT PRIMARY KEY, media_id TEXT NOT NULL, backend TEXT NOT NULL, model TEXT NOT NULL,"
        " task TEXT NOT NULL, text TEXT NOT NULL, fields TEXT NOT NULL, cost_usd REAL NOT NULL DEFAULT 0, created REAL NOT NULL);"
        "INSERT INTO results VALUES ('old', 'm', 'b', 'x', 't', 'kept', '{}', 0, 0);"
    )
    conn.commit()
    conn.close()
    with ResultCache(tmp_path) as cache:
        assert cache.get("old").text == "kept" and cache.pending_jobs() == []
        cache.journal("new").submitted("wavespeed", "job-9")
        assert cache.journal("new").pending().job_id == "job-9"


def test_a_cache_that_cannot_store_costs_the_reuse_never_the_result(tmp_path, monkeypatch, caplog):
    """A full disk under the cache: one warning, every result still handed out."""
    import sqlite3

    from molmo_rag.cache import CacheWriteError, ResultCache
    from molmo_rag.enrich import Enricher
    from molmo_rag.media.items import MediaItem
    from molmo_rag.testing import FakeBackend
    from PIL import Image

    cache = ResultCache(tmp_path / "cache")

    class FullDisk:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, sql, *args):
            if sql.startswith("INSERT") or sql == "COMMIT":
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *args)

        def executemany(self, sql, *args):
            raise sqlite3.OperationalError("database or disk is full")

        def __getattr__(self, name):
            return getattr(self.conn, name)

    with pytest.raises(CacheWriteError, match="no space left"):
        with monkeypatch.context() as m:
            m.setattr(cache, "_conn", FullDisk(cache._conn))
            cache.put("k", media_id="m", backend="b", model="x", task="t", text="a", fields={})
    monkeypatch.setattr(cache, "_conn", FullDisk(cache._conn))
    items = [MediaItem.from_pil(Image.new("RGB", (32, 32), c), source=f"/m/{i}.png") for i, c in enumerate(["red", "blue"])]
    with caplog.at_level("WARNING"):
        out = Enricher(FakeBackend(), cache=cache).enrich(items)
    assert [len(e.results) for e in out] == [2, 2] and not any(e.failures for e in out)
    assert sum("a re-run will ask for them again" in r.getMessage() for r in caplog.records) == 1
