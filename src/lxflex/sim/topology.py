"""The simulated array's fixed parts: system, protection domains, pools, SDTs, SDCs.

The default topology is one system with protection domain ``pd1`` holding storage pool
``sp1`` (zero padding on, 4 TiB usable) and ``sp2`` (zero padding off, 1 TiB), two SDTs
whose host-facing addresses are ``127.0.0.11`` and ``127.0.0.12`` (ports 4420 and 8009),
and one SDC for the emulated local host. A JSON file of the same shape replaces it::

    {
      "system": {"name": "sim"},
      "protection_domains": [
        {"name": "pd1",
         "storage_pools": [{"name": "sp1", "zero_padding": true, "capacity_gb": 4096,
                            "data_layout": "MediumGranularity"}],
         "sdts": [{"name": "sdt1", "ips": [{"ip": "127.0.0.11", "role": "StorageAndHost"}],
                   "nvme_port": 4420, "discovery_port": 8009}]}
      ],
      "sdcs": [{"name": "local", "guid": "optional-uppercase-guid", "ip": "127.0.0.1"}]
    }
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

DEFAULT: dict[str, Any] = {
    "system": {"name": "lxflex-sim"},
    "protection_domains": [
        {
            "name": "pd1",
            "storage_pools": [
                {
                    "name": "sp1",
                    "zero_padding": True,
                    "capacity_gb": 4096,
                    "data_layout": "MediumGranularity",
                },
                {
                    "name": "sp2",
                    "zero_padding": False,
                    "capacity_gb": 1024,
                    "data_layout": "MediumGranularity",
                },
            ],
            "sdts": [
                {
                    "name": "sdt1",
                    "ips": [
                        {"ip": "127.0.0.11", "role": "StorageAndHost"},
                        {"ip": "127.0.1.11", "role": "StorageOnly"},
                    ],
                    "nvme_port": 4420,
                    "discovery_port": 8009,
                },
                {
                    "name": "sdt2",
                    "ips": [{"ip": "127.0.0.12", "role": "HostOnly"}],
                    "nvme_port": 4420,
                    "discovery_port": 8009,
                },
            ],
        }
    ],
    "sdcs": [{"name": "local", "ip": "127.0.0.1"}],
}


def load(path: Path | None) -> dict[str, Any]:
    """The topology in ``path``, or the default one."""
    if path is None:
        return copy.deepcopy(DEFAULT)
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("protection_domains"), list):
        raise ValueError(f"{path}: a topology needs a protection_domains list")
    return dict(doc)
