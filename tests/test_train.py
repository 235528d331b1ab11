"""Supernet training: recording, resume equivalence, AOWS narrowing, DDP, BN recalibration, bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import flat_costs, train_config, width_table, write_inputs
from widthnas.nas.data import DatasetError
from widthnas.nas.train import CKPT, train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory, tiny):
    """A tiny space JSON and a learnable .npz dataset of 16x16 grey images."""
    return write_inputs(tmp_path_factory.mktemp("tiny"), tiny, 320, 80, seed=0)


@pytest.fixture(scope="module")
def width_profile(tmp_path_factory, tiny):
    """A stand-in profile of the tiny space for AOWS: (c_in + c_out) x 1 us per entry, wider costs more."""
    prof = tmp_path_factory.mktemp("profile") / "p.json"
    width_table(tiny).save(prof)
    return prof


def cfg_for(d, **kw):
    return train_config(d, **{"epochs": 2, "lr": 0.05, "seed": 3, **kw})


def test_records_unaries_for_sampled_configs(tiny_run_inputs, tmp_path):
    t = train(cfg_for(tiny_run_inputs, epochs=1, n_random=3), tmp_path / "r", progress=False, log=lambda *_: None)
    u = json.loads((tmp_path / "r" / "unaries.json").read_text())
    steps = t.step
    for layer in u["layers"]:
        assert sum(layer["count"]) == steps * 3  # every sampled configuration credited once per layer
        for loss, c in zip(layer["loss"], layer["count"]):
            assert (loss is None) == (c == 0)
    metrics = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["epoch"] == 1 and metrics[-1]["images_per_s"] > 0


def test_resume_reaches_the_same_result(tiny_run_inputs, tmp_path):
    full = train(cfg_for(tiny_run_inputs), tmp_path / "full", progress=False, log=lambda *_: None)
    train(cfg_for(tiny_run_inputs), tmp_path / "cut", progress=False, log=lambda *_: None, stop_after=1)
    with pytest.raises(ValueError, match="--resume"):  # a second start refuses to overwrite
        train(cfg_for(tiny_run_inputs), tmp_path / "cut", progress=False, log=lambda *_: None)
    resumed = train(cfg_for(tiny_run_inputs), tmp_path / "cut", resume=True, progress=False, log=lambda *_: None)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert (tmp_path / "full" / "unaries.json").read_text().split('"meta"')[0] == \
        (tmp_path / "cut" / "unaries.json").read_text().split('"meta"')[0]


def test_killed_process_resumes_to_the_same_result(tiny_run_inputs, tmp_path):
    """SIGKILL a real training process after its first checkpoint, then --resume it."""
    import signal
    import time

    args = ["--space", str(tiny_run_inputs / "space.json"), "--dataset", "npz", "--data",
            str(tiny_run_inputs / "data.npz"), "--epochs", "3", "--batch-size", "32", "--threads", "1",
            "--seed", "3", "--lr", "0.05", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = lambda out, *extra: subprocess.Popen([sys.executable, "-m", "widthnas", "train", "--out", str(out), *args,  # noqa: E731
                                                *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE)
    p = run(tmp_path / "killed")
    deadline = time.time() + 120
    while not (tmp_path / "killed" / CKPT).exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (tmp_path / "killed" / CKPT).exists()
    ck = torch.load(tmp_path / "killed" / CKPT, weights_only=True)
    assert ck["epoch"] < 3  # it really was cut short
    assert run(tmp_path / "killed", "--resume").wait(timeout=300) == 0
    assert run(tmp_path / "whole").wait(timeout=300) == 0
    a = torch.load(tmp_path / "killed" / CKPT, weights_only=True)
    b = torch.load(tmp_path / "whole" / CKPT, weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)


def test_training_learns(tiny_run_inputs, tmp_path):
    t = train(cfg_for(tiny_run_inputs, epochs=4, augment=False), tmp_path / "r", progress=False, log=lambda *_: None)
    assert t.history[-1]["val_acc_widest"] > 0.3  # chance is 0.1


def test_aows_narrows_toward_the_budget(tiny_run_inputs, width_profile, tmp_path):
    t = train(cfg_for(tiny_run_inputs, epochs=3, sampling="aows", warmup_epochs=1, budget="60%", profile=str(width_profile), refresh=3,
                      n_random=2), tmp_path / "r", progress=False, log=lambda *_: None)
    snaps = [json.loads(l) for l in (tmp_path / "r" / "narrowing.jsonl").read_text().splitlines()]
    assert len(snaps) >= 2
    temps = [s["temperature"] for s in snaps]
    assert temps[-1] < temps[0]
    ent = lambda s: sum(-(np.asarray(m) * np.log(np.asarray(m) + 1e-12)).sum() for m in s["marginals"])  # noqa: E731
    assert ent(snaps[-1]) < ent(snaps[0])  # the sampling distribution narrows
    assert all(s["map_ms"] <= t.budget_ms + 1e-9 for s in snaps)


DDP_SCRIPT = """
import sys
import torch
from widthnas.nas.train import TrainConfig, train
d, out = sys.argv[1], sys.argv[2]
cfg = TrainConfig(space=d + "/space.json", dataset="npz", data=d + "/data.npz", epochs=1, batch_size=32, threads=1)
t = train(cfg, out, progress=False, log=lambda *_: None)
torch.save(t.model.state_dict(), f"{out}/rank{t.rank}.pt")  # each rank's own weights
"""


def test_ddp_two_cpu_processes(tiny_run_inputs, tmp_path):
    out = tmp_path / "ddp"
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tiny_run_inputs), str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[:3000]  # the ranks' own messages come first, the agent's summary last
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["world_size"] == 2
    ck = torch.load(out / CKPT, weights_only=True)
    u = json.loads((out / "unaries.json").read_text())
    # 288 training images / 2 ranks / 32 per batch = 4 steps per rank; 2 configs per step; summed over ranks
    assert sum(u["layers"][0]["count"]) == 2 * ck["step"] * 2
    # both ranks end with identical weights (same start, gradients averaged every step), the checkpoint's
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ck["model"].keys()
    for k in ck["model"]:
        torch.testing.assert_close(ranks[1][k], ranks[0][k], rtol=0, atol=0, msg=k)
        torch.testing.assert_close(ck["model"][k], ranks[0][k], rtol=0, atol=0, msg=k)


DDP_AOWS_SCRIPT = """
import sys
import torch.distributed
from widthnas.nas.train import TrainConfig, train
d, prof = sys.argv[1:3]
cfg = TrainConfig(space=d + "/space.json", dataset="npz", data=d + "/data.npz", epochs=3, batch_size=32, lr=0.05,
                  threads=1, seed=3, sampling="aows", warmup_epochs=1, budget="60%", profile=prof, refresh=3)
