"""The blinded Likert realism study: trial design, rating web app, storage, simulator, analysis.

``design`` builds the trial set, ``store`` keeps ratings in SQLite, ``app`` serves raters,
``simulate`` stands in for raters on the default run, ``analysis`` turns ratings into results.
"""
