"""Regenerate notebooks/*.ipynb (committed without outputs) from the cell sources below.

python tools/make_notebooks.py [out_dir]   (default: notebooks/)

Parameter checks name the package's constants (nb.METHODS, nb.PRESETS, ...), so the notebooks
accept what the package accepts; tests/test_notebooks.py checks that regenerating changes nothing.
"""
import sys
from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parent.parent
KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}

SETUP = """import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display
import lion_kit
from lion_kit import analysis, viz, nb, widgets
from lion_kit.train import train
%matplotlib inline"""

RUN_OR_TRAIN = """if run_dir is None:  # no run given: train a quick LION run for this notebook
    run_dir = f"{out_dir}/run"
    train(preset, overwrite=True, **nb.overrides(method="lion", n_labeled=n_labeled, epochs=epochs, iters=iters,
                                                  synth_size=synth_size, image_size=image_size, seed=seed, out=run_dir))
run = lion_kit.load_run(run_dir)
print(run.path, "|", run.config["method"], "|", len(run.metrics), "epochs")"""

QUICK_PARAMS = """run_dir = None        # a finished LION run directory; None trains a quick one
out_dir = "runs/nb{n}"  # where this notebook writes its results.json (and the quick run)
preset = "cpu"        # budget of the quick run: cpu or smoke
n_labeled = 400
epochs = None         # None: the preset's
iters = None
synth_size = None
image_size = None
seed = 0
interactive = True    # show the ipywidgets explorer (needs a front end to be useful)"""

QUICK_CHECK = """nb.check_params({"run_dir": ((str, type(None)), None), "out_dir": (str, None), "preset": (str, nb.PRESETS),
                 "n_labeled": (int, None), "epochs": ((int, type(None)), None), "iters": ((int, type(None)), None),
                 "synth_size": ((str, type(None)), nb.SYNTH_SIZES), "image_size": ((int, type(None)), None),
                 "seed": (int, None), "interactive": (bool, None)}, globals())"""


def md(s):
    return nbf.v4.new_markdown_cell(s)


def code(s, tags=()):
    c = nbf.v4.new_code_cell(s)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "notebooks"  # a test regenerates into a temp folder


def write(name, cells):
    nb = nbf.v4.new_notebook(cells=cells, metadata=KERNEL)
    for i, c in enumerate(nb.cells):  # stable ids: regenerating changes nothing
        c.id = f"{Path(name).stem}-{i}"
    OUT.mkdir(parents=True, exist_ok=True)
    nbf.write(nb, OUT / name)


