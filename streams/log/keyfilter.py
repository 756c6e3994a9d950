"""Which delivery keys the store may hold: a Bloom filter in front of the id index.

Most attempts the indexer writes are the first of a new delivery, and finding out
that a delivery is new took two B-tree lookups (the two levels of the id index,
:mod:`streams.log.store`). With millions stored, those lookups land on random pages
of a large index: 14% of the writer's time at 10 million stored. The filter answers
"certainly not stored" from memory for almost every new delivery, so only the rest
are looked up.

A Bloom filter never says no for a key it was given; it says "maybe" for a share
of the others (0.1% to 6% between two builds: :data:`BITS_PER_KEY`,
:data:`FULL_BITS_PER_KEY`), and those are looked up as before. Keys are never taken
out: a pruned delivery's key stays a "maybe" until the filter is built again, which
the writer does a bounded number of keys per batch once it is full
(:meth:`~streams.log.store.LogWriter._fill_filter`).

Delivery keys are uniform 62-bit hashes (:func:`~streams.log.store.delivery_key`),
so the probes are taken from the key itself (double hashing of its two halves)
instead of hashing it again.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Bits per key the filter is sized for: with three probes, about 1.1% of keys not
#: stored are still looked up when it holds that many (15 MB for 10 million keys).
BITS_PER_KEY = 12
PROBES = 3  # written out in add and may_hold
#: Bits per key at which it is full and built again: about 6% looked up by then. A
#: filter starts with twice BITS_PER_KEY (see HEADROOM), so it is built again after
#: three times the keys it started with: a build's cost spread over that many.
FULL_BITS_PER_KEY = 6
#: The smallest filter, in bits (128 KiB), and the largest (256 MiB: 179 million
#: keys at the sized rate; past that the share looked up grows, nothing is wrong).
MIN_BITS = 1 << 20
MAX_BITS = 1 << 31
#: A filter is sized for this many times the keys it starts with.
HEADROOM = 2


def filter_bits(keys: int) -> int:
    """The size, in bits, of a filter for ``keys`` keys (a multiple of 8)."""
    wanted = max(MIN_BITS, min(MAX_BITS, keys * HEADROOM * BITS_PER_KEY))
    return -(-wanted // 8) * 8


class KeyFilter:
    """A Bloom filter of 62-bit delivery keys."""

    __slots__ = ("_bits", "_size", "added", "capacity")

    def __init__(self, bits: int) -> None:
        if bits <= 0 or bits % 8:
            raise ValueError(f"a filter's size is a positive multiple of 8 bits, not {bits}")
        self._size = bits
        self._bits = bytearray(bits // 8)
        #: Keys added, and how many it was sized for (then it should be built again).
        self.added = 0
        self.capacity = bits // FULL_BITS_PER_KEY

    @classmethod
    def from_bytes(cls, bits: bytes, added: int) -> KeyFilter:
        """A filter saved with :meth:`to_bytes` (and the count of keys it held)."""
        made = cls(8 * len(bits))
        made._bits[:] = bits
        made.added = added
        return made

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    @property
    def size_bytes(self) -> int:
        return len(self._bits)

    def add(self, key: int) -> None:
        self.add_all((key,))

    def add_all(self, keys: Iterable[int]) -> None:
        # The three probes written out, in one loop over the keys: a loop over the probes
        # cost half of each key's time, and a call per key a third of a build's.
        bits, size = self._bits, self._size
        n = 0
        for key in keys:
            step = (key >> 31) | 1
            a = (key & 0x7FFFFFFF) % size
            b = (a + step) % size
            c = (b + step) % size
            bits[a >> 3] |= 1 << (a & 7)
            bits[b >> 3] |= 1 << (b & 7)
            bits[c >> 3] |= 1 << (c & 7)
            n += 1
        self.added += n

    def may_hold(self, key: int) -> bool:
        """False: ``key`` was certainly never added. True: it may have been."""
        bits, size = self._bits, self._size
        step = (key >> 31) | 1
        a = (key & 0x7FFFFFFF) % size
        if not bits[a >> 3] & (1 << (a & 7)):
            return False
        b = (a + step) % size
        if not bits[b >> 3] & (1 << (b & 7)):
            return False
        c = (b + step) % size
        return bool(bits[c >> 3] & (1 << (c & 7)))

    @property
    def full(self) -> bool:
        """Whether it holds more keys than it was sized for (a rebuild is due)."""
        return self.added > self.capacity
