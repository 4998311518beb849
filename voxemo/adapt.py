"""Adapting a trained pipeline to new voices, rooms and microphones without labels.

A pipeline standardises its features with its training corpus's mean and standard deviation (its
normaliser). Across corpora, most of what separates them is the speakers, their language and the
recording (RESULTS.md, "Across corpora"), and a corpus's own statistics take much of it away:
standardising each corpus (domain) with its own statistics is the classic unsupervised step of
cross-corpus emotion recognition (Schuller et al. 2010, "Cross-corpus acoustic emotion recognition:
variances and strategies", IEEE Trans. Affective Computing). `adapt` refits the normaliser's
statistics on a user's unlabelled recordings; nothing else changes. Every recording is heard as
`voxemo predict` hears it (`audio.decode`, the no-speech gate, `audio.windows`, the front-end), and the
statistics are those the normaliser was fitted with in training, now on the new recordings' windows.
They are the statistics of what the user gives: recordings nearly all of one emotion make it the
centre, and the model leans away from it (README says so).

Written here because no library does this for our pipelines: it is a mean and a standard deviation
of our own front-end's outputs.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from .audio import AudioError, speech_seconds
from .pipeline import PassThrough, Pipeline, PipelineError
from .predict import is_silence

MIN_CLIPS = 20  # recordings with speech that adaptation needs: the statistics of fewer would be noise


def check_adaptable(pipe) -> None:
    """PipelineError saying why `pipe` cannot be adapted (a fusion, per-speaker or frame models)."""
    if not isinstance(pipe, Pipeline):
        raise PipelineError("a fusion cannot be adapted as one: adapt each member (voxemo adapt ... --model "
                            "FUSION/member1 --out ...), then fuse the adapted members (voxemo fuse)")
    if pipe.speaker_norm:
        raise PipelineError("this pipeline already standardises each speaker with their own statistics "
                            "(speaker_norm): there is nothing for adaptation to refit")
    if isinstance(pipe.normalizer, PassThrough):
        raise PipelineError(f"{pipe.name} normalises each frame itself and has no corpus statistics to refit")


def adapt(pipe: Pipeline, paths: Sequence[str | os.PathLike], progress: Callable[[int], None] | None = None) -> dict:
    """Refit `pipe`'s normaliser on the recordings at `paths` that hold speech (unlabelled), in place:
    {"clips": recordings used, "no_speech": [paths], "errors": [{"path", "error"}]}. PipelineError when
    the pipeline cannot be adapted (`check_adaptable`) or fewer than MIN_CLIPS recordings hold speech
    (the pipeline is then left as it was)."""
    check_adaptable(pipe)
    clips, no_speech, errors = [], [], []
    for path in paths:
        try:
            x = pipe.audio.decode(path)
        except AudioError as e:
            if is_silence(e):
                no_speech.append(str(path))
            else:
                errors.append({"path": str(path), "error": str(e)})
        else:
            if speech_seconds(x, pipe.audio.sample_rate) > 0.0:
                clips.append(x)
            else:
                no_speech.append(str(path))
        if progress:
            progress(1)
    if len(clips) < MIN_CLIPS:
        raise PipelineError(f"{len(clips)} of {len(paths)} recordings hold speech; adaptation needs at least "
                            f"{MIN_CLIPS} (the statistics of fewer would be noise)")
    pipe.adapt(clips)
    pipe.meta["adapted"] = {"clips": len(clips),
                            "note": "normaliser statistics refit on unlabelled recordings (voxemo adapt); the "
                                    "validation and test figures in this file are the unadapted model's"}
    return {"clips": len(clips), "no_speech": no_speech, "errors": errors}
