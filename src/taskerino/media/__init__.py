"""Pure media code: composition, H.264 chunk encoding, salvaging and joining chunks."""

from taskerino.media.chunks import ChunkInfo, VideoInfo, join_chunks, probe_video, salvage_chunk
from taskerino.media.compositor import Compositor
from taskerino.media.encoder import ChunkedEncoder

__all__ = [
    "ChunkInfo",
    "ChunkedEncoder",
    "Compositor",
    "VideoInfo",
    "join_chunks",
    "probe_video",
    "salvage_chunk",
]
