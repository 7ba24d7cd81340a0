"""Sources that cannot be read, among good ones, on the cluster: each reported with its
typed error, the rest indexed as on one machine."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from _ray_media import CORRUPT, counts, points  # noqa: E402


@pytest.mark.timeout(300)
def test_a_corrupt_file_and_a_missing_path_are_reported_and_the_rest_is_indexed(ray_cluster, media, pool, reference, tmp_path):
    from molmo_rag.pipeline import index
    from molmo_rag.ray import index as ray_index

    missing = tmp_path / "gone" / "nowhere.jpg"
    sources = [str(media / "astronaut.jpg"), str(media / CORRUPT), str(missing), str(media / "deck.pptx"), str(media / "coffee.jpg")]
    single = index(sources, reference.options(), db=str(tmp_path / "single"))
    spread = ray_index(sources, reference.options(no_cache=True), ray=ray_cluster.address, pool=pool, db=str(tmp_path / "ray"))

    failed = sorted((f.source, f.to_json()["error_type"]) for f in spread.failed)
    assert failed == sorted([(str(media / CORRUPT), "CorruptMediaError"), (str(missing), "SourceNotFoundError")])
    assert counts(spread) == counts(single)
    got, want = points(tmp_path / "ray"), points(tmp_path / "single")
    assert got == want
    assert {payload["source"] for payload, _ in got.values()} == {str(media / n) for n in ("astronaut.jpg", "deck.pptx", "coffee.jpg")}
    assert spread.items == len(got) == 4  # two photos, two slides
    assert spread.ok
