"""The package's shape: LlamaIndex base classes, the pinned public API, serialisation, the
namespace-package layout, and the core staying framework-free."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import llama_index.readers.molmo as package
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.extractors.interface import BaseExtractor
from llama_index.core.readers.base import BasePydanticReader, BaseReader
from llama_index.core.schema import TransformComponent
from llama_index.readers.molmo import (
    MolmoEmbedding,
    MolmoExtractor,
    MolmoReader,
    MolmoVectorStore,
)
from llama_index.core.vector_stores.types import BasePydanticVectorStore

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def test_classes_derive_from_llama_index_bases():
    assert BasePydanticReader.__name__ in [b.__name__ for b in MolmoReader.__mro__]
    assert issubclass(MolmoReader, BaseReader)
    assert issubclass(MolmoExtractor, BaseExtractor) and issubclass(MolmoExtractor, TransformComponent)
    assert issubclass(MolmoEmbedding, BaseEmbedding)
    assert issubclass(MolmoVectorStore, BasePydanticVectorStore)
    assert MolmoExtractor().is_text_node_only is False
    # the async loader is a native async generator, not the base class's thread wrapper
    assert inspect.isasyncgenfunction(MolmoReader.alazy_load_data)


def test_public_api_is_pinned():
    assert sorted(package.__all__) == [
        "MolmoEmbedding", "MolmoExtractor", "MolmoGroundedReranker", "MolmoLoadError", "MolmoNodeParser", "MolmoReader",
        "MolmoVectorStore", "open_index", "to_image_document", "to_image_node",
    ]
    for name in package.__all__:
        assert hasattr(package, name)


def test_namespace_package_layout():
    assert not (PACKAGE_ROOT / "llama_index" / "__init__.py").exists()
    assert not (PACKAGE_ROOT / "llama_index" / "readers" / "__init__.py").exists()
    assert (PACKAGE_ROOT / "llama_index" / "readers" / "molmo" / "py.typed").exists()
    text = (PACKAGE_ROOT / "pyproject.toml").read_text()
    assert "[tool.llamahub]" in text and 'import_path = "llama_index.readers.molmo"' in text
    assert '"llama-index-core>=0.13,<0.15"' in text and "molmo-rag" in text and "hatchling" in text


def test_reader_serialises_with_its_settings():
    from molmo_rag import VideoTask
    from molmo_rag.testing import FakeBackend

    reader = MolmoReader(
        backend=FakeBackend(), count=["person"], questions=["Is it outdoors?"], tasks=[VideoTask(task="summary")],
        reader_options={"segment_mode": "fixed"}, cache="/tmp/somewhere",
    )
    data = reader.to_dict()
    assert data["class_name"] == "MolmoReader" and data["backend"] == "fake" and data["count"] == ["person"]
    assert data["reader_options"] == {"segment_mode": "fixed"} and data["cache"] == "/tmp/somewhere"
    again = MolmoReader.from_json(reader.to_json())  # JSON-able, the backend instance as its name
    assert again.backend == "fake" and again.tasks == reader.tasks and again.reader_options == reader.reader_options
    assert set(reader.file_extractor()) >= {".jpg", ".png", ".pptx", ".pdf", ".mp4", ".mov", ".key", ".mp3"}
    assert all(r is reader for r in reader.file_extractor().values())


def test_settings_are_checked_up_front():
    from molmo_rag import UsageError
    from molmo_rag.testing import FakeBackend

    with pytest.raises(UsageError, match="ready Backend instance"):
        MolmoReader(backend=FakeBackend(), model="x")
    with pytest.raises(UsageError, match="reader_options") as info:
        MolmoReader(reader_options={"segment_mode": "sometimes"})
    assert info.value.option == "reader_options"
    with pytest.raises(ValueError, match="file_path"):
        MolmoReader(backend="fake").load_data()
    with pytest.raises(UsageError, match="unknown backend"):
        MolmoReader(backend="nope").load_data("x.png")


def test_plan_maps_to_the_core():
    default = MolmoReader(count=["person"], questions=["Why?"]).run_options()
    assert default.runs_default_plan and default.count == ["person"] and default.ask == ["Why?"]
    caption_only = MolmoReader(scene=False, detail="high").run_options()
    assert not caption_only.runs_default_plan and [t.key() for t in caption_only.tasks] == ["caption(detail=high)"]
    scene_only = MolmoReader(caption=False).enrich_options()  # the older name of run_options
    assert not scene_only.runs_default_plan and [t.key() for t in scene_only.tasks] == ["scene()"]


def test_embedding_is_the_core_embedder():
    from molmo_rag.index.embeddings import get_embedder

    embed = MolmoEmbedding()
    core = get_embedder()
    assert embed.model_name == core.name == "wordllama/l2_supercat-256" and embed.dim == core.dim
    assert embed.get_query_embedding("two people at a whiteboard") == core.embed_query("two people at a whiteboard")
    assert embed.get_text_embedding_batch(["a", "b c"]) == core.embed(["a", "b c"])
    assert MolmoEmbedding.class_name() == "MolmoEmbedding"


def test_core_imports_no_framework():
    code = "import sys, molmo_rag, molmo_rag.documents, molmo_rag.pipeline; print('llama_index' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
