"""The README is a front door: at most 10 KB, every command it shows works, its tables are the generated ones, and
every link in it and in docs/ leads somewhere."""
from __future__ import annotations

import re
import shlex
from dataclasses import replace

import pytest

from ldifs_core.paths import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
TINY = dict(steps=2, batch_size=16, train_limit=64, eval_limit=20, probe_limit=2, probe_cap=20, umap_points=0,
            save_weights=False, eval_datasets=["animals"])


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.DOTALL)


def between(marker: str) -> str:
    text = README.read_text()
    return text.split(f"<!-- {marker}:start -->\n")[1].split(f"\n<!-- {marker}:end -->")[0]


def test_the_readme_fits_on_a_screen_or_two():
    assert len(README.read_bytes()) <= 10 * 1024


def test_every_link_in_the_readme_and_docs_leads_to_a_file():
    broken = []
    for page in [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if not re.match(r"[a-z]+:|#", target) and not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(PROJECT_ROOT)} -> {target}")
    assert broken == []


def test_the_science_table_is_the_one_the_generator_makes_from_the_committed_rows(capsys):
    from scripts import experiments

    command = re.search(r"`\.venv/bin/python -m scripts\.experiments (--table [^`]+)`", README.read_text()).group(1)
    assert experiments.main([*shlex.split(command)[:1], *[str(PROJECT_ROOT / p) for p in shlex.split(command)[1:]]]) == 0
    assert between("science-table") == capsys.readouterr().out.strip()


def test_the_make_targets_it_names_exist():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    named = set(re.findall(r"(?:^|`)make ([a-z-]+)", README.read_text(), re.MULTILINE))
    assert named and all(re.search(rf"^{target}:", makefile, re.MULTILINE) for target in named)


def test_its_cli_lines_are_accepted_by_the_cli():
    from ldifs_core.cli import build_parser

    lines = [line.split("#")[0] for block in fenced("bash") for line in block.splitlines() if " -m ldifs_core " in line]
    assert len(lines) == 3
    for line in lines:
        argv = shlex.split(line.replace("RUN_ID", "run-id"))
        build_parser().parse_args(argv[argv.index("ldifs_core") + 1:])


@pytest.mark.slow  # two real (tiny) runs: about 30 s of CPU
def test_its_python_example_runs_as_written_with_each_run_shrunk_to_a_few_steps(store_dir, monkeypatch, capsys):
    from ldifs_core import runner

    real_execute = runner.execute
    monkeypatch.setattr(runner, "execute", lambda cfg, store, **kw: real_execute(replace(cfg, **TINY), store, **kw))
    example, = fenced("python")
    assert len(example.strip().splitlines()) <= 10
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["ce", "ldifs"]
