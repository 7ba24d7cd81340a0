#!/usr/bin/env bash
# The main job, end to end: set up, make sample media, index it into Qdrant, search it.
#
# By default it runs fully offline on a tiny random-weight Molmo2 checkpoint built on the
# spot (the real transformers code path, but its captions are noise). For real captions:
#   MOLMO_RAG_MODEL=allenai/Molmo2-4B bash scripts/demo.sh          # local, a GPU helps
#   MOLMO_RAG_BACKEND=wavespeed WAVESPEED_API_KEY=... bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
CLI=.venv/bin/molmo-rag
WORK=${MOLMO_RAG_DEMO_DIR:-.molmo-rag/demo}
mkdir -p "$WORK"

$PY examples/make_media.py examples/media >/dev/null
if [ -z "${MOLMO_RAG_BACKEND:-}" ] && [ -z "${MOLMO_RAG_MODEL:-}" ]; then
  export MOLMO_RAG_MODEL
  MOLMO_RAG_MODEL=$($PY -c "from molmo_rag.testing import build_tiny_molmo2; print(build_tiny_molmo2('$WORK/tiny-molmo2'))" 2>/dev/null)
  echo "demo: using a tiny random-weight Molmo2 built offline at $MOLMO_RAG_MODEL (captions are noise)" >&2
fi
export MOLMO_RAG_CACHE_DIR=${MOLMO_RAG_CACHE_DIR:-$WORK/cache}

echo "== molmo-rag index examples/media --count person --db $WORK/qdrant"
$CLI index examples/media --count person --db "$WORK/qdrant" --quiet
echo
echo "== molmo-rag search \"revenue by region\" --kind slide --db $WORK/qdrant"
$CLI search "revenue by region" --kind slide --db "$WORK/qdrant" --top 3
echo
echo "== molmo-rag search \"a cat\" --kind video --db $WORK/qdrant"
$CLI search "a cat" --kind video --db "$WORK/qdrant" --top 3
