import base64

import numpy as np
from PIL import Image

from molmo_rag.backends.base import Result
from molmo_rag.index.records import PAYLOAD_KEYS, build_record, make_thumbnail, point_id
from molmo_rag.media.items import MediaItem, VideoFrames
from molmo_rag.tasks import Ask, Caption, Count, Scene, VideoTask


def photo(colour=(200, 30, 30), size=(640, 480)):
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[:] = colour
    return MediaItem.from_pil(Image.fromarray(a), source="/d/photos/p.png")


def result(item, task, text):
    return Result(item=item, task=task, text=text, fields=task.parse(text), backend="local", model="allenai/Molmo2-4B")


def test_record_merges_task_results_into_the_payload():
    item = photo()
    record = build_record(
        item,
        [
            result(item, Caption(), "A red wall."),
            result(item, Scene(), "An empty room in daylight."),
            result(item, Count(target="Traffic lights"), 'Counting the <points coords="1 1 100 200 2 300 400">lights</points> shows a total of 2.'),
            result(item, Count(target="dog"), "There are none."),
            result(item, Ask(question="Is it red?"), "Yes, it is red."),
        ],
    )
    p = record.payload
    assert p["kind"] == "image" and p["source"] == "/d/photos/p.png" and p["media_id"] == item.media_id
    assert p["caption"] == "A red wall." and p["scene"] == "An empty room in daylight." and p["detail"] == "medium"
    assert p["counts"] == {"traffic_lights": 2, "dog": 0}
    assert [(pt["x"], pt["y"], pt["label"]) for pt in p["points"]] == [(0.1, 0.2, "Traffic lights"), (0.3, 0.4, "Traffic lights")]
    assert p["answers"] == [{"question": "Is it red?", "answer": "Yes, it is red."}]
    assert p["backend"] == "local" and p["model"] == "allenai/Molmo2-4B"
    assert "A red wall." in record.text and "2 traffic lights" in record.text and "dog" not in record.text
    assert "Q: Is it red? A: Yes, it is red." in record.text


def test_point_payload_opens_through_every_door():
    item = photo()
    record = build_record(item, [result(item, Caption(), "A red wall.")])
    record.payload["thumbnail"] = "data:image/jpeg;base64,AAAA"
    payload = record.point_payload("wordllama/l2_supercat-256")
    assert payload["text"] == payload["page_content"] == record.text  # LlamaIndex, LangChain
    assert payload["metadata"] == {k: payload[k] for k in PAYLOAD_KEYS if k in payload}
    assert payload["source_prefixes"] == ["/d", "/d/photos"]
    assert len(payload["record_hash"]) == 64


def test_point_ids_are_stable_and_fingerprint_follows_content():
    item = photo()
    assert point_id(item.media_id) == point_id(item.media_id) != point_id(item.media_id + "#slide=2")
    a = build_record(item, [result(item, Caption(), "A red wall.")])
    b = build_record(item, [result(item, Caption(), "A red wall.")])
    c = build_record(item, [result(item, Caption(), "A crimson wall.")])
    assert a.id == b.id == c.id
    assert a.fingerprint("e") == b.fingerprint("e") != c.fingerprint("e")
    assert a.fingerprint("e") != a.fingerprint("other-embedder")
    b.payload["thumbnail"] = "data:..."
    assert a.fingerprint("e") == b.fingerprint("e")


def test_video_segment_record_keeps_times_and_video_task_fields():
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    item = MediaItem.from_frames(VideoFrames(frames, [0.0, 1.0], 1.0, 16, 16, 2.0, 2, [0, 1]), source="v.mp4", start=30.0)
    scene = VideoTask(task="scene_description")
    counting = VideoTask(task="counting", text="people")
    record = build_record(
        item,
        [
            Result(item, scene, "A street at night.", scene.parse("A street at night."), "wavespeed", "m"),
            Result(item, counting, "There are 3 people.", counting.parse("There are 3 people."), "wavespeed", "m"),
        ],
    )
    p = record.payload
    assert (p["kind"], p["start"], p["end"]) == ("video_segment", 30.0, 32.0)
    assert p["scene"] == "A street at night." and p["counts"] == {"people": 3} and p["answers"] == []


def test_nothing_to_index_without_results_or_own_text():
    item = photo()
    assert build_record(item, []) is None
    item.title, item.kind, item.slide = "Quarterly results", "slide", 3
    record = build_record(item, [])
    assert record.payload["title"] == "Quarterly results" and "Quarterly results" in record.text


def test_thumbnail_is_a_small_jpeg_data_uri():
    uri = make_thumbnail(photo(size=(1920, 1080)), 128)
    assert uri.startswith("data:image/jpeg;base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    import io

    assert Image.open(io.BytesIO(data)).size == (128, 72)
    assert len(uri) < 4000
    assert make_thumbnail(photo(), 0) is None
