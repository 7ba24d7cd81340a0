"""The picture travels with every hit on LlamaIndex's own paths (issue 20), wired the way
LlamaIndex's docs wire things: ``VectorStoreIndex.from_documents`` / ``insert_nodes`` over
the default store and a stock ``QdrantVectorStore``, a ``multimodal=True`` query engine,
``MultiModalVectorStoreIndex``, ``MetadataFilters`` on the flat count keys,
``SimpleDirectoryReader(num_workers=2)``, pickling and JSON of every class, grounding of a
node's own picture, and an embedding that names the model it really uses."""

from __future__ import annotations

import ast
import logging
import pickle
import sys
import tomllib
import types
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, ImageBlock, TextBlock
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MockMultiModalEmbedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_chat_callback
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, NodeWithScore, TextNode
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

import llama_index.readers.molmo as package
from llama_index.readers.molmo import (
    MolmoEmbedding,
    MolmoExtractor,
    MolmoGroundedReranker,
    MolmoNodeParser,
    MolmoReader,
    MolmoVectorStore,
    open_index,
)
from molmo_rag import ConfigurationError, MissingDependencyError, Run, UsageError
from molmo_rag.testing import FakeBackend, samples

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PUBLIC_CLASSES = [MolmoReader, MolmoExtractor, MolmoEmbedding, MolmoNodeParser, MolmoVectorStore, MolmoGroundedReranker]


# -- a small world: photos with known spot counts, a 2-page PDF, a 2-segment video -------------
@pytest.fixture
def media(tmp_path) -> Path:
    root = tmp_path / "media"
    samples.spots_world(root / "photos", hits=2, misses=1)
    samples.make_pdf(root / "talk.pdf", [["Quarterly results", "Revenue grew"], ["Outlook", "Next year"]], size=(320.0, 180.0))
    samples.make_video(
        root / "clip.mp4", [samples.Shot("astronaut", 4.0, "static"), samples.Shot("coffee", 4.0, "static")], size=(96, 64), fps=10
    )
    return root


def read(folder: Path, **options: Any) -> list:
    reader = MolmoReader(backend=FakeBackend(), count=["bright spots"], **options)
    docs = reader.load_data(folder)
    assert not reader.failures
    return docs


def assert_pictures(hits: Sequence[NodeWithScore], docs: list) -> None:
    """Every item comes back as an ImageNode with the reader's id and picture."""
    by_id = {d.id_: d for d in docs}
    assert sorted(h.node.node_id for h in hits) == sorted(by_id)
    for hit in hits:
        node = hit.node
        assert isinstance(node, ImageNode), type(node).__name__
        assert node.image_path and Path(node.image_path).is_file()
        assert node.image_path == str(by_id[node.node_id].image_resource.path)
    assert {h.node.metadata["kind"] for h in hits} == {"image", "slide", "video_segment"}


def qdrant_store(tmp_path: Path):
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant-local"))
    return QdrantVectorStore(collection_name="media", client=client), client


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
@pytest.mark.parametrize("store", ["simple", "qdrant"])
@pytest.mark.parametrize("how", ["from_documents", "insert_nodes"])
def test_every_store_returns_image_nodes_with_the_picture_and_the_readers_ids(media, tmp_path, store, how):
    docs = read(media)
    assert len(docs) == 7
    client = None
    context = None
    if store == "qdrant":
        vector_store, client = qdrant_store(tmp_path)
        context = StorageContext.from_defaults(vector_store=vector_store)
    try:
        if how == "from_documents":
            index = VectorStoreIndex.from_documents(
                docs, storage_context=context, transformations=[MolmoNodeParser()], embed_model=MolmoEmbedding()
            )
        else:
            index = VectorStoreIndex([], storage_context=context, embed_model=MolmoEmbedding())
            index.insert_nodes(MolmoNodeParser().get_nodes_from_documents(docs))
        assert_pictures(index.as_retriever(similarity_top_k=20).retrieve("a bright picture"), docs)
    finally:
        if client is not None:
            client.close()


def test_the_parser_keeps_ids_text_metadata_and_splits_the_rest(media):
    docs = read(media)
    from llama_index.core import Document

    text = Document(text="A plain note. " * 1000, id_="note")
    nodes = MolmoNodeParser().get_nodes_from_documents([*docs, text])
    images = [n for n in nodes if isinstance(n, ImageNode)]
    assert [n.node_id for n in images] == [d.id_ for d in docs]
    for node, doc in zip(images, docs):
        assert node.text == doc.text and node.metadata == doc.metadata
        assert node.excluded_embed_metadata_keys == doc.excluded_embed_metadata_keys
        assert node.ref_doc_id == doc.id_
    notes = [n for n in nodes if not isinstance(n, ImageNode)]
    assert len(notes) > 1 and all(n.ref_doc_id == "note" for n in notes)  # the text splitter's chunks


