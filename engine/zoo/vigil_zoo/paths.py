"""Where the repository and the labelled Ped2 split are, for the defaults of the CLI.

An editable install (`pip install -e engine/zoo`) leaves the package inside the repository, so
the repository is found from this file; a wheel installed elsewhere has no repository around it
and falls back to $VIGIL_REPO, else the working directory."""
from __future__ import annotations

import os


def _repo() -> str:
    env = os.environ.get("VIGIL_REPO")
    if env:
        return os.path.abspath(env)
    here = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
    return here if os.path.isdir(os.path.join(here, "engine", "models")) else os.getcwd()


REPO = _repo()

# The labelled Ped2 test split beside the repository (../shared), as CI lays it out.
PED2_TEST_LABELS = os.path.normpath(os.path.join(REPO, "..", "shared/datasets/ped2/testing/labels.json"))


def shipped_checkpoint(name: str) -> str:
    """engine/zoo/checkpoints/ped2-<name>.pt, the checkpoint a shipped package was exported from."""
    return os.path.join(REPO, "engine/zoo/checkpoints", f"ped2-{name}.pt")


def shipped_package(name: str) -> str:
    return os.path.join(REPO, "engine/models", f"ped2-{name}")
