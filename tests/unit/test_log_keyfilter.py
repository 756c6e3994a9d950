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


def test_every_key_added_is_held_and_few_others_are_at_the_sized_fill() -> None:
    rng = random.Random(62)
    f = KeyFilter(filter_bits(20_000) // 2)  # exactly the sized bits per key
    added = [rng.getrandbits(62) for _ in range(f.capacity)]
    f.add_all(added)
    assert all(f.may_hold(k) for k in added)  # never a false "no"
    others = [rng.getrandbits(62) for _ in range(50_000)]
    share = sum(f.may_hold(k) for k in others) / len(others)
    assert 0.003 < share < 0.025  # about 1.1% at 12 bits a key and three probes
    assert not f.full
    f.add(rng.getrandbits(62))
    assert f.full  # past what it was sized for: due to be built again
