// The emergency flow: message (a prepared one in one tap) → zones (the operator's own zone
// ticked) → a confirmation naming zones, who will hear it and how often it repeats → ON AIR.
// With the own zone ticked, a prepared message goes straight to the confirmation: the red
// button, the message, PHÁT NGAY — three taps. Repeating emergencies show between plays with
// their next play time and a cancel button; stopping one from the banner asks about repeats.
import { api, errorText } from "./api.js";
import { elapsed, stopBroadcast, targetNames, zoneChecks, checkedZones } from "./broadcast.js";
import { formatDuration, formatTime, t } from "./i18n.js";
import { fillMediaSelect, fillVoiceSelect } from "./media.js";
import { el, keyed, notice, showError } from "./ui.js";

const repeats = { list: [], timer: null, onChange: () => {} };

export function initEmergency(state) {
  const dialog = document.getElementById("em-dialog");
  const errorBox = document.getElementById("em-error");
  const zonesBox = document.getElementById("em-zones");
  const preparedBox = document.getElementById("em-prepared");
  const buttons = {
    cancel: document.getElementById("em-cancel"),
    back: document.getElementById("em-back"),
    next: document.getElementById("em-next"),
    go: document.getElementById("em-go"),
  };
  let step = 1;
  let kind = null; // "prepared", "tts" or "media"
  let prepared = [];
  let chosen = null;

  function show(n) {
    step = n;
    for (const part of dialog.querySelectorAll("[data-step]")) part.hidden = Number(part.dataset.step) !== n;
    for (const dot of dialog.querySelectorAll("[data-step-dot]")) {
      const i = Number(dot.dataset.stepDot);
      dot.className = i === n ? "current" : i < n ? "done" : "";
    }
    buttons.back.hidden = n === 1;
    buttons.next.hidden = n === 3;
    buttons.go.hidden = n !== 3;
    buttons.go.disabled = false;
    showError(errorBox, "");
    dialog.querySelector(".em-body").scrollTop = 0;
  }

  function source() {
    if (kind === "prepared" && chosen) {
      return chosen.media ? { type: "media", id: chosen.media } : { type: "tts", text: chosen.text };
    }
    if (kind === "tts") {
      const text = document.getElementById("em-text").value.trim();
      return text ? { type: "tts", text, voice: document.getElementById("em-voice").value || undefined } : null;
    }
    if (kind === "media") {
      const id = document.getElementById("em-media").value;
      return id ? { type: "media", id } : null;
    }
    return null;
  }

  function what() {
    if (kind === "prepared") return chosen.title;
    if (kind === "media") return document.getElementById("em-media").selectedOptions[0].textContent;
    return `“${source().text}”`;
  }

  function summary() {
    const zones = checkedZones(zonesBox);
    const speakers = state.tree.endpointsIn(zones, state.endpoints);
    const online = speakers.filter((ep) => ep.online).length;
    const offline = speakers.length - online;
    document.getElementById("em-summary").replaceChildren(
      el("p", { class: "big" }, t("em.confirm.zones", { zones: zones.map((z) => state.tree.name(z)).join(", ") })),
      el("p", { class: "big" }, t("em.confirm.speakers", { n: speakers.length, online })),
      offline ? el("p", { class: "offline" }, t("em.confirm.offline", { n: offline })) : null,
      el("p", {}, t("em.confirm.message"), " ", el("b", {}, what())),
      el("p", {}, t("em.confirm.note")),
    );
  }

  function repeatBody() {
    const how = dialog.querySelector('input[name="em-repeat"]:checked').value;
    if (how === "once") return { ok: true };
    const minutes = Number(document.getElementById(how === "hours" ? "em-every-h" : "em-every").value);
    const hours = Number(document.getElementById("em-hours").value);
    const good = Number.isInteger(minutes) && minutes >= 1 && minutes <= 1440;
    if (!good || (how === "hours" && !(Number.isInteger(hours) && hours >= 1 && hours <= 168))) {
      return { ok: false };
    }
    const repeat = { every_s: minutes * 60 };
    if (how === "hours") repeat.for_s = hours * 3600;
    return { ok: true, repeat, minutes };
  }

  function renderPrepared() {
    preparedBox.replaceChildren(
      ...(prepared.length
        ? prepared.map((p) =>
            el(
              "button",
              {
                type: "button",
                class: "prepared",
                dataset: { id: p.id },
                "aria-pressed": String(kind === "prepared" && chosen?.id === p.id),
                title: p.text || p.title,
                onclick: () => pick(p),
              },
              p.title,
            ),
          )
        : [el("p", { class: "muted" }, t("em.prepared.none"))]),
    );
  }

  function pick(p) {
    kind = "prepared";
    chosen = p;
    for (const radio of dialog.querySelectorAll('input[name="em-source"]')) radio.checked = false;
    for (const part of dialog.querySelectorAll("[data-em-source]")) part.hidden = true;
    renderPrepared();
    if (checkedZones(zonesBox).length) {
      summary();
      show(3);
    } else {
      show(2);
    }
  }

  buttons.next.addEventListener("click", () => {
    if (step === 1) {
      if (!source()) return showError(errorBox, t("em.need_message"));
      show(2);
    } else if (step === 2) {
      if (!checkedZones(zonesBox).length) return showError(errorBox, t("em.need_zone"));
      summary();
      show(3);
    }
  });
  buttons.back.addEventListener("click", () => show(step - 1));
  buttons.cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("change", (event) => {
    if (event.target.name !== "em-source") return;
    kind = event.target.value;
    chosen = null;
    renderPrepared();
    for (const part of dialog.querySelectorAll("[data-em-source]")) part.hidden = part.dataset.emSource !== kind;
  });

  buttons.go.addEventListener("click", async () => {
    const how = repeatBody();
    if (!how.ok) return showError(errorBox, t("em.repeat.bad"));
    if (!checkedZones(zonesBox).length) return showError(errorBox, t("em.need_zone"));
    buttons.go.disabled = true;
    const body = {
      source: source(),
      targets: { zones: checkedZones(zonesBox) },
      class: "emergency",
      interrupt: true,
    };
    if (kind === "prepared") body.name = chosen.title;
    if (how.repeat) body.repeat = how.repeat;
    try {
      const bc = await api("POST", "/broadcasts", body);
      state.addBroadcast(bc);
      dialog.close();
      notice(how.repeat ? t("em.started.repeat", { m: how.minutes }) : t("em.started"));
      if (bc.repeat) await refreshRepeats();
    } catch (err) {
      showError(errorBox, errorText(err));
      buttons.go.disabled = false;
    }
  });

  document.getElementById("em-open").addEventListener("click", () => {
    if (!state.allowed.size) return notice(t("em.no_zones"), "error");
    zonesBox.replaceChildren();
    zoneChecks(zonesBox, state, "em-zone");
    const own = state.me.zone && state.allowed.has(state.me.zone) ? state.me.zone : null;
    const ownBox = own && zonesBox.querySelector(`input[value="${CSS.escape(own)}"]`);
    if (ownBox) ownBox.checked = true;
    fillVoiceSelect(document.getElementById("em-voice"));
    fillMediaSelect(document.getElementById("em-media"), state.media);
    document.getElementById("em-text").value = "";
    dialog.querySelector('input[name="em-repeat"][value="once"]').checked = true;
    kind = null;
    chosen = null;
    for (const radio of dialog.querySelectorAll('input[name="em-source"]')) radio.checked = false;
    for (const part of dialog.querySelectorAll("[data-em-source]")) part.hidden = true;
    renderPrepared();
    show(1);
    dialog.showModal();
    api("GET", "/prepared")
      .then((data) => {
        // Redrawn only if the list changed: a tap on a button must not be lost to its
        // replacement by an identical one.
        const changed = JSON.stringify(data.prepared) !== JSON.stringify(prepared);
        prepared = data.prepared;
        if (changed && step === 1) renderPrepared();
      })
      .catch((err) => showError(errorBox, errorText(err)));
  });
  initStopDialog();
  repeats.onChange = () => renderRepeats(state);
  refreshRepeats();
  repeats.timer = setInterval(refreshRepeats, 5000);
  return {
    refresh() {
      if (dialog.open && step === 2) zoneChecks(zonesBox, state, "em-zone");
    },
  };
}

