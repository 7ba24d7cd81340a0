import pytest

from molmo_rag import parse_count, parse_points
from molmo_rag.points import strip_points


def xy(points):
    return [(round(p.x, 3), round(p.y, 3)) for p in points]


def test_single_image_points():
    pts = parse_points('<points coords="1 1 460 588 2 504 740">cups</points>')
    assert xy(pts) == [(0.46, 0.588), (0.504, 0.74)]
    assert [p.id for p in pts] == [1, 2]
    assert all(p.image == 1 and p.t is None and p.label == "cups" for p in pts)


def test_several_images_use_integer_prefix_as_image_index():
    pts = parse_points('<points coords="1 1 100 200;2 2 300 400 3 500 600">dogs</points>')
    assert [(p.image, p.id) for p in pts] == [(1, 1), (2, 2), (2, 3)]
    assert all(p.t is None for p in pts)


def test_video_prefix_is_timestamp():
    pts = parse_points('<points coords="0.5 1 120 340 2 600 410;3.0 3 130 335">people</points>')
    assert [(p.t, p.id) for p in pts] == [(0.5, 1), (0.5, 2), (3.0, 3)]
    assert all(p.image is None for p in pts)
    assert xy(pts)[2] == (0.13, 0.335)


def test_tab_separated_groups_and_tracks():
    pts = parse_points('<tracks coords="1.0 7 100 100\t2.0 7 110 105">car</tracks>')
    assert [(p.t, p.id, p.label) for p in pts] == [(1.0, 7, "car"), (2.0, 7, "car")]


def test_old_point_forms_with_alt():
    pts = parse_points('<point x="10.5" y="20.0" alt="a cup">a cup</point>')
    assert xy(pts) == [(0.105, 0.2)]
    pts = parse_points('<points x1="10" y1="20" x2="30.5" y2="40" alt="birds">birds</points>')
    assert xy(pts) == [(0.1, 0.2), (0.305, 0.4)]
    assert pts[0].label == "birds"
    pts = parse_points('<point x="50" y="50" alt="hat"></point>')
    assert pts[0].label == "hat"


def test_several_tags_in_one_answer():
    text = 'I see <points coords="1 1 100 100">a</points> and <points coords="1 1 900 900 2 800 800">b</points>.'
    pts = parse_points(text)
    assert [p.label for p in pts] == ["a", "b", "b"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        None,
        "no markup at all",
        '<points coords="">x</points>',
        '<points coords="1 1 abc 200">x</points>',
        '<points coords="1 1 100">x</points>',
        '<points coords="1 1 1500 200">x</points>',
        '<points coords=1 1 100 200>x</points>',
        "<points>x</points>",
        '<point x="abc" y="1">x</point>',
    ],
)
def test_malformed_markup_never_raises(text):
    pts = parse_points(text)
    assert all(0 <= p.x <= 1 and 0 <= p.y <= 1 for p in pts)


def test_malformed_keeps_well_formed_parts():
    pts = parse_points('<points coords="1 1 100 200 2 bad 300;x y z;2.5 3 400 500">a</points>')
    assert [(p.id, p.t) for p in pts] == [(1, None), (3, 2.5)]


def test_truncated_tag_keeps_complete_triples():
    pts = parse_points('Counting the <points coords="1 1 100 200 2 300 4')
    assert [p.id for p in pts] == [1]


def test_case_insensitive_and_single_quotes():
    pts = parse_points("<POINTS coords='1 1 250 750'>Mug</POINTS>")
    assert xy(pts) == [(0.25, 0.75)] and pts[0].label == "Mug"


