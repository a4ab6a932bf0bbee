"""The host's time zone by name, for the dashboard (`reactor.runtime.zone`)."""

from __future__ import annotations

from pathlib import Path

from reactor.runtime.zone import host_time_zone


def test_tz_wins_when_it_names_a_zone(tmp_path: Path) -> None:
    none = tmp_path / "missing"
    assert host_time_zone({"TZ": "Asia/Tokyo"}, none, none) == "Asia/Tokyo"
    assert host_time_zone({"TZ": ":Europe/London"}, none, none) == "Europe/London"
    assert host_time_zone({"TZ": "UTC"}, none, none) == "UTC"


def test_then_what_localtime_links_to_then_etc_timezone(tmp_path: Path) -> None:
    zoneinfo = tmp_path / "usr" / "share" / "zoneinfo" / "America" / "New_York"
    zoneinfo.parent.mkdir(parents=True)
    zoneinfo.write_bytes(b"TZif")
    localtime = tmp_path / "localtime"
    localtime.symlink_to(zoneinfo)
    timezone_file = tmp_path / "timezone"
    timezone_file.write_text("Europe/Berlin\n")
    assert host_time_zone({"TZ": "EST5EDT,M3.2.0"}, localtime, timezone_file) == "America/New_York"
    assert host_time_zone({}, tmp_path / "missing", timezone_file) == "Europe/Berlin"


def test_none_when_nothing_says(tmp_path: Path) -> None:
    plain = tmp_path / "localtime"
    plain.write_bytes(b"TZif")  # a copy, not a link: no name in it
    garbage = tmp_path / "timezone"
    garbage.write_text("not a zone; rm -rf\n")
    assert host_time_zone({}, plain, garbage) is None
