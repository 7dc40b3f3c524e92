"""Planned maintenance: the windows in which a rotation may start resetting a cluster.

A proactive rotation resets the cluster's service principal, which re-images its nodes as a node OS upgrade does,
so it may only start inside the cluster's AKS planned maintenance window or, for a cluster without one, inside the
window the operators configure (REMEDIATOR_ROTATION_WINDOW). This module is pure: it parses AKS's maintenance
configurations (the REST JSON of api-version 2023-05-01 and later, or the SDK's models, which are Mappings of the
same camelCase keys) and that setting into `MaintenanceSchedule`s, which say whether a window is open at a moment
and when the next one opens.

AKS's semantics (learn.microsoft.com/azure/aks/planned-maintenance, and the MaintenanceWindow model of
azure-rest-api-specs, Microsoft.ContainerService/aks/stable/2024-09-01), and what is chosen where they are silent:

- `startTime` at the fixed `utcOffset` (default +00:00; no daylight saving) starts a window of `durationHours`.
- `startDate`: no window opens on an earlier date, and the intervals count from it. AKS stores the date of
  creation when none is given; a configuration read without one anchors at its systemData.createdAt, and an
  interval of 1 needs no anchor at all.
  - daily: every `intervalDays` days from startDate.
  - weekly: every `intervalWeeks` calendar weeks, weeks starting on Sunday, counted from the week holding startDate,
    whose `dayOfWeek` is skipped when it falls before startDate. Not documented: it reproduces what AKS support
    describes in Azure/AKS#5720 (every 2 weeks on Sunday from Tuesday 2026-04-14 first opens on 2026-04-26).
  - absoluteMonthly, relativeMonthly: every `intervalMonths` months from the month holding startDate. A month
    without `dayOfMonth` (the 31st in April) has no window (assumed, as RFC 5545 does; AKS does not say).
    `weekIndex` First..Fourth is the n-th such weekday of the month, Last its last.
- `notAllowedDates`: local dates at `utcOffset`, both ends included, so [start 00:00, end + 1 day 00:00) (the
  model's own example: +02:00 and 2022-12-23..2023-01-03 block 2022-12-22 22:00 to 2023-01-03 22:00 UTC).
- The legacy `default` form: `timeInWeek` hour slots in UTC (slot h is h:00 to h+1:00; consecutive slots make one
  window, across midnight and the week's end too) and `notAllowedTime` spans of instants, [start, end).
  When a configuration holds both forms, `maintenanceWindow` wins: AKS migrates the legacy form to it.
- A window that meets a blocked span is cut short, never moved: AKS blocks maintenance "from ... to ...".
- AKS starts work only inside a window and lets it run past the window's end; the remediator does the same:
  `window_at` answers whether a reset may *start* at a moment.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import cached_property
from typing import Any

from remediation.errors import ConfigurationError, InvalidInputError

Window = tuple[datetime, datetime]  # [start, end), aware, UTC

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # date.weekday() order
WEEK_INDEXES = ("First", "Second", "Third", "Fourth", "Last")
SCHEDULE_KINDS = ("daily", "weekly", "absoluteMonthly", "relativeMonthly")
# The configurations that may govern a rotation, in the order choose_schedule prefers them.
PREFERENCE = ("aksManagedNodeOSUpgradeSchedule", "default", "aksManagedAutoUpgradeSchedule")
SETTING = "REMEDIATOR_ROTATION_WINDOW"
DEFAULT_HORIZON = timedelta(days=400)  # longer than a year, so a yearly freeze cannot hide every window

_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_FRACTION = re.compile(r"(\.\d{6})\d+")  # ARM writes 7 fractional digits; fromisoformat reads 6


@dataclass(frozen=True)
class MaintenanceSchedule:
    """When maintenance may start: recurring windows less blocked spans. Moments given must be aware; those
    returned are UTC. Build one with `from_properties` (an AKS maintenance configuration) or
    `parse_window_setting` (the operators' window)."""

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any], *, created: date | None = None) -> MaintenanceSchedule:
        """The schedule of one AKS maintenance configuration's `properties`, as ARM returns them.

        `created`: the configuration's creation date (systemData.createdAt), the anchor of its intervals when it
        has no startDate. Raises InvalidInputError, naming the field, for anything AKS would not have stored."""
        if not isinstance(properties, Mapping):
            raise InvalidInputError("maintenance configuration: properties must be an object")
        if properties.get("maintenanceWindow") is not None:
            return _planned_window(properties["maintenanceWindow"], created)
        if properties.get("timeInWeek") is not None:
            return _hour_slots(properties["timeInWeek"], properties.get("notAllowedTime"))
        raise InvalidInputError("maintenance configuration: properties hold neither maintenanceWindow nor timeInWeek")

    # ------------------------------------------------------------------ what every schedule answers

    def window_at(self, moment: datetime) -> Window | None:
        """The open window holding `moment`, [start, end) in UTC, or None when no window is open then."""
        moment = _utc(moment)
        return next((w for w in self.windows(moment, moment + _TICK) if w[0] <= moment < w[1]), None)

    def next_opening(self, after: datetime, *, horizon: timedelta = DEFAULT_HORIZON) -> datetime | None:
        """The start of the first window that opens at or after `after` and before `after + horizon`, or None.

        A window already open at `after` (opened before it) does not count: ask `window_at` first. The start of the
        part of a window left after a blocked span ends counts as an opening."""
        after = _utc(after)
        return next((start for start, _ in self.windows(after, after + horizon) if start >= after), None)

    def windows(self, since: datetime, until: datetime) -> Iterator[Window]:
        """The open windows that overlap [since, until), earliest first, each cut short by any blocked span."""
        since, until = _utc(since), _utc(until)
        day = (since - self._longest).astimezone(self._zone).date()
        last = until.astimezone(self._zone).date()
        while day <= last:
            for occurrence in self._occurrences_on(day):
                for start, end in _less(occurrence, self._blocked):
                    if start < until and end > since:
                        yield start, end
            day += _DAY

    def describe(self) -> str:
        """The schedule in words, for reports and logs."""
        raise NotImplementedError

    # ------------------------------------------------------------------ what each kind of schedule defines

    @property
    def _zone(self) -> timezone:
        """The zone whose local dates `_occurrences_on` takes."""
        return UTC

    @property
    def _longest(self) -> timedelta:
        """The longest window: how far back a window holding a moment may have started."""
        raise NotImplementedError

    @property
    def _blocked(self) -> tuple[Window, ...]:
        """Spans in which no window is open, sorted and merged."""
        return ()

    def _occurrences_on(self, day: date) -> Iterable[Window]:
        """The whole windows (before blocking) that start on `day`, a local date of `_zone`, in order."""
        raise NotImplementedError


