"""Planned maintenance windows: AKS's documented examples, then properties against an independent model.

The model below steps each recurrence forward from its anchor (the module instead tests dates one by one), and
cuts blocked dates out of whole windows, so the two agree only if both read AKS's semantics the same way.
"""

from __future__ import annotations

import calendar
import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remediation.decide.maintenance import (
    DAY_NAMES,
    PREFERENCE,
    WEEK_INDEXES,
    ConfiguredWindow,
    HourSlots,
    MaintenanceSchedule,
    PlannedWindow,
    choose_schedule,
    parse_window_setting,
)
from remediation.errors import ConfigurationError, InvalidInputError

SAMPLES = Path(__file__).resolve().parent / "reference"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def planned(schedule: dict[str, Any], **window: Any) -> MaintenanceSchedule:
    return MaintenanceSchedule.from_properties({"maintenanceWindow": {
        "schedule": schedule, "durationHours": 4, "startTime": "01:00", **window}})


def openings(schedule: MaintenanceSchedule, since: str, until: str) -> list[str]:
    return [start.strftime("%Y-%m-%dT%H:%MZ") for start, _ in schedule.windows(at(since), at(until))]


# ---------------------------------------------------------------------- the official examples


def test_the_list_example_governs_by_its_node_os_schedule_every_five_days() -> None:
    body = sample("aks_MaintenanceConfigurationsList_MaintenanceWindow_2024-09-01.json")["responses"]["200"]["body"]
    name, schedule = choose_schedule({c["name"]: c for c in body["value"]})
    assert name == "aksManagedNodeOSUpgradeSchedule"
    assert schedule.describe() == "every 5 days 13:30 for 10 h (UTC-07:00), from 2023-01-01"
    # 13:30 at -07:00 is 20:30 UTC; a 10 h window crosses midnight in UTC.
    assert list(schedule.windows(at("2023-01-01T00:00Z"), at("2023-01-12T00:00Z"))) == [
        (at("2023-01-01T20:30Z"), at("2023-01-02T06:30Z")), (at("2023-01-06T20:30Z"), at("2023-01-07T06:30Z")),
        (at("2023-01-11T20:30Z"), at("2023-01-12T06:30Z"))]
    assert schedule.window_at(at("2023-01-02T06:29Z")) == (at("2023-01-01T20:30Z"), at("2023-01-02T06:30Z"))
    assert schedule.window_at(at("2023-01-02T06:30Z")) is None
    assert schedule.window_at(at("2023-01-03T21:00Z")) is None  # not a fifth day


def test_the_list_example_auto_upgrade_schedule_is_every_three_months_on_the_fifteenth() -> None:
    body = sample("aks_MaintenanceConfigurationsList_MaintenanceWindow_2024-09-01.json")["responses"]["200"]["body"]
    auto = next(c for c in body["value"] if c["name"] == "aksManagedAutoUpgradeSchedule")
    name, schedule = choose_schedule({"aksManagedAutoUpgradeSchedule": auto})
    assert name == "aksManagedAutoUpgradeSchedule"
    assert openings(schedule, "2023-01-01T00:00Z", "2024-01-01T00:00Z") == [
        "2023-01-15T08:30Z", "2023-04-15T08:30Z", "2023-07-15T08:30Z", "2023-10-15T08:30Z"]
    assert schedule.describe() == ("every 3 months on day 15 08:30 for 5 h (UTC), from 2023-01-01, except 2023-02-18"
                                   " to 2023-02-25, 2023-12-23 to 2024-01-05")


def test_first_monday_every_three_months_skips_the_one_on_a_not_allowed_date() -> None:
    request = sample("aks_MaintenanceConfigurationsCreate_Update_MaintenanceWindow_2024-09-01.json")
    schedule = MaintenanceSchedule.from_properties(request["parameters"]["parameters"]["properties"])
    # 08:30 at +05:30 is 03:00 UTC. 2024-01-01 is a first Monday, but 2023-12-23..2024-01-05 is not allowed.
    assert openings(schedule, "2023-01-01T00:00Z", "2024-06-01T00:00Z") == [
        "2023-01-02T03:00Z", "2023-04-03T03:00Z", "2023-07-03T03:00Z", "2023-10-02T03:00Z", "2024-04-01T03:00Z"]
    assert schedule.next_opening(at("2023-10-02T13:00Z")) == at("2024-04-01T03:00Z")
    assert schedule.describe().startswith("every 3 months on the first Monday 08:30 for 10 h (UTC+05:30)")