# -- a multimodal query engine hands the LLM the pictures -------------------------------------
class RecordingLLM(MockLLM):
    """A chat model that records every list of ChatMessages it is sent (MockLLM's own chat
    flattens messages to a text prompt, so it would never show an image)."""

    received: list = Field(default_factory=list, exclude=True)

    def __init__(self) -> None:
        super().__init__(is_chat_model=True)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self.received.append(list(messages))
        return ChatResponse(message=ChatMessage(role="assistant", content="I looked at the pictures."))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages, **kwargs)

    def images(self) -> list[ImageBlock]:
        return [b for messages in self.received for m in messages for b in m.blocks if isinstance(b, ImageBlock)]


def picture_bytes(block: ImageBlock) -> bytes:
    return block.resolve_image().read()  # from its path, its bytes or its data URL


def test_the_recording_llm_records_image_blocks(tmp_path):
    picture = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (8, 6), (200, 10, 10)).save(picture)
    llm = RecordingLLM()
    llm.chat([ChatMessage(role="user", blocks=[TextBlock(text="what is it?"), ImageBlock(path=picture)])])
    [block] = llm.images()
    assert block.path == picture and picture_bytes(block) == picture.read_bytes()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
@pytest.mark.parametrize("store", ["simple", "qdrant"])
async def test_a_multimodal_query_engine_sends_the_llm_the_retrieved_pictures(media, tmp_path, store):
    docs = read(media)
    client, context = None, None
    if store == "qdrant":
        vector_store, client = qdrant_store(tmp_path)
        context = StorageContext.from_defaults(vector_store=vector_store)
    try:
        index = VectorStoreIndex.from_documents(
            docs, storage_context=context, transformations=[MolmoNodeParser()], embed_model=MolmoEmbedding()
        )
        llm = RecordingLLM()
        engine = RetrieverQueryEngine.from_args(index.as_retriever(similarity_top_k=len(docs)), llm=llm, multimodal=True)
        response = engine.query("What do the pictures show?")
        retrieved = {Path(n.node.image_path).read_bytes() for n in response.source_nodes}
        assert len(response.source_nodes) == len(docs)
        assert {n.node.metadata["kind"] for n in response.source_nodes} == {"image", "slide", "video_segment"}
        assert {picture_bytes(b) for b in llm.images()} == retrieved  # every retrieved picture, nothing else
        if store == "qdrant":
            return  # the stock store's async path needs an AsyncQdrantClient, which local mode cannot share
        llm.received.clear()
        response = await engine.aquery("What do the pictures show?")
        assert {picture_bytes(b) for b in llm.images()} == {Path(n.node.image_path).read_bytes() for n in response.source_nodes}
        assert len(llm.images()) >= len(docs)
    finally:
        if client is not None:
            client.close()


def test_multimodal_vector_store_index_keeps_the_image_nodes(media):
    docs = read(media)
    nodes = MolmoNodeParser().get_nodes_from_documents(docs)
    embed = MolmoEmbedding()
    # is_image_to_text: the nodes' text is what Molmo2 saw (caption, scene, counts), so the
    # image store is searched with MolmoEmbedding's text vectors (those of molmo-rag search)
    # instead of a CLIP model; the mock image embedder only satisfies the index's check.
    image_embed = MockMultiModalEmbedding(embed_dim=embed.dim)
    index = MultiModalVectorStoreIndex(nodes, is_image_to_text=True, image_embed_model=image_embed, embed_model=embed)
    assert set(index.image_vector_store.to_dict()["embedding_dict"]) == {d.id_ for d in docs}
    retriever = index.as_retriever(similarity_top_k=len(docs), image_similarity_top_k=len(docs))
    assert_pictures(retriever.text_to_image_retrieve("a bright picture"), docs)
    hits = retriever.retrieve("a bright picture")
    assert hits and all(isinstance(h.node, ImageNode) and Path(h.node.image_path).is_file() for h in hits)

    later = MultiModalVectorStoreIndex([], is_image_to_text=True, image_embed_model=image_embed, embed_model=embed)
    later.insert_nodes(nodes)
    assert set(later.image_vector_store.to_dict()["embedding_dict"]) == {d.id_ for d in docs}


