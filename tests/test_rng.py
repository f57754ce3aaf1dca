"""Counter-based streams: values equal an independent splitmix64, uniform, and keyed by every coordinate."""
import numpy as np

from khrbm.core import rng

MASK = (1 << 64) - 1


def splitmix_uniform(key: int, index: int) -> float:
    """Plain-Python transcription of SplitMix64 (Steele, Lea, Flood 2014), top 24 bits as a float."""
    z = (key + 0x9E3779B97F4A7C15 * (index + 1)) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    z ^= z >> 31
    return (z >> 40) * 2.0**-24


def test_uniforms_match_independent_splitmix64():
    key = rng.stream(11, 3, 7)
    u = rng.uniforms(key, (13, 17))
    assert u.dtype == np.float32 and u.shape == (13, 17)
    expected = [splitmix_uniform(key, i) for i in range(13 * 17)]
    assert np.array_equal(u.ravel(), np.array(expected, np.float32))


def test_uniform_at_equals_the_array_version():
    from numba import njit

    @njit
    def draw(key, n):
        out = np.empty(n, np.float32)
        for i in range(n):
            out[i] = rng.uniform_at(key, i)
        return out

    key = rng.stream(5, 2**40)
    assert np.array_equal(draw(np.uint64(key), 1000), rng.uniforms(key, 1000))


def test_streams_are_uniform_and_distinct():
    u = rng.uniforms(rng.stream(1, 0), 200_000).astype(np.float64)
    assert abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.002 and u.min() >= 0 and u.max() < 1
    hist = np.histogram(u, bins=20, range=(0, 1))[0]
    assert abs(hist - 10_000).max() < 500           # ~5 sd of a binomial count
    keys = {rng.stream(1, t, p) for t in range(50) for p in range(5)} | {rng.stream(2, 0, 0), rng.stream(1, 0)}
    assert len(keys) == 252
    a, b = rng.uniforms(rng.stream(1, 1), 50_000), rng.uniforms(rng.stream(1, 2), 50_000)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02
