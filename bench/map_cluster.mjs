// The dashboard map's clustering (loa/web/static/js/map.js `cluster`) on a made-up province:
// 10 districts × 15 communes × 5 villages × 3 poles = 2,250 poles in the map's 400×300 box.
// Prints, for 100, 500 and 2,250 poles, the groups drawn, the median of 7 runs and the
// overlapping pairs left (must be 0). Run: node bench/map_cluster.mjs
import { cluster } from "../loa/web/static/js/map.js";
import { ZoneTree } from "../loa/web/static/js/zones.js";

const zones = [{ id: "p", parent: null, name: "P" }];
const points = [];
let seed = 1;
const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
for (let d = 0; d < 10; d += 1) {
  zones.push({ id: `d${d}`, parent: "p", name: `D${d}` });
  const [dx, dy] = [20 + rnd() * 360, 20 + rnd() * 260];
  for (let c = 0; c < 15; c += 1) {
    const cid = `d${d}c${c}`;
    zones.push({ id: cid, parent: `d${d}`, name: cid });
    const [cx, cy] = [dx + rnd() * 40 - 20, dy + rnd() * 40 - 20];
    for (let v = 0; v < 5; v += 1) {
      const vid = `${cid}v${v}`;
      zones.push({ id: vid, parent: cid, name: vid });
      for (let k = 0; k < 3; k += 1) {
        const ep = { id: `${vid}e${k}`, zone: vid };
        points.push({ ep, x: cx + rnd() * 6, y: cy + rnd() * 6, state: "online" });
      }
    }
  }
}
const tree = new ZoneTree(zones);
for (const n of [100, 500, 2250]) {
  const pts = points.slice(0, n);
  const times = [];
  let groups = [];
  for (let run = 0; run < 7; run += 1) {
    const t0 = performance.now();
    groups = cluster(pts, tree);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  let overlapping = 0;
  for (let i = 0; i < groups.length; i += 1) {
    for (let j = i + 1; j < groups.length; j += 1) {
      const [a, b] = [groups[i], groups[j]];
      if (Math.hypot(a.x - b.x, a.y - b.y) < a.r + b.r) overlapping += 1;
    }
  }
  const members = groups.reduce((s, g) => s + g.members.length, 0);
  console.log(
    `${n} poles: ${groups.length} groups (${members} poles in them), ` +
      `median ${times[3].toFixed(1)} ms, overlapping pairs ${overlapping}`,
  );
}
