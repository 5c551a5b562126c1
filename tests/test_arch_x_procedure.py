"""The shipped crossed study (architecture x procedure) end to end: a ResNet and a ViT at 32 px,
each under A2 and T2, two seeds per cell, 1 epoch, through the CLI with the in-process executor.
Each trial must train the model and the recipe its cell names (a grid over recipes once trained
A2 in every cell)."""

from tests.conftest import run_cli


def test_arch_x_procedure_runs_and_each_trial_trains_its_cell(tmp_path):
    import rsb_tune

    plan = rsb_tune.plan_grid("arch_x_procedure", n=2, epochs=1)
    proc = run_cli("grid", "--space", "arch_x_procedure", "--n", "2", "--epochs", "1", "--executor", "local", "--quiet", "--storage", str(tmp_path), "--name", "ax")
    assert proc.returncode == 0, proc.stderr
    study = rsb_tune.load("ax", storage=str(tmp_path))
    trials = study.trials.set_index("trial_id").sort_index()
    assert list(trials.index) == list(plan.trials) and (trials["status"] == "ok").all()
    for tid, cfg in plan.trials.items():
        row = trials.loc[tid]
        assert (row["model"], row["recipe"], row["seed"]) == (cfg["model"], cfg["recipe"], cfg["seed"])
        assert (row["opt"], row["loss"]) == (("lamb", "bce") if cfg["recipe"] == "A2" else ("adamw", "ce"))
    cells = trials.groupby(["model", "recipe"])["seed"].apply(sorted).to_dict()
    assert cells == {(m, r): [0, 1] for m in ("resnet10t", "vit_tiny_patch16_224") for r in ("A2", "T2")}
    # the crossed study's analysis finds its two factors: the cases' model (with its kwargs) and the recipe
    assert study.factorial().factors == ("model", "recipe")