@pytest.mark.parametrize(
    "text,expected",
    [
        ('Counting the <points coords="1 1 460 588 2 504 740">dogs</points> shows a total of 2.', 2),
        ('There are 3 <points coords="1 1 1 1 2 2 2 3 3 3">dogs</points>.', 3),
        ("There are none.", 0),
        ("Counting the people in the video shows a total of 9.", 9),
        ("There are three cats on the sofa.", 3),
        ("There is one bird.", 1),
        ("The total count is 12.", 12),
        ("12", 12),
        ("A red car on a road.", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_count(text, expected):
    assert parse_count(text) == expected


def test_strip_points_keeps_label():
    assert strip_points('Counting the <points coords="1 1 4 5">dogs</points> shows a total of 1.') == (
        "Counting the dogs shows a total of 1."
    )


# --- Unseen Molmo2 outputs (formats from AI2's model cards and technical report) -----------


def test_report_example_multi_image_and_tracks():
    pts = parse_points('<points coords="1 1 555 169;2 3 649 154 4 709 162;5 5 758 175 6 808 183 7 852 187">boats</points>')
    assert [(p.image, p.id) for p in pts] == [(1, 1), (2, 3), (2, 4), (5, 5), (5, 6), (5, 7)]
    tracks = parse_points('<tracks coords="0.0 1 635 522;0.5 1 606 490 2 511 124;1.0 2 515 164;1.5 2 520 168">player</tracks>')
    assert [(p.t, p.id) for p in tracks] == [(0.0, 1), (0.5, 1), (0.5, 2), (1.0, 2), (1.5, 2)]
    assert xy(tracks)[0] == (0.635, 0.522)


def test_self_closing_tag_does_not_swallow_the_next_tag():
    text = 'Here <tracks coords="0.0 1 100 200"/> and <points coords="1 2 300 400">dog</points>.'
    pts = parse_points(text)
    assert [(p.id, p.label) for p in pts] == [(1, None), (2, "dog")]
    assert strip_points(text) == "Here and dog."


def test_unclosed_tag_before_a_complete_one():
    pts = parse_points('<points coords="1 1 100 200">cats <points coords="1 2 300 400">dogs</points>')
    assert [p.id for p in pts] == [1, 2] and pts[1].label == "dogs"


@pytest.mark.parametrize("sep", [";", "\t", ",", ", ", ":"])
def test_group_separators_of_ai2s_parser(sep):
    pts = parse_points(f'<points coords="1 1 215 453{sep}2 3 305 410" alt="people">people</points>')
    assert [(p.image, p.id) for p in pts] == [(1, 1), (2, 3)]


def test_alt_before_coords_and_spaces_around_equals():
    pts = parse_points('<points alt="the red car, (left)"  coords = "1 1 0215 1000"  >\n  the red car,\n (left) </points>')
    assert xy(pts) == [(0.215, 1.0)] and pts[0].label == "the red car, (left)"


def test_html_escaped_and_backslash_escaped_markup():
    escaped = "Counting the &lt;points coords=&quot;1 1 100 200 2 300 400&quot;&gt;dogs&lt;/points&gt; shows a total of 2."
    assert [p.id for p in parse_points(escaped)] == [1, 2]
    assert strip_points(escaped) == "Counting the dogs shows a total of 2."
    assert parse_count(escaped) == 2
    assert xy(parse_points('<points coords=\\"1 1 100 200\\">x</points>')) == [(0.1, 0.2)]


def test_video_ids_span_frames_and_four_digit_coordinates():
    pts = parse_points('<points coords="12.5 1 1000 0999;13.0 2 305 410 3 0 0">people</points>')
    assert [(p.t, p.id) for p in pts] == [(12.5, 1), (13.0, 2), (13.0, 3)]
    assert xy(pts)[0] == (1.0, 0.999)


def test_unicode_label_and_several_tags_in_prose():
    text = 'A <points coords="1 1 100 100">猫 (ćat)</points>, then <point x="50" y="60" alt="a cup">a cup</point>.'
    pts = parse_points(text)
    assert [p.label for p in pts] == ["猫 (ćat)", "a cup"]
    assert strip_points(text) == "A 猫 (ćat), then a cup."


def test_strip_points_drops_a_tag_cut_off_inside_its_coords():
    assert strip_points('There are 2 <points coords="1 1 215 453 2 305 4') == "There are 2"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("a total of 12", 12),
        ("There are twelve", 12),
        ("There is 1 dog.", 1),
        ("There's 1 dog.", 1),
        ("I count 3", 3),
        ("none", 0),
        ("no people", 0),
        ("No people.", 0),
        ("zero", 0),
        ("There aren't any people.", 0),
        ("I don't see any dogs.", 0),
        ("There are twenty-one birds.", 21),
        ("There are thirty birds.", 30),
        ("There are 1,234 grains of rice.", 1234),
        ("The image shows 5 apples.", 5),
        ("5 people", 5),
        ("Only one person is visible.", 1),
        ("There is a cat.", 1),
        ("There is a lot of people.", None),
        ("No, there are 3 dogs.", 3),
        ("Answer: 7", 7),
        ("There are many people.", None),
        ("The 2 dogs are playing.", None),
        ("**7**", 7),
        # Noise (a random checkpoint's bytes) is not a count, even with a digit inside.
        ("\ufffd\x18\ufffd\x1f@\x1f7\ufffd9\x1f", None),
        ("\ufffd@ no\x1f", None),
    ],
)
def test_parse_count_unseen_phrasings(text, expected):
    assert parse_count(text) == expected


def test_degenerate_digit_runs_are_not_counts():
    assert parse_count("6" * 46) is None
    assert parse_count("There are 6666666666666 people") is None
    assert parse_count("There are 1,234 people.") == 1234


def test_a_count_of_5000_digits_reads_as_none_or_raises_typed_never_a_value_error():
    from molmo_rag.points import ImplausibleCount, read_count

    text = "There are " + "7" * 5000 + " cups."  # past Python's 4,300-digit int() limit
    assert parse_count(text) is None
    with pytest.raises(ImplausibleCount, match="a number of 5000 digits"):
        read_count(text)
    assert read_count("There are 1,000,000 people.") == 1_000_000
