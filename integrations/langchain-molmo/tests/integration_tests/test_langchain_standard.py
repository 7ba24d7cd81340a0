"""langchain-tests' standard suites: RetrieversIntegrationTests on a collection written by
molmo-rag, EmbeddingsIntegrationTests on the offline embedder."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests

from langchain_molmo import MolmoEmbeddings, MolmoRetriever


class TestMolmoRetrieverStandard(RetrieversIntegrationTests):
    db: str = ""

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _lc_collection(cls, lc_index):
        cls.db = str(lc_index)

    @property
    def retriever_constructor(self) -> type[MolmoRetriever]:
        return MolmoRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"db": self.db, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "a bright picture"


class TestMolmoEmbeddingsStandard(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[MolmoEmbeddings]:
        return MolmoEmbeddings
