"""The web console: what a tenant or an operator does, as pages under ``/console/``.

Server-rendered (Jinja2 through aiohttp-jinja2, autoescaped) with one small
script file for copy buttons, polling and progress bars; every file the pages
need is package data served by the worker itself (``templates/``,
``static/``), so ``pip install`` alone serves it, offline, with a strict CSP.

- :mod:`.sessions`  sign-in links and sessions (Fernet tokens; single use and
  logout recorded on the ``tokens`` topic, so any worker serves any session)
- :mod:`.security`  CSP, cookies, CSRF and Origin checks (pure)
- :mod:`.charts`    SVG charts (pure)
- :mod:`.pages`     the pages, over the API's own principal-taking methods
- :mod:`.live`      the operator's live view (one shared sampler)
- :mod:`.links`     ``POST /v1/console/sessions``: a sign-in link, for a token holder
- :mod:`.app`       the sub-application, its middleware, and :func:`~.app.register_console`

The console is an aiohttp sub-application: its middleware (sessions, CSRF,
headers, error pages) applies to ``/console/`` alone, and the API's bearer
middleware lets ``/console/`` through untouched.
"""
