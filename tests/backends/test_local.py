"""The local backend on a real (tiny, random-init) Molmo2 through transformers."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from molmo_rag.backends.base import Request, Result, get_backend
from molmo_rag.backends.local import LocalBackend, LocalOptions, video_metadata
from molmo_rag.errors import ConfigurationError, CorruptMediaError, UnsupportedTaskError
from molmo_rag.media.items import MediaItem, VideoFrames
from molmo_rag.tasks import Ask, Caption, Count, Scene, VideoTask

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
skimage_data = pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "coins")


def photo(name: str):
    from PIL import Image

    array = getattr(skimage_data, name)()
    return Image.fromarray(array).convert("RGB")


def image_item(name: str) -> MediaItem:
    return MediaItem.from_pil(photo(name), source=f"skimage:{name}")


def video_frames(name: str, n: int = 6, fps: float = 24.0, step: int = 12) -> VideoFrames:
    """A pan across a photo, sampled every ``step`` source frames."""
    base = np.asarray(photo(name))[:200, :280]
    frames = np.stack([np.roll(base, 9 * i, axis=1) for i in range(n)]).astype(np.uint8)
    indices = [step * i for i in range(n)]
    return VideoFrames(
        frames=frames,
        timestamps=[i / fps for i in indices],
        fps=fps,
        width=280,
        height=200,
        duration=n * step / fps,
        total_frames=n * step,
        indices=indices,
    )


@pytest.fixture(scope="module")
def backend(tiny_molmo2_path):
    b = LocalBackend(str(tiny_molmo2_path), device="cpu", batch_size=4, max_new_tokens=12)
    yield b
    b.close()


def texts(results) -> list[str]:
    assert all(isinstance(r, Result) for r in results), results
    return [r.text for r in results]


# -- import and options ---------------------------------------------------------------------
def test_import_does_not_load_torch_or_transformers():
    code = (
        "import sys, molmo_rag, molmo_rag.backends.local;"
        "from molmo_rag.backends.base import backend_class; backend_class('local')('x/y', batch_size=2).close();"
        "print([m for m in ('torch', 'transformers', 'torchvision') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_options_are_validated_and_described():
    backend = get_backend("local", model="some/model", batch_size=2, max_fps=1.5)
    assert isinstance(backend, LocalBackend)
    assert (backend.model, backend.batch_size, backend.options.max_fps) == ("some/model", 2, 1.5)
    assert LocalBackend().model == "allenai/Molmo2-4B"
    with pytest.raises(ConfigurationError, match="batch_size"):
        LocalBackend(batch_size=0)
    with pytest.raises(ConfigurationError, match="dtype"):
        LocalBackend(dtype="int3")
    assert all(f.description for f in LocalOptions.model_fields.values())


def test_capabilities():
    assert LocalBackend.supports(Caption(), "image") and LocalBackend.supports(Count(target="x"), "video")
    assert LocalBackend.supports(VideoTask(), "video")
    assert not LocalBackend.supports(VideoTask(), "image")


def test_unsupported_task_is_reported_per_request(backend):
    results = backend.run([Request(image_item("coffee"), VideoTask()), Request(image_item("coffee"), Scene())])
    assert isinstance(results[0], UnsupportedTaskError)
    assert "video" in str(results[0])
    assert isinstance(results[1], Result) and "scene" in results[1].fields


def test_batches_keep_images_and_videos_apart(backend, monkeypatch):
    image, video = image_item("coffee"), MediaItem.from_frames(video_frames("coffee"))
    kinds = [image, video, image, image, video, image, image, image]
    batches: list[list[str]] = []
    generate = backend.generate_prepared

    def recorded(requests, prepared):
        batches.append([r.item.model_input for r in requests])
        return generate(requests, prepared)

    monkeypatch.setattr(backend, "generate_prepared", recorded)
    results = backend.run([Request(item, Caption()) for item in kinds])
    assert all(isinstance(r, Result) for r in results)
    assert sorted(m for b in batches for m in b) == sorted(k.model_input for k in kinds)
    for batch in batches:
        assert len(batch) <= backend.batch_size and len(set(batch)) == 1
    assert backend.last_stats.batches == len(batches) and backend.last_stats.requests == len(kinds)


def test_token_budget_is_the_largest_in_the_batch(tiny_molmo2_path):
    backend = LocalBackend(str(tiny_molmo2_path))
    item = image_item("coffee")
    reqs = [Request(item, Caption(detail="low")), Request(item, Count(target="cups"))]
    assert backend.max_new_tokens(reqs) == Count(target="cups").max_new_tokens()
    assert LocalBackend(str(tiny_molmo2_path), max_new_tokens=7).max_new_tokens(reqs) == 7


# -- loading errors -------------------------------------------------------------------------
def test_missing_model_folder_is_a_clear_error(tmp_path):
    backend = LocalBackend(str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(ConfigurationError, match="does not exist"):
        backend.load()
    results = backend.run([Request(image_item("coffee"), Caption()), Request(image_item("rocket"), Caption())])
    assert all(isinstance(r, ConfigurationError) for r in results)


def test_folder_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not a model checkpoint"):
        LocalBackend(str(tmp_path), device="cpu").load()


def test_a_folder_that_fails_to_load_is_not_looked_up_on_the_hub(tmp_path, tiny_molmo2_path):
    import shutil

    broken = tmp_path / "broken-checkpoint"
    shutil.copytree(tiny_molmo2_path, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ConfigurationError, match="cannot load a Molmo2 model") as info:
        LocalBackend(str(broken), device="cpu").load()
    assert "Hugging Face" not in str(info.value)


def test_a_device_this_machine_lacks_is_a_clear_error(tiny_molmo2_path):
    with pytest.raises(ConfigurationError, match="unknown device 'tpu'"):
        LocalBackend(str(tiny_molmo2_path), device="tpu").load()
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="no CUDA GPU"):
            LocalBackend(str(tiny_molmo2_path), device="cuda").load()
    backend = LocalBackend(str(tiny_molmo2_path), device="cpu:0", max_new_tokens=3)
    assert isinstance(backend.run([Request(image_item("coffee"), Caption())])[0], Result)


def test_uncached_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigurationError, match="offline"):
        LocalBackend("molmo-rag-tests/not-a-model", device="cpu").load()


def test_bad_hub_id_fails_before_importing_torch():
    code = (
        "import sys; from molmo_rag.backends.local import LocalBackend\n"
        "try:\n    LocalBackend('molmo-rag-tests/not-a-model').load()\n"
        "except Exception as exc:\n    print(type(exc).__name__, [m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "ConfigurationError []"


def test_loading_prints_no_progress_bars_into_logs(tiny_molmo2_path, capfd):
    LocalBackend(str(tiny_molmo2_path), device="cpu").load()  # stderr is not a terminal here
    assert "Loading weights" not in capfd.readouterr().err


def test_unreachable_hub_fails_fast(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ConfigurationError, match="cannot be reached"):
        LocalBackend("molmo-rag-tests/not-a-model", device="cpu").load()


def test_unknown_hub_id_is_reported(monkeypatch):
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(ConfigurationError, match="not found"):
            LocalBackend("molmo-rag-tests/not-a-model", device="cpu").load()
    finally:
        server.shutdown()


# -- generation on real photos ----------------------------------------------------------------
def test_answer_is_the_documented_recipe(backend, tiny_molmo2_path):
    """Same tokens as the docs/molmo2.md recipe run by hand: only the new tokens are decoded."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_molmo2_path)
    model = AutoModelForImageTextToText.from_pretrained(tiny_molmo2_path)
    task = Caption(detail="low")
    messages = [{"role": "user", "content": [{"type": "image", "image": photo("chelsea")},
                                             {"type": "text", "text": task.prompt("image")}]}]
    inputs = processor.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    expected = processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    [result] = backend.run([Request(image_item("chelsea"), task)])
    assert result.text == expected
    assert result.fields == {"caption": expected, "detail": "low"}
    assert result.backend == "local" and result.model == str(tiny_molmo2_path)


