"""Every file liftdeploy writes is written whole or not at all, never through a symlinked
directory; the YAML loader never ends in a traceback (issue 23, items 5, 10, 11, 12).

A full disk is real here, without root: the command runs in a child process whose file size
limit (RLIMIT_FSIZE, with SIGXFSZ ignored) makes a write past it fail with EFBIG, as a full disk
fails with ENOSPC; a new service is rendered onto a real tiny tmpfs in a user namespace.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from liftdeploy.cli.main import main
from liftdeploy.render.service import render
from liftdeploy.spec.specfile import set_values

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "qwen3-next-80b.yaml"


def cli_with_file_size_limit(
    args: list[str], limit: int, *, pythonpath: Path | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`liftdeploy ARGS` in a child that cannot write any file past `limit` bytes."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", *args],
        cwd=cwd,
        env=env,
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        timeout=600,
    )


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under root (links as links, never followed), .git left out."""
    entries: dict[str, tuple[str, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[rel] = ("dir", "")
            else:
                entries[rel] = (oct(stat.S_IMODE(path.stat().st_mode)), path.read_bytes())
    return entries


def temp_files(root: Path) -> list[str]:
    return [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if "liftdeploy-tmp" in p.name or p.name.endswith(".new")
    ]


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


# --- item 5: `set` (and `pin`, which writes through it) on a full disk -------------------------


def test_set_on_a_full_disk_leaves_the_spec_byte_for_byte(tmp_path: Path) -> None:
    spec = tmp_path / "deployment.yaml"
    shutil.copy2(EXAMPLE, spec)
    before = spec.read_bytes()
    limit = len(before) // 2  # the edited spec cannot be written whole

    proc = cli_with_file_size_limit(["set", str(spec), "runtime.max_containers=7"], limit)

    assert spec.read_bytes() == before  # today: truncated to `limit` bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deployment.yaml"]  # no temp left
    assert proc.returncode != 0
    line = one_line_error(proc.stderr)
    assert "File too large" in line and "nothing was changed" in line, line


def test_set_keeps_the_mode_and_writes_the_file_a_link_names(tmp_path: Path) -> None:
    real = tmp_path / "specs" / "svc.yaml"
    real.parent.mkdir()
    shutil.copy2(EXAMPLE, real)
    real.chmod(0o640)
    link = tmp_path / "deployment.yaml"
    link.symlink_to(real)

    set_values(link, ["runtime.max_containers=7"])

    assert link.is_symlink() and os.readlink(link) == str(real)  # the link stays a link
    assert "max_containers: 7" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in real.parent.iterdir()) == ["svc.yaml"]


# --- item 12: `render` on a full disk --------------------------------------------------------


@pytest.fixture(scope="module")
def installed_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """liftdeploy as a plain (non-git) install, with the template beside the package: Copier
    then reads the template files directly, instead of cloning the checkout (whose git objects
    are larger than the file size limit the test sets)."""
    root = tmp_path_factory.mktemp("installed")
    shutil.copytree(
        REPO_ROOT / "liftdeploy", root / "liftdeploy", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO_ROOT / "template", root / "template")
    shutil.copy2(REPO_ROOT / "copier.yml", root / "copier.yml")
    return root


def test_render_over_a_service_on_a_full_disk_changes_nothing(
    tmp_path: Path, installed_copy: Path
) -> None:
    service = tmp_path / "svc"
    made = cli_with_file_size_limit(
        ["render", str(EXAMPLE), "-o", str(service)], 2**40, pythonpath=installed_copy
    )
    assert made.returncode == 0, made.stderr
    # A long hand-written block on top of app.py: the merged app.py is then the largest file
    # the render writes, so a limit just under its size fails exactly there.
    app = service / "app.py"
    app.write_text("".join(f"# hand note {i}: {'z' * 60}\n" for i in range(900)) + app.read_text())
    git(service, "init", "-q", "-b", "main")
    git(service, "add", "-A")
    git(service, "commit", "-q", "-m", "render + hand notes")
    set_values(service / "deployment.yaml", ["runtime.max_containers=200"])  # app.py grows

    probe = tmp_path / "probe"  # the same render without a limit, to size the limit
    shutil.copytree(service, probe, symlinks=True)
    done = cli_with_file_size_limit(["render", str(probe)], 2**40, pythonpath=installed_copy)
    assert done.returncode == 0, done.stderr
    merged = (probe / "app.py").stat().st_size
    limit = merged - 1
    others = [
        p
        for p in probe.rglob("*")
        if p.is_file() and ".git" not in p.parts and p != probe / "app.py"
    ]
    assert app.stat().st_size <= limit  # the merge's own copy of app.py fits
    assert max(p.stat().st_size for p in others) <= limit  # so does every other file
    before = snapshot(service)

    proc = cli_with_file_size_limit(["render", str(service)], limit, pythonpath=installed_copy)

    assert snapshot(service) == before  # today: answers file and README new, app.py old
    assert temp_files(service) == []  # today: .app.py.liftdeploy-tmp left behind
    assert proc.returncode != 0
    line = one_line_error(proc.stderr)
    assert "File too large" in line, line


def _tmpfs_namespace_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["unshare", "-Urm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", tmp],
            capture_output=True,
        )
    return proc.returncode == 0


