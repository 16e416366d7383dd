"""The closing "Findings" of each stage notebook, rendered from its metrics files so that no
number in a notebook's prose is typed by hand: rerun the stage and the findings follow.

``render(notebook, reports_dir)`` returns Markdown text; ``show`` displays it in a notebook.
Keys a dataset cannot have (exact answers, ground-truth AUs on real data) are left out of the
text rather than reported as missing numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

FIGURE_OF_MERIT = {  # eval.json tests: metric -> (words, which direction is better)
    "pspi_mae": ("PSPI error", "lower"),
    "identity_similarity": ("identity similarity to an unseen frame", "higher"),
    "nme": ("landmark error (NME) against the control", "lower"),
    "ssim_to_exact": ("SSIM to the exact answer", "higher"),
}

COMPARISONS = {  # augment.json claim: arm comparison -> words
    "paincontrol_vs_real": "real + PainControl faces over real only",
    "warp_vs_real": "real + warped faces over real only",
    "classic_vs_real": "real + classic augmentation over real only",
    "paincontrol_vs_warp": "PainControl faces over warped faces",
}


class _Missing(float):
    """A value the stage could not measure: ``null`` in the JSON (no face found in the tiny
    profile's noise samples) or a key the dataset cannot have (no ground-truth mesh on real
    data). NaN in comparisons, "n/a" in the text, and missing again when indexed."""

    def __format__(self, spec: str) -> str:
        return "n/a"

    def __getitem__(self, key):
        return self

    def get(self, key, default=None):
        return self


MISSING = _Missing("nan")


class _Metrics(dict):
    def __missing__(self, key):
        return MISSING


def _missing_as_nan(value):
    if isinstance(value, dict):
        return _Metrics({k: _missing_as_nan(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_missing_as_nan(v) for v in value]
    return MISSING if value is None else value


def _load(reports_dir, name: str) -> dict:
    path = Path(reports_dir) / "metrics" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics yet; run the stage first (dvc repro)")
    return _missing_as_nan(json.loads(path.read_text()))


def _interval(entry: dict, digits: int = 3, key: str = "estimate") -> str:
    value = entry.get(key, entry.get("mean"))
    return (
        f"{value:.{digits}f} [95 % CI {entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"
    )


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _of(metrics: dict, name: str, digits: int = 3) -> str:
    """``metrics[name]`` with its ``_ci_low`` / ``_ci_high`` interval."""
    return _interval(
        {
            "estimate": metrics[name],
            "ci_low": metrics[f"{name}_ci_low"],
            "ci_high": metrics[f"{name}_ci_high"],
        },
        digits,
    )


def synthpain(reports_dir) -> str:
    m = _load(reports_dir, "synthpain.json")
    corr = ", ".join(f"{k.replace('_', ' ')} r = {v:.2f}" for k, v in m["tracking_corr"].items())
    template = ", ".join(f"{v:.2f}" for v in m["subject_template_tracking_corr"].values())
    return (
        f"- **{m['n_images']:,} images of {m['n_identities']} synthetic people** were rendered.\n"
        f"- MediaPipe found a face in {m['mediapipe_detection_rate']:.1%} of them. Its landmarks "
        f"lie at NME {m['mediapipe_nme']:.3f} from the renderer's ground truth "
        f"(`mediapipe_nme`). A generic neutral face scores {m['template_nme']:.3f} "
        f"(`template_nme`); the person's own neutral frame, which knows who but not the "
        f"expression, scores {m['subject_template_nme']:.3f} (`subject_template_nme`), closer "
        "than MediaPipe: it is the renderer's own shape of the person, and most frames move "
        "little from it.\n"
        f"- MediaPipe follows the expression: {corr} (`tracking_corr`). The person's own "
        f"neutral frame gets {template} (`subject_template_tracking_corr`: it varies between "
        "people, never with the expression). So the meshes the model is conditioned on carry "
        "the expression, not just a face shape.\n" + _synthpain_appearance(m)
    )


def _synthpain_appearance(m) -> str:
    """The appearance evidence of stage 00 (``appearance``, ``warp_deficit*``), if measured."""
    if "appearance" not in m:
        return ""
    strongest = {au: s.get("signal_5", s.get("signal_1")) for au, s in m["appearance"].items()}
    signal = ", ".join(f"{au} {v:.1f}" for au, v in strongest.items())
    excess = m["warp_deficit_excess"]
    positive = [au for au, d in excess.items() if d["ci_low"] is not None and d["ci_low"] > 0]
    deficit = ", ".join(
        f"{au} {d['slope']:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}]" for au, d in excess.items()
    )
    geometry = ", ".join(
        f"{au} {d['slope']:.2f}" for au, d in m["warp_deficit_geometry_only"].items()
    )
    state = "on" if m["appearance_switch"] else "off (geometry only)"
    return (
        f"- **AU appearance** (`synthesize.appearance` {state}): at the strongest intensity each "
        f"pain AU changes its region by {signal} grey levels against the geometry-only render "
        f"(`appearance.<AU>.signal_5`; AU43 `signal_1`), over {m['evidence_people']} people.\n"
        f"- What appearance adds to a warp's error, per intensity unit (`warp_deficit_excess`, "
        f"95 % CI over people): {deficit}; above zero for {', '.join(positive) or 'no AU'}. "
        "The piecewise-affine warp misses some geometry too (`warp_deficit_geometry_only` "
        f"slopes {geometry}): it cannot close a lid over the eye or re-shade a moved surface."
    )


def landmarks(reports_dir) -> str:
    m = _load(reports_dir, "landmarks.json")
    photos = m.get("real_photos", {})
    faces = sum(p["faces"] for p in photos.values())
    meshed = sum(p["meshed"] for p in photos.values())
    lines = [
        f"- **{m['detection_rate']:.1%} of {m['n_images']:,} images** were meshed, aligned and "
        "drawn as control images (`detection_rate`)"
        + (
            f"; the mesh lies at NME {m['nme']:.3f} from the ground truth (`nme`)."
            if "nme" in m
            else "."
        ),
        f"- Throughput: {m['images_per_second']:.0f} images/s (`images_per_second`), "
        f"{m['throughput_ratio_vs_mediapipe']:.2f}x plain MediaPipe on the same images "
        "(`throughput_ratio_vs_mediapipe`; timings depend on the machine).",
    ]
    if photos:
        lines.append(
            f"- On {len(photos)} real photographs, {meshed} of the {faces} faces found "
            "were meshed (`real_photos`; the others are profiles). The figure shows the one "
            "photograph whose licence permits it, the public-domain astronaut."
        )
    return "\n".join(lines)


def train(reports_dir) -> str:
    m = _load(reports_dir, "train.json")
    tuning = _load(reports_dir, "tuning.json")
    ceiling = m["ground_truth_ceiling"]
    init = m.get("init_from")
    start = init.get("path") if isinstance(init, dict) and init.get("path") else "random weights"
    labels, best = tuning["labels"], tuning["selected_label"]
    effect = m.get("finetune_effect_val")
    lines = [
        f"- **{m['steps']} training steps** from {start} (`steps`, stopped by {m['stopped_by']}).",
        f"- On {m['n_heldout_identities']} **test people**, {labels['paincontrol']} "
        f"({m['sampler']['steps']} of {m['sampler']['steps']} steps from noise, tuned) follows "
        f"the control mesh at NME {m['heldout_nme']:.4f} (`heldout_nme`). The test people's "
        f"own frames score {ceiling['nme']:.4f} against their meshes (`ground_truth_ceiling.nme`"
        f"); a shuffled control gives {m['heldout_nme_shuffled']:.4f} "
        "(`heldout_nme_shuffled`).",
        f"- Identity: its samples are recognised as their own person top-1 "
        f"{m['heldout_identity_top1']:.0%} of the time (`heldout_identity_top1`), against a "
        f"frame the model never saw; the identity photo itself reaches "
        f"{m['identity_top1_ceiling']:.0%} (`identity_top1_ceiling`). The model alone (identity "
        f"scale 1, no guidance) reaches {m['noise_start']['heldout_identity_top1']:.0%} "
        "(`noise_start.heldout_identity_top1`).",
        f"- The sampler was chosen on {tuning['n_people']} {tuning['split']} people by the "
        f"declared objective ({tuning['rule']}). Best of all {len(tuning['grid'])} settings: "
        f"**{best}** ({tuning['steps_run']} denoising steps run; `tuning.json: selected`)"
        + (": the warp itself wins." if tuning["warp_wins"] else ".")
        + f" Best from noise: {labels['paincontrol']}; best on the warped target: "
        f"{labels['warp_start']}.",
    ]
    adapter = init.get("identity_adapter") if isinstance(init, dict) else None
    if adapter:
        curve = adapter["curve"]
        lines.append(
            f"- The identity tokens come from `{adapter['identity_backend']}`, an encoder that "
            f"never scores; the checkpoint's identity adapter was trained {adapter['steps']} "
            f"steps on the frozen generator ({adapter['train_minutes']:.0f} CPU min). On its "
            f"{curve[-1]['n_people']} held-out people, model alone from noise, identity top-1 "
            f"went from {curve[0]['identity_top1']:.0%} (untrained adapter) to "
            f"{curve[-1]['identity_top1']:.0%} (`init_from.identity_adapter.curve`)."
        )
    if m["steps"] == 0 and not isinstance(effect, dict):
        lines.append(
            "- No fine-tuning in this run (`train.max_steps` 0): the shipped checkpoint is drawn "
            "as it is; fine-tuning it improved nothing on val people (docs/model.md)."
        )
    elif isinstance(effect, dict):
        diff = effect["final_minus_step_0"]
        lines.append(
            f"- What fine-tuning changed on val people ({effect['sampler']}, final minus step "
            f"0, `finetune_effect_val`): objective {diff['objective']:+.3f} "
            f"[{diff['objective_ci'][0]:+.3f}, {diff['objective_ci'][1]:+.3f}], identity "
            f"similarity {diff['identity_similarity']:+.3f} "
            f"[{diff['identity_similarity_ci'][0]:+.3f}, {diff['identity_similarity_ci'][1]:+.3f}]"
            f", AU error {diff['au_error']:+.3f} [{diff['au_error_ci'][0]:+.3f}, "
            f"{diff['au_error_ci'][1]:+.3f}]."
        )
    text = m.get("text_conditioning", {})
    if text.get("prompts_truncated"):
        lines.append(
            f"- The checkpoint's tokenizer cut {text['prompts_truncated']} of "
            f"{text['n_prompts']} training prompts (longest "
            f"{text['longest_prompt_tokens']} tokens > {text['max_prompt_tokens']})."
        )
    return "\n".join(lines)


def _tokenizer_note(reports_dir) -> list[str]:
    """A line on the shipped checkpoint's tokenizer while it still cuts prompts (its warnings
    show in the cells above): stage 02's model and the augmentation generator inherit it."""
    path = Path(reports_dir) / "metrics" / "train.json"
    text = _load(reports_dir, "train.json").get("text_conditioning", {}) if path.is_file() else {}
    if not text.get("prompts_truncated"):
        return []
    return [
        "- This stage's log (`reports/logs/`, one line above says where) holds warnings about "
        "truncated prompts: they come from the tokenizer of the shipped "
        f"checkpoint, which stage 02 starts from: it cut {text['prompts_truncated']} of "
        f"{text['n_prompts']} training prompts there (docs/model.md; retraining it needs a GPU)."
    ]