def test_batched_answers_equal_single_answers(backend, tiny_molmo2_path):
    items = [image_item(name) for name in PHOTOS]  # different sizes and aspect ratios
    tasks = [Caption(), Ask(question="What colour is the background?"), Scene(), Caption(detail="high"), Caption()]
    requests = [Request(item, task) for item, task in zip(items, tasks)]
    singles = [texts(backend.run([r]))[0] for r in requests]
    batched = texts(backend.run(requests))  # batches of 4 + 1, left-padded
    assert batched == singles
    assert len(set(singles)) >= 3  # the answers depend on the pixels: equality means something
    uneven = LocalBackend(str(tiny_molmo2_path), device="cpu", batch_size=3, max_new_tokens=12)
    assert texts(uneven.run(requests)) == singles


def test_count_answers_go_through_the_count_parser(backend):
    [result] = backend.run([Request(image_item("coins"), Count(target="coins"))])
    fields = result.fields
    assert fields["target"] == "coins"
    assert set(fields) == {"target", "count", "points", "answer"}
    assert fields["count"] is None or isinstance(fields["count"], int)
    assert isinstance(fields["points"], list)
    assert result.to_json()["target"] == "coins"


def test_corrupt_image_fails_alone(backend, tmp_path):
    from molmo_rag.media.options import ReaderOptions
    from molmo_rag.media.sources import read

    good = tmp_path / "good.jpg"
    photo("astronaut").save(good, quality=90)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:3000])  # valid header, truncated data
    items = list(read([good, broken, good], ReaderOptions(verify_images=False)))
    assert all(isinstance(i, MediaItem) for i in items)

    results = backend.run([Request(i, Caption()) for i in items])
    assert isinstance(results[1], CorruptMediaError)
    assert isinstance(results[0], Result) and isinstance(results[2], Result)
    assert results[0].text == results[2].text == texts(backend.run([Request(items[0], Caption())]))[0]


