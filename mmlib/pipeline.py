"""Execute the chapters with papermill, keyed artifacts, and build the book.

- Parameters: a profile file (``params/{profile}.yml``) merged with command-line overrides
  (``-p name value``; dotted names set nested keys, e.g. ``-p bias_knobs.label_bias 0``). Each chapter
  receives the parameters its ``parameters`` cell declares.
- Artifacts: chapter ``NN`` writes to ``build/artifacts/NN/{key}/``, where ``key`` hashes the chapter's
  parameters, its code, the ``mmlib`` sources and the keys of the chapters it needs (notebook metadata
  ``mmlib.needs``). A run whose folder is complete is reused; execution happens in a temporary folder
  renamed into place on success, so a failed run leaves nothing half-written.
- A chapter whose upstream artifact is missing stops with a message naming the chapter to run first.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ("profile", "artifact_dir", "inputs")
DONE = "_done.json"


def project_root() -> Path:
    """The project folder (``MMLIB_ROOT`` if set, else the checkout that holds this package)."""
    return Path(os.environ.get("MMLIB_ROOT", ROOT)).resolve()


def build_dir() -> Path:
    """Where artifacts and executed notebooks go (``MMLIB_BUILD_DIR`` if set, else ``<project>/build``)."""
    return Path(os.environ.get("MMLIB_BUILD_DIR", project_root() / "build")).resolve()


def data_dir() -> Path:
    """Where synthetic cohorts are generated (``MMLIB_DATA_DIR`` if set, else ``<project>/data/synthetic``)."""
    return Path(os.environ.get("MMLIB_DATA_DIR", project_root() / "data" / "synthetic")).resolve()


# ----------------------------------------------------------------------------------------- parameters
def parse_value(text: str):
    """A command-line value parsed as YAML (``7`` -> 7, ``[a, b]`` -> list, ``null`` -> None)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_profile(profile: str, overrides: list[tuple[str, object]] | None = None) -> dict:
    """Parameters of ``params/{profile}.yml`` with ``overrides`` applied (dotted names set nested keys)."""
    path = project_root() / "params" / f"{profile}.yml"
    if not path.exists():
        known = sorted(p.stem for p in (project_root() / "params").glob("*.yml"))
        raise FileNotFoundError(f"{path}: no such profile; expected one of {known}")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ValueError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    for name, value in overrides or []:
        node = params
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"-p {name}: {p!r} is not a mapping in profile {profile!r}")
        node[leaf] = value
    params["profile"] = profile
    return params


# ------------------------------------------------------------------------------------------- chapters
@dataclass
class Chapter:
    """One executable chapter of the book."""

    id: str
    path: Path
    parameters: dict
    needs: list[str]

    @property
    def title(self) -> str:
        return self.path.stem[3:].replace("_", " ")


def chapters() -> dict[str, Chapter]:
    """The executable chapters listed in ``_quarto.yml``, in book order, by two-digit id."""
    from .book import read_book_spec

    import papermill as pm

    root = project_root()
    out = {}
    for rel in read_book_spec(root).chapters:
        if not rel.endswith(".ipynb"):
            continue
        path = root / rel
        cid = path.name[:2]
        nb = nbformat.read(path, as_version=4)
        params = {k: _literal(v["default"], path, k) for k, v in pm.inspect_notebook(str(path)).items()}
        out[cid] = Chapter(cid, path, params, list(nb.metadata.get("mmlib", {}).get("needs", [])))
    return out