def transfer(reports_dir) -> str:
    m = _load(reports_dir, "transfer.json")
    per_image = m["per_image_seconds"]
    labels, steps = m["labels"], m["steps_run"]
    return (
        f"- **{m['n_pairs']} source-target pairs** ({m['n_sources']} sources onto "
        f"{m['n_targets']} targets, test people only), {m['frames_per_pair']} frames each, "
        f"{len(m['methods'])} methods: "
        + "; ".join(f"{labels[x]} (`{x}`)" for x in m["methods"])
        + ".\n- Whether each sequence follows the source's motion is read in stage 04 "
        "(`eval.json: motion_following`).\n"
        + "".join(
            f"- {labels[x]} took {1000 * per_image[x]:.0f} ms per image here ({steps[x]} "
            f"denoising step{'s' if steps[x] != 1 else ''} run).\n"
            for x in ("paincontrol", "paincontrol_warp_start", "paincontrol_au_guided")
            if x in steps
        )
        + "".join(line + "\n" for line in _tokenizer_note(reports_dir))
    ).rstrip("\n")


def _motion(m: dict) -> list[str]:
    """How the transferred sequences follow the source's motion (``motion_following``)."""
    motion, labels = m.get("motion_following") or {}, m.get("labels", {})
    shown = [x for x in ("paincontrol", "paincontrol_warp_start", "paincontrol_au_guided", "warp")
             if motion.get(x, {}).get("n_sequences")]  # fmt: skip
    if not shown:
        return []
    exact = (
        motion.get("exact_answer") if motion.get("exact_answer", {}).get("n_sequences") else None
    )
    ceiling = f"; the exact answers, read the same way, {_interval(exact)}" if exact else ""
    return [
        "- Following the source's motion (`motion_following`: cosine of each sequence's "
        "frame-to-frame expression changes with those asked for; 1 moves as the source does, "
        "0 stands still or flickers): "
        + ", ".join(f"{labels.get(x, x)} {_interval(motion[x])}" for x in shown)
        + f"{ceiling}."
    ]


