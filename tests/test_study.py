"""The realism study: trial design, blinding, storage durability, the web app's security rules,
concurrent raters, and the analysis (Krippendorff's alpha, recovery of a simulated effect)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from study_fakes import IDENTITIES, METHODS, fake_stage

from paincontrol_lib.cli import main
from paincontrol_lib.config import REPO_ROOT
from paincontrol_lib.study.analysis import (
    analyse,
    krippendorff_alpha,
    load_ratings,
    retest_agreement,
)
from paincontrol_lib.study.app import create_app, make_server
from paincontrol_lib.study.design import (
    IMAGES,
    build_trial_set,
    load_design,
    load_key,
    ratings_db_path,
    stage_candidates,
)
from paincontrol_lib.study.simulate import simulate_ratings
from paincontrol_lib.study.store import Store, export_table

CONDITIONS = ("real", *METHODS)
SECRETS = (*METHODS, "no_identity", "no_landmarks", "transfer", "src_to", *IDENTITIES)


def _build(root, seed=0, **sizes):
    transfer, landmarks = fake_stage(root, slots_per_identity=3)
    options = {"items_per_method": 4, "repeats": 1, "attention_checks": 2, "n_raters": 4}
    options.update(sizes)
    trials_dir = root / "study"
    info = build_trial_set(stage_candidates(transfer, landmarks), trials_dir, seed=seed, **options)
    return trials_dir, info


@pytest.fixture
def invited(tmp_path):
    """(trials_dir, store, Flask test client, {label: token}) with raters A and B invited."""
    trials_dir, info = _build(tmp_path)
    _, trials = load_design(trials_dir)
    store = Store(ratings_db_path(trials_dir), info["design_id"])
    tokens = dict(store.invite(trials, ["A", "B"]))
    client = create_app(trials_dir, store).test_client()
    return trials_dir, store, client, tokens


@pytest.fixture
def study(invited):
    """:func:`invited` with both raters past the information page."""
    _, store, client, tokens = invited
    for token in tokens.values():
        response = client.post(f"/r/{token}/consent", data={"csrf": _csrf(store, token)})
        assert response.status_code == 303
    return invited


def _csrf(store, token: str) -> str:
    return store.csrf_token(store.rater(token))


def test_information_and_consent_page_comes_first(invited):
    """No image and no rating before the rater agrees; the agreement is stored with its time."""
    _, store, client, tokens = invited
    token = tokens["A"]
    page = client.get(f"/r/{token}").get_data(as_text=True)
    assert 'id="information"' in page and 'id="agree"' in page and "voluntary" in page
    assert 'id="stimulus"' not in page
    image_id = store.next_trial(store.rater(token)).image_id
    assert client.get(f"/r/{token}/image/{image_id}").status_code == 404
    form = {"csrf": _csrf(store, token), "position": "0", "realism": "3"}
    assert client.post(f"/r/{token}", data=form).status_code == 403
    assert client.post(f"/r/{token}/consent", data={"csrf": "forged"}).status_code == 403
    assert client.post(f"/r/{token}/consent", data={"csrf": _csrf(store, token)}).status_code == 303
    page = client.get(f"/r/{token}").get_data(as_text=True)
    assert 'id="stimulus"' in page and 'id="information"' not in page
    progress = store.progress().set_index("label")
    assert progress.loc["A", "consented_at"] and pd.isna(progress.loc["B", "consented_at"])


def _form(html: str) -> dict:
    """The hidden fields of a trial page."""
    return {
        "csrf": re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1),
        "position": re.search(r'name="position" value="(\d+)"', html).group(1),
    }


def _rate(client, token, realism, pain=None, **extra):
    page = client.get(f"/r/{token}").get_data(as_text=True)
    data = {**_form(page), "realism": str(realism), **extra}
    if pain is not None:
        data["pain"] = str(pain)
    return client.post(f"/r/{token}", data=data)


# ---- design and blinding -------------------------------------------------------------------


def test_design_is_balanced_randomised_and_keyed(tmp_path):
    trials_dir, info = _build(tmp_path)
    _, trials = load_design(trials_dir)
    key = load_key(trials_dir)
    items = key[key["kind"] == "item"]
    counts = items.groupby(["method", "identity"]).size()
    assert set(counts.index.get_level_values(0)) == set(CONDITIONS)
    assert (counts == 2).all() and len(counts) == len(CONDITIONS) * len(IDENTITIES)
    slots = {m: {o.split("/")[-1] for o in g["origin"]} for m, g in items.groupby("method")}
    assert slots["paincontrol"] == slots["warp"]  # methods drew the same (source, target) slots
    orders = []
    for slot, mine in trials.groupby("slot"):
        first = mine[mine["showing"] == 1]
        checks = key[(key["kind"] == "attention") & (key["rater_slot"] == slot)]
        assert set(first["image_id"]) == set(items["image_id"]) | set(checks["image_id"])
        again = mine[mine["showing"] == 2].merge(key, on="image_id")
        assert sorted(again["method"]) == sorted(CONDITIONS)  # one repeat per condition
        position = mine.set_index(["image_id", "showing"])["position"]
        for image_id in again["image_id"]:
            assert position[(image_id, 2)] > position[(image_id, 1)]
        orders.append(tuple(mine.sort_values("position")["image_id"]))
    assert len(set(orders)) == len(orders) and info["trials_per_rater"] == len(orders[0])
    assert set(key.loc[key["kind"] == "attention", "expected"]) <= {1, 2, 3, 4, 5}


def test_real_items_show_the_expressions_the_methods_were_asked_for(tmp_path):
    """The real condition is matched to the requested PSPI: with frames at every level the
    conditions' PSPI distributions are equal; where the target has no frame at a level, another
    test person's closest frame is taken rather than a neutral one of the target."""
    import pandas as pd

    from paincontrol_lib.study.design import _match_real, condition_pspi

    trials_dir, _ = _build(tmp_path)
    key = load_key(trials_dir)
    pspi = condition_pspi(key)
    assert pspi["real"] == pspi["paincontrol"] == pspi["warp"]
    items = key[key["kind"] == "item"]
    for condition in ("paincontrol", "warp"):
        assert sorted(items.loc[items["method"] == "real", "pspi"]) == sorted(
            items.loc[items["method"] == condition, "pspi"]
        )
    requests = pd.DataFrame({"identity": ["a", "a", "b"], "pspi": [12.0, 0.0, 3.0]})
    real = pd.DataFrame({"identity": ["a", "a", "a", "b", "b"],
                         "pspi": [0.0, 1.0, 2.0, 3.0, 11.0]})  # fmt: skip
    chosen = _match_real(requests, real, np.random.default_rng(0))
    # a's 12 takes b's 11 (a has nothing above 2), a's 0 its own 0, b's 3 its own 3
    assert sorted(chosen["pspi"]) == [0.0, 3.0, 11.0]
    with pytest.raises(ValueError, match="too few"):
        _match_real(requests, real.head(2), np.random.default_rng(0))


