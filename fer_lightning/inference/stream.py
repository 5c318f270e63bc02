"""The model over a stream of face crops, as it was evaluated: a bidirectional model over
overlapping windows of its training clip length (each frame gets the mean of the windows that
cover it), a causal one in chunks with its temporal state carried across. Used by ``predict``
and ``submit``; memory stays bounded whatever the stream's length."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fer_lightning.inference.device import inference_autocast
from fer_lightning.inference.settings import PredictConfig
from fer_lightning.metrics.stitch import stitch_frames


@dataclass
class Timings:
    """Wall seconds per stage of one video."""

    decode: float = 0.0
    face: float = 0.0
    model: float = 0.0
    other: float = 0.0


def _stack(items: list):
    return torch.stack(items) if isinstance(items[0], torch.Tensor) else np.stack(items)


class WindowedRunner:
    """Bidirectional model: windows of ``length`` items starting every ``stride`` items, run
    ``batch`` at a time; an item's output is the mean of the windows covering it (the project's
    stitching rule, :func:`~fer_lightning.metrics.stitch.stitch_frames`, applied to each item
    once no later window can cover it). The last window is the stream's last ``length`` items,
    so every item is covered without padding."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], length: int, stride: int, batch: int) -> None:
        self.run, self.length, self.stride, self.batch = run, length, stride, batch
        self.recent: deque = deque(maxlen=length)  # (position, frame index, crop)
        self.queued: list[list] = []
        self.outputs: list[tuple[np.ndarray, ...]] = []  # per window run: (start, positions, indices, outputs)
        self.position = 0
        self.next_start = 0
        self.last_end = -1  # position of the last item of the last window queued

    def push(self, index: int, crop: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self.recent.append((self.position, index, crop))
        self.position += 1
        if self.position == self.next_start + self.length:
            self._queue(list(self.recent))
            self.next_start += self.stride
        if len(self.queued) < self.batch:
            return []
        # the stream's last window (its last ``length`` items) may still cover recent items
        return self._run_queued(done_before=min(self.next_start, self.position - self.length))

    def finish(self) -> list[tuple[int, np.ndarray]]:
        if self.position and self.last_end < self.position - 1:
            self._queue(list(self.recent))
        return self._run_queued(done_before=self.position)

    @property
    def held(self) -> int:
        """Window outputs kept for items not yet final (bounded, however long the stream)."""
        return sum(len(o[1]) for o in self.outputs)

    def _queue(self, items: list) -> None:
        self.queued.append(items)
        self.last_end = items[-1][0]

    def _run_queued(self, done_before: int) -> list[tuple[int, np.ndarray]]:
        by_len: dict[int, list] = {}
        for w in self.queued:
            by_len.setdefault(len(w), []).append(w)
        for windows in by_len.values():
            out = self.run(_stack([_stack([c for _, _, c in w]) for w in windows]))
            for w, preds in zip(windows, out, strict=True):
                positions = np.array([pos for pos, _, _ in w], np.int64)
                self.outputs.append((np.full(len(w), positions[0]), positions,
                                     np.array([index for _, index, _ in w], np.int64), np.asarray(preds)))
        self.queued = []
        if not self.outputs:
            return []
        starts, positions, indices, preds = (np.concatenate(x) for x in zip(*self.outputs, strict=True))
        final = positions < done_before
        self.outputs = [(starts[~final], positions[~final], indices[~final], preds[~final])] if (~final).any() else []
        if not final.any():
            return []
        _, mean, index = stitch_frames(torch.zeros(int(final.sum()), dtype=torch.int64), torch.from_numpy(starts[final]),
                                       torch.from_numpy(positions[final]), torch.from_numpy(preds[final]),
                                       torch.from_numpy(indices[final]))
        mean = mean.numpy().astype(preds.dtype)
        return [(int(i), m) for i, m in zip(index.tolist(), mean, strict=True)]


class CausalRunner:
    """Unidirectional model: the stream in chunks of ``chunk`` items, the LSTM state carried."""

    def __init__(self, run: Callable[[np.ndarray, object], tuple[np.ndarray, object]], chunk: int) -> None:
        self.run, self.chunk = run, chunk
        self.pending: list[tuple[int, np.ndarray]] = []
        self.state = None

    def push(self, index: int, crop: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self.pending.append((index, crop))
        return self._run() if len(self.pending) >= self.chunk else []

    def finish(self) -> list[tuple[int, np.ndarray]]:
        return self._run() if self.pending else []

    def _run(self) -> list[tuple[int, np.ndarray]]:
        out, self.state = self.run(_stack([c for _, c in self.pending])[None], self.state)
        done = [(i, p) for (i, _), p in zip(self.pending, out[0], strict=True)]
        self.pending = []
        return done


class ModelStream:
    """Runs the model over a video's crops, pushed in frame order; hands back (frame index,
    output) in any order.

    The face encoder sees each frame once, ``encode_batch`` frames at a time (it works frame by
    frame, so overlapping windows share its features); the LSTM and head then run over windows
    of features, or over the stream with their state carried for a causal model. A model
    trained on every k-th frame (``frame_step``) runs on k interleaved streams.
    """

    def __init__(self, model, device: torch.device, frame_step: int, cfg: PredictConfig, clip_len: int,
                 timings: Timings, encode_batch: int = 32) -> None:
        self.model, self.device, self.timings = model, device, timings
        self.autocast = lambda: inference_autocast(device, cfg.precision)
        self.frame_step = max(1, frame_step)
        self.encode_batch = encode_batch
        self.probabilities = not model.objective.continuous
        self.causal = model.net.is_causal
        length = cfg.window or clip_len
        stride = max(1, round(length * (1 - cfg.overlap)))
        self.runners: dict[int, object] = {}
        self._make = (lambda: CausalRunner(self._run_causal, cfg.chunk)) if self.causal else \
            (lambda: WindowedRunner(self._run_windows, length, stride, cfg.batch_size))
        self._crops: list[tuple[int, np.ndarray]] = []

    def push(self, index: int, crop: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self._crops.append((index, crop))
        return self._encode() if len(self._crops) >= self.encode_batch else []

    def finish(self) -> list[tuple[int, np.ndarray]]:
        out = self._encode() if self._crops else []
        return out + [r for runner in self.runners.values() for r in runner.finish()]

    @torch.no_grad()
    def _encode(self) -> list[tuple[int, np.ndarray]]:
        start = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(np.stack([c for _, c in self._crops]).transpose(0, 3, 1, 2)))
        with self.autocast():
            feats = self.model.net.forward_features(x.to(self.device, non_blocking=True)[None])[0]
        self.timings.model += time.perf_counter() - start
        out = []
        for (index, _), f in zip(self._crops, feats, strict=True):
            phase = index % self.frame_step
            if phase not in self.runners:  # one runner per phase, made once
                self.runners[phase] = self._make()
            out += self.runners[phase].push(index, f)
        self._crops = []
        return out

    def _outputs(self, y: torch.Tensor) -> np.ndarray:
        return (y.float().softmax(-1) if self.probabilities else y.float()).cpu().numpy()

    @torch.no_grad()
    def _run_windows(self, feats) -> np.ndarray:
        start = time.perf_counter()
        net = self.model.net
        with self.autocast():
            out = self._outputs(net.forward_head(net.forward_temporal(feats)[0]))
        self.timings.model += time.perf_counter() - start
        return out

    @torch.no_grad()
    def _run_causal(self, feats, state):
        start = time.perf_counter()
        net = self.model.net
        with self.autocast():
            feats, state = net.forward_temporal(feats, state)
            out = self._outputs(net.forward_head(feats))
        self.timings.model += time.perf_counter() - start
        return out, state
