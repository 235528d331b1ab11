"""No command writes over a file it reads: every output (sidecars and plots included) is checked before
any work against the inputs, every file of a --run directory (and of the `widthnas run` directory it
belongs to), and the shipped profiles. Each refusal names the output's option and path, the input it
would overwrite and what to do, and leaves that input as it was."""
import json

import pytest

from helpers import train_config, width_table, write_inputs
from widthnas.nas.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny):
    """A finished tiny training run laid out as `widthnas run` leaves it (R/supernet/ beside R's
    run_state.json, config.json, model.onnx, widths.png; the last two stand-ins), a profile of its
    space, and an old model with its sidecar."""
    from widthnas.nas.train import train

    d = write_inputs(tmp_path_factory.mktemp("overwrite"), tiny, 96, 32, seed=7)
    r = d / "R"
    train(train_config(d, epochs=1, lr=0.05, seed=0), r / "supernet", progress=False, log=lambda *_: None)
    width_table(tiny).save(d / "profile.json")
    (r / "run_state.json").write_text(json.dumps({"profile": {"path": str(d / "profile.json")}}))
    (r / "config.json").write_text(json.dumps({"widths": tiny.max_widths}))
    (r / "model.onnx").write_bytes(b"stand-in for the run's exported model")
    (r / "widths.png").write_bytes(b"stand-in for the run's plot")
    (d / "old.onnx").write_bytes(b"stand-in for a deployed model")
    (d / "old.json").write_text("{}")
    return d


@pytest.fixture
def no_work(monkeypatch):
    """Loading a run fails the test: a refusal comes before any work."""
    import widthnas.nas.train as tr

    def fail(*a, **k):
        raise AssertionError("the run was loaded before the output was checked")

    monkeypatch.setattr(tr, "load_run", fail)


def refused(argv, victim, capsys, option="--out"):
    """Run the CLI; it must refuse with exit code 2 and a message naming the victim and the option to
    change; the victim's bytes stay as they were."""
    before = victim.read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and f"choose another {option}" in err and "Traceback" not in err, err
    assert victim.read_bytes() == before
    return err


def test_export_sidecar_would_overwrite_the_runs_settings(run_dir, capsys, no_work):
    """The issue's case: --out R/supernet/train_config.onnx, whose sidecar is the run's train_config.json."""
    from widthnas.nas.train import load_train_config

    sup = run_dir / "R" / "supernet"
    err = refused(["export", "--run", str(sup), "--config", str(run_dir / "R" / "config.json"),
                   "--out", str(sup / "train_config.onnx")], sup / "train_config.json", capsys)
    assert "the sidecar of --out" in err and f"a file of --run {sup}" in err
    assert not (sup / "train_config.onnx").exists()
    assert load_train_config(sup).epochs == 1  # the run still loads


@pytest.mark.parametrize("out, victim, what", [
    ("R/supernet/checkpoint.pt", "R/supernet/checkpoint.pt", "--out"),  # the ONNX over the checkpoint
    ("R/model.onnx", "R/model.onnx", "--out"),  # the `widthnas run` directory --run R/supernet belongs to
    ("R/config.onnx", "R/config.json", "the sidecar of --out"),  # the sidecar over --config
    ("profile.onnx", "profile.json", "the sidecar of --out"),  # ... over --profile
    ("data.npz", "data.npz", "the data file"),  # the dataset the run's train_config.json records
])
def test_export_refuses_every_input(run_dir, capsys, no_work, out, victim, what):
    err = refused(["export", "--run", str(run_dir / "R" / "supernet"), "--config", str(run_dir / "R" / "config.json"),
                   "--profile", str(run_dir / "profile.json"), "--out", str(run_dir / out)], run_dir / victim, capsys)
    assert what in err


def test_export_sidecar_over_a_shipped_profile(run_dir, tmp_path, capsys, monkeypatch, no_work):
    from widthnas.latency import registry

    shipped = tmp_path / "hw_profiles"
    shipped.mkdir()
    monkeypatch.setattr(registry, "PROFILE_DIR", shipped)
    (shipped / "device.json").write_text('{"shipped": true}')
    err = refused(["export", "--run", str(run_dir / "R" / "supernet"), "--widths", "x1.0",
                   "--out", str(shipped / "device.onnx")], shipped / "device.json", capsys)
    assert "shipped" in err


