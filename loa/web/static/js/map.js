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

// Pins closer than this (viewBox units; the map is 400 wide) would overlap: they cluster.
const MIN_GAP = 26;
const PIN_R = 9;
const ORDER = { offline: 0, online: 1, playing: 2, emergency: 3 };

/** The zones from `zone` up to the root. */
function ancestors(tree, zone) {
  const out = [];
  const seen = new Set();
  for (let z = zone; z && !seen.has(z); z = tree?.byId.get(z)?.parent) {
    seen.add(z);
    out.push(z);
  }
  return out;
}

/** The deepest zone holding both, or null when they share no ancestor. */
function commonZone(tree, a, b) {
  const up = new Set(ancestors(tree, a));
  return ancestors(tree, b).find((z) => up.has(z)) ?? null;
}

/**
 * Group pins that would overlap, by zone: two overlapping groups become one group for the
 * deepest zone holding both, and a zone's group takes every pin of its subtree, so its count
 * is the zone's. Single pins that overlap nothing stay single. Returns
 * [{zone, members, x, y}] (zone null for a single pin).
 */
export function cluster(points, tree) {
  let groups = points.map((p) => ({ zone: null, home: p.ep.zone, members: [p] }));
  const centre = (g) => {
    g.x = g.members.reduce((s, p) => s + p.x, 0) / g.members.length;
    g.y = g.members.reduce((s, p) => s + p.y, 0) / g.members.length;
  };
  groups.forEach(centre);
  const radius = (g) => (g.members.length > 1 ? 12 + Math.min(6, Math.log2(g.members.length) * 2) : PIN_R);
  for (let round = 0; round < points.length; round += 1) {
    let pair = null;
    for (let i = 0; i < groups.length && !pair; i += 1) {
      for (let j = i + 1; j < groups.length; j += 1) {
        const [a, b] = [groups[i], groups[j]];
        if (Math.hypot(a.x - b.x, a.y - b.y) < Math.max(MIN_GAP, radius(a) + radius(b) + 4)) {
          pair = [a, b];
          break;
        }
      }
    }
    if (!pair) break;
    const [a, b] = pair;
    const zone = commonZone(tree, a.zone ?? a.home, b.zone ?? b.home) ?? a.zone ?? a.home;
    const inside = tree ? tree.subtree(zone) : new Set([zone]);
    const merged = { zone, home: zone, members: [] };
    const rest = [];
    for (const g of groups) {
      if (g === a || g === b || inside.has(g.zone ?? g.home)) merged.members.push(...g.members);
      else rest.push(g);
    }
    centre(merged);
    groups = [...rest, merged];
  }
  return groups.map((g) => ({ zone: g.zone, members: g.members, x: g.x, y: g.y, r: radius(g) }));
}

function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

/**
 * Draw endpoints into container: a pin per speaker, or, where pins would overlap, one
 * numbered circle per zone (tapping it calls onZone(zone): the dashboard then shows that
 * zone, fitted to the map, so its pins spread out). A label is drawn where it overlaps no
 * other label or pin; every other one shows on hover or focus, and every pin has a tooltip.
 * onSelect(id) when a pin is tapped. Returns how many endpoints have no coordinates.
 */
