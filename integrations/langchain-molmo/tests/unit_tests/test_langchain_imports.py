"""The public names of langchain_molmo, pinned, and the LangChain base class of each."""

from langchain_core.document_loaders import BaseBlobParser, BaseLoader
from langchain_core.documents import BaseDocumentTransformer
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever

import langchain_molmo
from langchain_molmo import __all__

EXPECTED_ALL = [
    "MolmoBlobParser",
    "MolmoDocumentTransformer",
    "MolmoEmbeddings",
    "MolmoGroundedCompressor",
    "MolmoLoader",
    "MolmoRetriever",
    "MolmoVectorStore",
    "__version__",
    "document_image_block",
    "image_blocks",
    "image_message",
    "molmo_filter",
]


def test_all_imports() -> None:
    assert sorted(EXPECTED_ALL) == sorted(__all__)
    for name in __all__:
        assert getattr(langchain_molmo, name) is not None


def test_base_classes() -> None:
    assert issubclass(langchain_molmo.MolmoLoader, BaseLoader)
    assert issubclass(langchain_molmo.MolmoBlobParser, BaseBlobParser)
    assert issubclass(langchain_molmo.MolmoDocumentTransformer, BaseDocumentTransformer)
    assert issubclass(langchain_molmo.MolmoEmbeddings, Embeddings)
    assert issubclass(langchain_molmo.MolmoRetriever, BaseRetriever)
    assert callable(langchain_molmo.molmo_filter)
    for helper in (langchain_molmo.image_message, langchain_molmo.image_blocks, langchain_molmo.document_image_block):
        assert callable(helper)


def test_typed_package() -> None:
    from importlib.resources import files

    assert files("langchain_molmo").joinpath("py.typed").is_file()