def test_images_are_identical_in_format_and_carry_no_method(tmp_path):
    trials_dir, info = _build(tmp_path)
    files = sorted((trials_dir / IMAGES).iterdir())
    assert len(files) == len(load_key(trials_dir))
    for path in files:
        assert re.fullmatch(r"[0-9a-f]{16}\.png", path.name)
        data = path.read_bytes()
        assert not any(word.encode() in data.lower() for word in SECRETS), path
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))
            assert not image.info, image.info  # no text chunks, gamma, dpi ...
    served = (trials_dir / "design.json").read_text() + pd.read_parquet(
        trials_dir / "trials.parquet"
    ).to_csv()
    assert not any(word in served for word in SECRETS)


def test_seeded_build_is_reproducible_and_unseeded_ids_are_fresh(tmp_path):
    keys = [load_key(_build(tmp_path / name, seed=seed)[0]) for name, seed in
            (("a", 3), ("b", 3), ("c", None))]  # fmt: skip
    assert keys[0]["image_id"].tolist() == keys[1]["image_id"].tolist()
    assert not set(keys[0]["image_id"]) & set(keys[2]["image_id"])


def test_bad_designs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="multiple of the 2 target identities"):
        _build(tmp_path / "a", items_per_method=3)
    with pytest.raises(ValueError, match="outputs made by every method, 4 needed"):
        _build(tmp_path / "b", items_per_method=8)
    with pytest.raises(ValueError, match="n_raters must be an integer >= 1"):
        _build(tmp_path / "c", n_raters=0)
    trials_dir, _ = _build(tmp_path / "d")
    ratings_db_path(trials_dir).write_bytes(b"")
    with pytest.raises(ValueError, match="would orphan them"):
        _build(tmp_path / "d")


