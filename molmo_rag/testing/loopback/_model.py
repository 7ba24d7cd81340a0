"""A stand-in for Molmo2 inside the loopback servers: answers that depend on the input
(media hash and size, the task, the target), in Molmo2's output conventions, so tests can
check every item got its own answer and the parsers see real markup."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from dataclasses import dataclass

__all__ = ["MediaInfo", "inspect_media", "decode_data_uri", "answer"]

_COUNT_PROMPT = re.compile(r"how many (?P<target>.+?) are there", re.IGNORECASE)


def decode_data_uri(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    if ";base64" in header:
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            return payload.encode()
    return payload.encode()


@dataclass(frozen=True)
class MediaInfo:
    kind: str
    sha256: str
    nbytes: int
    width: int | None = None
    height: int | None = None

    @property
    def tag(self) -> str:
        return self.sha256[:12]

    def describe(self) -> str:
        size = f"{self.width}x{self.height} " if self.width else ""
        return f"{size}{self.kind} (sha256 {self.tag}, {self.nbytes} bytes)"


def inspect_media(data: bytes, kind: str) -> MediaInfo:
    width = height = None
    if kind == "image":
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
        except Exception:  # not a decodable image (e.g. a remote URL we cannot fetch offline)
            pass
    return MediaInfo(kind=kind, sha256=hashlib.sha256(data).hexdigest(), nbytes=len(data), width=width, height=height)


def _points(info: MediaInfo, n: int) -> str:
    digest = bytes.fromhex(info.sha256)
    groups = []
    for i in range(n):
        x = 100 + (digest[(2 * i) % 32] * 3) % 900
        y = 100 + (digest[(2 * i + 1) % 32] * 3) % 900
        groups.append((i, f"{i + 1} {x} {y}"))
    if info.kind == "video":
        return ";".join(f"{0.5 * (i + 1):.1f} {g}" for i, g in groups)
    return "1 " + " ".join(g for _, g in groups)


def count_of(info: MediaInfo, target: str) -> int:
    return 1 + int(hashlib.sha256((info.sha256 + target).encode()).hexdigest()[:2], 16) % 5


def answer(info: MediaInfo, *, task: str, detail: str = "medium", text: str | None = None) -> str:
    """What the fake model says. ``task``: caption | scene | counting | general | summary |
    analysis | scene_description | prompt (free prompt: counting prompts are recognised)."""
    if task == "prompt":
        match = _COUNT_PROMPT.search(text or "")
        if match:
            task, text = "counting", match.group("target")
        elif (text or "").lower().startswith(("describe this", "write a very short description")):
            task = "caption"
            detail = "high" if "in detail" in (text or "") else "low" if "very short" in (text or "") else "medium"
        elif "describe the scene" in (text or "").lower():
            task = "scene"
        else:
            task = "general"
    what = info.describe()
    if task == "caption":
        base = f"A {what}, captioned at {detail} detail by the loopback model."
        if detail == "low":
            return f"A {info.kind} {info.tag}."
        if detail == "high":
            return base + " It shows a carefully lit subject in the foreground and a plain background behind it."
        return base
    if task in ("scene", "scene_description"):
        return f"The scene in the {what} is an indoor setting in daylight; the loopback model sees a calm room."
    if task == "counting":
        target = text or "objects"
        n = count_of(info, target)
        return f"Counting the <points coords=\"{_points(info, n)}\">{target}</points> shows a total of {n}."
    if task == "summary":
        return f"Summary of the {what}: a short clip."
    if task == "analysis":
        return f"Analysis of the {what}: people, objects and actions change over time."
    question = f" Question: {text}" if text else ""
    return f"About the {what}:{question} the loopback model answers yes."
