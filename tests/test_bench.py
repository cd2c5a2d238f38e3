import json

import pytest
from conftest import compose_train

import ddpm.commands.bench
from ddpm.commands.bench import bench
from ddpm.errors import ConfigError


@pytest.mark.slow
def test_bench_measures_small_against_the_reference_unet(tmp_path, real_mnist):
    cfg = compose_train(
        tmp_path,
        ["models=[small,reference]", "variants=[fp32,channels_last]", "variant_models=[small,reference]",
         "batch_size=4", "train_repeats=1", "~samplers", f"data.root={real_mnist}", f"out={tmp_path}/bench.json"],
        config_name="bench",
    )
    result = bench(cfg)
    assert json.loads((tmp_path / "bench.json").read_text()) == result
    small, reference = result["models"]["small"], result["models"]["reference"]
    assert 10e6 < reference["params"] < 12e6 and small["params"] < reference["params"] / 5
    assert small["flops_per_image"] < reference["flops_per_image"] / 10
    for model in (small, reference):
        assert set(model["fp32"]) == set(model["channels_last"]) == {"train_images_per_s"}
    assert set(result["small_vs_reference_train_speedup"]) == {"fp32", "channels_last"}
    assert result["data_seconds_per_batch"] > 0 and result["peak_rss_mib"] > 0


def test_bench_times_whole_guided_sampling_runs(tmp_path, monkeypatch):
    calls = []  # the batch size of every network call
    build_models = ddpm.commands.bench.build_models

    def counted(names):
        models = build_models(names)
        for model in models.values():
            model.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
        return models

    monkeypatch.setattr(ddpm.commands.bench, "build_models", counted)
    cfg = compose_train(tmp_path, ["models=[tiny]", "variants=[fp32]", "batch_size=4", "train_repeats=1",
                                   "sample_batch_size=8", "sample_repeats=2", "data.root=null",
                                   f"out={tmp_path}/bench.json"],
                        config_name="bench")
    speeds = bench(cfg)["models"]["tiny"]["fp32"]
    assert "data_seconds_per_batch" not in json.loads((tmp_path / "bench.json").read_text())
    assert set(speeds) == {"train_images_per_s", "ddim50_images_per_s", "dpmpp20_images_per_s"}
    # Every step of every timed run went through the network, guided (conditional and unconditional halves in one
    # batch of 16): 2 runs of DDIM-50 and 2 of DPM-Solver++-20, each sampler after one warm-up call.
    assert calls.count(16) == (1 + 2 * 50) + (1 + 2 * 20)
    assert speeds["dpmpp20_images_per_s"] > speeds["ddim50_images_per_s"]  # 20 network calls a run against 50


@pytest.mark.parametrize("override", ["sample_repeats=0", "sample_batch_size=-1", "guidance=-1"])
def test_bench_bad_numbers_are_refused(tmp_path, override):
    cfg = compose_train(tmp_path, ["models=[tiny]", override, f"out={tmp_path}/bench.json"], config_name="bench")
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        bench(cfg)
    assert not (tmp_path / "bench.json").exists()
