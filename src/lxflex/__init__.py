"""lxflex: an LXD-compatible storage daemon for Dell PowerFlex block storage."""

__version__ = "0.1.0"
