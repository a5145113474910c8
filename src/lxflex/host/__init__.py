"""The host side: commands, NVMe/TCP connections, devices, filesystems, data copies.

Nothing here talks to the gateway; the driver composes this package with the client.
"""
