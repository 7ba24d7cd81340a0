"""The small vocabularies shared by tasks, readers, backends and the CLI, in a module that
imports nothing, so a command that only needs the names starts fast."""

from __future__ import annotations

from typing import Literal

__all__ = ["Detail", "VideoTaskName", "ModelInput", "BACKENDS"]

Detail = Literal["low", "medium", "high"]
VideoTaskName = Literal["general", "summary", "analysis", "counting", "scene_description"]
ModelInput = Literal["image", "video"]
"""What the model sees: slides are images, video segments are videos."""

BACKENDS: dict[str, str] = {
    "local": "molmo_rag.backends.local:LocalBackend",
    "wavespeed": "molmo_rag.backends.wavespeed:WaveSpeedBackend",
    "openoctopus": "molmo_rag.backends.openoctopus:OpenOctopusBackend",
    "openai": "molmo_rag.backends.openai:OpenAIBackend",
}
"""Backend name -> where its class lives (imported only when that backend is used). What a
backend can do, costs and reads is declared on its class (``molmo_rag.backends.base.Backend``)."""
