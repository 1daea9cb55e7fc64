"""Audio features in NumPy: WAV reading, resampling, log-mel filterbanks, MFCC, deltas, stacking.

The pipeline of a speech recogniser's front end, each step a small function::

    samples, rate = read_wav(path)              # PCM 8-32 bit, float, G.711; channels averaged
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

import math
import wave
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np


# ------------------------------------------------------------------------------ reading
# format tags of the WAVE fmt chunk that are read; others are compressed codecs, refused by name
PCM, FLOAT, ALAW, MULAW, EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
CODECS = {0x0002: "MS ADPCM", 0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0040: "G.721 ADPCM",
          0x0050: "MPEG", 0x0055: "MPEG layer 3 (MP3)", 0x0064: "G.726 ADPCM", 0x0161: "WMA",
          0x00FF: "AAC", 0x1610: "AAC", 0x2000: "AC-3", 0xF1AC: "FLAC", 0x674F: "Ogg Vorbis",
          0x6750: "Ogg Vorbis", 0x6751: "Ogg Vorbis", 0x6771: "Ogg Vorbis"}
# the leading bytes of files that are audio but not WAV
MAGIC = [(b"OggS", "an Ogg (Vorbis/Opus) file"), (b"fLaC", "a FLAC file"), (b"ID3", "an MP3 file"),
         (b"\xff\xfb", "an MP3 file"), (b"\xff\xf3", "an MP3 file"), (b"\xff\xf2", "an MP3 file"),
         (b"\xff\xf1", "an AAC (ADTS) file"), (b"\xff\xf9", "an AAC (ADTS) file"),
         (b"FORM", "an AIFF file"), (b".snd", "a Sun/NeXT .au file"), (b"#!AMR", "an AMR file"),
         (b"RIFX", "a big-endian RIFX file"), (b"RF64", "an RF64 file")]
MIN_RATE, MAX_RATE = 4000, 384000
CONVERT = "convert it to PCM WAV first (e.g. sox IN -b 16 -e signed-integer OUT.wav)"


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law bytes -> float32 in [-1, 1] (the ITU table in closed form)."""
    u = ~np.asarray(codes, np.uint8)
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa.astype(np.int32) << 3) + 0x84) << exponent.astype(np.int32)) - 0x84
    return (np.where(sign, -magnitude, magnitude) / 32768.0).astype(np.float32)


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 A-law bytes -> float32 in [-1, 1]."""
    a = np.asarray(codes, np.uint8) ^ 0x55
    sign, mantissa = a & 0x80, (a & 0x0F).astype(np.int32)
    exponent = ((a >> 4) & 0x07).astype(np.int32)
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return (np.where(sign, magnitude, -magnitude) / 32768.0).astype(np.float32)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 samples in [-1, 1], sample rate) from a WAV file; channels are averaged.

    Reads the RIFF chunks itself: 8-bit unsigned, 16/24/32-bit signed PCM, 32/64-bit float,
    G.711 mu-law and A-law, plain or WAVE_FORMAT_EXTENSIBLE, any number of channels, rates
    4 kHz - 384 kHz.  A data chunk whose size is wrong (streamed output writes 0 or 0xFFFFFFFF)
    is read to the end of the file.  Anything else - compressed codecs, other containers, a
    broken header - raises one ValueError that names the file and the problem.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a WAV file") from None
    if not blob:
        raise ValueError(f"{path}: empty file (0 bytes)")
    for magic, what in MAGIC:
        if blob.startswith(magic):
            raise ValueError(f"{path}: {what}, not a WAV file: {CONVERT}")
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    fmt, data, pos = None, None, 12
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], int.from_bytes(blob[pos + 4 : pos + 8], "little")
        body = pos + 8
        if cid == b"data":
            end = body + size if 0 < size <= len(blob) - body else len(blob)  # streamed: to the end
            data = blob[body:end]
            if fmt is not None:
                break
        elif cid == b"fmt ":
            fmt = blob[body : body + size]
        pos = body + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise ValueError(f"{path}: corrupt WAV header (no complete 'fmt ' chunk)")
    if data is None:
        raise ValueError(f"{path}: corrupt WAV file (no 'data' chunk)")
    tag, channels, rate, _, block, bits = np.frombuffer(fmt[:16], "<u2, <u2, <u4, <u4, <u2, <u2")[0]
    tag, channels, rate, block, bits = int(tag), int(channels), int(rate), int(block), int(bits)
    if tag == EXTENSIBLE:
        if len(fmt) < 26:
            raise ValueError(f"{path}: corrupt WAV header (WAVE_FORMAT_EXTENSIBLE without subformat)")
        tag = int.from_bytes(fmt[24:26], "little")  # the GUID's first two bytes are the format tag
    if tag not in (PCM, FLOAT, ALAW, MULAW):
        name = CODECS.get(tag, "an unknown codec")
        raise ValueError(f"{path}: compressed WAV (format 0x{tag:04x}, {name}) is not supported: {CONVERT}")
    if channels < 1:
        raise ValueError(f"{path}: corrupt WAV header ({channels} channels)")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"{path}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    width = {PCM: (8, 16, 24, 32), FLOAT: (32, 64), ALAW: (8,), MULAW: (8,)}[tag]
    if bits not in width:
        kind = {PCM: "PCM", FLOAT: "float", ALAW: "A-law", MULAW: "mu-law"}[tag]
        raise ValueError(f"{path}: {bits}-bit {kind} samples are not supported (only {width} bits)")
    nbytes = bits // 8
    if block != nbytes * channels:
        block = nbytes * channels  # some writers leave it wrong; the sample layout is what counts
    n = len(data) // block
    raw = np.frombuffer(data[: n * block], np.uint8)
    if tag == PCM and bits == 8:
        x = (raw.astype(np.float32) - 128) / 128
    elif tag == PCM and bits == 24:
        b = raw.reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16) << 8 >> 8) / np.float32(2**23)
    elif tag == PCM:
        x = raw.view(f"<i{nbytes}").astype(np.float64) / 2.0 ** (bits - 1)
    elif tag == FLOAT:
        x = raw.view(f"<f{nbytes}").astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{path}: float WAV holds NaN or infinite samples")
    else:
        x = mulaw_decode(raw) if tag == MULAW else alaw_decode(raw)
    x = np.asarray(x, np.float64).reshape(n, channels).mean(axis=1)
    return x.astype(np.float32), rate


def read_speech(path: str | Path, silence_dbfs: float = -70.0) -> tuple[np.ndarray, int]:
    """``read_wav`` for recognition: also refuses a file with no samples or only silence."""
    x, rate = read_wav(path)
    if len(x) == 0:
        raise ValueError(f"{path}: no audio samples (the data chunk is empty)")
    if len(x) < rate * 0.05:
        raise ValueError(f"{path}: only {1000 * len(x) / rate:.0f} ms of audio")
    peak = float(np.max(np.abs(x)))
    if peak <= 10 ** (silence_dbfs / 20):
        level = "digital silence" if peak == 0 else f"peak {20 * np.log10(peak):.0f} dBFS"
        raise ValueError(f"{path}: silence only ({level}): nothing to recognise")
    return x, rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono float samples (clipped to [-1, 1]) as 16-bit PCM."""
    pcm = np.round(np.clip(np.asarray(samples, np.float64), -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())


def fast_length(n: int) -> int:
    """The smallest 5-smooth number (2^a 3^b 5^c) >= n: a length the FFT handles quickly."""
    n = max(int(n), 1)
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 << max(0, (-(-n // p35) - 1).bit_length())  # p35 * the power of 2 reaching n
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling by the FFT: keep (or zero-pad) the spectrum below both Nyquists.

    The signal is zero-padded to a length whose FFTs are fast and that maps exactly onto the
    target rate (a multiple of rate / gcd), resampled, and cut to round(n * target / rate)
    samples.  Frequencies above the target's Nyquist are removed, so nothing aliases.
    """
    x = np.asarray(x)
    if rate <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} and {target}")
    if rate == target or len(x) == 0:
        return x.copy()
    n = len(x)
    g = math.gcd(int(rate), int(target))
    p, q = int(target) // g, int(rate) // g
    k = fast_length(-(-n // q))  # pad to N = q k >= n: N and M = p k are fast lengths
    N, M = q * k, p * k
    out = max(int(round(n * target / rate)), 1)
    return fft_resize(x, N, M)[:out].astype(x.dtype)


def fft_resize(x: np.ndarray, N: int, M: int) -> np.ndarray:
    """x zero-padded to N samples, band-limited to M samples (the same duration)."""
    X = np.fft.rfft(np.asarray(x, np.float64), N)
    k = min(len(X), M // 2 + 1)
    Y = np.zeros(M // 2 + 1, complex)
    Y[:k] = X[:k]
    if M % 2 == 0 and k == M // 2 + 1:  # the new Nyquist bin holds a real cosine: halve it
        Y[-1] = Y[-1].real
    if N % 2 == 0 and k == N // 2 + 1 and M > N:  # the old Nyquist bin is split between +/- halves
        Y[k - 1] *= 0.5
    return np.fft.irfft(Y, M) * (M / N)


# ------------------------------------------------------------------------------ spectra
def hz_to_mel(f):
    """HTK mel scale: m = 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def warp_frequencies(freqs: np.ndarray, alpha: float, nyquist: float,
                     boundary: float | None = None) -> np.ndarray:
    """Vocal-tract-length warp (Jaitly & Hinton 2013): f -> alpha f, then a straight line to Nyquist.

    Below ``boundary * min(alpha, 1) / alpha`` (boundary defaults to 0.6 Nyquist) frequencies
    scale by ``alpha``; above it a second linear piece maps the rest onto [., nyquist], so the
    warp is continuous, monotonic and keeps 0 and Nyquist fixed.  alpha > 1 moves formants up
    (a shorter vocal tract), alpha < 1 down.
    """
    f = np.asarray(freqs, np.float64)
    if alpha == 1.0:
        return f
    b = (0.6 * nyquist if boundary is None else boundary) * min(alpha, 1.0)
    knee = b / alpha
    upper = nyquist - (nyquist - b) / (nyquist - knee) * (nyquist - f)
    return np.where(f <= knee, f * alpha, upper)


@lru_cache(maxsize=128)
def _filterbank(n_mels: int, n_fft: int, rate: int, fmin: float, fmax: float, warp: float) -> np.ndarray:
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (n_mels + 2,)
    freqs = warp_frequencies(np.arange(n_fft // 2 + 1) * rate / n_fft, warp, rate / 2)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb.setflags(write=False)  # shared by the cache
    return fb


def mel_filterbank(n_mels: int, n_fft: int, rate: int, fmin: float = 0.0,
                   fmax: float | None = None, warp: float = 1.0) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, peaks equally spaced in mel, each peaking at 1.

    ``warp`` != 1 applies ``warp_frequencies`` to the FFT bins first (vocal-tract-length
    perturbation): energy at f is counted as if it were at warp(f).
    """
    fmax = rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= rate/2, got {fmin}, {fmax}, rate {rate}")
    if not 0.5 <= warp <= 2.0:
        raise ValueError(f"warp must be in [0.5, 2], got {warp}")
    return _filterbank(int(n_mels), int(n_fft), int(rate), float(fmin), float(fmax), float(warp))


def frame_signal(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    """(T, win) overlapping frames, T = 1 + ceil((len - win) / hop) (zero-padded at the end)."""
    n = len(x)
    T = 1 + max(0, -(-(n - win) // hop))
    pad = np.zeros((T - 1) * hop + win, x.dtype)
    pad[:n] = x[: len(pad)]
    return np.lib.stride_tricks.sliding_window_view(pad, win)[::hop]  # a read-only view


def power_spectrum(x: np.ndarray, rate: int, win_ms: float = 25.0, hop_ms: float = 10.0,
                   n_fft: int | None = None) -> np.ndarray:
    """|FFT|^2 of Hann-windowed frames: (T, n_fft // 2 + 1), n_fft the next power of 2."""
    win, hop = int(round(rate * win_ms / 1000)), int(round(rate * hop_ms / 1000))
    n_fft = n_fft or 1 << (win - 1).bit_length()
    frames = frame_signal(np.asarray(x, np.float64), win, hop) * np.hanning(win + 2)[1:-1]
    return np.abs(np.fft.rfft(frames, n_fft)) ** 2


def log_mel(x: np.ndarray, rate: int, n_mels: int = 40, win_ms: float = 25.0, hop_ms: float = 10.0,
            fmin: float = 20.0, fmax: float | None = None, floor: float = 1e-10,
            warp: float = 1.0) -> np.ndarray:
    """log(mel filterbank energies): (T, n_mels) float32 (``warp``: see ``mel_filterbank``)."""
    spec = power_spectrum(x, rate, win_ms, hop_ms)
    fb = mel_filterbank(n_mels, 2 * (spec.shape[1] - 1), rate, fmin, fmax, warp)
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


def features(samples: np.ndarray, rate: int, cfg: FeatureConfig, *, warp: float = 1.0,
             hook: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Model input frames (T', cfg.dim) float32 for one utterance: THE front end of training and
    recognition alike.

    resample to cfg.rate -> log-mel (or MFCC) -> per-utterance mean/variance normalisation ->
    ``hook`` (training only: tempo change, SpecAugment masks) -> deltas -> stacking.  ``warp``
    is the vocal-tract-length factor of the filterbank (1 = none; training draws it at random).
    """
    x = resample(np.asarray(samples, np.float32), rate, cfg.rate)
    kw = dict(win_ms=cfg.win_ms, hop_ms=cfg.hop_ms)
    if cfg.kind == "logmel":
        f = log_mel(x, cfg.rate, cfg.n_mels, warp=warp, **kw)
    else:
        f = mfcc(x, cfg.rate, cfg.n_mfcc, cfg.n_mels, warp=warp, **kw)
    f = normalize(f)
    if hook is not None:
        f = hook(f)
    if cfg.deltas:
        f = add_deltas(f, cfg.deltas)
    return np.ascontiguousarray(stack_frames(f, cfg.stack, cfg.skip), np.float32)


def wav_features(path: str | Path, cfg: FeatureConfig) -> np.ndarray:
    """Features of a speech file; unreadable, empty or silent files raise a ValueError naming it."""
    samples, rate = read_speech(path)
    return features(samples, rate, cfg)
