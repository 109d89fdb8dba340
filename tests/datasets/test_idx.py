"""Tests for the IDX reader and writer."""

import gzip

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmeans_imagery.datasets.idx import read_idx, write_idx
from kmeans_imagery.errors import KMIError

IDX_TYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def idx_bytes(array, code=None):
    """The raw IDX encoding of an array, built by hand (independently of write_idx)."""
    codes = {np.uint8: 8, np.int8: 9, np.int16: 11, np.int32: 12, np.float32: 13, np.float64: 14}
    code = codes[array.dtype.type] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", IDX_TYPES)
@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_round_trip_every_idx_type(tmp_path, rng, dtype, name):
    array = (rng.normal(size=(5, 3, 4)) * 50).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_reads_hand_made_big_endian_file(tmp_path):
    array = np.array([[1, -2], [300, 40000]], dtype=np.int32)
    (tmp_path / "f").write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), array)


def test_gzip_is_detected_by_content_not_by_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "plain-name").write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), array)


def test_gzip_output_is_reproducible_and_atomic(tmp_path):
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    write_idx(tmp_path / "a.gz", array)
    first = (tmp_path / "a.gz").read_bytes()
    write_idx(tmp_path / "a.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == first
    assert first[:2] == b"\x1f\x8b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gz"]  # no temporary file left


def test_empty_array_round_trips(tmp_path):
    write_idx(tmp_path / "e", np.zeros((0, 28, 28), np.uint8))
    assert read_idx(tmp_path / "e").shape == (0, 28, 28)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        (np.array([0, 9, 255], dtype=np.int64), np.uint8),
        (np.array([-3, 100], dtype=np.int64), np.int8),
        (np.array([3, 1000], dtype=np.uint64), np.int16),
        (np.array([70000], dtype=np.int64), np.int32),
        (np.array([True, False]), np.uint8),
        (np.array([0.5], dtype=np.float16), np.float32),
    ],
)
def test_write_narrows_other_types(tmp_path, values, dtype):
    write_idx(tmp_path / "v", values)
    back = read_idx(tmp_path / "v")
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, values.astype(dtype))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array(3, dtype=np.uint8), "dimensions"),
        (np.array([2**40], dtype=np.int64), "do not fit"),
        (np.array([1 + 2j]), "cannot hold complex"),
        (np.array(["a"]), "cannot hold"),
    ],
)
def test_write_rejects_what_idx_cannot_hold(tmp_path, array, message):
    with pytest.raises(KMIError, match=message):
        write_idx(tmp_path / "x", array)
    assert list(tmp_path.iterdir()) == []


def test_write_into_missing_folder_names_the_file(tmp_path):
    with pytest.raises(KMIError, match="nowhere"):
        write_idx(tmp_path / "nowhere" / "x.gz", np.zeros(3, np.uint8))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(KMIError, match="does not exist"):
        read_idx(tmp_path / "absent")
    with pytest.raises(KMIError, match="is a folder"):
        read_idx(tmp_path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "ends inside the magic"),
        (b"\x00\x00\x08", "ends inside the magic"),
        (b"\x00\x01\x08\x01" + b"\x00" * 8, "magic number 00010801"),
        (b"\x00\x00\x07\x01" + b"\x00" * 8, "magic number"),
        (b"\x00\x00\x08\x00", "ndim >= 1"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "ends inside the dimensions"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "truncated: its header declares shape \\(5,\\)"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x02abc", "longer than its header"),
        # A header declaring 2**96 bytes must fail at once, without trying to allocate them.
        (b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3, "too small to hold"),
        (b"PK\x03\x04whatever", "not an IDX file"),
    ],
)
def test_malformed_raw_files(tmp_path, data, message):
    path = tmp_path / "bad-idx-ubyte"
    path.write_bytes(data)
    with pytest.raises(KMIError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_names_the_file(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)))
    path = tmp_path / "cut.gz"
    for cut in (len(packed) // 2, len(packed) - 4, 12):
        path.write_bytes(packed[:cut])
        with pytest.raises(KMIError, match=r"cut\.gz.*(truncated|corrupt)"):
            read_idx(path)


def test_corrupt_gzip_names_the_file(tmp_path):
    packed = bytearray(gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32))))
    packed[20:40] = b"\xff" * 20
    path = tmp_path / "flipped.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(KMIError, match=r"flipped\.gz"):
        read_idx(path)


def test_gzip_header_declaring_more_than_deflate_can_hold(tmp_path):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x02" + b"\x00\x01\x00\x00" * 2))
    with pytest.raises(KMIError, match="too small to hold"):
        read_idx(path)


def _read_or_error(path):
    try:
        return read_idx(path)
    except KMIError as exc:
        assert str(path) in str(exc)
        return None


# Deadlines are off (timings on a shared 2-core machine are noisy); a hang would still stop the
# suite, and every read loop in the reader is bounded by the declared size.
_PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_PROPERTY
@given(data=st.binary(max_size=200), compress=st.booleans())
def test_random_bytes_give_an_array_or_kmierror(tmp_path, data, compress):
    path = tmp_path / "random"
    path.write_bytes(gzip.compress(data) if compress else data)
    array = _read_or_error(path)
    if array is not None:  # random bytes that happen to form a valid IDX file
        assert 4 + 4 * array.ndim + array.nbytes == len(data)


@_PROPERTY
@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    dtype=st.sampled_from(IDX_TYPES),
    cut=st.integers(0, 10_000),
    compress=st.booleans(),
)
def test_any_truncation_of_a_valid_file_is_kmierror(tmp_path, shape, dtype, cut, compress):
    full = idx_bytes(np.ones(shape, dtype=dtype))
    data = full[: cut % len(full)]
    path = tmp_path / "cut"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(KMIError):
        read_idx(path)


@_PROPERTY
@given(position=st.integers(0, 15), value=st.integers(0, 255))
def test_any_header_byte_change_gives_an_array_or_kmierror(tmp_path, position, value):
    data = bytearray(idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)))
    data[position] = value
    path = tmp_path / "changed"
    path.write_bytes(bytes(data))
    _read_or_error(path)
