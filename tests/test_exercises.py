"""Every exercise of the course has a check, and every official solution passes it.

For each exercise ``## N.`` of ``course/exercises/NN_*.md`` this test runs, in a fresh namespace and from the
``notebooks/`` folder (where the learner works): the common set-up block of the exercise file, then every
``python`` block of the matching ``## N.`` section of ``course/solutions/NN_*.md``, then the exercise's
``# check`` block, which must print ``ok``. Solutions that train or evaluate with learner-sized settings are
shrunk by the textual replacements in ``SMALL`` (each must match, so a changed solution fails loudly instead of
silently running at full size). Exercises that load a shipped model, MNIST or CIFAR-10 are marked ``slow``; those
that need MNIST or CIFAR-10 are skipped without it.
"""

import contextlib
import io
import os
import re
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXERCISES = REPO / "course" / "exercises"
SOLUTIONS = REPO / "course" / "solutions"

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SECTION = re.compile(r"^## (\d+)\. ", re.M)

# (chapter, exercise) -> [(text in the solution or check, replacement)]: CI-sized runs of learner-sized solutions
SMALL = {
    ("03", 4): [("images[:32], labels[:32]", "images[:2], labels[:2]")],
    ("05", 2): [("x_test[:256], y_test[:256]", "x_test[:32], y_test[:32]")],
    ("05", 6): [
        (
            "[changed])",
            '[changed, "train.max_steps=3", "train.batch_size=8", "train.warmup_steps=1", '
            '"train.sample_every=0", "train.checkpoint_every=3", "train.snapshot_minutes=[]", "train.log_every=1"])',
        ),
        ('Path("runs/mine_eps")', "Path(__import__('tempfile').mkdtemp())"),
        ("train(config, run_dir)", 'train(config, run_dir, device="cpu", progress=False)'),
        ("num_samples=500, steps=20,", "num_samples=20, steps=2, progress=False,"),
    ],
    ("06", 5): [("steps=50, x_start=x_T)", "steps=5, x_start=x_T)")],
    ("06", 6): [("num_samples=500,", "num_samples=40, progress=False,")],
    ("07", 4): [("repeat_interleave(20)", "repeat_interleave(4)"), ("steps=25", "steps=10")],
    ("08", 5): [("num_samples=1000,", "num_samples=60, steps=10, progress=False,")],
}
NEEDS_MNIST = ("load_mnist", "load_reference", "ref.")
NEEDS_CIFAR = ("load_cifar10",)
SLOW = NEEDS_MNIST + NEEDS_CIFAR + ("load_pipeline", "load_cold", "train(")


def blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def sections(text: str) -> dict[int, str]:
    """``## N.`` number -> the text up to the next ``## N.`` heading."""
    parts = SECTION.split(text)
    return {int(n): body for n, body in zip(parts[1::2], parts[2::2])}


def parse(chapter_file: Path):
    ex_text = chapter_file.read_text()
    setup = blocks(SECTION.split(ex_text)[0])
    assert len(setup) == 1, f"{chapter_file.name}: expected one common set-up block before the first exercise"
    exercises = sections(ex_text)
    solutions = sections((SOLUTIONS / chapter_file.name).read_text())
    return setup[0], exercises, solutions


def check_block(body: str) -> str | None:
    checks = [b for b in blocks(body) if b.lstrip().startswith("# check")]
    assert len(checks) <= 1, "one check block per exercise"
    return checks[0] if checks else None


def cases():
    out = []
    for path in sorted(EXERCISES.glob("[0-9][0-9]_*.md")):
        setup, exs, sols = parse(path)
        for number, body in exs.items():
            text = setup + "\n".join(blocks(sols.get(number, ""))) + (check_block(body) or "")
            marks = [pytest.mark.slow] if any(s in text for s in SLOW) else []
            out.append(pytest.param(path.name, number, marks=marks, id=f"{path.name[:2]}.{number}"))
    return out