async function refreshRepeats() {
  try {
    repeats.list = (await api("GET", "/repeats")).repeats;
  } catch {
    return; // the connection dot already says the server is away
  }
  repeats.onChange();
}

function repeatOf(bcId) {
  return repeats.list.find((r) => r.playing === bcId || bcId.startsWith(`${r.id}.`)) || null;
}

async function cancelRepeat(r, button) {
  if (button) button.disabled = true;
  try {
    const id = encodeURIComponent(r.id);
    // an emergency bulletin (CAP or API) that repeats is cancelled as a bulletin
    await (r.kind === "bulletin" ? api("POST", `/bulletins/${id}/cancel`) : api("DELETE", `/repeats/${id}`));
    notice(t("rep.cancelled"));
  } catch (err) {
    notice(errorText(err), "error");
    if (button) button.disabled = false;
  }
  await refreshRepeats();
}

let stopTarget = null;

function initStopDialog() {
  const dialog = document.getElementById("stop-dialog");
  document.getElementById("stop-back").addEventListener("click", () => dialog.close());
  document.getElementById("stop-once").addEventListener("click", async () => {
    dialog.close();
    await stopBroadcast(stopTarget.bc, null);
  });
  document.getElementById("stop-all").addEventListener("click", async () => {
    dialog.close();
    await cancelRepeat(stopTarget.repeat, null); // stops the play on air too
  });
}

