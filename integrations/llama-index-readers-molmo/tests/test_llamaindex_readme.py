"""The README runs as written: its Quick start (pip install aside) to a filtered retrieval
over photos, slides and video segments, then the 'Both doors' steps in order (the CLI
indexing the LlamaIndex-written collection, a filtered query engine, the CLI's search), with
only the media folder and index paths substituted and the fake backend as MOLMO_RAG_BACKEND."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from llama_index.core.llms import MockLLM

from molmo_rag.cli import main as cli

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_quick_start_and_both_doors(li_media, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLMO_RAG_BACKEND", "fake")
    db = tmp_path / "my-index"

    def local(code: str) -> str:
        return code.replace('"media/"', repr(f"{li_media}/")).replace('"./my-index"', repr(str(db)))

    text = README.read_text()
    quick = section(text, "Quick start")
    (install, quick_code) = blocks(quick, "bash")[0], blocks(quick, "python")[0]
    assert install.startswith("pip install llama-index-readers-molmo")
    assert len(install.strip().splitlines()) + len(quick_code.strip().splitlines()) < 15
    namespace: dict = {}
    exec(compile(local(quick_code), "README.md (Quick start)", "exec"), namespace)  # noqa: S102 - the README is ours
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()]
    documents = namespace["documents"]
    assert {d.metadata["kind"] for d in documents} == {"image", "slide", "video_segment"} and len(documents) == 9
    crowded = {d.id_ for d in documents if d.metadata["counts"]["person"] >= 2}
    assert printed and len(printed) == min(5, len(crowded))
    assert {kind for _, kind, *_ in printed} <= {"image", "slide", "video_segment"}
    assert all(Path(source).exists() for _, _, source, *_ in printed)
    namespace["index"].vector_store.close()  # the script has ended: the embedded folder is free

    doors = section(text, "Both doors, both ways")
    shell = [line for block in blocks(doors, "bash") for line in block.splitlines() if line.startswith("molmo-rag ")]
    python = blocks(doors, "python")
    assert len(shell) == 2 and len(python) == 1

    def run_cli(line: str) -> list[dict]:
        args = [{"media/": str(li_media), "./my-index": str(db)}.get(a, a) for a in shlex.split(line)[1:]]
        assert cli([*args, "--json"]) == 0
        return [json.loads(out) for out in capsys.readouterr().out.splitlines() if out.strip()]

    indexed = run_cli(shell[0])  # the CLI over the collection LlamaIndex wrote: every point is current
    assert indexed[-1]["summary"]["indexed"] == 0 and indexed[-1]["summary"]["unchanged"] == 9

    exec(compile(local(python[0]), "README.md (Both doors)", "exec"), {**namespace, "my_llm": MockLLM(max_tokens=8)})  # noqa: S102
    capsys.readouterr()

    hits = run_cli(shell[1])
    expected = [d for d in documents if d.metadata["kind"] == "video_segment" and d.metadata["counts"]["person"] >= 2]
    assert expected and {h["id"] for h in hits} == {d.id_ for d in expected}


def test_readme_one_run_shared_by_every_door(li_media, tmp_path, monkeypatch):
    from molmo_rag.testing import FakeBackend

    made: list = []
    init = FakeBackend.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(FakeBackend, "__init__", recording_init)
    (code,) = blocks(section(README.read_text(), "Options"), "python")
    code = code.replace('backend="local"', 'backend="fake"').replace('"more-media/"', repr(str(li_media / "decks")))
    code = code.replace('"media/"', repr(str(li_media / "photos"))).replace('"./my-index"', repr(str(tmp_path / "db")))
    namespace: dict = {}
    imports = "from llama_index.core.ingestion import IngestionPipeline\nfrom llama_index.readers.molmo import *\n"
    exec(compile(imports + code, "README.md (Options)", "exec"), namespace)  # noqa: S102 - the README is ours
    assert len(namespace["documents"]) == 3 and len(made) == 1  # one backend for the reader and the CLI's indexing
    assert made[0].calls == 3 * 3 + 4 * 3  # three photos, four slides: caption, scene, count each


def test_readme_which_door_opens_which(li_media, li_fake, tmp_path):
    from llama_index.readers.molmo import MolmoReader

    documents = MolmoReader(backend=li_fake, count=["person"]).load_data(li_media)
    edge, small = blocks(section(README.read_text(), "Which door opens which index"), "python")
    namespace: dict = {"documents": documents}
    exec(compile(edge.replace('"./my-index"', repr(str(tmp_path / "my-index"))), "README.md (MolmoVectorStore)", "exec"), namespace)  # noqa: S102
    crowded = {d.id_ for d in documents if d.metadata["counts"]["person"] >= 2}
    assert crowded and {h.id for h in namespace["hits"]} == crowded
    assert (tmp_path / "my-index" / "molmo-rag-edge.json").is_file()  # a new folder is Qdrant Edge

    exec(compile(small.replace('"./small-index"', repr(str(tmp_path / "small-index"))), "README.md (stock)", "exec"), namespace)  # noqa: S102
    try:
        nodes = namespace["stock"].as_retriever(similarity_top_k=20).retrieve("people talking")
        assert {n.node.node_id for n in nodes} == {d.id_ for d in documents}
    finally:
        namespace["client"].close()


def test_readme_own_paths_hand_a_multimodal_llm_the_filtered_pictures(li_media):
    from llama_index.core.schema import ImageNode

    from test_llamaindex_pictures import RecordingLLM, picture_bytes  # the tests folder is on sys.path

    (code,) = blocks(section(README.read_text(), "LlamaIndex's own paths: any store, the picture on every hit"), "python")
    code = code.replace('backend="local"', 'backend="fake"').replace('"media/"', repr(f"{li_media}/"))
    llm = RecordingLLM()
    namespace: dict = {"my_multimodal_llm": llm}
    exec(compile(code, "README.md (own paths)", "exec"), namespace)  # noqa: S102 - the README is ours
    crowded = {d.id_ for d in namespace["documents"] if d.metadata["counts"]["person"] >= 2}
    hits = namespace["retriever"].retrieve("What are the people doing?")
    assert crowded and {h.node.node_id for h in hits} <= crowded and len(hits) == min(5, len(crowded))
    assert all(isinstance(h.node, ImageNode) and Path(h.node.image_path).is_file() for h in hits)
    sent = {picture_bytes(block) for block in llm.images()}
    assert sent == {Path(h.node.image_path).read_bytes() for h in hits}  # the LLM saw each hit's picture
