"""The relay: broadcasts, the priority router, and the transports that reach endpoints."""
