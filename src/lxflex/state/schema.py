"""The tables of lxflex's state, as SQLAlchemy Core metadata.

The migrations under ``migrations/`` create exactly this (a test compares the two).

* ``servers``: each lxflex server, by the UUID in its ``server.uuid`` file; one that
  joined a cluster is a member (``member`` is its name), with its address, certificate
  and heartbeat.
* ``pools``: storage pools and their keys; the gateway password in a column of its own
  (``password``, never in ``config``; the SQLite file is readable by root only).
* ``volumes``: volumes per pool, project, type and name; the array's volume ID is cached
  in ``array_id`` so no call needs a lookup by name (a virtual machine's root disk; its
  filesystem twin's ID is ``fs_array_id``).
* ``snapshots``: snapshots of a volume, with their array IDs.
* ``backups``: backups of custom volumes (the tarballs are files in the state directory).
* ``certificates``: the HTTPS trust store (client certificates by SHA-256 fingerprint).
* ``journal``: the intent journal: array objects an operation is about to make before a
  row records them (a copy's snapshots, an export's temporary snapshot), and what a
  failed cleanup left (a volume to remove, a mapping of a volume to one server's host to
  undo). An entry goes when a row adopts its object or the object is removed; start-up
  repair and ``storage check --repair`` finish the rest.
* ``attachments``: volumes in use on a host (mounted, or a device given to an instance
  of that host's LXD or Incus), kept across restarts.
* ``server_config``: server keys (``core.https_address``) of one server or all of them
  (an empty ``server`` UUID).

Pools, volumes and snapshots keep their config as a JSON object in ``config``: it is
read and written whole, never by key.

``status`` marks rows whose array work is under way (``creating``, ``deleting``,
``restoring``): a row left in such a state by a crash tells the service what to clean
up. :mod:`lxflex.state.status` holds the statuses and the only steps between them.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)

_TS = sa.DateTime(timezone=True)

servers = sa.Table(
    "servers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    # A cluster member's name, the address its peers reach it at (HOST:PORT), its own
    # server certificate (PEM), its architecture, and its last heartbeat (by the
    # database's clock).
    sa.Column("member", sa.String(63), nullable=True, unique=True),
    sa.Column("address", sa.String(255), nullable=True),
    sa.Column("certificate", sa.Text, nullable=True),
    sa.Column("architecture", sa.String(32), nullable=True),
    sa.Column("heartbeat_at", _TS, nullable=True),
)

# The one certificate (and key) every member of a cluster serves over HTTPS.
cluster_certificate = sa.Table(
    "cluster_certificate",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("certificate", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.CheckConstraint("id = 1", name="ck_cluster_certificate_one"),
)

pools = sa.Table(
    "pools",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("driver", sa.String(32), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("config", sa.Text, nullable=False, server_default="{}"),
    # The gateway password: never in ``config``, which callers may be shown.
    sa.Column("password", sa.Text, nullable=True),
    # A pool ``pending``: the members it was defined on, as a JSON list (LXD's --target).
    sa.Column("pending_on", sa.Text, nullable=True),
)

volumes = sa.Table(
    "volumes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("pool_id", sa.ForeignKey("pools.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("content_type", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("array_id", sa.String(32), nullable=True),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("fs_array_id", sa.String(32), nullable=True),
    sa.Column("config", sa.Text, nullable=False, server_default="{}"),
    sa.UniqueConstraint("pool_id", "project", "type", "name"),
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("volume_id", sa.ForeignKey("volumes.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("array_id", sa.String(32), nullable=True),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=True),
    sa.Column("fs_array_id", sa.String(32), nullable=True),
    sa.Column("config", sa.Text, nullable=False, server_default="{}"),
    sa.UniqueConstraint("volume_id", "name"),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("certificate", sa.Text, nullable=False),
    sa.Column("restricted", sa.Boolean, nullable=False),
    sa.Column("projects", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
)

server_config = sa.Table(
    "server_config",
    metadata,
    sa.Column("server", sa.String(36), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

backups = sa.Table(
    "backups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("volume_id", sa.ForeignKey("volumes.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=True),
    sa.Column("volume_only", sa.Boolean, nullable=False),
    sa.Column("compression", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # The server whose state directory holds the tarball (none: made before it was kept).
    sa.Column("server_uuid", sa.String(36), nullable=True),
    sa.UniqueConstraint("volume_id", "name"),
)

# A volume in use on a host (``server_uuid``'s), kept across restarts: one row per user,
# the host itself (``instance`` empty: an operator's mount or device path) or an instance
# of that host's LXD or Incus (reached at ``socket``) with its disk ``device``. ``path``
# is where the volume is usable on the host: a mount point or a block device.
attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("volume_id", sa.ForeignKey("volumes.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("server_uuid", sa.String(36), nullable=False, index=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("instance", sa.String(255), nullable=False, server_default=""),
    sa.Column("instance_project", sa.String(255), nullable=False, server_default=""),
    sa.Column("device", sa.String(255), nullable=False, server_default=""),
    sa.Column("socket", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
    sa.UniqueConstraint("volume_id", "server_uuid", "instance_project", "instance"),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("config", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", _TS, nullable=False),
)

journal = sa.Table(
    "journal",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("pool_id", sa.ForeignKey("pools.id", ondelete="RESTRICT"), nullable=False),
    # The server whose host holds the object (an unmap), or that made it.
    sa.Column("server", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # volume, unmap
    sa.Column("array_id", sa.String(32), nullable=True),
    sa.Column("name", sa.String(64), nullable=True),  # the array name, when no ID is known
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
)
