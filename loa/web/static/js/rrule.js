// A schedule's RRULE in plain words ("Thứ 2–Thứ 7, 05:00 và 17:00"), read in the schedule's
// time zone, never the browser's. Pure: the caller passes the translate function, so the
// same code runs in the page and under node in the tests.

const DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
const DAY_RE = /^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$/;
const NTH = new Set([1, 2, 3, 4, 5, -1]); // "the first Monday" … "the last Monday"
// Parts these words can say; a rule with any other (BYSETPOS, BYWEEKNO…) is shown as written.
const SAID = new Set(["FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYHOUR", "BYMINUTE", "BYSECOND", "BYMONTHDAY", "BYMONTH", "WKST"]);

/** NAME=VALUE parts by upper-case name, or null if the text is not an RRULE line. */
export function parseRule(text) {
  const body = String(text || "").trim().replace(/^RRULE:/i, "");
  if (!body) return null;
  const parts = {};
  for (const part of body.split(";")) {
    const [name, value, extra] = part.split("=");
    if (!name || !value || extra !== undefined) return null;
    parts[name.trim().toUpperCase()] = value.trim().toUpperCase();
  }
  return parts.FREQ ? parts : null;
}

/** Wall-clock fields of a Unix time in an IANA time zone. */
export function wallClock(unix, timezone) {
  const fmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: timezone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    weekday: "short",
    hourCycle: "h23",
  });
  const f = Object.fromEntries(fmt.formatToParts(new Date(unix * 1000)).map((p) => [p.type, p.value]));
  const weekday = { Mon: "MO", Tue: "TU", Wed: "WE", Thu: "TH", Fri: "FR", Sat: "SA", Sun: "SU" }[f.weekday];
  return { year: +f.year, month: +f.month, day: +f.day, hour: +f.hour, minute: +f.minute, weekday };
}

const pad = (n) => String(n).padStart(2, "0");

/** "dd/mm/yyyy" of a Unix time in the time zone. */
export function wallDate(unix, timezone) {
  const w = wallClock(unix, timezone);
  return `${pad(w.day)}/${pad(w.month)}/${w.year}`;
}

/** "dd/mm/yyyy HH:MM" of a Unix time in the time zone. */
export function wallTime(unix, timezone) {
  const w = wallClock(unix, timezone);
  return `${pad(w.day)}/${pad(w.month)}/${w.year} ${pad(w.hour)}:${pad(w.minute)}`;
}

function ints(value) {
  return value.split(",").map(Number);
}

