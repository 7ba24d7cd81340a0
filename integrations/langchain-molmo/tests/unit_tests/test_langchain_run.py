"""The run options of every class are molmo-rag's ``RunOptions`` (keywords or given whole),
checked at construction; one ``molmo_rag.Run`` per object, made on first use and reused by
every call (one backend), closed by ``close()``; a ``Run`` handed in is shared and left open."""

from __future__ import annotations

import asyncio
import gc

import pytest
from langchain_core.document_loaders.blob_loaders import Blob
from langchain_core.documents import Document

from molmo_rag import close_shared_backends

from langchain_molmo import MolmoBlobParser, MolmoDocumentTransformer, MolmoGroundedCompressor, MolmoLoader


async def collect(agen) -> list:
    return [item async for item in agen]


def test_one_run_and_one_backend_across_loads(lc_library, lc_made_backends):
    photos = lc_library / "photos"
    loader = MolmoLoader(photos, backend="fake", cache=False, on_failure=lambda f: None)
    assert lc_made_backends == []  # nothing is made before the first load
    first = loader.load()
    again = loader.load()
    streamed = list(loader.lazy_load())
    arrived = asyncio.run(collect(loader.alazy_load()))
    (backend,) = lc_made_backends
    assert backend.calls == 4 * 3 * 2  # no cache: four loads of three photos, all on the one backend
    assert not backend.closed
    assert sorted(d.id for d in first) == sorted(d.id for d in again) == sorted(d.id for d in streamed)
    assert sorted(d.id for d in arrived) == sorted(d.id for d in first)
    assert [f.source for f in loader.failures] == [str(photos / "broken.jpg")] * 4  # every load's, kept
    loader.close()
    assert not backend.closed  # the process's shared backend outlives the loader's run
    assert len(loader.load()) == 3 and lc_made_backends == [backend]  # a new run, the same shared backend
    close_shared_backends()
    assert backend.closed
    # share_backend=False: the loader's own backend, closed with its run
    own = MolmoLoader(photos, backend="fake", cache=False, share_backend=False, on_failure=lambda f: None)
    with own:
        own.load()
        own.load()
    assert len(lc_made_backends) == 2 and lc_made_backends[1].closed and lc_made_backends[1].calls == 2 * 3 * 2


def test_the_transformer_and_parser_keep_one_run(lc_library, lc_made_backends):
    coffee = lc_library / "photos" / "coffee.png"
    with MolmoDocumentTransformer(backend="fake", cache=False) as transformer:
        for _ in range(2):
            (out,) = transformer.transform_documents([Document("", metadata={"image_path": str(coffee)})])
            assert out.metadata["caption"]
        (out,) = asyncio.run(transformer.atransform_documents([Document("", metadata={"image_path": str(coffee)})]))
    parser = MolmoBlobParser(backend="fake", cache=False)
    for _ in range(2):
        assert len(list(parser.lazy_parse(Blob.from_path(coffee)))) == 1
    (backend,) = lc_made_backends  # the transformer and the parser share the process's one
    assert not backend.closed and backend.calls == 3 * 2 + 2 * 2
    own = MolmoBlobParser(backend="fake", cache=False, share_backend=False)
    assert len(list(own.lazy_parse(Blob.from_path(coffee)))) == 1
    own_backend = lc_made_backends[1]
    assert not own_backend.closed and own_backend.calls == 2
    del own
    gc.collect()
    assert own_backend.closed  # an object never closed releases its run (and own backend) when collected


def test_loader_and_transformer_share_a_run(lc_library, lc_made_backends):
    from molmo_rag import Run, RunOptions

    photos = lc_library / "photos"
    options = RunOptions(backend="fake", count=["person"])
    with Run(options) as run:
        with MolmoLoader(photos, run, on_failure=lambda f: None) as loader:
            docs = loader.load()
        assert loader.options is options
        picture = Document("Figure 1", metadata={"image_path": str(photos / "coffee.png")})
        with MolmoDocumentTransformer(run) as transformer:
            (out,) = transformer.transform_documents([picture])
        (backend,) = lc_made_backends
        assert not backend.closed  # closing the loader and the transformer left the given run open
        assert backend.calls == 3 * 3  # the transformer's picture came from the run's result cache
        assert out.id in {d.id for d in docs} and "person" in out.metadata["counts"]
        assert len(loader.load()) == 3 and len(lc_made_backends) == 1  # still usable after close()
    assert backend.closed


def test_an_unknown_or_bad_option_is_a_usage_error(lc_library):
    from molmo_rag import Run, UsageError
    from molmo_rag.testing import FakeBackend

    makers = {
        "loader": lambda **kw: MolmoLoader(lc_library, **kw),
        "parser": lambda **kw: MolmoBlobParser(**kw),
        "transformer": lambda **kw: MolmoDocumentTransformer(**kw),
        "compressor": lambda **kw: MolmoGroundedCompressor(**kw),
    }
    for name, make in makers.items():
        with pytest.raises(UsageError, match="colour") as info:
            make(colour="red")
        assert info.value.option == "colour", name
        with pytest.raises(UsageError, match="thumbnail_size"):
            make(thumbnail_size=-1)
    with Run(backend=FakeBackend(), cache=False) as run:
        with pytest.raises(UsageError, match="count"):  # a built run takes no options on top
            MolmoLoader(lc_library, run, count=["person"])
        with pytest.raises(UsageError, match="count"):
            MolmoGroundedCompressor(run, count=["person"])
    with pytest.raises(UsageError, match="RunOptions"):
        MolmoLoader(lc_library, "local")  # type: ignore[arg-type]


def test_run_options_given_whole(lc_library):
    from molmo_rag import RunOptions
    from molmo_rag.testing import FakeBackend

    coffee = lc_library / "photos" / "coffee.png"
    backend = FakeBackend()
    options = RunOptions(backend=backend, count="person", thumbnail_size=0, cache=False)
    loader = MolmoLoader(coffee, options)
    (doc,) = loader.load()
    assert backend.calls == 3
    # the package's defaults (share_backend; the loader walks every file) on a copy; the
    # given options left as they were
    assert loader.options.share_backend and not options.share_backend
    assert loader.options.reader_options.every_file and not (options.reader_options and options.reader_options.every_file)
    plain = loader.options.model_copy(update={"share_backend": False, "reader_options": options.reader_options})
    assert plain == options
    assert "person" in doc.metadata["counts"] and "thumbnail" not in doc.metadata
    # keywords on top of the options: one merged RunOptions, the given one left as it was
    more = MolmoLoader(coffee, options, thumbnail_size=64, ask=["What colour?"])
    assert more.options.count == ["person"] and more.options.backend is backend and options.thumbnail_size == 0
    (doc,) = more.load()
    assert doc.metadata["thumbnail"].startswith("data:image/jpeg") and doc.metadata["answers"][0]["question"] == "What colour?"
    parser = MolmoBlobParser(options)
    assert parser.options.ordered and not options.ordered  # the parser's own default, on a copy
    (parsed,) = parser.lazy_parse(Blob.from_path(coffee))
    assert parsed.id == doc.id and "person" in parsed.metadata["counts"]
    transformer = MolmoDocumentTransformer(options, content="replace")
    assert transformer.options.model_copy(update={"share_backend": False}) == options
    (out,) = transformer.transform_documents([Document("x", metadata={"image_path": str(coffee)})])
    assert out.page_content == parsed.page_content
    assert MolmoGroundedCompressor(options, top_n=2).options.model_copy(update={"share_backend": False}) == options
    assert MolmoGroundedCompressor(run=options).run.model_copy(update={"share_backend": False}) == options
