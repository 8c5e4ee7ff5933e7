// Schedules: the list, the programme editor (library media, relay URL + duration, text to
// speech, silence), RRULE presets or a raw rule, the next runs, and the conflicts report.
// Rules and times read in plain words in the schedule's time zone, never the browser's.
import { api, errorText, loadMe } from "./api.js";
import { formatDuration, initI18n, t } from "./i18n.js";
import { fillVoiceSelect } from "./media.js";
import { dayAndTime, describeRule, unixOfLocal, wallDate, wallFromLocal } from "./rrule.js";
import { el, initHeader, notice } from "./ui.js";
import { ZoneTree } from "./zones.js";

let tree = new ZoneTree([]);
let media = [];
let schedules = [];
let me = null;
let editingTz = null; // the time zone of the schedule being edited; null for a new one
const DEFAULT_TZ = "Asia/Ho_Chi_Minh";

const $ = (id) => document.getElementById(id);

/** "Thứ 2–Thứ 7, 05:00 và 17:00 · từ 03/03/2025", in the schedule's time zone. */
function ruleWords(s) {
  const words = describeRule(s.rrule, s.dtstart, s.timezone, t) ?? t("rrule.as_written", { rrule: s.rrule });
  const once = /(^|;)COUNT=1(;|$)/i.test(s.rrule);
  const from = once ? "" : ` · ${t("rrule.from", { date: wallDate(s.dtstart, s.timezone) })}`;
  const zone = s.timezone === DEFAULT_TZ ? "" : ` (${t("rrule.zone", { timezone: s.timezone })})`;
  return words + from + zone;
}

function zoneTz(zone) {
  return tree.byId.get(zone)?.timezone ?? DEFAULT_TZ;
}

/** The editor's rule in words as it is typed (in the origin zone's time zone). */
function showRuleWords() {
  const tz = editingTz ?? zoneTz($("s-zone").value);
  const words = describeRule($("s-rrule").value, wallFromLocal($("s-dtstart").value), tz, t);
  $("s-rule-words").textContent = words ?? "";
}

function describeItem(item) {
  switch (item.type) {
    case "media":
      return `${t("sch.add.media")}: ${media.find((m) => m.id === item.id)?.name ?? item.id}`;
    case "url":
      return `${t("sch.add.url")}: ${item.url} (${formatDuration(item.duration_s)})`;
    case "tts":
      return `${t("sch.add.tts")}: ${item.text.length > 40 ? `${item.text.slice(0, 39)}…` : item.text}`;
    default:
      return `${t("sch.add.silence")} (${formatDuration(item.duration_s)})`;
  }
}

function renderList() {
  $("sch-empty").hidden = schedules.length > 0;
  const mayEdit = !$("editor").hidden;
  $("sch-rows").replaceChildren(
    ...schedules.map((s) =>
      el(
        "tr",
        { dataset: { id: s.id } },
        el("td", { "data-label": t("sch.name") }, s.name),
        el("td", { "data-label": t("sch.rule"), title: s.rrule, class: "sch-rule" }, ruleWords(s)),
        el("td", { "data-label": t("sch.items") }, s.items.map(describeItem).join(" + ")),
        el("td", { "data-label": t("sch.targets") }, s.targets.zones.map((z) => tree.name(z)).join(", ")),
        el("td", { "data-label": t("sch.enabled") }, s.enabled ? "✓" : "–"),
        el(
          "td",
          {},
          el("button", { type: "button", class: "btn btn-small", onclick: () => preview(s) }, t("sch.preview")),
          mayEdit && el("button", { type: "button", class: "btn btn-small", onclick: () => edit(s) }, t("sch.edit")),
          mayEdit && el("button", { type: "button", class: "btn btn-small", onclick: () => remove(s) }, t("sch.delete")),
        ),
      ),
    ),
  );
}

async function preview(s) {
  try {
    const data = await api("GET", `/schedules/${encodeURIComponent(s.id)}/preview?n=10`);
    $("preview-name").textContent = s.name;
    $("preview-list").replaceChildren(...data.starts.map((o) => el("li", {}, dayAndTime(o.at, data.timezone, t))));
    $("preview").hidden = false;
  } catch (err) {
    notice(errorText(err), "error");
  }
}

async function remove(s) {
  if (!confirm(t("sch.confirm_delete", { name: s.name }))) return;
  try {
    await api("DELETE", `/schedules/${encodeURIComponent(s.id)}`);
    notice(t("sch.deleted", { name: s.name }));
    await reload();
  } catch (err) {
    notice(errorText(err), "error");
  }
}