def _literal(text: str, path: Path, name: str):
    """A parameter default as papermill reports it (source text) turned into its Python value."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"{path}: parameter {name!r} has default {text!r}; expected a Python literal "
                         f"(number, string, list, dict, None)") from None


def _code(path: Path) -> str:
    """The code cells of the chapter notebook at ``path``, joined."""
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


@functools.lru_cache(maxsize=512)
def _imported_modules(source: str, package: str | None = None) -> frozenset[str]:
    """The ``mmlib`` modules a piece of code imports (``import``/``from`` statements anywhere in it, those inside
    functions too; ``package``: the importing module's package, for relative imports), with the packages each
    import runs. Code that does not parse (e.g. a notebook cell with shell magics) is read line by line.
    Memoised on the text itself, so each module is parsed once per process however many keys are computed (a
    plan of the eight chapters parsed ~480 module texts: 5-8 s of every build's and every test's planning)."""
    import ast

    try:
        trees = [ast.parse(source)]
    except SyntaxError:
        trees = []
        for line in source.splitlines():
            try:
                trees.append(ast.parse(line.strip()))
            except SyntaxError:
                continue
    found = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level and package:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                found.add(mod)
                found |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    out = set()
    for name in found:
        parts = name.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return frozenset(m for m in out if m == "mmlib" or m.startswith("mmlib."))


def _module_file(module: str) -> Path | None:
    base = ROOT / Path(*module.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.exists():
            return p
    return None


#: Modules that run a chapter but cannot change what it computes (building, keying, checking parameters,
#: rendering, the command line): left out of :func:`code_closure`, so editing them re-runs nothing.
INFRASTRUCTURE = ("mmlib.pipeline", "mmlib.parameters", "mmlib.book", "mmlib.__main__")


def code_closure(source: str) -> list[Path]:
    """The ``mmlib`` source files a chapter's code runs: the modules it imports, everything they import in
    turn (at module level or inside functions), and the packages on the way, less :data:`INFRASTRUCTURE`;
    sorted. A chapter's artifact key hashes these files only, so editing a module the chapter never imports
    does not re-run it."""
    pending, seen = set(_imported_modules(source)), set()
    while pending:
        mod = pending.pop()
        if mod in seen or mod in INFRASTRUCTURE:
            continue
        seen.add(mod)
        f = _module_file(mod)
        if f is not None:
            package = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
            pending |= _imported_modules(f.read_text(), package) - seen
    return sorted(f for f in map(_module_file, seen) if f is not None)


def _mmlib_digest(code: str) -> str:
    """Digest of the mmlib sources a chapter's ``code`` runs (:func:`code_closure`)."""
    h = hashlib.sha256()
    for p in code_closure(code):
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def chapter_params(ch: Chapter, params: dict) -> dict:
    """The values ``ch`` receives: its declared parameters taken from ``params`` (else its defaults)."""
    return {k: params.get(k, default) for k, default in ch.parameters.items() if k not in INFRA}


#: Environment variables that change what a chapter computes (e.g. the embedding precision), part of every key.
KEYED_ENV = ("MMLIB_EMBED_PRECISION",)


#: A wall-clock measurement in an artifact: a JSON key or a table column named ``seconds`` or ``..._seconds``.
TIMING_NAME = re.compile(r"(^|_)seconds$")


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if not (isinstance(k, str) and TIMING_NAME.search(k))}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _file_digest(f: Path) -> bytes:
    """SHA-256 of one artifact file as :func:`content_digest` counts it."""
    import zipfile

    if f.suffix in (".npz", ".pt") and zipfile.is_zipfile(f):
        h = hashlib.sha256()
        with zipfile.ZipFile(f) as z:
            for name in sorted(z.namelist()):
                h.update(f"{name}\0".encode())
                h.update(hashlib.sha256(z.read(name)).digest())
        return h.digest()
    if f.suffix == ".json":
        try:
            obj = json.loads(f.read_text())
        except ValueError:
            return hashlib.sha256(f.read_bytes()).digest()
        return hashlib.sha256(json.dumps(_without_timings(obj), sort_keys=True).encode()).digest()
    if f.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        timing = [c for c in pq.read_schema(f).names if TIMING_NAME.search(c)]
        if timing:
            table = pq.read_table(f).drop_columns(timing)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table)
            return hashlib.sha256(sink.getvalue().to_pybytes()).digest()
    return hashlib.sha256(f.read_bytes()).digest()


