"""The notebooks in ``notebooks/``: each runs from the top, offline, in a fresh Jupyter kernel
(so every cell runs inside ipykernel's event loop), exactly as ``notebooks/run.py`` runs them
to refresh what is committed; and what is committed carries clean outputs from such a run:
every cell executed in order, pictures, no error, no secret.

Also what the offline notebooks show of the tiny random Molmo2: its noise reads as words.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "notebooks"
NOTEBOOKS = ["01_photos.ipynb", "02_slides_llamaindex.ipynb", "03_video_langchain.ipynb"]

SECRET_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),  # OpenAI-style keys
    re.compile(r"\bhf_[A-Za-z0-9]{30,}"),  # Hugging Face tokens
    re.compile(r"\bBearer\s+[A-Za-z0-9._~+/-]{16,}"),
    re.compile(r"(?i)\b(?:api[_-]?key|token|secret|password)\b[\"']?\s*[:=]\s*[\"'][^\"'\s]{8,}[\"']"),
    re.compile(r"\b[0-9a-fA-F]{32,}\b"),  # a long hex string: most providers' raw keys
]
SECRET_VARIABLES = ("WAVESPEED_API_KEY", "OPENAI_API_KEY", "OPENOCTOPUS_API_KEY", "QDRANT_API_KEY", "HF_TOKEN")


def _runner():
    spec = importlib.util.spec_from_file_location("molmo_rag_notebooks_run", FOLDER / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outputs(nb) -> list[tuple[int, dict]]:
    return [(i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _text_of(output: dict) -> str:
    """What an output shows in words (pictures left out)."""
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return "\n".join([output.get("ename", ""), output.get("evalue", ""), *output.get("traceback", [])])
    data = output.get("data", {})
    return "\n".join(str(value) for mime, value in data.items() if not mime.startswith("image/"))


def _pngs(nb) -> int:
    return sum("image/png" in out.get("data", {}) for _, out in _outputs(nb))


def _problems(nb) -> list[str]:
    """Errors and tracebacks anywhere in the outputs."""
    problems = []
    for index, output in _outputs(nb):
        text = _text_of(output)
        if output.get("output_type") == "error":
            problems.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
        elif "Traceback (most recent call last)" in text or re.search(r"\b\w+(?:Error|Exception): ", text):
            problems.append(f"cell {index}: {text.strip()[:300]}")
    return problems


# -- executing them, as CI does ----------------------------------------------------------------


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_offline_from_the_top(name, tmp_path):
    """A temporary copy runs without edits in a fresh kernel (a cold cache: the tiny model is
    built, every answer computed); every cell succeeds and the pictures are there."""
    copy = tmp_path / name
    shutil.copy(FOLDER / name, copy)
    nb, seconds = _runner().execute(copy, workdir=tmp_path / "work")
    assert not _problems(nb)
    assert _pngs(nb) >= 1
    counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
    assert seconds < 240, f"{name} took {seconds:.0f} s: keep the three under about three minutes"


# -- what is committed ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=NOTEBOOKS)
def committed(request):
    import nbformat
    path = FOLDER / request.param
    return path, nbformat.read(path, as_version=4)


def test_the_folder_holds_the_three_notebooks():
    assert sorted(p.name for p in FOLDER.glob("*.ipynb")) == NOTEBOOKS
    assert [p.name for p in _runner().notebooks()] == NOTEBOOKS


def test_committed_notebook_opens_with_the_backend_choice(committed):
    _, nb = committed
    first = nb.cells[0]
    assert first.cell_type == "code"
    assert 'BACKEND = os.environ.get("MOLMO_RAG_BACKEND", "offline")' in first.source
    for choice in ('"offline"', '"local"', '"wavespeed"', '"openai"', "allenai/Molmo2-4B", "WAVESPEED_API_KEY", "OPENAI_BASE_URL"):
        assert choice in first.source
    assert "NOISE" in first.source  # says that offline answers are noise
    assert "noise" in _text_of(first.outputs[0])


def test_committed_notebook_carries_the_outputs_of_one_clean_run(committed):
    path, nb = committed
    counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: run it from the top with notebooks/run.py"
    assert not _problems(nb), path.name
    assert not [i for i, out in _outputs(nb) if out.get("output_type") == "stream" and out.get("name") == "stderr"]
    assert _pngs(nb) >= 1
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_committed_notebook_holds_no_secret(committed):
    path, nb = committed
    texts = [cell.source for cell in nb.cells] + [_text_of(out) for _, out in _outputs(nb)]
    texts.append(json.dumps(nb.metadata))
    for text in texts:
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{path.name}: {pattern.pattern} matches {pattern.search(text).group()[:12]}..."
        for name in SECRET_VARIABLES:
            value = os.environ.get(name, "")
            assert len(value) < 6 or value not in text, f"{path.name} shows the value of {name}"
        assert f"{Path.home()}{os.sep}" not in text or str(Path.home()) in ("/", "/tmp"), f"{path.name} shows a home folder"


# -- the tiny random Molmo2 the offline notebooks use ------------------------------------------------


def test_offline_answers_read_as_words(tiny_molmo2_path):
    from molmo_rag import get_backend, iter_documents, parse_count
    from molmo_rag.testing import samples
    from molmo_rag.testing.tiny_molmo2 import WORDS

    backend = get_backend("local", model=str(tiny_molmo2_path), device="cpu", max_new_tokens=16)
    try:
        docs = list(iter_documents([samples.photo("coffee"), samples.photo("astronaut")], backend=backend, cache=False))
    finally:
        backend.close()
    assert len(docs) == 2
    for doc in docs:
        for answer in (doc.metadata["caption"], doc.metadata["scene"]):
            words = re.findall(r"[^\s.,]+", answer)
            assert answer.isprintable() and len(words) >= 4, answer
            assert set(words) <= set(WORDS), answer
            assert parse_count(answer) is None  # noise never reads as a count


def test_a_checkpoint_of_the_byte_vocabulary_is_rebuilt(tmp_path):
    pytest.importorskip("transformers")
    from molmo_rag.testing.tiny_molmo2 import TINY, build_tiny_molmo2

    old = tmp_path / "tiny"
    old.mkdir()
    (old / "model.safetensors").write_text("weights of the byte vocabulary")
    (old / "molmo_rag_checkpoint.json").write_text(json.dumps({"builder_version": 1, "seed": 0, "sizes": TINY.model_dump()}))
    assert build_tiny_molmo2(old) == old
    marker = json.loads((old / "molmo_rag_checkpoint.json").read_text())
    assert marker["builder_version"] > 1
    assert (old / "model.safetensors").stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # nothing left beside it
