"""The install is the lock: pyproject's requirements agree with requirements.lock, and the
environment running the tests holds exactly the lock's versions (a fresh clone's `make test`
proves it for a new machine)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# Installed by `make` itself, not resolved from the project's requirements.
NOT_LOCKED = {"pip", "soul-avatar"}


def lock_pins(path: Path = LOCK) -> dict[str, tuple[Version, Marker | None]]:
    pins: dict[str, tuple[Version, Marker | None]] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith((" ", "#", "-")):
            continue
        req = Requirement(line)
        spec = next(iter(req.specifier))
        assert spec.operator == "==", f"{line!r}: the lock pins exact versions"
        pins[canonicalize_name(req.name)] = (Version(spec.version), req.marker)
    return pins


def make_extras() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    return re.search(r"^EXTRAS \?= (.+)$", makefile, re.M).group(1).split(",")  # type: ignore[union-attr]


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in make_extras():
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def applies(marker: Marker | None) -> bool:
    return marker is None or marker.evaluate()


def test_every_requirement_of_pyproject_is_pinned_in_the_lock_within_its_range() -> None:
    pins = lock_pins()
    for req in project_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is in pyproject.toml but not in requirements.lock: run `make lock`"
        version, _ = pins[name]
        assert req.specifier.contains(version, prereleases=True), f"lock pins {name}=={version}, outside pyproject's {req}: run `make lock`"


def test_lock_pins_the_cpu_torch_and_no_cuda_runtime() -> None:
    pins = lock_pins()
    assert pins["torch"][0] == Version("2.13.0")
    cuda = [n for n in pins if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    assert not cuda, f"CUDA runtime packages in the lock would download gigabytes: {cuda}"


def test_installed_versions_equal_the_lock() -> None:
    pins = lock_pins()
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    wrong = {
        name: f"lock {version}, installed {installed.get(name)}"
        for name, (version, marker) in pins.items()
        # torch's CPU build carries a local label: 2.13.0+cpu is the lock's 2.13.0
        if applies(marker) and (name not in installed or Version(installed[name].public) != version)
    }
    assert not wrong, f"the environment differs from requirements.lock (re-run `make install`): {wrong}"
    extra = sorted(set(installed) - set(pins) - NOT_LOCKED)
    assert not extra, f"installed but not locked: {extra}"


def test_installed_torch_is_the_cpu_build() -> None:
    import torch

    assert torch.version.cuda is None, torch.__version__
