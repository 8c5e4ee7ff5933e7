// The bulletin inbox: GET /api/v1/bulletins?state=…, schedule a normal bulletin (now or at a
// time), cancel one that has not ended.
import { api, errorText, loadMe } from "./api.js";
import { formatTime, initI18n, t } from "./i18n.js";
import { el, initHeader, notice } from "./ui.js";

const ENDED = new Set(["done", "cancelled", "expired", "failed"]);
let me = null;

function levelPill(level) {
  const kind = level === "emergency" ? "pill-emergency" : "pill-class";
  return el("span", { class: `pill ${kind}` }, t(`blevel.${level}`));
}

function mayAct(b) {
  if (!me || me.role === "viewer") return false;
  return b.level !== "emergency" || me.emergency_right;
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
  const now = el("button", { type: "button", class: "btn btn-small", onclick: () => act(`/bulletins/${b.id}/schedule`, {}, "bulletins.scheduled") }, t("bulletins.play_now"));
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
        act(`/bulletins/${b.id}/schedule`, { at: new Date(when.value).getTime() / 1000 }, "bulletins.scheduled");
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

function row(b) {
  const texts = b.variants.map((v) => `${v.language}: ${v.text ?? `♪ ${v.media}`}`).join("\n");
  const repeat = b.repeat_every_s ? ` · ${t("bulletins.repeat", { s: b.repeat_every_s })}` : "";
  return el(
    "tr",
    { class: b.level === "emergency" ? "emergency" : "", dataset: { id: b.id } },
    el("td", { "data-label": t("bulletins.issued") }, formatTime(b.issued_at)),
    el("td", { "data-label": t("bulletins.subject"), title: texts }, b.title, repeat, b.source === "cap" ? " (CAP)" : ""),
    el("td", { "data-label": t("bulletins.level") }, levelPill(b.level)),
    el("td", { "data-label": t("log.targets") }, b.zones.join(", ")),
    el("td", { "data-label": t("bulletins.expires") }, b.expires_at ? formatTime(b.expires_at) : "—"),
    el("td", { "data-label": t("bulletins.state") }, t(`bstate.${b.state}`)),
    el("td", { "data-label": t("bulletins.actions") }, ...actions(b)),
  );
}

async function reload() {
  const state = document.getElementById("f-state").value;
  try {
    const data = await api("GET", `/bulletins${state ? `?state=${encodeURIComponent(state)}` : ""}`);
    const rows = data.bulletins.map(row);
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 7, class: "muted" }, t("bulletins.none"))));
    document.getElementById("bulletin-rows").replaceChildren(...rows);
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
  document.getElementById("f-state").addEventListener("change", reload);
  document.getElementById("bulletin-filters").addEventListener("submit", (e) => e.preventDefault());
  document.getElementById("f-reload").addEventListener("click", reload);
  document.addEventListener("loa:lang", reload);
  await reload();
}

main();