for out in sys.argv[3:]:  # each continued if it holds a checkpoint, else trained from the start
    train(cfg, out, resume=True, progress=False, log=lambda *_: None)
print("trained", file=sys.stderr, flush=True)
torch.distributed.destroy_process_group()
"""


class ResumedRunDiffers(AssertionError):
    """Raised only where a resumed run is compared with the uninterrupted one."""


def test_ddp_aows_run_killed_after_narrowing_began_resumes_to_the_same_result(tiny_run_inputs, width_profile,
                                                                              tmp_path):
    """Two ranks narrowing toward a budget (AOWS; 4 steps per rank per epoch, the MRF rebuilt every 3
    steps: across epoch ends), both SIGKILLed after the first narrowing epoch's checkpoint, then
    resumed: bit for bit the run that was never stopped, with the same narrowing log."""
    import signal
    import socket
    import time

    script = tmp_path / "ddp_aows.py"
    script.write_text(DDP_AOWS_SCRIPT)

    def ranks(*outs):  # the two ranks started directly (no torchrun agent), so a SIGKILL reaches both
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs = []
        for r in (0, 1):
            with open(tmp_path / f"{len(outs)}rank{r}.err", "wb") as err:
                procs.append(subprocess.Popen([sys.executable, str(script), str(tiny_run_inputs), str(width_profile),
                                               *map(str, outs)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}))
        return procs

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    procs = ranks(killed)
    deadline = time.time() + 180
    rows = killed / "metrics.jsonl"  # appended after its epoch's checkpoint
    while (not rows.exists() or len(rows.read_text().splitlines()) < 2) and time.time() < deadline \
            and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (killed / CKPT).exists(), "".join((tmp_path / f"1rank{r}.err").read_text()[-1500:] for r in (0, 1))
    ck = torch.load(killed / CKPT, weights_only=True)
    assert ck["epoch"] == 2 and ck["history"][-1]["sampling"] == "aows"  # cut short after narrowing began
    procs = ranks(killed, whole)  # resumed, then the uninterrupted run in the same two processes
    codes, errs = [p.wait(timeout=300) for p in procs], [(tmp_path / f"2rank{r}.err").read_text() for r in (0, 1)]
    # gloo's teardown at exit can abort a rank (1 run in 12 without destroy_process_group): its work is done
    assert all(c == 0 or (c == -signal.SIGABRT and "trained\n" in e) for c, e in zip(codes, errs)), \
        f"{codes}: " + "".join(e[-1500:] for e in errs)
    a, b = torch.load(killed / CKPT, weights_only=True), torch.load(whole / CKPT, weights_only=True)
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 12
    narrowing = lambda d: [json.loads(l) for l in (d / "narrowing.jsonl").read_text().splitlines()]  # noqa: E731
    assert narrowing(whole)[-1]["step"] > 8 and narrowing(killed)[-1]["step"] > 8  # both narrowed after the cut
    try:
        for k in b["model"]:
            torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
        torch.testing.assert_close(a["optimizer"]["state"], b["optimizer"]["state"], rtol=0, atol=0)
        assert narrowing(killed) == narrowing(whole)
        assert (killed / "unaries.json").read_text().split('"meta"')[0] == \
            (whole / "unaries.json").read_text().split('"meta"')[0]
    except AssertionError as e:
        raise ResumedRunDiffers(str(e)) from e


def test_aows_run_killed_after_its_next_mrf_rebuild_resumes_with_the_same_narrowing_log(tiny_run_inputs,
                                                                                       width_profile, tmp_path):
    """9 steps per epoch, the MRF rebuilt every 3: the run that was killed after its step-18 checkpoint
    had rebuilt the MRF at step 18 and logged it; its resume keeps neither more nor fewer rows."""
    cfg = lambda: cfg_for(tiny_run_inputs, epochs=3, sampling="aows", warmup_epochs=1, budget="60%",  # noqa: E731
                          profile=str(width_profile), refresh=3)
    narrowing = lambda d: [json.loads(l) for l in (d / "narrowing.jsonl").read_text().splitlines()]  # noqa: E731
    whole = train(cfg(), tmp_path / "whole", progress=False, log=lambda *_: None)
    cut = tmp_path / "cut"
    train(cfg(), cut, progress=False, log=lambda *_: None, stop_after=2)
    step = torch.load(cut / CKPT, weights_only=True)["step"]
    after = [r for r in narrowing(tmp_path / "whole") if r["step"] == step]
    assert step == 18 and len(after) == 1 and all(r["step"] < step for r in narrowing(cut))
    with open(cut / "narrowing.jsonl", "a") as f:  # what the killed process logged before it died
        f.write(json.dumps(after[0]) + "\n")
    resumed = train(cfg(), cut, resume=True, progress=False, log=lambda *_: None)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for k in a:  # the refresh interval divides the epoch: the resumed run rebuilds the MRF when the whole one did
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    try:
        assert [r["step"] for r in narrowing(cut)] == [r["step"] for r in narrowing(tmp_path / "whole")]
        assert narrowing(cut) == narrowing(tmp_path / "whole")
    except AssertionError as e:
        raise ResumedRunDiffers(str(e)) from e


def test_loss_stats_reduce_on_the_training_device(tiny, monkeypatch):
    """NCCL takes only CUDA tensors: the all-reduce must see the training device's tensors."""
    import torch.distributed as dist

    from widthnas.nas.train import LossStats

    st = LossStats(tiny)
    st.add([0, 1, 0, 2], 0.5)
    seen = []

    class Reduced(Exception):
        pass

    def fake_all_reduce(t):
        seen.append(t.device.type)
        if t.device.type == "meta":  # a stand-in for a GPU: its values cannot be copied back
            raise Reduced
        t.mul_(2)  # as if a second rank held the same counts

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    with pytest.raises(Reduced):
        st.all_reduce(torch.device("meta"))
    assert seen == ["meta"]  # one all-reduce, on the training device
    seen.clear()
    st = LossStats(tiny)
    st.add([0, 1, 0, 2], 0.5)
    st.all_reduce("cpu")
    assert float(st.count[1][1]) == 2.0 and float(st.sum[3][2]) == 1.0 and st.sum[0].device.type == "cpu"


