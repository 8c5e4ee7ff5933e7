// A page with nothing live on it: the language and the top bar only.
import { errorText, loadMe } from "./api.js";
import { initI18n } from "./i18n.js";
import { initHeader, notice } from "./ui.js";

async function main() {
  document.getElementById("conn")?.setAttribute("hidden", ""); // nothing live on this page
  await initI18n();
  try {
    initHeader(await loadMe());
  } catch (err) {
    notice(errorText(err), "error");
  }
}

main();
