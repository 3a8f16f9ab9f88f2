"""The command-line contract, the same for every ``keras-newton`` command (README, "The
command line"; docs/reproducing.md):

- a user error is one line on stderr, ``keras-newton: error: ...``, exit status 2; a bug
  keeps its traceback;
- ``--seeds`` is a comma list of distinct integers >= 0 in every bench;
- ``--out`` is checked (a directory that can be created and written) before any training;
- ``results.json`` holds every finished run; Ctrl-C exits with 130 and one line saying how
  to resume; ``--resume`` runs only the missing runs (same settings), ``--overwrite``
  starts afresh, neither with an existing file stops with 2 and leaves it untouched;
- ``--help`` and usage errors load neither Keras nor TensorFlow.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from keras_newton.app import cli, common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def _command(*argv):
    """The console command ``keras-newton ARGV`` (its entry point), as a subprocess."""
    return [sys.executable, "-c", "import sys, keras_newton_cli; "
            "sys.exit(keras_newton_cli.main(sys.argv[1:]))", *argv]


def _error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-newton: error: "), err
    return lines[0][len("keras-newton: error: "):]


# -- one-line user errors, every subcommand -----------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["data", "warcraft", "--n-train", "-1", "--out", "{tmp}/w"],
     "data warcraft: argument --n-train: must be an integer >= 1; received -1."),
    (["data", "warcraft", "--grid", "x", "--out", "{tmp}/w"],
     "data warcraft: argument --grid: 'x' is not an integer."),
    (["export", "ranker", "--model", "missing.keras", "--out", "{tmp}/m/1"],
     "--model must be a saved .keras file; 'missing.keras' does not exist."),
    (["bench", "ranking", "--seeds", ","],
     "bench ranking: argument --seeds: empty item in ',': give a comma list of distinct "
     "integers >= 0, e.g. 0,1,2."),
    (["bench", "shortest-path", "--quick", "--method", "dijkstra", "--out", "{tmp}/o"],
     "method must be one of ['bf_for_l1', 'bf_for_l2', 'bf_while_l1', 'bf_while_l2', "
     "'fenchel_young', 'smooth_algorithm', 'smooth_loss']; received 'dijkstra'."),
    (["bench", "classification", "--quick", "--models", "M9", "--out", "{tmp}/o"],
     "models must be a non-empty list of M1, M2, M3, M4, M5; received ['M9']."),
    (["bench", "ranking", "--quick", "--out", "{tmp}/o", "--resume", "--overwrite"],
     "bench ranking: argument --overwrite: not allowed with argument --resume"),
    (["tune", "ranking", "--tikhonov", "1,2,3"],
     "tune ranking: argument --tikhonov: invalid parse_range value: '1,2,3'"),
    (["tune", "classification", "--quick", "--max-trials", "0", "--out", "{tmp}/t"],
     "max_trials must be a positive integer; received 0."),
    (["bench"], "bench: the following arguments are required: name"),
    (["train"], "argument command: invalid choice: 'train' (choose from 'bench', 'data', "
     "'tune', 'export')"),
])
def test_user_errors_are_one_line_with_status_2(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    assert _error_line(capsys) == message


def test_the_console_command_prints_one_line_and_exits_2(tmp_path):
    for argv in (["bench", "ranking", "--seeds", ","],
                 ["export", "ranker", "--model", "missing.keras", "--out", str(tmp_path)]):
        out = subprocess.run(_command(*argv), capture_output=True, text=True, cwd=REPO,
                             env=ENV, timeout=120)
        assert out.returncode == 2
        lines = [line for line in out.stderr.splitlines() if line.startswith("keras-newton")]
        assert len(lines) == 1 and lines[0].startswith("keras-newton: error: ")
        assert "Traceback" not in out.stderr


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    from keras_newton.app import warcraft_data

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("keras_newton.datasets.warcraft.generate_warcraft", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["data", "warcraft", "--out", str(tmp_path / "w")])
    assert warcraft_data.run  # the command itself is unchanged


# -- --seeds ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seeds", [("0", [0]), ("0,1,2", [0, 1, 2]),
                                         (" 3, 1 ", [3, 1]), ("10", [10])])
def test_seeds_are_a_comma_list(text, seeds):
    assert common.parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [
    ("", "empty item in '': give a comma list of distinct integers >= 0, e.g. 0,1,2."),
    (",", "empty item in ',': give a comma list of distinct integers >= 0, e.g. 0,1,2."),
    ("0,,1", "empty item in '0,,1'"),
    ("0,x", "'x' is not an integer in '0,x'"),
    ("1.5", "'1.5' is not an integer in '1.5'"),
    ("0,-1", "-1 is negative in '0,-1'"),
    ("0,1,0", "seed 0 is repeated in '0,1,0'"),
])
def test_bad_seeds(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as e:
        common.parse_seeds(text)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("bench", ["ranking", "shortest-path", "classification"])
def test_seeds_mean_the_same_in_every_bench(bench, capsys):
    args = cli.build_parser().parse_args(["bench", bench, "--seeds", "10"])
    assert args.seeds == [10]  # one seed, 10 (not 0..9)
    assert cli.main(["bench", bench, "--seeds", "1,1"]) == 2
    assert _error_line(capsys) == (f"bench {bench}: argument --seeds: seed 1 is repeated in "
                                   "'1,1': give a comma list of distinct integers >= 0, "
                                   "e.g. 0,1,2.")


# -- --out ----------------------------------------------------------------------------------

def test_out_is_checked_before_any_training(tmp_path, capsys, monkeypatch):
    from keras_newton.app import ranking

    monkeypatch.setattr(ranking, "load_data", lambda *a, **k: pytest.fail("data loaded"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(["bench", "ranking", "--quick", "--out", str(afile)]) == 2
    assert _error_line(capsys) == f"--out '{afile}' is a file, not a directory."
    below = afile / "sub"
    assert cli.main(["bench", "ranking", "--quick", "--out", str(below)]) == 2
    assert _error_line(capsys) == f"--out '{below}' cannot be created: Not a directory."


def test_unwritable_out(tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Root writes anywhere; the refusal is simulated where the check writes its probe.
    monkeypatch.setattr(common.tempfile, "mkstemp", refuse)
    out = tmp_path / "ro"
    assert cli.main(["bench", "classification", "--quick", "--out", str(out)]) == 2
    assert _error_line(capsys) == f"--out '{out}' is not writable: Permission denied."


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_out(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert cli.main(["bench", "shortest-path", "--quick", "--out", str(out)]) == 2
        assert _error_line(capsys) == f"--out '{out}' is not writable: Permission denied."
    finally:
        out.chmod(0o700)


# -- results.json: exists, --resume with other settings ------------------------------------

def test_existing_results_stop_the_command_and_stay_untouched(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_bytes(b'{"benchmark": "ranking", "runs": []}  \n')
    before = path.read_bytes()
    for bench in ("ranking", "shortest-path", "classification"):
        assert cli.main(["bench", bench, "--quick", "--out", str(tmp_path)]) == 2
        assert _error_line(capsys) == (f"{path} exists: pass --resume to complete it or "
                                       "--overwrite to start afresh.")
        assert path.read_bytes() == before


def test_resume_refuses_other_settings_or_benchmark(tmp_path, capsys):
    from keras_newton.app import classification

    config = classification.make_config("quick")
    store = common.ResultsStore(str(tmp_path), "classification", config)
    store.start()
    before = (tmp_path / "results.json").read_bytes()
    assert cli.main(["bench", "classification", "--quick", "--epochs", "2", "--out",
                     str(tmp_path), "--resume"]) == 2
    assert _error_line(capsys) == (
        f"cannot resume from {tmp_path / 'results.json'}: the settings differ (epochs: 1 "
        "there, 2 now; eval_epochs: [1] there, [1, 2] now); pass the same options, or "
        "--overwrite.")
    assert cli.main(["bench", "ranking", "--quick", "--out", str(tmp_path), "--resume"]) == 2
    assert _error_line(capsys) == (f"cannot resume from {tmp_path / 'results.json'}: it "
                                   "holds the classification benchmark, not ranking.")
    assert (tmp_path / "results.json").read_bytes() == before


def test_results_are_written_atomically(tmp_path):
    common.write_json({"a": 1}, str(tmp_path))
    common.write_json({"a": 2}, str(tmp_path))
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left


# -- Ctrl-C, --resume, --overwrite on the quick classification bench ------------------------

QUICK = ["bench", "classification", "--quick", "--epochs", "2"]
PER_RUN = ("test_accuracy", "validation_accuracy", "history", "diverged", "num_params",
           "tikhonov", "learning_rate", "stage")


def _runs_by_job(results):
    return {json.dumps(r["job"]): r for r in results["runs"]}


def _interrupt_after_first_run(out):
    proc = subprocess.Popen(_command(*QUICK, "--out", str(out)), cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = out / "results.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(path.read_text())["runs"]:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    assert proc.poll() is None, "the bench finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


def test_ctrl_c_resume_and_overwrite(tmp_path):
    out, fresh = tmp_path / "interrupted", tmp_path / "fresh"
    code, _, stderr = _interrupt_after_first_run(out)
    assert code == 130, stderr
    results = json.loads((out / "results.json").read_text())
    n_done = len(results["runs"])
    assert results["status"] == "interrupted" and results["summary"] is None
    assert 1 <= n_done < 8
    lines = [line for line in stderr.splitlines() if line.startswith("keras-newton")]
    assert lines == [
        f"keras-newton: interrupted: {n_done} finished run(s) kept in {out}/results.json; "
        f"resume with: keras-newton {' '.join(QUICK)} --out {out} --resume"]
    assert "Traceback" not in stderr

    # Neither --resume nor --overwrite: stop at once, the file unchanged byte for byte.
    before = (out / "results.json").read_bytes()
    again = subprocess.run(_command(*QUICK, "--out", str(out)), cwd=REPO, env=ENV,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"keras-newton: error: {out}/results.json exists: pass --resume to complete it or "
        "--overwrite to start afresh.")
    assert (out / "results.json").read_bytes() == before

    # --resume runs only the missing runs, then writes the summary.
    resumed = subprocess.run(_command(*QUICK, "--out", str(out), "--resume"), cwd=REPO,
                             env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("in results.json, not run again") == n_done
    assert resumed.stdout.count(": test accuracy epoch 1") == 8 - n_done
    done = json.loads((out / "results.json").read_text())
    assert done["status"] == "complete" and len(done["runs"]) == 8 and done["summary"]
    kept = _runs_by_job(results)
    for job, run in _runs_by_job(done).items():
        if job in kept:
            assert run == kept[job]  # the stored record, not a new run

    # A fresh uninterrupted run gives the same per-run numbers and summary.
    full = subprocess.run(_command(*QUICK, "--out", str(fresh)), cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr
    reference = json.loads((fresh / "results.json").read_text())
    assert list(_runs_by_job(done)) == list(_runs_by_job(reference))
    for job, run in _runs_by_job(reference).items():
        for key in PER_RUN:
            assert _runs_by_job(done)[job][key] == run[key], (job, key)
    for row, ref in zip(done["summary"], reference["summary"]):
        assert (row["accuracies"], row["mean"], row["p_value"]) == (
            ref["accuracies"], ref["mean"], ref["p_value"])

    # --overwrite starts afresh: every run again.
    over = subprocess.run(_command(*QUICK, "--out", str(out), "--overwrite"), cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert over.returncode == 0, over.stderr
    assert "not run again" not in over.stdout
    assert over.stdout.count(": test accuracy epoch 1") == 8


# -- --help without TensorFlow --------------------------------------------------------------

def test_help_and_usage_errors_load_no_keras():
    code = (
        "import contextlib, io, sys, keras_newton_cli\n"
        "codes = []\n"
        "for argv in (['--help'], ['bench', 'classification', '--help'], "
        "['tune', 'shortest-path', '--help'], ['bench', 'ranking', '--seeds', ',']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), "
        "contextlib.redirect_stderr(io.StringIO()):\n"
        "        codes.append(keras_newton_cli.main(argv))\n"
        "print(codes, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'jax', 'torch') or m == 'keras_newton'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env=ENV, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[0, 0, 0, 2] []"


def test_written_out_names_match_the_library():
    """The application writes out what its parsers need, so that --help needs no Keras;
    these copies are the library's values."""
    from keras_newton import recipes
    from keras_newton.app import classification, ranking, shortest_path

    assert classification.VARIANTS == recipes.CLASSIFICATION_VARIANTS
    assert classification.DEFAULTS["tikhonov"] == recipes.CLASSIFICATION_TIKHONOV
    assert ranking.RELAXATIONS == recipes.RANKING_RELAXATIONS
    assert ranking.DEFAULT_TIKHONOV == recipes.RANKING_TIKHONOV
    assert shortest_path.METHODS == recipes.SHORTEST_PATH_METHODS
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["bench"] \
        ._subparsers._group_actions[0].choices["shortest-path"].format_help()
    for method in recipes.SHORTEST_PATH_METHODS:
        assert method in " ".join(help_text.split())
