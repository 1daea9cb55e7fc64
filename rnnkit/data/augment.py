"""Seeded audio and feature augmentation in NumPy, for training recognisers that meet new voices.

Every function is pure: the input is not modified and all randomness comes from the
``rng: np.random.Generator`` passed in, so the same generator state gives the same output.
Waveforms are float arrays in [-1, 1]; features are (T, F) arrays.

    speed(x, 1.1)                         # 10% faster: shorter, higher pitch and formants
    colour(x, rate, rng)                  # a random microphone/loudspeaker response
    reverb(x, rate, rng, rt60=0.4)        # a synthetic room: exponentially decaying noise tail
    mix(x, pink_noise(len(x), rng), 10)   # noise at 10 dB SNR (white_noise, pink_noise, babble)
    gain(x, -6.0)                         # louder or quieter, clipped at full scale
    telephone(x, rate)                    # 300-3400 Hz, 8 kHz, G.711 mu-law, back to ``rate``
    tempo(feats, 0.9)                     # 10% slower without changing pitch (frame domain)
    spec_augment(feats, rng)              # SpecAugment time and frequency masks

Vocal-tract-length perturbation warps the mel filterbank (``audio.features(..., warp=alpha)``);
pitch perturbation is speed(p) followed by tempo(1 / p): the duration is kept while pitch and
formants move by p (what librosa and sox call a pitch shift).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .audio import fft_resize, fast_length, mulaw_decode, resample

TELEPHONE_RATE = 8000


# ------------------------------------------------------------------------------ helpers
def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0


def _fft_filter(x: np.ndarray, rate: int, gain_of_hz) -> np.ndarray:
    """Zero-phase filtering: multiply the spectrum (zero-padded to a fast FFT length) by
    gain_of_hz(frequencies in Hz)."""
    n = len(x)
    if n == 0:
        return np.array(x, copy=True)
    N = fast_length(n + n // 8)  # some room, so that the filter's ringing does not wrap round
    X = np.fft.rfft(np.asarray(x, np.float64), N)
    f = np.arange(len(X)) * rate / N
    return np.fft.irfft(X * gain_of_hz(f), N)[:n].astype(x.dtype)


# ------------------------------------------------------------------------------ waveform
def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play about ``factor`` times faster: pitch, formants and tempo all move by the factor.

    The FFT lengths are fast (5-smooth) ones: x is zero-padded to N samples and resampled to M,
    with the pair (N, M) among the first few fast lengths that makes N / M closest to
    ``factor`` (within ~0.3% for utterances longer than ~0.1 s); the result is cut to
    round(n M / N) samples.
    """
    x = np.asarray(x)
    if not 0.25 <= factor <= 4.0:
        raise ValueError(f"speed factor must be in [0.25, 4], got {factor}")
    n = len(x)
    if n == 0 or factor == 1.0:
        return np.array(x, copy=True)
    best, N = None, fast_length(n)
    for _ in range(12):
        for M in (fast_length(max(int(N / factor), 1)), fast_length(max(int(N / factor * 0.995), 1))):
            err = abs(N / M / factor - 1)
            if best is None or err < best[0]:
                best = (err, N, M)
        N = fast_length(N + 1)
    _, N, M = best
    return fft_resize(x, N, M)[: max(int(round(n * M / N)), 1)].astype(x.dtype)


