"""Atomic artifacts (mmlib.artifacts): files and folders appear whole or not at all, also when several
processes publish the same folder at once."""
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from mmlib import artifacts


def _publisher(root: str, writer: int, rounds: int, force: bool) -> None:
    final = Path(root) / "key"
    for r in range(rounds):
        tmp = Path(root) / f".key.tmp-{writer}-{r}"
        tmp.mkdir()
        for name in ("a.txt", "b.txt"):
            (tmp / name).write_text(f"{writer}-{r}")
        (tmp / "_done.json").write_text(json.dumps({"writer": writer, "round": r}))
        artifacts.publish_dir(tmp, final, keep_existing=None if force else (lambda p: (p / "_done.json").exists()))


@pytest.mark.parametrize("force", [True, False])
def test_concurrent_publishers_never_fail_and_readers_never_see_a_partial_folder(tmp_path, force):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_publisher, args=(str(tmp_path), w, 15, force)) for w in range(3)]
    for p in procs:
        p.start()
    seen, partial = 0, []
    while any(p.is_alive() for p in procs):
        try:
            names = set(os.listdir(tmp_path / "key"))
        except FileNotFoundError:  # swapped out for an instant: allowed
            continue
        seen += 1
        if names != {"a.txt", "b.txt", "_done.json"}:
            partial.append(names)
        time.sleep(0.0005)
    assert [p.exitcode for p in procs] == [0, 0, 0], "every publisher succeeds"
    assert not partial, f"a reader saw a partly filled folder: {partial[:3]}"
    assert seen > 0
    assert set(os.listdir(tmp_path / "key")) == {"a.txt", "b.txt", "_done.json"}
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name], "no temporary folder left"
    old = [p for p in tmp_path.iterdir() if ".old-" in p.name]
    assert all(set(os.listdir(p)) == {"a.txt", "b.txt", "_done.json"} for p in old), "replaced folders stay whole"
    assert (len(artifacts.remove_stale(tmp_path / "key", max_age=0)) == len(old)) and (len(old) > 0) == force
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".key.")], "stale folders are removed"


def test_keep_existing_discards_the_newcomer(tmp_path):
    final = tmp_path / "key"
    final.mkdir()
    (final / "x").write_text("old")
    new = tmp_path / "new"
    new.mkdir()
    (new / "x").write_text("new")
    assert artifacts.publish_dir(new, final, keep_existing=lambda p: True) is False
    assert (final / "x").read_text() == "old" and not new.exists()
    new.mkdir()
    (new / "x").write_text("new")
    assert artifacts.publish_dir(new, final) is True and (final / "x").read_text() == "new"


def test_failed_block_leaves_the_old_folder_and_no_temporary(tmp_path):
    final = tmp_path / "cohort"
    with artifacts.atomic_dir(final) as tmp:
        (tmp / "f").write_text("1")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_dir(final) as tmp:
            (tmp / "f").write_text("2")
            raise RuntimeError("interrupted")
    assert (final / "f").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]
    artifacts.write_frame(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    assert pd.read_parquet(tmp_path / "t.parquet")["a"].tolist() == [1]


def test_remove_stale_spares_running_processes(tmp_path):
    final = tmp_path / "key"
    dead = tmp_path / ".key.tmp-999999999-abcd"  # no such process
    mine = tmp_path / f".key.tmp-{os.getpid()}-abcd"
    for d in (dead, mine):
        d.mkdir()
    removed = artifacts.remove_stale(final, max_age=0)
    assert removed == [dead] and mine.exists()
