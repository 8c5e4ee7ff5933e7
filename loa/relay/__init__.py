"""The relay: broadcasts, the priority router, and the transports that carry packets to endpoints."""
