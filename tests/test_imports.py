import subprocess
import sys

import molmo_rag

HEAVY = ["torch", "transformers", "llama_index", "langchain", "langchain_core", "qdrant_client", "av", "pptx", "pypdfium2", "wordllama"]


def test_import_is_light():
    code = (
        "import sys, molmo_rag, molmo_rag.cli, molmo_rag.backends.base, molmo_rag.tasks, molmo_rag.analyze;"
        "import molmo_rag.backends.local, molmo_rag.pipeline, molmo_rag.testing, molmo_rag.documents, molmo_rag.engine;"
        "from molmo_rag.cli import _register_commands; _register_commands();"
        "[getattr(molmo_rag, name) for name in molmo_rag.__all__];"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_is_pinned():
    assert sorted(molmo_rag.__all__) == sorted(
        ["Ask", "BackendError", "Caption", "ConfigurationError", "Count", "InputError", "MissingDependencyError",
         "MolmoRagError", "Point", "Scene", "UnsupportedTaskError", "VideoTask", "parse_count", "parse_points",
         "MediaItem", "ReaderOptions", "Request", "Result", "create_backend", "get_backend", "read",
         "Failure", "MediaDocument", "iter_documents", "aiter_documents", "EnrichOptions", "ground", "draw"]
    )
    for name in molmo_rag.__all__:
        assert hasattr(molmo_rag, name)