def test_the_legacy_default_form_is_hour_slots_in_utc_less_not_allowed_time() -> None:
    body = sample("aks_MaintenanceConfigurationsList_2024-09-01.json")["responses"]["200"]["body"]
    name, schedule = choose_schedule({c["name"]: c for c in body["value"]})
    assert name == "default" and isinstance(schedule, HourSlots)
    # Monday [1, 2]: 01:00-03:00 UTC. Monday 2020-11-30 lies in 2020-11-26T03:00Z..2020-11-30T12:00Z.
    assert list(schedule.windows(at("2020-11-20T00:00Z"), at("2020-12-10T00:00Z"))) == [
        (at("2020-11-23T01:00Z"), at("2020-11-23T03:00Z")), (at("2020-12-07T01:00Z"), at("2020-12-07T03:00Z"))]
    assert schedule.next_opening(at("2020-11-24T00:00Z")) == at("2020-12-07T01:00Z")
    assert schedule.describe() == ("weekly on Monday 01:00 for 2 h (UTC), except 2020-11-26T03:00Z to"
                                   " 2020-11-30T12:00Z")


# ---------------------------------------------------------------------- the docs' own schedules


def test_every_two_weeks_on_friday() -> None:
    schedule = planned({"weekly": {"intervalWeeks": 2, "dayOfWeek": "Friday"}}, startDate="2024-01-03")
    assert openings(schedule, "2024-01-01T00:00Z", "2024-02-10T00:00Z") == [
        "2024-01-05T01:00Z", "2024-01-19T01:00Z", "2024-02-02T01:00Z"]


def test_weeks_count_from_the_sunday_that_starts_the_start_dates_week() -> None:
    # Azure/AKS#5720: every 2 weeks on Sunday from Tuesday 2026-04-14 first opens on 2026-04-26, not 04-19.
    schedule = planned({"weekly": {"intervalWeeks": 2, "dayOfWeek": "Sunday"}}, startDate="2026-04-14")
    assert openings(schedule, "2026-04-01T00:00Z", "2026-05-20T00:00Z") == [
        "2026-04-26T01:00Z", "2026-05-10T01:00Z"]


def test_every_third_friday_at_midnight_in_utc_plus_five_thirty_opens_on_thursday_in_utc() -> None:
    schedule = planned({"weekly": {"intervalWeeks": 3, "dayOfWeek": "Friday"}}, durationHours=8, utcOffset="+05:30",
                       startTime="00:00", startDate="2024-01-01")
    assert schedule.window_at(at("2024-01-04T20:00Z")) == (at("2024-01-04T18:30Z"), at("2024-01-05T02:30Z"))
    assert schedule.next_opening(at("2024-01-05T00:00Z")) == at("2024-01-25T18:30Z")
    assert schedule.describe() == "every 3 weeks on Friday 00:00 for 8 h (UTC+05:30), from 2024-01-01"


def test_a_weekly_schedule_describes_itself() -> None:
    schedule = planned({"weekly": {"intervalWeeks": 1, "dayOfWeek": "Saturday"}}, utcOffset="+05:30")
    assert schedule.describe() == "weekly on Saturday 01:00 for 4 h (UTC+05:30)"


def test_not_allowed_dates_are_local_dates_both_ends_included() -> None:
    # The model's own example: +02:00 and 2022-12-23..2023-01-03 block 2022-12-22 22:00 to 2023-01-03 22:00 UTC.
    schedule = planned({"daily": {"intervalDays": 1}}, startTime="00:00", durationHours=24, utcOffset="+02:00",
                       notAllowedDates=[{"start": "2022-12-23", "end": "2023-01-03"}])
    assert schedule.window_at(at("2022-12-22T21:59Z")) == (at("2022-12-21T22:00Z"), at("2022-12-22T22:00Z"))
    assert schedule.window_at(at("2022-12-22T22:00Z")) is None
    assert schedule.window_at(at("2023-01-03T21:59Z")) is None
    assert schedule.window_at(at("2023-01-03T22:00Z")) == (at("2023-01-03T22:00Z"), at("2023-01-04T22:00Z"))
    assert schedule.next_opening(at("2022-12-23T00:00Z")) == at("2023-01-03T22:00Z")


