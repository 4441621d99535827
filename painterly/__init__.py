"""painterly: paint a photo in the style of an artwork (Gatys et al. neural style transfer).

>>> import painterly
>>> result = painterly.stylize(content_image, style_image, steps=50)  # doctest: +SKIP
>>> result.image.save("painted.png")  # doctest: +SKIP
"""

from .api import Progress, Result, stylize
from .errors import ImageError, OutputError, PainterlyError, SettingsError, WeightsError
from .settings import DEFAULT, PRESETS, TUTORIAL, Machine, Settings, preset

__version__ = "0.1.0"

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
        from .tiles_ray import RayTiles

        return RayTiles
    raise AttributeError(f"module 'painterly' has no attribute {name!r}")
