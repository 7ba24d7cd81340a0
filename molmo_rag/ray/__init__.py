"""Scale-out ingestion on Ray Data (the ``ray`` extra: ``pip install 'molmo-rag[ray]'``).

The same run as :func:`molmo_rag.index` with its work spread over a Ray cluster: sources
listed on the driver, read and cut on CPU tasks, the plan run by a pool of model actors
(one local Molmo2 per GPU, or a hosted backend's concurrency split between them), the
documents embedded there and written in batches. See ``docs/scale-out.md``.

* :func:`index`: the whole run (``molmo-rag index SOURCES --ray ADDRESS``).
* :func:`document_dataset` and :func:`write_documents`: the two halves, for Ray Data users
  who put stages of their own between them.
"""

from __future__ import annotations

from .cluster import connect
from .pipeline import PoolOptions, document_dataset, index, write_documents
from .stages import RayOutcome, outcome_of

__all__ = ["PoolOptions", "RayOutcome", "connect", "document_dataset", "index", "outcome_of", "write_documents"]
