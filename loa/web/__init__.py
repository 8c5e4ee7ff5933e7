"""Control plane: the aiohttp application, the JSON API under /api/v1 and the pages."""