# ---- the web app ----------------------------------------------------------------------------


def test_pages_differ_only_in_opaque_fields(study):
    """Walk a whole rater session: every page, image URL and header is free of method names,
    and pages are identical once ids, positions, counts and nonces are blanked."""
    trials_dir, store, client, tokens = study
    token = tokens["A"]
    shapes = set()
    for _ in range(store.next_trial(store.rater(token)).n_total):
        response = client.get(f"/r/{token}")
        html = response.get_data(as_text=True)
        src = re.search(r'<img id="stimulus" src="([^"]+)"', html).group(1)
        image = client.get(src)
        assert image.status_code == 200 and image.mimetype == "image/png"
        assert not {"Last-Modified", "ETag", "Content-Disposition"} & set(image.headers.keys())
        text = html + src + str(response.headers) + str(image.headers)
        assert not any(word in text for word in SECRETS)
        blank = re.sub(r'name="csrf" value="[0-9a-f]+"', "", html)
        shapes.add(re.sub(r'[0-9a-f]{16}|nonce="[^"]+"|value="\d+"|Image \d+', "#", blank))
        assert _rate(client, token, 3).status_code == 303
    assert len(shapes) == 1
    finished = client.get(f"/r/{token}").get_data(as_text=True)
    assert "All images are rated" in finished and "<img" not in finished
    n_stored = len(store.ratings())
    reused = client.post(f"/r/{token}", data={"csrf": store.csrf_token(store.rater(token)),
                                             "position": "0", "realism": "2"})  # fmt: skip
    assert reused.status_code == 409 and len(store.ratings()) == n_stored


def test_forged_token_gets_no_data(study):
    _, store, client, tokens = study
    page = client.get(f"/r/{tokens['A']}").get_data(as_text=True)
    image_url = re.search(r'src="(/r/[^"]+)"', page).group(1)
    image_id = image_url.rsplit("/", 1)[1]
    forged = tokens["A"][:-4] + ("AAAA" if not tokens["A"].endswith("AAAA") else "BBBB")
    for url in (f"/r/{forged}", f"/r/{forged}/image/{image_id}", "/r/x", f"/r/{'a' * 43}"):
        response = client.get(url)
        body = response.get_data(as_text=True)
        assert response.status_code == 404 and "not valid" in body
        assert "<img" not in body and "csrf" not in body and image_id not in body
    response = client.post(f"/r/{forged}", data={**_form(page), "realism": "3"})
    assert response.status_code == 404
    assert store.ratings().empty


def test_rater_cannot_read_or_change_another_raters_answers(study):
    trials_dir, store, client, tokens = study
    key = load_key(trials_dir)
    b_slot = store.progress().set_index("label").loc["B", "slot"]
    b_check = key[(key["kind"] == "attention") & (key["rater_slot"] == b_slot)]["image_id"].iloc[0]
    assert client.get(f"/r/{tokens['B']}/image/{b_check}").status_code == 200
    assert client.get(f"/r/{tokens['A']}/image/{b_check}").status_code == 404
    a_form = _form(client.get(f"/r/{tokens['A']}").get_data(as_text=True))
    response = client.post(f"/r/{tokens['B']}", data={**a_form, "realism": "5"})
    assert response.status_code == 403 and "does not belong" in response.get_data(as_text=True)
    assert store.ratings().empty
    assert _rate(client, tokens["B"], 2).status_code == 303
    page = client.get(f"/r/{tokens['A']}").get_data(as_text=True)
    assert "Image 1 of" in page  # A sees nothing of B's progress or answers


