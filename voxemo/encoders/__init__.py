"""Pretrained speech encoders as plain torch modules, each giving the hidden states of every layer.

- `whisper`: OpenAI's Whisper base encoder, weights read from CTranslate2's model.bin (no pickle).

Importing this package imports torch; `import voxemo` does not import it.
"""

from .whisper import (
    EncoderError,
    WhisperEncoder,
    WhisperEncoderConfig,
    load_whisper_encoder,
    log_mel,
)

__all__ = ["EncoderError", "WhisperEncoder", "WhisperEncoderConfig", "load_whisper_encoder", "log_mel"]
