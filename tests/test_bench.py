import json

from conftest import compose_train

from ddpm.bench import bench


def test_bench_measures_small_against_the_reference_unet(tmp_path, real_mnist):
    cfg = compose_train(
        tmp_path,
        ["models=[small,reference]", "variants=[fp32,channels_last]", "variant_models=[small,reference]",
         "batch_size=4", "sample_batch_size=2", "train_repeats=1", "sample_repeats=1", f"data_root={real_mnist}",
         f"out={tmp_path}/bench.json"],
        config_name="bench",
    )
    result = bench(cfg)
    assert json.loads((tmp_path / "bench.json").read_text()) == result
    small, reference = result["models"]["small"], result["models"]["reference"]
    assert 10e6 < reference["params"] < 12e6 and small["params"] < reference["params"] / 5
    assert small["flops_per_image"] < reference["flops_per_image"] / 10
    for model in (small, reference):
        for variant in ("fp32", "channels_last"):
            speeds = model[variant]
            assert speeds["train_images_per_s"] > 0
            # DDPM over T=1000 steps makes images 20 times slower than DDIM's 50 steps.
            assert abs(speeds["ddim50_images_per_s"] / speeds["ddpm_T_images_per_s"] - 20) < 1e-6
    assert set(result["small_vs_reference_train_speedup"]) == {"fp32", "channels_last"}
    assert result["data_seconds_per_batch"] > 0 and result["peak_rss_mib"] > 0