function itemRow(item) {
  const li = el("li", { class: "sch-item", dataset: { type: item.type } });
  const drop = el("button", { type: "button", class: "btn btn-small", onclick: () => li.remove() }, t("sch.remove"));
  const num = (name, value, min) => el("input", { type: "number", name, min, max: 86400, step: "any", value, required: true });
  switch (item.type) {
    case "media":
      li.append(
        el("select", { name: "id", required: true }, ...media.map((m) => el("option", { value: m.id, selected: m.id === item.id }, `${m.name} (${formatDuration(m.duration_s)})`))),
      );
      break;
    case "url":
      li.append(
        el("input", { name: "url", type: "url", required: true, value: item.url ?? "", placeholder: t("bc.url.placeholder") }),
        el("label", {}, t("sch.duration_s"), num("duration_s", item.duration_s ?? 1800, 1)),
      );
      break;
    case "tts":
      {
        // "" (the default): no voice named, the schedule's zone's voice is used
        const voice = el("select", { name: "voice" }, el("option", { value: item.voice ?? "" }));
        voice.value = item.voice ?? "";
        fillVoiceSelect(voice);
        li.append(el("textarea", { name: "text", required: true, maxlength: 5000, rows: 2 }, item.text ?? ""), voice);
      }
      break;
    default:
      li.append(el("label", {}, t("sch.duration_s"), num("duration_s", item.duration_s ?? 5, 0.02)));
  }
  li.prepend(el("strong", {}, t(`sch.add.${item.type}`)), " ");
  li.append(" ", drop);
  return li;
}

function readItems() {
  return [...$("s-items").children].map((li) => {
    const field = (name) => li.querySelector(`[name="${name}"]`)?.value;
    switch (li.dataset.type) {
      case "media":
        return { type: "media", id: field("id") };
      case "url":
        return { type: "url", url: field("url"), duration_s: Number(field("duration_s")) };
      case "tts":
        return { type: "tts", text: field("text"), voice: field("voice") || undefined };
      default:
        return { type: "silence", duration_s: Number(field("duration_s")) };
    }
  });
}

function localInput(unix, tz) {
  const parts = new Intl.DateTimeFormat("sv-SE", { timeZone: tz, dateStyle: "short", timeStyle: "short" }).format(new Date(unix * 1000));
  return parts.replace(" ", "T");
}

function fillForm(s) {
  editingTz = s ? s.timezone : null;
  $("editor-title").textContent = s ? t("sch.edit_title", { name: s.name }) : t("sch.new");
  $("s-id").value = s ? s.id : "";
  $("s-name").value = s ? s.name : "";
  $("s-zone").value = s ? s.zone ?? "" : me?.zone ?? "";
  $("s-class").value = s ? s.class : "scheduled";
  $("s-dtstart").value = s ? localInput(s.dtstart, s.timezone) : "";
  $("s-rrule").value = s ? s.rrule : $("s-preset").value;
  $("s-preset").value = [...$("s-preset").options].some((o) => o.value === $("s-rrule").value) ? $("s-rrule").value : "";
  $("s-grace").value = s ? s.grace_s : 600;
  $("s-enabled").checked = s ? s.enabled : true;
  const targets = new Set(s ? s.targets.zones : []);
  for (const box of $("s-targets").querySelectorAll("input")) box.checked = targets.has(box.value);
  $("s-items").replaceChildren(...(s ? s.items : []).map(itemRow));
  showRuleWords();
}

function edit(s) {
  fillForm(s);
  $("editor").scrollIntoView({ behavior: "smooth" });
}

async function save(event) {
  event.preventDefault();
  const id = $("s-id").value;
  const body = {
    name: $("s-name").value,
    class: $("s-class").value,
    dtstart: $("s-dtstart").value,
    rrule: $("s-rrule").value.trim().toUpperCase(), // RFC 5545 names are case-insensitive
    grace_s: Number($("s-grace").value),
    enabled: $("s-enabled").checked,
    items: readItems(),
    targets: { zones: [...$("s-targets").querySelectorAll("input:checked")].map((b) => b.value), endpoints: [] },
  };
  const zone = $("s-zone").value;
  if (zone || me?.role === "admin") body.zone = zone || null;
  if (!body.items.length) return notice(t("sch.need_items"), "error");
  if (!body.targets.zones.length) return notice(t("bc.need_zone"), "error");
  try {
    const saved = await api(id ? "PATCH" : "POST", id ? `/schedules/${encodeURIComponent(id)}` : "/schedules", body);
    notice(t("sch.saved", { name: saved.name }));
    fillForm(null);
    await reload();
  } catch (err) {
    notice(errorText(err), "error");
  }
}

