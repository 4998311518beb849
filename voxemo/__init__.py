"""voxemo: recognise emotion in speech and song."""

__version__ = "0.1.0"
