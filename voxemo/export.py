"""ONNX export of a whole pipeline: raw waveform (B, N) float32 in, class probabilities (B, K) out.

The graph holds the front-end, the normaliser, the model and the softmax (and, for a per-window
model, the mean over a clip's windows), so an ONNX runtime needs nothing of voxemo to use it.

Its input is what `AudioSettings.prepare` (voxemo.audio) makes of a clip: the windows (C, N) of
mono float32 at the pipeline's rate, silence trimmed, offset skipped, cut to the training crop. The
settings are in the file's metadata (`audio`, JSON); a clip's probabilities are the mean of its
windows' rows, as `voxemo predict` and `voxemo evaluate` compute them.

How it is exported, and why:
- torch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`): it ships with torch;
  the newer dynamo exporter needs the extra `onnxscript` package.
- That exporter can export neither `torch.fft.rfft` (ONNX has no complex tensors) nor `unfold` over
  an axis of dynamic length. Only inside the export, every `features.Spectrogram` is swapped for
  `DFTSpectrogram`: framing, window and real DFT in one strided `conv1d` whose kernels are the
  window times the cos / sin rows of the DFT matrix. The same numbers up to float32 rounding (the
  export checks it); training and `Pipeline.forward` keep the FFT.
- Length axis: dynamic when the architecture takes any length (`takes_any_length`: no chunker in
  the front-end, and the model runs at other lengths than its training length; voxemo_net does).
  Otherwise (a Flatten sized for the training length, or a per-window / chunked front-end, whose
  windows are then cut by `GatherChunker`, a gather of precomputed frame indices) N is fixed to the
  pipeline's `audio.duration * sample_rate` samples, and the file's metadata says so. A dynamic
  graph that fails the check below (nn.TransformerEncoder bakes traced sizes in) is exported again
  with N fixed. The batch axis is always dynamic.
- Exported with autograd on: under no_grad nn.TransformerEncoder takes a fused path with no ONNX form.
- Metadata (`custom_metadata_map` in onnxruntime): labels (JSON list), sample_rate, audio (the
  AudioSettings as JSON), input_samples ("dynamic" or a number), model, per_window, task, voxemo_version.
- `export_onnx` runs the file in onnxruntime against torch on a test signal and raises `ExportError`
  when the probabilities differ by more than `PARITY_ATOL`.
- `int8=True` (`voxemo export --int8`, the `onnx-int8` runtime) writes the checked float graph again
  with its large matrix products in int8 (`quantize_int8`: onnxruntime's dynamic quantisation, a
  scale per output channel for the weights, per call for the activations). It is what onnxruntime
  does well, so nothing of it is written here but the choice of which products to quantise: the
  exporter traces frozen weights (the Whisper encoder's buffers) as Constant nodes, which the
  quantiser does not see, so they are made initializers first; and the feed-forward down-projections
  (a weight with more input than output features, e.g. Whisper's fc2 2048 -> 512) stay in float:
  their input, after the GELU, has outlier channels that one activation scale per call cannot hold.
  Measured on the default model's held-out and validation speakers (`benchmarks/quantization.py`,
  RESULTS.md): quantising those too changes about twice as many labels. The int8 graph is
  checked against torch with the looser `INT8_PARITY_ATOL`; whether its labels hold is the
  benchmark's question, not this check's.
- Exports and passes that check: every registered model but td_cnn_stft, whose model itself calls
  `unfold` inside a patch (export fails with a clear ExportError).

Letters: B batch, N samples, T frames, K classes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .features import Chunker, Spectrogram, centre_pad
from .pipeline import Pipeline

INPUT_NAME = "waveform"  # (B, N) float32 at the pipeline's sample rate
OUTPUT_NAME = "probabilities"  # (B, K) float32
PARITY_ATOL = 1e-4  # largest absolute probability difference export_onnx accepts against torch
INT8_PARITY_ATOL = 0.25  # the same for an int8 graph: a guard against a broken quantisation, not a check of accuracy
INT8_MIN_WEIGHTS = 65536  # a matrix product with fewer weights is left in float (no speed to gain)
TRACE_SECONDS = 2.0  # length of the example input traced when the pipeline hears clips whole (no fixed crop)


class ExportError(Exception):
    """The pipeline could not be exported, or the exported graph disagrees with torch."""


class DFTSpectrogram(nn.Module):
    """Export-only stand-in for `features.Spectrogram`: (B, N) -> power or magnitude (B, T, n_fft // 2 + 1).

    Framing, windowing and the real DFT as one strided conv1d: the kernels are window * cos and
    -window * sin of the DFT matrix (computed in float64, stored in float32), so every output frame
    is the same matrix product as rfft(frame * window).
    """

    def __init__(self, spec: Spectrogram):
        super().__init__()
        self.n_fft, self.hop_length, self.center, self.power = spec.n_fft, spec.hop_length, spec.center, spec.power
        self.pad_mode = spec.pad_mode
        self.n_bins = spec.n_fft // 2 + 1
        n = np.arange(spec.n_fft)
        k = np.arange(self.n_bins)[:, None]
        angle = 2 * np.pi * k * n / spec.n_fft  # (K', n_fft)
        w = spec.window.double().numpy()
        kernels = np.concatenate([np.cos(angle) * w, -np.sin(angle) * w])  # (2K', n_fft)
        self.register_buffer("kernels", torch.from_numpy(kernels).float()[:, None, :], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.center:
            x = centre_pad(x, self.n_fft // 2, self.pad_mode)
        y = nn.functional.conv1d(x.unsqueeze(1), self.kernels, stride=self.hop_length)  # (B, 2K', T)
        re, im = y[:, : self.n_bins], y[:, self.n_bins :]
        power = (re.square() + im.square()).transpose(1, 2)  # (B, T, K')
        return power if self.power == 2 else power.sqrt()


class GatherChunker(nn.Module):
    """Export-only stand-in for `features.Chunker` at one known number of frames: (B, F, T) ->
    (B, C, F, W) by gathering precomputed frame indices. The exporter can neither `unfold` an axis
    whose length it does not track nor write `movedim`'s negative permutation. Same numbers,
    including the padding of a clip shorter than one sliding window with the clip's minimum."""

    def __init__(self, chunker: Chunker, n_frames: int):
        super().__init__()
        self.pad = 0
        if chunker.chunks is not None:
            w = n_frames // chunker.chunks
            index = torch.arange(w * chunker.chunks).reshape(chunker.chunks, w)
        else:
            w, h = chunker.window_frames, chunker.window_hop
            self.pad = max(0, w - n_frames)
            starts = torch.arange(0, n_frames + self.pad - w + 1, h)  # as unfold: whole windows only
            index = starts[:, None] + torch.arange(w)[None, :]
        self.register_buffer("index", index, persistent=False)  # (C, W)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.pad:
            low = f.amin().expand(*f.shape[:-1], self.pad)
            f = torch.cat([f, low], dim=-1)
        return f[:, :, self.index].permute(0, 2, 1, 3)  # (B, F, C, W) -> (B, C, F, W)


def for_export(pipe: Pipeline, n_samples: int | None = None) -> Pipeline:
    """A copy of the pipeline, in eval mode, with every Spectrogram swapped for a DFTSpectrogram and,
    when the input length is fixed to `n_samples`, a sliding-window chunker for a GatherChunker."""
    out = copy.deepcopy(pipe).eval()
    encoder = [out.encoder] if getattr(out, "encoder", None) is not None else []  # held outside the state dict
    for module in [m for root in [out, *encoder] for m in root.modules()]:
        for child_name, child in list(module.named_children()):
            if isinstance(child, Spectrogram):
                setattr(module, child_name, DFTSpectrogram(child))
            elif isinstance(child, Chunker) and n_samples is not None:
                setattr(module, child_name, GatherChunker(child, out.frontend.n_frames(n_samples)))
    return out


def fixed_samples(pipe: Pipeline) -> int:
    """Samples of one training crop (audio.duration * sample_rate)."""
    if pipe.audio.crop_samples is None:
        raise ExportError("the pipeline has no fixed clip duration (audio.duration); cannot fix the input length")
    return pipe.audio.crop_samples


@torch.inference_mode()
def takes_any_length(pipe: Pipeline) -> bool:
    """Whether one traced graph serves every input length: no chunker in the front-end (its window
    count and padding are decided in Python), and the model runs at 0.6x and 1.7x its training length."""
    if pipe.frontend.chunker is not None:
        return False
    if pipe.audio.duration is None:
        return True
    n = fixed_samples(pipe)
    pipe.eval()
    try:
        for m in (int(0.6 * n), int(1.7 * n)):
            pipe(test_signal(1, m, pipe.audio.sample_rate))
    except (RuntimeError, ValueError, IndexError):  # a layer sized for the training length
        return False
    return True


def test_signal(b: int, n: int, sr: int, seed: int = 0) -> torch.Tensor:
    """(b, n) float32: a harmonic tone gliding in pitch under a little noise; speech-like enough to
    exercise every frequency band the front-ends see."""
    g = np.random.default_rng(seed)
    t = np.arange(n) / sr
    out = []
    for i in range(b):
        f0 = 120 + 60 * i + 40 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        x = sum(np.sin(h * phase) / h for h in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2)
        out.append(0.1 * x + 0.003 * g.standard_normal(n))
    return torch.from_numpy(np.stack(out).astype(np.float32))


def export_onnx(pipeline: Pipeline, out_path: str | os.PathLike, opset: int = 17, *, overwrite: bool = False,
                int8: bool = False) -> dict:
    """Write the whole pipeline as one ONNX graph: `waveform` (B, N) float32 -> `probabilities` (B, K).

    The length axis is dynamic when `takes_any_length(pipeline)`; if that graph then fails the check
    against torch (some layers bake traced sizes in), it is exported again with N fixed to the
    training length. Every file is checked in onnxruntime against torch on a test signal, batches
    of 1 and 3, and for a dynamic length at the training length and at 0.6x of it.

    int8: then quantise the checked graph's large matrix products (`quantize_int8`) and check the
    result against torch within INT8_PARITY_ATOL; the metadata's "weights" says "int8".

    Returns the metadata written into the file (labels, sample_rate, input_samples, weights, ...) and
    "parity": the largest absolute probability difference against torch in that check. Raises
    FileExistsError for an existing file unless `overwrite`, ExportError when the pipeline cannot
    be exported or its graph disagrees with torch by more than PARITY_ATOL.
    """
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True (CLI: --force) to replace it")
    pipeline = pipeline.eval()
    name = pipeline.model.name
    if pipeline.speaker_norm:
        raise ExportError("this pipeline normalises each speaker with their own statistics over several clips; "
                          "a graph of one clip cannot (train without speaker_norm to export)")
    n = int(round(pipeline.audio.sample_rate * TRACE_SECONDS)) if pipeline.audio.duration is None else fixed_samples(pipeline)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    tries = [True, False] if takes_any_length(pipeline) else [False]
    if pipeline.audio.duration is None:
        tries = [True]
    problem = ""
    try:
        for dynamic in tries:
            meta = _export(pipeline, tmp, n, dynamic, opset)
            try:
                worst = _parity(pipeline, tmp, n, dynamic)
            except ExportError as e:
                problem = str(e)
                continue
            if worst <= PARITY_ATOL and int8:
                quantized = tmp.with_name(tmp.name + ".int8")
                try:
                    meta = dict(meta, weights="int8", int8_products=str(quantize_int8(tmp, quantized)))
                    set_props(quantized, meta)
                    os.replace(quantized, tmp)
                finally:
                    quantized.unlink(missing_ok=True)
                worst = _parity(pipeline, tmp, n, dynamic)
                if worst <= INT8_PARITY_ATOL:
                    os.replace(tmp, out_path)
                    return dict(meta, labels=list(pipeline.labels), parity=worst)
                problem = (f"its int8 graph and torch differ by {worst:.2e} (more than {INT8_PARITY_ATOL:g}) in "
                           f"probability on a test signal")
                break
            if worst <= PARITY_ATOL:
                os.replace(tmp, out_path)
                return dict(meta, labels=list(pipeline.labels), parity=worst)
            problem = (f"ONNX Runtime and torch differ by {worst:.2e} (more than {PARITY_ATOL:g}) in "
                       f"probability on a test signal")
    finally:
        tmp.unlink(missing_ok=True)
    raise ExportError(f"{name}: {problem}")


def quantize_int8(src: Path, dst: Path, *, down_projections: bool = False) -> int:
    """Write `src` again as `dst` with its large matrix products in int8 (onnxruntime's dynamic
    quantisation, weights per output channel); the number quantised.

    Quantised: every MatMul whose weight is a constant matrix of at least INT8_MIN_WEIGHTS entries
    with no more input than output features (attention projections, feed-forward up-projections);
    left in float: the down-projections (more input than output features: their input follows the
    GELU and has outliers; `down_projections=True` quantises them too, for benchmarks/quantization.py's
    comparison), convolutions and everything small (the heads).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    m = onnx.load(str(src))
    weights = {t.name: tuple(t.dims) for t in m.graph.initializer}
    kept = []
    for node in m.graph.node:  # frozen weights traced as Constant nodes -> initializers the quantiser sees
        value = node.attribute[0].t if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if value is not None and node.attribute[0].name == "value" and len(value.dims) == 2:
            value.name = node.output[0]
            m.graph.initializer.append(value)
            weights[value.name] = tuple(value.dims)
            continue
        kept.append(node)
    del m.graph.node[:]
    m.graph.node.extend(kept)
    chosen = [node.name for node in m.graph.node if node.op_type == "MatMul" and len(node.input) == 2
              and len(shape := weights.get(node.input[1], ())) == 2
              and shape[0] * shape[1] >= INT8_MIN_WEIGHTS and (down_projections or shape[0] <= shape[1])]
    if not chosen:
        raise ExportError("no matrix product large enough to quantise: the float graph is as fast")
    staged = dst.with_name(dst.name + ".float")
    try:
        onnx.save(m, str(staged))
        with _quiet():
            quantize_dynamic(str(staged), str(dst), op_types_to_quantize=["MatMul"], nodes_to_quantize=chosen,
                             weight_type=QuantType.QInt8, per_channel=True)
    finally:
        staged.unlink(missing_ok=True)
    return len(chosen)


def set_props(path: Path, meta: dict) -> None:
    """Write `meta` as the file's metadata (custom_metadata_map), replacing what it had."""
    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, meta)
    onnx.save(m, str(path))


