"""The work budget: what a run may cost on this server, checked from its plan before it is queued.

The plan (:func:`painterly.engine.plan.make_plan`) says how many scales and steps a run has, how large its
style images become and how much memory a step takes; :func:`check_plan` refuses a run that passes
one of the server's limits (``painterly serve --max-...``) with a 422 naming the limit. The number
of scales is bounded before the plan is made, because a scale factor a hair above 1 would make the
plan itself (millions of scales) the expensive part.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..engine.plan import Plan, make_plan
from ..engine.settings import Settings
from ..errors import ImageError
from .checks import ApiError

if TYPE_CHECKING:
    from .config import WebConfig


def scales_at_most(settings: Settings) -> float:
    """An upper bound of the number of scales of ``settings``, computed without listing them."""
    if not settings.start_size or settings.start_size >= settings.size:
        return 1
    ratio = math.log(settings.scale_factor)
    if ratio <= 0:
        return math.inf
    return math.floor(math.log(settings.size / settings.start_size) / ratio + 1e-6) + 1


def check_plan(settings: Settings, content_size: tuple[int, int], precision: str, config: WebConfig) -> Plan:
    """The plan of the run, or :class:`ApiError` 422 naming the first server limit it passes."""
    bound = scales_at_most(settings)
    if bound > config.max_scales:
        many = "millions of" if bound > 1e6 else f"{int(bound):,}"
        raise ApiError(422, f"this schedule has {many} scales (start_size {settings.start_size}, scale_factor "
                       f"{settings.scale_factor:g}); this server allows at most {config.max_scales} "
                       "(--max-scales)", "scale_factor")
    try:
        plan = make_plan(settings, content_size, precision)
    except ImageError as exc:  # too thin for the network at some scale
        raise ApiError(422, str(exc), "content") from None
    if len(plan.scales) > config.max_scales:  # the bound is exact; this keeps the two in step
        raise ApiError(422, f"this schedule has {len(plan.scales)} scales; this server allows at most "
                       f"{config.max_scales} (--max-scales)", "scale_factor")
    if plan.total_steps > config.max_total_steps:
        raise ApiError(422, f"this run has {plan.total_steps:,} steps over its {len(plan.scales)} scales; this server "
                       f"allows at most {config.max_total_steps:,} in all (--max-total-steps)", "steps")
    style = max(s.style_size for s in plan.scales)
    if style > config.max_style_size:
        raise ApiError(422, f"style_scale {settings.style_scale:g} at {settings.size} px makes {style} px style "
                       "images; "
                       f"this server allows at most {config.max_style_size} px (--max-style-size)", "style_scale")
    limit = int(config.max_memory_mb * 2**20)
    if plan.peak_bytes > limit:
        raise ApiError(422, f"this run would need about {plan.peak_bytes / 2**30:.1f} GiB of memory at its largest "
                       f"scale; this server allows {limit / 2**30:.1f} GiB (--max-memory-mb)", "size")
    return plan


def plan_summary(plan: Plan) -> dict[str, Any]:
    """The plan as the page shows it (JSON-ready)."""
    return {"total_steps": plan.total_steps, "peak_bytes": plan.peak_bytes, "total_cost": plan.total_cost,
            "scales": [{"size": list(s.size), "steps": s.steps, "style_size": s.style_size, "cost": s.cost}
                       for s in plan.scales]}

