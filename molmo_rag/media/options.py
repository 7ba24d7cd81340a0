"""Options of the media readers (data, not code)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..options_base import cache_key_field

__all__ = [
    "ReaderOptions",
    "IMAGE_EXTENSIONS",
    "OOXML_DECK_EXTENSIONS",
    "LIBREOFFICE_DECK_EXTENSIONS",
    "SLIDE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "READABLE_EXTENSIONS",
    "KEYNOTE_EXTENSIONS",
    "AUDIO_EXTENSIONS",
    "RAW_IMAGE_EXTENSIONS",
    "UNSUPPORTED_IMAGE_EXTENSIONS",
    "UNREADABLE_MEDIA_EXTENSIONS",
    "MEDIA_EXTENSIONS",
    "NOT_MEDIA_EXTENSIONS",
    "MAX_SEGMENT_SECONDS",
    "with_cache_root",
]

# --- what can be read ----------------------------------------------------------------------
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
OOXML_DECK_EXTENSIONS = frozenset({".pptx", ".pptm", ".ppsx", ".ppsm", ".potx", ".potm"})
"""PowerPoint's XML decks: python-pptx reads their text and notes, LibreOffice renders them."""
LIBREOFFICE_DECK_EXTENSIONS = frozenset({".odp", ".otp", ".fodp", ".ppt", ".pps", ".pot"})
"""OpenDocument and legacy (binary) PowerPoint decks: only LibreOffice reads them."""
SLIDE_EXTENSIONS = OOXML_DECK_EXTENSIONS | LIBREOFFICE_DECK_EXTENSIONS | {".pdf"}
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
        ".3gp", ".3g2", ".ogv", ".flv", ".f4v", ".wmv", ".asf",
    }
)
READABLE_EXTENSIONS = IMAGE_EXTENSIONS | SLIDE_EXTENSIONS | VIDEO_EXTENSIONS

# --- what looks like media but cannot be read: each such file gets its own error line -------
KEYNOTE_EXTENSIONS = frozenset({".key"})
AUDIO_EXTENSIONS = frozenset(
    {
        ".mp3", ".wav", ".flac", ".aac", ".m4a", ".m4b", ".ogg", ".oga", ".opus", ".wma", ".aif", ".aiff",
        ".aifc", ".alac", ".ape", ".amr", ".caf", ".wv", ".mid", ".midi",
    }
)
RAW_IMAGE_EXTENSIONS = frozenset(
    {
        ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
        ".rwl", ".pef", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr", ".mrw", ".mos", ".raw",
    }
)
"""Camera raw formats: their TIFF-like bytes hold only a small preview, so they are refused."""
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset(
    {
        ".psd", ".psb", ".xcf", ".svg", ".svgz", ".eps", ".ai", ".jxl", ".jp2", ".j2k", ".jpx", ".exr",
        ".hdr", ".ico", ".icns", ".tga", ".dds", ".pcx", ".ppm", ".pgm", ".pbm", ".pnm", ".emf", ".wmf",
    }
)
UNREADABLE_MEDIA_EXTENSIONS = KEYNOTE_EXTENSIONS | AUDIO_EXTENSIONS | RAW_IMAGE_EXTENSIONS | UNSUPPORTED_IMAGE_EXTENSIONS
MEDIA_EXTENSIONS = READABLE_EXTENSIONS | UNREADABLE_MEDIA_EXTENSIONS
"""Every ending that looks like media: what a folder walk picks up by default."""

# --- what is clearly not media: never reported, even as a broken link or a named pipe -------
NOT_MEDIA_EXTENSIONS = frozenset(
    {
        ".txt", ".md", ".rst", ".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".yaml", ".yml", ".toml",
        ".ini", ".cfg", ".conf", ".env", ".py", ".pyc", ".ipynb", ".js", ".mjs", ".css", ".html", ".htm",
        ".xml", ".log", ".sh", ".bat", ".ps1", ".sql", ".db", ".sqlite", ".lock", ".tmp", ".bak", ".swp",
        ".part", ".crdownload", ".torrent", ".url", ".webloc", ".lnk", ".xmp", ".aae", ".thm", ".srt",
        ".vtt", ".ass", ".sub", ".cue", ".nfo",
    }
)
"""Text, code, data, sidecar and housekeeping files (hidden files, whose names start with a
dot, are never reported either)."""

MAX_SEGMENT_SECONDS = 120.0
"""The hosted video APIs take at most 120 s per call; no segment is ever longer."""