@pytest.mark.parametrize("out, victim, what", [
    ("R/supernet/train_config.json", "R/supernet/train_config.json", "--out"),  # the CSV over the settings
    ("R/widths.csv", "R/widths.png", "the plot beside --out"),  # its PNG over a plot of the run
    ("data.npz", "data.npz", "the data file"),  # the dataset the run's training read
])
def test_curve_csv_and_its_plot(run_dir, capsys, no_work, out, victim, what):
    err = refused(["curve", "--run", str(run_dir / "R"), "--no-measure", "--out", str(run_dir / out)],
                  run_dir / victim, capsys)
    assert what in err


def test_curve_refuses_a_png_out(run_dir, tmp_path, capsys):
    """--out X.png: the CSV would be written there and the plot over it."""
    assert main(["curve", "--run", str(run_dir / "R"), "--out", str(tmp_path / "c.png")]) == 2
    assert "give the CSV's path" in capsys.readouterr().err and not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("json_out, victim", [("R/supernet/checkpoint.pt", "R/supernet/checkpoint.pt"),
                                              ("old.json", "old.json"),  # the sidecar of --against
                                              ("R/config.json", "R/config.json")])
def test_evaluate_json(run_dir, capsys, no_work, json_out, victim):
    refused(["evaluate", "--run", str(run_dir / "R" / "supernet"), "--config", str(run_dir / "R" / "config.json"),
             "--against", str(run_dir / "old.onnx"), "--json", str(run_dir / json_out)], run_dir / victim, capsys,
            "--json")


@pytest.mark.parametrize("extra, victim, option", [
    (["--out", "profile.json"], "profile.json", "--out"),
    (["--out", "R/supernet/unaries.json"], "R/supernet/unaries.json", "--out"),
    (["--pareto", "R/supernet/train_config.json"], "R/supernet/train_config.json", "--pareto"),
    (["--pareto", "R/widths.csv"], "R/widths.png", "--pareto"),  # the plot beside --pareto
])
def test_search_outputs(run_dir, tmp_path, capsys, no_work, extra, victim, option):
    argv = ["search", "--profile", str(run_dir / "profile.json"), "--run", str(run_dir / "R" / "supernet"),
            "--budget", "60%", "--out", str(tmp_path / "c.json")]
    argv += [extra[0], str(run_dir / extra[1])]
    refused(argv, run_dir / victim, capsys, option)
    assert not (tmp_path / "c.json").exists()


def test_search_refuses_a_png_pareto(run_dir, tmp_path, capsys):
    assert main(["search", "--profile", str(run_dir / "profile.json"), "--unaries",
                 str(run_dir / "R" / "supernet" / "unaries.json"), "--budget", "60%", "--out", str(tmp_path / "c.json"),
                 "--pareto", str(tmp_path / "p.png")]) == 2
    assert "give the CSV's path" in capsys.readouterr().err and not (tmp_path / "c.json").exists()


def test_train_and_run_never_write_over_what_they_read(run_dir, tmp_path, capsys, monkeypatch):
    """train --weights OUT/checkpoint.pt; run --previous OUT (its model.onnx): refused before anything
    is trained or written."""
    import widthnas.nas.run as nas_run
    import widthnas.nas.train as tr

    monkeypatch.setattr(tr, "train", lambda *a, **k: pytest.fail("trained before the check"))
    monkeypatch.setattr(nas_run, "Run", lambda *a, **k: pytest.fail("the run started before the check"))
    sup = run_dir / "R" / "supernet"
    err = refused(["train", "--out", str(sup), "--weights", str(sup / "checkpoint.pt")],
                  sup / "checkpoint.pt", capsys)
    assert "--weights" in err
    r = run_dir / "R"
    err = refused(["run", "--out", str(r), "--dataset", "npz", "--data", str(run_dir / "data.npz"),
                   "--previous", str(r)], r / "model.onnx", capsys)
    assert "--previous" in err and not (r / "run_config.json").exists()
    cand = r / "candidates"  # the search writes its candidates' ONNX files there, under names of its own
    cand.mkdir(exist_ok=True)
    (cand / "old.onnx").write_bytes((run_dir / "old.onnx").read_bytes())
    (cand / "old.json").write_text("{}")
    err = refused(["run", "--out", str(r), "--dataset", "npz", "--data", str(run_dir / "data.npz"),
                   "--previous", str(cand / "old.onnx")], cand / "old.onnx", capsys)
    assert "--previous" in err and "candidates" in err and not (r / "run_config.json").exists()


