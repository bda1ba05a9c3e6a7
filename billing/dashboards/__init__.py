"""Spend dashboards: who may see what (access), the filters in a page's URL, the figures read from rollups."""
