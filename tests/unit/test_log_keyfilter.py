"""The delivery-key filter: fixed vectors, and never a "no" for a key it was given."""

from __future__ import annotations

import random

import pytest

from streams.log.keyfilter import BITS_PER_KEY, MAX_BITS, MIN_BITS, KeyFilter, filter_bits


def test_the_probes_are_the_keys_low_half_stepped_by_its_high_half() -> None:
    f = KeyFilter(64)
    f.add(0)  # step 1 from bit 0: bits 0, 1, 2
    f.add((5 << 31) | 3)  # step 5 from bit 3: bits 3, 8, 13
    assert bytes(f._bits) == bytes([0b0000_1111, 0b0010_0001, 0, 0, 0, 0, 0, 0])
    assert f.added == 2
    assert f.may_hold(0)
    assert f.may_hold((5 << 31) | 3)
    assert f.may_hold(1)  # bits 1, 2, 3: all set by others (a false "maybe")
    assert not f.may_hold(2)  # bit 4 is not set
    assert not f.may_hold((7 << 31) | 40)


def test_probes_wrap_around_the_filters_size() -> None:
    f = KeyFilter(16)
    f.add((4 << 31) | 15)  # step 5 from bit 15: bits 15, 20 % 16 = 4, 9
    assert bytes(f._bits) == bytes([0b0001_0000, 0b1000_0010])


@pytest.mark.parametrize(
    ("keys", "bits"),
    [
        (0, MIN_BITS),
        (1000, MIN_BITS),
        (10_000_000, 10_000_000 * 2 * BITS_PER_KEY),
        (10**12, MAX_BITS),
        (43_691, 1_048_584),  # just above the smallest
    ],
)
def test_a_filter_is_sized_for_twice_its_keys_within_bounds(keys: int, bits: int) -> None:
    assert filter_bits(keys) == bits
    assert filter_bits(keys) % 8 == 0


@pytest.mark.parametrize("bits", [0, -8, 12])
def test_a_filters_size_is_a_positive_multiple_of_8(bits: int) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        KeyFilter(bits)


def test_every_key_added_is_held_and_few_others_until_it_is_full() -> None:
    rng = random.Random(62)
    f = KeyFilter(20_000 * 2 * BITS_PER_KEY)  # as filter_bits sizes it for 20,000 keys
    others = [rng.getrandbits(62) for _ in range(50_000)]

    def false_maybes() -> float:
        return sum(f.may_hold(k) for k in others) / len(others)

    added = [rng.getrandbits(62) for _ in range(20_000)]
    f.add_all(added)
    assert false_maybes() < 0.003  # 24 bits a key: about 0.14%
    more = [rng.getrandbits(62) for _ in range(f.capacity - f.added)]
    for k in more:
        f.add(k)
    assert f.added == f.capacity == 80_000  # four times the keys it was built with
    assert all(f.may_hold(k) for k in added + more)  # never a false "no"
    assert 0.04 < false_maybes() < 0.09  # 6 bits a key: about 6%
    assert not f.full
    f.add(rng.getrandbits(62))
    assert f.full  # due to be built again


def test_a_saved_filter_comes_back_the_same() -> None:
    f = KeyFilter(128)
    f.add_all([3, 1 << 40, (9 << 31) | 77])
    back = KeyFilter.from_bytes(f.to_bytes(), f.added)
    assert back.to_bytes() == f.to_bytes()
    assert (back.added, back.capacity) == (3, f.capacity)
    assert [back.may_hold(k) for k in (3, 1 << 40, (9 << 31) | 77)] == [True] * 3
