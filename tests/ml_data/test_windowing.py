"""The one windowing rule (inference.ml.imaging): 8-bit data byte for byte, also in a wider integer type;
anything else between the 0.5th and 99.5th percentile of the volume."""
import numpy as np
import pytest

from inference.ml.imaging import to_uint8, widened_8bit_bounds, window_bounds


@pytest.fixture
def grey():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(2, 32, 32), dtype=np.uint8)


@pytest.mark.parametrize("widen, bounds", [
    (lambda g: g.astype(np.uint16) * 257, (0.0, 65535.0)),  # how PIL / ImageMagick widen 8 bits to 16
    (lambda g: g.astype(np.uint16) << 8, (0.0, 65280.0)),
    (lambda g: g.astype(np.int16), (0.0, 255.0)),  # zero-extended: values within 0..255
    (lambda g: g.astype(np.int32), (0.0, 255.0)),
])
def test_widened_8_bit_data_gives_back_its_bytes(grey, widen, bounds):
    wide = widen(grey)
    assert widened_8bit_bounds(wide) == window_bounds(wide) == bounds
    assert np.array_equal(to_uint8(wide), grey)


def test_real_16_bit_data_is_windowed_by_percentiles(grey):
    native = grey.astype(np.uint16) * 16 + 100  # 12-bit-like values, no 8-bit pattern
    assert widened_8bit_bounds(native) is None
    low, high = window_bounds(native)
    assert (low, high) == tuple(np.percentile(native, [0.5, 99.5]))
    out = to_uint8(native)
    assert out.min() == 0 and out.max() == 255


@pytest.mark.parametrize("data", [
    np.array([[-1, 3], [4, 5]], dtype=np.int16),  # negative values: not 8-bit data
    np.array([[0.0, 255.0], [12.0, 3.0]], dtype=np.float32),  # floats are always windowed
    np.array([[257, 514], [300, 0]], dtype=np.uint16),  # one value breaks the x257 pattern
    np.zeros((0, 4), dtype=np.uint16),
])
def test_not_widened(data):
    assert widened_8bit_bounds(data) is None


def test_one_pattern_for_the_whole_volume(grey):
    """The pattern is judged over the volume, as the window is: one slice that breaks it windows them all."""
    wide = grey.astype(np.uint16) * 257
    wide[1, 0, 0] += 1
    assert widened_8bit_bounds(wide) is None
    assert not np.array_equal(to_uint8(wide)[0], grey[0])


def test_not_a_number_and_infinities_window_to_the_ends_without_a_warning():
    import warnings

    data = np.linspace(0.0, 100.0, 400).reshape(20, 20)
    data[0, 0], data[0, 1], data[0, 2] = np.nan, np.inf, -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow from turning infinity into the largest float
        out = to_uint8(data)
    low, high = window_bounds(data)  # from the finite values only
    assert np.isfinite([low, high]).all()
    assert (out[0, 0], out[0, 1], out[0, 2]) == (0, 255, 0)
    np.testing.assert_array_equal(out[1:], to_uint8(data[1:], bounds=(low, high)))
