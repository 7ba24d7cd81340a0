"""``molmo-rag ARGS`` with the fake backend registered as ``fake`` (options from
``MOLMO_RAG_FAKE_OPTIONS``: :class:`molmo_rag.testing.fake_backend.EnvFakeBackend`), for the
Ray tests' CLI subprocesses. The Ray module forwards the backend registry and the
``MOLMO_RAG_*`` variables to its workers, so ``--backend fake`` resolves there the same."""

from __future__ import annotations

import sys


def main() -> int:
    from molmo_rag.backends import base

    base.BACKENDS["fake"] = "molmo_rag.testing.fake_backend:EnvFakeBackend"
    from molmo_rag.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
