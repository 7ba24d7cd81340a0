"""What can be asked of a media item, each task defined once.

A task knows its prompt for prompt-driven backends (local transformers, OpenAI-compatible,
OpenOctopus), its token budget, and how its answer is parsed into the JSON fields of
``docs/architecture.md``. Fixed REST endpoints (WaveSpeed) map tasks to their own fields; they read
``detail``, ``task`` and ``text`` from here, so that mapping also lives with the task.

Prompts follow the conventions of AI2's Molmo2 training data (see ``docs/molmo2.md``).
"""

from __future__ import annotations

from abc import abstractmethod

from typing import ClassVar

from pydantic import ConfigDict, Field

from .errors import MalformedAnswerError
from .options_base import Options
from .vocabulary import Detail, ModelInput, VideoTaskName
from .points import ImplausibleCount, parse_points, read_count, strip_points

__all__ = [
    "Task",
    "Caption",
    "Ask",
    "Count",
    "Scene",
    "VideoTask",
    "Detail",
    "VideoTaskName",
    "ModelInput",
    "task_from_dict",
]



def _points_json(text: str) -> list[dict]:
    return [{"x": p.x, "y": p.y, "t": p.t, "id": p.id, "label": p.label} for p in parse_points(text)]


def _count_of(text: str) -> tuple[int | None, list[dict]]:
    """(count, points) of a count answer; a count no scene holds is a malformed answer."""
    try:
        count = read_count(text)
    except ImplausibleCount as exc:
        raise MalformedAnswerError(
            f"the count answer states {exc}: degenerate generation, not a count; asking again would pay for the same answer"
        ) from None
    points = _points_json(text)
    if count is None and points:
        # Molmo2's object ids are unique per object across images and frames (tracks
        # repeat an id in every frame the object is in), so distinct ids are the count.
        count = len({(p["label"], p["id"]) for p in points})
    return count, points


class Task(Options):
    """Base of every task: frozen, hashable, typed options."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: ClassVar[str]
    """Short name used for capabilities, cache keys and the CLI."""
    inputs: ClassVar[frozenset[ModelInput]] = frozenset({"image", "video"})

    @classmethod
    def _what(cls) -> str:
        return f"{cls.name} task"

    @abstractmethod
    def prompt(self, media: ModelInput) -> str:
        """The prompt for prompt-driven backends."""

    def max_new_tokens(self) -> int:
        return 256

    @abstractmethod
    def parse(self, text: str) -> dict:
        """The JSON fields this task adds to a result."""

    def params(self) -> dict:
        return self.model_dump(mode="json")

    def key(self) -> str:
        """Stable identity of the task and its parameters (for the cache)."""
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params().items()) if v is not None)
        return f"{self.name}({params})"

    def to_dict(self) -> dict:
        return {"task": self.name, **self.params()}


_CAPTION_PROMPTS: dict[str, str] = {
    "low": "Write a very short description of this {m}, in one sentence, without any pointing.",
    "medium": "Describe this {m} without any pointing.",
    "high": "Describe this {m} in detail, without any pointing.",
}
_CAPTION_TOKENS: dict[str, int] = {"low": 48, "medium": 256, "high": 768}


class Caption(Task):
    """A caption at one of three detail levels (prompt and token budget both change)."""

    name: ClassVar[str] = "caption"
    detail: Detail = Field("medium", description="How long and thorough the caption is.")

    def prompt(self, media: ModelInput) -> str:
        return _CAPTION_PROMPTS[self.detail].format(m=media)

    def max_new_tokens(self) -> int:
        return _CAPTION_TOKENS[self.detail]

    def parse(self, text: str) -> dict:
        return {"caption": strip_points(text), "detail": self.detail}


class Ask(Task):
    """A free question about the media."""

    name: ClassVar[str] = "ask"
    question: str = Field(..., min_length=1, description="The question to answer.")

    def prompt(self, media: ModelInput) -> str:
        return self.question

    def max_new_tokens(self) -> int:
        return 256

    def parse(self, text: str) -> dict:
        return {"question": self.question, "answer": strip_points(text), "points": _points_json(text)}


class Count(Task):
    """Count objects with Molmo2 pointing: the answer carries a point on each one."""

    name: ClassVar[str] = "count"
    target: str = Field(..., min_length=1, description="What to count, e.g. 'people'.")

    def prompt(self, media: ModelInput) -> str:
        return f"How many {self.target} are there in this {media}? Point to each one."

    def max_new_tokens(self) -> int:
        return 384

    def parse(self, text: str) -> dict:
        count, points = _count_of(text)
        return {"target": self.target, "count": count, "points": points, "answer": strip_points(text)}


class Scene(Task):
    """A description of the setting: place, time, atmosphere, what is going on."""

    name: ClassVar[str] = "scene"

    def prompt(self, media: ModelInput) -> str:
        return (
            f"Describe the scene in this {media}: the setting, the kind of place, the time of "
            "day and what is happening, without any pointing."
        )

    def max_new_tokens(self) -> int:
        return 256

    def parse(self, text: str) -> dict:
        return {"scene": strip_points(text)}


_VIDEO_PROMPTS: dict[str, str] = {
    "general": "Describe what happens in this video.",
    "summary": "Summarize this video concisely.",
    "analysis": "Analyze this video in detail: its people, objects, actions, events and how they change over time.",
    "counting": "Count the objects, people or events in this video.",
    "scene_description": "Describe each scene in this video and its visual elements.",
}


class VideoTask(Task):
    """One of the five tasks of WaveSpeed's video-understanding endpoint, with optional text."""

    name: ClassVar[str] = "video"
    inputs: ClassVar[frozenset[ModelInput]] = frozenset({"video"})
    task: VideoTaskName = Field("general", description="The analysis to run.")
    text: str | None = Field(None, description="A question, a target to count or extra instructions.")

    def prompt(self, media: ModelInput) -> str:
        if self.task == "counting" and self.text:
            return f"How many {self.text} are there in this video? Point to each one."
        if self.task == "general" and self.text:
            return self.text
        base = _VIDEO_PROMPTS[self.task]
        return f"{base} {self.text}" if self.text else base

    def max_new_tokens(self) -> int:
        return {"summary": 256, "analysis": 768}.get(self.task, 384)

    def parse(self, text: str) -> dict:
        fields: dict = {"task": self.task, "text": self.text, "answer": strip_points(text)}
        if self.task == "counting":
            count, points = _count_of(text)
            fields.update(count=count, points=points, target=self.text)
        return fields

    def to_dict(self) -> dict:
        return {"task": self.name, "video_task": self.task, "text": self.text}


_BY_NAME: dict[str, type[Task]] = {t.name: t for t in (Caption, Ask, Count, Scene, VideoTask)}


def task_from_dict(data: dict) -> Task:
    """Rebuild a task from :meth:`Task.to_dict` output."""
    data = dict(data)
    name = data.pop("task")
    if name == "video":
        data["task"] = data.pop("video_task", "general")
    return _BY_NAME[name](**data)