class ReaderOptions(BaseModel):
    """How sources are found, fetched, checked and cut into media items.

    Fields declared with ``cache_key_field`` change the pixels, frames or clips a backend is
    sent for one media item, so they are part of its cache key; the others (finding,
    fetching, caps that refuse, segment boundaries, which media ids already carry) are not.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- finding files ------------------------------------------------------------------
    extensions: frozenset[str] = Field(
        default=MEDIA_EXTENSIONS,
        description="File name endings (case and leading dot optional) picked up when walking a "
        "folder or a glob. The default is every ending that looks like media: the formats that "
        "can be read and those that cannot (Keynote, audio, camera raw, ...), which get an error "
        "line each instead of being skipped. Files with other endings are passed over quietly; "
        "a broken link or named pipe is reported unless its ending is clearly not media "
        "(NOT_MEDIA_EXTENSIONS) or is another media ending left out of this set. Files named "
        "one by one are read whatever their ending: their kind is told by their first bytes.",
    )
    recursive: bool = Field(default=True, description="Walk sub-folders of a folder source.")
    include_hidden: bool = Field(
        default=False, description="Pick up files and folders whose name starts with a dot."
    )
    every_file: bool = Field(
        default=False,
        description="Hand every regular file of a folder or glob to the reader, whatever its "
        "ending, as LangChain's loaders do: each is read by its first bytes or reported "
        "(notes.txt: UnsupportedMediaError), so nothing is passed over quietly but hidden files.",
    )

    # --- fetching -----------------------------------------------------------------------
    url_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a URL to connect or send more data (per read)."
    )
    max_download_seconds: float | None = Field(
        default=600.0,
        gt=0,
        description="Longest time one download may take in all, from connecting to the last byte "
        "(redirects and headers included): a server that keeps sending a few bytes just inside "
        "url_timeout, in its headers or its body, is cut off then (UnreachableSourceError). "
        "None: no limit.",
    )
    max_download_bytes: int = Field(
        default=2 * 1024**3,
        gt=0,
        description="Largest file fetched from a URL (or accepted as bytes / data URI); "
        "bigger ones give MediaTooLargeError. A body a server sent compressed (gzip, deflate) "
        "is counted as it is decoded, so a compression bomb stops here too.",
    )
    pass_private_urls: bool = cache_key_field(
        default=False,
        description="Hand URLs whose host is not publicly reachable (localhost, private, "
        "link-local or CGNAT addresses, single-label, .local and .internal names) to backends "
        "as URLs too, for a self-hosted server on the same network. By default only public "
        "URLs are passed on; for the others the bytes fetched here (downscaled) are sent.",
    )
    download_in_memory_bytes: int = Field(
        default=32 * 1024**2,
        ge=0,
        description="Downloads up to this size stay in memory; bigger ones are spooled to a "
        "temporary file that is deleted when its items are.",
    )

    # --- images -------------------------------------------------------------------------
    max_image_side: int = cache_key_field(
        default=2048,
        ge=64,
        description="Images, slides and thumbnails are downscaled so that their longer side "
        "is at most this many pixels before they are handed to any backend.",
    )
    max_image_pixels: int = Field(
        default=178_956_970,
        gt=0,
        description="Images declaring more pixels than this are refused as decompression "
        "bombs (MediaTooLargeError) without being decoded. Pillow's own default.",
    )
    verify_images: bool = Field(
        default=True,
        description="Decode each image once while reading, so that truncated or corrupt files "
        "are reported as CorruptMediaError in the read stream instead of later in a backend.",
    )
    jpeg_quality: int = cache_key_field(
        default=90, ge=1, le=100, description="Quality of JPEG bytes made for backends."
    )

    # --- slides -------------------------------------------------------------------------
    slide_dpi: int = cache_key_field(
        default=144,
        ge=36,
        le=600,
        description="Resolution at which PDF pages and rendered slides are rasterised "
        "(144 dpi makes a 16:9 slide 1920x1080); max_image_side still applies.",
    )
    render_timeout: float = Field(
        default=180.0, gt=0, description="Seconds LibreOffice may take to render one deck."
    )
    include_hidden_slides: bool = cache_key_field(
        default=False, description="Also read the slides a deck marks as hidden."
    )
    max_slide_picture_pixels: int = cache_key_field(
        default=25_000_000,
        gt=0,
        description="Without LibreOffice, slides are drawn from their embedded pictures and text: "
        "a picture that would decode to more pixels than this (JPEGs are decoded at a reduced "
        "scale first) is left out of its slide, with a warning, so a huge one cannot take "
        "hundreds of MB.",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="The cache root: rendered decks are cached by content hash under its "
        "slides/ folder. None: the result cache's folder when the engine has one (--cache-dir), "
        "else MOLMO_RAG_CACHE_DIR, else the user cache folder (~/.cache/molmo-rag on Linux).",
    )

    # --- video --------------------------------------------------------------------------
    segment_mode: Literal["fixed", "scenes"] = Field(
        default="scenes",
        description="'fixed': windows of segment_seconds; 'scenes': cut at shot boundaries, "
        "then merge scenes shorter than min_segment_seconds and split those longer than "
        "max_segment_seconds.",
    )
    segment_seconds: float = Field(
        default=30.0,
        gt=0,
        le=MAX_SEGMENT_SECONDS,
        description="Length of a window in 'fixed' mode (the last may be shorter; "
        "max_segment_seconds does not apply to fixed windows).",
    )
    min_segment_seconds: float = Field(
        default=3.0,
        ge=0,
        description="Shortest segment: shorter scenes (and a short last window) are merged "
        "into a neighbour.",
    )
    max_segment_seconds: float = Field(
        default=60.0,
        gt=0,
        le=MAX_SEGMENT_SECONDS,
        description="Longest segment (at most 120 s, the hosted APIs' limit); longer scenes "
        "are split into equal parts.",
    )
    scene_threshold: float = Field(
        default=3.0,
        gt=0,
        description="PySceneDetect AdaptiveDetector threshold: how many times a frame's change "
        "must exceed its neighbours' average to count as a cut.",
    )
    scene_min_content: float = Field(
        default=15.0,
        ge=0,
        description="PySceneDetect AdaptiveDetector min_content_val: the least absolute change "
        "(0-255 scale) a cut must show.",
    )
    scene_edges: bool = Field(
        default=True,
        description="Let edge changes count alongside hue, saturation and brightness: finds cuts "
        "between greyscale or similar-coloured shots (slightly slower).",
    )
    scene_frame_width: int = Field(
        default=160,
        ge=32,
        description="Approximate width in pixels of the tiny frames scene detection compares.",
    )
    max_frame_side: int | None = cache_key_field(
        default=768,
        ge=64,
        description="Frames handed to backends are downscaled so their longer side is at most "
        "this (None: full resolution). Molmo2 looks at 378 px per frame.",
    )
    clip_max_side: int = cache_key_field(
        default=640,
        ge=64,
        description="Longer side of video clips made for upload. Molmo2 looks at 378 px crops of "
        "at most 2 frames a second, so 640 px loses nothing it reads.",
    )
    clip_short_side: int = cache_key_field(
        default=480, ge=64, description="Shorter side of re-encoded clips for upload."
    )
    clip_max_fps: float = cache_key_field(
        default=4.0, gt=0, description="Frame-rate cap of clips made for upload (Molmo2 samples at most 2 per second)."
    )
    clip_crf: int = cache_key_field(
        default=28, ge=0, le=51, description="H.264 constant rate factor of re-encoded clips."
    )
    max_video_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Videos longer than this are refused (MediaTooLargeError); None: no limit.",
    )
    max_frame_gap_seconds: float | None = Field(
        default=30.0,
        gt=0,
        description="Segments follow the frames that exist: a stretch of more than this where no "
        "frame shows (each shows for one frame at the video's rate; a camera that records on "
        "motion, clips joined days apart, a damaged timestamp) is a gap, not footage, and no "
        "segment covers it. The limit is raised to 20 frames at "
        "the video's frame rate, then lowered to a fixed window (or half of max_segment_seconds "
        "in 'scenes' mode) when that is shorter, so that no segment is left without a frame. "
        "None: no gaps (segments cover the whole timeline the timestamps span).",
    )

    @model_validator(mode="after")
    def _check(self) -> "ReaderOptions":
        if self.min_segment_seconds > self.max_segment_seconds / 2:
            # otherwise a long shot cannot be split into parts that respect both bounds
            raise ValueError("min_segment_seconds must be at most half of max_segment_seconds")
        return self

    @field_validator("extensions", mode="before")
    @classmethod
    def _normalise_extensions(cls, value):
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        return frozenset(("." + e.lower().lstrip(".")) for e in value)


def with_cache_root(options: "ReaderOptions | None", directory: "Path | str | None") -> "ReaderOptions | None":
    """``options`` with ``cache_dir`` set to ``directory`` (the result cache's folder), so
    that slide renders share its root; unchanged when the caller chose a cache_dir or there
    is no directory."""
    if not isinstance(directory, (str, os.PathLike)) or (options is not None and options.cache_dir is not None):
        return options
    return (options or ReaderOptions()).model_copy(update={"cache_dir": Path(directory)})