def test_a_window_that_meets_a_not_allowed_date_is_cut_short_and_its_rest_opens_after_it() -> None:
    schedule = planned({"daily": {"intervalDays": 1}}, startTime="20:00", durationHours=8,
                       notAllowedDates=[{"start": "2024-03-10", "end": "2024-03-10"}])
    assert schedule.window_at(at("2024-03-09T23:00Z")) == (at("2024-03-09T20:00Z"), at("2024-03-10T00:00Z"))
    assert schedule.next_opening(at("2024-03-10T00:00Z")) == at("2024-03-11T00:00Z")
    assert schedule.window_at(at("2024-03-11T01:00Z")) == (at("2024-03-11T00:00Z"), at("2024-03-11T04:00Z"))


def test_nothing_opens_before_the_start_date() -> None:
    schedule = planned({"daily": {"intervalDays": 1}}, startDate="2030-06-01")
    assert schedule.window_at(at("2030-05-31T02:00Z")) is None
    assert schedule.next_opening(at("2030-01-01T00:00Z")) == at("2030-06-01T01:00Z")
    assert schedule.next_opening(at("2028-01-01T00:00Z")) is None  # beyond the 400-day horizon


def test_a_month_without_the_day_of_month_has_no_window() -> None:
    schedule = planned({"absoluteMonthly": {"intervalMonths": 1, "dayOfMonth": 31}}, startDate="2024-01-01")
    assert openings(schedule, "2024-01-01T00:00Z", "2024-08-01T00:00Z") == [
        "2024-01-31T01:00Z", "2024-03-31T01:00Z", "2024-05-31T01:00Z", "2024-07-31T01:00Z"]


def test_the_fourth_monday_of_a_four_monday_month_is_also_the_last() -> None:
    # February 2021: Mondays 1, 8, 15, 22. March 2021: 1, 8, 15, 22, 29.
    fourth = planned({"relativeMonthly": {"intervalMonths": 1, "weekIndex": "Fourth", "dayOfWeek": "Monday"}})
    last = planned({"relativeMonthly": {"intervalMonths": 1, "weekIndex": "Last", "dayOfWeek": "Monday"}})
    assert openings(fourth, "2021-02-01T00:00Z", "2021-04-01T00:00Z") == ["2021-02-22T01:00Z", "2021-03-22T01:00Z"]
    assert openings(last, "2021-02-01T00:00Z", "2021-04-01T00:00Z") == ["2021-02-22T01:00Z", "2021-03-29T01:00Z"]


def test_a_fixed_offset_ignores_daylight_saving() -> None:
    schedule = planned({"weekly": {"intervalWeeks": 1, "dayOfWeek": "Sunday"}}, utcOffset="+01:00")
    assert schedule.next_opening(at("2024-01-01T00:00Z")) == at("2024-01-07T00:00Z")
    assert schedule.next_opening(at("2024-07-01T00:00Z")) == at("2024-07-07T00:00Z")  # not 23:00 on Saturday


def test_a_daily_24_hour_window_is_always_open() -> None:
    schedule = planned({"daily": {"intervalDays": 1}}, durationHours=24)
    moment = at("2025-05-05T00:59Z")
    assert schedule.window_at(moment) == (at("2025-05-04T01:00Z"), at("2025-05-05T01:00Z"))
    assert schedule.window_at(at("2025-05-05T01:00Z")) == (at("2025-05-05T01:00Z"), at("2025-05-06T01:00Z"))