def _export(pipeline: Pipeline, path: Path, n: int, dynamic: bool, opset: int) -> dict:
    """Trace and write one graph (length axis dynamic, or fixed to n samples); its metadata."""
    import onnx

    model = for_export(pipeline, None if dynamic else n)
    axes = {INPUT_NAME: {0: "batch", 1: "samples"} if dynamic else {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    try:
        # Traced with autograd on: under no_grad, nn.TransformerEncoder takes a fused fast path
        # that has no ONNX form.
        with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad(), _quiet():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(model, (test_signal(2, n, pipeline.audio.sample_rate),), str(path), dynamo=False,
                              opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=axes, do_constant_folding=True)
    except Exception as e:  # the exporter raises many types; one error that names the model
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ExportError(f"{pipeline.model.name}: ONNX export failed ({type(e).__name__}: {first})") from None
    labels = pipeline.labels
    meta = {
        "labels": json.dumps(labels),
        "sample_rate": str(pipeline.audio.sample_rate),
        "audio": json.dumps(pipeline.audio.to_dict()),
        "input_samples": "dynamic" if dynamic else str(n),
        "weights": "float32",
        "model": pipeline.model.name,
        "per_window": str(pipeline.per_window).lower(),
        "task": pipeline.task,
        "voxemo_version": __version__,
    }
    m = onnx.load(str(path))
    onnx.helper.set_model_props(m, meta)
    m.doc_string = (f"voxemo {pipeline.model.name}: {INPUT_NAME} (batch, samples) float32 mono at "
                    f"{pipeline.audio.sample_rate} Hz, a clip's windows as voxemo's AudioSettings.prepare "
                    f"cuts them (settings in the 'audio' metadata) -> {OUTPUT_NAME} (batch, {len(labels)}) over "
                    f"{', '.join(labels)}, a clip's probabilities the mean of its windows' rows; input length "
                    f"{'any' if dynamic else f'fixed to {n} samples'}")
    onnx.save(m, str(path))
    return meta


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's own printing (it dumps whole graphs on stderr from C++ on failure)."""
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _parity(pipeline: Pipeline, path: Path, n: int, dynamic: bool) -> float:
    """Largest absolute probability difference between the file in onnxruntime and torch."""
    runner = OnnxRunner(path, quiet=True)
    worst = 0.0
    for b, length in ((3, n), (1, int(0.6 * n))) if dynamic else ((3, n), (1, n)):
        x = test_signal(b, length, pipeline.audio.sample_rate, seed=1)
        with torch.inference_mode():
            want = pipeline(x).numpy()
        try:
            got = runner.run(x.numpy())
        except Exception as e:  # onnxruntime's own error types
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise ExportError(f"the exported graph fails in onnxruntime on input ({b}, {length}): {first}") from None
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


class OnnxRunner:
    """An exported pipeline in onnxruntime: `.run(waves (B, N) float32) -> probabilities (B, K)`.

    `.labels`, `.sample_rate` and `.input_samples` (None when any length works) come from the
    file's metadata. threads: onnxruntime's intra-op threads (1 keeps a server's workers from
    fighting over cores).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1, *, quiet: bool = False):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 4 if quiet else 3  # fatal only / errors only
        # No memory arena: with it a session keeps its largest batch's buffers for good (a server that had
        # answered one 600 s timeline went from 743 MB to 7,443 MB and stayed there; without it 731 -> 672 MB:
        # benchmarks/service_load.py); single clips run as fast without it (benchmarks/inference.py, RESULTS.md).
        opts.enable_cpu_mem_arena = False
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ExportError(f"{path}: not an ONNX model onnxruntime can load ({e})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "labels" not in meta:
            raise ExportError(f"{path}: not a voxemo export (no labels in its metadata)")
        self.labels = json.loads(meta["labels"])
        self.sample_rate = int(meta["sample_rate"])
        self.input_samples = None if meta["input_samples"] == "dynamic" else int(meta["input_samples"])
        self.int8 = meta.get("weights") == "int8"  # matrix products quantised (export_onnx(int8=True))

    def run(self, waves: np.ndarray) -> np.ndarray:
        waves = np.ascontiguousarray(waves, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: waves})[0]