def content_digest(folder: Path) -> str:
    """SHA-256 of what an artifact folder holds for the chapters that read it: every file below ``folder`` by its
    relative path and content, less the executed notebook and :data:`DONE`. Content, not bytes, where the two
    differ between runs that computed the same thing: a zip archive (``.npz``, ``.pt``) by its members' names and
    uncompressed bytes, since its headers carry the time it was written; a JSON file or a parquet table without
    its wall-clock measurements (:data:`TIMING_NAME`: keys and columns named ``seconds`` or ``..._seconds``), which
    differ on every run. A chapter re-run that computes the same numbers thus leaves its downstream keys alone."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder).as_posix()
        if rel in (DONE, "executed.ipynb"):
            continue
        h.update(f"{rel}\0".encode())
        h.update(_file_digest(f))
    return h.hexdigest()


def input_identity(cid: str, key: str) -> str:
    """What a chapter's key hashes for its input ``cid`` (run with key ``key``): the content of that artifact
    (:func:`content_digest`, recorded in its :data:`DONE` file) once it is complete, so that a chapter re-run that
    writes the same bytes (e.g. after an edit to its figures only) leaves every downstream key unchanged;
    ``pending <key>`` before it exists."""
    done = artifact_dir(cid, key) / DONE
    if not done.exists():
        return f"pending {key}"
    try:
        recorded = json.loads(done.read_text()).get("content")
    except ValueError:
        recorded = None
    return recorded or content_digest(artifact_dir(cid, key))


def chapter_key(ch: Chapter, params: dict, upstream: dict[str, str]) -> str:
    """12-hex key of a chapter run: its parameters, code, the mmlib sources it runs (:func:`code_closure`)
    and its inputs' identities (``upstream``: chapter -> :func:`input_identity`)."""
    code = _code(ch.path)  # read once: its digest and its import closure
    blob = json.dumps({"chapter": ch.id, "params": chapter_params(ch, params),
                       "code": hashlib.sha256(code.encode()).hexdigest(),
                       "mmlib": _mmlib_digest(code), "upstream": upstream,
                       "env": {k: os.environ.get(k) for k in KEYED_ENV if os.environ.get(k)}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def plan(params: dict, upto: str | None = None) -> list[tuple[Chapter, str]]:
    """(chapter, key) for every chapter (or those ``upto`` needs, and it), keys resolved in book order. A key
    whose input is not built yet is provisional (:func:`input_identity`): :func:`build` resolves each chapter's
    key again once the chapters before it have run."""
    chs = chapters()
    _check_overrides(chs, params)
    from .parameters import validate

    defaults: dict = {}
    for c in chs.values():
        for k, v in c.parameters.items():
            defaults.setdefault(k, v)
    validate(params, defaults, infra=INFRA)
    keys: dict[str, str] = {}
    order = []
    for cid, ch in chs.items():
        missing = [n for n in ch.needs if n not in keys]
        if missing:
            raise ValueError(f"chapter {cid} needs chapter(s) {missing}, which do not come before it in _quarto.yml")
        keys[cid] = chapter_key(ch, params, {n: input_identity(n, keys[n]) for n in ch.needs})
        order.append((ch, keys[cid]))
    if upto is not None:
        if upto not in chs:
            raise ValueError(f"chapter {upto!r}: no such chapter; expected one of {list(chs)}")
        wanted = _needed(chs, upto)
        order = [(c, k) for c, k in order if c.id in wanted]
    return order


def _needed(chs: dict[str, Chapter], cid: str) -> set[str]:
    """Chapter ``cid`` and every chapter it needs, directly or through others (``chs`` in book order)."""
    wanted = {cid}
    for ch in reversed(list(chs.values())):
        if ch.id in wanted:
            wanted.update(ch.needs)
    return wanted


def _check_overrides(chs: dict[str, Chapter], params: dict) -> None:
    known = set(INFRA).union(*(c.parameters for c in chs.values()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"parameter(s) {unknown} are not parameters of any chapter; known: {sorted(known - set(INFRA))}")


def artifact_dir(cid: str, key: str) -> Path:
    return build_dir() / "artifacts" / cid / key


def resume_dir(cid: str, key: str) -> Path:
    """Where a run of chapter ``cid`` with artifact key ``key`` keeps the finished pieces of a long step that can
    resume (e.g. VLM transcription shards): outside the run's temporary folder, so a re-run of the same key after
    a crash or an interrupt continues; removed once the chapter's artifact is published."""
    return build_dir() / "resume" / f"{cid}-{key}"


def is_complete(cid: str, key: str) -> bool:
    return (artifact_dir(cid, key) / DONE).exists()


# -------------------------------------------------------------------------------------- execution
@dataclass
class RunSummary:
    chapter: str
    key: str
    status: str            # "executed" or "reused"
    seconds: float
    artifacts: list[str] = field(default_factory=list)

    def line(self) -> str:
        what = ", ".join(self.artifacts) or "no files"
        return (f"chapter {self.chapter}: {self.status} in {self.seconds:.1f} s; artifacts "
                f"{'written' if self.status == 'executed' else 'reused'} ({what}) -> "
                f"{artifact_dir(self.chapter, self.key).relative_to(build_dir().parent)}")


def _executed_copy(params: dict, ch: Chapter) -> Path:
    return build_dir() / params["profile"] / "executed" / ch.path.relative_to(project_root())


def _tidy_executed(path: Path, tmp: Path, final: Path) -> None:
    """Point the injected parameters at the final artifact folder and fold them away in the book."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace(str(tmp), str(final))
            cell.metadata["tags"] = [*cell.metadata["tags"], "hide-input"]
    nbformat.write(nb, path)


#: Arguments of every chapter's kernel: its application log shows errors only. ipykernel 7.4 logs a warning about
#: unencrypted TCP at every kernel start (the loopback connection Jupyter has always used), which cluttered the
#: build's output once per chapter. (Local sockets instead, the remedy it suggests, made a chapter's kernel ignore
#: SIGTERM until its cell finished.) Warnings raised by a chapter's code are not affected: they reach its notebook.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


@contextmanager
def _kernel_imports_this_checkout():
    """Put the checkout that holds this ``mmlib`` first on the kernel's ``PYTHONPATH`` (the kernel inherits
    the environment), so a chapter imports the same library as the command that runs it, whichever
    ``mmlib`` the Python environment has installed."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([old] if old else []))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


class ChapterFailed(RuntimeError):
    """A chapter raised: the message gives the exception, the chapter's cell and the line that raised it, and
    where the partly executed notebook was kept (so the user need not open it to learn what went wrong)."""

    def __init__(self, ch: "Chapter", error: BaseException, notebook: Path):
        self.chapter, self.error, self.notebook = ch.id, error, notebook
        super().__init__(failure_message(ch, error, notebook))

    def __reduce__(self):  # across processes (a build that runs chapters side by side): the message and where
        return _chapter_failed, (self.chapter, str(self), self.notebook)


def _chapter_failed(chapter: str, message: str, notebook: Path) -> ChapterFailed:
    e = ChapterFailed.__new__(ChapterFailed)
    RuntimeError.__init__(e, message)
    e.chapter, e.error, e.notebook = chapter, None, notebook
    return e


def failure_message(ch: "Chapter", error: BaseException, notebook: Path) -> str:
    """What went wrong in a chapter, for the command line: ``ename: evalue`` of the exception and the line of
    the chapter's code that raised it (from papermill's execution error), or the error itself."""
    import re

    head = f"chapter {ch.id} ({ch.path.name}) failed"
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename is None:  # not an error inside the notebook (e.g. the kernel died, or an interrupt)
        return f"{head}: {type(error).__name__}: {error}\nthe partly executed notebook is at {notebook}"
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    trace = ansi.sub("", "\n".join(getattr(error, "traceback", None) or []))
    source = getattr(error, "source", "") or ""
    where = ""
    hit = re.search(r"Cell In\[\d+\], line (\d+)", trace)
    lines = source.splitlines()
    while lines and not lines[0].strip():  # IPython numbers the lines after dropping leading blank ones
        lines.pop(0)
    if hit and lines:
        k = int(hit.group(1))
        if 1 <= k <= len(lines):
            where = f"\n  in the cell starting `{lines[0].strip()[:70]}`, line {k}:\n    {lines[k - 1].strip()}"
    return f"{head}: {ename}: {evalue}{where}\nthe partly executed notebook is at {notebook}"


def run_chapter(ch: Chapter, key: str, params: dict, upstream: dict[str, str], force: bool = False,
                progress: bool = True) -> RunSummary:
    """Execute one chapter with papermill unless its artifact is complete; copy the executed notebook."""
    t0 = time.perf_counter()
    out = artifact_dir(ch.id, key)
    for n, k in upstream.items():
        if not is_complete(n, k):
            raise RuntimeError(f"chapter {ch.id} needs the artifact of chapter {n} (key {k}), which is missing: "
                               f"run `python -m mmlib run {n}` first with the same profile and parameters")
    if is_complete(ch.id, key) and not force:
        status = "reused"
    else:
        import papermill as pm

        import uuid

        from .artifacts import remove_stale

        remove_stale(out)  # temporary folders of runs that died, folders replaced long ago
        tmp = out.parent / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        injected = {**chapter_params(ch, params), "profile": params["profile"], "artifact_dir": str(tmp),
                    "inputs": {n: str(artifact_dir(n, k)) for n, k in upstream.items()}}
        try:
            with _kernel_imports_this_checkout():
                pm.execute_notebook(str(ch.path), str(tmp / "executed.ipynb"), parameters=injected,
                                    kernel_name="python3", progress_bar=progress, cwd=str(ch.path.parent),
                                    extra_arguments=KERNEL_ARGUMENTS)
        except BaseException as e:
            failed = build_dir() / "failed" / f"{ch.path.stem}.ipynb"
            failed.parent.mkdir(parents=True, exist_ok=True)
            if (tmp / "executed.ipynb").exists():
                shutil.copy(tmp / "executed.ipynb", failed)
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise ChapterFailed(ch, e, failed) from e
        _tidy_executed(tmp / "executed.ipynb", tmp, out)
        (tmp / DONE).write_text(json.dumps({"chapter": ch.id, "key": key, "params": injected,
                                            "content": content_digest(tmp),
                                            "seconds": time.perf_counter() - t0}, indent=2, default=str))
        from .artifacts import publish_dir

        # a run of the same key that finished meanwhile is kept (same inputs, same numbers); a forced
        # re-run replaces it; both by renames only, so readers never see a half-replaced folder
        publish_dir(tmp, out, keep_existing=None if force else (lambda p: (p / DONE).exists()))
        shutil.rmtree(resume_dir(ch.id, key), ignore_errors=True)  # its pieces are in the artifact now
        status = "executed"
    dest = _executed_copy(params, ch)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "executed.ipynb", dest)
    files = sorted(p.name for p in out.iterdir() if p.name not in (DONE, "executed.ipynb"))
    return RunSummary(ch.id, key, status, time.perf_counter() - t0, files)


def check_run_overrides(chapter_id: str, names) -> None:
    """``python -m mmlib run CHAPTER -p NAME VALUE``: each ``NAME`` (its first part when dotted) must be a parameter of
    the chapter or of a chapter it needs, directly or not -- the only chapters whose parameters decide what the run
    computes. A parameter of any other chapter would be accepted and change nothing, so it is an error naming the
    chapters that do declare it. A name no chapter declares, and a chapter that does not exist, are left to
    :func:`plan`'s own errors. Used by the command line (``mmlib.__main__``) before anything runs."""
    chs = chapters()
    if chapter_id not in chs:
        return
    wanted = _needed(chs, chapter_id)
    used = set(INFRA).union(*(chs[c].parameters for c in wanted))
    declared_by = {n: [c for c in chs if n.split(".")[0] in chs[c].parameters] for n in names}
    stray = {n: where for n, where in declared_by.items() if where and n.split(".")[0] not in used}
    if stray:
        said = "; ".join(f"{n} is a parameter of chapter{'s' if len(w) > 1 else ''} {', '.join(w)}"
                         for n, w in stray.items())
        raise ValueError(f"`run {chapter_id}` executes chapter {chapter_id} only, and its result depends on the "
                         f"parameters of chapters {', '.join(sorted(wanted))} alone: {said}, so the value would change "
                         f"nothing. Run that chapter instead (`python -m mmlib run NN -p ...`), or `python -m mmlib "
                         f"build -p ...` for the whole book.")


def run(chapter_id: str, params: dict, force: bool = True, progress: bool = True) -> RunSummary:
    """Re-execute one chapter (its upstream artifacts must exist: they are never rebuilt implicitly)."""
    steps = plan(params, upto=chapter_id)
    keys = {c.id: k for c, k in steps}
    ch, key = steps[-1]
    if chapter_id == "01":
        ensure_synthetic_cohorts(params, progress)
    return run_chapter(ch, key, params, {n: keys[n] for n in ch.needs}, force=force, progress=progress)


def embedding_caches() -> dict:
    """Where embeddings and exported encoders are cached (keyword arguments ``cache_dir`` and ``onnx_dir`` of
    :func:`mmlib.embed.embed_texts`): ``embedding_cache/`` and ``onnx/`` of the build folder, or the folders named
    by ``MMLIB_EMBEDDING_CACHE`` and ``MMLIB_ONNX_CACHE`` when they are set (:attr:`mmlib.chapter.Chapter.embedding_cache`)."""
    onnx, vectors = os.environ.get("MMLIB_ONNX_CACHE"), os.environ.get("MMLIB_EMBEDDING_CACHE")
    return {"cache_dir": Path(vectors) if vectors else build_dir() / "embedding_cache",
            "onnx_dir": Path(onnx) if onnx else build_dir() / "onnx"}


def _prepare_step(step: str, args: dict) -> tuple[object, float]:
    """One step of :func:`ensure_synthetic_cohorts` in a process of its own: ``("cohort", generate's keywords)``
    -> the cohort's folder; ``("encoder", prepare's keywords)`` -> the numerics id (``None``: nothing to do).
    Returns (result, seconds)."""
    t0 = time.perf_counter()
    if step == "cohort":
        from .data.synth import generate

        result = generate(**args, progress=False)[0]
    else:
        from .embed import prepare

        result = prepare(**args)
    return result, time.perf_counter() - t0


def ensure_synthetic_cohorts(params: dict, progress: bool = True, jobs: int = 1) -> None:
    """Generate the synthetic cohorts the profile asks for, if absent (chapter 01 then reuses them).

    With ``jobs`` > 1 (what :func:`build` passes) the cohorts are generated side by side, one process each, and
    when any is generated -- a cold build, whose chapter 02 will embed -- chapter 02's encoder is prepared
    alongside (:func:`mmlib.embed.prepare`: its ONNX graphs exported, if absent, where chapter 02 looks for
    them), so the export does not wait for the chapters. Generation writes each cohort into a temporary folder
    renamed into place, so the cohorts are the same bytes in any order; an interrupt leaves none half-written.
    """
    if params.get("source", "synthetic") != "synthetic":
        return
    from .data.synth import from_chapter_params, generate, is_generated, synthetic_root

    todo = []
    for cohort in params.get("cohorts", ["mimic_eye", "mds_ed"]):
        gen = from_chapter_params(cohort, params)
        root = synthetic_root(cohort, gen, data_dir())
        if is_generated(root):
            print(f"synthetic {cohort}: reusing {root}", flush=True)
        else:
            todo.append(("cohort", {"cohort": cohort, "params": gen, "data_dir": data_dir()}))
    if not todo:
        return
    if jobs < 2:
        for _, args in todo:
            generate(**args, progress=progress)
        return
    ch02 = chapters().get("02")
    values = chapter_params(ch02, params) if ch02 is not None else {}
    if "encoder" in values:
        todo.append(("encoder", {"encoder": values["encoder"], "device": values.get("device"),
                                 "onnx_dir": embedding_caches()["onnx_dir"]}))
    _run_prepare_steps(todo, jobs, progress)


def _run_prepare_steps(todo: list, jobs: int, progress: bool) -> None:
    """Run :func:`_prepare_step` for each step of ``todo`` (in its order: the cohorts, then the encoder), at most
    ``jobs`` processes at once, a line printed as each finishes; the first failure is raised once every process has stopped. An encoder
    that cannot be prepared here is left to chapter 02, which says why."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    def name(step, args):
        return args["cohort"] if step == "cohort" else f"encoder {args['encoder']}"

    bar = tqdm(total=len(todo), desc="preparing " + ", ".join(name(*t) for t in todo), disable=not progress,
               leave=False, bar_format="{desc}: {n}/{total} done [{elapsed}]")
    live = progress and sys.stderr.isatty()  # elapsed time redrawn on a terminal, not a line a second in a log
    failure = None
    with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=mp.get_context("spawn")) as pool:
        pending = {pool.submit(_prepare_step, step, args): (step, args) for step, args in todo}
        try:
            while pending:
                finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                if live:
                    bar.refresh()
                for f in finished:
                    step, args = pending.pop(f)
                    bar.update(1)
                    if f.cancelled():  # after a failure
                        continue
                    try:
                        result, seconds = f.result()
                    except Exception as e:  # noqa: BLE001 -- reported below, or by chapter 02 for the encoder
                        if step == "cohort":
                            failure = failure or e
                            for other in pending:
                                other.cancel()
                        else:
                            bar.write(f"{name(step, args)}: not prepared ahead ({type(e).__name__}); chapter 02 "
                                      "will prepare it or say why")
                        continue
                    if step == "cohort":
                        bar.write(f"generated synthetic {args['cohort']} ({args['params'].get('n')} stays) in "
                                  f"{seconds:.1f} s -> {result}")
                    elif result is not None:
                        bar.write(f"{name(step, args)}: ONNX graphs ready in {seconds:.1f} s (numerics {result}), "
                                  "alongside the cohorts")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            bar.close()
    if failure is not None:
        raise failure


def build_jobs(jobs: int | None = None) -> int:
    """How many chapters :func:`build` executes at once: ``jobs``, else ``$MMLIB_BUILD_JOBS``, else the
    machine's cores up to 3 (the widest the book's chapter graph gets: 03, 06 and 08 all need only 01-02)."""
    if jobs is None:
        env = os.environ.get("MMLIB_BUILD_JOBS")
        if env:
            try:
                jobs = int(env)
            except ValueError:
                raise ValueError(f"MMLIB_BUILD_JOBS={env!r}: expected a whole number of chapters (1 or more)") from None
        else:
            jobs = min(3, os.cpu_count() or 1)
    if int(jobs) < 1:
        raise ValueError(f"jobs={jobs}: expected 1 or more chapters at once")
    return int(jobs)


def _key_now(ch: Chapter, params: dict, keys: dict[str, str]) -> str:
    """Chapter ``ch``'s key once the chapters it needs have run (``keys``: theirs): its inputs' content, not their
    keys (:func:`input_identity`). Recorded in ``keys``."""
    keys[ch.id] = chapter_key(ch, params, {n: input_identity(n, keys[n]) for n in ch.needs})
    return keys[ch.id]


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _chapter_process(conn, ch: Chapter, key: str, params: dict, upstream: dict[str, str]) -> None:
    """Body of the process that executes one chapter for a side-by-side :func:`build`: its summary or its
    exception goes back through ``conn``. SIGTERM (what the build sends on an interrupt) is handled like
    Ctrl-C, so papermill stops the kernel and the run removes its temporary folder."""
    import pickle
    import signal

    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    # OpenMP threads that wait for work sleep instead of spinning: two chapters' thread teams on the same cores
    # otherwise burn them waiting for each other (chapters 05 + 07 of the demo book side by side on 2 cores: 213 s
    # spinning, 91 s passive, 132 s one after the other). Waiting changes no number.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        result = run_chapter(ch, key, params, upstream, force=False, progress=False)
    except BaseException as e:  # noqa: BLE001 -- every outcome goes back to the build
        try:
            pickle.dumps(e)
            result = e
        except Exception:
            result = RuntimeError(f"chapter {ch.id}: {type(e).__name__}: {e}")
    conn.send(result)
    conn.close()


def _run_side_by_side(steps, params: dict, jobs: int, progress: bool) -> dict[str, RunSummary]:
    """Execute the chapters of ``steps`` with at most ``jobs`` running at once, each as soon as the chapters it
    needs are done (book order breaks ties, so the longest chain -- 01, 02, 03, 04, 05 -- starts first). Each
    chapter runs in a process of its own and publishes its artifact as it would alone (same key, same bytes).
    After a failure no chapter starts; those running finish (their artifacts are sound), then the failure is
    raised. An interrupt stops the running chapters (each removes its temporary folder) and is raised. With
    ``progress``, a bar counts the chapters done and names those running with their time so far."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    from tqdm.auto import tqdm

    ctx = mp.get_context("spawn")  # a fresh interpreter: no copied threads or locks of this one
    keys: dict[str, str] = {}
    waiting = [ch for ch, _ in steps]
    running: dict = {}  # connection -> (process, chapter, started)
    done: dict[str, RunSummary] = {}
    failure: BaseException | None = None
    bar = tqdm(total=len(waiting), desc="chapters", disable=not progress, leave=False,  # no ETA: chapters differ
               bar_format="{desc}: {n}/{total} done [{elapsed}{postfix}]")
    live = progress and (sys.stderr.isatty() or "notebook" in type(bar).__module__)

    def report(line: str) -> None:
        bar.write(line) if progress else print(line, flush=True)

    try:
        while waiting or running:
            for ch in list(waiting):
                if failure is not None or len(running) >= jobs:
                    break
                if not all(n in done for n in ch.needs):
                    continue
                waiting.remove(ch)
                key = _key_now(ch, params, keys)
                upstream = {n: keys[n] for n in ch.needs}
                if is_complete(ch.id, key):  # nothing to execute: no process
                    done[ch.id] = run_chapter(ch, key, params, upstream, force=False, progress=False)
                    bar.update(1)
                    report(done[ch.id].line())
                    continue
                here, there = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_chapter_process, args=(there, ch, key, params, upstream),
                                   name=f"mmlib chapter {ch.id}")
                proc.start()
                there.close()
                running[here] = (proc, ch, time.perf_counter())
                others = [c.id for _, c, _ in running.values() if c.id != ch.id]
                report(f"chapter {ch.id}: executing" + (f" (alongside {', '.join(others)})" if others else ""))
            if not running:
                if waiting and failure is None:  # cannot happen with plan()'s order; never spin
                    raise RuntimeError(f"chapters {[c.id for c in waiting]} wait for chapters that never ran")
                break
            finished = wait(list(running), timeout=1.0)
            now = time.perf_counter()
            # redrawn every second on a terminal; in a log file only when a chapter finishes (no line per second)
            bar.set_postfix_str("running " + ", ".join(f"{c.id} ({now - t:.0f} s)" for _, c, t in running.values()),
                                refresh=live)
            for conn in finished:
                proc, ch, _ = running.pop(conn)
                try:
                    result = conn.recv()
                except EOFError:
                    proc.join()
                    result = RuntimeError(f"chapter {ch.id}: its process ended without a result (exit code "
                                          f"{proc.exitcode}; killed for memory? try MMLIB_BUILD_JOBS=1)")
                proc.join()
                conn.close()
                if isinstance(result, BaseException):
                    if failure is None:
                        failure = result
                        if running:
                            report(f"chapter {ch.id} failed; waiting for "
                                   f"{', '.join(c.id for _, c, _ in running.values())} to finish")
                    continue
                done[ch.id] = result
                bar.update(1)
                report(result.line())
    except BaseException:
        for proc, _, _ in running.values():
            proc.terminate()  # SIGTERM: the chapter's process stops its kernel and removes its temporary folder
        for proc, _, _ in running.values():
            proc.join(timeout=60)
        raise
    finally:
        bar.close()
    if failure is not None:
        raise failure
    return done