def gain(x: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels and clip to [-1, 1] (a too-hot input clips as a real one would)."""
    return np.clip(np.asarray(x) * np.float32(10 ** (db / 20)), -1.0, 1.0).astype(np.asarray(x).dtype)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise with its spectrum shaped by 1/sqrt(f) (-3 dB per octave)."""
    if n == 0:
        return np.zeros(0, np.float32)
    N = fast_length(n)
    X = np.fft.rfft(rng.standard_normal(N))
    f = np.arange(len(X), dtype=np.float64)
    f[0] = 1.0  # no infinite DC
    y = np.fft.irfft(X / np.sqrt(f), N)[:n]
    return (y / (np.std(y) + 1e-12)).astype(np.float32)


def babble(pool, n: int, rng: np.random.Generator, talkers: int = 4) -> np.ndarray:
    """Several other utterances summed (each at a random offset, looped to length n): babble."""
    if not len(pool):
        raise ValueError("babble needs at least one other utterance")
    out = np.zeros(n, np.float64)
    for k in rng.integers(0, len(pool), talkers):
        u = np.asarray(pool[int(k)], np.float64)
        if len(u) == 0:
            continue
        u = u / (np.sqrt(_power(u)) + 1e-12)
        reps = -(-(n + len(u)) // len(u))
        start = int(rng.integers(0, len(u)))
        out += np.tile(u, reps)[start : start + n]
    return out.astype(np.float32)


def mix(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """x + noise scaled so that power(x) / power(noise) = snr_db decibels."""
    x = np.asarray(x)
    if len(noise) != len(x):
        raise ValueError(f"noise has {len(noise)} samples, the signal {len(x)}")
    px, pn = _power(x), _power(noise)
    if px == 0 or pn == 0:
        return np.array(x, copy=True)
    scale = np.sqrt(px / (pn * 10 ** (snr_db / 10)))
    return (x + scale * np.asarray(noise, np.float64)).astype(x.dtype)


def room_impulse(rate: int, rt60: float, rng: np.random.Generator, drr_db: float = 3.0,
                 predelay_ms: float = 5.0) -> np.ndarray:
    """A synthetic room impulse response: a direct path, then Gaussian noise decaying by 60 dB
    in ``rt60`` seconds, scaled so that the direct-to-reverberant energy ratio is ``drr_db``."""
    if rt60 <= 0:
        raise ValueError(f"rt60 must be > 0, got {rt60}")
    n = max(int(rate * rt60), 1)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000): 60 dB of energy
    d = int(rate * predelay_ms / 1000)
    h = np.zeros(d + n)
    h[d:] = tail
    h *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(h ** 2) + 1e-12))
    h[0] = 1.0
    return h


def reverb(x: np.ndarray, rate: int, rng: np.random.Generator, rt60: float = 0.4,
           drr_db: float = 3.0) -> np.ndarray:
    """x in a synthetic room (``room_impulse``), same length and same power as x."""
    x = np.asarray(x)
    if len(x) == 0:
        return np.array(x, copy=True)
    h = room_impulse(rate, rt60, rng, drr_db)
    m = len(x) + len(h) - 1
    nfft = fast_length(m)
    y = np.fft.irfft(np.fft.rfft(x.astype(np.float64), nfft) * np.fft.rfft(h, nfft), nfft)[: len(x)]
    y *= np.sqrt(_power(x) / (_power(y) + 1e-20))
    return y.astype(x.dtype)


def colour(x: np.ndarray, rate: int, rng: np.random.Generator, tilt_db: float = 6.0,
           peaks: int = 2, peak_db: float = 8.0) -> np.ndarray:
    """A random smooth frequency response (a microphone, a loudspeaker, a handset): a spectral
    tilt of up to +-``tilt_db`` per octave around 1 kHz plus ``peaks`` resonances or notches of
    up to +-``peak_db`` with random centres (200 Hz - 5 kHz) and widths; power is kept."""
    tilt = rng.uniform(-tilt_db, tilt_db)
    centres = np.exp(rng.uniform(np.log(200), np.log(min(5000, rate / 2)), peaks))
    heights = rng.uniform(-peak_db, peak_db, peaks)
    widths = rng.uniform(0.3, 1.0, peaks)  # octaves

    def response(f):
        octaves = np.log2(np.maximum(f, 50.0) / 1000.0)
        db = tilt * np.clip(octaves, -3, 3)
        for c, h, w in zip(centres, heights, widths):
            db = db + h * np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / c) / w) ** 2)
        return 10 ** (db / 20)

    y = _fft_filter(np.asarray(x), rate, response)
    return (y * np.sqrt(_power(x) / (_power(y) + 1e-20))).astype(np.asarray(x).dtype)