def test_invalid_and_duplicate_submissions_are_rejected_clearly(study):
    _, store, client, tokens = study
    token = tokens["A"]
    cases = [
        ({"realism": "0"}, 400, "realism must be a whole number from 1 to 5"),
        ({"realism": "6"}, 400, "realism must be a whole number from 1 to 5"),
        ({"realism": "3.5"}, 400, "realism must be a whole number from 1 to 5"),
        ({}, 400, "choose a realism rating"),
        ({"realism": "3", "pain": "11"}, 400, "pain intensity must be a whole number from 0"),
        ({"realism": "3", "method": "warp"}, 400, "unexpected fields: method"),
        ({"realism": "3", "position": "7"}, 409, "not the trial on your screen"),
        ({"realism": "3", "position": "-1"}, 400, "position must be a whole number"),
    ]
    for extra, status, message in cases:
        form = _form(client.get(f"/r/{token}").get_data(as_text=True))
        response = client.post(f"/r/{token}", data={**form, **extra})
        assert response.status_code == status, (extra, response.status_code)
        assert message in response.get_data(as_text=True), extra
    assert store.ratings().empty
    form = _form(client.get(f"/r/{token}").get_data(as_text=True))
    assert client.post(f"/r/{token}", data={**form, "realism": "4", "pain": "6"}).status_code == 303
    again = client.post(f"/r/{token}", data={**form, "realism": "1"})
    assert again.status_code == 409 and "cannot be changed" in again.get_data(as_text=True)
    stored = store.ratings()
    assert stored[["position", "realism", "pain"]].values.tolist() == [[0, 4, 6]]
    cross = client.post(f"/r/{token}", data={**_form(client.get(f"/r/{token}").get_data(
        as_text=True)), "realism": "2"}, headers={"Origin": "http://evil.example"})  # fmt: skip
    assert cross.status_code == 403 and len(store.ratings()) == 1


def test_progress_resumes_from_the_database(study):
    trials_dir, store, client, tokens = study
    for value in (1, 2, 3):
        assert _rate(client, tokens["A"], value).status_code == 303
    fresh = create_app(trials_dir, Store(store.path)).test_client()  # a restarted server
    page = fresh.get(f"/r/{tokens['A']}").get_data(as_text=True)
    assert "Image 4 of" in page and 'value="3" max=' in page
    progress = store.progress().set_index("label")
    assert progress.loc["A", "done"] == 3 and progress.loc["B", "done"] == 0


# ---- durability and concurrency against a real server -----------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(_NoRedirect)