async function checkConflicts(event) {
  event?.preventDefault();
  const from = $("c-from").value;
  if (!from) return;
  const since = unixOfLocal(`${from}T00:00`, zoneTz(me?.zone));
  const until = since + Number($("c-days").value || 7) * 86400;
  try {
    const report = await api("GET", `/schedules/conflicts?since=${since}&until=${until}`);
    const contested = report.runs.filter((r) => r.contested);
    $("c-summary").textContent = t("sch.conflicts_n", { runs: report.runs.length, contested: contested.length });
    // Holders are runs of the report (broadcast ids like sch-…-1796335200): named by their
    // programme, never by id.
    const byId = new Map(schedules.map((s) => [s.id, s]));
    const programme = new Map(report.runs.map((r) => [r.broadcast, byId.get(r.schedule)?.name ?? t("sch.another")]));
    $("c-list").replaceChildren(
      ...contested.map((r) => {
        const s = byId.get(r.schedule);
        const lost = r.outcomes.filter((o) => !o.wins);
        const holders = [...new Set(lost.map((o) => o.holder).filter(Boolean).map((h) => programme.get(h) ?? t("sch.another")))];
        const words = t("sch.waits", { n: lost.length, holders: holders.join(", ") || "–" });
        return el("li", {}, `${dayAndTime(r.start, s?.timezone ?? DEFAULT_TZ, t)} · ${s?.name ?? t("sch.another")}: ${words}`);
      }),
    );
  } catch (err) {
    notice(errorText(err), "error");
  }
}

async function reload() {
  try {
    const [list, zones, lib] = await Promise.all([api("GET", "/schedules"), api("GET", "/zones"), api("GET", "/media")]);
    schedules = list.schedules;
    tree = new ZoneTree(zones.zones);
    media = lib.media ?? [];
    const walk = tree.walk();
    const origin = $("s-zone");
    const keep = origin.value;
    origin.replaceChildren(
      ...(me?.role === "admin" ? [el("option", { value: "" }, t("sch.national"))] : []),
      ...walk.map(({ id, depth }) => el("option", { value: id }, `${"\u00a0\u00a0".repeat(depth)}${tree.name(id)}`)),
    );
    origin.value = keep || me?.zone || "";
    const checked = new Set([...$("s-targets").querySelectorAll("input:checked")].map((b) => b.value));
    $("s-targets").replaceChildren(
      ...walk.map(({ id, depth }) =>
        el("label", { class: "check" }, "\u00a0\u00a0".repeat(depth), el("input", { type: "checkbox", value: id, checked: checked.has(id) }), tree.name(id)),
      ),
    );
    renderList();
  } catch (err) {
    notice(errorText(err), "error");
  }
}

async function main() {
  await initI18n();
  try {
    me = await loadMe();
    initHeader(me);
  } catch (err) {
    notice(errorText(err), "error");
    return;
  }
  document.getElementById("conn")?.setAttribute("hidden", "");
  $("s-preset").addEventListener("change", () => {
    if ($("s-preset").value) $("s-rrule").value = $("s-preset").value;
  });
  $("s-rrule").addEventListener("input", () => {
    $("s-preset").value = [...$("s-preset").options].some((o) => o.value === $("s-rrule").value) ? $("s-rrule").value : "";
    showRuleWords();
  });
  $("s-preset").addEventListener("change", showRuleWords);
  $("s-dtstart").addEventListener("input", showRuleWords);
  $("s-zone").addEventListener("change", showRuleWords);
  for (const button of document.querySelectorAll("[data-add]")) {
    button.addEventListener("click", () => $("s-items").append(itemRow({ type: button.dataset.add })));
  }
  $("sch-form").addEventListener("submit", save);
  $("s-reset").addEventListener("click", () => fillForm(null));
  $("c-form").addEventListener("submit", checkConflicts);
  $("c-from").value = new Date().toISOString().slice(0, 10);
  document.addEventListener("loa:lang", reload);
  await reload();
  fillForm(null);
  await checkConflicts();
}

main();
