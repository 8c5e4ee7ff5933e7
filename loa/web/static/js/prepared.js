// Admins edit the prepared emergency messages the emergency dialog offers: a text or a
// recording, for every zone or one zone (PUT/DELETE /api/v1/prepared/{id}).
import { api, errorText } from "./api.js";
import { t } from "./i18n.js";
import { fillMediaSelect } from "./media.js";
import { el, notice, showError } from "./ui.js";

/** "Lũ quét" in zone "c0" → "lu-quet-c0": the id a new message gets. */
export function slug(title, zone) {
  const base = `${title} ${zone || ""}`
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/đ/g, "d")
    .replace(/Đ/g, "D")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return (base || "tin").slice(0, 40).replace(/-+$/, "");
}

export function initPrepared(state) {
  const card = document.getElementById("prepared-card");
  const list = document.getElementById("pm-list");
  const form = document.getElementById("pm-form");
  const errorBox = document.getElementById("pm-error");
  const fields = {
    title: document.getElementById("pm-title"),
    zone: document.getElementById("pm-zone"),
    text: document.getElementById("pm-text"),
    media: document.getElementById("pm-media"),
    position: document.getElementById("pm-position"),
  };
  let editing = null; // the id being edited, or null for a new message
  card.hidden = false;

  function kind() {
    return form.querySelector('input[name="pm-kind"]:checked').value;
  }

  function showKind() {
    for (const part of form.querySelectorAll("[data-pm-kind]")) part.hidden = part.dataset.pmKind !== kind();
  }

  function fillZones() {
    const keep = fields.zone.value;
    fields.zone.replaceChildren(
      el("option", { value: "" }, t("pm.zone.all")),
      ...state.tree.walk().map(({ id, depth }) => el("option", { value: id }, `${"\u00a0\u00a0".repeat(depth)}${state.tree.name(id)}`)),
    );
    fields.zone.value = keep;
  }

  function load(p) {
    editing = p ? p.id : null;
    fields.title.value = p ? p.title : "";
    fillZones();
    fields.zone.value = p?.zone || "";
    fields.text.value = p?.text || "";
    fillMediaSelect(fields.media, state.media, p?.media || undefined);
    fields.position.value = p ? p.position : 100;
    form.querySelector(`input[name="pm-kind"][value="${p?.media ? "media" : "text"}"]`).checked = true;
    showKind();
    document.getElementById("pm-form-title").textContent = p ? t("pm.edit", { title: p.title }) : t("pm.new");
    showError(errorBox, "");
  }

  async function refresh() {
    let items;
    try {
      items = (await api("GET", "/prepared")).prepared;
    } catch (err) {
      return showError(errorBox, errorText(err));
    }
    list.replaceChildren(
      ...items.map((p) =>
        el(
          "li",
          { class: "pm-item", dataset: { id: p.id } },
          el("b", {}, p.title),
          el("span", { class: "muted small" }, ` · ${p.zone ? state.tree.name(p.zone) : t("pm.zone.all")}`),
          el("p", { class: "small" }, p.media ? t("pm.recording") : p.text),
          el("button", { type: "button", class: "btn btn-small pm-edit", onclick: () => load(p) }, t("pm.edit.button")),
          el("button", { type: "button", class: "btn btn-small pm-delete", onclick: (e) => remove(p, e.currentTarget) }, t("pm.delete")),
        ),
      ),
    );
  }

  async function remove(p, button) {
    button.disabled = true;
    try {
      await api("DELETE", `/prepared/${encodeURIComponent(p.id)}`);
      notice(t("pm.deleted", { title: p.title }));
      if (editing === p.id) load(null);
    } catch (err) {
      notice(errorText(err), "error");
      button.disabled = false;
    }
    await refresh();
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "pm-kind") showKind();
  });
  document.getElementById("pm-new").addEventListener("click", () => load(null));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const title = fields.title.value.trim();
    const body = { title, zone: fields.zone.value || null, position: Number(fields.position.value) };
    if (kind() === "text") body.text = fields.text.value.trim();
    else body.media = fields.media.value;
    if (!title || (kind() === "text" ? !body.text : !body.media)) return showError(errorBox, t("pm.need"));
    const id = editing || slug(title, body.zone);
    try {
      await api("PUT", `/prepared/${encodeURIComponent(id)}`, body);
      notice(t("pm.saved", { title }));
      load(null);
      await refresh();
    } catch (err) {
      showError(errorBox, errorText(err));
    }
  });
  load(null);
  refresh();
  return { refresh, fillZones };
}
