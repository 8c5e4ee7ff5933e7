"""The cluster's Redis protocol as data: key and channel names (``loa:<cluster>:…``) and the
scripts that run inside Redis, so that each check-and-act is atomic. See docs/DESIGN.md,
"Cluster protocol"; ``loa.relay.bus`` runs them."""

from __future__ import annotations

# Take the lease: draw a token (the counter first raised to the candidate's highest seen
# token, so tokens grow across a Redis restart that lost the counter), then SET NX PX.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder} end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. ' ' .. string.format('%d', token)
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2])
return {token, value}
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_LEADER_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
"""
_OBSERVE = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[1]) end
return redis.call('GET', KEYS[1])
"""
# The lifecycle: INCR + PUBLISH, and the sender's on-air snapshot kept with it in the same
# step (ARGV[3] 'set' or 'del' field ARGV[4] of hash KEYS[2]), so a node that missed
# messages reads a snapshot consistent with the channel.
_SEQUENCED = """
local seq = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], string.format('%d', seq) .. ' ' .. ARGV[2])
if ARGV[3] == 'set' then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[2])
elseif ARGV[3] == 'del' then
  redis.call('HDEL', KEYS[2], ARGV[4])
end
return seq
"""

SCRIPTS = {
    "acquire": _ACQUIRE,
    "renew": _RENEW,  # extend the lease only if it still holds our "<node> <token>"
    "release": _RELEASE,  # delete it only if it is still ours
    "observe": _OBSERVE,  # a follower raises the counter to its floor, reads the holder
    "leader_set": _LEADER_SET,  # write + announce leader state only while the lease is ours
    "sequenced": _SEQUENCED,  # INCR + PUBLISH (+ on-air snapshot): one order, gaps visible
}


class Keys:
    """Every name of one cluster."""

    def __init__(self, cluster: str) -> None:
        self.prefix = p = f"loa:{cluster}:"
        self.leader, self.fence, self.assignment = p + "leader", p + "fence", p + "assignment"
        self.lifecycle, self.lifecycle_seq = p + "lifecycle", p + "lifecycle:seq"
        self.commands, self.status = p + "commands", p + "status"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def audio(self, node_id: str) -> str:
        return f"{self.prefix}audio:{node_id}"

    def onair(self, node_id: str) -> str:
        """Hash: the broadcasts ``node_id`` encodes now, id → its ``broadcast.started`` body."""
        return f"{self.prefix}onair:{node_id}"