def test_bn_recalibration_matches_calibration_statistics(small):
    from widthnas.models.net import SlimmableGraphNet
    from widthnas.nas.data import normalize
    from widthnas.nas.evaluate import recalibrate_bn

    torch.manual_seed(0)
    sup = SlimmableGraphNet(small)
    net = sup.materialize(small.uniform(0.5))
    imgs = torch.randint(0, 255, (96, *small.input_shape), dtype=torch.uint8)
    mean, std = torch.tensor([0.3]), torch.tensor([0.3])
    recalibrate_bn(net, imgs, mean, std, n_images=96, batch=32)
    conv, bn = net.layers["stem"], net.layers["stem_bn"]
    with torch.no_grad():
        z = conv(normalize(imgs, mean, std))
    torch.testing.assert_close(bn.running_mean, z.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    # a cumulative average over the three batches: the mean of their unbiased variances
    var = torch.stack([z[i:i + 32].var(dim=(0, 2, 3), unbiased=True) for i in (0, 32, 64)]).mean(0)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked) == 3 and bn.momentum == 0.1 and net.training  # settings restored


def test_bad_input_is_named(tiny_run_inputs, tmp_path, small):
    with pytest.raises(DatasetError, match="does not exist"):
        train(cfg_for(tiny_run_inputs, data=str(tmp_path / "missing.npz")), tmp_path / "a", progress=False)
    with pytest.raises(DatasetError, match="16x16 images but space mobilenet_v1_small expects 1x28x28"):
        train(cfg_for(tiny_run_inputs, space="mobilenet_v1_small"), tmp_path / "b", progress=False)
    train(cfg_for(tiny_run_inputs, epochs=1), tmp_path / "c", progress=False, log=lambda *_: None)
    small_json = tmp_path / "other.json"
    other = json.loads((tiny_run_inputs / "space.json").read_text())
    other["groups"][2]["choices"] = [8, 16]
    small_json.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="fingerprint"):
        train(cfg_for(tiny_run_inputs, space=str(small_json)), tmp_path / "c", resume=True, progress=False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / CKPT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        train(cfg_for(tiny_run_inputs), tmp_path / "d", resume=True, progress=False)
    from widthnas.latency.table import LatencyTable
    from widthnas.models import GraphSpace

    tiny = GraphSpace.load(tiny_run_inputs / "space.json")
    prof = tmp_path / "p.json"
    LatencyTable(tiny, flat_costs(tiny), 0.0, 1.0).save(prof)
    with pytest.raises(ValueError, match="below the fastest network"):
        train(cfg_for(tiny_run_inputs, sampling="aows", profile=str(prof), budget="10%"), tmp_path / "f",
              progress=False)
    with pytest.raises(ValueError, match="aows sampling needs"):
        train(cfg_for(tiny_run_inputs, sampling="aows"), tmp_path / "e", progress=False)


def test_lr_schedule_ramps_then_decays_and_training_records_it(tiny_run_inputs, tmp_path):
    from widthnas.nas.schedule import lr_at, warmup_steps

    total, per_epoch = 100, 20
    warm = warmup_steps(total, per_epoch, 0.1)
    lrs = [lr_at(0.1, s, total, warm) for s in range(total)]
    assert warm == 10 and lrs[0] == pytest.approx(0.01) and lrs[warm - 1] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(lrs[:warm], lrs[1:warm]))  # ramps up
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:])) and lrs[-1] < 0.001  # then decays
    assert warmup_steps(1000, 20, 0.1) == 20 and warmup_steps(100, 20, 0.0) == 0  # capped at an epoch; off
    assert lr_at(0.1, 50, total, 0, "constant") == 0.1
    # wired into the trainer: with the ramp one epoch long, the first epoch ends exactly at the peak
    t = train(cfg_for(tiny_run_inputs, epochs=2, lr_warmup=0.5), tmp_path / "r", log=lambda *_: None, progress=False)
    assert t.history[0]["lr"] == pytest.approx(0.05) and t.history[1]["lr"] < 0.01


