"""The report's figures draw an arm in one colour in every panel, whichever arms a panel holds."""

import matplotlib.colors as mcolors

from ddpm.evaluation import plots


def line_colours(fig) -> list[dict[str, str]]:
    """Per panel: the label of each errorbar line -> its colour as hex."""
    return [{c.get_label(): mcolors.to_hex(c.lines[0].get_color()) for c in ax.containers} for ax in fig.axes]


def test_an_arm_missing_from_one_panel_leaves_the_others_their_colours(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    rows = [{"arm": "cosine", "guidance": 0.0, "steps": 10, "fid": 1.0},
            {"arm": "linear", "guidance": 0.0, "steps": 10, "fid": 2.0},
            {"arm": "linear", "guidance": 1.0, "steps": 10, "fid": 3.0}]
    assert plots.metric_curves(rows, "fid", "steps", "guidance", tmp_path / "fid.png")
    first, second = line_colours(figures[0])
    assert set(first) == {"cosine", "linear"} and set(second) == {"linear"}
    assert second["linear"] == first["linear"] != first["cosine"]


def test_one_mapping_keeps_an_arm_s_colour_across_figures(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    colours = plots.arm_colours(["linear", "cosine", "sigmoid", "cosine"])
    assert len(set(colours.values())) == 3 and colours == plots.arm_colours(["sigmoid", "linear", "cosine"])
    plots.metric_curves([{"arm": "sigmoid", "guidance": 0.0, "steps": 10, "fid": 1.0}], "fid", "steps", "guidance",
                        tmp_path / "a.png", colours=colours)
    plots.val_by_log_snr({"linear": [(0.0, 1.0, 0.1)], "sigmoid": [(0.0, 2.0, 0.1)]}, tmp_path / "b.png", colours)
    (alone,), (both,) = line_colours(figures[0]), line_colours(figures[1])
    assert alone["sigmoid"] == both["sigmoid"] == mcolors.to_hex(colours["sigmoid"])
    assert both["linear"] == mcolors.to_hex(colours["linear"])


def test_the_sampler_trade_off_keeps_a_family_s_colour_in_every_recipe_s_panel(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))

    def point(sampler, steps, fid, floor):
        return {"sampler": sampler, "steps": steps, "guidance": 1.0, "nfe": 2 * steps, "class_accuracy": 0.98,
                "fid": fid, "fid_floor": floor}

    panels = {"quick": [point("sde_dpmpp", 25, 9.0, 6.5), point("ddim", 50, 16.0, 6.5)],
              "long": [point("ddim", 50, 12.0, 6.4), point("sde_dpmpp", 50, 7.0, 6.4)],
              "unscored": [{"sampler": "ddim", "steps": 5}]}
    assert plots.sampler_tradeoff(panels, tmp_path / "t.png")
    quick, long = line_colours(figures[0])  # the panel without accuracy or FID is left out
    assert set(quick) == {"sde_dpmpp-25", "ddim-50"} and set(long) == {"ddim-50", "sde_dpmpp-50"}
    assert long["ddim-50"] == quick["ddim-50"] and len({*quick.values(), *long.values()}) == 3
    floors = [[line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
              for ax in figures[0].axes]
    assert floors == [[6.5], [6.4]]  # each panel's own real-vs-real floor
    assert not plots.sampler_tradeoff({"unscored": panels["unscored"]}, tmp_path / "none.png")
