"""The images bundled with painterly: the demo pair and a few public-domain examples.

Credits and licences are in ``painterly/examples/CREDITS.md`` (the turtle photo is CC BY-SA 3.0).
"""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).parent / "examples"
#: What a result made from the turtle photo must carry (CC BY-SA 3.0).
TURTLE_CREDIT = ('"Green Sea Turtle grazing seagrass" by P. Lindgren, CC BY-SA 3.0, via Wikimedia Commons; '
                 "resized and re-encoded")


def demo_paths() -> tuple[Path, Path]:
    """The tutorial's example: the green sea turtle photo and Hokusai's Great Wave."""
    return SAMPLES / "content" / "green_sea_turtle.jpg", SAMPLES / "styles" / "great_wave.jpg"


def contents() -> dict[str, Path]:
    """Bundled content photos by name (file stem)."""
    return {p.stem: p for p in sorted((SAMPLES / "content").glob("*.jpg"))}


def styles() -> dict[str, Path]:
    """Bundled artworks by name (file stem)."""
    return {p.stem: p for p in sorted((SAMPLES / "styles").glob("*.jpg"))}
