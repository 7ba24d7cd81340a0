"""The local backend: Molmo2 through transformers' native implementation.

The model and its processor load on first use through ``AutoProcessor`` /
``AutoModelForImageTextToText`` (no ``trust_remote_code``); torch and transformers are
imported only then, so importing this module stays cheap. First use is the first request
the cache cannot answer: a fully cached run, or one whose sources cannot be read, never
loads the model (nor needs its checkpoint). A model that cannot load is a ``fatal`` error:
the run ends with that one error instead of failing every item with it.

Requests run in real batches: images share one ``generate`` call, videos share another
(one video per prompt, never mixed with images in a batch), with left padding and greedy
decoding, so a batched answer equals the answer the same request gets alone.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ..errors import BackendError, ConfigurationError, MissingDependencyError, MolmoRagError, UsageError
from ..media.items import VideoFrames
from ..options_base import cache_key_field
from ..tasks import ModelInput
from ..cost import FREE, Price
from .base import GENERATION_STOP, MODEL_ENV, Answer, BackendEnv, BackendOptions, BatchedBackend, Request

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["LocalBackend", "LocalOptions"]

DEFAULT_MODEL = "allenai/Molmo2-4B"


class LocalOptions(BackendOptions):
    """Options of the local (transformers) backend."""

    what: ClassVar[str] = "local backend option"

    model: str = Field(DEFAULT_MODEL, description="Hugging Face model id or local checkpoint folder.")
    device: str = Field(
        "auto", description="'auto' (CUDA, then Apple MPS, then CPU) or a torch device such as 'cuda:1'."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = cache_key_field(
        "auto", description="Weights dtype; 'auto' is bfloat16 on CUDA and MPS, float32 on CPU."
    )
    batch_size: int = Field(4, ge=1, description="Requests per generate call.")
    num_frames: int = cache_key_field(64, ge=1, description="Most frames sampled from one video segment.")
    max_fps: float = cache_key_field(2.0, gt=0, description="Most frames per second sampled from a video segment.")
    max_new_tokens: int | None = cache_key_field(
        None, ge=1, description="Answer length cap for every task; None = each task's own budget."
    )
    min_new_tokens: int | None = cache_key_field(
        None, ge=1, description="Force at least this many new tokens (fixed-length benchmarks)."
    )


def _torch_and_transformers():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "transformers", "local", "the local backend") from exc
    try:
        import torchvision  # noqa: F401  (Molmo2's image and video processors need it)
    except ImportError as exc:
        raise MissingDependencyError("torchvision", "local", "Molmo2's image processors") from exc
    return torch, transformers


def resolve_device(device: str) -> str:
    """'auto' becomes the best available accelerator; anything else is passed through."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def check_device(device: str) -> str:
    """The device, if this machine has it; otherwise a clear ConfigurationError."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UsageError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'", option="device") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigurationError(f"device {device!r} asked for, but torch sees no CUDA GPU here")
        if dev.index is not None and dev.index >= count:
            raise ConfigurationError(f"device {device!r} asked for, but torch sees {count} CUDA GPU(s)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigurationError(f"device {device!r} asked for, but Apple MPS is not available here")
    return device


def _has_accelerate() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def resolve_dtype(dtype: str, device: str) -> "torch.dtype":
    import torch

    if dtype == "auto":
        return torch.float32 if device.startswith("cpu") else torch.bfloat16
    return getattr(torch, dtype)


def video_metadata(frames: VideoFrames):
    """transformers' VideoMetadata whose ``frames_indices / fps`` are the frames' clip times.

    The processor prints each frame's time as ``frame_index / fps``; when the loader's
    indices and fps do not reproduce its timestamps (e.g. variable frame rate), a
    millisecond clock is used instead so the times in the prompt are still right.
    """
    from transformers.video_utils import VideoMetadata

    fps, indices = float(frames.fps or 0.0), list(frames.indices)
    consistent = fps > 0 and len(indices) == len(frames.timestamps) and all(
        abs(i / fps - t) < 0.05 for i, t in zip(indices, frames.timestamps)
    )
    if not consistent:
        fps, indices = 1000.0, [round(t * 1000) for t in frames.timestamps]
    return VideoMetadata(
        total_num_frames=max(frames.total_frames, len(frames)),
        fps=fps,
        width=frames.width,
        height=frames.height,
        duration=frames.duration,
        frames_indices=indices,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """No "Loading weights" bars when stderr is a log file or a pipe, not a terminal
    (they stay where a person watches a long download)."""
    from transformers.utils import logging as hf_logging

    if sys.stderr.isatty() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def _stopping_when(stop: threading.Event) -> Any:
    """Stopping criteria that end ``generate`` at the next token once ``stop`` is set (an
    interrupted run), so Ctrl-C does not wait for a whole batch."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stopped(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Stopped()])


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _is_offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in model or model.count("/") > 1