def build(params: dict, render: bool = True, renderer: str = "auto", progress: bool = True,
          jobs: int | None = None) -> list[RunSummary]:
    """Generate the synthetic cohorts if absent, execute every chapter (reusing complete artifacts), then render
    the book. Returns one :class:`RunSummary` per chapter, in book order.

    ``jobs`` (:func:`build_jobs`: default ``$MMLIB_BUILD_JOBS``, else up to 3 on a machine with that many cores):
    chapters executed at once, each as soon as the chapters it needs are done. Chapters are independent
    processes with their own parameters and seeds, so the artifacts are the same bytes whatever ``jobs`` is; on a
    2-core machine two at a time fill the time one chapter leaves a core idle (loading, plotting, serial
    statistics). ``jobs=1`` runs them one after the other in book order, with papermill's per-cell progress bar.
    """
    steps = plan(params)
    jobs = build_jobs(jobs)
    ensure_synthetic_cohorts(params, progress, jobs)
    if jobs > 1:
        done = _run_side_by_side(steps, params, jobs, progress)
        summaries = [done[ch.id] for ch, _ in steps]
    else:
        keys: dict[str, str] = {}
        summaries = []
        for ch, _ in steps:
            key = _key_now(ch, params, keys)
            s = run_chapter(ch, key, params, {n: keys[n] for n in ch.needs}, force=False, progress=progress)
            print(s.line(), flush=True)
            summaries.append(s)
    if render:
        from .book import render_book
        from .pdf import build_pdf

        executed = build_dir() / params["profile"] / "executed"
        pdf: Path | None = build_dir() / params["profile"] / "book.pdf"
        try:  # the PDF first, from the same executed chapters, so that the HTML book can link it
            made = build_pdf(project_root(), executed, pdf)
            print(f"PDF of {made.pages} pages in {made.seconds:.1f} s -> {pdf}", flush=True)
        except (RuntimeError, OSError) as e:
            print(f"warning: no PDF this time ({e}); the HTML book says how to make one", file=sys.stderr, flush=True)
            pdf = None
        t0 = time.perf_counter()
        res = render_book(project_root(), executed, renderer=renderer, pdf=pdf)
        print(f"book rendered with {res.renderer} in {time.perf_counter() - t0:.1f} s -> {res.index_html}", flush=True)
    return summaries