def test_device_choice_is_checked():
    from widthnas.nas.device import device_of, resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert device_of(torch.nn.Linear(2, 2)).type == "cpu" and device_of(torch.nn.ReLU()).type == "cpu"


def test_checkpoint_precedes_its_metrics_row_and_resume_repairs_the_records(tiny_run_inputs, tmp_path, monkeypatch):
    import widthnas.nas.train as tr

    order = []
    save, append = tr.save_checkpoint, tr.append_line
    monkeypatch.setattr(tr, "save_checkpoint", lambda p, st: (order.append("checkpoint"), save(p, st)))
    monkeypatch.setattr(tr, "append_line", lambda p, rec: (order.append(p.name), append(p, rec)))
    out = tmp_path / "r"
    train(cfg_for(tiny_run_inputs, epochs=2), out, progress=False, log=lambda *_: None, stop_after=1)
    assert order == ["checkpoint", "metrics.jsonl"]  # a kill between them cannot leave a row without its epoch
    monkeypatch.undo()
    rows = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(rows + rows)  # as a kill after an old-style row would leave it
    train(cfg_for(tiny_run_inputs, epochs=2), out, resume=True, progress=False, log=lambda *_: None)
    assert [json.loads(l)["epoch"] for l in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    (out / "metrics.jsonl").write_text(rows)  # killed after the checkpoint, before its row
    with pytest.raises(ValueError, match="other settings.*'lr'"):  # another setting is refused, not dropped
        train(cfg_for(tiny_run_inputs, epochs=3, lr=0.2), out, resume=True, progress=False, log=lambda *_: None)
    train(cfg_for(tiny_run_inputs, epochs=3), out, resume=True, progress=False, log=lambda *_: None)
    assert [json.loads(l)["epoch"] for l in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_resume_with_a_corrupt_narrowing_log_names_the_file(tiny_run_inputs, tmp_path):
    out = tmp_path / "r"
    train(cfg_for(tiny_run_inputs, epochs=2), out, progress=False, log=lambda *_: None, stop_after=1)
    (out / "narrowing.jsonl").write_text('{"step": 1}\n{"step": \n')
    with pytest.raises(ValueError, match=r"narrowing log .*narrowing\.jsonl is corrupt at line 2"):
        train(cfg_for(tiny_run_inputs, epochs=2), out, resume=True, progress=False, log=lambda *_: None)


def test_warm_start_changes_only_the_allowed_settings(tiny_run_inputs, tmp_path):
    """AOWS continuing an OWS warm-up (the benchmark's shared first epoch): sampling may change when
    asked for, nothing else; the continued run then resumes under its own settings."""
    from widthnas.nas.train import Trainer

    out = tmp_path / "r"
    train(cfg_for(tiny_run_inputs, epochs=2), out, progress=False, log=lambda *_: None, stop_after=1)
    t = Trainer(cfg_for(tiny_run_inputs, epochs=2, n_random=1), out, log=lambda *_: None, progress=False)
    with pytest.raises(ValueError, match="other settings.*'n_random'"):
        t.resume()
    t.resume(allow=("n_random",))
    assert t.epoch == 1
    t.fit()
    t2 = Trainer(cfg_for(tiny_run_inputs, epochs=2, n_random=1), out, log=lambda *_: None, progress=False)
    t2.resume()  # saved under the new settings
    assert t2.epoch == 2
    t3 = Trainer(cfg_for(tiny_run_inputs, epochs=2, n_random=1, lr=0.3), out, log=lambda *_: None, progress=False)
    with pytest.raises(ValueError, match="'lr'"):
        t3.resume(allow=("n_random",))


TRAIN_FLAGS = ["--space", "in/space.json", "--dataset", "npz", "--data", "in/data.npz", "--batch-size", "32",
               "--threads", "1", "--seed", "3", "--lr", "0.05", "--quiet"]  # paths relative to where the run is made


def made_in(inputs: Path, d: Path, monkeypatch) -> Path:
    """`widthnas train --out r` for 1 epoch, run in directory d (made, with the inputs in d/in) on paths
    typed relative to it; the current directory stays d. Returns the run directory d/r."""
    import shutil

    from widthnas.nas.cli import main

    shutil.copytree(inputs, d / "in")
    monkeypatch.chdir(d)
    assert main(["train", "--out", "r", *TRAIN_FLAGS, "--epochs", "1"]) == 0
    return d / "r"


def test_a_run_made_in_one_directory_is_read_from_any_other(tiny_run_inputs, tmp_path, monkeypatch, capsys):
    """The paths a run was given (`--space in/space.json`) are recorded absolute: load_run, evaluate
    --run, --resume and the overwrite checks (run_inputs) read the run from another directory, and the
    relative flags it was made with still resume it where it was made."""
    from widthnas.nas.checks import run_inputs
    from widthnas.nas.cli import main
    from widthnas.nas.train import load_run, load_train_config

    made, elsewhere = tmp_path / "made", tmp_path / "elsewhere"
    run = made_in(tiny_run_inputs, made, monkeypatch)
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["space"] == str(made / "in" / "space.json") and saved["data"] == str(made / "in" / "data.npz")
    assert saved["dataset"] == "npz"  # a name stays a name
    assert main(["train", "--out", "r", "--resume", *TRAIN_FLAGS, "--epochs", "2"]) == 0  # typed paths match
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_run(run)[0].epochs == 2
    assert main(["evaluate", "--run", str(run), "--widths", "x1.0", "--calib-images", "32"]) == 0
    assert "val accuracy" in capsys.readouterr().out
    assert main(["train", "--out", str(run), "--resume", "--space", str(made / "in" / "space.json"),
                 "--epochs", "3", "--quiet"]) == 0
    assert load_train_config(run).epochs == 3
    assert {made / "in" / "space.json", made / "in" / "data.npz"} <= {p for _, p in run_inputs(run)}
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--data", "in/data.npz"]) == 2  # another file from here
    assert "--data in/data.npz (the run has " in capsys.readouterr().err


def test_a_run_recorded_with_relative_paths_is_read_as_before(tiny_run_inputs, tmp_path, monkeypatch):
    """A run recorded before paths were made absolute holds them as typed: read against the current
    directory as before, where it was made it loads, resumes with its flags and protects its inputs."""
    from widthnas.nas.checks import run_inputs
    from widthnas.nas.cli import main
    from widthnas.nas.train import load_run

    made = tmp_path / "made"
    run = made_in(tiny_run_inputs, made, monkeypatch)
    rel = {"space": "in/space.json", "data": "in/data.npz"}
    saved = json.loads((run / "train_config.json").read_text())
    (run / "train_config.json").write_text(json.dumps({**saved, **rel}))
    ck = torch.load(run / CKPT, weights_only=True)
    ck["config"].update(rel)
    torch.save(ck, run / CKPT)
    assert load_run("r")[0].data == "in/data.npz"
    assert {Path("in/space.json"), Path("in/data.npz")} <= {p for _, p in run_inputs("r")}
    assert main(["train", "--out", "r", "--resume", *TRAIN_FLAGS, "--epochs", "2"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--data", str(made / "in" / "data.npz"), "--epochs", "2",
                 "--quiet"]) == 0
