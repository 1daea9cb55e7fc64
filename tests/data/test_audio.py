"""Audio features checked against independent computations and known signal properties."""
import wave

import numpy as np
import pytest

from rnnkit.data.audio import (FeatureConfig, add_deltas, dct_matrix, deltas, features, hz_to_mel,
                               log_mel, mel_filterbank, mel_to_hz, mfcc, normalize, power_spectrum,
                               read_wav, resample, stack_frames, stacked_length, wav_features,
                               write_wav)


def tone(freq, rate, seconds=0.5, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


def test_wav_round_trip_and_stereo_average(tmp_path):
    x = tone(440, 8000)
    write_wav(tmp_path / "a.wav", x, 8000)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1 / 32767)
    # a stereo file: left = 1000, right = -3000 -> the mean, -1000 / 32768
    with wave.open(str(tmp_path / "s.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(11025)
        w.writeframes(np.array([1000, -3000] * 5, "<i2").tobytes())
    y, rate = read_wav(tmp_path / "s.wav")
    assert rate == 11025 and len(y) == 5
    np.testing.assert_allclose(y, -1000 / 32768)


def test_wav_errors_name_the_problem(tmp_path):
    with wave.open(str(tmp_path / "b8.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(1), w.setframerate(8000)
        w.writeframes(bytes(100))
    with pytest.raises(ValueError, match="8-bit samples; only 16-bit PCM"):
        read_wav(tmp_path / "b8.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        read_wav(tmp_path / "junk.wav")


@pytest.mark.parametrize("src,dst", [(22050, 16000), (8000, 16000), (44100, 16000), (16000, 16000)])
def test_resampling_a_sine_keeps_its_frequency_and_amplitude(src, dst):
    f = 437.0
    x = tone(f, src, seconds=1.0)
    y = resample(x, src, dst)
    assert len(y) == round(len(x) * dst / src) and y.dtype == np.float32
    assert abs(peak_hz(y, dst) - f) <= 1.0
    t = np.arange(len(y)) / dst
    mid = slice(len(y) // 4, 3 * len(y) // 4)  # away from the wrap-around at the ends
    np.testing.assert_allclose(y[mid], 0.5 * np.sin(2 * np.pi * f * t[mid]), atol=2e-3)


def test_downsampling_removes_what_would_alias():
    x = tone(7000, 22050, 1.0)  # above the 4 kHz Nyquist of 8 kHz audio
    y = resample(x, 22050, 8000)
    assert np.sqrt(np.mean(y ** 2)) < 1e-3


def test_mel_scale_and_filterbank_properties():
    np.testing.assert_allclose(mel_to_hz(hz_to_mel([0, 700, 1000, 8000])), [0, 700, 1000, 8000])
    assert hz_to_mel(1000) == pytest.approx(1000, abs=0.5)  # the scale's anchor: 1000 Hz ~ 1000 mel
    rate, n_fft, n_mels = 16000, 512, 40
    fb = mel_filterbank(n_mels, n_fft, rate)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.min() >= 0 and fb.max() <= 1
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    centers = mel_to_hz(np.linspace(0, hz_to_mel(rate / 2), n_mels + 2))[1:-1]
    # each filter peaks at the FFT bin nearest its centre; the centres are equally spaced in mel
    for m in range(n_mels):
        assert abs(freqs[np.argmax(fb[m])] - centers[m]) <= rate / n_fft
    # overlapping triangles: between the first and last centres the filters sum to exactly 1
    inner = (freqs >= centers[0]) & (freqs <= centers[-1])
    np.testing.assert_allclose(fb[:, inner].sum(axis=0), 1.0, atol=1e-12)


def test_power_spectrum_of_one_frame_equals_a_direct_dft():
    rate = 16000
    x = np.random.default_rng(0).standard_normal(400 + 160 * 2)
    spec = power_spectrum(x, rate)  # 25 ms = 400 samples, 10 ms hop, n_fft 512
    assert spec.shape == (3, 257)
    frame = x[160:560] * np.hanning(402)[1:-1]
    k, n = np.arange(257)[:, None], np.arange(400)[None, :]
    direct = np.abs((frame[None, :] * np.exp(-2j * np.pi * k * n / 512)).sum(axis=1)) ** 2
    np.testing.assert_allclose(spec[1], direct, rtol=1e-9, atol=1e-9)


def test_log_mel_and_mfcc_of_a_pure_tone():
    rate, f = 16000, 1000.0
    lm = log_mel(tone(f, rate), rate, n_mels=40, fmin=0.0)
    assert lm.dtype == np.float32 and lm.shape[1] == 40
    centers = mel_to_hz(np.linspace(0, hz_to_mel(rate / 2), 42))[1:-1]
    assert np.all(np.argmax(lm[5:-5], axis=1) == np.argmin(np.abs(centers - f)))
    # MFCC = orthonormal DCT-II of the log-mels, checked with the textbook sum
    c = mfcc(tone(f, rate), rate, n_mfcc=13, n_mels=40, fmin=0.0)
    row = lm[10].astype(np.float64)
    for k in (0, 1, 5, 12):
        want = sum(row[j] * np.cos(np.pi * k * (2 * j + 1) / 80) for j in range(40))
        want *= np.sqrt(1 / 40) if k == 0 else np.sqrt(2 / 40)
        assert c[10, k] == pytest.approx(want, rel=1e-4, abs=1e-3)
    D = dct_matrix(16, 16)
    np.testing.assert_allclose(D @ D.T, np.eye(16), atol=1e-12)


def test_normalize_deltas_and_stacking():
    rng = np.random.default_rng(1)
    f = (rng.standard_normal((50, 4)) * 3 + 7).astype(np.float32)
    n = normalize(f)
    np.testing.assert_allclose(n.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(n.std(0), 1, atol=1e-3)
    ramp = np.arange(20, dtype=np.float64)[:, None] * np.array([[2.0, -0.5]])
    d = deltas(ramp)
    np.testing.assert_allclose(d[2:-2], np.broadcast_to([2.0, -0.5], (16, 2)))  # slope inside
    np.testing.assert_allclose(d[0], [(1 * 2 + 2 * 4) / 10, -(1 * 0.5 + 2 * 1) / 10])  # edge repeated
    assert add_deltas(f, 2).shape == (50, 12)
    x = np.arange(7 * 2).reshape(7, 2)
    s = stack_frames(x, stack=3, skip=3)
    np.testing.assert_array_equal(s, [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 12, 13, 12, 13]])
    assert stacked_length(7, 3) == 3 and list(stacked_length(np.array([0, 1, 3, 4]), 3)) == [0, 1, 1, 2]


def test_feature_pipeline_shapes_and_rate_independence(tmp_path):
    cfg = FeatureConfig(kind="mfcc", deltas=2, stack=2, skip=2)
    x16, x8 = tone(600, 16000, 1.0), tone(600, 8000, 1.0)
    a = features(x16, 16000, cfg)
    write_wav(tmp_path / "t8.wav", x8, 8000)
    b = wav_features(tmp_path / "t8.wav", cfg)
    assert a.shape == b.shape == (stacked_length(99, 2), cfg.dim) and a.dtype == np.float32
    assert cfg.dim == 13 * 3 * 2
    with pytest.raises(ValueError, match="feature kind"):
        FeatureConfig(kind="spectrogram")
