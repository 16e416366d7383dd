"""The rating web app (Flask, served by waitress): an information and consent page first, then
one image per trial, a 1-5 realism scale and an optional 0-10 pain intensity, keys 1-5 and
Enter, a progress bar, resume from the database.

A rater knows only their invitation link ``/r/<token>``. Pages and image URLs carry opaque ids
and positions, never a method; images are served only to the rater they were assigned to, as
bare bytes (no file name, date or ETag). Every field is validated on the server; forms carry a
per-rater HMAC token and cross-site posts are refused; a rating is acknowledged (303 to the next
trial) only after its transaction is durable. This module never reads the trial set's key.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from flask import Flask, Response, abort, g, redirect, render_template_string, request

from paincontrol_lib.study.design import ID_HEX, IMAGES, load_design
from paincontrol_lib.study.store import RatingRejected, Store

REALISM = {1: "clearly artificial", 2: "probably artificial", 3: "cannot tell",
           4: "probably a real photo", 5: "clearly a real photo"}  # fmt: skip
FIELDS = {"csrf", "position", "realism", "pain"}
SECONDS_PER_TRIAL = 6  # for the time estimate on the information page
IMAGE_ID = re.compile(rf"[0-9a-f]{{{ID_HEX}}}")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Face image rating</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="{{ nonce }}">
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 1rem auto; padding: 0 1rem; }
progress { width: 100%; height: 1rem; }
#stimulus { display: block; width: 320px; height: 320px; margin: 1rem auto; }
fieldset { border: 1px solid #ccc; margin: 0.6rem 0; }
label { display: inline-block; margin: 0.2rem 0.6rem 0.2rem 0; cursor: pointer; }
.message { background: #fee; border: 1px solid #c66; padding: 0.6rem; }
button { font-size: 1.1rem; padding: 0.4rem 1.2rem; }
</style></head><body><main>
{% if message %}<p class="message" id="message">{{ message }}</p>{% endif %}
{% if consent %}
<h1 id="information">Rating face images: information</h1>
<p>You are invited to rate how realistic face images look. Some are photographs or renderings
of faces, some were made or changed by a computer program that puts facial expressions of pain
on faces. The study compares these methods; it does not assess you.</p>
<ul>
<li>You will see {{ n_total }} images, one at a time, and rate each from 1 (clearly artificial)
to 5 (clearly a real photo); rating the pain shown is optional. It takes about
{{ minutes }} minutes. Some images show faces in pain.</li>
<li>Taking part is voluntary. You can stop at any time by closing the page, without giving a
reason; your link lets you continue later.</li>
<li>Stored: your answers and their times, under the label the researcher gave your link. No
name, e-mail, IP address or browser data is stored. Only the research team sees the answers,
which are reported in aggregate.</li>
<li>Questions, or to withdraw your answers: contact the researcher who sent you the link.</li>
</ul>
<form method="post" action="{{ consent_url }}" id="consent">
<input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit" id="agree">I have read this and agree to take part</button>
</form>
{% elif trial %}
<progress id="progress" value="{{ trial.n_done }}" max="{{ trial.n_total }}"></progress>
<p id="count">Image {{ trial.n_done + 1 }} of {{ trial.n_total }}</p>
<img id="stimulus" src="{{ image_url }}" alt="face to rate">
<form method="post" id="rate" autocomplete="off">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="position" value="{{ trial.position }}">
<fieldset><legend>How realistic is this face? (keys 1-5)</legend>
{% for value, text in realism.items() %}<label><input type="radio" name="realism"
 id="realism{{ value }}" value="{{ value }}" required> {{ value }} {{ text }}</label>{% endfor %}
</fieldset>
<fieldset><legend>Pain intensity shown (optional): 0 none to 10 worst imaginable</legend>
{% for value in range(11) %}<label><input type="radio" name="pain" id="pain{{ value }}"
 value="{{ value }}"> {{ value }}</label>{% endfor %}
</fieldset>
<p>Some images are attention checks: do what they say.</p>
<button type="submit" id="next">Save and next (Enter)</button>
</form>
<script nonce="{{ nonce }}">
const form = document.getElementById("rate");
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  if (event.key >= "1" && event.key <= "5") {
    document.getElementById("realism" + event.key).checked = true;
    event.preventDefault();
  } else if (event.key === "Enter") {
    event.preventDefault();
    form.requestSubmit();
  }
});
form.addEventListener("submit", () => { document.getElementById("next").disabled = true; });
</script>
{% elif done %}
<progress id="progress" value="1" max="1"></progress>
<p id="finished">All images are rated. Thank you!</p>
{% endif %}
</main></body></html>
"""


def _page(status: int = 200, **context) -> Response:
    html = render_template_string(PAGE, realism=REALISM, nonce=g.nonce, **context)
    return Response(html, status=status, mimetype="text/html")