write("00_lion_by_hand.ipynb", [
    md("# 00 · LION by hand\n\nNo training, no data download, a few seconds: every rule of one LION iteration applied to "
       "inputs you choose, computed by the same code the trainer runs (`LionState`, the losses and the schedules; "
       "`lion_kit/lesson.py` only feeds them toy inputs and draws the result).\n\nOne LION iteration does four things:\n"
       "1. **labeled faces** whose prediction beats their label by more than δ_amb become *ambiguous*: their label "
       "turns into a weighted **candidate set** that drifts towards the class whose **prototype** the face resembles;\n"
       "2. **confident unlabeled faces** (top probability ≥ τ_e) get a pseudo-label, as in FixMatch;\n"
       "3. **unsure unlabeled faces** collect **negative labels**, one class they are surely *not* per visit;\n"
       "4. the losses are weighted by schedules over the 30 epochs: τ_e rises, λ_n fades.\n\n"
       "Change the parameters below (or use the sliders in JupyterLab) and re-run."),
    code("""probs = [0.02, 0.15, 0.02, 0.02, 0.75, 0.02, 0.02]  # a labeled face's class probabilities (surprise ... neutral)
label = 1              # its given label: 0 surprise, 1 fear, 2 disgust, 3 happiness, 4 sadness, 5 anger, 6 neutral
delta_amb = 0.5        # ambiguity threshold (the paper's)
feature_t = 0.8        # where the face's feature sits: 0 at its label's prototype, 1 at the predicted class's
momenta = [0.99, 0.765]  # candidate-weight momentum per visit: the paper's, and the cpu preset's mapped value
neg_probs = [0.004, 0.5, 0.001, 0.45, 0.02, 0.003, 0.022]  # an unsure unlabeled face
delta_neg = 0.01       # a class becomes a negative label at or below this probability
interactive = True     # show the ipywidgets sliders (JupyterLab)
out_dir = "runs/nb00\"""", tags=["parameters"]),
    code("""import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display, HTML
from lion_kit import lesson, nb
%matplotlib inline
nb.check_params({"probs": (list, None), "label": (int, tuple(range(7))), "delta_amb": (float, None),
                 "feature_t": (float, None), "momenta": (list, None), "neg_probs": (list, None),
                 "delta_neg": (float, None), "interactive": (bool, None), "out_dir": (str, None)}, globals())"""),
    md("## 1 · Is this face ambiguous?\n\nFrom the relabel epoch E_r on, a labeled face is **ambiguous** when "
       "`max_c p_c − p_label > δ_amb`. The first time that happens its one-hot label **opens** into the set "
       "{label, prediction}, weighted by the model's own probabilities on those two classes (renormalised). "
       "While the set is open the face is left out of the labeled loss L_x. A clear face keeps its one-hot label."),
    code("""first = lesson.one_visit(probs, label, delta_amb)
display(pd.Series(first).to_frame("one visit"))
lesson.plot_probs(probs, label, delta_amb); plt.show()
if interactive:
    display(lesson.ambiguity_widget(label))"""),
    md("## 2 · A candidate set over many visits\n\nOn each later visit where the face is still ambiguous, the weights "
       "of the label and the prediction move towards `q`, a softmax (temperature 0.1) of the face's feature against "
       "the class **prototypes** (running means of features): `w ← m·w + (1 − m)·q`. When one weight passes **0.985** "
       "the set collapses to one-hot; if that class is not the given label *and* its weight is at least **0.996**, the "
       "face is **relabelled**.\n\nLeft: 2-D prototypes and the face's feature (★). Right: the predicted class's weight, "
       "visit by visit, for the paper's momentum and for the `cpu` preset's, which makes one visit count for the "
       "26.7 paper visits it stands for."),
    code("""lesson.plot_visits(probs, label, feature_t, momenta); plt.show()
runs = {m: lesson.visits(probs, label, feature_t, momentum=m) for m in momenta}
display(pd.DataFrame({m: df.iloc[-1] for m, df in runs.items()}).T)"""),
    md("Read the last table: a set that drifts towards the prediction **collapses** there, but its training label "
       "stays the given one — the step that crosses 0.985 moves the weight by at most `1 − m` of the remaining gap, "
       "so it lands below 0.996. A face is relabelled when its set *opens* with the model already ≥ 99.6% sure "
       "against the label:"),
    code("""sure = [0.002, 0.001, 0.001, 0.001, 0.99, 0.003, 0.002]
display(lesson.visits(sure, label, feature_t))"""),
    md("## 3 · The schedules: τ_e and λ_n\n\nThe pseudo-label threshold is `τ_e = 0.8 + 0.01·e` and the negative-loss "
       "weight `λ_n = max(0, 0.24 − 0.015·e)`. At epoch 20 τ_e reaches **1.0**: no softmax probability can reach it, "
       "so for the last third of the paper's run LION uses **no pseudo-labels at all** (the kit reproduces this and "
       "says so). λ_n is zero from epoch 16: negative learning is an early-training device.\n\nA short run maps each of "
       "its epochs onto the block of paper epochs it stands for and evaluates the schedule at the block's mean (red "
       "dots), so a 6-epoch run keeps the 30-epoch shape."),
    code("""sched = lesson.schedules("cpu")
lesson.plot_schedules("cpu"); plt.show()
display(sched.pivot(index="epoch", columns="schedule", values="tau").head(8))"""),
    md("## 4 · Negative labels on an unsure unlabeled face\n\nA face whose top probability is below τ_e gives no "
       "pseudo-label, but it can say what it is **not**. On each visit the least likely class not yet ruled out joins "
       "its negative set `C_i` if its probability is at most δ_neg — **one class per visit**, kept for the whole run "
       "(*progressive*). The ablation *without progression* takes every class at or below δ_neg at once and "
       "forgets it by the next visit. The losses: `L_n = Σ_{c∈C} −log(1 − p_c)` on the weak view, and `L_sn`, a "
       "binary cross-entropy between sigmoid margins and membership of C on the strong view."),
    code("""neg = lesson.negatives(neg_probs, n_visits=4, delta_neg=delta_neg)
display(neg)"""),
    md("## 5 · Faces behind the vectors\n\nSynthFER renders a face from action units; a soft label mixes two "
       "expressions' action units. The same person, light and pose, from a clear fear to a clear sadness: the "
       "blends in between are the faces annotators disagree on, and the ones LION's candidate sets are for."),
    code("""mix = [[0, 1, 0, 0, 0, 0, 0], [0, 0.7, 0, 0, 0.3, 0, 0], [0, 0.5, 0, 0, 0.5, 0, 0], [0, 0.3, 0, 0, 0.7, 0, 0],
       [0, 0, 0, 0, 1, 0, 0]]
lesson.show_faces(mix, ["fear", "70% fear", "50 / 50", "30% fear", "sadness"]); plt.show()"""),
    md("## Exercises\n\nChange the parameters cell and re-run; each answer is one click away."),
    code("""exercises = [
    ("Set probs so that the face is NOT ambiguous although the model predicts another class than the label.",
     "Any vector whose top probability beats p_label by at most δ_amb, e.g. label 1 with p_fear = 0.35 and p_sadness = 0.6: "
     "the gap is 0.25 < 0.5, so the face stays in L_x with its label."),
    ("Move feature_t to 0.3. Where does the set collapse, and is the face relabelled?",
     "The feature is now closer to the label's prototype: q favours the label, its weight climbs back and the set "
     "collapses onto the given label (state 'closed'); nothing is relabelled."),
    ("Why does the cpu preset use momentum 0.765 instead of 0.99?",
     "A cpu run visits each labeled face 26.7 times less often than the paper; 0.99^26.7 = 0.765 moves a weight as far "
     "in one visit as the paper's momentum does in 26.7, so a set drifts over the same share of training."),
    ("At which paper epoch does LION stop using pseudo-labels, and why?",
     "At epoch 20: τ_e = 0.8 + 0.01·20 = 1.0, and a softmax probability below 1 never reaches it. From then on only "
     "the labeled loss trains the model (λ_n is already 0 from epoch 16)."),
]
display(HTML("".join(f"<p><b>{i}.</b> {q}</p><details><summary>answer</summary><p>{a}</p></details>"
                     for i, (q, a) in enumerate(exercises, 1))))"""),
    code("""nb.save_results(out_dir, {"ambiguous": first["ambiguous"], "candidates": first["candidates"],
                           "visits_to_close": {str(m): int(len(df)) for m, df in runs.items()},
                           "final_state": {str(m): df["state"].iloc[-1] for m, df in runs.items()},
                           "sure_face": lesson.visits(sure, label, feature_t).iloc[-1].to_dict(),
                           "tau_paper_epoch_20": float(sched.query("schedule == 'paper' and epoch == 20")["tau"].iloc[0]),
                           "negatives_progressive": neg["progressive"].tolist(), "negatives_instant": neg["instant"].tolist(),
                           "L_n": neg["L_n"].tolist(), "exercises": len(exercises)})"""),
])