def evaluate(reports_dir) -> str:
    m = _load(reports_dir, "eval.json")
    ours = m["methods"]["paincontrol"]
    lines = [
        f"- **{m['design']['n_outputs_per_method']} outputs per method** on "
        f"{m['design']['n_targets']} target people ({m['design']['split']} split); "
        f"intervals: {m['design']['ci']}; each comparison on paired requests, Holm within its "
        "declared family."
    ]
    labels = m.get("labels", {})
    for metric, (words, better) in FIGURE_OF_MERIT.items():
        for method in ("paincontrol", "paincontrol_warp_start"):
            test = m.get("tests", {}).get(metric, {}).get(f"{method}_vs_warp")
            if method not in m["methods"] or metric not in m["methods"][method] or not test:
                continue
            verdict = "differs from" if test["p_holm"] < 0.05 else "is not distinguishable from"
            lines.append(
                f"- {words[0].upper() + words[1:]} ({better} is better): "
                f"{labels.get(method, method)} {_of(m['methods'][method], metric)}; against the "
                f"warp {_interval(test)}, Holm {_p(test['p_holm'])}: it {verdict} the warp."
            )
    lines += _components(m)
    lines += _au_guidance(m)
    lines += _motion(m)
    claim = m.get("au_claim", {})
    ours_claim = claim.get("methods", {}).get("paincontrol")
    if ours_claim and ours_claim["hard_minus_rest"]["estimate"] is not MISSING:
        hard = ours_claim["hard_minus_rest"]
        supported = "supports" if hard["ci_low"] > 0 else "does not support"
        lines.append(
            f"- The paper's hard AUs: AU4 and AU43 minus the other four pain AUs (excess error "
            f"over the AU reader's own error on the exact answer, in standard deviations of the "
            f"requests, beyond the reader's noise) = {_interval(hard)}, which {supported} the "
            f"claim that they are the hardest; hardest first: {', '.join(ours_claim['ranking'])} "
            "(`au_claim.methods.paincontrol`)."
        )
        warp = claim["methods"].get("warp")
        if warp and "verdict" in claim:
            lines.append(
                f"- The warp, beside it: {_interval(warp['hard_minus_rest'])}, hardest first "
                f"{', '.join(warp['ranking'])}; PainControl minus the warp "
                f"{_interval(claim['paincontrol_vs_warp'])}: {claim['verdict']['text']} "
                "(`au_claim.paincontrol_vs_warp`)."
            )
    slope = ours.get("pspi_slope")
    if slope is not None and slope is not MISSING:
        exact = m.get("transfer_slopes", {}).get("exact_answer", {}).get("PSPI", {})
        warp_slope = m["methods"].get("warp", {})
        lines.append(
            f"- Under-transfer: PSPI read against PSPI asked has slope "
            f"{_of(ours, 'pspi_slope')} for PainControl (1: full strength) and "
            f"{_of(warp_slope, 'pspi_slope')} for the warp (`methods.<method>.pspi_slope`); the "
            f"AU reader on the exact answers: {exact.get('estimate', MISSING):.2f} "
            "(`transfer_slopes.exact_answer.PSPI`)."
        )
    estimator = m.get("au_estimator", {})
    unreliable = estimator.get("unreliable_aus")
    if unreliable:
        lines.append(
            f"- The AU reader misses its goals on {', '.join(unreliable)} (ICC(2,1) on degraded "
            "test crops below 0.85, or error on the exact answers above 0.5, AU43 0.15; "
            "au_estimator.json): read their errors with care."
        )
    realism = m.get("realism", {})
    mine, known = realism.get("paincontrol", {}), realism.get("exact_answer", {})
    if "c2st_auc_face_features" in mine:
        lines.append(
            f"- Realism against the exact answers of the same requests: a classifier tells "
            f"PainControl's outputs from them with AUC {mine['c2st_auc_face_features']:.2f} in "
            f"learned face features (0.5: indistinguishable), "
            f"{mine['c2st_auc_au_estimator']:.2f} in AU readings; FD {mine['fd']:.2f}, where the "
            f"exact answers fed as a method score {known['fd']:.2f} (the floor; "
            "`realism.<method>`)."
        )
    return "\n".join(lines)


