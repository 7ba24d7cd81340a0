"""Execute the notebooks the way CI does and save them with their outputs.

    .venv/bin/python notebooks/run.py                   # all of them, offline, in place
    .venv/bin/python notebooks/run.py 02_slides_llamaindex.ipynb
    .venv/bin/python notebooks/run.py --backend local   # real answers (keys from the environment)

Each notebook runs from the top in a fresh kernel of this interpreter (Jupyter's ipykernel, so
every cell runs inside its event loop), with a fresh result cache and working folder, and is
written back only when every cell succeeded. ``tests/test_notebooks.py`` runs the same
:func:`execute` on temporary copies and checks what is committed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CELL_TIMEOUT = 600
"""Seconds one cell may take (the first builds the tiny checkpoint on a cold cache)."""

SECRET_VARIABLES = ("WAVESPEED_API_KEY", "OPENAI_API_KEY", "OPENOCTOPUS_API_KEY", "QDRANT_API_KEY", "HF_TOKEN")
"""Keys a notebook run offline never needs: kept out of its kernel, so no output can show one."""


def notebooks() -> list[Path]:
    """The notebooks of this folder, in reading order."""
    return sorted(HERE.glob("[0-9][0-9]_*.ipynb"))


def kernel_env(workdir: Path, backend: str = "offline") -> dict[str, str]:
    """The kernel's environment: this one with the chosen backend and a result cache of its
    own under ``workdir``; offline, also without molmo-rag's other settings, API keys and
    service URLs, so nothing but the offline stand-ins can be reached or shown."""
    env = dict(os.environ)
    if backend == "offline":
        env = {k: v for k, v in env.items() if not k.startswith("MOLMO_RAG_")}
        for name in SECRET_VARIABLES + ("OPENAI_BASE_URL", "WAVESPEED_BASE_URL", "OPENOCTOPUS_BASE_URL"):
            env.pop(name, None)
        env["HF_HUB_OFFLINE"] = "1"
    env["MOLMO_RAG_BACKEND"] = backend
    env["MOLMO_RAG_CACHE_DIR"] = str(workdir / "cache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _kernel_manager(folder: Path):
    """A kernel manager that starts ipykernel with *this* interpreter, whatever kernelspecs
    the machine has (a user-wide ``python3`` spec may point at another Python), talking over
    Unix sockets in ``folder`` (no TCP port)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    name = "molmo-rag-notebooks"
    spec_dir = folder / "kernelspecs"
    (spec_dir / name).mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": KERNELSPEC["display_name"],
        "language": "python",
    }
    (spec_dir / name / "kernel.json").write_text(json.dumps(spec))
    return KernelManager(
        kernel_name=name,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir)]),
        transport="ipc",
        ip=str(folder / "ipc"),
    )


def execute(path: str | os.PathLike, *, workdir: str | os.PathLike, backend: str = "offline", timeout: int = CELL_TIMEOUT):
    """Run the notebook at ``path`` from the top with ``workdir`` as its current folder and
    return ``(notebook, seconds)``; raises ``nbclient.exceptions.CellExecutionError`` at the
    first cell that fails. ``path`` itself is not changed."""
    import nbformat
    from nbclient import NotebookClient

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        km=_kernel_manager(workdir / ".kernel"),
        timeout=timeout,
        allow_errors=False,
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    started = time.perf_counter()
    client.execute(env=kernel_env(workdir, backend), cleanup_kc=True)  # the kernel is shut down after
    seconds = time.perf_counter() - started
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb, seconds


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description="Execute the notebooks and save them with their outputs.")
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all of them)")
    parser.add_argument("--backend", default="offline", help="offline (default), local, wavespeed or openai")
    parser.add_argument("--workdir", help="where the notebooks run (default: a fresh temporary folder)")
    parser.add_argument("--check", action="store_true", help="run them but leave the files as they are")
    args = parser.parse_args(argv)

    chosen = [HERE / Path(name).name for name in args.names] or notebooks()
    missing = [p for p in chosen if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(p.name for p in missing)}")
    root = Path(args.workdir) if args.workdir else Path(tempfile.gettempdir()) / "molmo-rag-notebooks"
    if not args.workdir and root.exists():
        shutil.rmtree(root)
    total = 0.0
    for path in chosen:
        nb, seconds = execute(path, workdir=root / path.stem, backend=args.backend)
        total += seconds
        if not args.check:
            nbformat.write(nb, path)
        print(f"{path.name}: {seconds:.1f} s{'' if args.check else ', saved'}", flush=True)
    print(f"total: {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