def _probe_hub(repo_id: str) -> None:
    """One quick request before a download: fail in seconds, not after minutes of retries."""
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    hint = "no local folder has that name either; pass a checkpoint folder, or download the model where the Hub is reachable"
    try:
        response = httpx.get(f"{endpoint}/api/models/{repo_id}", timeout=10.0, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise ConfigurationError(
            f"model {repo_id!r} is not in the local Hugging Face cache and {endpoint} cannot be "
            f"reached ({type(exc).__name__}); {hint}"
        ) from None
    if response.status_code in (401, 403, 404):
        raise ConfigurationError(
            f"model {repo_id!r} was not found on {endpoint} (HTTP {response.status_code}); "
            "check the id, or log in for a gated model"
        )


class LocalBackend(BatchedBackend):
    """Molmo2 on this machine through transformers (GPU, Apple MPS or CPU)."""

    name: ClassVar[str] = "local"
    capabilities: ClassVar[dict[ModelInput, frozenset[str]]] = {
        "image": frozenset({"caption", "ask", "count", "scene"}),
        "video": frozenset({"caption", "ask", "count", "scene", "video"}),
    }
    default_model: ClassVar[str] = DEFAULT_MODEL
    price: ClassVar[Price] = FREE  # your own hardware
    env: ClassVar[BackendEnv] = BackendEnv(model=MODEL_ENV)
    concurrency_option: ClassVar[str | None] = "batch_size"
    Options: ClassVar[type[LocalOptions]] = LocalOptions

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 4,
        num_frames: int = 64,
        max_fps: float = 2.0,
        max_new_tokens: int | None = None,
        min_new_tokens: int | None = None,
    ):
        self.options = LocalOptions(
            model=model or DEFAULT_MODEL,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            num_frames=num_frames,
            max_fps=max_fps,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
        )
        self.model = self.options.model
        self.batch_size = self.options.batch_size
        self._hf_model: Any = None
        self._processor: Any = None
        self._load_error: MolmoRagError | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: LocalOptions) -> "LocalBackend":
        return cls(**options.model_dump())

    @classmethod
    def from_loaded(cls, model: Any, processor: Any, *, name: str = "in-memory", **options: Any) -> "LocalBackend":
        """Wrap a Molmo2 model and processor already in memory (notebooks, benchmarks)."""
        backend = cls(name, **options)
        backend._hf_model, backend._processor = model.eval(), processor
        processor.tokenizer.padding_side = "left"
        return backend

    def __repr__(self) -> str:
        state = "loaded" if self._hf_model is not None else "not loaded"
        return f"LocalBackend(model={self.model!r}, device={self.options.device!r}, {state})"

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model now (it otherwise loads on first use); raises a clear error if it cannot."""
        with self._lock:
            self._ensure_loaded()

    def _ensure_loaded(self) -> tuple[Any, Any]:
        if self._hf_model is not None:
            return self._hf_model, self._processor
        if self._load_error is not None:  # do not retry a failed load for every request
            raise self._load_error
        try:
            self._hf_model, self._processor = self._load()
        except MolmoRagError as exc:
            # fatal: every request would fail alike, so the engine ends the run with this
            # one error (the model loads on the first cache miss, not up front)
            exc.fatal = True
            self._load_error = exc
            raise
        return self._hf_model, self._processor

    def _load(self) -> tuple[Any, Any]:
        source, local_only = self._source()  # before torch: a bad model id fails in a second
        _, transformers = _torch_and_transformers()
        try:
            return self._from_pretrained(transformers, source, local_only)
        except ConfigurationError:
            if not local_only or Path(source).is_dir() or _is_offline():  # a folder is never on the Hub
                raise
            # Cached only in part (an interrupted download): fetch the rest.
            _probe_hub(source)
            return self._from_pretrained(transformers, source, False)

    def _from_pretrained(self, transformers: Any, source: str, local_only: bool) -> tuple[Any, Any]:
        device = check_device(resolve_device(self.options.device))
        dtype = resolve_dtype(self.options.dtype, device)
        # device_map loads straight onto the GPU but needs accelerate; without it the
        # weights load on the CPU and move once.
        device_map = device if not device.startswith("cpu") and _has_accelerate() else None
        try:
            with _quiet_progress_bars():
                processor = transformers.AutoProcessor.from_pretrained(source, local_files_only=local_only)
                model = transformers.AutoModelForImageTextToText.from_pretrained(
                    source, dtype=dtype, device_map=device_map, local_files_only=local_only
                )
        except Exception as exc:  # missing files, damaged weights (SafetensorError), shape mismatches
            raise ConfigurationError(f"cannot load a Molmo2 model from {self.model!r}: {_first_line(exc)}") from exc
        if type(model).__name__ != "Molmo2ForConditionalGeneration":
            raise ConfigurationError(f"{self.model!r} is a {type(model).__name__}, not a Molmo2 model")
        if device_map is None:
            try:
                model = model.to(device)
            except RuntimeError as exc:  # out of memory on the device, most often
                raise ConfigurationError(f"cannot move {self.model!r} to {device}: {_first_line(exc)}") from exc
        processor.tokenizer.padding_side = "left"
        return model.eval(), processor

    def _source(self) -> tuple[str, bool]:
        """Where to load from, and whether to stay off the network."""
        model = self.model
        path = Path(model).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ConfigurationError(f"{model!r} is a folder but not a model checkpoint (no config.json)")
            return str(path), True
        if path.exists() or _looks_like_path(model):
            raise ConfigurationError(f"model folder {model!r} does not exist")
        if self._in_hub_cache(model):
            return model, True
        if _is_offline():
            raise ConfigurationError(
                f"model {model!r} is neither a local folder nor in the Hugging Face cache, and offline "
                "mode is on (HF_HUB_OFFLINE); pass a checkpoint folder or download the model first"
            )
        _probe_hub(model)
        return model, False

    @staticmethod
    def _in_hub_cache(repo_id: str) -> bool:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(repo_id, "config.json")
        except Exception:  # an invalid repo id: let the loader report it
            return False
        return isinstance(found, str)

    def close(self) -> None:
        # A batch of an interrupted run may still be generating (it stops at its next
        # token) and hold the lock: wait briefly, then drop the references anyway (the
        # batch keeps its own until it ends).
        idle = self._lock.acquire(timeout=2.0)
        try:
            loaded, self._hf_model, self._processor = self._hf_model is not None, None, None
        finally:
            if idle:
                self._lock.release()
        if loaded and idle and "torch" in sys.modules:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # -- batching ----------------------------------------------------------------------------
    def max_new_tokens(self, requests: Sequence[Request]) -> int:
        """The batch's token budget: the override, else the largest budget of its tasks."""
        if self.options.max_new_tokens:
            return self.options.max_new_tokens
        return max(r.task.max_new_tokens() for r in requests)

    def conversation(self, request: Request) -> tuple[list[dict], VideoFrames | None]:
        """The chat messages for one request (and its frames, for a video)."""
        media = request.item.model_input
        frames = None
        if media == "image":
            part: dict = {"type": "image", "image": request.item.image()}
        else:
            frames = request.item.frames(self.options.num_frames, self.options.max_fps)
            part = {"type": "video", "video": frames.frames}
        text = {"type": "text", "text": request.task.prompt(media)}
        return [{"role": "user", "content": [part, text]}], frames

    # -- generation ------------------------------------------------------------------------
    def prepare(self, request: Request) -> tuple[list[dict], VideoFrames | None]:
        """Decode the request's pixels or frames (no model needed): run ahead of the model."""
        return self.conversation(request)

    def prepare_inputs(self, requests: Sequence[Request], prepared: Sequence[Any] | None = None) -> Any:
        """Model inputs of one batch (left-padded token ids, pixels, pooling indices)."""
        if len({r.item.model_input for r in requests}) > 1:
            raise BackendError("a Molmo2 batch cannot mix images and videos", backend=self.name)
        with self._lock:
            _, processor = self._ensure_loaded()
        if prepared is None:
            prepared = [self.conversation(r) for r in requests]  # a bad file raises its InputError here
        processor_kwargs: dict[str, Any] = {"padding": True}
        videos = [frames for _, frames in prepared if frames is not None]
        if videos:
            # Frames are already sampled; their metadata makes the prompt's frame times right.
            processor_kwargs.update(video_metadata=[video_metadata(f) for f in videos], do_sample_frames=False)
        try:
            return processor.apply_chat_template(
                [conversation for conversation, _ in prepared],
                tokenize=True,
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
                processor_kwargs=processor_kwargs,
            )
        except Exception as exc:  # pixels or frames the processor cannot take
            raise BackendError(f"Molmo2 processor failed: {_first_line(exc)}", backend=self.name) from exc

    def generate_batch(self, requests: Sequence[Request]) -> list[Answer]:
        return self.generate_prepared(requests, [self.conversation(r) for r in requests])

    def generate_prepared(self, requests: Sequence[Request], prepared: Sequence[Any]) -> list[Answer]:
        inputs = self.prepare_inputs(requests, prepared)  # loads the model
        import torch

        with self._lock:
            model, processor = self._ensure_loaded()
            generate_kwargs: dict[str, Any] = {
                "max_new_tokens": self.max_new_tokens(requests),
                "do_sample": False,
                "num_beams": 1,
                "pad_token_id": _pad_id(processor.tokenizer),
            }
            if self.options.min_new_tokens:
                generate_kwargs["min_new_tokens"] = min(self.options.min_new_tokens, generate_kwargs["max_new_tokens"])
            stop = GENERATION_STOP.get()
            if stop is not None:
                generate_kwargs["stopping_criteria"] = _stopping_when(stop)
            try:
                inputs = inputs.to(model.device, dtype=model.dtype)
                with torch.inference_mode():
                    output = model.generate(**inputs, **generate_kwargs)
            except Exception as exc:  # torch/transformers failures (OOM, shapes): one typed error
                raise BackendError(f"Molmo2 generation failed: {_first_line(exc)}", backend=self.name) from exc
            if stop is not None and stop.is_set():  # cut short: these answers are not whole
                raise BackendError("Molmo2 generation stopped: the run ended before this batch did", backend=self.name)
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            texts = processor.batch_decode(new_tokens, skip_special_tokens=True)
            pad = generate_kwargs["pad_token_id"]
            counts = (new_tokens != pad).sum(dim=1).tolist()
            prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            Answer(text=text.strip(), model=self.model, meta={"prompt_tokens": p, "new_tokens": n})
            for text, p, n in zip(texts, prompt_tokens, counts)
        ]
