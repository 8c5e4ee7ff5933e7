// The map: endpoints placed by latitude/longitude in an inline SVG (no tile server needed).
import { t } from "./i18n.js";

// The SVG namespace is an identifier for createElementNS, never fetched.
const SVG_NS = "http://www.w3.org/2000/svg";
const W = 400;
const H = 300;
const PAD = 24;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text != null) node.textContent = text;
  return node;
}

export function endpointState(ep, classes) {
  if (!ep.online) return "offline";
  if (!ep.playing) return "online";
  return classes.get(ep.playing) === "emergency" ? "emergency" : "playing";
}

/** Equirectangular, corrected for latitude, fitted to the box keeping the aspect ratio. */
function projector(points) {
  const lats = points.map((p) => p.lat);
  const lons = points.map((p) => p.lon);
  const lat0 = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((lat0 * Math.PI) / 180);
  let [x0, x1] = [Math.min(...lons) * k, Math.max(...lons) * k];
  let [y0, y1] = [-Math.max(...lats), -Math.min(...lats)];
  const span = Math.max(x1 - x0, y1 - y0, 0.005);
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  const scale = Math.min((W - 2 * PAD) / span, (H - 2 * PAD) / span) * 0.95;
  return (lat, lon) => [W / 2 + (lon * k - cx) * scale, H / 2 + (-lat - cy) * scale];
}

/** Draw endpoints into container; onSelect(id) when one is tapped. Returns those not placed. */
export function drawMap(container, endpoints, classes, selected, onSelect) {
  const placed = endpoints.filter(
    (ep) => ep.location && Number.isFinite(ep.location.lat) && Number.isFinite(ep.location.lon),
  );
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": t("map.title") });
  for (let i = 1; i < 8; i += 1) {
    root.append(svg("line", { class: "grid-line", x1: (W * i) / 8, y1: 0, x2: (W * i) / 8, y2: H }));
    if (i < 6) root.append(svg("line", { class: "grid-line", x1: 0, y1: (H * i) / 6, x2: W, y2: (H * i) / 6 }));
  }
  if (!placed.length) {
    root.append(svg("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" }, t("map.none")));
  } else {
    const project = projector(placed.map((ep) => ep.location));
    const labels = placed.length <= 30;
    // Offline first, so the ones that matter are drawn on top.
    const order = { offline: 0, online: 1, playing: 2, emergency: 3 };
    const sorted = [...placed].sort(
      (a, b) => order[endpointState(a, classes)] - order[endpointState(b, classes)],
    );
    for (const ep of sorted) {
      const [x, y] = project(ep.location.lat, ep.location.lon);
      const state = endpointState(ep, classes);
      const dot = svg("circle", {
        class: `ep ep-${state}${ep.id === selected ? " selected" : ""}`,
        cx: x.toFixed(1),
        cy: y.toFixed(1),
        r: 9,
        tabindex: 0,
        "data-id": ep.id,
      });
      dot.append(svg("title", {}, `${ep.name} — ${t(`state.${state === "online" ? "idle" : state}`)}`));
      dot.addEventListener("click", () => onSelect(ep.id));
      dot.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") onSelect(ep.id);
      });
      root.append(dot);
      if (labels) root.append(svg("text", { class: "label", x: (x + 12).toFixed(1), y: (y + 4).toFixed(1) }, ep.name));
    }
  }
  container.replaceChildren(root);
  return endpoints.length - placed.length;
}
