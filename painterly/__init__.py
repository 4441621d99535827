"""painterly: paint a photo in the style of an artwork (Gatys et al. neural style transfer).

>>> import painterly
>>> result = painterly.stylize(content_image, style_image, steps=50)  # doctest: +SKIP
>>> result.image.save("painted.png")  # doctest: +SKIP
"""

from .engine.result import Progress, Result
from .engine.run import stylize
from .engine.settings import DEFAULT, PRESETS, TUTORIAL, Machine, Settings, preset
from .errors import ImageError, OutputError, PainterlyError, SettingsError, WeightsError
from .version import __version__

__all__ = [
    "DEFAULT",
    "PRESETS",
    "TUTORIAL",
    "ImageError",
    "Machine",
    "OutputError",
    "PainterlyError",
    "Progress",
    "RayTiles",
    "Result",
    "Settings",
    "SettingsError",
    "WeightsError",
    "__version__",
    "preset",
    "stylize",
]


def __getattr__(name: str):
    """``painterly.RayTiles`` (one picture's tiles on a Ray cluster), imported when first asked for:
    its module is the Ray side, which painterly does not need otherwise."""
    if name == "RayTiles":
        from .workers.tiles_ray import RayTiles

        return RayTiles
    raise AttributeError(f"module 'painterly' has no attribute {name!r}")
