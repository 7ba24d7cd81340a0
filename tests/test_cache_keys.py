"""Cache keys from declared fields: every option that changes what a backend is sent (or
what is kept of its answer) is marked where it is defined, and only those are in the key."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from molmo_rag.analyze import analyze
from molmo_rag.backends.base import BackendOptions
from molmo_rag.backends.local import LocalBackend, LocalOptions
from molmo_rag.backends.openoctopus import OpenOctopusOptions
from molmo_rag.backends.rest import RestOptions
from molmo_rag.backends.wavespeed import WaveSpeedOptions
from molmo_rag.cache import ResultCache, backend_policy
from molmo_rag.documents import MediaDocument, iter_documents
from molmo_rag.media.options import ReaderOptions
from molmo_rag.options_base import cache_key_fields, cache_key_values
from molmo_rag.tasks import Caption
from molmo_rag.testing import FakeBackend

# Fields that do not change what is sent for one media item nor what is kept of the answer.
# A new field must go either here or be declared with cache_key_field.
READER_NOT_SENT = {
    # finding and fetching: which items there are, not what one of them looks like
    "extensions", "recursive", "include_hidden", "every_file", "url_timeout", "max_download_seconds",
    "max_download_bytes", "download_in_memory_bytes", "cache_dir", "render_timeout",
    # caps that refuse an item (an error, never stored), checks that report one
    "max_image_pixels", "max_video_seconds", "verify_images",
    # segment boundaries: a segment's media id carries its start and end already
    "segment_mode", "segment_seconds", "min_segment_seconds", "max_segment_seconds", "scene_threshold",
    "scene_min_content", "scene_edges", "scene_frame_width", "max_frame_gap_seconds",
}
BACKEND_NOT_SENT = {
    "model",  # in the key on its own
    # the local backend: where and how many at once
    "device", "batch_size",
    # hosted backends: transport, keys, retries, polling, concurrency
    "api_key", "base_url", "concurrency", "max_jobs", "timeout", "request_timeout", "connect_timeout",
    "max_retries", "retry_wait", "retry_wait_max", "max_retry_after", "poll_interval", "poll_age_fraction",
    "poll_min_interval", "poll_max_interval", "poll_timeout", "adaptive_polling", "max_resubmits",
    "submit_grace",
    # a cap that fails an over-long body (never stored as a result); --retry-failed asks again
    "max_response_bytes",
    # WaveSpeed: the same request, waited for in the POST; the same bytes, inline or uploaded
    "enable_sync_mode", "inline_max_bytes",
}


def _all_backend_options() -> set[type[BackendOptions]]:
    found, todo = set(), [BackendOptions]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return {cls for cls in found if cls.__module__.startswith("molmo_rag.")}


def test_every_backend_options_class_is_checked():
    assert {LocalOptions, RestOptions, WaveSpeedOptions, OpenOctopusOptions, BackendOptions} <= _all_backend_options()


@pytest.mark.parametrize(
    "options, not_sent",
    [(ReaderOptions, READER_NOT_SENT)] + [(cls, BACKEND_NOT_SENT) for cls in sorted(_all_backend_options(), key=str)],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_every_field_is_marked_or_listed_as_not_sent(options, not_sent):
    marked = cache_key_fields(options)
    fields = set(options.model_fields)
    assert not (marked & not_sent), f"marked and listed as not sent: {sorted(marked & not_sent)}"
    assert fields - marked - not_sent == set(), "declare these with cache_key_field or list them as not sent"


def test_the_fields_that_change_what_is_sent_are_marked():
    assert {"jpeg_quality", "clip_crf", "max_image_side", "max_frame_side", "slide_dpi", "clip_max_fps",
            "include_hidden_slides"} <= cache_key_fields(ReaderOptions)
    assert {"max_answer_chars", "max_answer_points"} <= cache_key_fields(BackendOptions)
    assert {"num_frames", "max_fps", "max_new_tokens", "min_new_tokens", "dtype",
            "max_answer_chars"} <= cache_key_fields(LocalOptions)


def test_defaults_stay_out_of_the_key_so_a_default_run_keeps_its_key():
    assert cache_key_values(ReaderOptions(), prefix="reader.") == {} == cache_key_values(None, prefix="reader.")
    assert backend_policy(LocalBackend()) == {}
    assert cache_key_values(RestOptions(max_answer_points=7, timeout=5.0)) == {"max_answer_points": 7}
    assert cache_key_values(ReaderOptions(jpeg_quality=70, url_timeout=1.0), prefix="reader.") == {"reader.jpeg_quality": 70}
    assert backend_policy(LocalBackend(num_frames=8, batch_size=1)) == {"num_frames": 8}


# -- through real runs ------------------------------------------------------------------------------


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
        path = tmp_path / "photos" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((40, 60, 3), colour, np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _documents_calls(paths, cache_dir, reader_options) -> int:
    backend = FakeBackend()
    out = list(iter_documents(paths, backend=backend, cache=cache_dir, reader_options=reader_options))
    assert out and all(isinstance(d, MediaDocument) for d in out)
    return backend.calls


def _analyze_calls(paths, cache_dir, reader_options) -> int:
    backend = FakeBackend()
    with ResultCache(cache_dir) as cache:
        out = list(analyze(paths, [Caption()], backend, reader_options=reader_options, cache=cache))
    assert len(out) == len(paths)
    return backend.calls


@pytest.mark.parametrize("run", [_documents_calls, _analyze_calls], ids=["iter_documents", "analyze"])
@pytest.mark.parametrize(
    "changed, hits",
    [
        ({"jpeg_quality": 60}, False),
        ({"clip_crf": 35}, False),
        ({"max_image_side": 512}, False),
        ({"url_timeout": 5.0}, True),
        ({"verify_images": False, "max_download_bytes": 10**6}, True),
    ],
    ids=["jpeg_quality", "clip_crf", "max_image_side", "url_timeout", "unmarked"],
)
def test_a_changed_marked_reader_option_misses_the_cache_and_an_unmarked_one_hits(photos, tmp_path, run, changed, hits):
    cache_dir = tmp_path / "cache"
    first = run(photos, cache_dir, ReaderOptions())
    assert first > 0
    assert run(photos, cache_dir, ReaderOptions()) == 0  # the same run: all from the cache
    again = run(photos, cache_dir, ReaderOptions(**changed))
    assert again == (0 if hits else first)


class _OptionsFake(FakeBackend):
    """FakeBackend with typed backend options, as a real backend has them."""

    def __init__(self, **options):
        super().__init__()
        self.options = LocalOptions(**options)


@pytest.mark.parametrize(
    "changed, hits",
    [({"max_answer_chars": 5000}, False), ({"num_frames": 8}, False), ({"batch_size": 1, "device": "cpu"}, True)],
    ids=["max_answer_chars", "num_frames", "unmarked"],
)
def test_a_changed_marked_backend_option_misses_the_cache(photos, tmp_path, changed, hits):
    def calls(**options) -> int:
        backend = _OptionsFake(**options)
        list(iter_documents(photos, backend=backend, cache=tmp_path / "cache"))
        return backend.calls

    first = calls()
    assert first > 0 and calls() == 0
    assert calls(**changed) == (0 if hits else first)