def bandpass(x: np.ndarray, rate: int, lo: float, hi: float, ramp: float = 50.0) -> np.ndarray:
    """Keep lo..hi Hz (zero phase; raised-cosine edges ``ramp`` Hz wide just outside the band)."""
    if not 0 <= lo < hi:
        raise ValueError(f"need 0 <= lo < hi, got {lo}, {hi}")

    def response(f):
        below = np.clip((f - (lo - ramp)) / ramp, 0, 1)
        above = np.clip(((hi + ramp) - f) / ramp, 0, 1)
        return (0.5 - 0.5 * np.cos(np.pi * below)) * (0.5 - 0.5 * np.cos(np.pi * above))

    return _fft_filter(np.asarray(x), rate, response)


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """G.711 mu-law: float samples in [-1, 1] -> uint8 codes (``audio.mulaw_decode`` inverts it)."""
    s = np.clip(np.round(np.asarray(x, np.float64) * 32768), -32768, 32767).astype(np.int32)
    sign = (s < 0).astype(np.int32)
    mag = np.minimum(np.abs(s), 32635) + 0x84  # bias, so every segment starts at a power of two
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7  # 0..7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~((sign << 7) | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def telephone(x: np.ndarray, rate: int, lo: float = 300.0, hi: float = 3400.0,
              codec: str = "mulaw") -> np.ndarray:
    """A narrow-band telephone line: band-limit to lo..hi Hz, sample at 8 kHz, 8-bit G.711
    mu-law (or ``codec="none"``), then back to ``rate``; the length is kept."""
    x = np.asarray(x)
    if codec not in ("mulaw", "none"):
        raise ValueError(f"codec must be 'mulaw' or 'none', got {codec!r}")
    y = resample(bandpass(x, rate, lo, min(hi, TELEPHONE_RATE / 2 - 50)), rate, TELEPHONE_RATE)
    if codec == "mulaw":
        y = mulaw_decode(mulaw_encode(y))
    back = resample(np.asarray(y, np.float64), TELEPHONE_RATE, rate)
    out = np.zeros(len(x), x.dtype)  # the same length as x (resampling may round it by one)
    out[: min(len(x), len(back))] = back[: len(x)]
    return out


# ------------------------------------------------------------------------------ features
def tempo(feats: np.ndarray, factor: float) -> np.ndarray:
    """Change the tempo of (T, F) frames by ``factor`` (> 1 faster) keeping each frame's
    spectrum (so pitch and formants stay): linear interpolation to round(T / factor) frames."""
    f = np.asarray(feats)
    if not 0.25 <= factor <= 4.0:
        raise ValueError(f"tempo factor must be in [0.25, 4], got {factor}")
    T = len(f)
    m = max(int(round(T / factor)), 1) if T else 0
    if m == T:
        return np.array(f, copy=True)
    pos = np.linspace(0, T - 1, m)
    i = np.minimum(np.floor(pos).astype(np.int64), max(T - 2, 0))
    w = (pos - i)[:, None].astype(f.dtype)
    j = np.minimum(i + 1, T - 1)
    return (f[i] * (1 - w) + f[j] * w).astype(f.dtype)


def spec_augment(feats: np.ndarray, rng: np.random.Generator, freq_masks: int = 2,
                 max_freq: int = 6, time_masks: int = 2, max_time: int = 5,
                 max_time_fraction: float = 0.05, value: float = 0.0) -> np.ndarray:
    """SpecAugment (Park et al. 2019): ``freq_masks`` bands of up to ``max_freq`` channels and
    ``time_masks`` spans of up to min(``max_time``, fraction * T) frames set to ``value`` (0 is the
    mean of normalised features).  Time masks stay short so that no whole word is hidden."""
    f = np.array(feats, copy=True)
    T, F = f.shape
    for _ in range(freq_masks):
        w = int(rng.integers(0, max_freq + 1))
        if 0 < w < F:
            a = int(rng.integers(0, F - w + 1))
            f[:, a : a + w] = value
    limit = min(max_time, int(max_time_fraction * T))
    for _ in range(time_masks):
        w = int(rng.integers(0, limit + 1)) if limit > 0 else 0
        if 0 < w < T:
            a = int(rng.integers(0, T - w + 1))
            f[a : a + w] = value
    return f


__all__ = ["speed", "gain", "white_noise", "pink_noise", "babble", "mix", "room_impulse", "reverb",
           "colour", "bandpass", "mulaw_encode", "telephone", "tempo", "spec_augment"]


# ------------------------------------------------------------------------------ a recipe

