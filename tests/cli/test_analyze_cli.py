"""``molmo-rag caption|ask|count|video|estimate`` end to end, in process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from molmo_rag.cli import main
from molmo_rag.testing.loopback import WaveSpeedServer
from molmo_rag.testing.samples import Shot, make_video, photo


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    photo("astronaut").save(folder / "astronaut.jpg")
    photo("coffee").save(folder / "coffee.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    make_video(folder / "clip.mp4", [Shot("chelsea", 2.0, "pan"), Shot("rocket", 2.0, "static")], size=(160, 90))
    return folder


def run_json(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_caption_several_sources_one_line_each_and_errors_in_place(capsys, media, tiny_molmo2_path):
    argv = ["caption", str(media / "astronaut.jpg"), str(media / "corrupt.jpg"), str(media / "missing.jpg"),
            str(media / "coffee.png"), "--backend", "local", "--model", str(tiny_molmo2_path), "--detail", "low", "--json"]
    code, lines, err = run_json(capsys, argv)
    assert code == 1 and "2 item(s) failed" in err
    assert [line["source"] for line in lines] == [str(media / n) for n in ("astronaut.jpg", "corrupt.jpg", "missing.jpg", "coffee.png")]
    ok = [lines[0], lines[3]]
    for line in ok:
        assert line["kind"] == "image" and line["backend"] == "local" and line["model"] == str(tiny_molmo2_path)
        assert isinstance(line["caption"], str) and line["detail"] == "low" and line["cost_usd"] == 0
    assert lines[1]["error_type"] == "CorruptMediaError"
    assert lines[2]["error_type"] == "SourceNotFoundError"
    for line in lines[1:3]:  # error lines say which backend and model they were meant for
        assert line["backend"] == "local" and line["model"] == str(tiny_molmo2_path) and line["error"]
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["ask", "{img}", "  "], ["count", "{img}", ""]])
def test_empty_question_or_target_is_one_clear_line(capsys, media, tiny_molmo2_path, argv):
    argv = [a.format(img=media / "astronaut.jpg") for a in argv] + ["--model", str(tiny_molmo2_path), "--json"]
    code, lines, err = run_json(capsys, argv)
    assert code == 2 and lines == []  # a usage error
    assert "Traceback" not in err and "at least 1 character" in err and len(err.strip().splitlines()) == 1


def test_ask_and_count_fields(capsys, media, tiny_molmo2_path):
    code, lines, _ = run_json(capsys, ["ask", str(media / "coffee.png"), "What is in the cup?", "--model", str(tiny_molmo2_path), "--json"])
    assert code == 0 and lines[0]["question"] == "What is in the cup?" and isinstance(lines[0]["answer"], str)
    code, lines, _ = run_json(capsys, ["count", str(media / "astronaut.jpg"), "people", "--model", str(tiny_molmo2_path), "--json"])
    assert code == 0
    assert lines[0]["target"] == "people" and isinstance(lines[0]["points"], list)
    assert lines[0]["count"] is None or isinstance(lines[0]["count"], int)


def test_video_segments_over_rest(capsys, media, monkeypatch):
    with WaveSpeedServer(api_key="cli-key") as server:
        monkeypatch.setenv("WAVESPEED_API_KEY", "cli-key")
        monkeypatch.setenv("WAVESPEED_BASE_URL", server.base_url)
        code, lines, err = run_json(capsys, ["video", str(media / "clip.mp4"), "--task", "counting", "--text", "cats", "--backend", "wavespeed", "--json"])
    assert code == 0, err
    assert lines and all(line["kind"] == "video_segment" for line in lines)
    assert lines[0]["start"] == 0 and lines[-1]["end"] == pytest.approx(4.0, abs=0.1)
    for line in lines:
        assert line["count"] >= 1 and line["cost_usd"] == 0.005
        assert all(line["start"] <= p["t"] for p in line["points"])
    assert "cli-key" not in err and "total cost" in err


def test_unsupported_task_names_capable_backends(capsys, media, monkeypatch):
    monkeypatch.setenv("WAVESPEED_API_KEY", "k" * 12)
    # WaveSpeed answers questions about videos only: the photo gets an error line naming who can.
    code = main(["ask", str(media / "coffee.png"), "why?", "--backend", "wavespeed"])
    out, err = capsys.readouterr()
    assert code == 1 and "UnsupportedTaskError" in out and "local, openai, openoctopus" in out
    assert "Traceback" not in err
    # A task the backend can run on no input fails up front, before the backend is made (no key read).
    from molmo_rag import RunOptions, VideoTask
    from molmo_rag.errors import UnsupportedTaskError

    monkeypatch.delenv("OPENOCTOPUS_API_KEY", raising=False)
    with pytest.raises(UnsupportedTaskError, match="local, openai, wavespeed"):
        RunOptions(backend="openoctopus", tasks=[VideoTask()]).check()
    code = main(["video", str(media / "clip.mp4"), "--backend", "openoctopus"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "UnsupportedTaskError" not in err and "local, openai, wavespeed" in err


def test_estimate_calls_nothing(capsys, media):
    code, lines, _ = run_json(capsys, ["estimate", str(media), "--backend", "wavespeed", "--json"])
    items = [line for line in lines if "kind" in line]
    total = lines[-1]
    # Photos: caption only (WaveSpeed has no image scene); the 4 s video: caption + scene per segment.
    assert total["total_calls"] == sum(i["calls"] for i in items)
    assert total["total_cost_usd"] == pytest.approx(sum(i["cost_usd"] for i in items))
    photos = [i for i in items if i["kind"] == "image"]
    assert len(photos) == 2 and all(i["cost_usd"] == 0.002 for i in photos)
    assert code == 1  # the corrupt file is reported


def test_console_script_runs(media):
    out = subprocess.run([sys.executable, "-m", "molmo_rag.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "caption" in out.stdout and "index" in out.stdout


def test_human_lines_stay_one_line_per_item():
    from molmo_rag.cli.analyze_cmd import _human_line

    caption = {"source": "a.jpg", "kind": "image", "caption": "A cat.\n\nIt sleeps on a\tsofa."}
    assert _human_line(caption) == "a.jpg: A cat. It sleeps on a sofa."
    segment = {"source": "v.mp4", "start": 4.0, "end": 9.0, "target": "people", "count": 2, "points": [{}, {}]}
    assert _human_line(segment) == "v.mp4 4.0-9.0s: 2 people (2 points)"
    error = {"source": "b.jpg", "error": "b.jpg is empty (0 bytes)", "error_type": "CorruptMediaError"}
    assert _human_line(error) == "b.jpg: ERROR CorruptMediaError: b.jpg is empty (0 bytes)"


def test_video_task_on_a_photo_says_why_instead_of_printing_nothing(capsys, media, tiny_molmo2_path):
    code, lines, err = run_json(capsys, ["video", str(media / "astronaut.jpg"), "--model", str(tiny_molmo2_path), "--json"])
    assert code == 1 and lines == []
    assert "needs a video" in err and "Traceback" not in err


def test_segment_options_cut_videos_as_asked(capsys, media, monkeypatch):
    with WaveSpeedServer(api_key="cli-key") as server:
        monkeypatch.setenv("WAVESPEED_API_KEY", "cli-key")
        monkeypatch.setenv("WAVESPEED_BASE_URL", server.base_url)
        code, lines, err = run_json(
            capsys, ["caption", str(media / "clip.mp4"), "--backend", "wavespeed", "--segment", "fixed", "--segment-seconds", "1.5", "--json"]
        )
    assert code == 0, err
    bounds = [(line["start"], line["end"]) for line in lines]
    # 1.5 s windows (snapped to the frame grid); a short tail joins the last window.
    assert len(bounds) >= 2 and bounds[0][0] == 0 and bounds[0][1] == pytest.approx(1.5, abs=0.05)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(bounds, bounds[1:]))  # no gaps
    assert bounds[-1][1] == pytest.approx(4.0, abs=0.1)


def test_bad_segment_option_is_one_clear_line(capsys, media):
    code = main(["estimate", str(media / "clip.mp4"), "--segment", "shots"])
    err = capsys.readouterr().err
    assert code == 2 and "--segment" in err and "Traceback" not in err


def test_failure_lines_carry_the_vendor_code_and_status(capsys, media, monkeypatch):
    with WaveSpeedServer(api_key="right-key") as server:
        server.inject("reply", route="submit", times=-1, status=400, body={"code": 400, "message": "image is required", "data": None})
        monkeypatch.setenv("WAVESPEED_API_KEY", "right-key")
        monkeypatch.setenv("WAVESPEED_BASE_URL", server.base_url)
        code, lines, err = run_json(capsys, ["caption", str(media / "coffee.png"), "--backend", "wavespeed", "--json"])
    assert code == 1
    assert lines[0]["error_type"] == "BackendError" and lines[0]["error_status"] == 400 and lines[0]["retryable"] is False
    assert "right-key" not in json.dumps(lines) + err


def test_a_refused_key_ends_the_run_with_one_line(capsys, media, monkeypatch):
    # a refused key fails every request the same way: the run ends with one error, not a
    # failure line per item (issue 12)
    with WaveSpeedServer(api_key="right-key") as server:
        monkeypatch.setenv("WAVESPEED_API_KEY", "wrong-key-123")
        monkeypatch.setenv("WAVESPEED_BASE_URL", server.base_url)
        code, lines, err = run_json(capsys, ["caption", str(media / "coffee.png"), str(media / "astronaut.jpg"), "--backend", "wavespeed", "--json"])
    assert code == 1 and lines == []
    assert len(err.strip().splitlines()) == 1 and "HTTP 401" in err and "run stopped" in err
    assert "wrong-key-123" not in err


def test_an_unopenable_cache_is_a_warning_and_the_answers_still_come(capsys, media, tmp_path, monkeypatch):
    import _pixel_backend

    _pixel_backend.register(monkeypatch)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    code, lines, err = run_json(capsys, ["caption", str(media / "coffee.png"), "--backend", "pixels", "--cache-dir", str(blocked), "--json"])
    assert code == 0, err
    assert [line["source"] for line in lines] == [str(media / "coffee.png")] and lines[0]["caption"]
    warning, summary = err.strip().splitlines()
    assert warning.startswith("molmo-rag: warning: cannot open the result cache") and warning.endswith("answering without it")
    assert "1 result(s) from pixels, 0 from cache" in summary


def test_unset_flags_take_the_run_options_defaults(capsys, media, tmp_path, monkeypatch):
    import _pixel_backend
    from molmo_rag import RunOptions
    from molmo_rag.cli.common import options_from_flags

    _pixel_backend.register(monkeypatch)
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "cache"))
    assert options_from_flags() == RunOptions() and not options_from_flags().model_fields_set
    flags = options_from_flags(backend="pixels", count=["person, car", "cup"], ask=["Why?"], no_cache=True, segment="fixed")
    assert (flags.count, flags.ask, flags.no_cache, flags.reader_options.segment_mode) == (["person", "car", "cup"], ["Why?"], True, "fixed")
    assert flags.model_fields_set == {"backend", "count", "ask", "no_cache", "reader_options"}
    code, lines, err = run_json(capsys, ["caption", str(media / "coffee.png"), "--backend", "pixels", "--json"])
    assert code == 0, err
    assert lines[0]["detail"] == RunOptions().detail


def _run_flag_cases(media, tmp):
    from molmo_rag.cli.common import reader_options

    photo_ = str(media / "coffee.png")
    return {
        "caption": (
            ["caption", photo_, "--backend", "pixels", "--detail", "high", "--no-cache", "--cache-dir", str(tmp / "cache"),
             "--concurrency", "2", "--retry-failed", "--segment", "fixed", "--segment-seconds", "5"],
            {"backend": "pixels", "detail": "high", "no_cache": True, "cache": tmp / "cache", "concurrency": 2,
             "retry_failed": True, "reader_options": reader_options("fixed", 5.0)},
        ),
        "ask": (["ask", photo_, "Why?", "--backend", "pixels"], {"backend": "pixels"}),
        "count": (["count", photo_, "cups", "--no-cache", "--backend", "pixels"], {"backend": "pixels", "no_cache": True}),
        "estimate": (
            ["estimate", str(media), "--count", "person,car", "--ask", "Why?", "--detail", "low", "--segment", "scenes"],
            {"count": ["person", "car"], "ask": ["Why?"], "detail": "low", "reader_options": reader_options("scenes", None)},
        ),
        "index": (
            ["index", photo_, "--db", str(tmp / "db"), "--backend", "pixels", "--count", "cup", "--ask", "Why?", "--retry-failed", "--quiet"],
            {"backend": "pixels", "count": ["cup"], "ask": ["Why?"], "retry_failed": True},
        ),
        "search": (
            ["search", "coffee", "--db", str(tmp / "db"), "--backend", "pixels", "--model", "m", "--cache-dir", str(tmp / "cache")],
            {"backend": "pixels", "model": "m", "cache": tmp / "cache"},
        ),
    }


@pytest.mark.parametrize("command", ["caption", "ask", "count", "estimate", "index", "search"])
def test_each_commands_run_flags_make_its_one_run_options(capsys, media, tmp_path, monkeypatch, command):
    """The flags a command was given, and only those, are set on the one RunOptions it gets."""
    import _pixel_backend
    from molmo_rag.cli import common

    _pixel_backend.register(monkeypatch)
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "default-cache"))
    made = []
    from_flags = common.options_from_flags

    def recording(**flags):
        made.append(from_flags(**flags))
        return made[-1]

    monkeypatch.setattr(common, "options_from_flags", recording)
    argv, fields = _run_flag_cases(media, tmp_path)[command]
    main(argv)
    capsys.readouterr()
    [options] = made
    assert options.model_fields_set == set(fields)
    assert {name: getattr(options, name) for name in fields} == fields


def test_run_flags_are_named_flags_and_need_an_options_parameter():
    from molmo_rag.cli.common import run_flags

    with pytest.raises(ValueError, match="no run flag cache_dir"):
        run_flags("backend", "cache_dir")
    with pytest.raises(TypeError, match="takes no `options` parameter"):
        run_flags("backend")(lambda as_json=False: None)


def test_an_interrupted_run_says_how_to_resume_by_its_options(capsys):
    import gc

    import typer

    from molmo_rag import RunOptions
    from molmo_rag.cli.common import exit_interrupted

    try:
        for options, again in ((RunOptions(), "run the same command again"), (RunOptions(no_cache=True), "run it again without --no-cache")):
            with pytest.raises(typer.Exit) as stopped:
                exit_interrupted("printed 2 line(s)", options)
            assert stopped.value.exit_code == 130
            assert capsys.readouterr().err == f"molmo-rag: interrupted: printed 2 line(s); {again} to resume: only what is missing is sent\n"
    finally:
        gc.unfreeze()