def test_every_exercise_has_a_check_and_a_solution():
    files = sorted(p.name for p in EXERCISES.glob("[0-9][0-9]_*.md"))
    assert files == sorted(p.name for p in SOLUTIONS.glob("[0-9][0-9]_*.md")) and len(files) == 12
    for name in files:
        _, exs, sols = parse(EXERCISES / name)
        assert sorted(exs) == sorted(sols), f"{name}: exercises {sorted(exs)} but solutions {sorted(sols)}"
        for number, body in exs.items():
            assert check_block(body), f"{name} exercise {number} has no '# check' block"
            assert blocks(sols[number]), f"{name} solution {number} has no python block"
    for (chapter, number), subs in SMALL.items():  # every shrinking rule still applies to an existing exercise
        assert any(f.startswith(chapter) for f in files) and number > 0 and subs


def shrink(code: str, chapter: str, number: int, used: set) -> str:
    for old, new in SMALL.get((chapter, number), []):
        if old in code:
            code = code.replace(old, new)
            used.add(old)
    return code


def run_exercise(name: str, number: int, monkeypatch, bug: tuple[str, str] | None = None) -> list[str]:
    """Run set-up, solution and check of one exercise; return the printed lines. ``bug`` = (old, new) edits the
    solution first (to show that the check catches a known mistake)."""
    setup, exs, sols = parse(EXERCISES / name)
    chapter = name[:2]
    solution = "\n".join(blocks(sols[number]))
    check = check_block(exs[number])
    if any(s in setup + solution + check for s in NEEDS_MNIST):
        root = os.environ.get("DDPM_DATA_ROOT")
        if not root or not (Path(root) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            pytest.skip("MNIST not available: set DDPM_DATA_ROOT to a folder holding MNIST/raw/")
    if any(s in setup + solution + check for s in NEEDS_CIFAR):
        root = Path(os.environ.get("DDPM_DATA_ROOT", "."))
        if not ((root / "cifar-10-batches-py").is_dir() or (root / "CIFAR-10-images" / "train").is_dir()):
            pytest.skip(
                "CIFAR-10 not available: set DDPM_DATA_ROOT to a folder holding CIFAR-10-images/ (or torchvision's)"
            )
    if bug is not None:
        if bug[0] not in solution:  # not an AssertionError: that would count as the check catching the bug
            raise ValueError(f"{bug[0]!r} is not in the solution of {chapter}.{number}")
        solution = solution.replace(bug[0], bug[1])
    used: set = set()
    code = [setup, shrink(solution, chapter, number, used), shrink(check, chapter, number, used)]
    missing = [old for old, _ in SMALL.get((chapter, number), []) if old not in used]
    assert not missing, f"the CI-size replacements {missing} no longer match the solution of {chapter}.{number}"

    monkeypatch.chdir(REPO / "notebooks")  # the exercises are written for a notebook started there
    monkeypatch.setattr(sys, "path", list(sys.path))  # the set-up block inserts the repository into sys.path
    namespace = {"__name__": f"exercise_{chapter}_{number}"}
    out = io.StringIO()
    torch.manual_seed(0)
    try:
        with contextlib.redirect_stdout(out):
            for i, block in enumerate(code):
                exec(compile(block, f"<{name} {['set-up', 'solution', 'check'][i]} {number}>", "exec"), namespace)
    finally:
        plt.close("all")
    return out.getvalue().strip().splitlines()


@pytest.mark.parametrize("name, number", cases())
def test_solution_passes_its_check(name, number, monkeypatch):
    printed = run_exercise(name, number, monkeypatch)
    assert printed and printed[-1].startswith("ok"), "the check did not print ok; output:\n" + "\n".join(printed[-20:])


# mistakes the official solutions once made (a v-predicting network read as eps): the checks must catch them
KNOWN_BUGS = [
    ("03_elbo_and_loss.md", 4, ("eps_model, pipe.schedule, x, None", "pipe.model, pipe.schedule, x, None")),
    ("05_training.md", 2, ("eps_theta(x_t, tt, y_test)", "pipe.model(x_t, tt, y_test)")),
    ("06_sampling.md", 3, ("eps = eps_theta(x_T, t, y)", "eps = model(x_T, t, y)")),
    ("07_guidance.md", 1, ("DDIMSampler(schedule, prediction_type=pipe.prediction_type)", "DDIMSampler(schedule)")),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, number, bug", KNOWN_BUGS, ids=[f"{n[:2]}.{k}" for n, k, _ in KNOWN_BUGS])
def test_check_catches_the_v_read_as_eps_mistake(name, number, bug, monkeypatch):
    with pytest.raises(AssertionError):
        run_exercise(name, number, monkeypatch, bug)