def _whole(value: str | None, low: int, high: int, name: str) -> int:
    if value is None or not re.fullmatch(r"[0-9]{1,3}", value) or not low <= int(value) <= high:
        raise RatingRejected(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def create_app(trials_dir, store: Store) -> Flask:
    """The app for the trial set in ``trials_dir``, with ratings in ``store``."""
    info, _ = load_design(trials_dir)
    if store.design_id != info["design_id"]:
        raise ValueError(f"{store.path} was made for another trial set than {trials_dir}")
    images = Path(trials_dir) / IMAGES
    app = Flask(__name__)
    _add_page_security(app)
    _add_rater_routes(app, store, images)
    return app


def _add_page_security(app: Flask) -> None:
    """A fresh script/style nonce per request, strict headers on every response, and the
    error pages (which say nothing about what exists)."""

    @app.before_request
    def _nonce():
        g.nonce = secrets.token_urlsafe(16)

    @app.after_request
    def _headers(response):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "same-origin"  # the token never goes elsewhere
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; img-src 'self'; style-src 'nonce-{g.nonce}'; "
            f"script-src 'nonce-{g.nonce}'; form-action 'self'; frame-ancestors 'none'"
        )
        return response

    @app.errorhandler(404)
    def _not_found(_):
        return _page(404, message="This link is not valid.")

    @app.errorhandler(405)
    def _not_allowed(_):
        return _page(405, message="Not allowed.")


def _add_rater_routes(app: Flask, store: Store, images: Path) -> None:
    """A rater's pages: the next trial, the rating form's target and the trial images."""

    def rater_or_404(token):
        rater = store.rater(token)
        if rater is None:
            abort(404)
        return rater

    def trial_page(token, rater, message=None, status=200):
        trial = store.next_trial(rater)
        if not store.consented(rater):  # the first screen: information and consent
            total = trial.n_total if trial else 0
            return _page(status, consent=True, message=message, csrf=store.csrf_token(rater),
                         consent_url=f"/r/{token}/consent", n_total=total,
                         minutes=max(1, round(total * SECONDS_PER_TRIAL / 60)))  # fmt: skip
        if trial is None:
            return _page(status, done=True, message=message)
        return _page(status, trial=trial, message=message, csrf=store.csrf_token(rater),
                     image_url=f"/r/{token}/image/{trial.image_id}")  # fmt: skip

    @app.get("/r/<token>")
    def show(token):
        return trial_page(token, rater_or_404(token))

    @app.post("/r/<token>")
    def rate(token):
        rater = rater_or_404(token)
        if _from_another_site():
            return _page(403, message="Refused: the form was sent from another site.")
        csrf = request.form.get("csrf", "")
        if not secrets.compare_digest(csrf, store.csrf_token(rater)):
            return _page(403, message="Refused: this form does not belong to this link.")
        try:
            position, realism, pain = _read_rating(request.form)
            store.record(rater, position, realism, pain)
        except RatingRejected as exc:
            return trial_page(token, rater, message=f"Not saved: {exc}.", status=exc.status)
        return redirect(f"/r/{token}", code=303)

    @app.post("/r/<token>/consent")
    def agree(token):
        rater = rater_or_404(token)
        if _from_another_site():
            return _page(403, message="Refused: the form was sent from another site.")
        if not secrets.compare_digest(request.form.get("csrf", ""), store.csrf_token(rater)):
            return _page(403, message="Refused: this form does not belong to this link.")
        store.consent(rater)
        return redirect(f"/r/{token}", code=303)

    @app.get("/r/<token>/image/<image_id>")
    def image(token, image_id):
        rater = rater_or_404(token)
        if not store.consented(rater):
            abort(404)
        if not IMAGE_ID.fullmatch(image_id) or not store.assigned(rater, image_id):
            abort(404)
        return Response((images / f"{image_id}.png").read_bytes(), mimetype="image/png")


def _from_another_site() -> bool:
    """The request says it comes from another site (``Sec-Fetch-Site``) or another origin."""
    origin = request.headers.get("Origin")
    cross_site = request.headers.get("Sec-Fetch-Site") == "cross-site"
    return cross_site or (origin is not None and origin != request.host_url.rstrip("/"))


def _read_rating(form) -> tuple[int, int, int | None]:
    """``(position, realism, pain)`` of a posted rating form, every field validated
    (:class:`RatingRejected` says what is wrong; pain is optional)."""
    unexpected = set(form) - FIELDS
    if unexpected:
        raise RatingRejected(f"unexpected fields: {', '.join(sorted(unexpected))}")
    if any(len(form.getlist(f)) > 1 for f in FIELDS):
        raise RatingRejected("each field may be sent once")
    position = _whole(form.get("position"), 0, 100_000, "position")
    realism = form.get("realism")
    if realism is None:
        raise RatingRejected("choose a realism rating from 1 to 5 first")
    realism = _whole(realism, 1, 5, "realism")
    pain = form.get("pain") or None
    pain = None if pain is None else _whole(pain, 0, 10, "pain intensity")
    return position, realism, pain


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 8765, threads: int = 8):
    """A waitress server (``.run()`` blocks; ``.effective_port`` is the port bound, also for
    ``port=0``). Localhost by default: exposing it is a deliberate ``--host``."""
    from waitress import create_server

    return create_server(app, host=host, port=port, threads=threads)