write("01_train.ipynb", [
    md("# 01 · Train a model\n\nTrain `supervised`, `fixmatch` or `lion` on SynthFER (no download), RAF-DB or a "
       "class-folder dataset, then look at what it learned. Everything below the parameters is a call into "
       "`lion_kit`; change the parameters (or pass them with `papermill -p`) and re-run."),
    code("""method = "lion"        # supervised, fixmatch or lion
dataset = "synthfer"   # synthfer, rafdb, folder, fer2013, ferplus or affectnet
data_root = None       # folder of rafdb / folder datasets
preset = "cpu"         # cpu (minutes on a laptop CPU), smoke (seconds) or paper (the paper's protocol, GPU)
n_labeled = 400        # 100, 400, 1000, 2000 or 4000 labels (the paper's splits)
epochs = None          # None: the preset's
iters = None
synth_size = None
image_size = None
seed = 0
eval_dataset = "synthfer"  # cross-dataset evaluation of the trained run: any dataset name, or None to skip
eval_root = None       # its folder (all but synthfer)
eval_split = "test"
eval_options = {"size": "small", "seed": 7, "ambiguity": 0.6, "min_intensity": 0.1}  # synthfer: another, harder rendering
out_dir = "runs/nb01\"""", tags=["parameters"]),
    code(SETUP + """
nb.check_params({"method": (str, nb.METHODS), "dataset": (str, nb.DATASETS),
                 "data_root": ((str, type(None)), None), "preset": (str, nb.PRESETS), "n_labeled": (int, None),
                 "epochs": ((int, type(None)), None), "iters": ((int, type(None)), None),
                 "synth_size": ((str, type(None)), nb.SYNTH_SIZES), "image_size": ((int, type(None)), None),
                 "seed": (int, None), "eval_dataset": ((str, type(None)), nb.DATASETS), "eval_root": ((str, type(None)), None),
                 "eval_split": (str, None), "eval_options": (dict, None), "out_dir": (str, None)}, globals())"""),
    md("## Train\n\nThe run directory receives `config.json`, `metrics.jsonl` (one line per epoch), `history.npz`, "
       "`relabels.csv`, `summary.json` and checkpoints. A progress bar shows each epoch."),
    code("""summary = train(preset, overwrite=True, **nb.overrides(method=method, dataset=dataset, data_root=data_root, n_labeled=n_labeled,
                                                   epochs=epochs, iters=iters, synth_size=synth_size, image_size=image_size,
                                                   seed=seed, out=f"{out_dir}/run"))
run = lion_kit.load_run(f"{out_dir}/run")
run.metrics[[c for c in ("epoch", "loss", "test_acc", "test_mca", "mask_rate", "relabels", "neg_mean_size") if c in run.metrics]]"""),
    md("## Losses by component\n\nLION's total loss is `1.6·L_x + 1.2·L_u + λ_n·L_n + λ_sn·L_sn`. Plotted unweighted: "
       "`L_n` and `L_sn` act only on low-confidence unlabeled faces, and their weight λ_n fades to zero by a "
       "third of the schedule."),
    code("viz.plot_losses(run); plt.show()"),
    md("## Accuracy\n\nThe EMA model is evaluated after every epoch. The **last epoch** is the honest number; the paper "
       "quotes the **best epoch on the test split**, which is optimistic. On SynthFER the dashed lines score "
       "against each face's *true* class rather than its (sometimes wrong) observed label."),
    code("""viz.plot_accuracy(run); plt.show()
print("last epoch:", summary["last_epoch"], "| best epoch (paper's protocol):", summary["best_epoch"])"""),
    md("## Confusion and per-class accuracy\n\nRows are labels, columns predictions, each row sums to 1. Fear and "
       "disgust are rare in RAF-DB (and so in SynthFER), and fear is confused with surprise."),
    code("viz.plot_confusion(run); plt.show()\nviz.plot_per_class(run); plt.show()"),
    md("## Misclassified faces"),
    code("viz.misclassified_gallery(run, n=16); plt.show()"),
    md("## Cross-dataset evaluation\n\nTrain on one dataset, test on another: a standard FER experiment. "
       "`evaluate_run` applies the run's model (its EMA copy) to any dataset split and writes the result into the "
       "run directory under `eval/`, apart from the run's own numbers (the command line: `python -m lion_kit eval "
       "--run DIR --dataset NAME --data-root R`). With no download at hand, the default evaluates on a *differently "
       "rendered* SynthFER (another seed, twice as many blended faces, subtler expressions): a distribution shift "
       "one can dial. A class absent from the evaluated split is reported as absent, not as 0."),
    code("""if eval_dataset is not None:
    from lion_kit.evaluate import evaluate_run
    cross = evaluate_run(run.path, eval_dataset, eval_root, eval_split, **(eval_options if eval_dataset == "synthfer" else {}))
    print(f"trained on {cross['trained_on']}, evaluated on {cross['dataset']} ({cross['split']}, {cross['faces']} faces): "
          f"accuracy {cross['acc']:.3f} (own test split: {summary['last_epoch']['test_acc']:.3f}), "
          f"mean class accuracy {cross['mean_class_acc']:.3f}")
    display(pd.DataFrame(cross["per_class"]))
else:
    cross = None"""),
    code("""nb.save_results(out_dir, {"method": method, "run_dir": str(run.path), "epochs": int(len(run.metrics)),
                           "test_acc": summary["last_epoch"]["test_acc"], "test_mca": summary["last_epoch"]["test_mca"],
                           "best_acc": summary["best_epoch"]["test_acc"],
                           "loss_first": float(run.metrics["loss"].iloc[0]), "loss_last": float(run.metrics["loss"].iloc[-1]),
                           "cross_dataset": None if cross is None else {k: cross[k] for k in ("dataset", "split", "faces", "acc", "mean_class_acc")}})"""),
])

