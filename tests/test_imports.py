import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import molmo_rag

ROOT = Path(__file__).resolve().parents[1]

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
         "Failure", "MediaDocument", "iter_documents", "aiter_documents", "EnrichOptions", "ground", "draw",
         # every error class
         "AuthenticationError", "BackendTimeout", "CacheWriteError", "CorruptMediaError", "EmptyMediaError",
         "IndexUnavailableError", "InsufficientBalanceError", "JobFailedError", "JobNotFoundError",
         "MalformedAnswerError", "MediaTooLargeError", "RateLimitError", "ResponseFormatError",
         "SourceNotFoundError", "UnreachableSourceError", "UnsupportedMediaError", "UsageError",
         # tasks, backends, media, running
         "Task", "task_from_dict", "Backend", "Blob", "sniff", "as_source_list", "is_local_path",
         "absolute_source", "IMAGE_EXTENSIONS", "MEDIA_EXTENSIONS", "ResultCache", "Run", "RunOptions", "RunChoices",
         # jobs, the index, grounding
         "aanalyze", "aindex", "search", "remove", "labels", "count_labels", "open_index", "embedder_for",
         "RunSummary", "Hits", "QdrantIndex", "Hit", "DEFAULT_COLLECTION", "VECTOR_NAME", "STORAGES", "default_db_path", "migrate", "MigrateSummary",
         "MediaRecord", "PAYLOAD_KEYS", "LAYOUT_KEYS", "point_id", "SearchFilter", "build_filter", "parse_where",
         "COUNT_PREFIX", "count_key", "flat_counts", "public_keys", "picture_folder", "close_shared_backends", "NO_PICTURE", "metadata_filter",
         "CountQuery", "split_counts", "Embedder", "DEFAULT_EMBEDDER", "get_embedder",
         "Grounder", "GroundedHits", "aground"]
    )
    for name in molmo_rag.__all__:
        assert hasattr(molmo_rag, name)


def test_no_public_name_is_shadowed_by_a_submodule():
    """Importing ``molmo_rag.X`` sets the attribute ``X`` on the package: a public function
    named like a submodule (``index``, ``analyze``) would turn into that module."""
    submodules = {info.name for info in pkgutil.iter_modules(molmo_rag.__path__)}
    assert not submodules & set(molmo_rag.__all__)


INTEGRATION_PACKAGES = [
    ROOT / "integrations/llama-index-readers-molmo/llama_index",
    ROOT / "integrations/langchain-molmo/langchain_molmo",
]


def _molmo_rag_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of every import of molmo_rag in a file (name None for ``import X``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "molmo_rag"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "molmo_rag":
            found += [(node.lineno, node.module, a.name) for a in node.names]
    return found


def test_integrations_import_only_the_top_level():
    modules = [p for root in INTEGRATION_PACKAGES for p in sorted(root.rglob("*.py"))]
    assert len(modules) > 10
    wrong = []
    for path in modules:
        for line, module, name in _molmo_rag_imports(path):
            if module != "molmo_rag" or (name is not None and name not in molmo_rag.__all__):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {module} {name or ''}")
    assert wrong == []
