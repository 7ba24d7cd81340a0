"""A model actor's process killed (SIGKILL) mid-run: Ray restarts it and retries its
batch, and the run ends with the collection an undisturbed run makes (nothing lost,
nothing written twice)."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from _ray_media import ledger_lines, points  # noqa: E402


@pytest.mark.timeout(400)
def test_a_killed_model_actor_is_restarted_and_nothing_is_lost_or_doubled(ray_cluster, media, pool, reference, tmp_path):
    from molmo_rag.ray import PoolOptions
    from molmo_rag.ray import index as ray_index

    marker, ledger = tmp_path / "died", tmp_path / "ledger"
    options = reference.options(no_cache=True, fake={"die_once": str(marker), "ledger": str(ledger)})
    summary = ray_index(str(media), options, ray=ray_cluster.address, db=str(tmp_path / "db"),
                        pool=PoolOptions(actors=pool.actors, actor_cpus=pool.actor_cpus, batch_rows=2))

    assert marker.exists()  # an actor really died with a batch in hand
    got = points(tmp_path / "db")
    assert sorted(got) == sorted(reference.points)
    for pid, (payload, vector) in reference.points.items():
        assert got[pid][0] == payload and got[pid][1] == vector, pid
    assert summary.items == summary.indexed == len(reference.points)
    assert [f.to_json()["error_type"] for f in summary.failed] == ["CorruptMediaError"]
    # every request answered once: the killed batch had answered nothing, its retry did
    asked = ledger_lines(ledger)
    assert len(asked) == len(set(asked)) == summary.done
    assert {m for m, _ in asked} == {payload["media_id"] for payload, _ in reference.points.values()}
    assert summary.done == reference.summary.done + reference.summary.cached