def test_legacy_slots_merge_across_midnight_and_the_weeks_end() -> None:
    schedule = MaintenanceSchedule.from_properties({"timeInWeek": [{"day": "Sunday", "hourSlots": [22, 23]},
                                                                   {"day": "Monday", "hourSlots": [0]},
                                                                   {"day": "Wednesday", "hourSlots": [5, 3]}]})
    assert schedule.window_at(at("2024-01-08T00:30Z")) == (at("2024-01-07T22:00Z"), at("2024-01-08T01:00Z"))
    assert schedule.describe() == ("weekly on Wednesday 03:00 for 1 h and Wednesday 05:00 for 1 h and Sunday 22:00"
                                   " for 3 h (UTC)")
    assert [w for w in schedule.windows(at("2024-01-10T00:00Z"), at("2024-01-11T00:00Z"))] == [
        (at("2024-01-10T03:00Z"), at("2024-01-10T04:00Z")), (at("2024-01-10T05:00Z"), at("2024-01-10T06:00Z"))]


def test_a_configuration_with_both_forms_follows_its_maintenance_window() -> None:
    schedule = MaintenanceSchedule.from_properties({
        "timeInWeek": [{"day": "Monday", "hourSlots": [1]}],
        "maintenanceWindow": {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Tuesday"}},
                              "durationHours": 4, "startTime": "02:00", "utcOffset": "+00:00"}})
    assert isinstance(schedule, PlannedWindow) and schedule.day_of_week == DAY_NAMES.index("Tuesday")


def test_moments_must_be_aware() -> None:
    schedule = planned({"daily": {"intervalDays": 1}})
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.window_at(datetime(2024, 1, 1, 2))


# ---------------------------------------------------------------------- choosing the configuration


NODE_OS = {"maintenanceWindow": {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Monday"}},
                                 "durationHours": 4, "startTime": "03:00"}}
DEFAULT = {"timeInWeek": [{"day": "Tuesday", "hourSlots": [1, 2, 3, 4]}]}
AUTO = {"maintenanceWindow": {"schedule": {"absoluteMonthly": {"intervalMonths": 1, "dayOfMonth": 1}},
                              "durationHours": 8, "startTime": "00:00"}}


def test_node_os_then_default_then_auto_upgrade() -> None:
    assert PREFERENCE == ("aksManagedNodeOSUpgradeSchedule", "default", "aksManagedAutoUpgradeSchedule")
    every = {"aksManagedAutoUpgradeSchedule": AUTO, "default": DEFAULT, "aksManagedNodeOSUpgradeSchedule": NODE_OS}
    assert choose_schedule(every)[0] == "aksManagedNodeOSUpgradeSchedule"
    assert choose_schedule({k: v for k, v in every.items() if k != "aksManagedNodeOSUpgradeSchedule"})[0] == "default"
    assert choose_schedule({"aksManagedAutoUpgradeSchedule": AUTO})[0] == "aksManagedAutoUpgradeSchedule"
    assert choose_schedule({"AKSMANAGEDNODEOSUPGRADESCHEDULE": NODE_OS})[0] == "AKSMANAGEDNODEOSUPGRADESCHEDULE"
    assert choose_schedule({}) is None
    assert choose_schedule({"somethingElse": NODE_OS}) is None


def test_a_malformed_preferred_configuration_is_refused_not_skipped() -> None:
    broken = {"maintenanceWindow": {"schedule": {}, "durationHours": 4, "startTime": "03:00"}}
    with pytest.raises(InvalidInputError, match="^aksManagedNodeOSUpgradeSchedule: .*exactly one of"):
        choose_schedule({"aksManagedNodeOSUpgradeSchedule": broken, "default": DEFAULT})


def test_without_a_start_date_intervals_count_from_the_configurations_creation() -> None:
    window = {"schedule": {"weekly": {"intervalWeeks": 2, "dayOfWeek": "Sunday"}}, "durationHours": 4,
              "startTime": "01:00"}
    resource = {"name": "default", "properties": {"maintenanceWindow": window},
                "systemData": {"createdAt": "2026-04-14T17:18:19.1234567Z"}}
    _, schedule = choose_schedule({"default": resource})
    assert schedule.next_opening(at("2026-04-01T00:00Z")) == at("2026-04-26T01:00Z")
    with pytest.raises(InvalidInputError, match="no startDate to count its intervalWeeks of 2 from"):
        choose_schedule({"default": {"maintenanceWindow": window}})
    weekly = {**window, "schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Sunday"}}}
    assert choose_schedule({"default": {"maintenanceWindow": weekly}}) is not None  # every week needs no anchor