def longest_chain(summaries: list[RunSummary]) -> tuple[list[str], float]:
    """The chain of chapters of ``summaries`` (book order), each needing the one before it (the chapters'
    ``needs``), whose times add up to the most, and that sum: however many cores a machine has, a build of these
    chapters takes at least this long, because no chapter can start before the chapters it needs are done (the demo
    book's is 01 -> 02 -> 03 -> 04 -> 05). Printed by ``python -m mmlib build`` (:class:`BuildClock`)."""
    chs = chapters()
    best: dict[str, tuple[float, list[str]]] = {}
    for s in summaries:
        before = max((best[n] for n in chs[s.chapter].needs if n in best), default=(0.0, []), key=lambda b: b[0])
        best[s.chapter] = (before[0] + s.seconds, [*before[1], s.chapter])
    total, chain = max(best.values(), default=(0.0, []), key=lambda b: b[0])
    return chain, total


class BuildClock:
    """Where a build's time went, measured, for the line ``python -m mmlib build`` ends with: the wall time since
    the clock started, the CPU time the machine's cores gave meanwhile (psutil's system-wide times, so the
    chapters' kernels and their worker processes count wherever they run -- and so does anything else running on
    the machine), and the longest chain of chapters (:func:`longest_chain`). With every core busy the same work
    could not take less than its CPU time over the cores; the chain is the other bound (README, "How long they
    take"). The test suite prints the same line (``tests/conftest.py``)."""

    def __init__(self):
        import psutil

        self.cores = psutil.cpu_count() or 1
        self._t0, self._busy0 = time.perf_counter(), self._busy()

    @staticmethod
    def _busy() -> float:
        import psutil

        t = psutil.cpu_times()
        return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))

    def report(self, summaries: list[RunSummary], what: str = "book built") -> str:
        """``what`` in N s; the cores' busy share and CPU-seconds; the least time those CPU-seconds need on these
        cores; the longest chain of executed chapters and its time (left out when every chapter was reused)."""
        wall = time.perf_counter() - self._t0
        cpu = self._busy() - self._busy0
        line = (f"{what} in {wall:.1f} s; the machine's {self.cores} cores were {cpu / (wall * self.cores):.0%} busy "
                f"({cpu:.0f} CPU-seconds, which take at least {cpu / self.cores:.0f} s on {self.cores} cores)")
        executed = [s for s in summaries if s.status == "executed"]
        if executed:
            chain, total = longest_chain(executed)
            line += f"; the longest chain of chapters, {' -> '.join(chain)}, executed in {total:.1f} s"
        return line