# -- count filters on the default in-memory store (and on Qdrant) -----------------------------
@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
@pytest.mark.parametrize("store", ["simple", "qdrant"])
def test_count_filters_on_the_flat_keys(tmp_path, store):
    truth = samples.spots_world(tmp_path / "world")  # 4 pictures with 1..4 spots, 6 without
    docs = read(tmp_path / "world")
    assert all(d.metadata["count_bright_spots"] == truth[d.metadata["source"]] for d in docs)
    client, context = None, None
    if store == "qdrant":
        vector_store, client = qdrant_store(tmp_path)
        context = StorageContext.from_defaults(vector_store=vector_store)
    try:
        index = VectorStoreIndex(docs, storage_context=context, embed_model=MolmoEmbedding())

        def found(operator: FilterOperator, value: int) -> set[str]:
            filters = MetadataFilters(filters=[MetadataFilter(key="count_bright_spots", operator=operator, value=value)])
            return {h.node.metadata["source"] for h in index.as_retriever(similarity_top_k=20, filters=filters).retrieve("spots")}

        assert found(FilterOperator.GTE, 2) == {s for s, n in truth.items() if n >= 2} and len(found(FilterOperator.GTE, 2)) == 3
        assert found(FilterOperator.EQ, 0) == {s for s, n in truth.items() if n == 0}
        assert found(FilterOperator.LT, 2) == {s for s, n in truth.items() if n < 2}
    finally:
        if client is not None:
            client.close()


# -- parallel loading ---------------------------------------------------------------------------
def test_simple_directory_reader_with_two_workers_gives_the_serial_documents(media):
    # no_cache: each run asks the backend (nothing read from the other run's answers); the
    # pictures are still saved under the one cache root, so paths agree.
    reader = MolmoReader(backend=FakeBackend(), count=["bright spots"], no_cache=True)

    def load(workers: int) -> list:
        docs = SimpleDirectoryReader(str(media), recursive=True, file_extractor=reader.file_extractor()).load_data(num_workers=workers)
        return sorted(docs, key=lambda d: d.id_)

    serial, parallel = load(1), load(2)
    assert len(serial) == 7
    assert [d.id_ for d in parallel] == [d.id_ for d in serial]
    assert [d.text for d in parallel] == [d.text for d in serial]
    assert [d.metadata for d in parallel] == [d.metadata for d in serial]
    assert all(d.metadata["backend"] == "fake" for d in parallel)


def test_a_backend_that_cannot_travel_to_a_worker_is_an_error(media):
    import httpx
    from molmo_rag.backends.openai import OpenAIBackend

    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", api_key="sk-never-shown", http_client=httpx.AsyncClient())
    reader = MolmoReader(backend=backend)
    with pytest.raises(UsageError, match="cannot be copied") as caught:
        SimpleDirectoryReader(str(media / "photos"), file_extractor=reader.file_extractor()).load_data(num_workers=2)
    assert "sk-never-shown" not in str(caught.value)
    with pytest.raises(UsageError, match="cannot be copied"):
        pickle.dumps(reader)


# -- every class pickles and serialises -------------------------------------------------------
def test_reader_extractor_and_reranker_pickle_with_their_backend(media):
    photo = media / "photos" / "spots-1.png"
    backend = FakeBackend(batch_size=2)
    reader = MolmoReader(backend=backend, count=["bright spots"])
    (doc,) = reader.load_data(photo)
    copy = pickle.loads(pickle.dumps(reader))
    assert type(copy.backend) is FakeBackend and copy.backend.made_with() == {"batch_size": 2}
    assert copy.count == ["bright spots"]
    (again,) = copy.load_data(photo)
    assert (again.id_, again.text, again.metadata) == (doc.id_, doc.text, doc.metadata)

    extractor = pickle.loads(pickle.dumps(MolmoExtractor(backend=FakeBackend(), count=["bright spots"])))
    (metadata,) = extractor.extract([ImageNode(image_path=str(photo))])
    assert metadata["counts"] == {"bright_spots": 2}

    reranker = pickle.loads(pickle.dumps(MolmoGroundedReranker(backend=backend, top_n=2, weight=3.0)))
    assert (reranker.top_n, reranker.weight, reranker.backend.made_with()) == (2, 3.0, {"batch_size": 2})
    [ranked] = reranker.postprocess_nodes([NodeWithScore(node=ImageNode(image_path=str(photo)), score=0.1)], query_str="bright spots")
    assert ranked.node.metadata["grounded"] == 1.0