export function drawMap(container, endpoints, classes, selected, onSelect, options = {}) {
  const { tree = null, onZone = null } = options;
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
    container.replaceChildren(root);
    return endpoints.length;
  }
  const project = projector(placed.map((ep) => ep.location));
  const points = placed.map((ep) => {
    const [x, y] = project(ep.location.lat, ep.location.lon);
    return { ep, x, y, state: endpointState(ep, classes) };
  });
  const groups = cluster(points, tree);
  // The most urgent drawn last (on top); labels after every pin, placed where they fit.
  const worst = (g) => Math.max(...g.members.map((p) => ORDER[p.state]));
  groups.sort((a, b) => worst(a) - worst(b));
  const taken = groups.map((g) => ({ x: g.x - g.r, y: g.y - g.r, w: 2 * g.r, h: 2 * g.r }));
  const labels = [];
  for (const g of groups) {
    const node = svg("g", { class: "pin" });
    if (g.members.length === 1) {
      const { ep, state } = g.members[0];
      node.setAttribute("data-id", ep.id);
      const dot = svg("circle", {
        class: `ep ep-${state}${ep.id === selected ? " selected" : ""}`,
        cx: g.x.toFixed(1),
        cy: g.y.toFixed(1),
        r: PIN_R,
        tabindex: 0,
        "data-id": ep.id,
      });
      dot.append(svg("title", {}, `${ep.name} — ${t(`state.${state === "online" ? "idle" : state}`)}`));
      dot.addEventListener("click", () => onSelect(ep.id));
      dot.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") onSelect(ep.id);
      });
      node.append(dot);
      labels.push({ node, text: ep.name, px: g.x, py: g.y, r: PIN_R });
    } else {
      const counts = { online: 0, offline: 0, playing: 0, emergency: 0 };
      for (const p of g.members) counts[p.state] += 1;
      const name = tree?.name(g.zone) ?? g.zone;
      const state = Object.keys(ORDER).reduce((top, s) => (counts[s] ? s : top), "offline");
      node.setAttribute("data-zone", g.zone);
      const circle = svg("circle", {
        class: `cluster ep-${state}`,
        cx: g.x.toFixed(1),
        cy: g.y.toFixed(1),
        r: g.r.toFixed(1),
        tabindex: 0,
        "data-zone": g.zone,
      });
      const live = counts.online + counts.playing + counts.emergency;
      circle.append(
        svg("title", {}, t("map.cluster", { zone: name, n: g.members.length, online: live, playing: counts.playing + counts.emergency })),
      );
      const zoom = () => onZone?.(g.zone);
      circle.addEventListener("click", zoom);
      circle.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") zoom();
      });
      node.append(circle);
      node.append(svg("text", { class: "count", x: g.x.toFixed(1), y: (g.y + 4).toFixed(1), "text-anchor": "middle" }, g.members.length));
      labels.push({ node, text: name, px: g.x, py: g.y, r: g.r });
    }
    root.append(node);
  }
  container.replaceChildren(root);
  // Labels: measured once, then tried right, left, above and below their pin; kept at the
  // first place that collides with nothing drawn so far, else shown on hover only.
  for (const label of labels) {
    const text = svg("text", { class: "label", x: 0, y: 0 }, label.text);
    label.node.append(text);
    let b;
    try {
      b = text.getBBox();
    } catch {
      b = { x: 0, y: -10, width: label.text.length * 6, height: 13 };
    }
    const [w, h] = [b.width + 2, b.height + 2];
    const [px, py, r] = [label.px, label.py, label.r];
    const spots = [
      [px + r + 3, py + 4],
      [px - r - 3 - b.width, py + 4],
      [px - b.width / 2, py - r - 4],
      [px - b.width / 2, py + r + 3 + b.height * 0.8],
    ];
    const spot = spots.find(([x, y]) => {
      const box = { x: x + b.x - 1, y: y + b.y - 1, w, h };
      const inside = box.x >= 0 && box.y >= 0 && box.x + w <= W && box.y + h <= H;
      if (!inside || taken.some((t) => overlaps(t, box))) return false;
      taken.push(box);
      return true;
    });
    const [x, y] = spot ?? spots[0];
    text.setAttribute("x", x.toFixed(1));
    text.setAttribute("y", y.toFixed(1));
    if (!spot) {
      text.classList.add("label-hover"); // shown on hover or focus only, drawn on top then
      const raise = () => label.node.parentNode?.append(label.node);
      label.node.addEventListener("pointerenter", raise);
      label.node.addEventListener("focusin", raise);
    }
  }
  return endpoints.length - placed.length;
}
