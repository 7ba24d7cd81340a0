"""Write a small mixed folder of sample media: photos from scikit-image (permissive
licences, see skimage/data/README), a slide deck made with python-pptx, and a video made
from the photos with PyAV (pans and zooms joined by hard cuts at known times).

    python examples/make_media.py examples/media
"""

from __future__ import annotations

import sys
from pathlib import Path

from molmo_rag.testing.samples import Shot, SlideSpec, make_deck, make_video, photo


def main(out: str = "examples/media") -> None:
    folder = Path(out)
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    for name, ext in (("astronaut", "jpg"), ("coffee", "jpg"), ("chelsea", "png"), ("rocket", "webp")):
        target = folder / "photos" / f"{name}.{ext}"
        if not target.exists():
            photo(name).save(target)
    deck = folder / "quarterly-review.pptx"
    if not deck.exists():
        make_deck(
            deck,
            [
                SlideSpec("Quarterly review", ["Revenue up 12% on last quarter", "Two new regions"], notes="Open with the headline."),
                SlideSpec("Revenue by region", ["North and South lead", "East recovering"], chart=True, notes="Chart from the finance team."),
                SlideSpec("Launch day", ["The rocket on the pad"], picture="rocket"),
            ],
        )
    clip = folder / "tour.mp4"
    if not clip.exists():
        make_video(
            clip,
            [Shot("astronaut", 6.0, "zoom_in"), Shot("coffee", 5.0, "pan"), Shot("chelsea", 7.0, "zoom_out")],
            size=(480, 270),
        )
    print(folder)


if __name__ == "__main__":
    main(*sys.argv[1:2])
