"""Archive postings: packed columns read back in order, and every XEP-0313 §4.1 filter."""

from __future__ import annotations

from pubsubd.storage.mam_postings import NewEntries, Postings, pack, unpack


def listed(*rows: list[tuple[int, int, str]]) -> Postings:
    encoded = []
    for row in rows:
        entries = NewEntries()
        for seq, stamp, contact in row:
            entries.add(seq, stamp, contact)
        encoded.append(entries.encoded())
    return Postings.of_rows(encoded)


def test_packed_integers_round_trip_little_endian() -> None:
    values = [0, 1, 2**62, -5]
    assert pack(values)[:8] == b"\x00" * 8 and pack([1])[0] == 1
    assert unpack(pack(values)).tolist() == values


def test_rows_read_back_as_one_archive_in_order() -> None:
    postings = listed([(1, 10, "bob@x/a"), (2, 20, "carol@x")], [(5, 50, "bob@x/b")])
    assert list(postings.seqs) == [1, 2, 5]
    assert list(postings.stamps) == [10, 20, 50]
    assert postings.contacts == ["bob@x/a", "carol@x", "bob@x/b"]
    assert list(postings.select()) == [1, 2, 5]


def test_filters() -> None:
    postings = listed([(1, 10, "bob@x/a"), (2, 20, "carol@x"), (3, 30, "bob@x"),
                       (4, 40, "bob@xy/a"), (5, 50, "x/a")])
    assert list(postings.select(with_bare="bob@x")) == [1, 3]  # not bob@xy
    assert list(postings.select(with_bare="x")) == [5]
    assert list(postings.select(with_full="bob@x/a")) == [1]
    assert list(postings.select(start=20, end=40)) == [2, 3, 4]
    assert list(postings.select(after=1, before=4)) == [2, 3]
    assert list(postings.select(wanted={2, 5, 9})) == [2, 5]
    assert list(postings.select(with_bare="bob@x", after=1)) == [3]


def test_the_tail_past_a_seq_is_a_row_of_its_own() -> None:
    postings = listed([(1, 10, "a@x"), (2, 20, "b@x"), (3, 30, "c@x/r")])
    rest = Postings.of_rows([postings.tail(1)])
    assert list(rest.seqs) == [2, 3] and rest.contacts == ["b@x", "c@x/r"]
    assert list(rest.stamps) == [20, 30]
