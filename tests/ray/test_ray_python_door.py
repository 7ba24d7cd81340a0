"""The Python door: ``document_dataset`` -> stages of a user's own -> ``write_documents``."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from _ray_media import CORRUPT, points  # noqa: E402


@pytest.mark.timeout(300)
def test_a_users_filter_between_the_halves_decides_what_lands(ray_cluster, media, pool, reference, tmp_path):
    from molmo_rag.ray import document_dataset, outcome_of, write_documents

    ds = document_dataset(str(media), reference.options(no_cache=True), pool=pool)
    ds = ds.filter(lambda row: row["kind"] != "slide")
    ds = ds.map(lambda row: {**row, "checked_by_user": True})  # a column of the user's own travels along
    summary = write_documents(ds, db=str(tmp_path / "db"))

    landed = points(tmp_path / "db")
    expected = {pid: pv for pid, pv in reference.points.items() if pv[0]["kind"] != "slide"}
    assert any(pv[0]["kind"] == "slide" for pv in reference.points.values())  # the filter had work to do
    assert sorted(landed) == sorted(expected)
    for pid, (payload, vector) in expected.items():
        assert landed[pid][0] == payload and landed[pid][1] == vector, pid
    assert summary.items == summary.indexed == len(expected)
    assert [(f.source, f.to_json()["error_type"]) for f in summary.failed] == [(str(media / CORRUPT), "CorruptMediaError")]

    # the rows are what a user's stage sees: plain columns, and the outcome behind each
    rows = document_dataset(str(media), reference.options(), pool=pool).take_all()
    by_outcome = {}
    for row in rows:
        by_outcome.setdefault(row["outcome"], []).append(row)
    assert set(by_outcome) == {"document", "failure"}
    assert len(by_outcome["document"]) == len(reference.points)
    for row in by_outcome["document"]:
        outcome = outcome_of(row)
        assert outcome.document is not None and row["id"] == outcome.document.id and row["text"] == outcome.document.text
        assert reference.points[row["id"]][0]["text"] == row["text"] and row["kind"] == outcome.document.kind
    [failure] = by_outcome["failure"]
    assert failure["source"].endswith(CORRUPT) and outcome_of(failure).failures[0].to_json()["error_type"] == "CorruptMediaError"


@pytest.mark.timeout(300)
def test_done_points_pass_through_as_done_and_ask_nothing(ray_cluster, media, pool, reference, tmp_path):
    """``done`` (point id -> plan key) turns an item into a ``done`` row with no request;
    a wrong plan key does not."""
    from molmo_rag.ray import document_dataset, outcome_of

    ledger = tmp_path / "ledger"
    keys = {pid: payload["plan_key"] for pid, (payload, _) in reference.points.items()}
    some = dict(sorted(keys.items())[: len(keys) // 2])
    stale = dict(sorted(keys.items())[len(keys) // 2 :][:1])
    stale = {pid: "not-" + key for pid, key in stale.items()}
    options = reference.options(no_cache=True, fake={"ledger": str(ledger)})
    rows = document_dataset(str(media), options, pool=pool, done={**some, **stale}).take_all()
    done = {row["id"] for row in rows if row["outcome"] == "done"}
    assert done == set(some)
    assert all(outcome_of(row).done_id == row["id"] for row in rows if row["outcome"] == "done")
    asked = {media_id for media_id, _ in (line.split("\t") for line in ledger.read_text().splitlines())}
    done_media = {reference.points[pid][0]["media_id"] for pid in some}
    assert not asked & done_media and asked  # the rest was asked, the done ones were not
    assert {reference.points[pid][0]["media_id"] for pid in stale} <= asked
