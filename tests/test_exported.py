"""ddpm-export: a checkpoint as one safetensors file (weights, model config, sampling setting, provenance; no pickle)
that sample, evaluate and nll read as `ckpt=FILE` and sample bitwise like the checkpoint; `ckpt=pretrained`, the
default, reads the file the package ships, and says so in one line when it ships none."""

import json
import shutil
import struct

import pytest
import safetensors.torch
import torch
from omegaconf import OmegaConf

import ddpm.training.exported as exported
from ddpm.cli.runtime import user_error
from ddpm.commands.export import export
from ddpm.commands.nll import nll
from ddpm.commands.sample import sample
from ddpm.errors import CheckpointError, ConfigError
from ddpm.training.checkpoint import load_checkpoint, load_module
from ddpm.training.module import DiffusionModule
from tests.conftest import CONF, FAST, compose_train, run_script

# The quickstart recipe's kind of setting, with an open end: JSON must bring inf back.
SETTING = {"sampler": {"_target_": "ddpm.sampling.samplers.SDEDPMSolverSampler", "steps": 4, "order": 2}, "steps": 4,
           "guidance": 1.0, "guidance_interval": [-3.0, float("inf")]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint as train.py writes one, without training: the tiny model under T = 100, EMA weights as
    `state_dict` and other raw weights as `current_model_state`, the recipe's sampling setting."""
    torch.manual_seed(0)
    net = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "tiny.yaml"))
    schedule = {**OmegaConf.to_container(OmegaConf.load(CONF / "schedule" / "cosine.yaml")), "timesteps": 100}
    module = DiffusionModule(net, schedule, min_snr_gamma=5)
    raw = {k: v + 0.01 * torch.randn_like(v) for k, v in module.state_dict().items()}
    path = tmp_path_factory.mktemp("run") / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "current_model_state": raw, "hyper_parameters": dict(module.hparams),
                "sampling": SETTING, "global_step": 1100, "train_seconds": 512.5}, path)
    return path


def run_export(out_dir, ckpt, *overrides):
    """`ddpm-export ckpt=CKPT overrides...` in this process; the file it wrote."""
    return export(compose_train(out_dir, [f"ckpt={ckpt}", *overrides], config_name="export"))


def draw(out_dir, *overrides):
    """`python sample.py overrides...` (8 digits) in this process: the images of samples.pt."""
    sample(compose_train(out_dir, ["n=8", *overrides], config_name="sample"))
    return torch.load(out_dir / "samples.pt", weights_only=True)["images"]