@dataclass(frozen=True)
class PlannedWindow(MaintenanceSchedule):
    """AKS's `maintenanceWindow` (aksManagedNodeOSUpgradeSchedule, aksManagedAutoUpgradeSchedule, and `default`
    since 2023-05-01): one recurrence, with a start time and a duration at a fixed UTC offset."""

    kind: str  # one of SCHEDULE_KINDS
    interval: int  # intervalDays, intervalWeeks or intervalMonths
    start_time: time
    duration_hours: int
    utc_offset: timedelta = timedelta(0)
    start_date: date | None = None  # needed when interval > 1: it anchors the intervals
    day_of_week: int | None = None  # weekly and relativeMonthly: 0 Monday .. 6 Sunday
    day_of_month: int | None = None  # absoluteMonthly: 1-31
    week_index: str | None = None  # relativeMonthly: one of WEEK_INDEXES
    not_allowed_dates: tuple[tuple[date, date], ...] = ()  # local dates, both ends included

    def describe(self) -> str:
        n, every = self.interval, {"daily": "day", "weekly": "week"}.get(self.kind, "month")
        when = ("daily" if every == "day" else f"{every}ly") if n == 1 else f"every {n} {every}s"
        if self.kind in ("weekly", "relativeMonthly"):
            index = f"the {self.week_index.lower()} " if self.kind == "relativeMonthly" and self.week_index else ""
            when += f" on {index}{DAY_NAMES[self.day_of_week or 0]}"
        elif self.kind == "absoluteMonthly":
            when += f" on day {self.day_of_month}"
        text = f"{when} {self.start_time:%H:%M} for {self.duration_hours} h ({_zone_name(self.utc_offset)})"
        if self.start_date:
            text += f", from {self.start_date}"
        if self.not_allowed_dates:
            text += ", except " + ", ".join(str(a) if a == b else f"{a} to {b}" for a, b in self.not_allowed_dates)
        return text

    @property
    def _zone(self) -> timezone:
        return timezone(self.utc_offset)

    @property
    def _longest(self) -> timedelta:
        return timedelta(hours=self.duration_hours)

    @cached_property
    def _blocked(self) -> tuple[Window, ...]:
        zone = self._zone
        return _merged((datetime.combine(a, time(), zone).astimezone(UTC),
                        datetime.combine(b + _DAY, time(), zone).astimezone(UTC)) for a, b in self.not_allowed_dates)

    def _occurrences_on(self, day: date) -> Iterable[Window]:
        if (self.start_date is None or day >= self.start_date) and self._recurs_on(day):
            start = datetime.combine(day, self.start_time, self._zone).astimezone(UTC)
            yield start, start + timedelta(hours=self.duration_hours)

    def _recurs_on(self, day: date) -> bool:
        anchor, n = self.start_date, self.interval
        if self.kind == "daily":
            return n == 1 or anchor is not None and (day - anchor).days % n == 0
        if self.kind == "weekly":
            return day.weekday() == self.day_of_week and (
                n == 1 or anchor is not None and (_sunday_of(day) - _sunday_of(anchor)).days // 7 % n == 0)
        in_month = n == 1 or anchor is not None and (
            (day.year - anchor.year) * 12 + day.month - anchor.month) % n == 0
        if self.kind == "absoluteMonthly":
            return in_month and day.day == self.day_of_month
        return in_month and day.weekday() == self.day_of_week and _is_week_index(day, self.week_index)


@dataclass(frozen=True)
class HourSlots(MaintenanceSchedule):
    """AKS's legacy `default` form: hour slots on days of the week, in UTC, less `notAllowedTime` spans."""

    slots: frozenset[tuple[int, int]]  # (weekday 0 Monday .. 6 Sunday, hour 0-23), each the hour from h:00
    not_allowed_time: tuple[Window, ...] = ()  # [start, end), UTC

    def describe(self) -> str:
        runs = [f"{DAY_NAMES[day]} {hour:02d}:00 for {length} h"
                for day in range(7) for hour, length in self._runs.get(day, ())]
        text = ("weekly on " + " and ".join(runs) + " (UTC)") if runs else "never (no hour slots)"
        if self.not_allowed_time:
            text += ", except " + ", ".join(f"{_instant_text(a)} to {_instant_text(b)}"
                                            for a, b in self.not_allowed_time)
        return text

    @cached_property
    def _runs(self) -> dict[int, list[tuple[int, int]]]:
        """weekday -> [(start hour, length in hours)]: consecutive slots merged, across days and the week's end."""
        hours = {day * 24 + hour for day, hour in self.slots}
        if len(hours) == 7 * 24:
            return {0: [(0, 7 * 24)]}
        runs: dict[int, list[tuple[int, int]]] = {}
        for first in sorted(h for h in hours if (h - 1) % (7 * 24) not in hours):
            length = 1
            while (first + length) % (7 * 24) in hours:
                length += 1
            runs.setdefault(first // 24, []).append((first % 24, length))
        return runs

    @property
    def _longest(self) -> timedelta:
        return timedelta(hours=max((length for runs in self._runs.values() for _, length in runs), default=0))

    @cached_property
    def _blocked(self) -> tuple[Window, ...]:
        return _merged(self.not_allowed_time)

    def _occurrences_on(self, day: date) -> Iterable[Window]:
        for hour, length in self._runs.get(day.weekday(), ()):
            start = datetime.combine(day, time(hour), UTC)
            yield start, start + timedelta(hours=length)


@dataclass(frozen=True)
class ConfiguredWindow(MaintenanceSchedule):
    """The operators' window (REMEDIATOR_ROTATION_WINDOW): from a start time for a duration, on some days of the
    week (the days it starts on), at a fixed UTC offset. `describe()` gives the setting's text back."""

    days: frozenset[int]  # 0 Monday .. 6 Sunday
    start_time: time
    duration: timedelta  # under 24 h
    utc_offset: timedelta = timedelta(0)

    def describe(self) -> str:
        end = (datetime.combine(date.min, self.start_time) + self.duration).time()
        return f"{_days_text(self.days)} {self.start_time:%H:%M}-{end:%H:%M} {_offset_text(self.utc_offset)}"

    @property
    def _zone(self) -> timezone:
        return timezone(self.utc_offset)

    @property
    def _longest(self) -> timedelta:
        return self.duration

    def _occurrences_on(self, day: date) -> Iterable[Window]:
        if day.weekday() in self.days:
            start = datetime.combine(day, self.start_time, self._zone).astimezone(UTC)
            yield start, start + self.duration


# ---------------------------------------------------------------------- choosing a cluster's schedule


def choose_schedule(configurations: Mapping[str, Mapping[str, Any]]) -> tuple[str, MaintenanceSchedule] | None:
    """The configuration that governs when a reset may disrupt the cluster's nodes, by name, with its schedule;
    None when the cluster has none of them (the operators' window applies then).

    `configurations`: the cluster's maintenance configurations by name, each the resource as ARM lists it
    (`{"name", "properties", "systemData"?}`) or its `properties` alone. Names are matched case-insensitively.

    Preferred, in order (PREFERENCE):
    1. aksManagedNodeOSUpgradeSchedule: when the owners let AKS re-image the nodes for node OS upgrades, the very
       disruption a reset causes.
    2. default: the owners' window for AKS's weekly releases; AKS honours it only when it recurs weekly or more
       often (Azure/AKS#5050), so it opens often enough for a rotation to finish before the secret expires.
    3. aksManagedAutoUpgradeSchedule: when Kubernetes upgrades may surge and drain the nodes; often monthly or
       rarer, so it comes last.
    The first one present decides, even when it is malformed (InvalidInputError, naming it): falling back to
    another would follow a window the owners did not set for this.
    """
    by_name = {name.lower(): (name, body) for name, body in configurations.items()}
    for wanted in PREFERENCE:
        if wanted.lower() not in by_name:
            continue
        name, body = by_name[wanted.lower()]
        try:
            properties, created = _properties_of(body)
            return name, MaintenanceSchedule.from_properties(properties, created=created)
        except InvalidInputError as err:
            raise InvalidInputError(f"{name}: {err}") from err
    return None


def _properties_of(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], date | None]:
    if not isinstance(body, Mapping):
        raise InvalidInputError("maintenance configuration: expected an object")
    if not isinstance(body.get("properties"), Mapping):
        return body, None
    created = (body.get("systemData") or {}).get("createdAt")
    return body["properties"], _instant(created, "systemData.createdAt").date() if created else None


# ---------------------------------------------------------------------- the operators' window


def parse_window_setting(text: str) -> ConfiguredWindow | None:
    """The operators' window (REMEDIATOR_ROTATION_WINDOW), or None when the setting is empty.

    Grammar (case-insensitive, words separated by spaces):

        window := days " " HH:MM "-" HH:MM [" " offset]
        days   := "daily" | day ["-" day] {"," day ["-" day]}
        day    := Mon | Tue | Wed | Thu | Fri | Sat | Sun   (or the full name)
        offset := ("+" | "-") HH:MM                          (a fixed UTC offset; default +00:00)

    `days` are the days a window starts on, at the offset; a range wraps round the week (`Fri-Mon`). An end at or
    before the start means the next day: `Mon-Fri 22:00-02:00` runs from Friday 22:00 to Saturday 02:00 too.
    Examples: `Sat,Sun 01:00-05:00`, `Mon-Fri 22:00-02:00 +01:00`, `daily 03:00-04:00`.
    Malformed text raises ConfigurationError naming the setting and this format.
    """
    words = text.split()
    if not words:
        return None
    if len(words) not in (2, 3):
        raise _bad_setting(text, "expected days, a time range and an optional offset, separated by spaces")
    start_text, dash, end_text = words[1].partition("-")
    if not dash:
        raise _bad_setting(text, f"{words[1]!r} is not a time range HH:MM-HH:MM")
    days, start, end = _setting_days(text, words[0]), _setting_clock(text, start_text), _setting_clock(text, end_text)
    offset = _parse_offset(words[2]) if len(words) == 3 else timedelta(0)
    if offset is None:
        raise _bad_setting(text, f"{words[2]!r} is not a UTC offset such as +01:00 or -05:30")
    duration = (datetime.combine(date.min, end) - datetime.combine(date.min, start)) % _DAY
    if not duration:
        raise _bad_setting(text, "the window starts and ends at the same time")
    return ConfiguredWindow(days=days, start_time=start, duration=duration, utc_offset=offset)


def _bad_setting(text: str, reason: str) -> ConfigurationError:
    return ConfigurationError(
        f"{SETTING} must be '<days> HH:MM-HH:MM [+HH:MM]': days 'daily' or Mon..Sun, comma-separated, ranges such as"
        f" Mon-Fri allowed; the window may cross midnight; an optional fixed UTC offset (default +00:00); for example"
        f" 'Sat,Sun 01:00-05:00', 'Mon-Fri 22:00-02:00 +01:00' or 'daily 03:00-04:00'. {reason}; got {text!r}")


def _setting_days(text: str, token: str) -> frozenset[int]:
    if token.lower() == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in token.split(","):
        first, dash, last = part.partition("-")
        a, b = _day_number(first), _day_number(last) if dash else _day_number(first)
        if a is None or b is None:
            raise _bad_setting(text, f"{part!r} is not a day (Mon..Sun) or a range of days (Mon-Fri)")
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def _day_number(name: str) -> int | None:
    name = name.lower()
    return next((i for i, day in enumerate(DAY_NAMES) if name in (day.lower(), day[:3].lower())), None)


def _setting_clock(text: str, clock: str) -> time:
    found = _parse_clock(clock)
    if found is None:
        raise _bad_setting(text, f"{clock!r} is not a time HH:MM from 00:00 to 23:59")
    return found


def _days_text(days: frozenset[int]) -> str:
    """Days as the setting writes them: daily, or runs in week order (Mon-Fri, Sat,Sun)."""
    if len(days) == 7:
        return "daily"
    parts, day = [], 0
    while day < 7:
        if day not in days:
            day += 1
            continue
        last = day
        while last + 1 in days:
            last += 1
        names = [DAY_NAMES[d][:3] for d in range(day, last + 1)]
        parts.append(f"{names[0]}-{names[-1]}" if len(names) > 2 else ",".join(names))
        day = last + 1
    return ",".join(parts)


# ---------------------------------------------------------------------- AKS's JSON


def _planned_window(window: Any, created: date | None) -> PlannedWindow:
    if not isinstance(window, Mapping):
        raise InvalidInputError("maintenanceWindow must be an object")
    schedule = window.get("schedule")
    if not isinstance(schedule, Mapping):
        raise InvalidInputError("maintenanceWindow.schedule is required")
    # ARM's readers show the kinds not chosen as null.
    kinds = [kind for kind in SCHEDULE_KINDS if schedule.get(kind) is not None]
    if len(kinds) != 1:
        raise InvalidInputError(f"maintenanceWindow.schedule must hold exactly one of {', '.join(SCHEDULE_KINDS)}")
    kind, where = kinds[0], f"maintenanceWindow.schedule.{kinds[0]}"
    recurrence = schedule[kind]
    if not isinstance(recurrence, Mapping):
        raise InvalidInputError(f"{where} must be an object")
    unit = {"daily": "intervalDays", "weekly": "intervalWeeks"}.get(kind, "intervalMonths")
    interval = _integer(recurrence.get(unit), f"{where}.{unit}", 1, 1000)
    day_of_week = day_of_month = week_index = None
    if kind in ("weekly", "relativeMonthly"):
        day_of_week = _day_number(recurrence["dayOfWeek"]) if isinstance(recurrence.get("dayOfWeek"), str) else None
        if day_of_week is None:
            raise InvalidInputError(f"{where}.dayOfWeek must be one of {', '.join(DAY_NAMES)}")
    if kind == "absoluteMonthly":
        day_of_month = _integer(recurrence.get("dayOfMonth"), f"{where}.dayOfMonth", 1, 31)
    if kind == "relativeMonthly":
        week_index = next((i for i in WEEK_INDEXES if str(recurrence.get("weekIndex")).lower() == i.lower()), None)
        if week_index is None:
            raise InvalidInputError(f"{where}.weekIndex must be one of {', '.join(WEEK_INDEXES)}")
    duration = _integer(window.get("durationHours"), "maintenanceWindow.durationHours", 1, 24)
    start_time = _parse_clock(window.get("startTime"))
    if start_time is None:
        raise InvalidInputError("maintenanceWindow.startTime must be a time HH:mm from 00:00 to 23:59")
    offset = timedelta(0) if window.get("utcOffset") in (None, "") else _parse_offset(window["utcOffset"])
    if offset is None:
        raise InvalidInputError("maintenanceWindow.utcOffset must be +HH:mm or -HH:mm")
    start_date = _date(window["startDate"], "maintenanceWindow.startDate") if window.get("startDate") else created
    if start_date is None and interval > 1:
        raise InvalidInputError(f"maintenanceWindow has no startDate to count its {unit} of {interval} from")
    return PlannedWindow(kind=kind, interval=interval, start_time=start_time, duration_hours=duration,
                         utc_offset=offset, start_date=start_date, day_of_week=day_of_week,
                         day_of_month=day_of_month, week_index=week_index,
                         not_allowed_dates=tuple(_date_span(span, i)
                                                 for i, span in enumerate(window.get("notAllowedDates") or ())))


def _date_span(span: Any, index: int) -> tuple[date, date]:
    where = f"maintenanceWindow.notAllowedDates[{index}]"
    if not isinstance(span, Mapping):
        raise InvalidInputError(f"{where} must be an object with start and end")
    start, end = _date(span.get("start"), f"{where}.start"), _date(span.get("end"), f"{where}.end")
    if end < start:
        raise InvalidInputError(f"{where} ends before it starts")
    return start, end


def _hour_slots(time_in_week: Any, not_allowed_time: Any) -> HourSlots:
    if not isinstance(time_in_week, list):
        raise InvalidInputError("timeInWeek must be a list")
    slots: set[tuple[int, int]] = set()
    for i, entry in enumerate(time_in_week):
        day = _day_number(str(entry.get("day"))) if isinstance(entry, Mapping) else None
        if day is None:
            raise InvalidInputError(f"timeInWeek[{i}].day must be one of {', '.join(DAY_NAMES)}")
        hours = entry.get("hourSlots") or []
        if not isinstance(hours, list):
            raise InvalidInputError(f"timeInWeek[{i}].hourSlots must be a list of hours 0-23")
        slots.update((day, _integer(hour, f"timeInWeek[{i}].hourSlots", 0, 23)) for hour in hours)
    spans = []
    for i, span in enumerate(not_allowed_time or ()):
        if not isinstance(span, Mapping):
            raise InvalidInputError(f"notAllowedTime[{i}] must be an object with start and end")
        start, end = _instant(span.get("start"), f"notAllowedTime[{i}].start"), _instant(
            span.get("end"), f"notAllowedTime[{i}].end")
        if end < start:
            raise InvalidInputError(f"notAllowedTime[{i}] ends before it starts")
        spans.append((start, end))
    return HourSlots(slots=frozenset(slots), not_allowed_time=tuple(spans))


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{where} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _date(value: Any, where: str) -> date:
    try:
        if isinstance(value, str) and _DATE.match(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise InvalidInputError(f"{where} must be a date YYYY-MM-DD, got {value!r}")


def _instant(value: Any, where: str) -> datetime:
    """An ISO 8601 instant as ARM writes them (Z, 7 fractional digits); one without an offset is UTC."""
    try:
        if isinstance(value, str):
            moment = datetime.fromisoformat(_FRACTION.sub(r"\1", value))
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        pass
    raise InvalidInputError(f"{where} must be a date and time such as 2020-11-26T03:00:00Z, got {value!r}")


# ---------------------------------------------------------------------- small helpers


def _parse_clock(text: Any) -> time | None:
    match = _CLOCK.match(text) if isinstance(text, str) else None
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        return None
    return time(int(match.group(1)), int(match.group(2)))


def _parse_offset(text: Any) -> timedelta | None:
    match = _OFFSET.match(text) if isinstance(text, str) else None
    if not match or int(match.group(2)) > 23 or int(match.group(3)) > 59:
        return None
    size = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
    return -size if match.group(1) == "-" else size


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _zone_name(offset: timedelta) -> str:
    return "UTC" if not offset else f"UTC{_offset_text(offset)}"


def _instant_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a moment must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def _sunday_of(day: date) -> date:
    """The Sunday that starts `day`'s calendar week."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


def _is_week_index(day: date, index: str | None) -> bool:
    """Whether `day` is its month's `index` (First..Fourth, Last) day of its weekday; a fourth can also be last."""
    if index == "Last":
        return day.day + 7 > calendar.monthrange(day.year, day.month)[1]
    return (day.day - 1) // 7 < 4 and WEEK_INDEXES[(day.day - 1) // 7] == index


def _merged(spans: Iterable[Window]) -> tuple[Window, ...]:
    merged: list[Window] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return tuple(merged)


def _less(window: Window, blocked: tuple[Window, ...]) -> Iterator[Window]:
    """The parts of `window` outside the (sorted, merged) blocked spans."""
    start, end = window
    for blocked_start, blocked_end in blocked:
        if blocked_end <= start:
            continue
        if blocked_start >= end:
            break
        if blocked_start > start:
            yield start, blocked_start
        start = blocked_end
        if start >= end:
            return
    yield start, end
