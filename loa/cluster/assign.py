"""Which node serves which commune: the leader's decision, pure and deterministic.

A commune (xã) is never split: all its poles are on one node, so one node fans out each of
the commune's broadcasts. Nodes are filled to at most two thirds of their ``capacity``
(speakers) so that the survivors can absorb a failed node; within that, load follows
capacity (a node with twice the capacity gets twice the poles).

``assign(communes, capacities, current)`` keeps movement small, since every moved commune
is a set of speakers that reconnect:

1. **Keep**: a commune stays on its current node while that node is alive and under its
   limit (largest communes kept first). What an over-full node sheds goes to the
   relatively emptiest node with room, or stays if no node has room.
2. **Place**: new communes, and those of a node that left, go largest first to
   the node whose load relative to capacity is lowest and that stays within its limit.
   When no node has room (the cluster is short of capacity) the commune still goes to the
   relatively emptiest node, which is reported in ``overloaded``: a pole over the limit
   still plays; a pole without a node is silent.
3. **Rebalance**: while a node is more than one commune (the largest commune's poles)
   below its fair share, it takes the largest commune that fits from the node furthest
   above its fair share. So a joining node takes communes from the others until it is
   near its share, and nothing else moves.

Same inputs, same result: every choice breaks ties by id, never by dict order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

FILL_NUMERATOR, FILL_DENOMINATOR = 2, 3  # fill nodes to at most two thirds of capacity


def limit(capacity: int) -> int:
    """The most poles a node of this capacity is given while the cluster has room."""
    return capacity * FILL_NUMERATOR // FILL_DENOMINATOR


@dataclass(frozen=True, slots=True)
class Move:
    """A commune that changes node; ``source`` None when it had none (new, or unplaced)."""

    commune: str
    poles: int
    source: str | None
    target: str


@dataclass(frozen=True, slots=True)
class Assignment:
    placement: Mapping[str, str]  # commune → node; every commune when any node is alive
    loads: Mapping[str, int]  # node → poles
    moves: tuple[Move, ...]  # by commune id
    overloaded: tuple[str, ...] = ()  # nodes above their limit (the cluster lacks capacity)
    unplaced: tuple[str, ...] = field(default=())  # communes with no node (no node alive)

    def communes_of(self, node: str) -> tuple[str, ...]:
        return tuple(sorted(c for c, n in self.placement.items() if n == node))


def _check(communes: Mapping[str, int], capacities: Mapping[str, int]) -> None:
    for commune, poles in communes.items():
        if not isinstance(commune, str) or not commune:
            raise ValueError(f"commune ids must be non-empty strings, got {commune!r}")
        if isinstance(poles, bool) or not isinstance(poles, int) or poles < 0:
            raise ValueError(f"commune {commune}: poles must be an integer >= 0, got {poles!r}")
    for node, capacity in capacities.items():
        if not isinstance(node, str) or not node:
            raise ValueError(f"node ids must be non-empty strings, got {node!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"node {node}: capacity must be an integer >= 1, got {capacity!r}")


class _Plan:
    """The placement being built: loads and per-node communes kept in step."""

    def __init__(self, communes: Mapping[str, int], capacities: Mapping[str, int]) -> None:
        self.poles = communes
        self.cap = capacities
        self.lim = {n: limit(c) for n, c in capacities.items()}
        self.nodes = sorted(capacities)
        self.load = dict.fromkeys(self.nodes, 0)
        self.placement: dict[str, str] = {}

    def put(self, commune: str, node: str) -> None:
        self.placement[commune] = node
        self.load[node] += self.poles[commune]

    def take(self, commune: str) -> None:
        self.load[self.placement.pop(commune)] -= self.poles[commune]

    def fits(self, node: str, poles: int) -> bool:
        return self.load[node] + poles <= self.lim[node]

    def ratio(self, node: str, extra: int = 0) -> tuple[float, str]:
        return (self.load[node] + extra) / self.cap[node], node


def _keep(plan: _Plan, current: Mapping[str, str]) -> None:
    """Step 1. What does not fit on its node moves to the relatively emptiest node with room
    now; with room nowhere it stays (a move that cannot help is churn)."""
    mine: dict[str, list[str]] = {n: [] for n in plan.nodes}
    for commune, node in current.items():
        if commune in plan.poles and node in mine:
            mine[node].append(commune)
    shed: list[tuple[str, str]] = []
    for node in plan.nodes:
        for commune in sorted(mine[node], key=lambda c: (-plan.poles[c], c)):
            if plan.fits(node, plan.poles[commune]):
                plan.put(commune, node)
            else:
                shed.append((commune, node))
    for commune, node in sorted(shed, key=lambda s: (-plan.poles[s[0]], s[0])):
        poles = plan.poles[commune]
        room = [n for n in plan.nodes if n != node and plan.fits(n, poles)]
        plan.put(commune, min(room, key=lambda n: plan.ratio(n, poles)) if room else node)


def _place(plan: _Plan, pending: list[str]) -> None:
    """Step 2: largest first, to the relatively emptiest node with room (else emptiest)."""
    for commune in sorted(pending, key=lambda c: (-plan.poles[c], c)):
        poles = plan.poles[commune]
        room = [n for n in plan.nodes if plan.fits(n, poles)] or plan.nodes
        plan.put(commune, min(room, key=lambda n: plan.ratio(n, poles)))


def _rebalance(plan: _Plan) -> None:
    """Step 3. Each move lowers sum((load - fair)²), so the loop ends; it is bounded too."""
    total, capacity = sum(plan.load.values()), sum(plan.cap.values())
    fair = {n: total * plan.cap[n] / capacity for n in plan.nodes}
    slack = max(plan.poles.values(), default=0)
    on: dict[str, list[str]] = {n: [] for n in plan.nodes}
    for commune, node in sorted(plan.placement.items()):
        on[node].append(commune)
    for _ in range(len(plan.placement) + 1):
        under = [n for n in plan.nodes if plan.load[n] < fair[n] - slack]
        if not under:
            return
        receiver = min(under, key=plan.ratio)
        donors = [n for n in plan.nodes if plan.load[n] > fair[n]]
        donors.sort(key=lambda n: (-(plan.load[n] - fair[n]) / plan.cap[n], n))
        for donor in donors:
            fitting = [c for c in on[donor] if plan.fits(receiver, plan.poles[c])]
            if fitting:
                commune = min(fitting, key=lambda c: (-plan.poles[c], c))
                plan.take(commune)
                plan.put(commune, receiver)
                on[donor].remove(commune)
                on[receiver].append(commune)
                break
        else:
            return


def assign(
    communes: Mapping[str, int],
    capacities: Mapping[str, int],
    current: Mapping[str, str] | None = None,
) -> Assignment:
    """Place every commune (id → poles) on a live node (id → capacity in speakers), starting
    from ``current`` (commune → node; entries for dead nodes or gone communes are ignored)."""
    _check(communes, capacities)
    current = current or {}
    if not capacities:
        return Assignment({}, {}, (), (), tuple(sorted(communes)))
    plan = _Plan(communes, capacities)
    _keep(plan, current)
    _place(plan, [c for c in communes if c not in plan.placement])
    _rebalance(plan)
    moves = tuple(
        Move(c, communes[c], current.get(c), node)
        for c, node in sorted(plan.placement.items())
        if current.get(c) != node
    )
    overloaded = tuple(n for n in plan.nodes if plan.load[n] > plan.lim[n])
    return Assignment(dict(sorted(plan.placement.items())), plan.load, moves, overloaded)
