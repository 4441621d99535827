"""One picture over many workers: a tiled step spread over shards (in this process and on a real local
Ray cluster) gives the single-process tiled step's loss and gradient; a run's steps follow the
single-process run's; a worker killed mid-step costs that step and nothing else; the plan is per
worker; bad ``--ray`` inputs end in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import painterly.engine.settings as settings_module
from painterly import DEFAULT, TUTORIAL, stylize
from painterly.engine.cluster import LocalShards, LocalTiles, describe_workers, evaluate_sharded, run_sharded
from painterly.engine.objective import build_objective
from painterly.engine.optimize import run_scale
from painterly.engine.plan import make_plan
from painterly.engine.run import build_network
from painterly.engine.shards import assign_blocks, assign_tiles, halo_bytes, share_out
from painterly.engine.tiles import TiledGradient, make_tiles
from painterly.errors import SettingsError

#: Shallow layers (a halo of 16 px): the tests' networks stop at block2, so a step takes a fraction of a second.
SHALLOW = {"content_layers": ("block2_conv2",), "style_layers": ("block1_conv1", "block2_conv1")}
#: Every kind of tiled term: Gram with content and total variation, the moments term, masked relative Grams.
CASES = {
    "gram": TUTORIAL.replace(tv_weight=1.0, optimizer="lbfgs", **SHALLOW),
    "moments": DEFAULT.replace(tv_weight=0.5, **SHALLOW),
    "masks": DEFAULT.replace(style_loss="relative", style_blend_weights=(0.7, 0.3), **SHALLOW),
}
H, W, TILE = 64, 96, 32  # 2 x 3 tiles, ragged nowhere but small enough that halos reach across tiles


def _rand(*shape: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 255).to(dtype)


def _setup(case: str, dtype: torch.dtype, height: int = H, width: int = W):
    settings = CASES[case]
    precision = "fp64" if dtype == torch.float64 else "fp32"
    net = build_network(settings, torch.device("cpu"), precision)
    content = _rand(1, 3, height, width, seed=1, dtype=dtype)
    styles = [_rand(1, 3, 40, 48, seed=2, dtype=dtype)]
    masks = None
    if case == "masks":
        styles.append(_rand(1, 3, 40, 40, seed=3, dtype=dtype))
        left = torch.zeros(1, 1, H, W, dtype=dtype)
        left[..., : W // 3] = 1.0
        left[..., W // 3: W // 2] = 0.5
        masks = [left, 1.0 - left]
    objective = build_objective(net, settings, content, styles, masks=masks)
    image = _rand(1, 3, height, width, seed=4, dtype=dtype)
    return settings, precision, TiledGradient(objective, (width, height), TILE), image


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def _check_equal(terms, grad, ref_terms, ref_grad, dtype: torch.dtype) -> None:
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    total = float(ref_terms.total)
    assert float(terms.total) == pytest.approx(total, rel=tolerance)
    for name, value in ref_terms.parts.items():  # each term to the total's precision
        assert abs(float(terms.parts[name]) - float(value)) <= tolerance * abs(total), name
    assert _relative(grad, ref_grad) < tolerance


def test_tiles_are_shared_in_contiguous_runs() -> None:
    assert assign_tiles(6, 2) == [[0, 1, 2], [3, 4, 5]]
    assert assign_tiles(5, 3) == [[0, 1], [2], [3, 4]]
    assert assign_tiles(2, 4) == [[0], [1]]  # no more workers than tiles
    # Blocks of the tile grid where they share it out as evenly: fewer tiles at their borders.
    assert assign_blocks(4, 4, 4) == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    assert assign_blocks(2, 3, 2) == [[0, 1, 2], [3, 4, 5]]  # blocks of 4 and 2: runs
    # 8192 x 8192 in tiles of 512 px on 16 workers (blocks of 4 x 4 tiles): the halos of a step move
    # less than a quarter of the image's bytes (runs, a row of tiles each: 0.59 of them).
    assert halo_bytes(share_out(make_tiles(8192, 8192, 512, 80), 16, 8192, 8192)[2], 4) < 0.25 * 8192**2 * 3 * 4


@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize("case", list(CASES))
def test_sharded_step_equals_tiled_step_in_fp64(case: str, workers: int) -> None:
    settings, precision, tiled, image = _setup(case, torch.float64)
    ref_terms, ref_grad = tiled(image)
    terms, grad = evaluate_sharded(LocalShards(tiled.features), tiled, image, settings, precision, workers)
    _check_equal(terms, grad, ref_terms, ref_grad, torch.float64)


@pytest.mark.parametrize("case", ["gram", "masks"])
def test_sharded_step_equals_tiled_step_in_fp32(case: str) -> None:
    # (The moments term subtracts near-equal traces: in fp32 its value moves with the order of any sum,
    # tiled or not, so it is held to fp64's figure above; test_tiles holds the tiled one to the same.)
    settings, precision, tiled, image = _setup(case, torch.float32)
    ref_terms, ref_grad = tiled(image)
    terms, grad = evaluate_sharded(LocalShards(tiled.features), tiled, image, settings, precision, 3)
    _check_equal(terms, grad, ref_terms, ref_grad, torch.float32)


@pytest.mark.parametrize("case, first_step, first_from", [("gram", 0.0, 512), ("gram", 8.0, 512),
                                                       ("moments", 0.0, 64)])
def test_sharded_run_follows_the_single_process_run(case: str, first_step: float, first_from: int,
                                                    monkeypatch) -> None:
    """... also where the first step is a whole step because the image is large (here from 64 px, and this
    image is 96 px wide): each shard sizes it by the whole image, not by its tiles."""
    monkeypatch.setattr(settings_module, "FIRST_STEP_FROM", first_from)
    settings, precision, tiled, image = _setup(case, torch.float64)
    settings = settings.replace(lbfgs_first_step=first_step)
    assert bool(((image < 4) | (image > 251)).any())  # pixels that reach a bound, which both leave out
    single: list[float] = []
    spread: list[float] = []
    moved: list[float] = []

    def note(i: int, losses: dict, picture: torch.Tensor) -> bool:
        single.append(losses["total"])
        if i == 0:
            moved.append(float((picture - image).abs().max()))
        return False

    ref = run_scale(tiled.objective, image, settings, 5, note, gradient=tiled)
    out = run_sharded(LocalShards(tiled.features), tiled, image, settings, 5,
                      lambda i, losses, _: spread.append(losses["total"]) and False, None, precision, 3)
    # The compact form of L-BFGS (the cluster's) and the two-loop recursion (the CPU's) are the same step.
    assert spread == pytest.approx(single, rel=1e-9)
    assert (out.best_step, out.steps_run) == (ref.best_step, ref.steps_run)
    assert _relative(out.image, ref.image) < 1e-9
    if first_from < W:  # the whole 12-level cap, where the gradient's own step moves no pixel a level
        assert settings.lbfgs_max_step == 12.0 and moved[0] > 6.0


def test_lost_shard_costs_one_step_and_changes_nothing() -> None:
    settings, precision, tiled, image = _setup("moments", torch.float64)
    settings = settings.replace(ema=0.5)
    clean: list[float] = []
    ref = run_sharded(LocalShards(tiled.features), tiled, image, settings, 4,
                      lambda i, losses, _: clean.append(losses["total"]) and False, None, precision, 3)
    pool = LocalShards(tiled.features)
    seen: list[float] = []

    def report(i: int, losses: dict, _) -> bool:
        seen.append(losses["total"])
        if i == 1:
            pool.lose(1)  # its next call, the next step's first, finds it gone
        return False

    out = run_sharded(pool, tiled, image, settings, 4, report, None, precision, 3)
    assert seen == clean and torch.equal(out.image, ref.image)


def test_plan_budget_is_per_worker_and_the_terminal_shows_the_share() -> None:
    settings = DEFAULT.replace(size=4096, start_size=0, steps=10)
    with pytest.raises(SettingsError, match="needs at least"):
        make_plan(settings, (4096, 4096), "fp32", 4 * 2**30)
    assert make_plan(settings, (4096, 4096), "fp32", 4 * 2**30, workers=8).scales[-1].peak_bytes <= 4 * 2**30
    budget = 5 * 2**30
    alone = make_plan(settings, (4096, 4096), "fp32", budget)
    spread = make_plan(settings, (4096, 4096), "fp32", budget, workers=8)
    assert alone.scales[-1].tile and spread.scales[-1].tile
    assert spread.scales[-1].peak_bytes <= budget
    # Each worker holds an eighth of the image: larger tiles or more pairs fit its budget.
    assert (spread.scales[-1].tile, spread.scales[-1].history) > (alone.scales[-1].tile, alone.scales[-1].history)
    lines = describe_workers(spread, 8)
    assert len(lines) == 1 and "over 8 workers" in lines[0] and "GiB for the driver" in lines[0]
    with pytest.raises(SettingsError, match="nearest has no tiled form"):
        stylize(_rand(1, 3, 64, 64, seed=0, dtype=torch.float32)[0] / 255, _rand(1, 3, 64, 64, seed=0,
                dtype=torch.float32)[0] / 255, style_loss="nearest", cluster=LocalTiles(2))


def test_stylize_with_a_cluster_paints_the_tiled_picture(content_path: Path, style_path: Path) -> None:
    changes = dict(size=96, steps=3, start_size=0, precision="fp64", device="cpu", tile_size=64, **SHALLOW)
    alone = stylize(content_path, style_path, **changes)
    cluster = LocalTiles(2)
    spread = stylize(content_path, style_path, cluster=cluster, **changes)
    assert spread.plan is not None and spread.plan.scales[-1].tiles == 2
    assert [h["total"] for h in spread.history] == pytest.approx([h["total"] for h in alone.history], rel=1e-9)
    assert spread.best_step == alone.best_step
    assert cluster.traffic["steps"] == 3 and cluster.traffic["image_bytes"] == 3 * 96 * 64 * 8
    tiles = make_tiles(64, 96, 64, 16)
    assert cluster.traffic["halo_bytes_per_step"] == halo_bytes(share_out(tiles, 2, 64, 96)[2], 8)


# -- on a real local Ray cluster ------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_tiles(ray_cluster):
    from painterly.workers.tiles_ray import RayTiles

    tiles = RayTiles("auto", workers=2, threads=1, device="cpu")
    yield tiles
    tiles.close()


@pytest.mark.parametrize("case, dtype", [("gram", torch.float64), ("moments", torch.float64),
                                         ("masks", torch.float64), ("masks", torch.float32)])
def test_ray_step_equals_tiled_step(ray_tiles, case: str, dtype: torch.dtype) -> None:
    settings, precision, tiled, image = _setup(case, dtype)
    ref_terms, ref_grad = tiled(image)
    terms, grad = evaluate_sharded(ray_tiles.pool, tiled, image, settings, precision, 2)
    _check_equal(terms, grad, ref_terms, ref_grad, dtype)


def test_ray_actor_killed_mid_step_costs_that_step(ray_tiles, ray_cluster) -> None:
    settings, precision, tiled, image = _setup("gram", torch.float64)
    clean: list[float] = []
    ref = ray_tiles.run_scale(tiled, image, settings, 4, lambda i, losses, _: clean.append(losses["total"]) and False,
                              None, precision)
    traffic = ray_tiles.traffic
    pool = ray_tiles.pool
    calls = {"backward": 0}
    submit = pool.call

    def call(shard: int, method: str, *args, returns=None):
        if method == "backward" and shard == 1:
            calls["backward"] += 1
            if calls["backward"] == 3:  # the third step: pass 1 is done, its pass 2 is not
                ray_cluster.kill(pool.actors[1])
        return submit(shard, method, *args, returns=returns)

    pool.call = call  # type: ignore[method-assign]
    try:
        seen: list[float] = []
        out = ray_tiles.run_scale(tiled, image, settings, 4,
                                  lambda i, losses, _: seen.append(losses["total"]) and False, None, precision)
    finally:
        del pool.call
    assert pool.replaced == 1 and calls["backward"] == 5  # the lost step's pass 2 went again
    assert seen == clean and torch.equal(out.image, ref.image)
    # A step moves the sums, their gradients and scalars to and from the driver, and halos between workers.
    assert traffic["steps"] == 4 and traffic["halo_bytes_per_step"] > 0


def test_ray_step_moves_the_sums_not_the_pixels(ray_tiles) -> None:
    moved = []
    for height, width in ((H, W), (2 * H, 2 * W)):
        settings, precision, tiled, image = _setup("gram", torch.float64, height, width)
        ray_tiles.run_scale(tiled, image, settings, 3, lambda *_: False, None, precision)
        moved.append(ray_tiles.traffic)
    small, big = moved
    # Four times the pixels: the same sums and scalars a step between the driver and the workers.
    assert big["image_bytes"] == 4 * small["image_bytes"]
    assert abs(big["driver_bytes_per_step"] - small["driver_bytes_per_step"]) < 0.01 * big["image_bytes"]
    assert big["halo_bytes_per_step"] < big["image_bytes"]


# -- the command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--ray", "nowhere"], "--ray takes auto or host:port"),
    (["--ray", "127.0.0.1:9"], "cannot reach the Ray cluster at 127.0.0.1:9"),
    (["--ray", "auto", "--style-loss", "nearest"], "nearest has no tiled form"),
    (["--ray", "auto", "--optimizer", "adam"], "a cluster runs L-BFGS only"),
])
def test_bad_ray_inputs_are_one_line(cli, tmp_path: Path, content_path: Path, style_path: Path, fast_args,
                                     flags: list[str], message: str) -> None:
    out = tmp_path / "out.png"
    code, _, stderr = cli([content_path, style_path, "-o", out, *fast_args, *flags])
    assert code != 0 and message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()


def test_ctrl_c_and_resume_on_a_cluster(content_path: Path, style_path: Path) -> None:
    from painterly.engine.checkpoint import Checkpoint

    changes = dict(size=96, steps=4, start_size=0, precision="fp64", device="cpu", tile_size=64, **SHALLOW)
    saved: list[Checkpoint] = []

    def interrupt(event) -> None:
        if event.step == 1:
            raise KeyboardInterrupt  # as Ctrl-C mid-run: the best image so far, the checkpoint kept

    stopped = stylize(content_path, style_path, cluster=LocalTiles(2), callback=interrupt,
                      on_checkpoint=saved.append, **changes)
    assert stopped.stopped and len(stopped.history) == 2 and saved[-1].steps_done == 2
    resumed = stylize(content_path, style_path, cluster=LocalTiles(2), resume=saved[-1], **changes)
    assert not resumed.stopped and len(resumed.history) == 4
    assert resumed.history[:2] == stopped.history


def test_paint_command_on_a_ray_cluster(ray_tiles, cli, tmp_path: Path, content_path: Path,
                                        style_path: Path, fast_args) -> None:
    ray_tiles.pool.close()  # its two actors hold both CPUs; the command's own worker takes them (they come back)
    out = tmp_path / "out.png"
    code, _, stderr = cli([content_path, style_path, "-o", out, *fast_args, "--size", "96", "--tile-size", "64",
                           "--ray", "auto"])
    assert code == 0 and out.exists(), stderr
    assert "cluster: scale 1/1 96x64: 2 tiles over" in stderr