def test_json_round_trips_carry_the_backend_as_name_and_options_without_secrets():
    reranker = MolmoGroundedReranker(backend=FakeBackend(batch_size=2), top_n=3, count_labels=["person"])
    text = reranker.to_json()
    back = MolmoGroundedReranker.from_json(text)
    assert (back.backend, back.backend_options, back.top_n, back.count_labels) == ("fake", {"batch_size": 2}, 3, ["person"])
    assert back.to_dict() == MolmoGroundedReranker.from_dict(reranker.to_dict()).to_dict()
    with Run(back) as run:  # the name and options make the same backend again
        assert type(run.backend) is FakeBackend and run.backend.batch_size == 2

    secret = {"api_key": "sk-not-in-json", "base_url": "http://127.0.0.1:9/v1"}
    for component in (MolmoReader, MolmoExtractor, MolmoGroundedReranker):
        made = component(backend="openai", backend_options=secret)
        assert "sk-not-in-json" not in made.to_json()
        assert component.from_json(made.to_json()).backend_options == {"base_url": "http://127.0.0.1:9/v1"}
        assert pickle.loads(pickle.dumps(made)).backend_options == secret  # a worker needs the key
    from molmo_rag.backends.openai import OpenAIBackend

    instance = MolmoGroundedReranker(backend=OpenAIBackend(**secret))
    data = instance.to_dict()
    assert data["backend"] == "openai" and data["backend_options"] == {"base_url": "http://127.0.0.1:9/v1"}
    assert "sk-not-in-json" not in instance.to_json()


def test_embedding_and_node_parser_pickle_and_round_trip(media):
    from llama_index.core.node_parser import SentenceSplitter

    embed = MolmoEmbedding()
    for copy in (pickle.loads(pickle.dumps(embed)), MolmoEmbedding.from_json(embed.to_json()), MolmoEmbedding.from_dict(embed.to_dict())):
        assert copy.model_name == embed.model_name and copy.get_query_embedding("spots") == embed.get_query_embedding("spots")

    docs = read(media)
    parser = MolmoNodeParser(text_splitter=SentenceSplitter(chunk_size=64, chunk_overlap=4))
    expected = [n.node_id for n in parser.get_nodes_from_documents(docs)]
    for copy in (pickle.loads(pickle.dumps(parser)), MolmoNodeParser.from_json(parser.to_json()), MolmoNodeParser.from_dict(parser.to_dict())):
        assert isinstance(copy.text_splitter, SentenceSplitter) and copy.text_splitter.chunk_size == 64
        assert [n.node_id for n in copy.get_nodes_from_documents(docs)] == expected
        assert copy.to_dict() == parser.to_dict()
    with pytest.raises(ValueError, match="id_func"):
        MolmoNodeParser.from_dict({**parser.to_dict(), "id_func": {"id_func_name": "my_ids"}})


def test_vector_store_pickles_as_its_collection_and_reopens_it(media, tmp_path):
    docs = read(media)
    index = open_index(db=tmp_path / "db")
    index.insert_nodes(MolmoNodeParser().get_nodes_from_documents(docs))
    store = index.vector_store
    assert store.to_dict()["class_name"] == "MolmoVectorStore" and "molmo_rag" in store.to_json()
    blob = pickle.dumps(store)
    store.close()  # an embedded folder is opened by one process at a time
    copy = pickle.loads(blob)
    try:
        assert isinstance(copy, MolmoVectorStore) and copy.embedder_name == store.embedder_name
        again = VectorStoreIndex.from_vector_store(copy, embed_model=MolmoEmbedding())
        assert_pictures(again.as_retriever(similarity_top_k=20).retrieve("a bright picture"), docs)
    finally:
        copy.close()
    memory = open_index(db=":memory:")
    with pytest.raises(TypeError, match="memory"):
        pickle.dumps(memory.vector_store)  # never a copy without its collection
    memory.vector_store.client.close()