/** DỪNG on the banner: a plain stop, or (when the emergency repeats) a question first. */
function askStop(bcId, button) {
  const repeat = repeatOf(bcId);
  if (!repeat) return stopBroadcast(bcId, button);
  stopTarget = { bc: bcId, repeat };
  document.getElementById("stop-text").textContent = t("em.stop.text", { m: Math.round(repeat.every_s / 60) });
  document.getElementById("stop-dialog").showModal();
}

/** One strip per repeating emergency: what, how often, its next play, HUỶ LẶP LẠI. */
export function renderRepeats(state) {
  const box = document.getElementById("repeats");
  if (!box) return;
  keyed(
    box,
    repeats.list,
    (r) => r.id,
    (r) =>
      el(
        "div",
        { class: "repeating", dataset: { id: r.id } },
        el("b", { class: "repeating-title" }),
        el("span", { class: "repeating-text" }),
        state.canEmergency() && state.canStopFrom(r)
          ? el("button", { type: "button", class: "btn btn-danger btn-cancel-repeat", onclick: (e) => cancelRepeat(r, e.currentTarget) })
          : null,
      ),
    (node, r) => {
      node.querySelector(".repeating-title").textContent = t("rep.title");
      const m = Math.round(r.every_s / 60);
      const parts = [
        r.what,
        targetNames(state, r),
        t("rep.every", { m }),
        r.until_at ? t("rep.until", { time: formatTime(r.until_at, false) }) : t("rep.until_cancelled"),
        r.playing ? t("rep.playing") : r.next_at ? t("rep.next", { time: formatTime(r.next_at, false) }) : null,
      ];
      node.querySelector(".repeating-text").textContent = parts.filter(Boolean).join(" · ");
      const cancel = node.querySelector(".btn-cancel-repeat");
      if (cancel) cancel.textContent = t("rep.cancel");
    },
  );
}

/** One full-width banner per emergency on air: zones, elapsed time, speakers, DỪNG. */
export function renderOnAir(state) {
  keyed(
    document.getElementById("onair"),
    state.broadcasts.filter((bc) => bc.class === "emergency"),
    (bc) => bc.id,
    (bc) =>
      el(
        "div",
        { class: "onair", role: "alert", dataset: { id: bc.id } },
        el("div", { class: "onair-title" }),
        el(
          "div",
          { class: "onair-detail" },
          el("div", { class: "onair-zones" }),
          el("b", { class: "onair-hearing" }),
          " · ",
          el("b", { class: "onair-elapsed" }),
        ),
        state.canEmergency() && state.canStopFrom(bc)
          ? el("button", { type: "button", class: "btn btn-stop", onclick: (e) => askStop(bc.id, e.currentTarget) })
          : null,
      ),
    (node, bc) => {
      node.querySelector(".onair-title").textContent = t("em.onair");
      node.querySelector(".onair-zones").textContent = targetNames(state, bc);
      node.querySelector(".onair-hearing").textContent = t("em.hearing", { n: bc.hearing ?? 0 });
      node.querySelector(".onair-elapsed").textContent = bc.started_at
        ? formatDuration(elapsed(state, bc))
        : t(`bcstate.${bc.state}`);
      const stop = node.querySelector(".btn-stop");
      if (stop) stop.textContent = t("em.stop");
    },
  );
  renderRepeats(state);
}
