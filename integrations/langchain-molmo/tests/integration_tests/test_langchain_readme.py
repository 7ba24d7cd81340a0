"""The README's examples run: every ``python`` block (and the ``molmo-rag`` command lines of
the ``bash`` blocks), in order, with the paths pointed at the test library and the
backend swapped for the pixel-statistics FakeBackend."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return FENCE.findall(README.read_text())


def test_the_quickstart_is_short():
    (install_lang, install), (lang, code) = blocks()[:2]
    assert install_lang == "bash" and install.strip().startswith("pip install")
    assert lang == "python" and "MolmoLoader" in code and "molmo_filter" in code
    assert len(install.strip().splitlines()) + len(code.strip().splitlines()) < 15


@pytest.mark.filterwarnings("ignore:`langchain-community` is being sunset:DeprecationWarning")
def test_every_readme_example_runs(lc_library, lc_fake_backend, tmp_path, capsys):
    from langchain_qdrant import QdrantVectorStore
    from molmo_rag.cli import main
    from qdrant_client import QdrantClient

    def localise(text: str) -> str:
        text = text.replace("./my-index", str(tmp_path / "my-index")).replace(
            "./molmo-index", str(tmp_path / "molmo-index")
        ).replace("./visual-index", str(tmp_path / "visual-index"))
        text = re.sub(r"(?<![\w/.-])media/", f"{lc_library}/", text)
        text = text.replace('"backend": "local"', '"backend": "fake"')
        return text.replace('backend="local"', 'backend="fake"').replace("--backend local", "--backend fake")

    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from pydantic import Field

    class RecordingChatModel(GenericFakeChatModel):  # the multimodal `llm` the README leaves to you
        received: list = Field(default_factory=list)

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            self.received.append(list(messages))
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    llm = RecordingChatModel(messages=iter(["A stage."] * 4))
    ran = 0
    for lang, code in blocks():
        code = localise(code)
        if lang == "bash":
            for line in code.splitlines():
                if line.startswith("molmo-rag "):
                    assert main(shlex.split(line)[1:] + ["--quiet"]) == 0
            continue
        assert lang == "python"
        namespace: dict = {"__name__": "readme", "llm": llm}
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
        for value in namespace.values():  # embedded Qdrant folders admit one client: close them
            if isinstance(value, QdrantVectorStore):
                value.client.close()
            elif isinstance(value, QdrantClient):
                value.close()
        ran += 1
        if ran == 1:  # the quickstart: three filtered hits, photos or video segments with people
            lines = capsys.readouterr().out.strip().splitlines()
            assert len(lines) == 3 and all(line.split()[0] in ("image", "video_segment") for line in lines)
            assert "talk.pdf" not in "".join(lines)
            assert namespace["docs"] and {d.metadata["kind"] for d in namespace["docs"]} == {
                "image",
                "slide",
                "video_segment",
            }
        if "enriched" in namespace:
            assert namespace["enriched"][0].metadata["caption"] and "cup" in namespace["enriched"][0].metadata["counts"]
        if "slides" in namespace:
            assert namespace["slides"] and {d.metadata["kind"] for d in namespace["slides"]} == {"slide"}
        if "ContextualCompressionRetriever" in code:  # grounded: evidence first, counts in words held
            found = namespace["docs"]
            assert found and all(d.metadata["counts"].get("person", 0) >= 3 for d in found)
            assert [d.metadata["grounded"] for d in found] == sorted((d.metadata["grounded"] for d in found), reverse=True)
        if "DirectoryLoader" in code:  # one loader per file, one backend: the same Documents
            assert len(namespace["docs"]) == 7
        if "image_message" in code:  # the chat model got the three retrieved pictures
            ((message,),) = llm.received
            assert [b["type"] for b in message.content_blocks].count("image") == 3
        if "crowds" in namespace:
            assert namespace["crowds"] and all(d.metadata["count_person"] >= 2 for d in namespace["crowds"])
            assert all("count_person" in d.metadata and "counts" not in d.metadata for d in namespace["flat"])
        if "MolmoVectorStore(" in code:  # the package's own store on the embedded default
            assert namespace["people"] and all(d.metadata["count_person"] >= 2 for d in namespace["people"])
            assert all(d.id and d.metadata["kind"] == "video_segment" for d in namespace["segments"])
            assert (tmp_path / "visual-index" / "molmo-rag-edge.json").is_file()  # a new folder is Edge
        if "record_manager" in namespace:
            assert namespace["first"]["num_added"] == 7 and namespace["again"]["num_skipped"] == 7
            assert namespace["again"]["num_added"] == 0
    assert ran == 11