def _au_guidance(m: dict) -> list[str]:
    """AU guidance against unguided PainControl (``eval.json: au_guidance``)."""
    verdict = m.get("au_guidance")
    if not verdict:
        return []
    label = m.get("labels", {}).get("paincontrol_au_guided", "PainControl + AU guidance")
    parts = []
    for au, entry in verdict["aus"].items():
        if "difference" not in entry:
            parts.append(f"{au} {entry['reason']}")
            continue
        low, high = entry["relative_change_ci"]
        parts.append(
            f"{au} error against the exact answer {entry['unguided']:.3f} -> {entry['guided']:.3f}"
            f", {entry['relative_change']:+.0%} [95 % CI {low:+.0%}, {high:+.0%}], Holm "
            f"{_p(entry['difference']['p_holm'])} (the guide reader itself reads "
            f"{entry['guide_reader_guided']:.3f})"
        )
    top1, slope = verdict["identity_top1_gallery"], verdict["pspi_slope"]
    line = (
        f"- Beyond the paper, {label} against unguided PainControl (`au_guidance`): "
        + "; ".join(parts)
        + f". Identity top-1 {top1['paincontrol'][0]:.2f} -> {top1['paincontrol_au_guided'][0]:.2f}"
        f"; PSPI slope {slope['paincontrol'][0]:.2f} -> {slope['paincontrol_au_guided'][0]:.2f}"
    )
    realism = verdict.get("realism_c2st_auc")
    if realism:
        line += (
            f"; realism AUC {realism['paincontrol'][0]:.2f} -> "
            f"{realism['paincontrol_au_guided'][0]:.2f}"
        )
    goal = "meets" if verdict["goal_met"] else "does not meet"
    return [line + f". It {goal} the goal (both hard AUs cut by 30 % or more, nothing lost)."]