# -- grounding checks the node's own picture ----------------------------------------------------
def test_the_reranker_grounds_a_nodes_own_picture_and_passes_text_through(tmp_path, caplog):
    truth = samples.spots_world(tmp_path / "world", hits=3, misses=1)
    spotted = next(s for s, n in truth.items() if n == 3)
    picture = ImageNode(image_path=spotted, metadata={"source": "report.pdf", "page": 4, "author": "ana"})
    text = TextNode(text="minutes of the meeting", metadata={"page": 2})
    missing = ImageNode(image_path=str(tmp_path / "gone.png"), metadata={"source": "report.pdf"})
    nodes = [NodeWithScore(node=text, score=0.9), NodeWithScore(node=missing, score=0.8), NodeWithScore(node=picture, score=0.2)]
    backend = FakeBackend()
    reranker = MolmoGroundedReranker(backend=backend, top_n=3)
    with caplog.at_level(logging.WARNING):
        ranked = reranker.postprocess_nodes(nodes, query_str="bright spots")
    by_id = {n.node.node_id: n for n in ranked}
    assert len(ranked) == 3 and ranked[0].node.node_id == picture.node_id

    grounded = by_id[picture.node_id]
    meta = grounded.node.metadata
    assert meta["grounded"] == 1.0 and meta["evidence"]["count"] == 3 and len(meta["evidence"]["points"]) == 3
    assert {k: meta[k] for k in ("source", "page", "author")} == {"source": "report.pdf", "page": 4, "author": "ana"}
    assert grounded.node.image_path == spotted and grounded.node is not picture  # a copy with the evidence
    assert "grounded" not in picture.metadata  # the input is left as it was

    assert by_id[text.node_id].node is text and by_id[text.node_id].score == 0.9  # not checked: as it came
    assert "grounded" not in text.metadata

    failed = by_id[missing.node_id]
    assert failed.node.metadata["grounded"] is None and failed.score == 0.8
    assert "gone.png" in failed.node.metadata["evidence"]["error"]
    assert "gone.png" in caplog.text
    assert backend.calls == 1  # only the picture that exists was sent


# -- the embedding tells the truth about its model ----------------------------------------------
@pytest.fixture
def fresh_embedders(monkeypatch):
    from molmo_rag.index import embeddings

    monkeypatch.setattr(embeddings, "_LOADED", {})
    return monkeypatch


def test_embedding_model_name_is_the_model_that_embeds(fresh_embedders):
    class TextEmbedding:  # stands in for fastembed's ONNX model (no download here)
        def __init__(self, model_name: str):
            self.model_name = model_name

        def embed(self, texts):
            return [np.array([len(t), 1.0, 0.0]) for t in texts]

        def query_embed(self, text):
            return iter([np.array([len(text), 0.0, 1.0])])

    fresh_embedders.setitem(sys.modules, "fastembed", types.SimpleNamespace(TextEmbedding=TextEmbedding))
    embed = MolmoEmbedding(model_name="fastembed")
    assert embed.model_name == embed.core.name == "fastembed/BAAI/bge-small-en-v1.5"
    assert embed.get_query_embedding("spots") == [5.0, 0.0, 1.0] and embed.get_text_embedding("ab") == [2.0, 1.0, 0.0]
    assert MolmoEmbedding(model_name="wordllama").model_name == "wordllama/l2_supercat-256"
    with pytest.raises(ConfigurationError, match="two embedders"):
        MolmoEmbedding("wordllama", model_name="fastembed")
    assert MolmoEmbedding("fastembed", model_name="fastembed/BAAI/bge-small-en-v1.5").model_name == embed.model_name

    fresh_embedders.setitem(sys.modules, "fastembed", None)  # not installed: an error, never wordllama instead
    from molmo_rag.index import embeddings

    fresh_embedders.setattr(embeddings, "_LOADED", {})
    with pytest.raises(MissingDependencyError, match="fastembed"):
        MolmoEmbedding(model_name="fastembed")


# -- conventions: llamahub lists every class, docstrings follow LlamaIndex's template --------------
def test_llamahub_lists_every_public_class_and_each_has_an_example():
    authors = tomllib.loads((PACKAGE_ROOT / "pyproject.toml").read_text())["tool"]["llamahub"]["class_authors"]
    exported = {name for name in package.__all__ if isinstance(getattr(package, name), type)} - {"MolmoLoadError"}
    assert set(authors) == exported == {c.__name__ for c in PUBLIC_CLASSES}
    for klass in PUBLIC_CLASSES:
        doc = klass.__doc__ or ""
        assert "Examples:" in doc and "`pip install llama-index-readers-molmo`" in doc, klass.__name__
        code = doc.split("```python", 1)[1].split("```", 1)[0]
        lines = [line[8:] if line.startswith(" " * 8) else line.strip() for line in code.splitlines()]
        tree = compile("\n".join(lines), f"{klass.__name__} docstring", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT | ast.PyCF_ONLY_AST)
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert klass.__name__ in imported, klass.__name__
