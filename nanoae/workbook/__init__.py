"""The learner's workbook: nanoae's core with the backward passes to write, and their checker.

    generate.py   writes the workbook from nanoae's own source (``ast``): stubs, or the answers
    grade.py      checks it: each exercise against finite differences or nanoae's Adam,
                  then one epoch of the reference autoencoder with the learner's classes

``nanoae workbook DIR`` and ``nanoae workbook --check DIR`` call ``write`` and ``check``.
The wing imports the core, and ``fashion`` for the data and the reference model.
"""

from __future__ import annotations

import os
from pathlib import Path

from nanoae.errors import UsageError
from nanoae.workbook.generate import EXERCISES, write_workbook
from nanoae.workbook.grade import WorkbookError

__all__ = ["write", "check", "WorkbookError"]

IMAGES = 10000  # training images of the check's epoch


def refuse_unwritable(directory: Path) -> None:
    """UsageError (exit 2, one line) unless ``directory`` is, or can be made, a writable folder."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is a file; give a folder for the workbook (new or existing)")
    existing = next((p for p in (directory, *directory.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise UsageError(f"{directory}: cannot make a folder there ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{directory}: cannot write there ({existing} is not writable); "
                         "choose a folder of your own")


def write(directory, *, solved: bool = False, force: bool = False) -> dict:
    """Write a fresh workbook into ``directory``; refuses to overwrite one unless ``force``."""
    directory = Path(directory)
    refuse_unwritable(directory)
    there = [f"{m}.py" for m in EXERCISES if (directory / f"{m}.py").exists()]
    if there and not force:
        raise UsageError(f"{directory} already holds {', '.join(there)} (your work?); check it "
                         f"with --check {directory}, or replace it with --force")
    paths = write_workbook(directory, solved=solved)
    print(f"wrote {'the answers' if solved else 'your workbook'} into {directory}: "
          f"{', '.join(p.name for p in paths)}; read {directory / 'README.md'}, then run: "
          f"nanoae workbook --check {directory}")
    return None


def check(directory, *, data_dir=None, verify: bool = True, seed: int = 0,
          images: int = IMAGES) -> None:
    """Print the table; when every exercise passes, train with the learner's classes too.

    Raises WorkbookError (exit 1) when an exercise is to do or fails, or when
    the training runs disagree.
    """
    from nanoae.fashion.data import load_fashion_mnist  # noqa: PLC0415
    from nanoae.workbook import grade  # noqa: PLC0415

    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"no workbook folder {directory}; write one with: nanoae workbook {directory}")
    mods, rows = grade.check_all(directory, seed)
    print(grade.format_table(rows, directory), flush=True)
    undone = [r.exercise.label for r in rows if r.status != "passes"]
    if undone:
        raise WorkbookError(f"{len(undone)} of {len(rows)} exercises not passing yet "
                            f"({', '.join(undone)}); the training run comes when all pass")
    x_train, _ = load_fashion_mnist("train", data_dir, verify=verify)
    x_test, _ = load_fashion_mnist("test", data_dir, verify=verify)
    x_train, x_test = grade.flat_images(x_train[:images]), grade.flat_images(x_test)
    try:
        result = grade.compare_training(mods, x_train, x_test, seed=seed)
    except Exception as exc:  # noqa: BLE001 - the learner's code at full size: one line, not a crash
        raise WorkbookError(f"every exercise passes, but training the reference autoencoder with "
                            f"your classes {grade.describe_raised(exc, directory)}") from exc
    print("\n".join(grade.training_lines(result, len(x_train), len(x_test))), flush=True)
    if not result["agree"]:
        raise WorkbookError("every exercise passes, but training with your classes differs from "
                            "nanoae's (see above)")
