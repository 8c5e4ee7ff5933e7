"""Sans-IO relay core: zones, endpoints, priority, router, RTP rewriter, speaker sessions.

Nothing here imports asyncio, socket or time; callers pass ``now``."""
