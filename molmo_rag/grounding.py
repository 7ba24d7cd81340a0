"""Grounded retrieval: Molmo2 looks at the top hits of a search and points at what the query
names; hits with evidence move above hits without, and carry that evidence.

:func:`aground` / :func:`ground` take the hits of a text search and, for the first
``top`` of them, ask the backend to count and point to the query's target (a ``Count``
task: on a photo or rendered slide, or the segment's frames for video) through the
streaming engine (cache first, a sliding window, each result cached as it arrives). Each
checked hit gets ``grounded`` (1.0 when the target was found, in the number the query asks
for if it asks; else 0.0), ``evidence`` (target, count, points, answer) and a combined
``score`` = ``weight`` x grounded + the vector score, so every hit with evidence ranks above
every hit without. Media are re-opened only when the answer is not cached.

What is checked is the hit's own picture when it has one (a framework node's image, or the
``image_path`` / ``image_url`` molmo-rag saved with it), else its ``source`` reopened at
its slide or time range; a video segment is checked on its clip while its source can be
read. A hit with neither (a text node) is passed through unchecked. A check that fails
leaves ``grounded`` None with the cause in ``evidence["error"]`` (and a warning on the
``molmo_rag.grounding`` logger): never a 0.0 that looks like a miss.

Both take a :class:`~molmo_rag.run.Run` or :class:`~molmo_rag.run.RunOptions` like every
door; by default they check with the backend and model that made the hits' collection.
:class:`Grounder` keeps one run for many queries (a framework's reranker), and
``search(query, ground=True)`` grounds its own hits.

:func:`draw` returns the hit's picture with the points drawn on it: the visual citation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Unpack

from .index.filters import KINDS, Condition
from .media.items import MediaItem
from .syncio import run_sync, run_twin
from .tasks import Count

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .backends.base import Backend
    from .documents import MediaDocument
    from .engine import EnrichedItem
    from .index.count_words import CountQuery
    from .index.store import Hit
    from .run import Run, RunChoices, RunOptions

__all__ = ["GroundedHits", "Grounder", "ground", "aground", "grounding_target", "grounding_backend", "made_with", "draw"]

_ARTICLES = ("a ", "an ", "the ", "some ", "any ")
logger = logging.getLogger("molmo_rag.grounding")
NO_PICTURE = "no picture to check (a text node: no image, image_path, image_url or media source)"


class GroundedHits(list):
    """Hits after grounded re-ranking (a plain list), with what the checking took:
    ``target`` (what was pointed at), ``checked`` (hits the backend answered for),
    ``cached`` (of those, answers from the cache), ``cost_usd``, ``failures``: hits whose
    check failed (media gone, a backend error), which rank with the misses, and
    ``skipped``: hits the backend cannot check (``grounded`` stays None). Like the
    :class:`~molmo_rag.pipeline.Hits` of a search, ``count_query`` (how the query's count
    words were read, if they were) and ``made_with`` (the backend and model that made the
    hits' collection, if known)."""

    count_query: "CountQuery | None" = None
    made_with: dict | None = None

    def __init__(self, hits: Sequence["Hit"] = (), *, target: str = ""):
        super().__init__(hits)
        self.target = target
        self.checked = 0
        self.cached = 0
        self.cost_usd = 0.0
        self.failures: list = []
        self.skipped: list[str] = []
        """Why each hit the backend cannot check was not (one line per hit)."""
        self.backend: str | None = None
        self.model: str | None = None
        """The backend and model that checked."""


def grounding_target(query: str, count_query: "CountQuery | None" = None) -> str:
    """What to point at: the counted things a query names ("at least 3 people on a stage"
    -> "people"), else the query itself without a leading article."""
    if count_query is not None and count_query.phrases:
        nouns = []
        for phrase in count_query.phrases:
            words = phrase.split()
            nouns.append(words[-1] if words else phrase)
        return " and ".join(dict.fromkeys(nouns))
    text = " ".join(query.split())
    lowered = text.lower()
    for article in _ARTICLES:
        if lowered.startswith(article):
            return text[len(article) :]
    return text


class _Reopened:
    """A loader that opens the hit's media only when the backend needs it (never when the
    answer is cached)."""

    def __init__(self, hit: "Hit", reader_options: Any):
        self.hit = hit
        self.reader_options = reader_options
        self._item: MediaItem | None = None

    def item(self) -> MediaItem:
        if self._item is None:
            from .media.sources import reopen

            h = self.hit
            self._item = reopen(h.source, kind=h.kind, slide=h.slide, start=h.start, end=h.end, options=self.reader_options)
        return self._item

    def open(self):
        return self.item().image()

    def encoded(self):
        return self.item().image_bytes()

    def frames(self, num_frames: int, max_fps: float):
        return self.item().frames(num_frames, max_fps)

    def clip(self):
        return self.item().clip()

    def thumbnail(self):
        return self.item().thumbnail()


def _item_of(hit: "Hit", reader_options: Any) -> MediaItem | str:
    """What grounding sends for a hit: its own picture (see the module docstring), else
    its source reopened when the answer is not cached; a reason to skip it when it has
    neither. Raises the core's InputError when the picture cannot be read."""
    picture = _picture_of(hit)
    if picture is not None and not (hit.kind == "video_segment" and _readable(hit.source)):
        return _picture_item(picture, hit, reader_options)
    if hit.kind not in KINDS or not hit.source:
        return NO_PICTURE
    return MediaItem(
        kind=hit.kind,  # type: ignore[arg-type]
        source=hit.source,
        media_id=hit.media_id,
        loader=_Reopened(hit, reader_options),
        slide=hit.slide,
        title=hit.title,
        start=hit.start,
        end=hit.end,
    )


def _picture_of(hit: "Hit") -> Any:
    if hit.picture is not None:
        return hit.picture
    path = hit.payload.get("image_path")
    if isinstance(path, str) and path:
        return path
    url = hit.payload.get("image_url")
    return url if isinstance(url, str) and url else None


def _readable(source: str) -> bool:
    from .media.door import is_local_path
    from .media.names import local_path

    return bool(source) and (not is_local_path(source) or os.path.isfile(local_path(source)))


def _picture_item(picture: Any, hit: "Hit", reader_options: Any) -> MediaItem:
    """The picture as a photo item, named by its content (the cache key), keeping the
    hit's source for the record."""
    from .errors import InputError, UnsupportedMediaError
    from .media.sources import read

    for item in read(picture, reader_options):
        if isinstance(item, InputError):
            raise item
        if item.kind != "image":
            raise UnsupportedMediaError(f"the picture of hit {hit.id or hit.source!r} is a {item.kind}, not an image")
        item.source = hit.source or item.source
        return item
    raise UnsupportedMediaError(f"the picture of hit {hit.id or hit.source!r} holds no image")


def _holds(count: int | None, conditions: Sequence[Condition]) -> bool:
    if count is None:
        return False
    if not conditions:
        return count > 0
    checks = {">=": count.__ge__, ">": count.__gt__, "<=": count.__le__, "<": count.__lt__, "==": count.__eq__, "!=": count.__ne__}
    return all(checks[c.op](c.value) for c in conditions)


async def aground(
    hits: Sequence["Hit"],
    query: str,
    run: Run | RunOptions | Backend | None = None,
    /,
    *,
    count_query: CountQuery | None = None,
    top: int = 10,
    weight: float = 2.0,
    **choices: Unpack[RunChoices],
) -> GroundedHits:
    """Re-rank the first ``top`` hits by what the backend finds in them (see the module
    docstring); the hits after ``top`` follow unchanged. ``count_query``: the count
    conditions read from the query's words, which a hit's count must meet to be grounded.

    ``run``: a :class:`~molmo_rag.run.Run` (used and left open), :class:`~molmo_rag.run.RunOptions`
    or a ready Backend (short for ``RunOptions(backend=it)``), or the options' fields as
    keywords (``backend``, ``model``, ``cache``, ``reader_options``, ``window``, ...). When
    they name no backend, the hits are checked with the backend and model that made their
    collection (:func:`made_with`). No backend is made when there is no hit to check.

    A hit whose check failed keeps ``grounded`` None, with ``evidence["error"]`` (the cause,
    also logged); one with no picture, or one the backend cannot check (a photo on a backend
    that counts on video only), keeps ``grounded`` None with ``evidence["skipped"]`` saying
    why. Either ranks with the misses, by its vector score."""
    from .errors import MolmoRagError
    from .engine import EnrichedItem
    from .index.count_words import check_query
    from .results import Failure

    check_query(query)
    target = grounding_target(query, count_query)
    conditions = list(count_query.conditions) if count_query is not None else []
    checked = [dataclasses.replace(h) for h in hits[: max(0, top)]]
    rest = [dataclasses.replace(h) for h in hits[max(0, top) :]]
    out = GroundedHits(target=target)
    out.count_query = count_query if count_query is not None else getattr(hits, "count_query", None)
    out.made_with = made_with(hits)
    if checked:
        live, owned = _run_for(hits, run, choices)
        try:
            out.backend, out.model = live.backend.name, live.model
            task = Count(target=target)
            engine = live.engine(tasks=[task], ordered=True)
            items, by_item = [], {}
            for hit in checked:
                hit.vector_score = hit.score
                try:
                    item = _item_of(hit, engine.reader_options)
                except MolmoRagError as exc:
                    out.failures.append(Failure(source=hit.source or str(_picture_of(hit)), error=exc, media_id=hit.media_id or None, task=task))
                    _failed(out, hit, f"{type(exc).__name__}: {exc}")
                    continue
                if isinstance(item, str):
                    _skip(out, hit, reason=item)
                elif live.backend.supports(task, item.model_input):
                    items.append(item)
                    by_item[id(item)] = hit
                else:  # never sent: said in the hit's evidence
                    _skip(out, hit, live.backend, item)
            if items:
                async with aclosing(engine.run(items)) as outcomes:
                    async for outcome in outcomes:
                        if isinstance(outcome, Failure):  # pragma: no cover - ready items are never unread
                            out.failures.append(outcome)
                            continue
                        assert isinstance(outcome, EnrichedItem)
                        _take(out, by_item[id(outcome.item)], outcome, conditions, live.backend)
        finally:
            if owned:
                live.close()
        for hit in checked:
            hit.score = weight * (hit.grounded or 0.0) + hit.vector_score
        checked.sort(key=lambda h: h.score, reverse=True)
    out.extend(checked + rest)
    return out


ground = run_twin(aground)


def _take(
    out: GroundedHits, hit: "Hit", outcome: "EnrichedItem", conditions: Sequence[Condition], backend: "Backend"
) -> None:
    """The evidence of one checked hit: its count and points, or why there is none."""
    out.failures.extend(outcome.failures)
    result = outcome.results[0] if outcome.results else None
    if result is None and not outcome.failures:
        _skip(out, hit, backend, outcome.item)
        return
    evidence: dict[str, Any] = {"target": out.target, "count": None, "points": [], "answer": None}
    if result is not None:
        out.checked += 1
        out.cached += int(result.cached)
        out.cost_usd += 0.0 if result.cached else result.cost_usd
        count = result.fields.get("count")
        hit.grounded = 1.0 if _holds(count, conditions) else 0.0
        evidence.update(count=count, points=list(result.fields.get("points") or []), answer=result.fields.get("answer"))
        hit.evidence = evidence
    else:
        error = outcome.failures[0].to_json()
        _failed(out, hit, f"{error['error_type']}: {error['error']}")
        return
    hit.evidence = evidence


def _failed(out: GroundedHits, hit: "Hit", cause: str) -> None:
    """A check that could not be made: not a miss (``grounded`` stays None), and said."""
    hit.grounded = None
    hit.evidence = {"target": out.target, "count": None, "points": [], "answer": None, "error": cause}
    logger.warning("grounding could not check %s: %s", hit.source or hit.id, cause)


def _skip(out: GroundedHits, hit: "Hit", backend: "Backend | None" = None, item: MediaItem | None = None, *, reason: str | None = None) -> None:
    hit.grounded = None
    why = reason if reason is not None else _cannot_check(backend, item)  # type: ignore[arg-type]
    hit.evidence = {"target": out.target, "count": None, "points": [], "answer": None, "skipped": why}
    out.skipped.append(why)


def _run_for(hits: Sequence["Hit"], run: Any, choices: "RunChoices | dict[str, Any]") -> "tuple[Run, bool]":
    """The run to check with and whether this call owns it: a Run as given, else one built
    from the options, with the backend and model that made the hits' collection when the
    options name none."""
    from .run import Run

    if isinstance(run, Run):
        return Run.of(run, choices)
    return Run(_with_made_backend(_options_of(run, choices), hits)), True


def _options_of(run: Any, choices: "RunChoices | dict[str, Any]") -> "RunOptions":
    """The options a grounding door was given (a ready Backend: short for ``RunOptions(backend=it)``)."""
    from .backends.base import Backend
    from .run import RunOptions, run_options

    if isinstance(run, Backend):
        run = RunOptions(backend=run)
    if run is not None and not isinstance(run, RunOptions):
        from .errors import UsageError

        raise UsageError(
            f"grounding takes a Run, RunOptions or a Backend, not {type(run).__name__}: "
            "give a backend by name as backend=NAME", option="run",
        )
    return run_options(run, choices)


def _with_made_backend(options: "RunOptions", hits: Sequence["Hit"]) -> "RunOptions":
    """``options`` with the backend (and model) that made the hits' collection when they
    name none (:func:`grounding_backend`)."""
    from .run import run_options

    backend, model = grounding_backend(hits, options.backend, options.model)
    if backend == options.backend and model == options.model:
        return options
    return run_options(options, {"backend": backend, "model": model})


def _cannot_check(backend: "Backend", item: MediaItem) -> str:
    from .backends.base import capable_backends

    media = item.model_input
    capable = capable_backends(Count(target="x"), media)
    hint = f" (backends that can: {', '.join(capable)})" if capable else ""
    items = "images or slides" if media == "image" else "video segments"
    return f"backend {backend.name!r} cannot run count on {items}{hint}"


def made_with(hits: Sequence["Hit"]) -> dict | None:
    """The backend and model that made the hits' collection: recorded with it (a
    :class:`~molmo_rag.pipeline.Hits` from ``search``), else read from the hits' own
    payload when they all name one backend; None when neither says."""
    recorded = getattr(hits, "made_with", None)
    if recorded:
        return dict(recorded)
    from .backends.base import backend_class
    from .vocabulary import BACKENDS

    backends = {h.payload.get("backend") for h in hits}
    models = {h.payload.get("model") for h in hits}
    name = backends.pop() if len(backends) == 1 else None
    if not isinstance(name, str) or name not in BACKENDS:
        return None
    model = models.pop() if len(models) == 1 else None
    # a hosted backend's payload names its endpoint, not a model to ask for
    usable = isinstance(model, str) and "+" not in model and backend_class(name).env.model is not None
    return {"backend": name, "model": model if usable else None}


def grounding_backend(
    hits: Sequence["Hit"], backend: "Backend | str | None" = None, model: str | None = None
) -> "tuple[Backend | str | None, str | None]":
    """What to check with: the backend given, else the one that made the collection; the
    model given, else the recorded one when the backend is the one that made it."""
    from .backends.base import Backend

    if isinstance(backend, Backend):
        return backend, model
    made = made_with(hits)
    if made is None:
        return backend, model
    if backend is None:
        backend = made["backend"]
    if model is None and backend == made["backend"]:
        model = made.get("model")
    return backend, model


class Grounder:
    """Grounded re-ranking with settings kept between queries: what a framework's reranker
    holds. ``run``: a :class:`~molmo_rag.run.Run` (used, never closed here),
    :class:`~molmo_rag.run.RunOptions` or a ready Backend, or the options' fields as
    keywords. From options, ONE run is made at the first query (with the backend that made
    those hits' collection when the options name none) and reused for every later query,
    so a local model loads once; :meth:`close` closes it. ``count_labels``: the labels
    counted in the collection (``molmo-rag labels``); count phrases of a query over them
    ("at least 3 people") must hold for a hit to be grounded, and the rest of the query is
    what is pointed at."""

    def __init__(
        self,
        run: Run | RunOptions | Backend | None = None,
        /,
        *,
        top: int = 10,
        weight: float = 2.0,
        count_labels: Sequence[str] | None = None,
        **choices: Unpack[RunChoices],
    ):
        from .run import Run

        self.top, self.weight, self.count_labels = top, weight, list(count_labels or [])
        self._lock = threading.Lock()
        self._run: "Run | None" = None
        self._owned = False
        if isinstance(run, Run):
            self._run = Run.of(run, choices)[0]  # refuses choices on top of a built run
            self.options = run.options
        else:
            self.options = _options_of(run, choices)

    @property
    def run(self) -> "Run | None":
        """The run checking the hits (None before the first query of an owned one)."""
        return self._run

    def _live(self, hits: Sequence["Hit"]) -> "Run":
        from .run import Run

        with self._lock:
            if self._run is None:
                self._run, self._owned = Run(_with_made_backend(self.options, hits)), True
            return self._run

    def _read(self, query: str) -> "tuple[str, CountQuery | None]":
        if not self.count_labels:
            return query, None
        from .index.count_words import split_counts

        read = split_counts(query, self.count_labels)
        return read.text or query, read

    async def aground(self, hits: Sequence["Hit"], query: str) -> GroundedHits:
        text, read = self._read(query)
        run = self._live(hits) if hits[: max(0, self.top)] else self.options  # nothing to check: no run made
        return await aground(hits, text, run, count_query=read, top=self.top, weight=self.weight)

    def ground(self, hits: Sequence["Hit"], query: str) -> GroundedHits:
        return run_sync(self.aground(hits, query))

    def close(self) -> None:
        """Close the run made here (model memory, HTTP clients); a Run handed in stays open."""
        with self._lock:
            run, self._run = (self._run, None) if self._owned else (None, self._run)
            self._owned = False
        if run is not None:
            run.close()

    def __enter__(self) -> "Grounder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- visual citations ----------------------------------------------------------------------------


def draw(
    hit: "Hit | MediaDocument",
    *,
    points: Sequence[dict] | None = None,
    reader_options: Any = None,
    radius: int | None = None,
    colour: tuple[int, int, int] = (255, 40, 40),
) -> "Image.Image":
    """The hit's picture with its points drawn: the photo, the rendered slide, or for a video
    segment the frames at the points' times side by side, each with its own points.

    ``points`` default: the hit's grounding evidence, else the points stored at index time
    (counts and answers). x and y are in 0..1; t in seconds of the video."""
    from PIL import Image, ImageDraw

    if points is None:
        evidence = getattr(hit, "evidence", None)
        if evidence and evidence.get("points") is not None:
            points = evidence["points"]
        else:
            meta = getattr(hit, "payload", None) or getattr(hit, "metadata", None) or {}
            points = meta.get("points") or []
    item = hit.item if hasattr(hit, "item") else _item_of(hit, reader_options)
    if item.kind != "video_segment":
        pictures = [(item.image().convert("RGB"), list(points))]
    else:
        pictures = _frames_at(item, points)
    drawn = []
    for picture, its_points in pictures:
        picture = picture.copy()
        pen = ImageDraw.Draw(picture)
        r = radius or max(3, round(min(picture.size) / 40))
        for p in its_points:
            x, y = float(p.get("x", 0)) * picture.width, float(p.get("y", 0)) * picture.height
            pen.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=max(2, r // 2))
            pen.ellipse((x - 1, y - 1, x + 1, y + 1), fill=colour)
        drawn.append(picture)
    if len(drawn) == 1:
        return drawn[0]
    height = max(p.height for p in drawn)
    strip = Image.new("RGB", (sum(p.width for p in drawn) + 4 * (len(drawn) - 1), height), "white")
    x = 0
    for picture in drawn:
        strip.paste(picture, (x, 0))
        x += picture.width + 4
    return strip


def _frames_at(item: MediaItem, points: Sequence[dict]) -> list[tuple["Image.Image", list[dict]]]:
    """For a segment: one frame per distinct point time (or the middle frame if none)."""
    from PIL import Image

    frames = item.frames(64, 2.0)
    start = item.start or 0.0
    by_time: dict[float, list[dict]] = {}
    for p in points:
        t = p.get("t")
        by_time.setdefault(round(float(t), 2) if t is not None else -1.0, []).append(p)
    if not by_time:
        return [(item.thumbnail().convert("RGB"), [])]
    out = []
    for t, its_points in sorted(by_time.items()):
        if t < 0:
            index = len(frames) // 2
        else:
            index = min(range(len(frames)), key=lambda i: abs(frames.timestamps[i] - (t - start)))
        out.append((Image.fromarray(frames.frames[index]), its_points))
    return out
