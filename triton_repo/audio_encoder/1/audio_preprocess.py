"""WAV decoding and the log-mel front end of the aiSFX audio encoder.

Imported by this model's `model.py` inside Triton and by `models.reference` in-process, so
both paths feed the network identical spectrogram blocks. Keep it free of project imports.
Mirrors aiSFX's librosa front end (peak-normalised audio, HTK mel, log10(1 + 1e4 * mel),
min-max scaled with the paper's constants) in plain numpy.
"""

from __future__ import annotations

import io
import wave
from functools import cache

import numpy as np

SAMPLE_RATE = 44100
N_FFT = 2048
HOP_LENGTH = 1024
N_MELS = 96
F_MIN = 0.0
F_MAX = 22050.0
SPEC_MAX = 9.457798957824707  # aiSFX's 'original' normalisation (min 0)
BLOCK_FRAMES = 100  # ~2.3 s, the network's training input length
BLOCK_HOP = 50
# Only the start of long clips is embedded: the encoder costs ~2 GMAC per block.
MAX_SECONDS = 10.0
MIN_RATE, MAX_RATE = 4_000, 192_000  # Hz


class AudioDecodeError(ValueError):
    """The bytes are not a decodable PCM WAV file; the message says why."""


def decode_wav(data: bytes) -> np.ndarray:
    """PCM WAV bytes -> mono float32 samples at SAMPLE_RATE (at most MAX_SECONDS)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            # From the header, before reading samples: the rate bounds the work per second.
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioDecodeError(
                    f"WAV sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz"
                )
            wanted = min(wav.getnframes(), int(MAX_SECONDS * rate))
            frames = wav.readframes(wanted)
    except (wave.Error, EOFError, ValueError) as exc:
        raise AudioDecodeError(f"cannot decode WAV: {exc}") from exc
    if len(frames) < wanted * channels * width:
        raise AudioDecodeError(
            f"WAV is truncated: the header promises {wanted} frames, "
            f"{len(frames) // max(channels * width, 1)} are there"
        )
    if width == 1:
        samples = np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0
    elif width in (2, 4):
        samples = np.frombuffer(frames, dtype=f"<i{width}").astype(np.float32)
    elif width == 3:
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((raw[:, 0] | raw[:, 1] << 8 | raw[:, 2] << 16) << 8 >> 8).astype(np.float32)
    else:
        raise AudioDecodeError(f"unsupported WAV sample width: {width} bytes")
    usable = samples.size - samples.size % channels
    mono = samples[:usable].reshape(-1, channels).mean(axis=1)
    if mono.size == 0:
        raise AudioDecodeError("WAV holds no samples")
    if rate != SAMPLE_RATE:
        # Linear interpolation: adequate for a coarse 96-band mel front end.
        times = np.arange(int(mono.size * SAMPLE_RATE / rate)) * (rate / SAMPLE_RATE)
        mono = np.interp(times, np.arange(mono.size), mono).astype(np.float32)
    return mono


@cache
def _mel_filterbank() -> np.ndarray:
    """[N_MELS, N_FFT // 2 + 1] HTK-scale triangles, each normalised to unit L1 norm."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    mel_edges = np.linspace(hz_to_mel(np.array(F_MIN)), hz_to_mel(np.array(F_MAX)), N_MELS + 2)
    hz_edges = 700.0 * (10.0 ** (mel_edges / 2595.0) - 1.0)
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    ramps = hz_edges[:, None] - fft_hz[None, :]
    widths = np.diff(hz_edges)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Mono samples -> normalised log-mel spectrogram [frames, N_MELS]."""
    peak = float(np.abs(samples).max())
    samples = samples / (peak if peak > 0 else 1.0)
    padded = np.pad(samples, N_FFT // 2)  # centred frames, like librosa's stft(center=True)
    if padded.size < N_FFT:
        padded = np.pad(padded, (0, N_FFT - padded.size))
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = power.astype(np.float32) @ _mel_filterbank().T
    return (np.log10(mel * 10000.0 + 1.0) / SPEC_MAX).astype(np.float32)


def to_blocks(spectrogram: np.ndarray) -> np.ndarray:
    """[frames, N_MELS] -> [blocks, BLOCK_FRAMES, N_MELS]; a trailing partial block is
    dropped unless it is the only one, which is zero-padded (as aiSFX does)."""
    frames = spectrogram.shape[0]
    count = 1 if frames <= BLOCK_FRAMES else (frames - BLOCK_FRAMES) // BLOCK_HOP + 1
    padded = np.zeros((max(frames, BLOCK_FRAMES), N_MELS), dtype=np.float32)
    padded[:frames] = spectrogram
    starts = np.arange(count) * BLOCK_HOP
    return np.stack([padded[start : start + BLOCK_FRAMES] for start in starts])


def preprocess_audio(data: bytes) -> np.ndarray:
    """WAV bytes -> float32 [blocks, BLOCK_FRAMES, N_MELS]."""
    return to_blocks(log_mel(decode_wav(data)))
