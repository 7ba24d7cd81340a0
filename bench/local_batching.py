"""Batching in the local backend: the same images captioned at batch size 1, 4 and 16.

A Molmo2 is built in memory from its config with random weights (no download), and
molmo-rag's LocalBackend runs it through transformers' native Molmo2, the real code path
(processor, left padding, one ``generate`` call per batch). Every answer has a fixed length
(``min_new_tokens = max_new_tokens``), so runs differ only in how the work is batched.

* default: a small-but-not-tiny Molmo2 (real 378 px crop geometry, narrow text and vision
  models) in float32 on CPU, so it runs anywhere;
* ``--full``: the full Molmo2-4B architecture (4.85 B parameters) in bfloat16 on CUDA.

Prints a markdown table: images/s, generated tokens/s, peak memory (CUDA: allocated by
torch; CPU: resident set of the process), and ratios to batch size 1.

    .venv/bin/python bench/local_batching.py                 # CPU, small model
    .venv/bin/python bench/local_batching.py --full          # GPU, Molmo2-4B architecture
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time

from PIL import ImageOps

from molmo_rag.backends.base import Request
from molmo_rag.backends.local import LocalBackend
from molmo_rag.media.items import MediaItem
from molmo_rag.testing.samples import PHOTOS, photo
from molmo_rag.tasks import Caption
from molmo_rag.testing import MOLMO2_4B, Molmo2Sizes, make_config, make_processor, make_tokenizer, random_model

SMALL = Molmo2Sizes(
    text_hidden_size=512,
    text_layers=4,
    text_heads=8,
    text_kv_heads=4,
    text_head_dim=64,
    text_intermediate_size=1536,
    vocab_size=32000,
    vision_hidden_size=192,
    vision_layers=3,
    vision_heads=4,
    vision_head_dim=48,
    vision_intermediate_size=768,
    vision_feature_layers=[-1, -2],
    adapter_intermediate_size=1024,
    crop_size=378,
    patch_size=14,
    max_crops=4,
    overlap_margins=[4, 4],
    image_pooling=[2, 2],
    video_pooling=[3, 3],
    initializer_range=0.02,
)
"""About 48 M parameters; real crop geometry (378 px crops, up to 4 + 1 per image)."""


def make_items(n: int) -> list[MediaItem]:
    """``n`` real photographs of different sizes (mirrored once the bundled ones run out)."""
    items = []
    for i in range(n):
        image = photo(PHOTOS[i % len(PHOTOS)])
        if (i // len(PHOTOS)) % 2:
            image = ImageOps.mirror(image)
        items.append(MediaItem.from_pil(image, source=f"photo-{i}"))
    return items


class PeakMemory:
    """Peak memory during a block: torch's allocator on CUDA, the process's RSS on CPU."""

    def __init__(self, device: str):
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the process's lifetime peak is the best available
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def build(full: bool, device: str):
    import torch

    sizes = MOLMO2_4B if full else SMALL
    tokenizer = make_tokenizer()
    processor = make_processor(tokenizer, sizes)
    config = make_config(tokenizer, sizes)
    dtype = torch.bfloat16 if full else torch.float32
    model = random_model(config, seed=0, dtype=dtype, device=device)
    return model, processor


def measure(model, processor, items, batch_size: int, new_tokens: int, device: str) -> dict:
    backend = LocalBackend.from_loaded(
        model, processor, name="random-molmo2", device=device, batch_size=batch_size,
        max_new_tokens=new_tokens, min_new_tokens=new_tokens,
    )
    task = Caption()
    # Warm-up on one batch; it also checks that every answer has the fixed length.
    warm = backend.generate_batch([Request(item, task) for item in items[:batch_size]])
    assert all(a.meta["new_tokens"] == new_tokens for a in warm), [a.meta for a in warm]
    requests = [Request(item, task) for item in items]
    with PeakMemory(device) as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        results = backend.run(requests)
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
    failures = [r for r in results if isinstance(r, Exception)]
    if failures:
        raise SystemExit(f"batch {batch_size}: {len(failures)} failures, first: {failures[0]}")
    return {
        "batch": batch_size,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "images_s": len(items) / seconds,
        "tokens_s": len(items) * new_tokens / seconds,
        "peak": memory.peak,
        "prompt_tokens": sum(a.meta["prompt_tokens"] for a in warm) / len(warm),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="Molmo2-4B architecture, bfloat16, on CUDA")
    parser.add_argument("--device", default=None, help="torch device (default: cuda with --full, else cpu)")
    parser.add_argument("--batch-sizes", default="1,4,16", help="comma-separated batch sizes")
    parser.add_argument("--images", type=int, default=16, help="images captioned per batch size")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per image")
    parser.add_argument(
        "--repeats", type=int, default=2, help="interleaved rounds; each batch size keeps its fastest (shared machines)"
    )
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if args.full else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--full needs a CUDA GPU (or pass --device cpu and the memory for 4.85 B parameters)")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    images = max(args.images, max(batch_sizes))

    t0 = time.perf_counter()
    model, processor = build(args.full, device)
    params = sum(p.numel() for p in model.parameters())
    built = time.perf_counter() - t0
    items = make_items(images)
    best: dict[int, dict] = {}
    for _ in range(max(1, args.repeats)):
        for b in batch_sizes:
            row = measure(model, processor, items, b, args.new_tokens, device)
            if b not in best or row["seconds"] < best[b]["seconds"]:
                row["peak"] = max(row["peak"], best.get(b, {}).get("peak", 0))
                best[b] = row
            else:
                best[b]["peak"] = max(best[b]["peak"], row["peak"])
    rows = [best[b] for b in batch_sizes]

    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    arch = "Molmo2-4B architecture, bfloat16" if args.full else "small Molmo2, float32"
    print(
        f"\n{arch} ({params / 1e6:,.0f} M parameters, random weights, built in {built:.1f} s) on {where}; "
        f"{images} photos, {args.new_tokens} new tokens each, "
        f"~{rows[0]['prompt_tokens']:.0f} prompt tokens per image; fastest of {max(1, args.repeats)} interleaved rounds\n"
    )
    on_cpu = not device.startswith("cuda")
    memory_kind = "peak RSS" if on_cpu else "peak CUDA memory"
    first = rows[0]["batch"]
    cpu_head, cpu_rule = (" CPU time (s) |", "---:|") if on_cpu else ("", "")
    print(
        f"| batch | time (s) |{cpu_head} images/s | generated tokens/s | {memory_kind} (MiB) | "
        f"images/s vs batch {first} | memory vs batch {first} |"
    )
    print(f"|---:|---:|{cpu_rule}---:|---:|---:|---:|---:|")
    base = rows[0]
    for r in rows:
        cpu_cell = f" {r['cpu_seconds']:.2f} |" if on_cpu else ""
        print(
            f"| {r['batch']} | {r['seconds']:.2f} |{cpu_cell} {r['images_s']:.2f} | {r['tokens_s']:.1f} | "
            f"{r['peak'] / 2**20:,.0f} | {r['images_s'] / base['images_s']:.2f}x | {r['peak'] / base['peak']:.2f}x |"
        )


if __name__ == "__main__":
    main()
