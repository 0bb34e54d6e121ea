"""The web console: a small ASGI app (Starlette, Jinja2 pages, inline SVG charts, no JavaScript) over
the session store the gateway writes, its budget store and its config. Read-only: nothing in it
changes the gateway. `queries` answers the pages and the JSON API alike; `auth` keeps it private."""
