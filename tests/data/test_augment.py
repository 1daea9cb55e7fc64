"""Augmentation: determinism under a seed, length bookkeeping, and what each one does to a signal."""
import numpy as np
import pytest

from rnnkit.data import augment as A
from rnnkit.data.audio import (FeatureConfig, features, hz_to_mel, log_mel, mel_to_hz, mulaw_decode,
                               stacked_length)

RATE = 16000


def tone(freq, seconds=1.0, rate=RATE, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x, rate=RATE):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


def speechlike(seed=0, seconds=1.0):
    """Noise bursts with silences: broadband, non-stationary."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(RATE * seconds)).astype(np.float32) * 0.2
    env = (np.sin(np.linspace(0, 6 * np.pi, len(x))) > 0).astype(np.float32)
    return x * env


RANDOM = {
    "pink_noise": lambda x, rng: A.pink_noise(len(x), rng),
    "white_noise": lambda x, rng: A.white_noise(len(x), rng),
    "babble": lambda x, rng: A.babble([x, x[::-1], x[:500]], len(x), rng, 3),
    "reverb": lambda x, rng: A.reverb(x, RATE, rng, 0.3),
    "colour": lambda x, rng: A.colour(x, RATE, rng),
    "spec_augment": lambda x, rng: A.spec_augment(x.reshape(-1, 40)[:, :], rng, max_time=5),
    "augment_waveform": lambda x, rng: A.augment_waveform(x, RATE, A.AugmentConfig(p_reverb=1, p_telephone=1,
                                                                                   p_noise=1), rng, [x])[0],
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_every_random_augmentation_is_deterministic_under_a_seed(name):
    x = speechlike()
    fn = RANDOM[name]
    a = fn(x, np.random.default_rng(7))
    b = fn(x, np.random.default_rng(7))
    c = fn(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(x, speechlike())  # the input is untouched


@pytest.mark.parametrize("factor", [0.8, 0.9, 1.1, 1.25])
def test_speed_moves_frequency_and_length_by_the_factor(factor):
    x = tone(500.0)
    y = A.speed(x, factor)
    assert len(y) == pytest.approx(len(x) / factor, rel=0.003)
    real = len(x) / len(y)  # the factor applied (FFT lengths are rounded to fast ones)
    assert peak_hz(y) == pytest.approx(500.0 * real, abs=2.0)
    with pytest.raises(ValueError, match="speed factor"):
        A.speed(x, 10.0)


@pytest.mark.parametrize("factor", [0.85, 1.15])
def test_tempo_changes_the_frame_count_and_keeps_each_frame(factor):
    f = np.tile(np.arange(40, dtype=np.float32), (100, 1))  # the same spectrum in every frame
    g = A.tempo(f, factor)
    assert g.shape == (round(100 / factor), 40) and g.dtype == np.float32
    np.testing.assert_allclose(g, np.tile(np.arange(40), (len(g), 1)), atol=1e-5)
    ramp = np.arange(100, dtype=np.float64)[:, None]  # a linear trajectory stays linear, end to end
    r = A.tempo(ramp, factor)
    np.testing.assert_allclose(r[:, 0], np.linspace(0, 99, len(r)))


def test_mix_reaches_the_requested_snr_and_gain_clips():
    rng = np.random.default_rng(0)
    x = speechlike()
    n = A.pink_noise(len(x), rng)
    for snr in (0.0, 10.0, 25.0):
        y = A.mix(x, n, snr).astype(np.float64)
        noise = y - x
        assert 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise ** 2)) == pytest.approx(snr, abs=1e-4)
    g = A.gain(tone(300.0), 12.0)
    assert g.max() == 1.0 and g.min() == -1.0  # 0.5 * 4 clips
    np.testing.assert_allclose(A.gain(tone(300.0), -6.0206), tone(300.0) * 0.5, atol=1e-6)


def test_pink_noise_falls_3_db_per_octave():
    p = np.abs(np.fft.rfft(A.pink_noise(2**16, np.random.default_rng(1)))) ** 2
    f = np.arange(len(p)) * RATE / 2**16
    band = lambda lo: p[(f >= lo) & (f < 2 * lo)].mean()  # noqa: E731
    for lo in (250, 500, 1000, 2000):
        assert 10 * np.log10(band(lo) / band(2 * lo)) == pytest.approx(3.0, abs=0.5)


def test_room_impulse_has_the_requested_decay_and_direct_to_reverberant_ratio():
    rng = np.random.default_rng(2)
    h = A.room_impulse(RATE, 0.5, rng, drr_db=6.0)
    assert h[0] == 1.0 and len(h) == int(RATE * 0.005) + RATE // 2
    assert 10 * np.log10(1.0 / np.sum(h[1:] ** 2)) == pytest.approx(6.0, abs=1e-6)
    tail = h[int(RATE * 0.005):]
    early, late = np.mean(tail[:800] ** 2), np.mean(tail[4000:4800] ** 2)  # 0.25 s apart
    assert 10 * np.log10(early / late) == pytest.approx(60 * 0.25 / 0.5, abs=3.0)
    x = speechlike()
    y = A.reverb(x, RATE, rng, 0.4)
    assert len(y) == len(x) and np.mean(y.astype(np.float64) ** 2) == pytest.approx(np.mean(x.astype(np.float64) ** 2), rel=1e-4)


def test_mulaw_round_trip_error_is_within_a_quantisation_step():
    x = np.linspace(-0.99, 0.99, 20001)
    y = mulaw_decode(A.mulaw_encode(x)).astype(np.float64)
    rel = np.abs(y - x) / np.maximum(np.abs(x), 1e-3)
    assert rel[np.abs(x) > 0.05].max() < 0.035  # 16 steps per segment: <= 1/32 relative
    assert np.abs(y - x)[np.abs(x) < 0.01].max() < 3e-4  # the finest segments near 0


def test_telephone_channel_changes_log_mels_only_in_the_band_it_removes():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(RATE) * 0.1).astype(np.float32)  # broadband, loud enough for mu-law
    y = A.telephone(x, RATE)
    assert len(y) == len(x) and y.dtype == np.float32
    a, b = log_mel(x, RATE), log_mel(y, RATE)
    centres = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(RATE / 2), 42))[1:-1]
    inside = (centres > 450) & (centres < 3150)  # filters wholly inside 300-3400 Hz
    outside = (centres < 150) | (centres > 4300)
    change = np.abs(b - a).mean(axis=0)  # log energy = nepers of power
    assert change[inside].max() < 0.15  # < 0.7 dB: mu-law noise is ~35 dB down
    assert (a - b).mean(axis=0)[outside].min() > 2.3  # removed: > 10 dB lower
    # band-pass alone, no codec: inside the band nothing changes but resampling rounding
    z = A.telephone(x, RATE, codec="none")
    assert np.abs(log_mel(z, RATE) - a).mean(axis=0)[inside].max() < 0.02


def test_spec_augment_masks_are_bounded_and_set_to_the_mean():
    f = np.ones((200, 40), np.float32)
    g = A.spec_augment(f, np.random.default_rng(4), freq_masks=2, max_freq=6, time_masks=2, max_time=5)
    masked_cols = np.flatnonzero((g == 0).all(axis=0))
    masked_rows = np.flatnonzero((g == 0).all(axis=1))
    assert len(masked_cols) <= 12 and len(masked_rows) <= 10
    assert set(np.unique(g)) <= {0.0, 1.0}
    assert np.array_equal(f, np.ones((200, 40), np.float32))


def test_feature_stage_length_bookkeeping():
    """Speed and tempo change the frame count; features() with the hook reports it exactly."""
    cfg = FeatureConfig()
    x = speechlike(seconds=2.0)
    base = features(x, RATE, cfg)
    y = A.speed(x, 1.2)
    draw = {"speed": 1.2, "pitch": 1.0, "tempo": 0.8, "vtlp": 1.0}
    f = features(y, RATE, cfg, hook=lambda f: A.augment_features(f, A.NO_AUGMENTATION, np.random.default_rng(0), draw))
    frames = 1 + -(-(len(y) - 400) // 160)  # 25 ms windows, 10 ms hop
    assert len(f) == stacked_length(round(frames / 0.8), cfg.skip)
    assert len(base) == stacked_length(1 + -(-(len(x) - 400) // 160), cfg.skip)
    assert len(f) > len(base) * 1.0 / 1.2 / 0.8 * 0.95