def _components(m: dict) -> list[str]:
    """One line per ablation tested against the full method (family ``components``), and one
    naming comparisons that could not be tested."""
    found: dict = {}
    for metric, tests in m.get("tests", {}).items():
        for name, test in tests.items():
            if test.get("family") == "components":
                found.setdefault(name.removesuffix("_vs_paincontrol"), []).append((metric, test))
    lines = []
    for method, tests in found.items():
        differs = [f"{FIGURE_OF_MERIT.get(metric, (metric,))[0]} {_interval(t)}"
                   for metric, t in tests if t["p_holm"] < 0.05]  # fmt: skip
        said = "; ".join(differs) if differs else "no endpoint differs after Holm"
        lines.append(f"- `{method}` minus PainControl (Holm over the components family): {said}.")
    failed = m.get("fits_failed", {})
    if failed.get("count"):
        named = ", ".join(f"{f['comparison']} on {f['endpoint']}" for f in failed["failures"])
        lines.append(f"- Not tested ({failed['count']}; `eval.json: fits_failed` says why): "
                     f"{named}.")  # fmt: skip
    return lines


def augment(reports_dir) -> str:
    m = _load(reports_dir, "augment.json")
    levels = sorted(m["claim"]["paincontrol_vs_real"], key=int)
    scarcest = levels[0]
    inference = m["inference"]
    lines = [
        f"- Primary detector: {m['primary_detector']}, {len(m['seeds'])} seeds per cell; real "
        f"pain people available: {m['n_pain_people_available']}; scored on "
        f"{m['n_test_people']} test people. Intervals and tests: {inference['method']}."
    ]
    who = "person" if scarcest == "1" else "people"
    for arm, words in COMPARISONS.items():
        gain = m["claim"].get(arm, {}).get(scarcest)
        if gain:
            lines.append(
                f"- AUC gain of {words}, with {scarcest} real pain {who}: {_interval(gain)}, "
                f"Holm {_p(gain['p_holm'])} ({gain['family']} family): {gain['verdict']} "
                f"(`claim.{arm}.{scarcest}`)."
            )
    lines += _tokenizer_note(reports_dir)
    if len(levels) < 2:
        return "\n".join(lines)
    scarce = m["claim"]["paincontrol_vs_real"][scarcest]
    most = m["claim"]["paincontrol_vs_real"][levels[-1]]
    lines.append(
        f"- With all {levels[-1]} pain people the PainControl gain is {_interval(most)}; "
        f"equivalence within +-{inference['equivalence_margin']} AUC: Holm TOST "
        f"{_p(most['p_tost_holm'])}: {most['verdict']} (`claim.paincontrol_vs_real.{levels[-1]}`)."
    )
    if scarce["verdict"] == "gain" and most["verdict"].startswith("equivalent"):
        lines.append(
            "- As in the paper, synthetic pain faces help when real pain data are scarce and "
            "make no difference beyond the margin when they are plentiful."
        )
    else:
        lines.append(
            f"- The paper's pattern (a gain when scarce, equivalence when plentiful) is not "
            f"shown: scarce {scarce['verdict']}, plentiful {most['verdict']}."
        )
    return "\n".join(lines)