write("02_candidate_evolution.ipynb", [
    md("# 02 · Candidate sets: how LION disambiguates labels\n\nFrom the relabel epoch E_r on, a labeled face whose "
       "prediction beats its given label by more than δ_amb = 0.5 is *ambiguous*: its label becomes a candidate "
       "set {given, predicted} with weights, which drift towards the class whose **prototype** (a running mean "
       "of features) the face resembles. When one weight passes 0.985 the set collapses; at 0.996 on another "
       "class the face is **relabelled**."),
    code(QUICK_PARAMS.format(n="02"), tags=["parameters"]),
    code(SETUP + "\n" + QUICK_CHECK + "\n" + RUN_OR_TRAIN),
    md("## Ambiguous samples per epoch\n\nOrange: labeled faces whose candidate set is open at the end of the epoch. "
       "Black: faces whose training label differs from the given one. Nothing happens before E_r (dotted).\n\n"
       "Where the true class is known (SynthFER), the table also says how *selective* disambiguation is: "
       "`open_wrong` is the share of faces given a wrong label whose set is open, `open_right` the same among "
       "faces given the right label, and `open_true_weight` the mean weight an open set puts on the true class. "
       "Disambiguation helps when `open_wrong` is far above `open_right` (it finds the wrong labels and leaves the "
       "right ones in the labeled loss) and `open_true_weight` climbs towards 1 (the prototypes pull the weights to "
       "the true class); an open set on a right label only takes a good label out of training."),
    code("""table = analysis.open_sets_per_epoch(run)
display(table)
viz.plot_open_sets(run); plt.show()"""),
    md("## Candidate-weight trajectories\n\nThe faces whose sets stayed open longest (or that were relabelled)."),
    code("""samples = analysis.interesting_samples(run, 5)
viz.plot_weight_trajectories(run, samples); plt.show()"""),
    md("## Relabel events\n\nOld → new label; on SynthFER a ✓ marks a new label that is the face's true class. "
       "The share of ✓ is the *relabel precision*, which no real dataset can measure."),
    code("""display(run.relabels.tail(10))
if len(run.relabels):
    viz.relabel_gallery(run, 16); plt.show()
else:
    print("no relabel events in this run (short runs rarely reach the 0.996 threshold)")"""),
    md("## Prototypes\n\nCosine similarity between different classes' prototypes: as features become discriminative, "
       "prototypes separate and the softmax over them (temperature 0.1) becomes decisive."),
    code("viz.plot_prototypes(run); plt.show()"),
    md("## Explore\n\nScrub the epochs and pick a sample (needs JupyterLab or Notebook with ipywidgets)."),
    code("""if interactive:
    display(widgets.candidate_explorer(run))"""),
    code("""nb.save_results(out_dir, {"run_dir": str(run.path), "epochs": int(len(table)), "open_sets": table["open_sets"].tolist(),
                           "relabelled": table["relabelled"].tolist(), "relabel_events": int(len(run.relabels)),
                           "relabel_precision": run.summary.get("relabel_precision"), "samples": samples})"""),
])