@pytest.mark.parametrize(("properties", "message"), [
    ({}, "neither maintenanceWindow nor timeInWeek"),
    ({"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 1}, "weekly": {"intervalWeeks": 1}},
                            "durationHours": 4, "startTime": "01:00"}}, "exactly one of"),
    ({"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 0}}, "durationHours": 4, "startTime": "01:00"}},
     "intervalDays must be a whole number"),
    ({"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 25, "startTime": "01:00"}},
     "durationHours"),
    ({"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4, "startTime": "24:00"}},
     "startTime"),
    ({"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4, "startTime": "01:00",
                            "utcOffset": "+5:30"}}, "utcOffset"),
    ({"maintenanceWindow": {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Caturday"}},
                            "durationHours": 4, "startTime": "01:00"}}, "dayOfWeek"),
    ({"maintenanceWindow": {"schedule": {"relativeMonthly": {"intervalMonths": 1, "dayOfWeek": "Monday",
                                                             "weekIndex": "Fifth"}},
                            "durationHours": 4, "startTime": "01:00"}}, "weekIndex"),
    ({"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4, "startTime": "01:00",
                            "notAllowedDates": [{"start": "2024-02-02", "end": "2024-02-01"}]}}, "ends before"),
    ({"maintenanceWindow": {"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4, "startTime": "01:00",
                            "startDate": "01/02/2024"}}, "startDate must be a date"),
    ({"timeInWeek": [{"day": "Monday", "hourSlots": [24]}]}, "hourSlots"),
    ({"timeInWeek": [{"day": "Monday", "hourSlots": [1]}], "notAllowedTime": [{"start": "soon", "end": "later"}]},
     "notAllowedTime"),
])
def test_malformed_configurations_are_refused_naming_the_field(properties: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        MaintenanceSchedule.from_properties(properties)


# ---------------------------------------------------------------------- the operators' window


def test_the_setting_examples() -> None:
    weekend = parse_window_setting("Sat,Sun 01:00-05:00")
    assert weekend == ConfiguredWindow(days=frozenset({5, 6}), start_time=time(1), duration=timedelta(hours=4))
    assert weekend.describe() == "Sat,Sun 01:00-05:00 +00:00"
    nights = parse_window_setting("Mon-Fri 22:00-02:00 +01:00")
    # Friday 22:00 at +01:00 runs to Saturday 02:00; Saturday 22:00 does not open.
    assert nights.window_at(at("2024-01-06T00:30Z")) == (at("2024-01-05T21:00Z"), at("2024-01-06T01:00Z"))
    assert nights.window_at(at("2024-01-06T21:30Z")) is None
    assert nights.window_at(at("2024-07-06T00:30Z")) == (at("2024-07-05T21:00Z"), at("2024-07-06T01:00Z"))  # no DST
    assert nights.describe() == "Mon-Fri 22:00-02:00 +01:00"
    daily = parse_window_setting("daily 03:00-04:00")
    assert daily.next_opening(at("2024-01-01T03:30Z")) == at("2024-01-02T03:00Z")
    assert daily.describe() == "daily 03:00-04:00 +00:00"


def test_the_setting_takes_full_names_any_case_and_ranges_round_the_week() -> None:
    assert parse_window_setting("  friday-MON 23:30-00:15 -05:30 ") == ConfiguredWindow(
        days=frozenset({4, 5, 6, 0}), start_time=time(23, 30), duration=timedelta(minutes=45),
        utc_offset=-timedelta(hours=5, minutes=30))
    assert parse_window_setting("") is None and parse_window_setting("   ") is None


@pytest.mark.parametrize("text", [
    "Sat", "01:00-05:00", "Sat 01:00", "Sat 01:00-05:00 +01:00 extra", "Sat 1:00-05:00", "Sat 01:00-24:00",
    "Sat 01:00-01:00", "Someday 01:00-05:00", "Sat,,Sun 01:00-05:00", "Sat 01:00-05:00 UTC", "Sat 01:00-05:00 +1",
    "Sat-Funday 01:00-05:00", "weekly 01:00-05:00"])
def test_a_malformed_setting_says_the_format(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"REMEDIATOR_ROTATION_WINDOW must be '<days> HH:MM-HH:MM") as err:
        parse_window_setting(text)
    assert err.value.code == "InvalidConfiguration" and repr(text) in str(err.value)


# ---------------------------------------------------------------------- properties, against a model of AKS

HORIZON = timedelta(days=400)
moments = st.datetimes(min_value=datetime(2021, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
offsets = st.builds(lambda sign, hours, minutes: f"{sign}{hours:02d}:{minutes:02d}", st.sampled_from("+-"),
                    st.integers(0, 14), st.sampled_from([0, 30, 45]))


@st.composite
def cases(draw: st.DrawFn, kinds: tuple[str, ...] = ("daily", "weekly", "absoluteMonthly", "relativeMonthly"),
          least_interval: int = 1) -> tuple[dict[str, Any], datetime]:
    """A maintenanceWindow as ARM would return it, within ARM's ranges, and a moment to ask about. Its start date and
    not-allowed dates lie near the moment, and the moment often near one of its windows (edges included), so that
    anchors, blocked dates and window edges all matter."""
    moment = draw(moments)
    near = st.integers(-60, 60).map(lambda n: moment.date() + timedelta(days=n))
    day = st.sampled_from(DAY_NAMES)
    kind, low = draw(st.sampled_from(kinds)), least_interval
    schedule = draw({
        "daily": st.builds(lambda n: {"daily": {"intervalDays": n}}, st.integers(low, 7)),
        "weekly": st.builds(lambda n, d: {"weekly": {"intervalWeeks": n, "dayOfWeek": d}}, st.integers(low, 4), day),
        "absoluteMonthly": st.builds(lambda n, d: {"absoluteMonthly": {"intervalMonths": n, "dayOfMonth": d}},
                                     st.integers(low, 6), st.integers(1, 31)),
        "relativeMonthly": st.builds(
            lambda n, i, d: {"relativeMonthly": {"intervalMonths": n, "weekIndex": i, "dayOfWeek": d}},
            st.integers(low, 6), st.sampled_from(WEEK_INDEXES), day)}[kind])
    window: dict[str, Any] = {"schedule": schedule, "durationHours": draw(st.integers(4, 24)),
                              "startTime": f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"}
    if draw(st.booleans()):
        window["utcOffset"] = draw(offsets)
    interval = next(iter(next(iter(schedule.values())).values()))
    if interval > 1 or draw(st.booleans()):
        window["startDate"] = draw(st.one_of(near, st.integers(-400, 0).map(
            lambda n: moment.date() + timedelta(days=n)))).isoformat()
    spans = draw(st.lists(st.tuples(near, st.integers(0, 20)), max_size=3))
    if spans:
        window["notAllowedDates"] = [{"start": a.isoformat(), "end": (a + timedelta(days=n)).isoformat()}
                                     for a, n in spans]
    if draw(st.booleans()):
        starts = model_starts(window, moment + timedelta(days=200))[-8:]
        if starts:
            minutes = window["durationHours"] * 60
            moment = draw(st.sampled_from(starts)) + timedelta(minutes=draw(st.one_of(
                st.sampled_from([0, -1, minutes - 1, minutes]), st.integers(-60, minutes + 60))))
    return window, moment


def model_zone(window: dict[str, Any]) -> timezone:
    text = window.get("utcOffset", "+00:00")
    size = timedelta(hours=int(text[1:3]), minutes=int(text[4:6]))
    return timezone(-size if text[0] == "-" else size)


def model_starts(window: dict[str, Any], until: datetime) -> list[datetime]:
    """Every window start before `until`, stepped forward from the anchor."""
    (kind, rule), = window["schedule"].items()
    zone, clock = model_zone(window), time.fromisoformat(window["startTime"])
    last = until.astimezone(zone).date()
    # Without a start date the interval is 1: any anchor before the dates asked about will do.
    anchor = date.fromisoformat(window["startDate"]) if "startDate" in window else last - timedelta(days=800)
    found: list[date] = []
    if kind == "daily":
        found = [anchor + timedelta(days=k) for k in range(0, (last - anchor).days + 1, rule["intervalDays"])]
    elif kind == "weekly":
        sunday = anchor - timedelta(days=(anchor.weekday() + 1) % 7)
        first = sunday + timedelta(days=(DAY_NAMES.index(rule["dayOfWeek"]) + 1) % 7)
        found = [first + timedelta(weeks=k) for k in range(0, (last - first).days // 7 + 1, rule["intervalWeeks"])]
    else:
        year, month = anchor.year, anchor.month
        while date(year, month, 1) <= last:
            if kind == "absoluteMonthly":
                if rule["dayOfMonth"] <= calendar.monthrange(year, month)[1]:
                    found.append(date(year, month, rule["dayOfMonth"]))
            else:
                weekday = DAY_NAMES.index(rule["dayOfWeek"])
                days = [week[weekday] for week in calendar.monthcalendar(year, month) if week[weekday]]
                found.append(date(year, month, days[-1 if rule["weekIndex"] == "Last"
                                                     else WEEK_INDEXES.index(rule["weekIndex"])]))
            month += rule["intervalMonths"]
            year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    starts = [datetime.combine(d, clock, zone).astimezone(UTC) for d in found if d >= anchor]
    return [s for s in starts if s < until]


def model_blocked(window: dict[str, Any]) -> list[tuple[datetime, datetime]]:
    zone = model_zone(window)
    return [(datetime.combine(date.fromisoformat(span["start"]), time(), zone).astimezone(UTC),
             datetime.combine(date.fromisoformat(span["end"]) + timedelta(days=1), time(), zone).astimezone(UTC))
            for span in window.get("notAllowedDates", ())]


def model_pieces(window: dict[str, Any], since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """The open parts of every window overlapping [since, until): cut at every blocked boundary inside, and kept
    where not blocked (next to a cut, one side is always blocked, so the parts need no joining)."""
    hours, blocked = timedelta(hours=window["durationHours"]), model_blocked(window)
    pieces = []
    for start in model_starts(window, until):
        end = start + hours
        if end <= since:
            continue
        cuts = sorted({start, end} | {t for span in blocked for t in span if start < t < end})
        for a, b in zip(cuts, cuts[1:], strict=False):
            if not any(x <= a < y for x, y in blocked):
                pieces.append((a, b))
    return pieces


@settings(max_examples=100, deadline=None)
@given(cases())
def test_a_window_is_open_exactly_where_the_model_has_one(case: tuple[dict[str, Any], datetime]) -> None:
    window, moment = case
    schedule = MaintenanceSchedule.from_properties({"maintenanceWindow": window})
    pieces = model_pieces(window, moment - timedelta(days=2), moment + timedelta(days=1))
    expected = next(((a, b) for a, b in pieces if a <= moment < b), None)
    assert schedule.window_at(moment) == expected


@settings(max_examples=80, deadline=None)
@given(cases())
def test_the_next_opening_is_the_first_window_start_at_or_after_a_moment(case: tuple[dict[str, Any], datetime]) -> None:
    assert_next_opening_as_modelled(*case)


@settings(max_examples=40, deadline=None)
@given(cases(kinds=("weekly",), least_interval=2))
def test_weeks_of_a_weekly_interval_start_on_sunday(case: tuple[dict[str, Any], datetime]) -> None:
    assert_next_opening_as_modelled(*case)


def assert_next_opening_as_modelled(window: dict[str, Any], moment: datetime) -> None:
    schedule = MaintenanceSchedule.from_properties({"maintenanceWindow": window})
    opening = schedule.next_opening(moment)
    starts = [a for a, _ in model_pieces(window, moment, moment + HORIZON) if moment <= a < moment + HORIZON]
    assert opening == min(starts, default=None)
    if opening is not None:
        assert opening >= moment and schedule.window_at(opening)[0] == opening


@settings(max_examples=80, deadline=None)
@given(cases())
def test_windows_avoid_not_allowed_dates_and_last_their_duration(case: tuple[dict[str, Any], datetime]) -> None:
    window, moment = case
    schedule = MaintenanceSchedule.from_properties({"maintenanceWindow": window})
    blocked, zone = model_blocked(window), model_zone(window)
    hours = timedelta(hours=window["durationHours"])
    for start, end in schedule.windows(moment, moment + timedelta(days=90)):
        assert not any(a < end and start < b for a, b in blocked)
        not_allowed = [(date.fromisoformat(s["start"]), date.fromisoformat(s["end"]))
                       for s in window.get("notAllowedDates", ())]
        for local in (start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date()):
            assert not any(a <= local <= b for a, b in not_allowed)
        assert timedelta(0) < end - start <= hours
        if start not in {b for _, b in blocked} and end not in {a for a, _ in blocked}:
            assert end - start == hours
            assert start.astimezone(zone).strftime("%H:%M") == window["startTime"]


@st.composite
def setting_texts(draw: st.DrawFn) -> str:
    names = [draw(st.sampled_from([d[:3], d, d.lower(), d[:3].upper()])) for d in DAY_NAMES]
    parts = draw(st.lists(st.one_of(st.integers(0, 6).map(lambda d: names[d]),
                                    st.tuples(st.integers(0, 6), st.integers(0, 6)).map(
                                        lambda r: f"{names[r[0]]}-{names[r[1]]}")), min_size=1, max_size=4))
    days = draw(st.sampled_from(["daily", "DAILY"])) if draw(st.integers(0, 9)) == 0 else ",".join(parts)
    start, length = draw(st.integers(0, 24 * 60 - 1)), draw(st.integers(1, 24 * 60 - 1))
    end = (start + length) % (24 * 60)
    text = f"{days} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    return text + (f" {draw(offsets)}" if draw(st.booleans()) else "")


@settings(max_examples=80, deadline=None)
@given(setting_texts(), moments)
def test_a_setting_reads_back_from_its_description_and_opens_on_its_days(text: str, moment: datetime) -> None:
    schedule = parse_window_setting(text)
    assert parse_window_setting(schedule.describe()) == schedule
    assert parse_window_setting(schedule.describe()).describe() == schedule.describe()
    zone = timezone(schedule.utc_offset)
    for start, end in schedule.windows(moment, moment + timedelta(days=8)):
        local = start.astimezone(zone)
        assert local.weekday() in schedule.days and local.time() == schedule.start_time
        assert end - start == schedule.duration
    found = schedule.window_at(moment)
    local = moment.astimezone(zone)
    began = [datetime.combine(local.date() - timedelta(days=back), schedule.start_time, zone) for back in (0, 1)]
    expected = next(((b.astimezone(UTC), (b + schedule.duration).astimezone(UTC)) for b in began
                     if b.weekday() in schedule.days and b <= moment < b + schedule.duration), None)
    assert found == expected


slots = st.frozensets(st.tuples(st.integers(0, 6), st.integers(0, 23)), max_size=60)


@settings(max_examples=100, deadline=None)
@given(slots, st.lists(st.tuples(moments, st.integers(1, 72 * 60)), max_size=2), moments)
def test_legacy_slots_are_open_in_exactly_their_utc_hours(hours: frozenset[tuple[int, int]],
                                                          spans: list[tuple[datetime, int]], moment: datetime) -> None:
    properties = {"timeInWeek": [{"day": DAY_NAMES[day], "hourSlots": sorted(h for d, h in hours if d == day)}
                                 for day in sorted({d for d, _ in hours})],
                  "notAllowedTime": [{"start": a.isoformat(), "end": (a + timedelta(minutes=n)).isoformat()}
                                     for a, n in spans]}
    schedule = MaintenanceSchedule.from_properties(properties)
    blocked = [(a, a + timedelta(minutes=n)) for a, n in spans]
    is_open = (moment.weekday(), moment.hour) in hours and not any(a <= moment < b for a, b in blocked)
    found = schedule.window_at(moment)
    assert (found is not None) == is_open
    if found:
        start, end = found
        hour = timedelta(hours=1)
        # As long as it can be: a slot-less hour or a blocked span on each side.
        before, after = start - hour, end
        assert (before.weekday(), before.hour) not in hours or any(b == start for _, b in blocked)
        assert (after.weekday(), after.hour) not in hours or any(a == end for a, _ in blocked)
        opening = schedule.next_opening(end)
        assert opening is None or opening > start