/** "a, b và c" in the reader's language. */
export function joinAnd(items, t) {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} ${t("rrule.and")} ${items[items.length - 1]}`;
}

function dayName(code, t) {
  return t(`rrule.day.${code}`);
}

/** Weekdays in week order, three or more in a row as a range: "Thứ 2–Thứ 7". */
function dayList(codes, t) {
  const idx = [...new Set(codes.map((c) => DAYS.indexOf(c)))].sort((a, b) => a - b);
  const runs = [];
  for (const i of idx) {
    const last = runs[runs.length - 1];
    if (last && last[1] === i - 1) last[1] = i;
    else runs.push([i, i]);
  }
  const words = [];
  for (const [a, b] of runs) {
    if (b - a >= 2) words.push(`${dayName(DAYS[a], t)}–${dayName(DAYS[b], t)}`);
    else for (let i = a; i <= b; i += 1) words.push(dayName(DAYS[i], t));
  }
  return joinAnd(words, t);
}

function times(parts, start) {
  const hours = parts.BYHOUR ? ints(parts.BYHOUR) : [start.hour];
  const minutes = parts.BYMINUTE ? ints(parts.BYMINUTE) : [start.minute];
  const out = [];
  for (const h of hours) for (const m of minutes) out.push(h * 60 + m);
  return [...new Set(out)].sort((a, b) => a - b).map((x) => `${pad(Math.floor(x / 60))}:${pad(x % 60)}`);
}

function ordinalDay(code, t) {
  const [, n, day] = DAY_RE.exec(code);
  if (!n) return dayName(day, t);
  return t("rrule.nth_day", { day: dayName(day, t), nth: t(`rrule.nth.${Number(n)}`) });
}

function untilUnix(value) {
  const m = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})Z)?$/.exec(value);
  if (!m) return null;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0)) / 1000;
}

/** The days part of a rule, or null when these words cannot say it. */
function when(parts, start, t) {
  const n = Number(parts.INTERVAL || 1);
  const days = parts.BYDAY ? parts.BYDAY.split(",") : [];
  if (days.some((d) => !DAY_RE.test(d))) return null;
  const plain = days.filter((d) => /^[A-Z]{2}$/.test(d));
  switch (parts.FREQ) {
    case "DAILY":
    case "WEEKLY": {
      if (parts.BYMONTHDAY || parts.BYMONTH || plain.length !== days.length) return null;
      const chosen = plain.length ? plain : parts.FREQ === "WEEKLY" ? [start.weekday] : DAYS;
      const every = chosen.length === 7 ? t("rrule.daily") : dayList(chosen, t);
      if (n === 1) return every;
      const unit = parts.FREQ === "DAILY" ? "rrule.every_n_days" : "rrule.every_n_weeks";
      return chosen.length === 7 ? t(unit, { n }) : `${every} (${t(unit, { n })})`;
    }
    case "MONTHLY": {
      const nths = days.map((d) => DAY_RE.exec(d)[1]).filter(Boolean).map(Number);
      if (parts.BYMONTH || nths.some((k) => !NTH.has(k))) return null;
      const mdays = parts.BYMONTHDAY ? ints(parts.BYMONTHDAY) : [start.day];
      if ((days.length && parts.BYMONTHDAY) || mdays.some((d) => d < -1 || d === 0)) return null;
      const what = days.length
        ? t("rrule.monthly_days", { days: joinAnd(days.map((d) => ordinalDay(d, t)), t) })
        : t("rrule.monthly", { days: joinAnd(mdays.map((d) => (d === -1 ? t("rrule.last_day") : String(d))), t) });
      return n === 1 ? what : `${what} (${t("rrule.every_n_months", { n })})`;
    }
    case "YEARLY": {
      if (days.length) return null;
      const months = parts.BYMONTH ? ints(parts.BYMONTH) : [start.month];
      const mdays = parts.BYMONTHDAY ? ints(parts.BYMONTHDAY) : [start.day];
      if (mdays.some((d) => d < 1)) return null;
      const dates = [];
      for (const m of months) for (const d of mdays) dates.push(`${pad(d)}/${pad(m)}`);
      const what = t("rrule.yearly", { dates: joinAnd(dates, t) });
      return n === 1 ? what : `${what} (${t("rrule.every_n_years", { n })})`;
    }
    default:
      return null;
  }
}

/** Wall-clock fields of a local ISO time ("2025-03-03T05:00", as a datetime-local input
 * gives it), or null. */
export function wallFromLocal(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(String(text || ""));
  if (!m) return null;
  const [year, month, day, hour, minute] = m.slice(1).map(Number);
  const weekday = DAYS[(new Date(Date.UTC(year, month - 1, day)).getUTCDay() + 6) % 7];
  return { year, month, day, hour, minute, weekday };
}

/** A weekday and wall time of a Unix time in the time zone: "Thứ 2, 03/03/2025 05:00". */
export function dayAndTime(unix, timezone, t) {
  return `${dayName(wallClock(unix, timezone).weekday, t)}, ${wallTime(unix, timezone)}`;
}

/** The rule in plain words, read in the schedule's time zone; ``start`` is DTSTART as a Unix
 * time or as wall-clock fields (``wallFromLocal``). Null when these words cannot say the rule
 * (the caller shows the RRULE as written). */
export function describeRule(rrule, start, timezone, t) {
  const parts = parseRule(rrule);
  if (!parts || Object.keys(parts).some((k) => !SAID.has(k))) return null;
  const wall = typeof start === "number" ? wallClock(start, timezone) : start;
  if (!wall) return null;
  const n = Number(parts.INTERVAL || 1);
  if (parts.COUNT === "1") {
    return t("rrule.once", { at: `${pad(wall.day)}/${pad(wall.month)}/${wall.year} ${pad(wall.hour)}:${pad(wall.minute)}` });
  }
  let text;
  if (parts.FREQ === "HOURLY" || parts.FREQ === "MINUTELY") {
    if (parts.BYDAY || parts.BYMONTHDAY || parts.BYMONTH || parts.BYHOUR || (parts.FREQ === "MINUTELY" && parts.BYMINUTE)) return null;
    const unit = parts.FREQ === "HOURLY" ? "rrule.every_n_hours" : "rrule.every_n_minutes";
    text = n === 1 ? t(`${unit}.one`) : t(unit, { n });
    if (parts.FREQ === "HOURLY") text += `, ${t("rrule.at_minute", { minute: pad(parts.BYMINUTE ? ints(parts.BYMINUTE)[0] : wall.minute) })}`;
  } else {
    const days = when(parts, wall, t);
    if (days === null) return null;
    text = `${days}, ${joinAnd(times(parts, wall), t)}`;
  }
  if (parts.COUNT) text += ` (${t("rrule.count", { n: Number(parts.COUNT) })})`;
  if (parts.UNTIL) {
    const until = untilUnix(parts.UNTIL);
    if (until === null) return null;
    text += ` (${t("rrule.until", { date: wallDate(until, timezone) })})`;
  }
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The Unix time of a local ISO time ("2025-03-03T00:00") in the time zone, the way the server
 * reads DTSTART (RFC 5545 §3.3.5): a time skipped by a clock change is read with the offset
 * before it, a repeated one means its first occurrence. */
export function unixOfLocal(text, timezone) {
  const w = wallFromLocal(text);
  if (!w) return null;
  const want = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute) / 1000;
  const offset = (u) => {
    const g = wallClock(u, timezone);
    return Date.UTC(g.year, g.month - 1, g.day, g.hour, g.minute) / 1000 - (u - (((u % 60) + 60) % 60));
  };
  const before = want - offset(want - 43200);
  const after = want - offset(want + 43200);
  const fits = [before, after].filter((u) => offset(u) === want - u);
  return fits.length ? Math.min(...fits) : before;
}
