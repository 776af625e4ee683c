"""Reading back the WebDataset shards the miniature world and `soul data` write."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf


def shard_members(out: Path) -> dict[str, object]:
    """Samples of every WAV, the text of every JSON and the bytes of every other member of OUT/shards.

    WAVs are compared by samples because float WAVs carry a timestamp in their header.
    """
    found: dict[str, object] = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if member.name.endswith(".wav"):
                    found[member.name] = sf.read(io.BytesIO(data), dtype="float32")[0]
                elif member.name.endswith(".json"):
                    found[member.name] = data.decode()
                else:
                    found[member.name] = np.frombuffer(data, np.uint8)
    return found