def test_space_profile_fit_validate(run_dir, tmp_path, capsys):
    """The latency commands: --out over the --space file (even with --force), --plot over the samples."""
    space = run_dir / "space.json"
    refused(["space", "--space", str(space), "--out", str(space), "--force"], space, capsys)
    refused(["profile", "--space", str(space), "--out", str(space), "-n", "10"], space, capsys)
    samples = tmp_path / "s.jsonl"
    samples.write_text("{}\n")
    refused(["fit", "--space", str(space), "--samples", str(samples), "--out", str(space)], space, capsys)
    refused(["fit", "--samples", str(samples), "--heldout", str(samples), "--out", str(tmp_path / "p.json"),
             "--plot", str(samples)], samples, capsys, "--plot")
    refused(["validate", "--profile", str(run_dir / "profile.json"), "--samples", str(samples),
             "--plot", str(samples)], samples, capsys, "--plot")


def test_the_files_of_a_runs_data_directory_and_models_are_inputs(run_dir, tmp_path, capsys, no_work):
    """A run recorded training on a --data directory (CIFAR-10 batches) and reading a --previous model:
    no output of a command reading that run may replace one of the directory's files or the model (the
    directory itself, all that was compared before, is no file an output can be)."""
    from widthnas.nas.data import CIFAR_FILES

    cifar = tmp_path / "cifar"
    cifar.mkdir()
    for n in CIFAR_FILES:
        (cifar / n).write_bytes(b"stand-in for a CIFAR-10 batch")
    (tmp_path / "deployed.onnx").write_bytes(b"stand-in for the model the run compared with")
    r = tmp_path / "R"
    (r / "supernet").mkdir(parents=True)
    saved = json.loads((run_dir / "R" / "supernet" / "train_config.json").read_text())
    (r / "supernet" / "train_config.json").write_text(json.dumps({**saved, "dataset": "cifar10", "data": str(cifar)}))
    (r / "run_config.json").write_text(json.dumps({"dataset": "cifar10", "data": str(cifar),
                                                   "previous": str(tmp_path / "deployed.onnx")}))
    for run in (r, r / "supernet"):
        err = refused(["evaluate", "--run", str(run), "--widths", "x1.0", "--against", str(run_dir / "old.onnx"),
                       "--json", str(cifar / "test_batch")], cifar / "test_batch", capsys, "--json")
        assert "the data file" in err
    err = refused(["export", "--run", str(r), "--widths", "x1.0", "--out", str(tmp_path / "deployed.onnx")],
                  tmp_path / "deployed.onnx", capsys)
    assert "the previous file" in err


def test_run_never_writes_over_a_file_of_its_data_directory(tmp_path, capsys, monkeypatch):
    """`run --data DIR`: every image the dataset reads is an input, not DIR alone; here a training image
    named as one of the run's plots (widths.png) in --out."""
    import widthnas.nas.run as nas_run

    monkeypatch.setattr(nas_run, "Run", lambda *a, **k: pytest.fail("the run started before the check"))
    imgs = tmp_path / "imgs"
    for split in ("train", "test"):
        (imgs / split / "cat").mkdir(parents=True)
        (imgs / split / "cat" / "0.png").write_bytes(b"stand-in for an image")
    (imgs / "train" / "cat" / "widths.png").write_bytes(b"stand-in for a training image")
    err = refused(["run", "--out", str(imgs / "train" / "cat"), "--dataset", "imagefolder", "--data", str(imgs)],
                  imgs / "train" / "cat" / "widths.png", capsys)
    assert "--data" in err and not (imgs / "train" / "cat" / "run_config.json").exists()
