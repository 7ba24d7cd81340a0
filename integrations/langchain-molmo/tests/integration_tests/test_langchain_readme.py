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
        )
        text = re.sub(r"(?<![\w/.-])media/", f"{lc_library}/", text)
        return text.replace('backend="local"', 'backend="fake"').replace("--backend local", "--backend fake")

    ran = 0
    for lang, code in blocks():
        code = localise(code)
        if lang == "bash":
            for line in code.splitlines():
                if line.startswith("molmo-rag "):
                    assert main(shlex.split(line)[1:] + ["--quiet"]) == 0
            continue
        assert lang == "python"
        namespace: dict = {"__name__": "readme"}
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
    assert ran == 6