def study(reports_dir) -> str:
    m = _load(reports_dir, "study.json")
    valid = m["validation"]
    ours = m["methods"]["paincontrol"]
    source = "simulated (no human ratings are bundled)" if m["simulated"] else "human raters"
    truth = f" (simulated: the simulator's true effect is {ours['effect_true']:g})"
    return (
        f"- Ratings: {m['n_ratings_analysed']:,} of {m['n_ratings']:,} analysed, from "
        f"the {m['n_raters'] - m['n_raters_excluded']} of {m['n_raters']} raters who passed "
        f"the attention checks; the raters are {source} (`n_ratings_analysed`).\n"
        f"- The analysis was validated on {valid['n_replications']} simulated panels in which "
        f"no condition differs: false-positive rate {_rate(valid['false_positive_rate_mc'])} "
        f"at nominal alpha {valid['alpha']} (Monte Carlo 95 % interval over panels; "
        "`validation.false_positive_rate_mc`).\n"
        + _effect_panels(valid)
        + f"- PainControl vs the dataset's own frames (the `real` condition: "
        f"{m.get('real_items', 'photographs')}, matched to the requested PSPI: mean "
        f"{m['pspi_by_condition']['real']['mean']:.1f} against "
        f"{m['pspi_by_condition']['paincontrol']['mean']:.1f}, `pspi_by_condition`): log-odds "
        f"of a higher rating {_interval(_effect(ours), 2)}{truth if m['simulated'] else ''} "
        "(`methods.paincontrol.effect`)."
    )


def _rate(entry: dict) -> str:
    return f"{entry['rate']:.3f} [{entry['mc_ci_low']:.3f}, {entry['mc_ci_high']:.3f}]"


def _effect_panels(valid: dict) -> str:
    """The second check: coverage of known non-null effects, and power, on effect panels."""
    effect = valid.get("effect_panels")
    if not effect:
        return ""
    return (
        f"- On {effect['n_replications']} panels with known effects (`power_effects`), the 95 % "
        f"intervals covered the truth in {_rate(effect['ci_coverage_mc'])} of comparisons "
        f"(nominal 0.95); power at those effects {_rate(effect['power_mc'])}.\n"
    )


def _effect(row: dict) -> dict:
    return {
        "estimate": row["effect_estimate"],
        "ci_low": row["effect_ci_low"],
        "ci_high": row["effect_ci_high"],
    }


RENDERERS = {
    "00_synthpain": synthpain,
    "01_landmarks": landmarks,
    "02_train_controlnet": train,
    "03_transfer": transfer,
    "04_au_identity": evaluate,
    "05_augmentation": augment,
    "06_realism_study": study,
}


def render(notebook: str, reports_dir) -> str:
    """The findings of ``notebook`` as Markdown, from the metrics under ``reports_dir``."""
    if notebook not in RENDERERS:
        raise KeyError(f"no findings for {notebook!r}; known: {sorted(RENDERERS)}")
    return "## Findings\n\n" + RENDERERS[notebook](reports_dir) + "\n"


def show(notebook: str, reports_dir):
    """Display the findings in a notebook (an IPython Markdown object)."""
    from IPython.display import Markdown

    return Markdown(render(notebook, reports_dir))
