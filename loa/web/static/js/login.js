// The login page: the form works without script; with it, errors show in the reader's
// language without leaving the page.
import { has, initI18n, t } from "./i18n.js";

const form = document.getElementById("login-form");
const box = document.getElementById("login-error");

function showError(key, fallback) {
  box.dataset.i18n = has(key) ? key : "";
  box.textContent = has(key) ? t(key) : fallback;
  box.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const resp = await fetch("/login", {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
    });
    if (resp.ok) {
      // Signed in: the redirect to `next` was followed; go there for real.
      location.assign(resp.redirected ? resp.url : form.elements.next.value || "/");
      return;
    }
    const type = resp.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      const err = ((await resp.json().catch(() => null)) || {}).error || {};
      showError(`login.error.${err.code}`, err.message || resp.statusText);
    } else {
      // The server rendered the login page with its message: take the message from it.
      const page = new DOMParser().parseFromString(await resp.text(), "text/html");
      const sent = page.getElementById("login-error");
      showError(sent?.dataset.i18n || "", sent?.textContent?.trim() || resp.statusText);
    }
  } catch (err) {
    showError("error.network", String(err));
  } finally {
    button.disabled = false;
  }
});

initI18n();