@pytest.mark.skipif(
    not _tmpfs_namespace_available(),
    reason="needs unprivileged user namespaces to mount a tiny tmpfs",
)
@pytest.mark.parametrize("target_exists", [False, True], ids=["absent", "empty-dir"])
def test_new_service_on_a_full_disk_leaves_nothing(tmp_path: Path, target_exists: bool) -> None:
    """A 96 KiB tmpfs (a service with its last render is about 200 KB) mounted in a user
    namespace; Copier's own render goes to /tmp outside it, so the failure is the service's."""
    disk = tmp_path / "disk"
    disk.mkdir()
    setup = 'mkdir "$1/svc"; ' if target_exists else ""
    script = (
        f'mount -t tmpfs -o size=96k tmpfs "$1" || exit 99; {setup}'
        f'PYTHONDONTWRITEBYTECODE=1 "$2" -m liftdeploy.cli.main render "$3" -o "$1/svc"; '
        f'echo "rc=$?"; cd "$1" && find . -mindepth 1 | sort'
    )
    proc = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script, "sh", str(disk), sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=600,
    )

    lines = proc.stdout.strip().splitlines()
    rc_line = next(line for line in lines if line.startswith("rc="))
    assert rc_line != "rc=0", proc.stdout
    one_line_error(
        "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("note:"))
    )
    assert "No space left on device" in proc.stderr
    left = lines[lines.index(rc_line) + 1 :]
    # An absent target stays absent; an empty one stays empty; no temporary files either.
    # Today: svc/ with app.py and a temporary file, and no .liftdeploy/.
    assert left == (["./svc"] if target_exists else []), left


# --- item 11: never write or delete through a symlinked directory ------------------------------


@pytest.fixture(scope="module")
def pristine_service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(EXAMPLE, tmp_path_factory.mktemp("pristine") / "svc")


