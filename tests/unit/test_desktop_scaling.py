"""Screen scaling: which size Claude sees, and coordinates both ways."""

from __future__ import annotations

import pytest

from orchestrator.desktop.scaling import Scaling, Size, choose_target


@pytest.mark.parametrize(
    ("screen", "advertised"),
    [
        (Size(1024, 768), Size(1024, 768)),  # XGA itself: nothing to do
        (Size(1920, 1080), Size(1366, 768)),  # 16:9 → FWXGA
        (Size(2560, 1440), Size(1366, 768)),
        (Size(1600, 1200), Size(1024, 768)),  # 4:3 → XGA
        (Size(2560, 1600), Size(1280, 800)),  # 16:10 → WXGA
        (Size(1280, 800), Size(1280, 800)),  # never scaled up
        (Size(800, 600), Size(800, 600)),
    ],
)
def test_a_large_screen_is_advertised_at_the_standard_size_of_its_shape(
    screen: Size, advertised: Size
) -> None:
    assert choose_target(screen) == advertised


def test_a_large_screen_of_another_shape_keeps_its_shape_within_the_budget() -> None:
    target = choose_target(Size(1280, 1024))  # 5:4 matches no standard size
    assert target.pixels <= 1366 * 768
    assert abs(target.width / target.height - 1280 / 1024) < 0.01
    assert target.width < 1280


def test_scaling_can_be_turned_off() -> None:
    assert choose_target(Size(1920, 1080), enabled=False) == Size(1920, 1080)


def test_every_advertised_point_survives_the_round_trip_at_1920x1080() -> None:
    scaling = Scaling.for_screen(Size(1920, 1080))
    assert scaling.active
    for x in range(scaling.advertised.width):
        real = scaling.to_screen(x, 0)
        assert scaling.to_model(*real) == (x, 0)
    for y in range(scaling.advertised.height):
        real = scaling.to_screen(0, y)
        assert scaling.to_model(*real) == (0, y)


def test_points_scale_to_the_real_screen_and_stay_on_it() -> None:
    scaling = Scaling.for_screen(Size(1920, 1080))
    assert scaling.to_screen(683, 384) == (960, 540)
    assert scaling.to_screen(0, 0) == (0, 0)
    far = scaling.to_screen(1365, 767)
    assert far[0] <= 1919
    assert far[1] <= 1079


def test_bounds_name_the_advertised_screen() -> None:
    scaling = Scaling.for_screen(Size(1920, 1080))
    assert scaling.contains(1365, 767)
    assert not scaling.contains(1366, 10)
    assert not scaling.contains(-1, 10)
    assert "0..1365" in scaling.bounds_text()
    assert "0..767" in scaling.bounds_text()


def test_a_region_covers_exactly_what_the_advertised_rectangle_shows() -> None:
    same = Scaling.for_screen(Size(1024, 768))
    assert same.region_to_screen(10, 20, 110, 70) == (10, 20, 110, 70)
    scaled = Scaling.for_screen(Size(1920, 1080))
    x0, y0, x1, y1 = scaled.region_to_screen(0, 0, 1366, 768)
    assert (x0, y0, x1, y1) == (0, 0, 1920, 1080)
    x0, y0, x1, y1 = scaled.region_to_screen(100, 100, 200, 150)
    assert x0 <= 100 * 1920 / 1366 < x0 + 1
    assert x1 >= 200 * 1920 / 1366 > x1 - 1
