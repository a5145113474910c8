"""lxflexd's HTTP API: the storage part of LXD's REST API, on aiohttp."""
