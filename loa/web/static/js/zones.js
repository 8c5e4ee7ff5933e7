// The zone tree (any depth) and what the dashboard counts per zone.

export class ZoneTree {
  constructor(zones) {
    this.byId = new Map(zones.map((z) => [z.id, z]));
    this.children = new Map(zones.map((z) => [z.id, []]));
    this.roots = [];
    for (const z of zones) {
      if (z.parent && this.children.has(z.parent)) this.children.get(z.parent).push(z.id);
      else this.roots.push(z.id);
    }
  }

  name(id) {
    return this.byId.get(id)?.name ?? id;
  }

  /** The zone and everything under it. */
  subtree(id) {
    const out = new Set();
    const stack = [id];
    while (stack.length) {
      const z = stack.pop();
      if (out.has(z) || !this.byId.has(z)) continue;
      out.add(z);
      stack.push(...this.children.get(z));
    }
    return out;
  }

  /** Zones a user may target: an operator's subtree, everything for an administrator. */
  allowed(me) {
    if (!me || me.role === "viewer") return new Set();
    if (me.role === "admin" || !me.zone) return new Set(this.byId.keys());
    return this.subtree(me.zone);
  }

  /** Depth-first order with depths, from the given roots (default: the tree's roots). */
  walk(roots = this.roots, depth = 0, out = []) {
    for (const id of roots) {
      out.push({ id, depth });
      this.walk(this.children.get(id), depth + 1, out);
    }
    return out;
  }

  /** The topmost allowed zones (an operator's own zone, or the tree's roots). */
  allowedRoots(allowed) {
    return [...allowed].filter((id) => !allowed.has(this.byId.get(id)?.parent));
  }

  /** {zone: {online, offline, playing, total}} counting each zone's whole subtree. */
  counts(endpoints) {
    const counts = new Map([...this.byId.keys()].map((id) => [id, { online: 0, offline: 0, playing: 0, total: 0 }]));
    for (const ep of endpoints) {
      let zone = ep.zone;
      const seen = new Set();
      while (zone && counts.has(zone) && !seen.has(zone)) {
        seen.add(zone);
        const c = counts.get(zone);
        c.total += 1;
        if (ep.online) c.online += 1;
        else c.offline += 1;
        if (ep.online && ep.playing) c.playing += 1;
        zone = this.byId.get(zone).parent;
      }
    }
    return counts;
  }

  /** Endpoints inside any of the zones' subtrees. */
  endpointsIn(zoneIds, endpoints) {
    const inside = new Set();
    for (const id of zoneIds) for (const z of this.subtree(id)) inside.add(z);
    return endpoints.filter((ep) => inside.has(ep.zone));
  }
}
