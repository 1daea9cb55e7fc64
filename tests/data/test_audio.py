"""Audio features checked against independent computations and known signal properties."""
import struct
import wave

import numpy as np
import pytest

from rnnkit.data.audio import (FeatureConfig, add_deltas, alaw_decode, dct_matrix, deltas,
                               fast_length, features, hz_to_mel, log_mel, mel_filterbank, mel_to_hz,
                               mfcc, mulaw_decode, normalize, power_spectrum, read_speech, read_wav,
                               resample, stack_frames, stacked_length, warp_frequencies,
                               wav_features, write_wav)
from rnnkit.data.augment import mulaw_encode


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


def riff(fmt_tag, channels, rate, bits, data: bytes, extensible=False, data_size=None) -> bytes:
    """A WAV file's bytes, written here independently of the reader."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else fmt_tag, channels, rate, rate * block, block, bits)
    if extensible:  # cbSize, valid bits, channel mask, then the subformat GUID (tag first)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", fmt_tag) + bytes(14)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 3) \
        + b"abc\0" + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


SIGNAL = np.array([0.0, 0.5, -0.5, 0.25, -1.0, 0.999], np.float64)


@pytest.mark.parametrize("kind", ["u8", "i16", "i24", "i32", "f32", "f64", "ext-i24", "ext-f32"])
def test_reading_every_pcm_and_float_layout(tmp_path, kind):
    x = SIGNAL
    if kind == "u8":
        tag, bits, data = 1, 8, np.round(x * 127 + 128).astype(np.uint8).tobytes()
    elif kind.endswith("i16"):
        tag, bits, data = 1, 16, np.round(x * 32767).astype("<i2").tobytes()
    elif kind.endswith("i24"):
        v = np.round(x * (2**23 - 1)).astype(np.int64) & 0xFFFFFF
        tag, bits, data = 1, 24, np.stack([v & 255, v >> 8 & 255, v >> 16], 1).astype(np.uint8).tobytes()
    elif kind.endswith("i32"):
        tag, bits, data = 1, 32, np.round(x * (2**31 - 1)).astype("<i4").tobytes()
    elif kind.endswith("f32"):
        tag, bits, data = 3, 32, x.astype("<f4").tobytes()
    else:
        tag, bits, data = 3, 64, x.astype("<f8").tobytes()
    (tmp_path / "a.wav").write_bytes(riff(tag, 1, 24000, bits, data, extensible=kind.startswith("ext")))
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 24000 and y.dtype == np.float32 and len(y) == len(x)
    np.testing.assert_allclose(y, x, atol={8: 1 / 127, 16: 2 / 32767}.get(bits, 1e-6))


def test_stereo_is_averaged_and_streamed_sizes_read_to_the_end(tmp_path):
    lr = np.array([[1000, -3000], [200, 400], [-32768, 32767]], "<i2")
    (tmp_path / "s.wav").write_bytes(riff(1, 2, 48000, 16, lr.tobytes(), data_size=0xFFFFFFFF))
    y, rate = read_wav(tmp_path / "s.wav")
    assert rate == 48000
    np.testing.assert_allclose(y, lr.mean(axis=1) / 32768)


def test_g711_decoding_matches_the_standard_table(tmp_path):
    codes = np.arange(256, dtype=np.uint8)
    mu = mulaw_decode(codes) * 32768
    # anchors of ITU-T G.711: 0xFF and 0x7F are +-0, 0x80 / 0x00 the largest magnitudes
    assert mu[0xFF] == 0 and mu[0x7F] == 0 and mu[0x80] == 32124 and mu[0x00] == -32124
    # every code but -0 survives encoding again, and the decoded values are monotonic per sign
    back = mulaw_encode(mu / 32768)
    keep = codes != 0x7F
    np.testing.assert_array_equal(back[keep], codes[keep])
    assert np.all(np.diff(mu[0x80:0x100][::-1]) >= 0)
    a = alaw_decode(codes) * 32768
    assert a[0xD5] == 8 and a[0x55] == -8 and a[0xAA] == 32256 and a[0x2A] == -32256
    # a mu-law WAV reads through the same table
    (tmp_path / "u.wav").write_bytes(riff(7, 1, 8000, 8, codes.tobytes()))
    y, rate = read_wav(tmp_path / "u.wav")
    assert rate == 8000 and np.array_equal(y, mulaw_decode(codes))


def test_bad_audio_gives_one_clear_error_naming_the_file(tmp_path):
    good = np.round(SIGNAL * 1000).astype("<i2").tobytes()
    cases = {
        "empty.wav": (b"", "empty file"),
        "junk.wav": (b"not a wav at all", "not a WAV file"),
        "song.wav": (b"OggS\0\2" + bytes(40), "Ogg .* not a WAV file: convert"),
        "flac.wav": (b"fLaC" + bytes(40), "FLAC file"),
        "mp3.wav": (b"ID3\4" + bytes(40), "MP3 file"),
        "gsm.wav": (riff(0x31, 1, 8000, 0, bytes(65)), r"compressed WAV \(format 0x0031, GSM 6.10\)"),
        "mp3in.wav": (riff(0x55, 1, 8000, 16, good), "MPEG layer 3"),
        "nofmt.wav": (b"RIFF\x04\0\0\0WAVE", "no complete 'fmt ' chunk"),
        "nodata.wav": (riff(1, 1, 8000, 16, good)[:-len(good) - 8], "no 'data' chunk"),
        "12bit.wav": (riff(1, 1, 8000, 12, good), "12-bit PCM samples are not supported"),
        "rate.wav": (riff(1, 1, 1000, 16, good), "sample rate 1000 Hz is outside"),
        "nan.wav": (riff(3, 1, 8000, 32, np.array([0, np.nan], "<f4").tobytes()), "NaN"),
    }
    for name, (blob, message) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ValueError, match=message) as err:
            read_wav(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
    # readable, but nothing to recognise
    (tmp_path / "nodatabytes.wav").write_bytes(riff(1, 1, 8000, 16, b""))
    with pytest.raises(ValueError, match="no audio samples"):
        read_speech(tmp_path / "nodatabytes.wav")
    (tmp_path / "zeros.wav").write_bytes(riff(1, 1, 8000, 16, bytes(16000)))
    with pytest.raises(ValueError, match=r"silence only \(digital silence\)"):
        read_speech(tmp_path / "zeros.wav")
    hiss = np.random.default_rng(0).integers(-3, 4, 8000).astype("<i2").tobytes()
    (tmp_path / "hiss.wav").write_bytes(riff(1, 1, 8000, 16, hiss))
    with pytest.raises(ValueError, match=r"silence only \(peak -81 dBFS\)"):
        wav_features(tmp_path / "hiss.wav", FeatureConfig())


RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]


@pytest.mark.parametrize("src", RATES)
def test_resampling_between_every_pair_of_rates_keeps_a_tone(src):
    f = 437.0
    x = tone(f, src, seconds=0.5)
    for dst in RATES:
        y = resample(x, src, dst)
        assert len(y) == round(len(x) * dst / src) and y.dtype == np.float32
        assert abs(peak_hz(y, dst) - f) <= 2.0, (src, dst)
        t = np.arange(len(y)) / dst
        mid = slice(len(y) // 4, 3 * len(y) // 4)
        np.testing.assert_allclose(y[mid], 0.5 * np.sin(2 * np.pi * f * t[mid]), atol=5e-3)


def test_fast_length_is_the_next_5_smooth_number():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1
    for n in list(range(1, 400)) + [18590, 44101]:
        want = next(m for m in range(n, 2 * n + 2) if smooth(m))
        assert fast_length(n) == want


def test_vocal_tract_warp_moves_a_tone_between_filters():
    rate, f0 = 16000, 1000.0
    assert warp_frequencies(np.array([0.0, 8000.0]), 1.15, 8000)[1] == pytest.approx(8000)
    w = warp_frequencies(np.linspace(0, 8000, 801), 0.9, 8000)
    assert np.all(np.diff(w) > 0) and w[100] == pytest.approx(900.0)  # 1 kHz -> 900 Hz below the knee
    np.testing.assert_array_equal(mel_filterbank(40, 512, rate, warp=1.0), mel_filterbank(40, 512, rate))
    x = tone(f0, rate)
    centers = mel_to_hz(np.linspace(hz_to_mel(20), hz_to_mel(rate / 2), 42))[1:-1]
    for alpha in (0.85, 1.0, 1.15):
        peak = np.argmax(log_mel(x, rate, warp=alpha)[10])
        assert peak == np.argmin(np.abs(centers - f0 * alpha))


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
