"""trainer.precision=auto: bf16 where the CPU computes it natively, fp32 where it would be emulated."""

import pytest

from ddpm.commands.train import build
from ddpm.training.precision import auto_precision, cpu_flags
from tests.conftest import TINY, compose_train


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16-mixed"),  # AMD EPYC (Zen 4), Intel Cooper Lake
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "bf16-mixed"),  # Intel Sapphire Rapids and later
    ({"avx2", "avx512f"}, "32-true"),  # AVX-512 without bf16: emulated
    ({"avx2", "fma"}, "32-true"),
    (set(), "32-true"),  # no /proc/cpuinfo
])
def test_auto_is_bf16_only_where_the_cpu_computes_it(flags, expected):
    precision, why = auto_precision("cpu", flags)
    assert precision == expected
    assert ("natively" in why) == (expected == "bf16-mixed")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_the_trainer_gets_what_auto_stands_for_on_this_machine(tmp_path, synthetic_mnist, caplog):
    cfg = compose_train(tmp_path, [*TINY, "trainer.precision=auto", f"data.root={synthetic_mnist}",
                                   "data.check_md5=false"])
    with caplog.at_level("INFO"):
        trainer = build(cfg, multirun=False)[2]
    expected = auto_precision("cpu")[0]
    assert trainer.precision == expected
    assert f"trainer.precision=auto: {expected}" in caplog.text


def test_an_explicit_precision_wins(tmp_path, synthetic_mnist):
    cfg = compose_train(tmp_path, [*TINY, "trainer.precision=bf16-mixed", f"data.root={synthetic_mnist}",
                                   "data.check_md5=false"])
    assert build(cfg, multirun=False)[2].precision == "bf16-mixed"
