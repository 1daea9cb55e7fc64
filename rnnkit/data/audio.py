"""Audio features in NumPy: WAV reading, resampling, log-mel filterbanks, MFCC, deltas, stacking.

The pipeline of a speech recogniser's front end, each step a small function::

    samples, rate = read_wav(path)              # 16-bit PCM, any rate, channels averaged
    x = resample(samples, rate, 16000)          # band-limited (FFT) resampling
    feats = log_mel(x, 16000)                   # (T, n_mels), 25 ms Hann windows every 10 ms
    feats = mfcc(x, 16000)                      # (T, n_mfcc): orthonormal DCT-II of the log-mels
    feats = normalize(feats)                    # per-utterance mean 0, variance 1 per feature
    feats = add_deltas(feats)                   # (T, 3F): features, deltas, delta-deltas
    feats = stack_frames(feats, 3, 3)           # (ceil(T/3), 3F): 3 frames glued, every 3rd kept

``FeatureConfig`` bundles the choices and ``features(samples, rate, cfg)`` applies them, so a
trained model stores one small dict and transcription computes exactly what training saw.
"""
from __future__ import annotations

import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


# ------------------------------------------------------------------------------ reading
def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples float32 in [-1, 1), sample rate) from a 16-bit PCM WAV; channels are averaged."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except wave.Error as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from None
    except EOFError:
        raise ValueError(f"{path}: truncated WAV file") from None
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples; only 16-bit PCM is supported")
    data = np.frombuffer(raw, "<i2")
    data = data[: len(data) // channels * channels].reshape(-1, channels)
    return (data.astype(np.float32).mean(axis=1) / np.float32(32768)).astype(np.float32), rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono float samples (clipped to [-1, 1]) as 16-bit PCM."""
    pcm = np.round(np.clip(np.asarray(samples, np.float64), -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling by the FFT: keep (or zero-pad) the spectrum below both Nyquists.

    Exact for a periodic signal; for an utterance (silence at both ends) the wrap-around is
    negligible.  Frequencies above the target's Nyquist are removed, so nothing aliases.
    """
    x = np.asarray(x)
    if rate <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} and {target}")
    if rate == target or len(x) == 0:
        return x.copy()
    n = len(x)
    m = max(int(round(n * target / rate)), 1)
    X = np.fft.rfft(x.astype(np.float64))
    k = min(len(X), m // 2 + 1)
    Y = np.zeros(m // 2 + 1, complex)
    Y[:k] = X[:k]
    if m % 2 == 0 and k == m // 2 + 1:  # the new Nyquist bin holds a real cosine: halve it
        Y[-1] = Y[-1].real
    if n % 2 == 0 and k == n // 2 + 1 and m > n:  # the old Nyquist bin is split between +/- halves
        Y[k - 1] *= 0.5
    return (np.fft.irfft(Y, m) * (m / n)).astype(x.dtype)


# ------------------------------------------------------------------------------ spectra
def hz_to_mel(f):
    """HTK mel scale: m = 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, peaks equally spaced in mel, each peaking at 1."""
    fmax = rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= rate/2, got {fmin}, {fmax}, rate {rate}")
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (n_mels + 2,)
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


def frame_signal(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    """(T, win) overlapping frames, T = 1 + ceil((len - win) / hop) (zero-padded at the end)."""
    n = len(x)
    T = 1 + max(0, -(-(n - win) // hop))
    pad = np.zeros((T - 1) * hop + win, x.dtype)
    pad[:n] = x[: len(pad)]
    idx = np.arange(T)[:, None] * hop + np.arange(win)[None, :]
    return pad[idx]


def power_spectrum(x: np.ndarray, rate: int, win_ms: float = 25.0, hop_ms: float = 10.0,
                   n_fft: int | None = None) -> np.ndarray:
    """|FFT|^2 of Hann-windowed frames: (T, n_fft // 2 + 1), n_fft the next power of 2."""
    win, hop = int(round(rate * win_ms / 1000)), int(round(rate * hop_ms / 1000))
    n_fft = n_fft or 1 << (win - 1).bit_length()
    frames = frame_signal(np.asarray(x, np.float64), win, hop) * np.hanning(win + 2)[1:-1]
    return np.abs(np.fft.rfft(frames, n_fft)) ** 2


def log_mel(x: np.ndarray, rate: int, n_mels: int = 40, win_ms: float = 25.0, hop_ms: float = 10.0,
            fmin: float = 20.0, fmax: float | None = None, floor: float = 1e-10) -> np.ndarray:
    """log(mel filterbank energies): (T, n_mels) float32."""
    spec = power_spectrum(x, rate, win_ms, hop_ms)
    fb = mel_filterbank(n_mels, 2 * (spec.shape[1] - 1), rate, fmin, fmax)
    return np.log(np.maximum(spec @ fb.T, floor)).astype(np.float32)


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II (n_out, n_in): c_k = s_k sum_j x_j cos(pi k (2j + 1) / (2 n_in))."""
    k, j = np.arange(n_out)[:, None], np.arange(n_in)[None, :]
    m = np.cos(np.pi * k * (2 * j + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    return m


def mfcc(x: np.ndarray, rate: int, n_mfcc: int = 13, n_mels: int = 40, **kw) -> np.ndarray:
    """Mel-frequency cepstral coefficients: DCT-II of the log-mels, (T, n_mfcc) float32."""
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc {n_mfcc} > n_mels {n_mels}")
    lm = log_mel(x, rate, n_mels, **kw).astype(np.float64)
    return (lm @ dct_matrix(n_mels, n_mfcc).T).astype(np.float32)


# ------------------------------------------------------------------------------ post-processing
def normalize(feats: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-utterance mean 0 and variance 1 of each feature over time."""
    f = np.asarray(feats)
    mu = f.mean(axis=0, keepdims=True)
    sd = f.std(axis=0, keepdims=True)
    return ((f - mu) / (sd + eps)).astype(f.dtype)


def deltas(feats: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas d_t = sum_k k (c_{t+k} - c_{t-k}) / (2 sum_k k^2), edges repeated."""
    f = np.asarray(feats)
    T = len(f)
    pad = np.concatenate([np.repeat(f[:1], width, 0), f, np.repeat(f[-1:], width, 0)]) if T else f
    num = sum(k * (pad[width + k : width + k + T] - pad[width - k : width - k + T])
              for k in range(1, width + 1))
    return (num / (2 * sum(k * k for k in range(1, width + 1)))).astype(f.dtype)


def add_deltas(feats: np.ndarray, order: int = 2) -> np.ndarray:
    """(T, F) -> (T, (order + 1) F): the features, their deltas, the deltas' deltas..."""
    out = [np.asarray(feats)]
    for _ in range(order):
        out.append(deltas(out[-1]))
    return np.concatenate(out, axis=1)


def stack_frames(feats: np.ndarray, stack: int = 3, skip: int = 3) -> np.ndarray:
    """Glue ``stack`` consecutive frames and keep every ``skip``-th: (ceil(T / skip), stack F).

    Frame t of the output is frames t*skip .. t*skip + stack - 1 of the input (the last ones
    repeated past the end): a shorter sequence the recurrent layers run over ``skip`` times faster.
    """
    f = np.asarray(feats)
    if stack < 1 or skip < 1:
        raise ValueError(f"stack and skip must be >= 1, got {stack}, {skip}")
    T = len(f)
    if T == 0:
        return np.zeros((0, stack * f.shape[1]), f.dtype)
    starts = np.arange(0, T, skip)
    idx = np.minimum(starts[:, None] + np.arange(stack)[None, :], T - 1)  # (T', stack)
    return f[idx].reshape(len(starts), -1)


def stacked_length(T, skip: int):
    """The number of frames stack_frames keeps from T frames (ints or arrays)."""
    return -(-np.asarray(T) // skip)


# ------------------------------------------------------------------------------ configured pipeline
@dataclass
class FeatureConfig:
    """What turns a waveform into the model's input frames (saved with a trained model)."""

    rate: int = 16000       # resample everything to this rate (Hz)
    kind: str = "logmel"    # "logmel" or "mfcc"
    n_mels: int = 40        # mel filters
    n_mfcc: int = 13        # cepstra kept (kind "mfcc")
    win_ms: float = 25.0    # analysis window
    hop_ms: float = 10.0    # frame step
    deltas: int = 0         # 0, 1 or 2 orders of deltas appended
    stack: int = 3          # frames glued together...
    skip: int = 3           # ...keeping every skip-th (frame subsampling)

    def __post_init__(self) -> None:
        if self.kind not in ("logmel", "mfcc"):
            raise ValueError(f"feature kind must be 'logmel' or 'mfcc', got {self.kind!r}")
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {self.deltas}")

    @property
    def dim(self) -> int:
        base = self.n_mels if self.kind == "logmel" else self.n_mfcc
        return base * (self.deltas + 1) * self.stack

    def to_json(self) -> dict:
        return asdict(self)


def features(samples: np.ndarray, rate: int, cfg: FeatureConfig) -> np.ndarray:
    """Model input frames (T', cfg.dim) float32 for one utterance."""
    x = resample(np.asarray(samples, np.float32), rate, cfg.rate)
    kw = dict(win_ms=cfg.win_ms, hop_ms=cfg.hop_ms)
    f = log_mel(x, cfg.rate, cfg.n_mels, **kw) if cfg.kind == "logmel" else \
        mfcc(x, cfg.rate, cfg.n_mfcc, cfg.n_mels, **kw)
    f = normalize(f)
    if cfg.deltas:
        f = add_deltas(f, cfg.deltas)
    return np.ascontiguousarray(stack_frames(f, cfg.stack, cfg.skip), np.float32)


def wav_features(path: str | Path, cfg: FeatureConfig) -> np.ndarray:
    samples, rate = read_wav(path)
    if len(samples) == 0:
        raise ValueError(f"{path}: no audio samples")
    return features(samples, rate, cfg)
