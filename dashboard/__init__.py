"""The regulator dashboard (``faceaudit dashboard``): server-rendered pages and a JSON API.

Modules keep one job each: ``scope`` (what a token may see), ``auth`` (the token
file), ``filters`` (request arguments), ``where`` (SQL conditions with bound
parameters only), ``db`` (the store, one query at a time), ``stats`` and
``queries`` (the views' numbers), ``charts`` (inline SVG), ``export`` (CSV),
``access_log``, and ``app``, ``api``, ``pages``, ``public`` and ``context``
(the Flask application, its routes and what a request handler needs).
"""
