"""qdrant-client as a store: a Qdrant server or cluster by URL, ``:memory:``, and the
local-mode folders molmo-rag wrote before Qdrant Edge became the embedded default (and
that a user still picks with ``storage="local"`` for the frameworks' stock classes).

The same narrow interface as :class:`molmo_rag.index.edge.EdgeStorage`, so
:class:`~molmo_rag.index.store.QdrantIndex` has one code path for every store.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from .conditions import to_qdrant_filter

__all__ = ["ClientStorage"]


class ClientStorage:
    """The collections behind one ``qdrant_client.QdrantClient``."""

    def __init__(self, client: Any, *, local_mode: bool):
        self.client = client
        self.local_mode = local_mode
        self.kind = "qdrant-local" if local_mode else "qdrant-server"

    def names(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def exists(self, name: str) -> bool:
        return self.client.collection_exists(name)

    def vectors(self, name: str) -> dict[str, int]:
        vectors = self.client.get_collection(name).config.params.vectors
        if isinstance(vectors, dict):
            return {vec: params.size for vec, params in vectors.items()}
        return {"": vectors.size} if vectors is not None else {}

    def metadata(self, name: str) -> dict:
        return dict(self.client.get_collection(name).config.metadata or {})

    def set_metadata(self, name: str, metadata: dict) -> None:
        self.client.update_collection(name, metadata=metadata)

    def create(self, name: str, vectors: dict[str, int], metadata: dict) -> None:
        from qdrant_client import models

        self.client.create_collection(
            name,
            vectors_config={vec: models.VectorParams(size=size, distance=models.Distance.COSINE) for vec, size in vectors.items()},
            metadata=metadata,
        )

    def index_field(self, name: str, key: str, schema: str) -> None:
        if self.local_mode:
            return  # local mode ignores payload indexes (and warns about each one)
        from qdrant_client import models

        kind = {"keyword": models.PayloadSchemaType.KEYWORD, "integer": models.PayloadSchemaType.INTEGER, "float": models.PayloadSchemaType.FLOAT}[schema]
        self.client.create_payload_index(name, key, field_schema=kind)

    def indexed_fields(self, name: str) -> dict[str, str]:
        schema = self.client.get_collection(name).payload_schema or {}
        return {key: str(getattr(info.data_type, "value", info.data_type)).lower() for key, info in schema.items()}

    def upsert(self, name: str, points: Sequence[tuple[str, dict[str, list[float]], dict]]) -> None:
        from qdrant_client import models

        structs = [models.PointStruct(id=pid, vector=vec, payload=payload) for pid, vec, payload in points]
        self.client.upsert(name, points=structs, wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        from qdrant_client import models

        self.client.delete(name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def retrieve(self, name: str, ids: Sequence[str], fields: list[str] | bool = True, vectors: bool = False) -> list[Any]:
        return self.client.retrieve(name, ids=list(ids), with_payload=fields, with_vectors=vectors)

    def scroll(self, name: str, flt: Any, fields: list[str] | bool, limit: int, offset: Any, vectors: bool = False) -> tuple[list[Any], Any]:
        return self.client.scroll(name, scroll_filter=to_qdrant_filter(flt), limit=limit, offset=offset, with_payload=fields, with_vectors=vectors)

    def query(self, name: str, vector: Sequence[float], using: str, flt: Any, top: int) -> list[Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode's note about payload indexes
            return self.client.query_points(name, query=list(vector), using=using, query_filter=to_qdrant_filter(flt), limit=top, with_payload=True).points

    def count(self, name: str, flt: Any = None) -> int:
        return self.client.count(name, count_filter=to_qdrant_filter(flt), exact=True).count

    def settle(self) -> None:
        """Nothing to do: qdrant-client's stores index as they write."""

    def close(self) -> None:
        self.client.close()
