"""LlamaIndex's and LangChain's own QdrantVectorStore classes open a collection molmo-rag
wrote, retrieve from it and get the metadata back ("one collection, every door")."""

import numpy as np
import pytest
from _pixel_backend import PixelBackend
from PIL import Image

from molmo_rag import pipeline
from molmo_rag.index.embeddings import get_embedder
from molmo_rag.media.items import MediaItem

COLOURS = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 160, 40)}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("doors")
    items = []
    for i, (name, colour) in enumerate(COLOURS.items()):
        a = np.zeros((40, 60, 3), np.uint8)
        a[:] = colour
        a[5:10, 5 + 10 * np.arange(i + 1)[:, None] + np.arange(3)] = 255
        items.append(MediaItem.from_pil(Image.fromarray(a), source=f"/photos/{name}.png"))
    # the frameworks' stock classes open qdrant-client's local mode, which a user picks with storage="local"
    summary = pipeline.index(
        items, backend=PixelBackend(), db=tmp / "db", storage="local", cache=tmp / "cache", count=["blobs"], collection="media"
    )
    assert summary.indexed == 3
    from qdrant_client import QdrantClient

    c = QdrantClient(path=str(tmp / "db"))
    yield c
    c.close()


def test_llama_index_reads_the_collection(client):
    pytest.importorskip("llama_index.vector_stores.qdrant")
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    store = QdrantVectorStore(client=client, collection_name="media")  # defaults: vector "text-dense", text key "text"
    query = VectorStoreQuery(query_embedding=get_embedder().embed_query("a bright blue picture"), similarity_top_k=3)
    result = store.query(query)
    assert len(result.nodes) == 3
    top = result.nodes[0]
    assert top.metadata["source"] == "/photos/blue.png" and "blue" in top.text
    assert top.metadata["kind"] == "image" and top.metadata["counts"] == {"blobs": 2}
    assert top.metadata["caption"] in top.text and top.metadata["thumbnail"].startswith("data:image/jpeg")


def test_langchain_reads_the_collection(client):
    pytest.importorskip("langchain_qdrant")
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore

    ours = get_embedder()

    class WordLlama(Embeddings):
        def embed_documents(self, texts):
            return ours.embed(texts)

        def embed_query(self, text):
            return ours.embed_query(text)

    store = QdrantVectorStore(client=client, collection_name="media", embedding=WordLlama(), vector_name="text-dense")
    docs = store.similarity_search("a bright green picture", k=3)
    assert len(docs) == 3
    top = docs[0]
    assert top.metadata["source"] == "/photos/green.png" and "green" in top.page_content
    assert top.metadata["counts"] == {"blobs": 3} and top.metadata["media_id"]
