// The bulletin inbox: GET /api/v1/bulletins?state=…, each with its texts, languages and zone
// names and a preview player (GET /bulletins/{id}/audio); write one (POST /bulletins), play a
// normal one now — saying when its poles hear it — or at a time, cancel one not ended. Times
// are read and written in the first target zone's time zone, never the browser's.
import { api, errorText, loadMe } from "./api.js";
import { has, initI18n, locale, t } from "./i18n.js";
import { unixOfLocal, wallClock, wallTime } from "./rrule.js";
import { el, initHeader, notice } from "./ui.js";
import { ZoneTree } from "./zones.js";

const ENDED = new Set(["done", "cancelled", "expired", "failed"]);
const DEFAULT_TZ = "Asia/Ho_Chi_Minh";
const TEXT_PREVIEW = 240; // characters of a text shown before "more"
let me = null;
let tree = new ZoneTree([]);
const heard = new Map(); // bulletin id → what "play now" said about when it is heard

const $ = (id) => document.getElementById(id);
const pad = (n) => String(n).padStart(2, "0");

/** A language tag in the reader's words ("vi" → "Tiếng Việt": the dictionary's, else the
 * browser's), else the tag itself. */
function languageName(tag) {
  if (has(`lang.name.${tag.toLowerCase()}`)) return t(`lang.name.${tag.toLowerCase()}`);
  try {
    const name = new Intl.DisplayNames([locale()], { type: "language" }).of(tag);
    if (name && name.toLowerCase() !== tag.toLowerCase()) return name.charAt(0).toUpperCase() + name.slice(1);
  } catch {
    // not a tag Intl knows
  }
  return tag;
}

function zoneTz(zones) {
  return tree.byId.get(zones[0])?.timezone ?? DEFAULT_TZ;
}

function clock(unix, tz) {
  const w = wallClock(unix, tz);
  return `${pad(w.hour)}:${pad(w.minute)}`;
}

/** What "play now" answered, in words: at once, after the current item (about when), or
 * when a higher or equal broadcast ends — per holder. */
function whenHeard(plays, tz) {
  if (!plays.waits.length) return plays.now ? t("bulletins.plays.now", { n: plays.now }) : t("bulletins.plays.nobody");
  const parts = plays.now ? [t("bulletins.plays.some_now", { n: plays.now })] : [];
  for (const w of plays.waits) {
    const words = { name: w.name, n: w.endpoints };
    if (w.until === "item_end" && w.at) parts.push(t("bulletins.plays.after_item_at", { ...words, time: clock(w.at, tz) }));
    else if (w.until === "item_end") parts.push(t("bulletins.plays.after_item", words));
    else parts.push(t("bulletins.plays.after_end", words));
  }
  return parts.join(" ");
}

function levelPill(level) {
  const kind = level === "emergency" ? "pill-emergency" : "pill-class";
  return el("span", { class: `pill ${kind}` }, t(`blevel.${level}`));
}

function mayAct(b) {
  if (!me || me.role === "viewer") return false;
  return b.level !== "emergency" || me.emergency_right || me.role === "admin";
}

async function playNow(b) {
  try {
    const done = await api("POST", `/bulletins/${b.id}/schedule`, {});
    const words = done.plays ? whenHeard(done.plays, zoneTz(b.zones)) : t("bulletins.scheduled");
    heard.set(b.id, words);
    notice(words);
    if ($("f-state").value === "inbox") $("f-state").value = ""; // keep it in sight as it leaves the inbox
    await reload();
  } catch (err) {
    notice(errorText(err), "error");
  }
}

async function act(path, body, done) {
  try {
    await api("POST", path, body);
    notice(t(done));
    await reload();
  } catch (err) {
    notice(errorText(err), "error");
  }
}

function scheduleControls(b) {
  const when = el("input", { type: "datetime-local", "aria-label": t("bulletins.at") });
  const now = el("button", { type: "button", class: "btn btn-small", dataset: { act: "now" }, onclick: () => playNow(b) }, t("bulletins.play_now"));
  const later = el(
    "button",
    {
      type: "button",
      class: "btn btn-small",
      onclick: () => {
        if (!when.value) {
          notice(t("bulletins.pick_time"), "error");
          return;
        }
        act(`/bulletins/${b.id}/schedule`, { at: unixOfLocal(when.value, zoneTz(b.zones)) }, "bulletins.scheduled");
      },
    },
    t("bulletins.schedule"),
  );
  return [now, when, later];
}

