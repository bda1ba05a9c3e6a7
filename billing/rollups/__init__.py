"""Usage rolled up by hour, team, user, API key, model and route, for dashboards at any size.

`maintain` adds each newly inserted record to its rollup in the same
transaction; `build` sums raw records the same way in SQL, to check the
rollups (`manage.py check_rollups`) and to rebuild them.
"""