@pytest.mark.parametrize(
    "linked", [".liftdeploy", ".liftdeploy/last-render", "liftdeploy_runtime", ".github/workflows"]
)
def test_render_refuses_a_symlinked_directory_and_touches_nothing_outside(
    tmp_path: Path, pristine_service: Path, linked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    service = tmp_path / "svc"
    shutil.copytree(pristine_service, service, symlinks=True)
    outside = tmp_path / "outside"
    # The linked directory's contents live outside the service, beside a file of the user's.
    shutil.move(service / linked, outside)
    (outside / "sentinel.txt").write_text("the user's own file\n")
    for path in outside.rglob("*.py"):  # changed there, so an overwrite would rewrite them
        path.write_text(path.read_text() + "# edited outside\n")
    (service / linked).symlink_to(outside, target_is_directory=True)
    before_outside, before_service = snapshot(outside), snapshot(service)

    code = main(["render", str(service), "--overwrite", "--force"])

    err = capsys.readouterr().err
    assert snapshot(outside) == before_outside  # today: the sentinel deleted or files rewritten
    assert snapshot(service) == before_service
    assert code != 0
    line = one_line_error("\n".join(x for x in err.splitlines() if not x.startswith("note:")))
    assert f"{service / linked}: is a symbolic link" in line, line


# --- item 10: hostile YAML never ends in a traceback -----------------------------------------


def validate_text(text: str) -> tuple[int, str]:
    """`liftdeploy validate` on a file holding text, in this process: any exception other than
    liftdeploy's own one-line errors (which `main` prints) escapes and fails the test."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deployment.yaml"
        path.write_text(text, encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            code = main(["validate", str(path)])
        # A warning would print its own lines (and a source line) around the one-line answer.
        assert not caught, [str(w.message) for w in caught]
        return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize(
    "text, where",
    [
        ("? &a [1]\n: x\n? [*a]\n: y\n", ":1:3:"),
        ("? [1, [2]]\n: x\n", ":1:3:"),
        ("{? {a: [1]} : 1}\n", ":1:4:"),
        ("name: x\nenvironments:\n  ? [staging]\n  : {}\n", ":3:5:"),
        ("? !!set {a}\n: 1\n", ":1:3:"),
        ("!!omap [{[1, [2]]: x}]\n", ":1:10:"),
        ("? &k {x: [1]}\n: 1\n*k : 2\n", ":1:3:"),
    ],
)
def test_a_list_or_mapping_as_a_key_is_one_line_with_its_position(text: str, where: str) -> None:
    code, output = validate_text(text)
    assert code == 2
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert where in output and "keys must be plain names" in output, output


@pytest.mark.parametrize(
    "text, where, kind",
    [
        ("name: x\n1.5: a\n", ":2:1:", "a number"),
        ("name: x\nenvironments:\n  true: {}\n", ":3:3:", "true/false"),
        ("name: x\n? !!binary aGk=\n: 1\n", ":2:3:", "bytes"),
        ("{name: x, null: 1}\n", ":1:11:", "null"),
    ],
)
def test_a_key_that_is_not_text_is_refused_with_its_line(text: str, where: str, kind: str) -> None:
    code, output = validate_text(text)
    assert code == 2 and len(output.strip().splitlines()) == 1, output
    assert where in output and kind in output and "not as a name" in output, output


_ANCHORS = ["&a ", "&b ", ""]
_ALIASES = ["*a", "*b"]
_SCALARS = [
    "1",
    "1.5",
    "x",
    "null",
    "~",
    "true",
    "''",
    '"\\ud800"',
    "!!binary aGk=",
    "2001-12-14",
    "!!str 3",
    "!x y",
    "<<",
    "-",
    "[]",
    "{}",
    ".inf",
]


@st.composite
def hostile_yaml(draw: st.DrawFn) -> str:
    """Flow-style YAML built from anchors, aliases, complex keys, tags and odd scalars."""

    def node(depth: int) -> str:
        kind = draw(
            st.sampled_from(
                ["scalar", "alias", "list", "map", "tagged"] if depth < 4 else ["scalar", "alias"]
            )
        )
        anchor = draw(st.sampled_from(_ANCHORS))
        if kind == "scalar":
            return anchor + draw(st.sampled_from(_SCALARS))
        if kind == "alias":
            return draw(st.sampled_from(_ALIASES))
        if kind == "list":
            items = [node(depth + 1) for _ in range(draw(st.integers(0, 3)))]
            return f"{anchor}[{', '.join(items)}]"
        if kind == "tagged":
            tag = draw(st.sampled_from(["!!set", "!!omap", "!!pairs", "!!map", "!!seq", "!t"]))
            return f"{tag} {node(depth + 1)}"
        pairs = [f"? {node(depth + 1)} : {node(depth + 1)}" for _ in range(draw(st.integers(0, 3)))]
        return f"{anchor}{{{', '.join(pairs)}}}"

    head = draw(st.sampled_from(["", "name: svc\n", "---\n", "%YAML 1.1\n---\n"]))
    body = node(0)
    if head == "name: svc\n":
        body = f"extra: {body}\n? {node(1)}\n: {node(1)}\n"
    return head + body + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_yaml())
@example("? &a [1]\n: x\n? [*a]\n: y\n")
@example("{[1, [2]]: x}\n")
def test_hostile_yaml_never_ends_in_a_traceback(text: str) -> None:
    code, output = validate_text(text)
    assert code in (0, 2), (code, output)
    assert "Traceback" not in output
    if code == 2:
        assert len(output.strip().splitlines()) == 1, output
