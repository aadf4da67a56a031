"""The architecture, checked from the imports: the core on top, each wing a subpackage, arrows one way.

    core      nanoae/*.py (backend, parameter, layers, losses, optim, sequential, gradcheck, errors)
    parallel  nanoae/parallel/   may import the core
    train     nanoae/train/      may import the core and parallel
    fashion   nanoae/fashion/    may import the core, parallel and train
    workbook  nanoae/workbook/   may import the core, parallel, train and fashion
    sklearn   nanoae/sklearn/    may import the core, parallel, train and fashion (nothing imports it)
    cli       nanoae/cli/        may import anything
    nanoae/__init__.py, the public API, re-exports the core and train.

The core never imports matplotlib, scikit-learn, tqdm or IPython. Every import counts, at
module level or inside a function (a late import is still an arrow).
"""

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nanoae"

ALLOWED = {
    "core": {"core"},
    "parallel": {"core", "parallel"},
    "train": {"core", "parallel", "train"},
    "fashion": {"core", "parallel", "train", "fashion"},
    "workbook": {"core", "parallel", "train", "fashion", "workbook"},
    "sklearn": {"core", "parallel", "train", "fashion", "sklearn"},
    "cli": {"core", "parallel", "train", "fashion", "workbook", "cli"},
    "api": {"core", "train"},
}
# ``from nanoae import __version__`` runs the public API, which imports train: a wing may, the core not
for wing in ("parallel", "train", "fashion", "workbook", "sklearn", "cli"):
    ALLOWED[wing].add("api")
CORE_NEVER = ("matplotlib", "sklearn", "tqdm", "IPython")


def part_of(module: str) -> str:
    """The part a dotted module name of the package belongs to: "nanoae.train.loop" -> "train"."""
    names = module.split(".")
    if names == ["nanoae"]:
        return "api"
    if len(names) > 2 or names[1] in ALLOWED:
        return names[1]
    return "core"  # nanoae.layers, nanoae.backend, ...


def module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    names = list(rel.parts)
    if names[-1] == "__init__":
        names.pop()
    return ".".join(names)


def imports_of(path: Path, package: Path):
    """(imported module, line) for every import in ``path``, relative ones resolved."""
    this = module_name(path, package).split(".")
    if path.name != "__init__.py":
        this = this[:-1]  # the package the module is in
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(this[: len(this) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # from nanoae import plots: the module nanoae.plots
                candidate = package.parent / f"{base}.{alias.name}".replace(".", "/")
                is_module = candidate.with_suffix(".py").exists() or candidate.is_dir()
                yield (f"{base}.{alias.name}" if is_module else base), node.lineno


def violations(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        part = part_of(name)
        for imported, line in imports_of(path, package):
            where = f"{path.relative_to(package.parent)}:{line}"
            top = imported.split(".")[0]
            if top == package.name:
                target = part_of(imported)
                if target not in ALLOWED[part] and not imported.startswith(name + "."):
                    found.append(f"{where}: {part} imports {imported} ({target})")
            elif part == "core" and top in CORE_NEVER:
                found.append(f"{where}: the core imports {imported}")
    return found


def test_the_arrows_point_one_way():
    assert violations(PACKAGE) == []


def test_the_check_catches_an_arrow_the_wrong_way(tmp_path):
    fake = tmp_path / "nanoae"
    (fake / "train").mkdir(parents=True)
    (fake / "fashion").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "train" / "__init__.py").write_text("")
    (fake / "fashion" / "__init__.py").write_text("")
    (fake / "fashion" / "plots.py").write_text("")
    (fake / "layers.py").write_text("def f():\n    from nanoae.train import loop\n    import matplotlib\n")
    (fake / "train" / "loop.py").write_text("from ..fashion import plots\nfrom nanoae import layers\n")
    assert violations(fake) == [
        "nanoae/layers.py:2: core imports nanoae.train.loop (train)",
        "nanoae/layers.py:3: the core imports matplotlib",
        "nanoae/train/loop.py:1: train imports nanoae.fashion.plots (fashion)",
    ]


def test_the_core_is_flat_and_each_wing_is_a_folder():
    core = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert core == ["backend", "errors", "gradcheck", "layers", "losses", "optim", "parameter",
                    "sequential"]
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == [
        "cli", "fashion", "parallel", "sklearn", "train", "workbook"]


def _one_edit_apart(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


@pytest.mark.parametrize("a, b, alike", [("model", "models", True), ("gradcheck", "gradcheck_suite", True),
                                         ("loop", "zero", False), ("data", "state", False)])
def test_names_alike_are_detected(a, b, alike):
    assert (_one_edit_apart(a, b) or a.startswith(b) or b.startswith(a)) is alike


def test_no_two_modules_differ_by_a_letter_or_a_suffix():
    names = {p.stem for p in PACKAGE.rglob("*.py") if p.stem not in {"__init__", "__main__"}}
    names |= {p.name for p in PACKAGE.rglob("*") if (p / "__init__.py").exists()}
    alike = [(a, b) for a, b in itertools.combinations(sorted(names), 2)
             if _one_edit_apart(a, b) or a.startswith(b) or b.startswith(a)]
    assert alike == []
