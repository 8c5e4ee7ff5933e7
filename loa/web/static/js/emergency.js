// The emergency flow: zones → message → a confirmation naming zones and speakers → ON AIR.
import { api, errorText } from "./api.js";
import { elapsed, stopBroadcast, targetNames, zoneChecks, checkedZones } from "./broadcast.js";
import { formatDuration, t } from "./i18n.js";
import { fillMediaSelect, fillVoiceSelect } from "./media.js";
import { el, keyed, notice, showError } from "./ui.js";

export function initEmergency(state) {
  const dialog = document.getElementById("em-dialog");
  const errorBox = document.getElementById("em-error");
  const zonesBox = document.getElementById("em-zones");
  const buttons = {
    cancel: document.getElementById("em-cancel"),
    back: document.getElementById("em-back"),
    next: document.getElementById("em-next"),
    go: document.getElementById("em-go"),
  };
  let step = 1;

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
  }

  function source() {
    const kind = dialog.querySelector('input[name="em-source"]:checked').value;
    if (kind === "tts") {
      const text = document.getElementById("em-text").value.trim();
      return text ? { type: "tts", text, voice: document.getElementById("em-voice").value } : null;
    }
    const id = document.getElementById("em-media").value;
    return id ? { type: "media", id } : null;
  }

  function summary() {
    const zones = checkedZones(zonesBox);
    const speakers = state.tree.endpointsIn(zones, state.endpoints);
    const online = speakers.filter((ep) => ep.online).length;
    const src = source();
    const what = src.type === "tts" ? `“${src.text}”` : document.getElementById("em-media").selectedOptions[0].textContent;
    document.getElementById("em-summary").replaceChildren(
      el("p", { class: "big" }, t("em.confirm.zones", { zones: zones.map((z) => state.tree.name(z)).join(", ") })),
      el("p", { class: "big" }, t("em.confirm.speakers", { n: speakers.length, online })),
      el("p", {}, t("em.confirm.message"), " ", el("b", {}, what)),
      el("p", {}, t("em.confirm.note")),
    );
  }

  buttons.next.addEventListener("click", () => {
    if (step === 1) {
      if (!checkedZones(zonesBox).length) return showError(errorBox, t("em.need_zone"));
      show(2);
    } else if (step === 2) {
      if (!source()) return showError(errorBox, t("em.need_message"));
      summary();
      show(3);
    }
  });
  buttons.back.addEventListener("click", () => show(step - 1));
  buttons.cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("change", (event) => {
    if (event.target.name !== "em-source") return;
    for (const part of dialog.querySelectorAll("[data-em-source]")) part.hidden = part.dataset.emSource !== event.target.value;
  });

  buttons.go.addEventListener("click", async () => {
    buttons.go.disabled = true;
    const body = {
      source: source(),
      targets: { zones: checkedZones(zonesBox) },
      class: "emergency",
      interrupt: true,
    };
    try {
      const bc = await api("POST", "/broadcasts", body);
      state.addBroadcast(bc);
      dialog.close();
      notice(t("em.started"));
    } catch (err) {
      showError(errorBox, errorText(err));
      buttons.go.disabled = false;
    }
  });

  document.getElementById("em-open").addEventListener("click", () => {
    if (!state.allowed.size) return notice(t("em.no_zones"), "error");
    zonesBox.replaceChildren();
    zoneChecks(zonesBox, state, "em-zone");
    fillVoiceSelect(document.getElementById("em-voice"));
    fillMediaSelect(document.getElementById("em-media"), state.media);
    document.getElementById("em-text").value = "";
    show(1);
    dialog.showModal();
  });
  return {
    refresh() {
      if (dialog.open && step === 1) zoneChecks(zonesBox, state, "em-zone");
    },
  };
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
          ? el("button", { type: "button", class: "btn btn-stop", onclick: (e) => stopBroadcast(bc.id, e.currentTarget) })
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
}