def _http_rate(base, token, realism) -> int:
    """GET the trial page and POST an answer over HTTP; the status of the POST."""
    with OPENER.open(f"{base}/r/{token}", timeout=30) as response:
        form = _form(response.read().decode())
    body = urllib.parse.urlencode({**form, "realism": realism}).encode()
    try:
        with OPENER.open(f"{base}/r/{token}", data=body, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:  # 303 (acknowledged) and 4xx land here
        return exc.code


def test_killed_server_loses_no_acknowledged_rating(study):
    trials_dir, store, _, tokens = study
    server = subprocess.Popen(
        [sys.executable, "-m", "paincontrol_lib.cli", "study", "serve", "--trials",
         str(trials_dir), "--port", "0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = (server.stdout.readline() for _ in range(50))  # warnings may come first
        found = next(m for line in lines if (m := re.search(r"on (http://127[.0-9]+:\d+)", line)))
        base = found.group(1)
        acknowledged = []
        for i in range(6):
            token = tokens["A" if i % 2 else "B"]
            if _http_rate(base, token, 1 + i % 5) == 303:
                acknowledged.append(("A" if i % 2 else "B", 1 + i % 5))
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert len(acknowledged) == 6
    stored = Store(store.path).ratings()
    assert sorted(zip(stored["label"], stored["realism"], strict=True)) == sorted(acknowledged)


def test_concurrent_raters_and_racing_duplicates(tmp_path):
    trials_dir, info = _build(tmp_path, n_raters=6)
    _, trials = load_design(trials_dir)
    store = Store(ratings_db_path(trials_dir), info["design_id"])
    tokens = [t for _, t in store.invite(trials, [f"r{i}" for i in range(6)])]
    for token in tokens:
        store.consent(store.rater(token))
    server = make_server(create_app(trials_dir, store), port=0, threads=8)
    base = f"http://127.0.0.1:{server.effective_port}"
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        n_trials = info["trials_per_rater"]
        start = threading.Barrier(len(tokens))
        statuses: dict[str, list[int]] = {}

        def rater(token, value):
            start.wait()
            statuses[token] = [_http_rate(base, token, value) for _ in range(n_trials)]

        workers = [threading.Thread(target=rater, args=(t, 1 + i % 5))
                   for i, t in enumerate(tokens)]  # fmt: skip
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert all(s == [303] * n_trials for s in statuses.values()) and len(statuses) == 6
    finally:
        server.close()
    stored = store.ratings()
    assert len(stored) == 6 * n_trials
    for i in range(len(tokens)):
        mine = stored[stored["label"] == f"r{i}"]
        assert sorted(mine["position"]) == list(range(n_trials))
        assert set(mine["realism"]) == {1 + i % 5}


def test_racing_duplicate_posts_keep_exactly_one(study):
    trials_dir, store, _, tokens = study
    server = make_server(create_app(trials_dir, store), port=0, threads=8)
    base = f"http://127.0.0.1:{server.effective_port}"
    threading.Thread(target=server.run, daemon=True).start()
    try:
        with OPENER.open(f"{base}/r/{tokens['A']}", timeout=30) as response:
            form = _form(response.read().decode())
        start, codes = threading.Barrier(6), []

        def post(value):
            body = urllib.parse.urlencode({**form, "realism": value}).encode()
            start.wait()
            try:
                codes.append(OPENER.open(f"{base}/r/{tokens['A']}", data=body, timeout=30).status)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)

        threads = [threading.Thread(target=post, args=(1 + i % 5,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        server.close()
    assert sorted(codes) == [303] + [409] * 5
    assert len(store.ratings()) == 1


# ---- CLI ------------------------------------------------------------------------------------


def test_cli_build_invite_progress_export(tmp_path, capsys):
    transfer, landmarks = fake_stage(tmp_path, slots_per_identity=6)
    out = tmp_path / "study"
    common = ["--trials", str(out)]
    assert main(["study", "build", "--out", str(out), "--transfer", str(transfer),
                 "--landmarks", str(landmarks), "--raters", "2"]) == 0  # fmt: skip
    assert main(["study", "invite", *common, "--label", "ann", "bob"]) == 0
    links = re.findall(r"http://127\.0\.0\.1:8765/r/(\S+)", capsys.readouterr().out)
    assert len(links) == 2
    assert main(["study", "invite", *common, "--n", "1"]) == 2
    assert "0 rater slots left" in capsys.readouterr().err
    store = Store(ratings_db_path(out))
    client = create_app(out, store).test_client()
    consent = client.post(f"/r/{links[0]}/consent", data={"csrf": _csrf(store, links[0])})
    assert consent.status_code == 303
    assert _rate(client, links[0], 5, pain=2).status_code == 303
    assert main(["study", "progress", *common]) == 0
    report = capsys.readouterr().out
    assert re.search(r"ann\s+0\s.*\s1\s+" + str(store.next_trial(store.rater(links[0])).n_total),
                     report) and "0 of 2 raters finished" in report  # fmt: skip
    assert main(["study", "export", *common, "--out", str(tmp_path / "r.csv")]) == 0
    table = load_ratings(tmp_path / "r.csv")
    assert len(table) == 1 and table.loc[0, "label"] == "ann" and table.loc[0, "realism"] == 5
    assert table.loc[0, "method"] in CONDITIONS or table.loc[0, "kind"] == "attention"
    assert main(["study", "progress", "--trials", str(tmp_path / "nope")]) == 2


# ---- analysis -------------------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers,
# 12 units, values 1-5 with gaps; published alphas nominal .743, ordinal .815, interval .849.
KRIPPENDORFF_2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
    [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
]).T  # fmt: skip


@pytest.mark.parametrize("level,expected", [("nominal", 0.743), ("ordinal", 0.815),
                                            ("interval", 0.849)])  # fmt: skip
def test_krippendorff_alpha_matches_the_published_example(level, expected):
    assert krippendorff_alpha(KRIPPENDORFF_2011, level) == pytest.approx(expected, abs=5e-4)


def test_krippendorff_alpha_extremes_and_errors():
    assert krippendorff_alpha([[1, 1], [2, 2], [5, 5]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[1, 5], [5, 1]]) < 0  # systematic disagreement
    with pytest.raises(ValueError, match="two different pairable values"):
        krippendorff_alpha([[3, 3], [3, np.nan]])
    with pytest.raises(ValueError, match="level must be"):
        krippendorff_alpha(KRIPPENDORFF_2011, "ratio")


def test_retest_agreement_on_known_pairs():
    rows = [("r", "a", 1, 4), ("r", "a", 2, 4), ("r", "b", 1, 2), ("r", "b", 2, 3),
            ("s", "a", 1, 5), ("s", "a", 2, 1), ("s", "c", 1, 3)]  # fmt: skip
    items = pd.DataFrame(rows, columns=["rater", "image_id", "showing", "realism"])
    result = retest_agreement(items)
    assert result["n_pairs"] == 3
    assert result["exact_agreement"] == pytest.approx(1 / 3)
    assert result["within_one"] == pytest.approx(2 / 3)


EFFECTS = {"real": 0.0, "paincontrol": -1.0, "warp": -2.0, "no_landmarks": -3.0}


def _synthetic_design(n_items=12, n_raters=20, checks=3, repeats=2, seed=0):
    """Trials and key of a crossed design without images (what the simulator reads)."""
    rng = np.random.default_rng(seed)
    key = pd.DataFrame([{"image_id": f"{m}{i:02d}", "kind": "item", "method": m,
                         "identity": f"P{i % 3}", "pspi": float(i % 8), "expected": np.nan}
                        for m in EFFECTS for i in range(n_items)])  # fmt: skip
    rows = []
    for slot in range(n_raters):
        mine = [{"image_id": f"check{slot}-{j}", "kind": "attention", "method": None,
                 "identity": None, "pspi": np.nan, "expected": float(1 + (slot + j) % 5)}
                for j in range(checks)]  # fmt: skip
        key = pd.concat([key, pd.DataFrame(mine)], ignore_index=True)
        order = [(i, 1) for i in rng.permutation([*key["image_id"][: len(EFFECTS) * n_items],
                                                  *(m["image_id"] for m in mine)])]  # fmt: skip
        order += [(f"{m}{i:02d}", 2) for m in EFFECTS for i in range(repeats)]
        rows += [(slot, p, i, s) for p, (i, s) in enumerate(order)]
    return pd.DataFrame(rows, columns=["slot", "position", "image_id", "showing"]), key


def _simulated(effects, seed=0):
    trials, key = _synthetic_design()
    return simulate_ratings(trials, key, effects=effects, thresholds=[-3.0, -1.8, -0.6, 0.8],
                            rater_sd=0.7, item_sd=0.5, inattentive_fraction=0.15, pain_sd=1.5,
                            seed=seed)  # fmt: skip


@pytest.fixture(scope="module")
def simulated_result():
    """One simulated study (seed 1; each 95 % CI covers its truth in ~95 % of seeds)."""
    ratings = _simulated(EFFECTS, seed=1)
    return ratings, analyse(ratings, max_attention_failures=0, n_bootstrap=300, seed=0,
                            true_effects=ratings.attrs["true_effects"])  # fmt: skip


def test_analysis_recovers_the_simulated_effects(simulated_result):
    ratings, result = simulated_result
    metrics = result["metrics"]
    assert metrics["simulated"] is True and metrics["n_raters"] == 20
    excluded = set(result["attention"].loc[result["attention"]["excluded"], "rater"])
    assert excluded == set(ratings.loc[ratings["sim_inattentive"], "rater"]) and len(excluded) == 3
    for method, true in EFFECTS.items():
        m = metrics["methods"][method]
        assert m["effect_true"] == true
        if method != "real":
            assert m["effect_ci_low"] < true < m["effect_ci_high"], (method, m)
            assert abs(m["effect_estimate"] - true) < 0.5
            assert m["effect_ci_low"] > -5 and m["effect_ci_high"] < 0
    means = [metrics["methods"][m]["mean_rating"] for m in EFFECTS]
    assert means == sorted(means, reverse=True)  # the order the simulator put in
    assert metrics["contrasts"]["paincontrol_vs_warp"]["ci_low"] > 0
    assert 0.1 < metrics["reliability"] < 0.9 and metrics["test_retest"]["n_pairs"] == 17 * 8
    for m in EFFECTS:
        assert metrics["methods"][m]["pain_spearman"] > 0.5


def test_analysis_detects_a_changed_effect(simulated_result):
    """Had the simulator put in another effect, the recovered one would not match it."""
    _, result = simulated_result
    shifted = dict(EFFECTS, paincontrol=EFFECTS["paincontrol"] + 1.0)
    m = result["metrics"]["methods"]["paincontrol"]
    assert not m["effect_ci_low"] < shifted["paincontrol"] < m["effect_ci_high"]
    weaker = _simulated(dict(EFFECTS, paincontrol=-2.0), seed=1)
    again = analyse(weaker, max_attention_failures=0, n_bootstrap=50, seed=0)
    moved = again["metrics"]["methods"]["paincontrol"]
    assert moved["effect_ci_low"] < -2.0 < moved["effect_ci_high"]
    assert moved["effect_estimate"] < m["effect_estimate"] - 0.5


SIMULATOR = {"thresholds": [-3.0, -1.8, -0.6, 0.8], "rater_sd": 0.7, "item_sd": 0.5,
             "inattentive_fraction": 0.15, "pain_sd": 1.5}  # fmt: skip


def test_instrument_validation_null_panels_and_power():
    """Null panels: few false positives. Panels with the effects: power is high and the CIs
    cover the truth. Panels are independent (each its own stream), numbered from ``first``."""
    from paincontrol_lib.study.validation import replicate, summarise

    trials, key = _synthetic_design()
    null, failures = replicate(trials, key, SIMULATOR, dict.fromkeys(EFFECTS, 0.0), 6, seed=0,
                               max_attention_failures=0)  # fmt: skip
    assert failures == [] and len(null) == 6 * 3 and null["replication"].nunique() == 6
    assert null.groupby("replication")["estimate"].first().nunique() == 6  # not one panel 6x
    report = summarise(null)
    assert report["false_positive_rate"] <= 0.2 and report["power"] is None
    fpr = report["false_positive_rate_mc"]
    assert fpr["mc_ci_low"] <= fpr["rate"] <= fpr["mc_ci_high"] and fpr["n_panels"] == 6
    effect, _ = replicate(trials, key, SIMULATOR, EFFECTS, 4, seed=0, max_attention_failures=0,
                          first=6)  # fmt: skip
    assert set(effect["replication"]) == {6, 7, 8, 9}
    report = summarise(effect)
    assert report["false_positive_rate"] is None and report["power"] >= 0.9
    assert report["ci_coverage"] >= 0.75 and report["ci_coverage_mc"]["n"] == 4 * 3


def test_replications_split_over_workers_are_the_same_panels():
    """Workers change the time, not the panels: each replication is its own seeded stream."""
    from paincontrol_lib.study.validation import replicate

    trials, key = _synthetic_design()
    args = (trials, key, SIMULATOR, EFFECTS, 3)
    alone, _ = replicate(*args, seed=0, max_attention_failures=0, first=2)
    split, _ = replicate(*args, seed=0, max_attention_failures=0, first=2, workers=2)
    pd.testing.assert_frame_equal(alone, split)
    assert list(split["replication"].unique()) == [2, 3, 4]


def test_the_ordinal_model_fits_exactly_as_statsmodels_logit_does():
    """The fast logistic cdf/pdf are scipy's logistic to the bit, so the fit is statsmodels'
    own: same coefficients and standard errors on the same ratings."""
    from scipy.stats import logistic
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    from paincontrol_lib.study.analysis import _logit_ordered_model, ordinal_model
    from paincontrol_lib.study.design import REAL

    x = np.array([-np.inf, -800.0, -30.0, -1.5, 0.0, 0.25, 7.0, 40.0, 800.0, np.inf])
    fast = _logit_ordered_model()
    assert np.array_equal(fast.cdf(None, x), logistic.cdf(x))
    assert np.allclose(fast.pdf(None, x), logistic.pdf(x), rtol=1e-15, atol=0)
    ratings = _simulated(EFFECTS, seed=3)
    items = ratings[(ratings["kind"] == "item") & (ratings["showing"] == 1)]
    ours = ordinal_model(items)
    data = items.assign(realism=items["realism"].astype(int))
    formula = f"realism ~ C(method, Treatment({REAL!r})) + C(rater)"
    plain = OrderedModel.from_formula(formula, data, distr="logit").fit(
        method="bfgs", maxiter=5000, disp=False, cov_type="cluster",
        cov_kwds={"groups": pd.factorize(data["image_id"])[0]})  # fmt: skip
    assert np.allclose(ours.params, plain.params, rtol=1e-10)
    assert np.allclose(ours.bse, plain.bse, rtol=1e-6)


def test_monte_carlo_interval_counts_panels_not_comparisons():
    """Comparisons of one panel share its raters: when they reject together the interval must
    be as wide as the panels' count allows, not the comparisons'."""
    from paincontrol_lib.study.validation import panel_rate

    panels = np.repeat(np.arange(40), 6)
    together = np.repeat(np.arange(40) < 2, 6)  # 2 of 40 panels reject all 6 comparisons
    apart = np.zeros(240, bool)
    apart[[0, 7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77]] = True  # 12 of 240, spread out
    joint, spread = panel_rate(together, panels), panel_rate(apart, panels)
    assert joint["rate"] == spread["rate"] == 0.05
    assert joint["design_effect"] > 4 and spread["design_effect"] == 1.0
    assert joint["mc_half_width"] > 1.8 * spread["mc_half_width"]
    from paincontrol_lib.stats import wilson_interval

    assert (spread["mc_ci_low"], spread["mc_ci_high"]) == pytest.approx(
        wilson_interval(12, 240)[1:]
    )


def test_unconverged_ordinal_fits_are_refused_and_failed_panels_named(monkeypatch):
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    from paincontrol_lib.stats import FitError
    from paincontrol_lib.study import validation
    from paincontrol_lib.study.analysis import ordinal_model

    ratings = _simulated(EFFECTS, seed=2)
    items = ratings[(ratings["kind"] == "item") & (ratings["showing"] == 1)]
    fit = OrderedModel.fit

    def one_step(self, *args, **kwargs):
        return fit(self, *args, **(kwargs | {"maxiter": 1}))

    with monkeypatch.context() as patch:
        patch.setattr(OrderedModel, "fit", one_step)
        with pytest.raises(FitError, match="BFGS did not converge"):
            ordinal_model(items)
    real_model, calls = validation.ordinal_model, []

    def fails_on_panel_1(first, reference):  # the second panel's fit does not converge
        calls.append(1)
        if len(calls) == 2:
            raise FitError("ordinal model: BFGS did not converge (test)")
        return real_model(first, reference)

    monkeypatch.setattr(validation, "ordinal_model", fails_on_panel_1)
    trials, key = _synthetic_design()
    rows, failures = validation.replicate(trials, key, SIMULATOR, EFFECTS, 3, seed=0,
                                          max_attention_failures=0)  # fmt: skip
    assert failures == [{"replication": 1, "reason": "ordinal model: BFGS did not converge "
                         "(test)"}] and set(rows["replication"]) == {0, 2}  # fmt: skip


def test_power_table_runs_larger_panels_from_the_same_trials():
    from paincontrol_lib.study.validation import larger_panel, power_table

    trials, key = _synthetic_design(n_raters=4)
    bigger = larger_panel(trials, 8)
    assert bigger["slot"].nunique() == 8 and len(bigger) == 2 * len(trials)
    with pytest.raises(ValueError, match="not a multiple"):
        larger_panel(trials, 6)
    rows, failures = power_table(trials, key, SIMULATOR, list(EFFECTS),
                                 {"n_panels": 2, "effect_sizes": [-2.0], "panel_sizes": [4, 8]},
                                 seed=0, max_attention_failures=0)  # fmt: skip
    assert failures == [] and [r["panel_size"] for r in rows] == [4, 8]
    assert all(r["power"]["n"] == 2 * 3 and r["n_panels"] == 2 for r in rows)


def test_bad_ratings_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="paincontrol study export"):
        load_ratings(tmp_path / "missing.csv")
    pd.DataFrame({"rater": [1], "realism": [3]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(ValueError, match="not a study export"):
        load_ratings(tmp_path / "x.csv")
    ratings = _simulated(EFFECTS).drop(columns=["simulated", "sim_inattentive"])
    ratings.loc[0, "realism"] = 9
    ratings.to_csv(tmp_path / "y.csv", index=False)
    with pytest.raises(ValueError, match="1 realism ratings outside 1-5"):
        load_ratings(tmp_path / "y.csv")


def test_export_joins_the_key(study):
    trials_dir, store, client, tokens = study
    assert _rate(client, tokens["A"], 4, pain=3).status_code == 303
    table = export_table(store, trials_dir)
    assert table[["label", "realism", "pain"]].values.tolist() == [["A", 4, 3]]
    assert table.loc[0, "kind"] in ("item", "attention") and "method" in table