function actions(b) {
  if (!mayAct(b) || ENDED.has(b.state)) return [];
  const out = [];
  if (b.level === "normal" && b.state === "inbox") out.push(...scheduleControls(b));
  const cancel = () => {
    if (window.confirm(t("bulletins.confirm_cancel", { title: b.title }))) {
      act(`/bulletins/${b.id}/cancel`, undefined, "bulletins.cancelled");
    }
  };
  out.push(el("button", { type: "button", class: "btn btn-small btn-danger", onclick: cancel }, t("bulletins.cancel")));
  return out;
}

function variantText(v) {
  const label = el("strong", {}, `${languageName(v.language)}: `);
  if (v.media) return el("p", { class: "variant-text" }, label, t("bulletins.media_variant"));
  if (v.text.length <= TEXT_PREVIEW) return el("p", { class: "variant-text", lang: v.language }, label, v.text);
  return el(
    "details",
    { class: "variant-text", lang: v.language },
    el("summary", {}, label, `${v.text.slice(0, TEXT_PREVIEW - 1)}…`),
    v.text,
  );
}

function previewButton(b) {
  const button = el("button", { type: "button", class: "btn btn-small", dataset: { act: "preview" } }, t("bulletins.preview"));
  button.addEventListener("click", () => {
    const audio = el("audio", { controls: true, preload: "auto", class: "bulletin-audio", src: `/api/v1/bulletins/${encodeURIComponent(b.id)}/audio`, "aria-label": t("bulletins.preview") });
    audio.addEventListener("error", () => notice(t("bulletins.preview_failed"), "error"));
    button.replaceWith(audio);
    audio.play().catch(() => {}); // autoplay may be refused; the controls are there
  });
  return button;
}

function row(b) {
  const repeat = b.repeat_every_s ? ` · ${t("bulletins.repeat", { s: b.repeat_every_s })}` : "";
  const note = heard.get(b.id);
  return el(
    "tr",
    { class: b.level === "emergency" ? "emergency" : "", dataset: { id: b.id } },
    el("td", { "data-label": t("bulletins.issued") }, wallTime(b.issued_at, zoneTz(b.zones))),
    el(
      "td",
      { "data-label": t("bulletins.subject"), class: "bulletin-body" },
      el("strong", { class: "bulletin-title" }, b.title),
      repeat,
      b.source === "cap" ? " (CAP)" : "",
      ...b.variants.map(variantText),
      previewButton(b),
    ),
    el("td", { "data-label": t("bulletins.languages"), class: "bulletin-languages" }, b.variants.map((v) => languageName(v.language)).join(", ")),
    el("td", { "data-label": t("bulletins.level") }, levelPill(b.level)),
    el("td", { "data-label": t("log.targets"), class: "bulletin-zones" }, b.zones.map((z) => tree.name(z)).join(", ")),
    el("td", { "data-label": t("bulletins.expires") }, b.expires_at ? wallTime(b.expires_at, zoneTz(b.zones)) : "—"),
    el(
      "td",
      { "data-label": t("bulletins.state") },
      t(`bstate.${b.state}`),
      b.state === "scheduled" && b.scheduled_at ? el("div", { class: "muted" }, t("bulletins.at_time", { at: wallTime(b.scheduled_at, zoneTz(b.zones)) })) : null,
      note && !ENDED.has(b.state) ? el("div", { class: "muted bulletin-when" }, note) : null,
    ),
    el("td", { "data-label": t("bulletins.actions") }, ...actions(b)),
  );
}

