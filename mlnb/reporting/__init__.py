"""What reads a Bento's monitoring folder offline: summaries, drift and release reports,
charts, exports (``mlnb monitor``). The Bento does not ship it; :mod:`mlnb.monitoring` is what
writes the folder.
"""