@pytest.fixture(scope="module")
def exported_file(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    return run_export(folder / "run", checkpoint, f"out={folder / 'model.safetensors'}",
                      "results_row={run:quick,train_step:1100,n:1000}")


def metadata_of(path) -> dict:
    """The safetensors header (8 bytes of length, then JSON), read without the library."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])["__metadata__"]


def test_the_file_holds_the_ema_weights_and_what_rebuilds_and_samples_them(checkpoint, exported_file):
    saved = load_checkpoint(checkpoint)
    weights = safetensors.torch.load_file(exported_file)
    assert weights.keys() == saved["state_dict"].keys()
    assert all(torch.equal(weights[k], v) for k, v in saved["state_dict"].items())
    metadata = metadata_of(exported_file)
    assert metadata["format"] == exported.FORMAT and metadata["format_version"] == "1"
    assert json.loads(metadata["hyper_parameters"]) == saved["hyper_parameters"]
    assert json.loads(metadata["sampling"]) == SETTING
    assert json.loads(metadata["provenance"]) == {
        "source": str(checkpoint), "global_step": 1100, "train_seconds": 512.5, "weights": "ema",
        "results_row": {"run": "quick", "train_step": 1100, "n": 1000}}


def test_an_exported_file_samples_bitwise_like_its_checkpoint(checkpoint, exported_file, tmp_path):
    module = load_module(exported_file)
    assert module.sampling_setting == SETTING and module.hparams == load_module(checkpoint).hparams
    for overrides in ([], ["sampler=ddim", "steps=3", "guidance=2", "digit=7"]):
        from_ckpt = draw(tmp_path / "ckpt", f"ckpt={checkpoint}", "seed=5", *overrides)
        from_file = draw(tmp_path / "file", f"ckpt={exported_file}", "seed=5", *overrides)
        assert torch.equal(from_ckpt, from_file), overrides
        shutil.rmtree(tmp_path / "ckpt"), shutil.rmtree(tmp_path / "file")


def test_nll_reads_an_exported_file_as_its_checkpoint(checkpoint, exported_file, tmp_path, shared_synthetic_mnist):
    args = ["n=4", "head=2", "tail=1", f"data.root={shared_synthetic_mnist}", "data.check_md5=false"]
    bound = [nll(compose_train(tmp_path / name, [f"ckpt={ckpt}", *args], config_name="nll"))["bits_per_dim"]
             for name, ckpt in (("ckpt", checkpoint), ("file", exported_file))]
    assert bound[0] == bound[1]


def test_ema_false_exports_the_raw_weights(checkpoint, tmp_path):
    raw = run_export(tmp_path / "run", checkpoint, f"out={tmp_path / 'raw.safetensors'}", "ema=false")
    assert json.loads(metadata_of(raw)["provenance"])["weights"] == "raw"
    assert torch.equal(draw(tmp_path / "a", f"ckpt={checkpoint}", "ema=false"),
                       draw(tmp_path / "b", f"ckpt={raw}", "ema=false"))
    assert not torch.equal(draw(tmp_path / "c", f"ckpt={checkpoint}"), draw(tmp_path / "d", f"ckpt={raw}"))


def test_ema_false_on_a_file_of_ema_weights_is_refused(exported_file, tmp_path):
    with pytest.raises(CheckpointError, match="holds only its EMA weights: drop ema=false"):
        draw(tmp_path / "out", f"ckpt={exported_file}", "ema=false")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out, extra, message", [
    ("model.pt", [], "name the file *.safetensors"),
    ("taken.safetensors", [], "exists: choose another file, or pass overwrite=true"),
    ("model.safetensors", ["ema=yes"], "ema=yes"),
])
def test_export_refuses_bad_requests_and_writes_nothing(checkpoint, tmp_path, out, extra, message):
    (tmp_path / "taken.safetensors").write_text("a file of the user's")
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        run_export(tmp_path / "run", checkpoint, f"out={tmp_path / out}", *extra)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.safetensors"]
    assert (tmp_path / "taken.safetensors").read_text() == "a file of the user's"


def test_export_overwrites_only_when_asked_and_reads_only_checkpoints(checkpoint, exported_file, tmp_path):
    out = tmp_path / "model.safetensors"
    out.write_text("old")
    run_export(tmp_path / "run", checkpoint, f"out={out}", "overwrite=true")
    assert load_module(out).sampling_setting == SETTING
    with pytest.raises(CheckpointError, match="is an exported model .* training cannot resume from it"):
        run_export(tmp_path / "run2", exported_file, f"out={tmp_path / 'again.safetensors'}")


def damaged(kind: str, good, folder):
    """An exported file gone wrong in one of the ways a user meets."""
    path = folder / f"{kind}.safetensors"
    weights = safetensors.torch.load_file(good)
    metadata = metadata_of(good)
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[:5000])
    elif kind == "text":
        path.write_text("not a model\n")
    elif kind == "foreign":  # a safetensors file of another program
        safetensors.torch.save_file(weights, path, metadata={"format": "pt"})
    elif kind == "newer":
        safetensors.torch.save_file(weights, path, metadata={**metadata, "format_version": "2"})
    elif kind == "bad_json":
        safetensors.torch.save_file(weights, path, metadata={**metadata, "hyper_parameters": "{net:"})
    elif kind == "mismatched":
        hyper_parameters = json.loads(metadata["hyper_parameters"])
        hyper_parameters["net"]["channels"] = 16
        safetensors.torch.save_file(weights, path, metadata={**metadata,
                                                             "hyper_parameters": json.dumps(hyper_parameters)})
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist: write one with ddpm-export"),
    ("truncated", "it is truncated or not a safetensors file"),
    ("text", "it is truncated or not a safetensors file"),
    ("foreign", "is a safetensors file but not a model written by ddpm-export"),
    ("newer", "has format version 2, and this version of ddpm-mnist reads version 1"),
    ("bad_json", "has damaged metadata (JSONDecodeError"),
    ("mismatched", "does not match its own model config"),
])
def test_sample_refuses_a_damaged_exported_file_in_one_line(exported_file, tmp_path, kind, message):
    path = damaged(kind, exported_file, tmp_path)
    with pytest.raises(Exception) as raised:
        draw(tmp_path / "out", f"ckpt={path}")
    error = user_error(raised.value)
    assert isinstance(error, CheckpointError) and message in str(error) and "\n" not in str(error)
    assert not (tmp_path / "out").exists()


def test_sample_with_no_ckpt_draws_the_shipped_model(exported_file, tmp_path, monkeypatch):
    monkeypatch.setattr(exported, "QUICKSTART", exported_file)
    assert torch.equal(draw(tmp_path / "default"), draw(tmp_path / "file", f"ckpt={exported_file}"))
    assert torch.equal(draw(tmp_path / "named", "ckpt=pretrained", "digit=3"),
                       draw(tmp_path / "file3", f"ckpt={exported_file}", "digit=3"))


def test_no_shipped_model_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(exported, "QUICKSTART", tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError) as raised:
        draw(tmp_path / "out")
    assert str(raised.value) == "no pretrained model ships with this version: pass ckpt=<checkpoint or exported file>"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_exported_file_samples_like_its_checkpoint_in_a_process_that_never_saw_the_run(tmp_path,
                                                                                             shared_synthetic_mnist):
    """train.py, ddpm-export and sample.py as a user runs them; the run folder is gone before the file is sampled
    from another working folder."""
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_script("train.py", "experiment=quickstart", *FAST, f"data.root={shared_synthetic_mnist}",
               "data.check_md5=false", f"hydra.run.dir={run}")
    args = ["n=12", "seed=3"]
    run_script("sample.py", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", *args, f"hydra.run.dir={tmp_path / 'a'}")
    model = tmp_path / "model.safetensors"
    run_script("ddpm.commands.export", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", f"out={model}",
               f"hydra.run.dir={tmp_path / 'export'}")
    shutil.rmtree(run)
    proc = run_script("sample.py", f"ckpt={model}", *args, "hydra.run.dir=b", cwd=elsewhere)
    assert "guidance_interval [-1.0, 1.0] (checkpoint)" in proc.stdout + proc.stderr  # the recipe's, with the file
    a, b = (torch.load(folder / "samples.pt", weights_only=True) for folder in (tmp_path / "a", elsewhere / "b"))
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])