write("03_negative_labels.ipynb", [
    md("# 03 · Progressive negative learning\n\nAn unlabeled face the model is unsure about gives no pseudo-label, "
       "but it can still say what the face is **not**. Each visit adds at most one *complementary* label: the "
       "least likely class not yet ruled out, if its probability is at most δ_neg = 0.01, up to 6 of 7 classes. "
       "The loss then pushes those probabilities down (`L_n`) and, on the strong view, their sigmoid margins "
       "apart (`L_sn`)."),
    code(QUICK_PARAMS.format(n="03"), tags=["parameters"]),
    code(SETUP + "\n" + QUICK_CHECK + "\n" + RUN_OR_TRAIN),
    md("## Growth of the complementary sets\n\nLeft: mean |C_i| over unlabeled faces. Right: how many faces hold "
       "0, 1, ..., 6 negative labels. The sets grow progressively because one class is added per visit."),
    code("""sizes = analysis.negative_sizes(run)
display(sizes)
viz.plot_negative_growth(run); plt.show()"""),
    md("## Which expressions are ruled out for which\n\nRow = the face's true class (SynthFER) or dataset label, "
       "column = the complementary label. The diagonal counts mistakes: a face's own class ruled out."),
    code("viz.plot_negative_heatmap(run); plt.show()"),
    md("## Negative-label precision per class\n\nThe share of complementary labels that are right. Ruling out a "
       "class at random would be right 6/7 of the time, so precision must beat 0.857 to be informative."),
    code("""prec = analysis.negative_precision_per_class(run)
display(prec.to_frame())
viz.plot_negative_precision(run); plt.show()"""),
    md("## Faces and what they are not"),
    code("viz.negative_gallery(run, 16); plt.show()"),
    code("""if interactive:
    display(widgets.negative_explorer(run))"""),
    code("""m = run.metrics
nb.save_results(out_dir, {"run_dir": str(run.path), "mean_size": sizes["mean"].tolist(),
                           "neg_precision": None if "neg_precision" not in m else m["neg_precision"].iloc[-1],
                           "precision_per_class": prec.to_dict()})"""),
])