def current_pdf(profile: str) -> Path | None:
    """``build/<profile>/book.pdf`` when it is at least as new as every executed chapter of that profile (what
    ``python -m mmlib render`` links from the HTML book), else ``None``."""
    pdf, executed = build_dir() / profile / "book.pdf", build_dir() / profile / "executed"
    if not pdf.is_file():
        return None
    newest = max((p.stat().st_mtime for p in executed.rglob("*.ipynb")), default=0.0)
    return pdf if pdf.stat().st_mtime >= newest else None


# ------------------------------------------------------------------------------- inside a chapter
@dataclass
class Context:
    """What a running chapter needs from the pipeline: where to write, and where its inputs are."""

    chapter: str
    out: Path
    inputs: dict[str, Path]
    params: dict

    @property
    def key(self) -> str:
        """The artifact key of this run (the name of its artifact folder, or of the temporary folder it is
        written to under the pipeline: ``.{key}.tmp-...``)."""
        name = self.out.name
        return name[1:].split(".tmp-")[0] if name.startswith(".") and ".tmp-" in name else name

    def resume(self, name: str) -> Path:
        """The folder ``name`` of this run's resumable pieces (:func:`resume_dir`), created if absent."""
        path = resume_dir(self.chapter, self.key) / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def input(self, cid: str) -> Path:
        """The artifact folder of upstream chapter ``cid`` (raises naming the chapter to run first)."""
        if cid not in self.inputs:
            raise KeyError(f"chapter {self.chapter} does not declare chapter {cid} in its metadata 'mmlib.needs'")
        p = self.inputs[cid]
        if not (p / DONE).exists() and not p.exists():
            raise RuntimeError(f"chapter {self.chapter} needs the artifact of chapter {cid} at {p}, which is "
                               f"missing: run `python -m mmlib run {cid}` first")
        return p


def context(chapter_id: str, namespace: dict) -> Context:
    """Context of chapter ``chapter_id`` from its parameters (the chapter's ``globals()``).

    Under the pipeline, ``artifact_dir`` and ``inputs`` are injected. Run by hand (e.g. in Jupyter), they are
    ``None`` and resolved from ``profile`` the same way the pipeline would.
    """
    chs = chapters()
    ch = chs[chapter_id]
    values = {k: namespace.get(k, v) for k, v in ch.parameters.items()}
    if values.get("artifact_dir"):
        return Context(chapter_id, Path(values["artifact_dir"]),
                       {k: Path(v) for k, v in (values.get("inputs") or {}).items()}, values)
    params = load_profile(values.get("profile") or "demo")
    params.update({k: v for k, v in values.items() if k not in INFRA})
    steps = plan(params, upto=chapter_id)
    keys = {c.id: k for c, k in steps}
    out = artifact_dir(chapter_id, keys[chapter_id])
    out.mkdir(parents=True, exist_ok=True)
    print(f"running outside the pipeline: writing to {out}", file=sys.stderr)
    return Context(chapter_id, out, {n: artifact_dir(n, keys[n]) for n in ch.needs}, values)
