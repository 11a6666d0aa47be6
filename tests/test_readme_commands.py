"""The commands of README.md and sweep/README.md, run as a newcomer runs them.

Every shell command in a code block of those files (fenced, or indented by four spaces; `\\`
continuations joined) that invokes `python train.py|evaluate.py|compare.py|export.py|sweep/summarize.py`
or `make` is a test case, in the order the files list them, in one fresh copy of the working tree
(git's tracked and unignored files; `.venv` linked to the environment running the suite) whose `runs/`, `data/` and
`.cache/` start empty. No `MMLEARN_*` variable is set (the README sets none for these commands); only the
offline switches for the model hub and W&B, and one thread per process.

Marker: a command that needs what a laptop offline lacks ends in a shell comment containing
`needs: <what>`, e.g. `python train.py model=qwen2vl data=mmhs150k trainer=gpu  # needs: real data, GPU`.
Such a command is composed instead of run: `--cfg job` appended (a leading `srun` dropped; a multirun
composed once per job of its comma grid, without `-m`, which Hydra refuses next to `--cfg`), or for
`make`, `make -n <target>`.

Every other command runs as written, through bash, with nothing appended but size limits:
`trainer.max_steps=1` and small demo splits for train.py runs, two Optuna trials. `make <target>`
runs the recipe `make -n <target>` prints (the install prerequisite must already be up to date: the
test never installs), with the same limits. An optional `[a|b]` group runs once without it and once
per alternative; one holding `...` (a value the user chooses) is left out. A placeholder path such as
`runs/train/<run>/<time>` is the newest directory matching it (each `<...>` one path segment) that an
earlier command left: a finished run with an adapter (what the README's `<run>` commands take, export.py
only that), else any finished run (metrics.json), else a multirun (multirun.yaml); each variant of one
line takes a directory its earlier variants did not (as alternatives, not one after another: a second
export into the same run is refused).
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DOCS = ("README.md", "sweep/README.md")
SCRIPTS = ("train.py", "evaluate.py", "compare.py", "export.py", "sweep/summarize.py", "predict.py",
           "caption.py", "serve.py")  # fmt: skip
SERVERS = ("serve.py",)  # run until stopped: started, asked /health, stopped with SIGTERM
SIZE_LIMITS = ["trainer.max_steps=1", "data.prepare.splits={train: 8, val: 4, test: 4}"]
OPTUNA_LIMIT = "hydra.sweeper.n_trials=2"
# what a placeholder directory holds, in order of preference
PLACEHOLDER_TIERS = (("metrics.json", "adapter"), ("metrics.json",), ("multirun.yaml",))
INSPECT = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc"}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
# what a run of each entry point leaves (a file matching it, new or rewritten, below the copy)
WRITES = {"train.py": "metrics.json", "evaluate.py": "metrics.json", "compare.py": "report.md",
          "export.py": "config.json", "sweep/summarize.py": "summary.csv", "predict.py": "prediction.json",
          "caption.py": "*.csv.json"}  # fmt: skip
SERVE_PORT = 8000  # conf/serve.yaml's port, unless the command sets port=
SERVER_READY_S = 300


@dataclass(frozen=True)
class Command:
    source: str  # file:line
    code: str  # as written, continuations joined, comment removed
    needs: tuple[str, ...]  # from the `needs:` marker; empty: runnable

    @property
    def program(self) -> str:
        words = shlex.split(self.code)
        if words[0] == "make":
            return "make"
        return next(nxt for w, nxt in itertools.pairwise(words) if _is_python(w) and nxt in SCRIPTS)


def code_lines(text: str):
    """(line number, line) of every line inside a fenced or an indented code block."""
    fence, in_block, blank_before = None, False, True
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence:
            if stripped.startswith(fence):
                fence = None
            else:
                yield number, line
        elif stripped.startswith(("```", "~~~")):
            fence, in_block = stripped[:3], False
        elif stripped and line.startswith("    ") and (blank_before or in_block):
            in_block = True  # an indented block starts after a blank line (else: a paragraph's continuation)
            yield number, line
        elif stripped:
            in_block = False
        blank_before = not stripped


def logical_lines(text: str):
    """Code lines with `\\` continuations joined, each with the number of its first line."""
    pending, start, last = "", None, None
    for number, line in code_lines(text):
        if pending and number != last + 1:
            yield start, pending
            pending = ""
        if not pending:
            start = number
        pending += line.strip()
        last = number
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
        else:
            yield start, pending
            pending = ""
    if pending:
        yield start, pending


def _is_python(word: str) -> bool:
    return os.path.basename(word) in ("python", "python3")  # make's recipes call .venv/bin/python


def _invokes(words: list[str]) -> bool:
    if words and words[0] == "make":
        return True
    return any(_is_python(w) and nxt in SCRIPTS for w, nxt in itertools.pairwise(words))


def commands_in(text: str, name: str) -> list[Command]:
    found = []
    for number, line in logical_lines(text):
        hash_ = re.search(r"(?:^|\s)#", line)
        code, comment = (line[: hash_.start()], line[hash_.end() :]) if hash_ else (line, "")
        code = code.strip()
        if not code or not _invokes(shlex.split(code)):
            continue
        marker = re.search(r"needs:\s*([^)]+)", comment)
        needs = tuple(n.strip() for n in marker.group(1).split(",")) if marker else ()
        found.append(Command(f"{name}:{number}", code, needs))
    return found


def documented_commands() -> list[Command]:
    return [c for doc in DOCS for c in commands_in((REPO / doc).read_text(), doc)]


def variants(code: str) -> list[str]:
    """The command without its `[optional]` groups, then once with each alternative of each group."""
    groups = list(re.finditer(r"(?<=\s)\[([^\[\]]+)\](?=\s|$)", code))

    def without(keep=None, text=""):
        out = code
        for m in reversed(groups):
            out = out[: m.start()] + (text if m is keep else "") + out[m.end() :]
        return re.sub(r"\s+", " ", out).strip()

    result = [without()]
    for m in groups:
        inner = m.group(1)
        if "..." in inner:
            continue
        key, sep, values = inner.partition("=")
        alternatives = [f"{key}={v}" for v in values.split("|")] if sep and "|" in values else [inner]
        result += [without(m, alternative) for alternative in alternatives]
    return result


def fill_placeholders(code: str, root: Path, taken: set[Path] | None = None) -> str:
    """`code` with each placeholder path replaced by the newest matching directory not in `taken` (the
    ones an earlier variant of the same line used; the chosen ones are added to it)."""
    taken = set() if taken is None else taken

    def newest(match: re.Match) -> str:
        pattern = re.sub(r"<[^<>/]+>", "*", match.group(0))
        dirs = [p for p in root.glob(pattern) if p.is_dir() and p not in taken]
        for tier in PLACEHOLDER_TIERS:
            held = [p for p in dirs if all((p / name).exists() for name in tier)]
            if held:
                chosen = max(held, key=lambda p: (p / tier[0]).stat().st_mtime)
                taken.add(chosen)
                return str(chosen.relative_to(root))
        raise AssertionError(
            f"no earlier command left a directory matching {match.group(0)} (not taken: {taken})"
        )

    return re.sub(r"[\w./-]*<[^<>\s]+>[\w./<>-]*", newest, code)


def sweep_jobs(words: list[str]) -> list[list[str]]:
    """A multirun's command line as one list of words per job of its comma grid."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, choices = OverridesParser.create(), []
    for word in words:
        if word.startswith("-") or "=" not in word:
            choices.append([word])
            continue
        override = parser.parse_override(word)
        if override.is_sweep_override():
            choices.append([f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([word])
    return [list(job) for job in itertools.product(*choices)]


def compose_checks(command: Command, root: Path) -> list[str]:
    code = fill_placeholders(command.code, root)
    if command.program == "make":
        return ["make -n " + " ".join(shlex.split(code)[1:])]
    words = shlex.split(re.sub(r"^srun\s+", "", code))
    multirun = any(w in ("-m", "--multirun") for w in words)
    words = [w for w in words if w not in ("-m", "--multirun")]
    jobs = sweep_jobs(words) if multirun else [words]
    return [shlex.join([*job, "--cfg", "job"]) for job in jobs]


def _inspects(words: list[str]) -> bool:
    """--cfg, --help, -sc, ...: Hydra prints something and runs nothing."""
    return any(w in INSPECT for w in words)


def limits_for(code: str) -> list[str]:
    words = shlex.split(code)
    if "train.py" not in words or _inspects(words):
        return []
    return SIZE_LIMITS + ([OPTUNA_LIMIT] if "optuna" in code else [])


def run_checks(command: Command, root: Path, env: dict) -> list[str]:
    """The shell lines that run `command` as written (its make recipe, for make), size limits appended."""
    runs, taken = [], set()
    for code in variants(command.code):
        code = fill_placeholders(code, root, taken)
        lines = [code]
        if command.program == "make":
            recipe = _run(["make", "-n", *shlex.split(code)[1:]], root, env, check=True).stdout.splitlines()
            assert recipe and all(_invokes(shlex.split(line)) for line in recipe), (
                f"{code}: make would run more than the documented command (is .venv out of date?):\n"
                + "\n".join(recipe)
            )
            lines = recipe
        runs += [" ".join([line, *map(shlex.quote, limits_for(line))]) for line in lines]
    return runs


def _run(args, root: Path, env: dict, check=False, timeout=1200):
    out = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _snapshot(root: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in root.rglob("*") if p.is_file() and ".venv" not in p.parts}


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh copy of the working tree, as a clone's root: no runs/, data/ or .cache/ yet."""
    root = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    # the environment this suite runs in, under the name the README's make targets use (CI's is
    # .venv-ci; a user's is .venv)
    (root / ".venv").symlink_to(Path(sys.prefix))
    return root


@pytest.fixture(scope="module")
def user_env(clone) -> dict:
    # VENV: .ci/run's own choice, not something the README tells users; MAKE*: set when the suite runs
    # under `make test` (a nested make prints "Entering directory"); a user's shell has neither
    dropped = ("PYTHONPATH", "VENV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMLEARN_") and k not in dropped}
    env.update(OFFLINE, VIRTUAL_ENV=str(clone / ".venv"))
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def test_the_parser_reads_code_blocks_markers_options_and_continuations():
    text = "\n".join([
        "Prose that names python train.py is not a command:", "",
        "    python train.py a=1   # grid; needs: real data, GPU",
        "    python evaluate.py run_dir=x [split=test|val] [output_dir=...]",
        "- a list item", "    python train.py b=2 (a lazy continuation, not code)", "",
        "```bash", "make train    # the demo", "python compare.py x=1 \\", "    y=2", "docker compose run", "```", "",
        "      srun python train.py trainer=ddp \\", "          hydra.run.dir=runs/$SLURM_JOB_ID  # needs: SLURM",
    ])  # fmt: skip
    found = commands_in(text, "doc")
    assert [(c.source, c.code, c.needs) for c in found] == [
        ("doc:3", "python train.py a=1", ("real data", "GPU")),
        ("doc:4", "python evaluate.py run_dir=x [split=test|val] [output_dir=...]", ()),
        ("doc:9", "make train", ()),
        ("doc:10", "python compare.py x=1 y=2", ()),
        ("doc:15", "srun python train.py trainer=ddp hydra.run.dir=runs/$SLURM_JOB_ID", ("SLURM",)),
    ]
    assert [c.program for c in found] == ["train.py", "evaluate.py", "make", "compare.py", "train.py"]
    assert variants(found[1].code) == [
        "python evaluate.py run_dir=x",
        "python evaluate.py run_dir=x split=test",
        "python evaluate.py run_dir=x split=val",
    ]


def test_placeholders_are_the_newest_run_an_earlier_command_left(tmp_path):
    for name, marker in [("runs/train/a/1", "metrics.json"), ("runs/train/a/1", "adapter/x"),
                         ("runs/train/b/2", "metrics.json"), ("runs/train/multirun/3", "multirun.yaml"),
                         ("runs/train/c/4", "config.yaml")]:  # fmt: skip
        (tmp_path / name / marker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name / marker).write_text("{}")
        time.sleep(0.01)
    assert fill_placeholders("python export.py run_dir=runs/train/<run>/<time>", tmp_path) == (
        "python export.py run_dir=runs/train/a/1"
    )
    (tmp_path / "runs/train/a/1/adapter/x").unlink()
    (tmp_path / "runs/train/a/1/adapter").rmdir()
    assert fill_placeholders("python evaluate.py run_dir=runs/train/<run>/<time>", tmp_path) == (
        "python evaluate.py run_dir=runs/train/b/2"
    )
    assert fill_placeholders("python sweep/summarize.py runs/train/multirun/<time>", tmp_path) == (
        "python sweep/summarize.py runs/train/multirun/3"
    )
    taken = set()
    assert fill_placeholders("python export.py run_dir=runs/train/<run>/<time>", tmp_path, taken) == (
        "python export.py run_dir=runs/train/b/2"
    )
    assert fill_placeholders("python export.py run_dir=runs/train/<run>/<time> x=1", tmp_path, taken) == (
        "python export.py run_dir=runs/train/a/1 x=1"
    )
    with pytest.raises(AssertionError, match="runs/evaluate/<run>"):
        fill_placeholders("python x.py runs/evaluate/<run>", tmp_path)


def test_a_marked_multirun_is_composed_once_per_job(tmp_path):
    command = Command(
        "doc:1", "srun python train.py -m hydra/launcher=slurm peft.adapter.r=8,16 a=b", ("SLURM",)
    )
    assert compose_checks(command, tmp_path) == [
        "python train.py hydra/launcher=slurm peft.adapter.r=8 a=b --cfg job",
        "python train.py hydra/launcher=slurm peft.adapter.r=16 a=b --cfg job",
    ]


def test_the_documents_list_the_sweeps_and_mark_what_cannot_run_here():
    found = documented_commands()
    codes = [c.code for c in found]
    assert "python train.py -m experiment=demo peft.adapter.r=4,8 optimizer.lr=1e-4,1e-3" in codes
    assert "python train.py hparams_search=lora_grid" in codes
    assert "python train.py hparams_search=lora_optuna hydra.sweeper.n_trials=40" in codes
    assert {c.program for c in found} == {"make", *SCRIPTS}
    for command in found:
        heavy = re.search(
            r"data=(mmhs150k|csv)\b|trainer=(gpu|ddp)\b|hydra/launcher=slurm|^srun ", command.code
        )
        if heavy and "--cfg" not in command.code:
            assert command.needs, f"{command.source}: `{command.code}` needs a `# needs: ...` marker"


@pytest.mark.slow
def test_every_documented_command_works_as_written(clone, user_env):
    report, failures, done = [], [], set()
    for command in documented_commands():
        mode = "compose" if command.needs else "run"
        try:
            lines = compose_checks(command, clone) if command.needs else run_checks(command, clone, user_env)
        except AssertionError as error:
            failures.append(f"{command.source}: {command.code}\n{error}")
            continue
        for line in lines:
            if line in done:  # the same command in both documents
                report.append(f"{'':8}  {mode:7}  {command.source:20}  {line}  (as above)")
                continue
            done.add(line)
            before, start = _snapshot(clone), time.perf_counter()
            serves = command.program in SERVERS and not command.needs and not _inspects(shlex.split(line))
            out = _serve(line, clone, user_env) if serves else _run(["bash", "-c", line], clone, user_env)
            seconds = time.perf_counter() - start
            report.append(f"{seconds:7.1f}s  {mode:7}  {command.source:20}  {line}")
            problem = _problem(command, line, out, before, clone)
            if problem:
                failures.append(f"{command.source}: {line}\n{problem}")
    print("\n".join(report))
    assert not failures, "\n\n".join(failures) + "\n\nwall times:\n" + "\n".join(report)


def _problem(command: Command, line: str, out, before: dict, root: Path) -> str:
    tail = f"\n--- stdout ---\n{out.stdout[-2000:]}\n--- stderr ---\n{out.stderr[-3000:]}"
    if out.returncode != 0:
        return f"exit status {out.returncode}{tail}"
    if line.startswith("make -n"):
        return ""
    words = shlex.split(line)
    if "--cfg" in words:
        return "" if isinstance(yaml.safe_load(out.stdout), dict) else f"printed no config{tail}"
    if _inspects(words):
        return "" if out.stdout.strip() else f"printed nothing{tail}"
    program = command.program if command.program != "make" else next(s for s in SCRIPTS if s in line)
    if program in SERVERS:
        return ""  # _serve checked /health and a clean exit on SIGTERM
    changed = [p for p, mtime in _snapshot(root).items() if before.get(p) != mtime]
    if not any(fnmatch.fnmatch(p.name, WRITES[program]) for p in changed):
        return f"exited 0 but wrote no {WRITES[program]}{tail}"
    return ""


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            return {"status": reply.status, "body": reply.read().decode()}
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _serve(line: str, root: Path, env: dict) -> subprocess.CompletedProcess:
    """A server command as a user runs it: started, ready once GET /health answers 200, then stopped
    with SIGTERM (its drain); the result carries its exit status and output, as `_run`'s does. A server
    that exits early, or never becomes healthy, fails with its output."""
    port = next((int(w.split("=", 1)[1]) for w in shlex.split(line) if w.startswith("port=")), SERVE_PORT)
    assert _health(port) is None, f"port {port} is taken before `{line}` starts"
    log = root / f"serve-{port}-{time.monotonic_ns()}.log"
    with log.open("w") as handle:
        server = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=root, env=env, stdout=handle,
                                  stderr=subprocess.STDOUT, text=True)  # fmt: skip
        deadline, ready = time.monotonic() + SERVER_READY_S, None
        while time.monotonic() < deadline and server.poll() is None:
            answer = _health(port)
            if answer and answer["status"] == 200:
                ready = answer
                break
            time.sleep(1)
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    output = log.read_text()
    log.unlink()
    code = server.returncode if ready else (server.returncode or 1)
    if not ready:
        output += f"\n(never answered GET /health with 200 within {SERVER_READY_S} s)"
    return subprocess.CompletedProcess(line, code, stdout=json.dumps(ready), stderr=output)
