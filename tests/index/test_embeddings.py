import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from molmo_rag.errors import ConfigurationError, MissingDependencyError
from molmo_rag.index.embeddings import Embedder, WordLlamaEmbedder, get_embedder


@pytest.fixture(scope="module")
def wordllama():
    return get_embedder()


def test_default_is_wordllama_256(wordllama):
    assert isinstance(wordllama, WordLlamaEmbedder) and isinstance(wordllama, Embedder)
    assert (wordllama.name, wordllama.dim) == ("wordllama/l2_supercat-256", 256)
    vectors = np.array(wordllama.embed(["a red sports car", "a crimson automobile", "a cat asleep on a sofa"]))
    assert vectors.shape == (3, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # meaning, not just characters
    assert wordllama.embed([]) == []
    assert np.allclose(wordllama.embed_query("a red sports car"), vectors[0], atol=1e-5)


def test_recorded_name_loads_the_same_model(wordllama):
    again = get_embedder("wordllama/l2_supercat-256")
    assert again.name == wordllama.name and again.dim == 256
    assert get_embedder(wordllama) is wordllama


def test_wordllama_loads_with_the_network_cut_off():
    code = textwrap.dedent(
        """
        import socket
        def refuse(*a, **k):
            raise OSError("network disabled for this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from molmo_rag.index.embeddings import get_embedder
        e = get_embedder("wordllama")
        print(len(e.embed_query("offline works")))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "256"


def test_unknown_embedder_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="unknown embedder"):
        get_embedder("word2vec")
    with pytest.raises(ConfigurationError, match="CONFIG-DIM"):
        get_embedder("wordllama/l2_supercat")


def test_env_picks_the_embedder(monkeypatch):
    monkeypatch.setenv("MOLMO_RAG_EMBEDDER", "nonsense")
    with pytest.raises(ConfigurationError, match="nonsense"):
        get_embedder()


@pytest.mark.skipif(importlib.util.find_spec("fastembed") is not None, reason="fastembed is installed")
def test_fastembed_missing_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"molmo-rag\[fastembed\]"):
        get_embedder("fastembed")


def test_loading_wordllama_leaves_the_host_logging_alone():
    code = "import logging; from molmo_rag.index.embeddings import get_embedder; get_embedder(); print(len(logging.getLogger().handlers), logging.getLogger().level)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["0", str(30)]


def test_an_empty_text_gets_a_finite_vector():
    from molmo_rag.index.embeddings import get_embedder

    empty, cat = get_embedder().embed(["", "a cat"])
    assert all(x == 0.0 for x in empty) and abs(sum(x * x for x in cat) - 1.0) < 1e-3