@dataclass(frozen=True)
class AugmentConfig:
    """How often and how strongly each augmentation is drawn (the defaults of ``asr train``).

    ``p_*`` are probabilities per utterance; ranges are (low, high) of uniform draws.
    """

    speed: tuple = (0.9, 1.1)          # speed perturbation, every utterance
    p_pitch: float = 0.4               # pitch perturbation: speed(p) + tempo(1/p)
    pitch: tuple = (0.8, 1.25)
    p_tempo: float = 0.5               # tempo perturbation (frame domain); slower more often:
    tempo: tuple = (0.65, 1.2)         # people speaking to machines are slow
    vtlp: tuple = (0.85, 1.15)         # vocal-tract-length warp of the filterbank, every utterance
    p_colour: float = 0.5              # random microphone / loudspeaker response
    p_reverb: float = 0.3              # synthetic room
    rt60: tuple = (0.15, 0.7)
    drr_db: tuple = (-2.0, 12.0)
    p_noise: float = 0.6               # additive noise, one of white / pink / babble
    snr_db: tuple = (5.0, 35.0)
    babble_snr_db: tuple = (10.0, 30.0)
    gain_db: tuple = (-20.0, 6.0)      # every utterance; clipped at full scale
    p_telephone: float = 0.3           # 300-3400 Hz, 8 kHz mu-law line
    p_spec_augment: float = 0.8        # SpecAugment masks

    def to_json(self) -> dict:
        return asdict(self)


NO_AUGMENTATION = AugmentConfig(speed=(1.0, 1.0), p_pitch=0.0, p_tempo=0.0, vtlp=(1.0, 1.0),
                                p_colour=0.0, p_reverb=0.0, p_noise=0.0, gain_db=(0.0, 0.0),
                                p_telephone=0.0, p_spec_augment=0.0)


def augment_waveform(x: np.ndarray, rate: int, cfg: AugmentConfig, rng: np.random.Generator,
                     babble_pool=None) -> tuple[np.ndarray, dict]:
    """One random draw of the waveform chain: speed (and pitch) -> colour -> reverb -> noise ->
    gain -> telephone.  Returns (waveform, the draws: speed, pitch, ... for the feature stage)."""
    u = rng.uniform
    pitch = u(*cfg.pitch) if u() < cfg.p_pitch else 1.0
    draw = {"speed": u(*cfg.speed), "pitch": pitch,
            "tempo": u(*cfg.tempo) if u() < cfg.p_tempo else 1.0, "vtlp": u(*cfg.vtlp)}
    y = speed(x, draw["speed"] * pitch) if draw["speed"] * pitch != 1.0 else np.array(x, copy=True)
    if u() < cfg.p_colour:
        y = colour(y, rate, rng)
    if u() < cfg.p_reverb:
        y = reverb(y, rate, rng, u(*cfg.rt60), u(*cfg.drr_db))
    if u() < cfg.p_noise:
        kind = int(rng.integers(0, 3 if babble_pool is not None and len(babble_pool) else 2))
        if kind == 2:
            y = mix(y, babble(babble_pool, len(y), rng, int(rng.integers(3, 7))), u(*cfg.babble_snr_db))
        else:
            noise = white_noise(len(y), rng) if kind == 0 else pink_noise(len(y), rng)
            y = mix(y, noise, u(*cfg.snr_db))
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0:  # gain relative to full scale, so that +dB really clips
        y = gain(y / peak * 0.5, u(*cfg.gain_db))
    if u() < cfg.p_telephone:
        y = telephone(y, rate, lo=u(200, 400), hi=u(3000, 3600))
    return y.astype(np.float32), draw


def augment_features(feats: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
                     draw: dict) -> np.ndarray:
    """The feature stage (on normalised frames): tempo (undoing the pitch draw's change of
    duration, times the tempo draw), then SpecAugment masks."""
    factor = draw["tempo"] / draw["pitch"]
    f = tempo(feats, factor) if abs(factor - 1.0) > 1e-9 else feats
    if rng.uniform() < cfg.p_spec_augment:
        f = spec_augment(f, rng)
    return f


__all__ += ["AugmentConfig", "NO_AUGMENTATION", "augment_waveform", "augment_features"]