# -- video ------------------------------------------------------------------------------------
def test_video_metadata_reproduces_clip_times():
    frames = video_frames("coffee", n=4, fps=29.97, step=15)
    meta = video_metadata(frames)
    assert [round(i / meta.fps, 3) for i in meta.frames_indices] == [round(t, 3) for t in frames.timestamps]
    # Indices that do not match the timestamps (variable frame rate): a millisecond clock.
    frames.timestamps = [0.0, 0.4, 1.3, 2.0]
    meta = video_metadata(frames)
    assert meta.fps == 1000.0 and meta.frames_indices == [0, 400, 1300, 2000]


def test_video_prompt_carries_frame_times(backend):
    frames = video_frames("astronaut", n=4, fps=10.0, step=7)  # 0.0, 0.7, 1.4, 2.1 s
    inputs = backend.prepare_inputs([Request(MediaItem.from_frames(frames, start=60.0), VideoTask())])
    prompt = backend._processor.tokenizer.decode(inputs["input_ids"][0])
    for t in ("0.0", "0.7", "1.4", "2.1"):  # clip time, one decimal
        assert f"{t} <frame_start>" in prompt
    assert prompt.count("<frame_start>") == 4
    assert prompt.index("<frame_start>") < prompt.index("Describe what happens")


def test_images_are_left_padded(backend):
    inputs = backend.prepare_inputs([Request(image_item("coffee"), Caption()), Request(image_item("coins"), Ask(question="?"))])
    mask = inputs["attention_mask"]
    assert mask[:, -1].all() and not mask[:, 0].all()


def test_videos_batch_like_singles_and_mix_with_images(backend):
    clip_a = MediaItem.from_frames(video_frames("astronaut"), start=30.0)
    clip_b = MediaItem.from_frames(video_frames("coffee", n=4))
    requests = [
        Request(clip_a, VideoTask(task="counting", text="people")),
        Request(image_item("rocket"), Caption()),
        Request(clip_b, Caption(detail="low")),
        Request(image_item("coffee"), Ask(question="Is it hot?")),
    ]
    singles = [texts(backend.run([r]))[0] for r in requests]
    results = backend.run(requests)
    assert texts(results) == singles
    assert singles[0] != singles[2]
    first = results[0].to_json()
    assert first["kind"] == "video_segment" and first["start"] == 30.0
    assert set(results[0].fields) >= {"task", "count", "points", "target"}


def test_long_video_is_sampled_to_num_frames(tiny_molmo2_path):
    backend = LocalBackend(str(tiny_molmo2_path), device="cpu", num_frames=3, max_new_tokens=4)
    clip = MediaItem.from_frames(video_frames("chelsea", n=10))
    _, frames = backend.conversation(Request(clip, VideoTask()))
    assert len(frames) == 3
    assert isinstance(backend.run([Request(clip, VideoTask())])[0], Result)


def test_from_loaded_and_close(tiny_molmo2_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_molmo2_path)
    processor = AutoProcessor.from_pretrained(tiny_molmo2_path)
    backend = LocalBackend.from_loaded(model, processor, name="tiny", max_new_tokens=5, min_new_tokens=5)
    [result] = backend.run([Request(image_item("coffee"), Caption())])
    assert result.model == "tiny"
    answers = backend.generate_batch([Request(image_item("coffee"), Caption())])
    assert answers[0].meta["new_tokens"] == 5
    backend.close()
    assert "not loaded" in repr(backend)


def test_points_of_a_later_segment_are_in_video_time(backend):
    """The model sees clip time (0.0 at the segment's start); results speak video time."""
    from molmo_rag.backends.base import Answer

    clip = MediaItem.from_frames(video_frames("astronaut", n=4), start=30.0)
    text = 'Counting the <points coords="0.5 1 100 200;1.5 2 300 400 3 500 600">people</points> shows a total of 3.'
    for task in (Count(target="people"), VideoTask(task="counting", text="people"), Ask(question="Where?")):
        doc = backend._to_result(Request(clip, task), Answer(text=text)).to_json()
        assert [p["t"] for p in doc["points"]] == [30.5, 31.5, 31.5]
        assert doc["start"] == 30.0 and doc["points"][0]["x"] == 0.1
    photo_doc = backend._to_result(Request(image_item("coffee"), Count(target="cups")),
                                   Answer(text='<points coords="1 1 100 200">cups</points>')).to_json()
    assert photo_doc["points"][0]["t"] is None and photo_doc["count"] == 1
