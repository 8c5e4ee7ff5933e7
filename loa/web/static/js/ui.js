// Small DOM helpers shared by the pages: element builder, notices, the top bar.
import { csrfToken } from "./api.js";
import { t } from "./i18n.js";

/** el("td", {class: "x", dataset: {id: 1}, onclick: f}, "text", child, ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && key !== "list" && key !== "form") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let noticeTimer = null;

/** A message at the top of the page; errors stay until the next message. */
export function notice(message, kind = "info") {
  const box = document.getElementById("notice");
  if (!box) return;
  clearTimeout(noticeTimer);
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.hidden = false;
  if (kind !== "error") noticeTimer = setTimeout(() => (box.hidden = true), 6000);
}

export function showError(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

export function roleName(role) {
  return t(`role.${role}`);
}

/** Fill the top bar: who is signed in, which page is current, logging out. */
export function initHeader(me) {
  const page = document.body.dataset.page;
  let current = null;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === page) {
      link.setAttribute("aria-current", "page");
      current = link;
    }
  }
  // Phones: one line (brand, live dot, this page's name, a menu button); the menu opens below.
  const toggle = document.getElementById("menu-toggle");
  const bar = toggle?.closest(".topbar");
  toggle?.addEventListener("click", () => {
    const open = !bar.classList.contains("open");
    bar.classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", String(open));
  });
  const label = document.getElementById("user-label");
  const pageName = document.getElementById("page-name");
  const update = () => {
    if (label && me) label.textContent = `${me.username} · ${roleName(me.role)}`;
    if (pageName && current) pageName.textContent = current.textContent;
  };
  update();
  document.addEventListener("loa:lang", update);
  const form = document.getElementById("logout-form");
  form?.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await fetch("/logout", {
        method: "POST",
        headers: { "X-CSRF-Token": csrfToken() },
        body: new URLSearchParams({ csrf: csrfToken() }),
        credentials: "same-origin",
      });
    } finally {
      location.assign("/login");
    }
  });
}

export function setConnState(state) {
  const dot = document.getElementById("conn");
  if (!dot) return;
  dot.dataset.state = state;
  const key = `live.${state}`;
  dot.setAttribute("data-i18n-title", key);
  dot.title = t(key);
}

/** Keep one element per item (by key) so a button being pressed is never replaced mid-tap. */
export function keyed(container, items, key, create, update) {
  const existing = new Map([...container.children].map((node) => [node.dataset.key, node]));
  const nodes = items.map((item) => {
    const k = String(key(item));
    let node = existing.get(k);
    if (!node) {
      node = create(item);
      node.dataset.key = k;
    }
    update(node, item);
    return node;
  });
  for (const [k, node] of existing) if (!nodes.includes(node)) node.remove(), existing.delete(k);
  nodes.forEach((node, i) => {
    if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
  });
}
