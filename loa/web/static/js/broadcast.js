// Start a broadcast (media, TTS or a stream URL) to chosen zones; list and stop active ones.
import { api, errorText } from "./api.js";
import { formatDuration, t } from "./i18n.js";
import { fillMediaSelect, fillVoiceSelect, uploadMedia } from "./media.js";
import { el, keyed, notice, showError } from "./ui.js";

/** Checkboxes for the zones a user may target, indented by depth, with speaker counts. */
export function zoneChecks(container, state, name) {
  const checked = new Set([...container.querySelectorAll("input:checked")].map((i) => i.value));
  const roots = state.tree.allowedRoots(state.allowed);
  const counts = state.counts;
  const rows = state.tree.walk(roots).map(({ id, depth }) => {
    const c = counts.get(id) || { total: 0, online: 0 };
    return el(
      "label",
      { class: "zone-check", style: `padding-left:${0.4 + depth * 1.2}rem` },
      el("input", { type: "checkbox", name, value: id, checked: checked.has(id) }),
      el("span", {}, state.tree.name(id)),
      el("span", { class: "n" }, t("zones.speakers", { total: c.total, online: c.online })),
    );
  });
  container.replaceChildren(...rows);
}

export function checkedZones(container) {
  return [...container.querySelectorAll("input:checked")].map((i) => i.value);
}

function sourceFromForm(form) {
  const kind = form.querySelector('input[name="source"]:checked').value;
  if (kind === "media") {
    const id = form.querySelector("#bc-media").value;
    return id ? { type: "media", id } : null;
  }
  if (kind === "tts") {
    const text = form.querySelector("#bc-text").value.trim();
    // no voice named ("" chosen): the server speaks in the target zone's
    return text ? { type: "tts", text, voice: form.querySelector("#bc-voice").value || undefined } : null;
  }
  const url = form.querySelector("#bc-url").value.trim();
  return url ? { type: "url", url } : null;
}

export function initBroadcastForm(state, refreshMedia) {
  const form = document.getElementById("bc-form");
  const errorBox = document.getElementById("bc-error");
  const sections = form.querySelectorAll("[data-source]");
  fillVoiceSelect(form.querySelector("#bc-voice"));
  form.addEventListener("change", (event) => {
    if (event.target.name !== "source") return;
    for (const s of sections) s.hidden = s.dataset.source !== event.target.value;
  });

  const upload = form.querySelector("#bc-upload");
  const uploadStatus = form.querySelector("#upload-status");
  upload.addEventListener("change", async () => {
    const file = upload.files[0];
    if (!file) return;
    uploadStatus.textContent = t("bc.uploading", { name: file.name });
    try {
      const info = await uploadMedia(file);
      await refreshMedia(info.id);
      uploadStatus.textContent = t("bc.uploaded", { name: info.name, duration: formatDuration(info.duration_s) });
    } catch (err) {
      uploadStatus.textContent = "";
      showError(errorBox, errorText(err));
    } finally {
      upload.value = "";
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(errorBox, "");
    const source = sourceFromForm(form);
    const zones = checkedZones(form.querySelector("#bc-zones"));
    if (!source) return showError(errorBox, t("bc.need_source"));
    if (!zones.length) return showError(errorBox, t("bc.need_zone"));
    const body = { source, targets: { zones }, class: form.querySelector("#bc-class").value };
    const name = form.querySelector("#bc-name").value.trim();
    if (name) body.name = name;
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const bc = await api("POST", "/broadcasts", body);
      state.addBroadcast(bc);
      notice(t("bc.started", { what: bc.what }));
    } catch (err) {
      showError(errorBox, errorText(err));
    } finally {
      button.disabled = false;
    }
  });
  return { fillMedia: (media, keep) => fillMediaSelect(form.querySelector("#bc-media"), media, keep) };
}

export async function stopBroadcast(id, button) {
  if (button) button.disabled = true;
  try {
    await api("DELETE", `/broadcasts/${encodeURIComponent(id)}`);
    notice(t("bc.stopped"));
  } catch (err) {
    notice(errorText(err), "error");
    if (button) button.disabled = false;
  }
}

function targetNames(state, bc) {
  const names = bc.targets.zones.map((z) => state.tree.name(z));
  if (bc.targets.endpoints.length) names.push(t("active.endpoints", { n: bc.targets.endpoints.length }));
  return names.join(", ");
}

export function elapsed(state, bc) {
  return bc.started_at ? state.serverNow() - bc.started_at : null;
}

export function renderActive(state) {
  const list = document.getElementById("active-list");
  document.getElementById("active-empty").hidden = state.broadcasts.length > 0;
  keyed(
    list,
    state.broadcasts,
    (bc) => bc.id,
    (bc) => {
      const emergency = bc.class === "emergency";
      const canStop = state.canStopFrom(bc) && (!emergency || state.canEmergency());
      return el(
        "li",
        { class: `active-item${emergency ? " emergency" : ""}` },
        el("span", { class: `pill ${emergency ? "pill-emergency" : "pill-class"}` }),
        el("span", { class: "what" }),
        canStop
          ? el("button", { type: "button", class: "btn btn-small", onclick: (e) => stopBroadcast(bc.id, e.currentTarget) })
          : null,
        el("span", { class: "meta" }),
      );
    },
    (node, bc) => {
      node.querySelector(".pill").textContent = t(`class.${bc.class}`);
      node.querySelector(".what").textContent = bc.what;
      const button = node.querySelector("button");
      if (button) button.textContent = t("bc.stop");
      node.querySelector(".meta").textContent = [
        targetNames(state, bc),
        t(`bcstate.${bc.state}`),
        t("active.hearing", { n: bc.hearing ?? 0 }),
        formatDuration(elapsed(state, bc)),
      ].join(" · ");
    },
  );
}

export { targetNames };
