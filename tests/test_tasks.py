import pytest

from molmo_rag import Ask, Caption, Count, Scene, VideoTask
from molmo_rag.errors import ConfigurationError
from molmo_rag.tasks import task_from_dict

COUNT_ANSWER = 'Counting the <points coords="1 1 460 588 2 504 740">cups</points> shows a total of 2.'


def test_caption_detail_changes_prompt_and_budget():
    low, med, high = (Caption(detail=d) for d in ("low", "medium", "high"))
    assert len({low.prompt("image"), med.prompt("image"), high.prompt("image")}) == 3
    assert low.max_new_tokens() < med.max_new_tokens() < high.max_new_tokens()
    assert "video" in med.prompt("video") and "image" in med.prompt("image")


def test_caption_parse_strips_markup():
    fields = Caption(detail="low").parse('A <points coords="1 1 5 5">cat</points> on a mat.')
    assert fields == {"caption": "A cat on a mat.", "detail": "low"}


def test_count_parse_gives_count_and_points():
    fields = Count(target="cups").parse(COUNT_ANSWER)
    assert fields["count"] == 2 and fields["target"] == "cups"
    assert [(p["x"], p["y"], p["t"]) for p in fields["points"]] == [(0.46, 0.588, None), (0.504, 0.74, None)]


def test_count_falls_back_to_distinct_points():
    fields = Count(target="cups").parse('<points coords="1 1 100 100 2 200 200 3 300 300">cups</points>')
    assert fields["count"] == 3


def test_count_without_any_count_is_none():
    assert Count(target="cups").parse("I am not sure.")["count"] is None


def test_ask_and_scene():
    assert Ask(question="What colour?").prompt("image") == "What colour?"
    assert Ask(question="q").parse("Red.")["answer"] == "Red."
    assert "scene" in Scene().prompt("image")
    assert Scene().parse("A beach at dusk.") == {"scene": "A beach at dusk."}


@pytest.mark.parametrize("name", ["general", "summary", "analysis", "counting", "scene_description"])
def test_video_tasks(name):
    task = VideoTask(task=name, text="people")
    assert "people" in task.prompt("video")
    assert task.inputs == {"video"}
    fields = task.parse("Counting the people in the video shows a total of 9.")
    assert fields["task"] == name
    if name == "counting":
        assert fields["count"] == 9


def test_invalid_options_are_rejected():
    with pytest.raises(ConfigurationError):
        Caption(detail="huge")
    with pytest.raises(ConfigurationError):
        VideoTask(task="dance")
    with pytest.raises(ConfigurationError):
        Count(target="")
    with pytest.raises(ConfigurationError, match="bad ask task question"):
        Ask(question="   ")  # whitespace only: nothing to ask


def test_keys_are_stable_and_distinct_and_round_trip():
    tasks = [Caption(), Caption(detail="high"), Ask(question="q"), Count(target="dogs"), Scene(), VideoTask(task="summary")]
    assert len({t.key() for t in tasks}) == len(tasks)
    assert Caption(detail="high").key() == Caption(detail="high").key()
    for t in tasks:
        assert task_from_dict(t.to_dict()) == t


def test_count_fallback_counts_track_ids_once():
    # A tracked object repeats its id in every frame: two objects, not five points.
    text = '<tracks coords="0.0 1 635 522;0.5 1 606 490 2 511 124;1.0 2 515 164;1.5 2 520 168">player</tracks>'
    fields = Count(target="players").parse(text)
    assert fields["count"] == 2 and len(fields["points"]) == 5


def test_task_text_is_stripped():
    assert Count(target="  people ").prompt("image") == "How many people are there in this image? Point to each one."
