"""Damaged checkpoints: every restore is verified, a damaged newest checkpoint is passed over with
one warning line for the newest intact one (resume, load_agent, eval), none intact fails in one
line, and temporary folders of a killed save are removed and never read."""

import json
import shutil

import pytest

from superlearner.cli.main import main
from superlearner.errors import DamagedCheckpointError
from superlearner.run.agent import load_train_state
from superlearner.run.checkpoint import CHECKSUMS_FILE, DAMAGED_DIR, Checkpointer, check_files
from superlearner.run.logs import read_metrics
from superlearner.run.trainer import resume, train

from tiny_runs import assert_same_state, comparable, tiny_config



@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    assert train(tiny_config(), run_dir, show_progress=False).completed
    return run_dir


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, straight_run):
    """A run as `kill -9` leaves it: checkpoints 2, 4 and 6, the log written past 6, and the
    temporary folder of the save of 8 that never committed."""
    run_dir = tmp_path_factory.mktemp("killed") / "run"
    train(tiny_config(), run_dir, show_progress=False, max_chunks=3)
    shutil.copytree(run_dir / "checkpoints" / "6", run_dir / "checkpoints" / "8.orbax-checkpoint-tmp")
    (run_dir / "checkpoints" / "8.orbax-checkpoint-tmp" / "metadata" / "metadata").write_text('{"torn')
    with open(run_dir / "metrics.jsonl", "a") as log:
        log.write(json.dumps(read_metrics(straight_run)[3]) + "\n" + '{"iteration": 10, "met')
    return run_dir


def _data_files(step_dir):
    return sorted(p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in p.as_posix())


def _overwrite_start(path, data=b"\xff\xfe\x00 damaged \x00\xff"):
    raw = bytearray(path.read_bytes())
    raw[: len(data)] = data[: len(raw)]
    path.write_bytes(bytes(raw))


DAMAGE = {
    # Same sizes, other bytes: only the checksums tell.
    "array bytes": lambda step: [_overwrite_start(p) for p in _data_files(step)[:3]],
    "truncated array": lambda step: _data_files(step)[0].write_bytes(_data_files(step)[0].read_bytes()[:5]),
    # Bytes that are no text: the metadata reader met a UnicodeDecodeError.
    "metadata bytes": lambda step: _overwrite_start(step / "metadata" / "metadata"),
    # Files orbax reads when it merely lists the checkpoints (the score, the step's own metadata).
    "score and step files": lambda step: [_overwrite_start(p) for p in (step / "metrics" / "metrics", step / "_CHECKPOINT_METADATA")],
    "a missing item": lambda step: shutil.rmtree(step / "state"),
}


def test_new_checkpoints_carry_checksums_of_their_files(straight_run):
    for step_dir in sorted((straight_run / "checkpoints").iterdir()):
        listed = json.loads((step_dir / CHECKSUMS_FILE).read_text())["files"]
        assert "metadata/metadata" in listed and any(name.startswith("state/") for name in listed)
        check_files(step_dir, checksums=True)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_passes_over_a_damaged_newest_checkpoint_and_ends_as_an_unbroken_run(
    damage, killed_run, straight_run, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(killed_run, run_dir)
    DAMAGE[damage](run_dir / "checkpoints" / "6")
    result = resume(run_dir, show_progress=False)
    assert result.completed and result.iteration == 8
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert "checkpoints/6 is damaged" in warnings[0] and "using checkpoint 4 instead" in warnings[0]
    # Set aside, not deleted; the temporary folder of the killed save is gone, never read.
    assert (run_dir / DAMAGED_DIR / "6").is_dir()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["2", "4", "6", "8"]
    assert_same_state(load_train_state(run_dir / "checkpoints" / "8")[1], load_train_state(straight_run / "checkpoints" / "8")[1])
    assert comparable(read_metrics(run_dir)) == comparable(read_metrics(straight_run)), "no log step twice or missing"


def test_resume_without_an_intact_checkpoint_fails_in_one_line_and_changes_nothing(killed_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(killed_run, run_dir)
    for step in ("2", "4"):
        DAMAGE["metadata bytes"](run_dir / "checkpoints" / step)
    DAMAGE["array bytes"](run_dir / "checkpoints" / "6")
    log_before = (run_dir / "metrics.jsonl").read_bytes()
    config_before = (run_dir / "config.yaml").read_bytes()
    assert main(["resume", str(run_dir), "--no-progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "no intact checkpoint" in errors[0]
    assert (run_dir / "metrics.jsonl").read_bytes() == log_before
    assert (run_dir / "config.yaml").read_bytes() == config_before


def test_load_agent_and_eval_read_the_newest_intact_checkpoint_without_changing_the_run(
    killed_run, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(killed_run, run_dir)
    DAMAGE["array bytes"](run_dir / "checkpoints" / "6")
    DAMAGE["score and step files"](run_dir / "checkpoints" / "4")
    before = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))
    _, state, metadata = load_train_state(run_dir)
    assert metadata["iteration"] == int(state.iteration) == 2
    err = capsys.readouterr().err
    assert "checkpoints/4 is damaged" in err and "using checkpoint 2 instead" in err
    # A checkpoint folder asked for by name is that one, or one line saying why not.
    with pytest.raises(DamagedCheckpointError, match="differs from what was written"):
        load_train_state(run_dir / "checkpoints" / "6")
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    out = capsys.readouterr()
    assert "mean return" in out.out and "using checkpoint 2 instead" in out.err and "Traceback" not in out.err
    assert main(["eval", str(run_dir / "checkpoints" / "4"), "--episodes", "2"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")
    # Readers may run beside the writer: they move nothing and remove nothing.
    assert sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")) == before


def test_a_reader_never_lists_an_uncommitted_checkpoint(killed_run):
    checkpointer = Checkpointer(killed_run, read_only=True)
    assert checkpointer.steps() == [2, 4, 6] and checkpointer.latest_step() == 6
    assert (killed_run / "checkpoints" / "8.orbax-checkpoint-tmp").is_dir(), "a reader removes nothing"
