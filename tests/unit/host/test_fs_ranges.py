"""The maps of used blocks read from a filesystem's own reports (pure parsing)."""

from __future__ import annotations

from lxflex.host.fs import _block_ranges, _gaps, _subtract


def test_free_block_lists_become_ranges() -> None:
    assert _block_ranges(" 9255-32767, 40000, 40002-40003") == [
        (9255, 32768),
        (40000, 40001),
        (40002, 40004),
    ]
    assert _block_ranges(" ") == []


def test_used_is_what_free_leaves() -> None:
    assert _gaps((0, 100), [(10, 20), (20, 30), (90, 100)]) == [(0, 10), (30, 90)]
    assert _gaps((32768, 65536), [(33793, 65536)]) == [(32768, 33793)]
    assert _gaps((0, 10), []) == [(0, 10)]
    assert _gaps((0, 10), [(0, 10)]) == []


def test_the_journal_is_cut_out_but_its_superblock() -> None:
    used = [(0, 1000), (2000, 3000)]
    journal_but_superblock = [(501, 800), (2500, 2600)]
    assert _subtract(used, journal_but_superblock) == [
        (0, 501),
        (800, 1000),
        (2000, 2500),
        (2600, 3000),
    ]