write("04_ablations.ipynb", [
    md("# 04 · Ablations: what each part of LION is worth\n\nA grid of methods and LION switches × label budgets × "
       "seeds; each cell is one training run. The committed grid (`results/synthfer-cpu`, made by `python -m lion_kit "
       "results run`) is read first: a cell whose configuration matches is shown without training, so with the `cpu` "
       "preset this notebook draws the real grid in seconds (`train_missing=False`: only those cells). Cells not kept "
       "are trained here (`workers > 1`: in parallel; `executor='slurm'`: on a cluster through submitit).\n\n"
       "| variant | what it removes | why it might matter |\n|---|---|---|\n"
       "| `supervised` | every unlabeled face | the floor: what the labels alone give |\n"
       "| `fixmatch` | LION's two additions | pseudo-labels alone, at a fixed threshold 0.95 |\n"
       "| `lion` | nothing: the paper's method | |\n"
       "| `lion-no-ld` | label disambiguation | without it no labeled face leaves L_x: if the given labels are mostly right, this may help |\n"
       "| `lion-no-nl` | negative learning | unsure unlabeled faces then teach nothing |\n"
       "| `lion-nl-no-progression` | the memory of negative labels | every class below δ_neg at once, forgotten by the next visit |\n"
       "| `lion-no-sn` | the strong-view negative loss | L_n alone on the weak view |"),
    code("""variants = ["supervised", "fixmatch", "lion", "lion-no-ld", "lion-no-nl", "lion-nl-no-progression"]
budgets = [100, 400, 1000]
seeds = [0, 1, 2]
split_seeds = [5, 6, 7]   # lion at 400 labels, seed 0, with three labeled splits (5 is the paper's)
preset = "cpu"
epochs = None
iters = None
synth_size = None
image_size = None
workers = 1
executor = "local"    # local, slurm or submitit-local
results_dir = "results/synthfer-cpu"   # committed cells, reused when their configuration matches; empty: none
train_missing = True  # False: show only the cells already finished, train nothing
curve_dirs = ["results/synthfer-cpu", "results/synthfer-cpu-2x", "results/synthfer-cpu-4x", "results/synthfer-cpu-8x"]
out_dir = "runs/nb04\"""", tags=["parameters"]),
    code("""import matplotlib.pyplot as plt
from IPython.display import display
from lion_kit import nb, results, sweep, viz
%matplotlib inline
nb.check_params({"variants": (list, list(sweep.VARIANTS)), "budgets": (list, None), "seeds": (list, None),
                 "split_seeds": (list, None), "preset": (str, nb.PRESETS), "epochs": ((int, type(None)), None),
                 "iters": ((int, type(None)), None), "synth_size": ((str, type(None)), nb.SYNTH_SIZES),
                 "image_size": ((int, type(None)), None), "workers": (int, None),
                 "executor": (str, ("local", "slurm", "submitit-local")), "results_dir": (str, None),
                 "train_missing": (bool, None), "curve_dirs": (list, None), "out_dir": (str, None)}, globals())"""),
    code("""jobs = sweep.make_grid(variants, budgets, seeds, root=f"{out_dir}/runs", preset=preset, split_seeds=split_seeds,
                       **nb.overrides(epochs=epochs, iters=iters, synth_size=synth_size, image_size=image_size))
df = sweep.run_grid(jobs, workers=workers, executor=executor, reuse=results_dir or None, train_missing=train_missing)
df.to_csv(f"{out_dir}/runs.csv", index=False)
done = df[df["status"].isin(results.OK)]
print(results.missing_line(df))"""),
    md("## Accuracy against the label budget\n\nMean ± sample std over seeds of last-epoch accuracy; the baselines "
       "are solid lines, LION's ablations dashed or dotted. The last column of the table is the paper's protocol (the "
       "best epoch, chosen on the test split): read it beside the last epoch, never instead of it. On SynthFER the "
       "table also scores against each face's true class, and says how right the relabels and negative labels were."),
    code("""table = results.table(done)
table.to_csv(f"{out_dir}/results_table.csv", index=False)
display(table)
if len(done):
    fig = viz.plot_grid(done, "acc"); fig.savefig(f"{out_dir}/accuracy.png", dpi=120, bbox_inches="tight"); plt.show()
    fig = viz.plot_grid(done, "mca"); fig.savefig(f"{out_dir}/mean_class_accuracy.png", dpi=120, bbox_inches="tight"); plt.show()
print(results.say_table(done))"""),
    md("## Paired differences: how to read them\n\nTwo cells with the same seed share their labeled split, their data "
       "order and their initial head, so `A − B` seed by seed removes what those contribute to both: a paired "
       "difference has a far smaller spread than the two accuracies' own. Read three things: the mean, its spread "
       "(sample std over seeds), and how many seeds agree in sign. **A difference no larger than its spread is no "
       "difference**; one from a single seed cannot be judged at all."),
    code("""pairs = results.paired(done)
display(pairs)
if len(pairs):
    fig = viz.plot_paired(done); fig.savefig(f"{out_dir}/paired.png", dpi=120, bbox_inches="tight"); plt.show()
print(results.say(pairs))"""),
    md("## When does semi-supervision pay? Training length\n\nThe grid above holds the `cpu` preset's length "
       "(900 iterations). Unlabeled faces can only help once the model is good enough that its confident guesses are "
       "mostly right and it has iterations left to learn from them, so the committed budget curve repeats supervised, "
       "FixMatch, LION and LION without disambiguation at 400 labels with 2×, 4× and 8× the iterations "
       "(`python -m lion_kit results run --set iters=N --keep results/synthfer-cpu-Kx`; drawn by `python -m lion_kit "
       "results budget`). Read the left panel for where a semi-supervised curve crosses supervised, and the right for "
       "why: the share of unlabeled faces confident enough to train on in the last epoch (LION's threshold τ_e passes "
       "1.0 at paper epoch 20, so its mask falls to zero at the end of every run), and LION's open candidate sets — "
       "labeled faces disambiguation no longer trains on their given label. This reads committed files only (preset "
       "`cpu`); a length not kept yet is simply absent."),
    code("""curve = results.load_budgets(curve_dirs, "cpu")
display(results.budget_table(curve))
if len(curve):
    fig = viz.plot_budget(curve); fig.savefig(f"{out_dir}/budget.png", dpi=120, bbox_inches="tight"); plt.show()
print(results.say_budget(curve))"""),
    code("""nb.save_results(out_dir, {"runs": int(len(df)), "failed": int((df["status"] == "failed").sum()),
                           "missing": int((df["status"] == "missing").sum()),
                           "table": table.to_dict(orient="records"), "paired": pairs.to_dict(orient="records"),
                           "budget_curve": results.budget_table(curve).to_dict(orient="records"),
                           "csv": f"{out_dir}/results_table.csv"})"""),
])
print("notebooks written")
