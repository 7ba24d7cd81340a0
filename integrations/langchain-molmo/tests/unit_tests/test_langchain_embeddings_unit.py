"""MolmoEmbeddings passes langchain-tests' EmbeddingsUnitTests (offline wordllama)."""

from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_molmo import MolmoEmbeddings


class TestMolmoEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[MolmoEmbeddings]:
        return MolmoEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": "wordllama"}

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return {"MOLMO_RAG_EMBEDDER": "wordllama/l2_supercat-256"}, {}, {"model": "wordllama/l2_supercat-256"}


def test_the_core_embedder_and_its_space():
    from molmo_rag.index.embeddings import get_embedder

    embeddings = MolmoEmbeddings()
    assert embeddings.model == "wordllama"
    assert embeddings.name == get_embedder().name and embeddings.dimensions == 256
    assert embeddings.embed_query("a red car") == get_embedder().embed_query("a red car")
    vectors = embeddings.embed_documents(["a red car", "a blue boat"])
    assert len(vectors) == 2 and all(len(v) == 256 and isinstance(v[0], float) for v in vectors)
    assert embeddings.embed_documents([]) == []


def test_pickles_without_the_model():
    import pickle

    embeddings = MolmoEmbeddings()
    embeddings.embed_query("warm up")
    clone = pickle.loads(pickle.dumps(embeddings))
    assert clone.model == "wordllama" and clone.embed_query("x") == embeddings.embed_query("x")


def test_unknown_embedder_names_the_choices():
    import pytest
    from molmo_rag.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="wordllama or fastembed"):
        MolmoEmbeddings(model="nope").embed_query("x")