async function reload() {
  const state = $("f-state").value;
  try {
    const [data, zones] = await Promise.all([
      api("GET", `/bulletins${state ? `?state=${encodeURIComponent(state)}` : ""}`),
      api("GET", "/zones"),
    ]);
    tree = new ZoneTree(zones.zones);
    const rows = data.bulletins.map(row);
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 8, class: "muted" }, t("bulletins.none"))));
    $("bulletin-rows").replaceChildren(...rows);
    fillCompose();
  } catch (err) {
    notice(errorText(err), "error");
  }
}

// -- writing a bulletin ----------------------------------------------------------------------
function languages() {
  const tags = ["vi"];
  for (const z of tree.byId.values()) for (const tag of z.languages ?? []) if (!tags.includes(tag)) tags.push(tag);
  if (!tags.includes("en")) tags.push("en");
  return tags;
}

function variantRow(language = "vi") {
  const li = el("li", { class: "variant" });
  li.append(
    el("label", {}, el("span", {}, t("bulletins.language")), el("input", { name: "language", list: "b-languages", value: language, required: true, maxlength: 35, size: 8 })),
    el("label", { class: "variant-body" }, el("span", {}, t("bulletins.text")), el("textarea", { name: "text", required: true, maxlength: 20000, rows: 3 })),
    el("button", { type: "button", class: "btn btn-small", onclick: () => $("b-variants").children.length > 1 && li.remove() }, t("sch.remove")),
  );
  return li;
}

function fillCompose() {
  const allowed = tree.allowed(me);
  const box = $("b-zones");
  const ticked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
  if (!box.children.length && me?.zone) ticked.add(me.zone);
  box.replaceChildren(
    ...tree
      .walk()
      .filter(({ id }) => allowed.has(id))
      .map(({ id, depth }) => el("label", { class: "check" }, "\u00a0\u00a0".repeat(depth), el("input", { type: "checkbox", value: id, checked: ticked.has(id) }), tree.name(id))),
  );
  $("b-languages").replaceChildren(...languages().map((tag) => el("option", { value: tag }, languageName(tag))));
  if (!$("b-variants").children.length) $("b-variants").append(variantRow());
}

function levelHint() {
  $("b-level-hint").textContent = t(`bulletins.hint.${$("b-level").value}`);
}

async function send(event) {
  event.preventDefault();
  const zones = [...$("b-zones").querySelectorAll("input:checked")].map((i) => i.value);
  if (!zones.length) return notice(t("bc.need_zone"), "error");
  const body = {
    level: $("b-level").value,
    zones,
    title: $("b-title").value.trim(),
    variants: [...$("b-variants").children].map((li) => ({
      language: li.querySelector('[name="language"]').value.trim(),
      text: li.querySelector('[name="text"]').value.trim(),
    })),
  };
  if ($("b-expires").value) body.expires_at = unixOfLocal($("b-expires").value, zoneTz(zones));
  try {
    const made = await api("POST", "/bulletins", body);
    if (made.plays) {
      const words = whenHeard(made.plays, zoneTz(made.zones));
      heard.set(made.id, words);
      notice(`${t("bulletins.sent.on_air", { title: made.title })} ${words}`);
    } else {
      notice(t("bulletins.sent.inbox", { title: made.title }));
    }
    $("compose-form").reset();
    $("compose").open = false; // the inbox, with the new bulletin, back in sight
    $("b-variants").replaceChildren(variantRow());
    levelHint();
    $("f-state").value = made.state === "inbox" ? "inbox" : "";
    await reload();
  } catch (err) {
    notice(errorText(err), "error");
  }
}

function initCompose() {
  if (!me || me.role === "viewer") return;
  if (!me.emergency_right && me.role !== "admin") $("b-level").querySelector('[value="emergency"]').remove();
  $("compose").hidden = false;
  $("b-level").addEventListener("change", levelHint);
  $("b-add-variant").addEventListener("click", () => $("b-variants").append(variantRow("")));
  $("compose-form").addEventListener("submit", send);
  $("compose-form").addEventListener("reset", () => setTimeout(levelHint));
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
  $("f-state").addEventListener("change", reload);
  $("bulletin-filters").addEventListener("submit", (e) => e.preventDefault());
  $("f-reload").addEventListener("click", reload);
  document.addEventListener("loa:lang", reload);
  initCompose();
  await reload();
}

main();
